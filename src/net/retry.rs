//! When to try a request again, and how long to wait first.
//!
//! Transient: a connection refused, reset or timed out, a body that broke off, HTTP 429,
//! and 5xx but 501 and 505 (what the server cannot do will not change). The wait is the
//! server's `Retry-After` (seconds or an HTTP date) up to [`Policy::retry_after_cap`],
//! else backon's exponential backoff with jitter, so clients that failed together do
//! not come back together.

use std::time::{Duration, SystemTime};

use backon::BackoffBuilder;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;

/// How persistent every HTTP client is.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Tries per request, the first included.
    pub max_tries: u32,
    /// The first backoff; each next one doubles (with jitter) up to `max_backoff`.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// The longest `Retry-After` honoured; a longer one is waited this long.
    pub retry_after_cap: Duration,
    /// A body slower than this many bytes per second over `throughput_window` is cut
    /// and tried again (from where it broke off, where the server allows ranges).
    pub min_throughput: u64,
    pub throughput_window: Duration,
    /// A host that failed this many times in a row …
    pub breaker_failures: u32,
    /// … for at least this long is taken as down: the requests left fail at once (one
    /// probe per `breaker_cooldown` still goes through, so a host that comes back is
    /// used again).
    pub breaker_window: Duration,
    pub breaker_cooldown: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_tries: 6,
            first_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
            retry_after_cap: Duration::from_secs(120),
            min_throughput: 1024,
            throughput_window: Duration::from_secs(30),
            breaker_failures: 8,
            breaker_window: Duration::from_secs(10),
            breaker_cooldown: Duration::from_secs(10),
        }
    }
}

impl Policy {
    /// The waits between the tries of one request (`max_tries - 1` of them).
    pub fn backoff(&self) -> impl Iterator<Item = Duration> + use<> {
        backon::ExponentialBuilder::new()
            .with_min_delay(self.first_backoff)
            .with_max_delay(self.max_backoff)
            .with_factor(2.0)
            .with_max_times(self.max_tries.saturating_sub(1) as usize)
            .with_jitter()
            .build()
    }

    /// The wait before the next try: the server's hint (capped), else the backoff's next;
    /// `None` when the tries are used up.
    pub fn next_wait(
        &self,
        backoff: &mut impl Iterator<Item = Duration>,
        hint: Option<Duration>,
    ) -> Option<Duration> {
        let planned = backoff.next()?;
        Some(match hint {
            Some(h) => h.min(self.retry_after_cap),
            None => planned,
        })
    }
}

/// Why a failed try is worth another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transient {
    /// The connection failed, was reset or timed out, or the body broke off.
    Connection,
    /// 429: the host is up and asks us to slow down.
    Throttled,
    /// 5xx: the host is up but failing.
    ServerError(u16),
}

impl Transient {
    /// An HTTP status worth another try.
    pub fn status(status: StatusCode) -> Option<Transient> {
        match status.as_u16() {
            429 => Some(Transient::Throttled),
            501 | 505 => None,
            s @ 500..=599 => Some(Transient::ServerError(s)),
            _ => None,
        }
    }

    /// A reqwest failure worth another try: anything on the way (connect, reset,
    /// timeout, a body cut short), not a request we built wrong.
    pub fn error(e: &reqwest::Error) -> Option<Transient> {
        if tls_refused(e) {
            return None;
        }
        (e.is_connect() || e.is_timeout() || e.is_request() || e.is_body() || e.is_decode())
            .then_some(Transient::Connection)
    }

    /// Whether it says something about the host being down (for the breaker): a 429 is a
    /// live host talking.
    pub fn host_failing(&self) -> bool {
        !matches!(self, Transient::Throttled)
    }
}

/// A TLS handshake that failed for good: a certificate this machine does not accept,
/// or a server that does not speak TLS at all. Trying again cannot change either. (The
/// rustls error sits deep in the source chain, and only its text reaches us.)
fn tls_refused(e: &reqwest::Error) -> bool {
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = source {
        let text = s.to_string();
        if text.contains("invalid peer certificate")
            || text.contains("InvalidContentType")
            || text.contains("corrupt message")
        {
            return true;
        }
        source = s.source();
    }
    false
}

/// `Retry-After` as a wait from `now`: delta seconds or an HTTP date (RFC 9110 §10.2.3).
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn with_retry_after(v: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, HeaderValue::from_static(v));
        h
    }

    #[test]
    fn retry_after_is_seconds_or_an_http_date() {
        let now = httpdate::parse_http_date("Tue, 01 Dec 2026 10:00:00 GMT").unwrap();
        assert_eq!(
            retry_after(&with_retry_after("7"), now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            retry_after(&with_retry_after("Tue, 01 Dec 2026 10:01:30 GMT"), now),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            retry_after(&with_retry_after("Tue, 01 Dec 2026 09:00:00 GMT"), now),
            Some(Duration::ZERO),
            "a date gone by: now"
        );
        assert_eq!(retry_after(&with_retry_after("soon"), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn the_hint_is_capped_and_tries_run_out() {
        let p = Policy {
            max_tries: 3,
            retry_after_cap: Duration::from_secs(5),
            ..Policy::default()
        };
        let mut b = p.backoff();
        assert_eq!(
            p.next_wait(&mut b, Some(Duration::from_secs(600))),
            Some(Duration::from_secs(5)),
            "a long Retry-After is cut to the cap"
        );
        let second = p.next_wait(&mut b, None).unwrap();
        assert!(
            second >= p.first_backoff && second <= p.max_backoff * 2,
            "{second:?}"
        );
        assert_eq!(p.next_wait(&mut b, None), None, "three tries, two waits");
    }

    #[test]
    fn which_statuses_are_worth_another_try() {
        assert_eq!(
            Transient::status(StatusCode::TOO_MANY_REQUESTS),
            Some(Transient::Throttled)
        );
        assert_eq!(
            Transient::status(StatusCode::SERVICE_UNAVAILABLE),
            Some(Transient::ServerError(503))
        );
        assert_eq!(Transient::status(StatusCode::NOT_IMPLEMENTED), None);
        assert_eq!(Transient::status(StatusCode::NOT_FOUND), None);
        assert!(!Transient::Throttled.host_failing());
        assert!(Transient::ServerError(502).host_failing());
    }
}
