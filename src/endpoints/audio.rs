//! The audio endpoints: CPU-heavy "inference" on an upload, the work a FastAPI service would hand
//! to `run_in_threadpool`, here on the pool.
//!
//! | endpoint | jobs | asyncio equivalent |
//! |---|---|---|
//! | `POST /snr-detect` | one: decode, then SNR and voice activity | `await run_in_threadpool(snr_detect, wav)` |
//! | `POST /speaker-count` | one: decode, then the speaker estimate | `await run_in_threadpool(speaker_count, wav)` |
//! | `POST /analyze` | one to decode, then **two in parallel**, joined on the reactor | `clip = await run_in_threadpool(decode, wav)`; `await asyncio.gather(...)` |
//!
//! `mode=inline` runs the same work on the reactor instead — the blocking mistake, kept for
//! demonstration: every other connection waits, and the slow-turn warning says so.
//!
//! The [`Analyzer`] (FFT plans, filterbanks, tables: the "model") is built once per process and
//! shared by every worker through an `Arc`: one model per process, as a Python service loads its
//! model once per worker process, but without a copy per thread. What each number means, and how accurate it is, is in `docs/AUDIO.md`.

use std::sync::Arc;

use super::no_store;
use crate::audio::{analysis_json, snr_json, speakers_json, Analyzer, Clip, VadParams, HOP_RANGE};
use crate::error::Error;
use crate::http::{Body, Method, Request, Response};
use crate::pool::{JobContext, Work};
use crate::router::{Reply, Router};

/// Which analysis an endpoint runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Analysis {
    Snr,
    Speakers,
    Both,
}

/// What the audio handlers share: the model and the duration cap.
struct AudioApp {
    analyzer: Arc<Analyzer>,
    max_seconds: f64,
}

/// Register `POST /snr-detect`, `POST /speaker-count` and `POST /analyze` on `router`.
pub fn routes(router: Router, analyzer: Arc<Analyzer>, max_seconds: f64) -> Router {
    let app = Arc::new(AudioApp {
        analyzer,
        max_seconds,
    });
    let (snr, speakers, both) = (Arc::clone(&app), Arc::clone(&app), app);
    // Every answer, errors included, is about one upload: never to be stored by a cache.
    router
        .route(
            Method::Post,
            "/snr-detect",
            no_store(move |req, _| handle(&snr, req, Analysis::Snr)),
        )
        .route(
            Method::Post,
            "/speaker-count",
            no_store(move |req, _| handle(&speakers, req, Analysis::Speakers)),
        )
        .route(
            Method::Post,
            "/analyze",
            no_store(move |req, _| handle(&both, req, Analysis::Both)),
        )
        // A bad query is refused before an upload is read, instead of `100 Continue`.
        .check(Method::Post, "/snr-detect", |req| query(req).map(drop))
        .check(Method::Post, "/speaker-count", |req| query(req).map(drop))
        .check(Method::Post, "/analyze", |req| query(req).map(drop))
}

/// The query, read and checked: what the head alone decides.
fn query(req: &Request<'_>) -> Result<(VadParams, bool), Error> {
    let params = vad_params(req)?;
    let inline = match req.query_param("mode") {
        None | Some("pool") => false,
        Some("inline") => true,
        Some(other) => {
            return Err(Error::BadQuery(format!(
                "query parameter `mode` must be `pool` or `inline`, got `{other}`"
            )))
        }
    };
    Ok((params, inline))
}

/// Validate the query, take the body, and decide where the work runs.
fn handle(app: &Arc<AudioApp>, req: &mut Request<'_>, analysis: Analysis) -> Reply {
    let (params, inline) = match query(req) {
        Ok(query) => query,
        Err(err) => return err.into(),
    };
    // Moved, not copied: the job owns the upload from here on.
    let wav = std::mem::take(&mut req.body);
    if inline {
        // Deliberately blocking: the whole analysis runs on the reactor thread.
        return Reply::Now(run_inline(app, &wav, params, analysis));
    }
    let app = Arc::clone(app);
    match analysis {
        Analysis::Snr => Reply::offload(move |job| match app.decode(&wav) {
            Ok(clip) => snr_response(&app.analyzer, &clip, params, job),
            Err(err) => err.into_response(),
        }),
        Analysis::Speakers => Reply::offload(move |job| match app.decode(&wav) {
            Ok(clip) => speakers_response(&app.analyzer, &clip, params, job),
            Err(err) => err.into_response(),
        }),
        // Decode once on a worker, then fan out: the job's reply is a gather of two more jobs.
        Analysis::Both => Reply::offload(move |job| -> Reply {
            let clip = match app.decode(&wav) {
                Ok(clip) => Arc::new(clip),
                Err(err) => return err.into(),
            };
            if job.is_cancelled() {
                return Error::Unavailable.into();
            }
            let (snr_model, snr_clip) = (Arc::clone(&app.analyzer), Arc::clone(&clip));
            let (count_model, count_clip) = (Arc::clone(&app.analyzer), clip);
            let parts: Vec<Work<Result<Response, Response>>> = vec![
                Box::new(move |job| ok_or_err(snr_response(&snr_model, &snr_clip, params, job))),
                Box::new(move |job| {
                    ok_or_err(speakers_response(&count_model, &count_clip, params, job))
                }),
            ];
            Reply::gather(parts, join_analysis)
        }),
    }
}

