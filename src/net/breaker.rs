//! A per-host circuit breaker. A host that has failed `breaker_failures` tries in a row
//! for at least `breaker_window` is down: the requests left fail at once with
//! [`HostDown`] instead of each spending its own retries (a dead registry with a
//! thousand layers left costs seconds, not hours). A restart shorter than the window is
//! ridden out by the retries; after `breaker_cooldown` one probe goes through, and a
//! success closes the breaker again.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Policy;

/// The host is taken as down; nothing was sent.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "{host} is down: {failures} tries in a row failed over {:.0?} (last: {last}); the rest are not tried",
    window
)]
pub struct HostDown {
    pub host: String,
    pub failures: u32,
    pub window: Duration,
    pub last: String,
}

pub struct Breaker {
    host: String,
    failures: u32,
    window: Duration,
    cooldown: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Failed tries since the last success, and when the first of them was.
    in_a_row: u32,
    since: Option<Instant>,
    last: String,
    /// While open: when the next probe may go.
    probe_at: Option<Instant>,
}

impl Breaker {
    pub fn new(host: &str, policy: &Policy) -> Breaker {
        Breaker {
            host: host.to_string(),
            failures: policy.breaker_failures.max(1),
            window: policy.breaker_window,
            cooldown: policy.breaker_cooldown,
            state: Mutex::new(State::default()),
        }
    }

    fn is_open(&self, s: &State, now: Instant) -> bool {
        s.in_a_row >= self.failures
            && s.since
                .is_some_and(|t| now.duration_since(t) >= self.window)
    }

    /// May a try go out now? While the host is down only a probe per cooldown may.
    pub fn admit(&self) -> Result<(), HostDown> {
        let now = Instant::now();
        let mut s = self.state.lock().expect("breaker lock");
        if !self.is_open(&s, now) {
            return Ok(());
        }
        match s.probe_at {
            Some(t) if now < t => Err(HostDown {
                host: self.host.clone(),
                failures: s.in_a_row,
                window: now.duration_since(s.since.unwrap_or(now)),
                last: s.last.clone(),
            }),
            _ => {
                s.probe_at = Some(now + self.cooldown);
                Ok(())
            }
        }
    }

    pub fn succeeded(&self) {
        let mut s = self.state.lock().expect("breaker lock");
        *s = State::default();
    }

    /// A try failed in a way that says the host may be down (`what` names how, for the
    /// message: never a URL with credentials).
    pub fn failed(&self, what: &str) {
        let now = Instant::now();
        let mut s = self.state.lock().expect("breaker lock");
        s.in_a_row += 1;
        s.since.get_or_insert(now);
        s.last = what.to_string();
        if self.is_open(&s, now) && s.probe_at.is_none() {
            s.probe_at = Some(now + self.cooldown);
        }
    }

    pub fn host(&self) -> &str {
        &self.host
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(window_ms: u64, cooldown_ms: u64) -> Policy {
        Policy {
            breaker_failures: 3,
            breaker_window: Duration::from_millis(window_ms),
            breaker_cooldown: Duration::from_millis(cooldown_ms),
            ..Policy::default()
        }
    }

    #[test]
    fn opens_after_failures_in_a_row_over_the_window_and_probes_after_the_cooldown() {
        let b = Breaker::new("127.0.0.1:9", &policy(0, 50));
        for _ in 0..2 {
            b.failed("connection refused");
            assert!(b.admit().is_ok(), "two failures are not three");
        }
        b.failed("connection refused");
        let down = b.admit().unwrap_err();
        assert!(
            down.to_string()
                .starts_with("127.0.0.1:9 is down: 3 tries in a row failed")
                && down.to_string().contains("(last: connection refused)"),
            "{down}"
        );
        std::thread::sleep(Duration::from_millis(60));
        assert!(b.admit().is_ok(), "one probe after the cooldown");
        assert!(b.admit().is_err(), "only one");
        b.succeeded();
        assert!(b.admit().is_ok(), "the host is back");
    }

    #[test]
    fn a_short_outage_does_not_open_it() {
        let b = Breaker::new("h", &policy(10_000, 50));
        for _ in 0..10 {
            b.failed("reset");
        }
        assert!(b.admit().is_ok(), "failing for less than the window");
        b.succeeded();
        b.failed("reset");
        assert!(b.admit().is_ok());
    }
}
