//! Reading a migration journal from a test while an apply runs (or after it stopped).
#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The complete entries with this `op` (a line being written is skipped).
pub fn entries(path: &Path, op: &str) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["op"] == op)
        .collect()
}

/// The flow keys of the `done` entries, in order.
pub fn done_keys(path: &Path) -> Vec<String> {
    entries(path, "done")
        .iter()
        .map(|e| e["key"].as_str().unwrap().to_string())
        .collect()
}

/// Wait (at most 120 s) until the journal has `n` `done` entries; `still_running` is
/// asserted on every look.
pub fn wait_for_done(path: &Path, n: usize, mut still_running: impl FnMut() -> bool) {
    let start = Instant::now();
    while done_keys(path).len() < n {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no progress in {}",
            path.display()
        );
        assert!(still_running(), "the apply ended before the test acted");
        std::thread::sleep(Duration::from_millis(20));
    }
}
