//! `GET /events/loop` and `GET /dashboard`: the loop's vital signs, live.
//!
//! - `/events/loop` is a Server-Sent Events stream: an `event: vitals` about four times a
//!   second, its data one JSON frame (turn time, wake-ups, pool, connections, requests per
//!   second by route, recent slow turns). How the numbers get from the reactor to the job that
//!   streams them, what a viewer costs and what it shows with `--workers N`:
//!   [`crate::metrics::vitals`]. After [`vitals::MAX_VIEW`] the stream ends with
//!   `event: result`; an `EventSource` reconnects by itself (every frame carries `retry:`).
//! - `/dashboard` is one HTML page, no build step and nothing fetched from elsewhere, that
//!   opens `new EventSource("/events/loop")` and draws those frames.
//!
//! Both are served while the server starts, like `/metrics`: they need nothing a start-up hook
//! builds, and a slow start is worth watching.

use std::time::Instant;

use crate::error::Error;
use crate::http::{sse, Body, Method, Request, Response};
use crate::metrics::vitals::{self, Vitals};
use crate::router::{Context, Reply, Router, Stream};

/// The page, kept in its own file so it reads (and can be opened) as HTML.
const PAGE: &str = include_str!("dashboard.html");

/// How long a browser waits before reconnecting after a stream ends (ms): the `retry:` field.
const RETRY_MS: u64 = 1000;

/// `router` with `/events/loop` and `/dashboard`.
pub fn routes(router: Router) -> Router {
    router
        .route_while_starting(Method::Get, "/events/loop", super::no_store(events_loop))
        .route_while_starting(Method::Get, "/dashboard", |_, _| page())
}

/// `GET /dashboard`: the page.
fn page() -> Reply {
    let mut response = Response::text(200, "");
    response.content_type = "text/html; charset=utf-8";
    response.body = Body::Static(PAGE.as_bytes());
    response.into()
}

/// `GET /events/loop`: an `event: vitals` for each frame the reactor publishes, from a pool job
/// that sleeps between frames and ends when its client leaves, after [`vitals::MAX_VIEW`], or
/// when the server drains. 503 when [`Vitals::max_viewers`] already watch; 404 outside a
/// running server.
fn events_loop(_req: &mut Request<'_>, ctx: &Context<'_>) -> Reply {
    let Some(metrics) = ctx.metrics else {
        return Error::NotFound.into();
    };
    let Some(mut viewer) = Vitals::watch(metrics.vitals()) else {
        return Error::Unavailable.into();
    };
    Reply::Stream(Stream::events(move |job| {
        let started = Instant::now();
        while started.elapsed() < vitals::MAX_VIEW && !viewer.is_closing() {
            // The cancel check is also where a frame that waited in the job's outbox goes out.
            if job.is_cancelled() {
                // Nobody is listening any more; the reactor drops whatever this says.
                return Error::Unavailable.into_response();
            }
            if let Some(frame) = viewer.next_frame() {
                // `retry:` with every frame: a frame a slow client has not taken yet is
                // replaced by the next (see `JobContext::emit`), so a field sent once could be
                // lost with it.
                let mut message = format!("retry: {RETRY_MS}\n\n").into_bytes();
                message.extend_from_slice(&sse::event("vitals", frame.as_bytes()));
                job.emit(message);
            }
            std::thread::sleep(vitals::VIEWER_POLL);
        }
        Response::json_static(200, r#"{"reconnect":true}"#)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Version;

    /// Outside a running server there are no vitals to watch.
    #[test]
    fn events_need_a_running_server() {
        let mut req = Request {
            method: Method::Get,
            path: "/events/loop",
            query: "",
            version: Version::Http11,
            headers: &[],
            body: Vec::new(),
        };
        match events_loop(&mut req, &Context::detached(false)) {
            Reply::Now(response) => assert_eq!(response.status, 404),
            _ => panic!("expected a 404 now"),
        }
    }

    /// The page is HTML and follows the stream.
    #[test]
    fn the_page_opens_the_event_stream() {
        assert!(PAGE.contains("new EventSource(\"/events/loop\")"));
        // Nothing is fetched from elsewhere; the SVG namespace is a name, never fetched.
        let page = PAGE.replace("\"http://www.w3.org/2000/svg\"", "SVG");
        assert!(!page.contains("http://") && !page.contains("https://"));
    }
}
