//! The one network policy every HTTP client here follows (registry API, blobs, Prefect
//! APIs): which failures are worth another try, how long to wait (the server's
//! `Retry-After`, else jittered exponential backoff), when a host counts as down (a
//! per-host circuit breaker, so a dead registry costs seconds, not a retry storm per
//! layer), and how slow a body may trickle before it is cut and tried again.

pub mod breaker;
pub mod retry;

pub use breaker::{Breaker, HostDown};
pub use retry::{Policy, Transient, retry_after};