/// A part's response as a gather wants it: an error status answers the whole request.
fn ok_or_err(response: Response) -> Result<Response, Response> {
    if response.status < 400 {
        Ok(response)
    } else {
        Err(response)
    }
}

impl AudioApp {
    fn decode(&self, wav: &[u8]) -> Result<Clip, Error> {
        self.analyzer
            .decode(wav, self.max_seconds)
            .map_err(Error::from)
    }
}

/// The same work as the pool would do, on the calling thread (the reactor, for `mode=inline`).
fn run_inline(app: &AudioApp, wav: &[u8], params: VadParams, analysis: Analysis) -> Response {
    let clip = match app.decode(wav) {
        Ok(clip) => clip,
        Err(err) => return err.into_response(),
    };
    let never = || false;
    let (model, info) = (&app.analyzer, &clip.info);
    let value = match analysis {
        Analysis::Snr => model
            .snr(&clip, params, &never)
            .map(|snr| snr_json(&snr, info, params)),
        Analysis::Speakers => model
            .speakers(&clip, params, &never)
            .map(|speakers| speakers_json(&speakers, info)),
        Analysis::Both => model
            .analyze(&clip, params, &never)
            .map(|(snr, speakers)| analysis_json(&snr, &speakers, info, params)),
    };
    match value {
        Ok(value) => Response::json_value(200, &value),
        Err(err) => Error::from(err).into_response(),
    }
}

/// `vad_hop_size` (80–1024, default 256) and `vad_threshold` (0–1, default 0.5).
fn vad_params(req: &Request<'_>) -> Result<VadParams, Error> {
    let defaults = VadParams::default();
    let hop = match req.query_param("vad_hop_size") {
        None => defaults.hop,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|hop| HOP_RANGE.contains(hop))
            .ok_or_else(|| {
                Error::BadQuery(format!(
                    "query parameter `vad_hop_size` must be an integer from {} to {}, got `{text}`",
                    HOP_RANGE.start(),
                    HOP_RANGE.end()
                ))
            })?,
    };
    let threshold = match req.query_param("vad_threshold") {
        None => defaults.threshold,
        Some(text) => text
            .parse::<f64>()
            .ok()
            .filter(|t| (0.0..=1.0).contains(t))
            .ok_or_else(|| {
                Error::BadQuery(format!(
                    "query parameter `vad_threshold` must be a number from 0 to 1, got `{text}`"
                ))
            })?,
    };
    Ok(VadParams { hop, threshold })
}

/// The `/snr-detect` answer; a cancelled job (nobody is waiting) becomes a 503.
fn snr_response(
    model: &Analyzer,
    clip: &Clip,
    params: VadParams,
    job: &JobContext<'_>,
) -> Response {
    match model.snr(clip, params, &|| job.is_cancelled()) {
        Ok(report) => Response::json_value(200, &snr_json(&report, &clip.info, params)),
        Err(err) => Error::from(err).into_response(),
    }
}

/// The `/speaker-count` answer; a cancelled job becomes a 503.
fn speakers_response(
    model: &Analyzer,
    clip: &Clip,
    params: VadParams,
    job: &JobContext<'_>,
) -> Response {
    match model.speakers(clip, params, &|| job.is_cancelled()) {
        Ok(report) => Response::json_value(200, &speakers_json(&report, &clip.info)),
        Err(err) => Error::from(err).into_response(),
    }
}

/// Join the two parts of `/analyze` on the reactor: a failed part is the answer; otherwise the
/// two JSON objects side by side (spliced as bytes: both are already serialised objects).
fn join_analysis(mut parts: Vec<Response>) -> Response {
    if let Some(failed) = parts.iter().position(|part| part.status != 200) {
        return parts.swap_remove(failed);
    }
    let mut body =
        Vec::with_capacity(64 + parts.iter().map(|p| p.body.as_bytes().len()).sum::<usize>());
    body.extend_from_slice(br#"{"snr":"#);
    body.extend_from_slice(parts.first().map_or(&b"null"[..], |p| p.body.as_bytes()));
    body.extend_from_slice(br#","speaker_count":"#);
    body.extend_from_slice(parts.get(1).map_or(&b"null"[..], |p| p.body.as_bytes()));
    body.push(b'}');
    Response {
        body: Body::Owned(body),
        ..Response::json(200, Vec::new())
    }
}
