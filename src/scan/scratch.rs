//! Where the big temporary files go (a decompressed `docker save` archive, an engine's
//! export): under the cache, named after the process that made them, so that a run
//! killed mid-way (SIGINT, SIGTERM, SIGKILL: no destructor runs) leaves nothing behind
//! for long. The next run removes every file of a process that is no longer alive.

use std::path::{Path, PathBuf};

const PREFIX: &str = "unsprawl-";

/// `<cache>/tmp` (the system temp dir's `unsprawl-tmp` without a cache), created, with
/// the files of dead runs removed.
pub fn dir(cache_root: Option<&Path>) -> PathBuf {
    let d = match cache_root {
        Some(r) => r.join("tmp"),
        None => std::env::temp_dir().join("unsprawl-tmp"),
    };
    if std::fs::create_dir_all(&d).is_ok() {
        sweep(&d);
    }
    d
}

/// A temporary file in `dir`, named `unsprawl-<pid>-<what>-…` (deleted when dropped).
pub fn file(dir: &Path, what: &str) -> std::io::Result<tempfile::NamedTempFile> {
    tempfile::Builder::new()
        .prefix(&format!("{PREFIX}{}-{what}-", std::process::id()))
        .tempfile_in(dir)
}

/// Remove the files of processes that are gone. Only names this module makes are
/// touched; a process whose liveness cannot be told is left alone.
pub fn sweep(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if alive(pid) == Some(false) && std::fs::remove_file(e.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Whether a process runs (Linux: `/proc/<pid>`; elsewhere unknown).
fn alive(pid: u32) -> Option<bool> {
    if pid == std::process::id() {
        return Some(true);
    }
    let proc = Path::new("/proc");
    proc.join("self")
        .exists()
        .then(|| proc.join(pid.to_string()).exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_runs_files_are_swept_and_a_live_ones_kept() {
        let d = tempfile::tempdir().unwrap();
        // a pid above the kernel's maximum (4194304) is never alive
        let dead = d.path().join("unsprawl-4999999-archive-abc");
        std::fs::write(&dead, b"x").unwrap();
        let mine = file(d.path(), "archive").unwrap();
        let other = d.path().join("someone-else.tar");
        std::fs::write(&other, b"x").unwrap();
        assert_eq!(sweep(d.path()), 1);
        assert!(!dead.exists());
        assert!(mine.path().exists(), "this process is alive");
        assert!(other.exists(), "not ours");
    }
}
