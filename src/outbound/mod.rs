//! Calls to other HTTP services, made by the reactor on sockets of its own.

mod blocking;
mod call;

pub use blocking::call_blocking;
pub use call::{CallError, CallLimits, CallRequest, Upstream};
