//! The one network policy every HTTP client here follows (registry API, blobs, Prefect
//! APIs): which failures are worth another try, how long to wait (the server's
//! `Retry-After`, else jittered exponential backoff), when a host counts as down (a
//! per-host circuit breaker, so a dead registry costs seconds, not a retry storm per
//! layer), and how slow a body may trickle before it is cut and tried again.

pub mod breaker;
pub mod retry;

pub use breaker::{Breaker, HostDown};
pub use retry::{Policy, Transient, retry_after};

use std::time::SystemTime;

/// Why a call got no answer worth reading.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// A failure not worth another try (a request reqwest could not build or send).
    #[error("{0}")]
    Failed(String),
    #[error("gave up after {tries} tries (last: {last})")]
    GaveUp { tries: u32, last: String },
}

/// Send what `build` makes until the answer is one not worth another try, as `policy`
/// says (connection failures, resets, bodies that broke off, 429 and 5xx are tried
/// again, `Retry-After` honoured). Only for calls that may be repeated: reads, filters,
/// idempotent PATCHes, and Prefect 1 registrations that carry an idempotency key.
/// Returns the status and the body.
pub async fn call(
    policy: &Policy,
    build: impl Fn() -> reqwest::RequestBuilder,
) -> Result<(reqwest::StatusCode, String), CallError> {
    let mut backoff = policy.backoff();
    let mut tries = 0;
    loop {
        tries += 1;
        let (hint, last) = match build().send().await {
            Err(e) => match Transient::error(&e) {
                Some(_) => (None, without_url(&e)),
                None => {
                    return Err(CallError::Failed(without_url(&e)));
                }
            },
            Ok(res) => {
                let status = res.status();
                if Transient::status(status).is_some() {
                    (
                        retry_after(res.headers(), SystemTime::now()),
                        format!("HTTP {}", status.as_u16()),
                    )
                } else {
                    match res.text().await {
                        Ok(text) => return Ok((status, text)),
                        Err(e) => (None, format!("the response broke off: {}", without_url(&e))),
                    }
                }
            }
        };
        match policy.next_wait(&mut backoff, hint) {
            Some(wait) => {
                tracing::info!(
                    "{last}; try {} again in {:.1} s",
                    tries + 1,
                    wait.as_secs_f64()
                );
                tokio::time::sleep(wait).await
            }
            None => return Err(CallError::GaveUp { tries, last }),
        }
    }
}

/// A reqwest error's reason without the URL it prints (the caller names the URL once).
pub fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "the response broke off"
    } else {
        "request failed"
    };
    let mut msg = kind.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}
