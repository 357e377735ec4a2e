//! What the benchmarks share: the median of repeated runs (these machines are noisy, so
//! every figure is a median, and every result a ratio against a baseline of the same run).
#![allow(dead_code)]

use std::time::{Duration, Instant};

pub fn median(mut d: Vec<Duration>) -> Duration {
    d.sort();
    d[d.len() / 2]
}

/// Run `f` `rounds` times: the median time and the last result.
pub fn time<T>(rounds: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut times = vec![];
    let mut last = None;
    for _ in 0..rounds {
        let t = Instant::now();
        let out = f();
        times.push(t.elapsed());
        last = Some(out);
    }
    (median(times), last.expect("rounds > 0"))
}
