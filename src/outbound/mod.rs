//! Calls to other HTTP services, made by the reactor on sockets of its own.

mod call;

pub use call::{CallError, CallLimits, CallRequest, Upstream};
