//! Every way a request can fail, and the one place that maps each to a status code.
//!
//! Errors are values, not strings scattered through the code: the decoder, the router and the
//! reactor each produce an [`Error`], and [`Error::into_response`] turns it into the JSON body
//! `{"error":"…","status":N}` every error response carries. The HTTP layer has its own error,
//! [`ParseError`], which knows nothing of the application; it arrives here wrapped as
//! [`Error::Http`].
//!
//! Whether an error also ends the connection is not a property of the error but of where it
//! happened: the connection answers with `Connection: close` whatever it refuses before a
//! request is whole — a decoder error, a timeout, a body over the memory budget, an answer sent
//! instead of `100 Continue` — because nothing after it can be framed (the rule that makes
//! request smuggling impossible). An error a handler or a job returns is an ordinary answer, and
//! the connection carries on.

use std::borrow::Cow;
use std::fmt;

use crate::audio::AudioError;
use crate::http::{ParseError, Response};
use crate::outbound::CallError;

/// A request that cannot be answered normally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    // ----- protocol errors: answered, then the connection is closed -----
    /// The request decoder refused the request's bytes (400, 413, 414, 417, 431, 501 or 505:
    /// [`ParseError::status`]). The limits behind 413, 414 and 431 are `--max-body`,
    /// `--max-header-bytes` and `--max-headers`.
    Http(ParseError),
    /// The client took longer than `--header-timeout` / `--body-timeout` to send its request (408).
    RequestTimeout,

    // ----- request errors: answered, the connection stays usable -----
    /// No route for this path (404).
    NotFound,
    /// The path exists but not for this method (405); `allow` is the `Allow` header's value.
    MethodNotAllowed { allow: String },
    /// A query parameter is missing or out of range (400). The text names the parameter.
    BadQuery(String),
    /// The body is not what the endpoint takes, e.g. a truncated WAV file (400).
    BadBody(String),
    /// The body is of a type the endpoint does not decode: not a WAV file, or a WAV encoding
    /// such as ADPCM (415).
    UnsupportedMediaType(String),
    /// The body is well-formed but cannot be analysed, e.g. a WAV file with no samples (422).
    Unprocessable(String),
    /// The body decodes, but to more audio than `--max-audio-seconds` (413; the connection
    /// stays usable, unlike a body over `--max-body`).
    AudioTooLong(String),
    /// The job queue is full (503 with `Retry-After`): load is shed instead of queued forever.
    QueueFull,
    /// The request bodies held in memory at once, over all connections, would pass
    /// `--max-body-memory` (503 with `Retry-After`; the rest of this body is not read, so the
    /// connection closes).
    BodyMemoryFull,
    /// The job was cancelled before a worker took it, or the pool is closed (503).
    Unavailable,
    /// The server's start-up hooks have not finished, and the route may need what they build
    /// (503 with `Retry-After`). Liveness and metrics are served meanwhile.
    Starting,
    /// The job did not finish within `--request-timeout` (504).
    GatewayTimeout,
    /// The job panicked (500). The worker survived; the message goes to the log, not the client.
    JobPanicked,

    // ----- calls to an upstream -----
    /// A call to the upstream failed (502, 503 or 504: [`CallError::status`]); the message
    /// names the cause.
    Upstream(CallError),
    /// An endpoint that calls the upstream, on a server started without `--upstream` (503).
    NoUpstream,
}

impl Error {
    /// The status code for this error.
    pub fn status(&self) -> u16 {
        match self {
            Error::Http(err) => err.status(),
            Error::BadQuery(_) | Error::BadBody(_) => 400,
            Error::NotFound => 404,
            Error::MethodNotAllowed { .. } => 405,
            Error::RequestTimeout => 408,
            Error::AudioTooLong(_) => 413,
            Error::UnsupportedMediaType(_) => 415,
            Error::Unprocessable(_) => 422,
            Error::JobPanicked => 500,
            Error::QueueFull
            | Error::BodyMemoryFull
            | Error::Unavailable
            | Error::Starting
            | Error::NoUpstream => 503,
            Error::GatewayTimeout => 504,
            Error::Upstream(err) => err.status(),
        }
    }

