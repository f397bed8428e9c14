//! Every way a request can fail, and the one place that maps each to a status code.
//!
//! Errors are values, not strings scattered through the code: the decoder, the router and the
//! reactor each return an [`Error`], and [`Error::into_response`] turns it into the JSON body
//! `{"error":"…","status":N}` the spec asks for. [`Error::closes_connection`] names the errors
//! after which nothing more on a connection can be trusted; every error the request decoder
//! returns is one of them, so the connection answers it and closes — the rule that makes request
//! smuggling impossible. The others are answered and the connection carries on.

use std::borrow::Cow;
use std::fmt;

use crate::audio::AudioError;
use crate::http::Response;

/// A request that cannot be answered normally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    // ----- protocol errors: answered, then the connection is closed -----
    /// Malformed request: bad framing, bare LF, invalid bytes, missing `Host`, smuggling shapes.
    /// The text says which rule was broken.
    BadRequest(&'static str),
    /// The request line alone is longer than `--max-header-bytes` (414).
    UriTooLong,
    /// The header block is longer than `--max-header-bytes` or has more than `--max-headers`
    /// fields (431).
    HeadersTooLarge,
    /// The body is larger than `--max-body` (413): known from `Content-Length` before reading, or
    /// found while decoding chunks.
    BodyTooLarge,
    /// `Expect` with anything but `100-continue` (417).
    ExpectationFailed,
    /// A method this server does not implement (501).
    MethodNotImplemented,
    /// An HTTP version other than 1.0 and 1.1 (505).
    VersionNotSupported,
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
    /// The server is draining or its pool is closed (503).
    Unavailable,
    /// The job did not finish within `--request-timeout` (504).
    GatewayTimeout,
    /// The job panicked (500). The worker survived; the message goes to the log, not the client.
    JobPanicked,
}

impl Error {
    /// The status code for this error.
    pub fn status(&self) -> u16 {
        match self {
            Error::BadRequest(_) | Error::BadQuery(_) | Error::BadBody(_) => 400,
            Error::NotFound => 404,
            Error::MethodNotAllowed { .. } => 405,
            Error::RequestTimeout => 408,
            Error::BodyTooLarge | Error::AudioTooLong(_) => 413,
            Error::UriTooLong => 414,
            Error::UnsupportedMediaType(_) => 415,
            Error::ExpectationFailed => 417,
            Error::Unprocessable(_) => 422,
            Error::HeadersTooLarge => 431,
            Error::JobPanicked => 500,
            Error::MethodNotImplemented => 501,
            Error::QueueFull | Error::Unavailable => 503,
            Error::GatewayTimeout => 504,
            Error::VersionNotSupported => 505,
        }
    }

    /// True for errors after which the connection's byte stream cannot be trusted (or the
    /// client is misbehaving): the response says `Connection: close` and nothing after it on that
    /// connection is read.
    pub fn closes_connection(&self) -> bool {
        matches!(
            self,
            Error::BadRequest(_)
                | Error::UriTooLong
                | Error::HeadersTooLarge
                | Error::BodyTooLarge
                | Error::ExpectationFailed
                | Error::MethodNotImplemented
                | Error::VersionNotSupported
                | Error::RequestTimeout
        )
    }

    /// The human-readable message in the JSON body.
    pub fn message(&self) -> Cow<'static, str> {
        match self {
            Error::BadRequest(why) => Cow::Borrowed(why),
            Error::UriTooLong => "request line too long".into(),
            Error::HeadersTooLarge => "request header block too large".into(),
            Error::BodyTooLarge => "request body too large".into(),
            Error::ExpectationFailed => "only Expect: 100-continue is supported".into(),
            Error::MethodNotImplemented => "method not implemented".into(),
            Error::VersionNotSupported => "HTTP version not supported".into(),
            Error::RequestTimeout => "request not received in time".into(),
            Error::NotFound => "not found".into(),
            Error::MethodNotAllowed { .. } => "method not allowed".into(),
            Error::BadQuery(why)
            | Error::BadBody(why)
            | Error::UnsupportedMediaType(why)
            | Error::Unprocessable(why)
            | Error::AudioTooLong(why) => Cow::Owned(why.clone()),
            Error::QueueFull => "server busy: job queue full".into(),
            Error::Unavailable => "server unavailable".into(),
            Error::GatewayTimeout => "request timed out".into(),
            Error::JobPanicked => "internal error: the job failed".into(),
        }
    }

    /// The response for this error: JSON body, plus `Allow` (405) or `Retry-After` (503 when
    /// the queue is full).
    pub fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::json!({ "error": self.message(), "status": status });
        let mut response = Response::json(status, body.to_string().into_bytes());
        match self {
            Error::MethodNotAllowed { allow } => response.headers.push(("Allow", allow)),
            Error::QueueFull => response.headers.push(("Retry-After", "1".to_string())),
            _ => {}
        }
        response
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
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status(), self.message())
    }
}

impl std::error::Error for Error {}
