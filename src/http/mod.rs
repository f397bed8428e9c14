//! HTTP/1.1 messages, without sockets: bytes in, requests out; responses in, bytes out.
//!
//! Nothing here knows about mio or the reactor (the h11 "bring your own I/O" design), which is
//! why the parser can be fed arbitrary splits of a byte stream in a property test.
//!
//! - [`decoder`]: the incremental request decoder — head, then body — with every RFC 9112
//!   framing rule that keeps request smuggling out;
//! - [`chunked`]: the `Transfer-Encoding: chunked` body decoder;
//! - [`error`]: [`ParseError`], what the decoders return for bytes that break the protocol,
//!   with the status code each implies;
//! - [`target`]: the request target and the `Host` field, checked against the URI grammar;
//! - [`request`]: the [`Request`] a handler sees;
//! - [`response`]: the [`Response`] a handler returns, its encoder, and the cached `Date`;
//! - [`client`]: the other direction, for calls to an upstream: the request encoder and the
//!   incremental response decoder.

pub mod chunked;
pub mod client;
pub mod decoder;
pub mod error;
pub mod request;
pub mod response;
pub mod sse;
mod syntax;
pub mod target;

pub use decoder::{Decoded, HeadInfo, Limits, OwnedHead, RequestDecoder};
pub use error::ParseError;
pub use request::{Method, Request, Version};
pub use response::{Body, ConnectionHeader, DateCache, Response};
pub use target::Target;
