//! The audio endpoints: CPU-heavy "inference" on an upload, the work a FastAPI service would hand
//! to `run_in_threadpool`, here on the pool.
//!
//! | endpoint | jobs | asyncio equivalent |
//! |---|---|---|
//! | `POST /snr-detect` | one: decode, then SNR and voice activity | `await run_in_threadpool(snr_detect, wav)` |
//! | `POST /speaker-count` | one: decode, then the speaker estimate | `await run_in_threadpool(speaker_count, wav)` |
//! | `POST /analyze` | one to decode, then **one part per worker in parallel** (up to four), joined on the reactor, then one to finish | `clip = await run_in_threadpool(decode, wav)`; `parts = await asyncio.gather(*(run_in_threadpool(analyze_part, clip, i, n) for i in range(n)))`; `await run_in_threadpool(finish, parts)` |
//! | `POST /analyze/stream` | one to decode, then one that analyses window by window, its progress streamed | `StreamingResponse` of an async generator fed by a thread |
//!
//! `mode=inline` runs the same work on the reactor instead — the blocking mistake, kept for
//! demonstration: every other connection waits, and the slow-turn warning says so (not for the
//! stream).
//!
//! Every job passes `|| job.is_cancelled()` to the decode and to the analysis, which check it
//! after about every 0.05 ms of estimated work (the longest gaps measured are in
//! `src/audio/checkpoint.rs`: a few tenths of a millisecond at most). So a client that leaves
//! stops its jobs' work within a fraction of a millisecond, and the checks are where the workers
//! yield to the reactor. A job still frees its upload and its clip after its last check:
//! milliseconds for the longest clips (4–5 ms for the 77 MB of 600 s at 16 kHz). The decode
//! jobs of `/analyze` and `/analyze/stream` check the flag again once the decode is done,
//! before they start more jobs.
//!
//! The [`Analyzer`] (FFT plans, filterbanks, tables: the "model") is built once per process and
//! shared by every worker through an `Arc`: one model per process, as a Python service loads its
//! model once per worker process, but without a copy per thread. It is built by a start-up hook
//! ([`Model::load`], registered by `endpoints::app_for`), off the reactor thread, and the
//! handlers find it in a [`Model`]: a cell the hook fills. Until it is there they answer 503
//! `starting` (the router already does, until the hooks have finished; the handlers check
//! again rather than trust that, so a router used without its hook answers 503, not a panic).
//! What each number means, and how accurate it is, is in `docs/AUDIO.md`.

use std::sync::{Arc, OnceLock};

use super::no_store;
use crate::audio::{
    analysis_json, progress_json, snr_json, speakers_json, Analyzer, Clip, PartialAnalysis,
    VadParams, HOP_RANGE,
};
use crate::error::Error;
use crate::http::{sse, Method, Request, Response};
use crate::pool::{JobContext, Work};
use crate::router::{Reply, Router, Stream};

/// Which analysis an endpoint runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Analysis {
    Snr,
    Speakers,
    Both,
}

/// The audio model, shared by the handlers and the start-up hook that builds it: empty until
/// [`Model::load`] has run, then the same [`Analyzer`] for every request, for the life of the
/// process. Cloning it copies a pointer.
#[derive(Clone, Default)]
pub struct Model(Arc<OnceLock<Arc<Analyzer>>>);

impl Model {
    /// An empty model, for a start-up hook to load.
    pub fn new() -> Model {
        Model::default()
    }

    /// A model built now, on the calling thread.
    pub fn loaded() -> Model {
        let model = Model::new();
        model.load();
        model
    }

    /// Build the analyzer (FFT plans, filterbanks, tables): the start-up hook's work. A second
    /// call keeps the first analyzer.
    pub fn load(&self) {
        self.0.get_or_init(|| Arc::new(Analyzer::new()));
    }

    /// The analyzer, once built.
    pub fn get(&self) -> Option<Arc<Analyzer>> {
        self.0.get().cloned()
    }
}

