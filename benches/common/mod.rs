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

/// Build a corpus into `dir` unless the last build there was of the same specs (the
/// fixture builder's source and the spec files' text are the key).
pub fn build_once(
    dir: &std::path::Path,
    spec_dirs: &[&str],
    build: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut key = include_str!("../../src/fixture/build.rs").to_string();
    for d in spec_dirs {
        let mut files: Vec<_> = std::fs::read_dir(root.join(d))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        files.sort();
        for f in files {
            key.push_str(&std::fs::read_to_string(f)?);
        }
    }
    let stamp = dir.join("specs.stamp");
    let hash = unsprawl::scan::source::sha256_digest(key.as_bytes());
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(hash.as_str()) {
        return Ok(());
    }
    let _ = std::fs::remove_dir_all(dir);
    build()?;
    std::fs::write(stamp, hash)?;
    Ok(())
}