    /// The human-readable message in the JSON body.
    pub fn message(&self) -> Cow<'static, str> {
        match self {
            Error::Http(err) => Cow::Borrowed(err.message()),
            Error::RequestTimeout => "request not received in time".into(),
            Error::NotFound => "not found".into(),
            Error::MethodNotAllowed { .. } => "method not allowed".into(),
            Error::BadQuery(why)
            | Error::BadBody(why)
            | Error::UnsupportedMediaType(why)
            | Error::Unprocessable(why)
            | Error::AudioTooLong(why) => Cow::Owned(why.clone()),
            Error::QueueFull => "server busy: job queue full".into(),
            Error::BodyMemoryFull => "server busy: too many request bodies in memory".into(),
            Error::Unavailable => "server unavailable".into(),
            Error::Starting => "starting: the server is not ready yet".into(),
            Error::GatewayTimeout => "request timed out".into(),
            Error::JobPanicked => "internal error: the job failed".into(),
            Error::Upstream(err) => Cow::Owned(err.to_string()),
            Error::NoUpstream => "no upstream: start evloop with --upstream URL".into(),
        }
    }

    /// The response for this error: JSON body, plus `Allow` (405) or `Retry-After` (503 when
    /// the queue or the body memory is full, or while the server is starting).
    pub fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::json!({ "error": self.message(), "status": status });
        let mut response = Response::json(status, body.to_string().into_bytes());
        match self {
            Error::MethodNotAllowed { allow } => response.headers.push(("Allow", allow)),
            Error::QueueFull | Error::BodyMemoryFull | Error::Starting => {
                response.headers.push(("Retry-After", "1".to_string()))
            }
            _ => {}
        }
        response
    }
}

/// A protocol error, as the application answers it.
impl From<ParseError> for Error {
    fn from(err: ParseError) -> Error {
        Error::Http(err)
    }
}

impl From<CallError> for Error {
    fn from(err: CallError) -> Error {
        Error::Upstream(err)
    }
}

/// How each audio decoding failure is answered (docs/AUDIO.md lists them with examples).
impl From<AudioError> for Error {
    fn from(err: AudioError) -> Error {
        let message = err.to_string();
        match err {
            AudioError::Empty | AudioError::Malformed(_) => Error::BadBody(message),
            AudioError::NotWav(_) | AudioError::Unsupported(_) => {
                Error::UnsupportedMediaType(message)
            }
            AudioError::NoSamples => Error::Unprocessable(message),
            AudioError::TooLong { .. } => Error::AudioTooLong(message),
            // Nobody is waiting for the answer; 503 is what a cancelled job gets anyway.
            AudioError::Cancelled => Error::Unavailable,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status(), self.message())
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each protocol error keeps the status its rule implies.
    #[test]
    fn protocol_errors_keep_their_status() {
        for (err, status) in [
            (ParseError::BadRequest("bare CR in request head"), 400),
            (ParseError::BodyTooLarge, 413),
            (ParseError::UriTooLong, 414),
            (ParseError::ExpectationFailed, 417),
            (ParseError::HeadersTooLarge, 431),
            (ParseError::MethodNotImplemented, 501),
            (ParseError::VersionNotSupported, 505),
        ] {
            assert_eq!(Error::from(err).status(), status);
        }
    }

    /// A protocol error is answered as JSON with the decoder's message.
    #[test]
    fn protocol_errors_answer_json() {
        let response = Error::from(ParseError::BadRequest("invalid Host")).into_response();
        assert_eq!(response.status, 400);
        assert_eq!(response.content_type, "application/json");
        assert_eq!(
            response.body.as_bytes(),
            br#"{"error":"invalid Host","status":400}"#
        );
    }
}