/// What the audio handlers share: the model, once built, the duration cap, and how many parts
/// `/analyze` splits its work into.
struct AudioRoutes {
    model: Model,
    max_seconds: f64,
    parts: usize,
}

impl AudioRoutes {
    /// What a request's jobs carry, if the model is there; 503 `starting` if not.
    fn app(&self) -> Result<Arc<AudioApp>, Error> {
        let analyzer = self.model.get().ok_or(Error::Starting)?;
        Ok(Arc::new(AudioApp {
            analyzer,
            max_seconds: self.max_seconds,
            parts: self.parts,
        }))
    }
}

/// One request's view of the audio endpoints, carried by its jobs: the model it runs on, the
/// duration cap, and how many parts `/analyze` splits its work into.
struct AudioApp {
    analyzer: Arc<Analyzer>,
    max_seconds: f64,
    parts: usize,
}

/// Most parts `/analyze` splits into, whatever the pool: every part repeats the frame analysis,
/// so each extra part adds the same CPU time while taking less off the wall time than the one
/// before it.
const MAX_PARTS: usize = 4;

/// Register `POST /snr-detect`, `POST /speaker-count`, `POST /analyze` and
/// `POST /analyze/stream` on `router`, running on `model` (503 while it is empty). `/analyze`
/// splits its work into one part per worker (`pool`), up to `MAX_PARTS` (4).
pub fn routes(router: Router, model: Model, max_seconds: f64, pool: usize) -> Router {
    let routes = Arc::new(AudioRoutes {
        model,
        max_seconds,
        parts: pool.clamp(1, MAX_PARTS),
    });
    let (snr, speakers, both, stream) = (
        Arc::clone(&routes),
        Arc::clone(&routes),
        Arc::clone(&routes),
        routes,
    );
    // Every answer, errors included, is about one upload: never to be stored by a cache.
    router
        .route(
            Method::Post,
            "/snr-detect",
            no_store(move |req, _| with_app(&snr, |app| handle(app, req, Analysis::Snr))),
        )
        .route(
            Method::Post,
            "/speaker-count",
            no_store(move |req, _| with_app(&speakers, |app| handle(app, req, Analysis::Speakers))),
        )
        .route(
            Method::Post,
            "/analyze",
            no_store(move |req, _| with_app(&both, |app| handle(app, req, Analysis::Both))),
        )
        .route(
            Method::Post,
            "/analyze/stream",
            no_store(move |req, _| with_app(&stream, |app| handle_stream(app, req))),
        )
        // A bad query is refused before an upload is read, instead of `100 Continue`.
        .check(Method::Post, "/snr-detect", |req| query(req).map(drop))
        .check(Method::Post, "/speaker-count", |req| query(req).map(drop))
        .check(Method::Post, "/analyze", |req| query(req).map(drop))
        .check(Method::Post, "/analyze/stream", |req| {
            stream_query(req).map(drop)
        })
}

/// Run `handler` with the request's view of the audio endpoints, or answer 503 `starting` if
/// the model is not built yet.
fn with_app(routes: &AudioRoutes, handler: impl FnOnce(&Arc<AudioApp>) -> Reply) -> Reply {
    match routes.app() {
        Ok(app) => handler(&app),
        Err(err) => err.into(),
    }
}

/// The query of `/analyze/stream`: `/analyze`'s, without `mode=inline` (a stream's job is a
/// pool job by nature).
fn stream_query(req: &Request<'_>) -> Result<VadParams, Error> {
    match query(req)? {
        (params, false) => Ok(params),
        (_, true) => Err(Error::BadQuery(
            "`mode=inline` is not available for a stream".to_string(),
        )),
    }
}

/// `POST /analyze/stream`: decode on a worker (a bad upload is an ordinary 4xx, before any
/// stream starts), then stream the analysis window by window: an `event: progress` per window
/// (`processed_s`, `duration_s`, `snr_db_so_far`, `speech_ratio_so_far`), then `event: result`
/// with exactly the JSON `/analyze` answers for the same upload and query.
fn handle_stream(app: &Arc<AudioApp>, req: &mut Request<'_>) -> Reply {
    let params = match stream_query(req) {
        Ok(params) => params,
        Err(err) => return err.into(),
    };
    let wav = std::mem::take(&mut req.body);
    let app = Arc::clone(app);
    Reply::offload(move |job| -> Reply {
        let clip = match app.decode(&wav, &|| job.is_cancelled()) {
            Ok(clip) => clip,
            Err(err) => return err.into(),
        };
        if job.is_cancelled() {
            return Error::Unavailable.into();
        }
        Reply::Stream(Stream::events(move |job| {
            let cancelled = || job.is_cancelled();
            let mut report = |progress| {
                let data = progress_json(&progress).to_string();
                job.emit(sse::event("progress", data.as_bytes()));
            };
            match app
                .analyzer
                .analyze_progressive(&clip, params, &cancelled, &mut report)
            {
                Ok((snr, speakers)) => {
                    Response::json_value(200, &analysis_json(&snr, &speakers, &clip.info, params))
                }
                Err(err) => Error::from(err).into_response(),
            }
        }))
    })
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
        Analysis::Snr => {
            Reply::offload(move |job| match app.decode(&wav, &|| job.is_cancelled()) {
                Ok(clip) => snr_response(&app.analyzer, &clip, params, job),
                Err(err) => err.into_response(),
            })
        }
        Analysis::Speakers => {
            Reply::offload(move |job| match app.decode(&wav, &|| job.is_cancelled()) {
                Ok(clip) => speakers_response(&app.analyzer, &clip, params, job),
                Err(err) => err.into_response(),
            })
        }
        // Decode once on a worker, then fan out: the job's reply is a gather of one part per
        // worker, whose join continues with one more job to finish.
        Analysis::Both => Reply::offload(move |job| -> Reply {
            let clip = match app.decode(&wav, &|| job.is_cancelled()) {
                Ok(clip) => Arc::new(clip),
                Err(err) => return err.into(),
            };
            if job.is_cancelled() {
                return Error::Unavailable.into();
            }
            fan_out(&app, clip, params)
        }),
    }
}

/// The parallel part of `/analyze`: `app.parts` jobs, each the frame analysis of the whole clip
/// and the features of its cost-balanced share of the feature frames; their join, on the
/// reactor, only moves the parts into one last job, which merges them, clusters the speakers
/// and answers (the clustering can take long on a pathological clip: not work for the loop).
fn fan_out(app: &Arc<AudioApp>, clip: Arc<Clip>, params: VadParams) -> Reply {
    let of = app.parts;
    let parts: Vec<Work<Result<PartialAnalysis, Response>>> = (0..of)
        .map(|part| -> Work<Result<PartialAnalysis, Response>> {
            let (model, clip) = (Arc::clone(&app.analyzer), Arc::clone(&clip));
            Box::new(move |job| {
                model
                    .analyze_part(&clip, part, of, params, &|| job.is_cancelled())
                    .map_err(|err| Error::from(err).into_response())
            })
        })
        .collect();
    let model = Arc::clone(&app.analyzer);
    let info = clip.info;
    Reply::gather(parts, move |parts: Vec<PartialAnalysis>| {
        Reply::offload(
            move |job| match model.finish(parts, &|| job.is_cancelled()) {
                Ok((snr, speakers)) => {
                    Response::json_value(200, &analysis_json(&snr, &speakers, &info, params))
                }
                Err(err) => Error::from(err).into_response(),
            },
        )
    })
}

impl AudioApp {
    fn decode(&self, wav: &[u8], cancelled: &dyn Fn() -> bool) -> Result<Clip, Error> {
        self.analyzer
            .decode(wav, self.max_seconds, cancelled)
            .map_err(Error::from)
    }
}

/// The same work as the pool would do, on the calling thread (the reactor, for `mode=inline`).
fn run_inline(app: &AudioApp, wav: &[u8], params: VadParams, analysis: Analysis) -> Response {
    let clip = match app.decode(wav, &|| false) {
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
