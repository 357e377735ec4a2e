//! How much the command line says on stderr: `--quiet` (errors only: the documents and
//! the exit code are the result), the default one-screen summary (a headline per stage and
//! at most [`LIST_LIMIT`] lines per list, the rest counted and left to the documents), and
//! `-v` (every line, every detail). `-vv` or `RUST_LOG` add tracing events (requests,
//! retries, cache hits) on top, filtered the `RUST_LOG` way.

use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Quiet = 0,
    Normal = 1,
    Verbose = 2,
}

/// Lines a list shows by default; `-v` shows them all.
pub const LIST_LIMIT: usize = 20;

static LEVEL: AtomicU8 = AtomicU8::new(Level::Normal as u8);

pub fn set(quiet: bool, verbose: u8) {
    let level = match (quiet, verbose) {
        (true, _) => Level::Quiet,
        (false, 0) => Level::Normal,
        _ => Level::Verbose,
    };
    LEVEL.store(level as u8, Ordering::Relaxed);
    // tracing: RUST_LOG as given, else -vv means unsprawl's debug events
    let filter = match std::env::var("RUST_LOG") {
        Ok(f) if !f.is_empty() => Some(f),
        _ if verbose >= 2 => Some("unsprawl=debug".to_string()),
        _ => None,
    };
    if let Some(f) = filter {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(f))
            .with_writer(std::io::stderr)
            .with_target(false)
            .try_init();
    }
}

pub fn level() -> Level {
    match LEVEL.load(Ordering::Relaxed) {
        0 => Level::Quiet,
        1 => Level::Normal,
        _ => Level::Verbose,
    }
}

/// `eprintln!` unless `--quiet`: what a command says about its progress and results.
macro_rules! say {
    ($($t:tt)*) => {
        if $crate::cli::say::level() >= $crate::cli::say::Level::Normal {
            eprintln!($($t)*);
        }
    };
}
pub(crate) use say;

/// Where a summary goes: stderr, or nowhere with `--quiet`.
pub fn summary() -> Box<dyn Write> {
    if level() >= Level::Normal {
        Box::new(std::io::stderr().lock())
    } else {
        Box::new(std::io::sink())
    }
}

/// Whether details (per-item notes, field diffs) are shown: `-v`.
pub fn details() -> bool {
    level() >= Level::Verbose
}

/// A list of lines, cut at [`LIST_LIMIT`] unless `-v`: the last line says how many more
/// there are and where they are.
pub struct List<'a> {
    out: &'a mut dyn Write,
    shown: usize,
    hidden: usize,
}

impl<'a> List<'a> {
    pub fn new(out: &'a mut dyn Write) -> Self {
        List {
            out,
            shown: 0,
            hidden: 0,
        }
    }

    /// Write one entry (its first line and any continuation lines), or count it.
    pub fn entry(&mut self, lines: &[String]) {
        if details() || self.shown < LIST_LIMIT {
            for l in lines {
                let _ = writeln!(self.out, "{l}");
            }
            self.shown += 1;
        } else {
            self.hidden += 1;
        }
    }

    /// Close the list, naming where the hidden entries are.
    pub fn finish(self, whole: &str) {
        if self.hidden > 0 {
            let _ = writeln!(
                self.out,
                "  … and {} more in {whole} (-v lists them all)",
                self.hidden
            );
        }
    }
}

/// `1 flow`, `2 flows`: the noun as English counts it.
pub fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_list_shows_its_first_entries_and_counts_the_rest() {
        // (the level is the default here: no test in this binary changes it)
        let mut out = Vec::new();
        let mut list = List::new(&mut out);
        for i in 0..25 {
            list.entry(&[format!("entry {i}"), format!("  detail {i}")]);
        }
        list.finish("plan.json");
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 2 * LIST_LIMIT + 1, "{text}");
        assert!(text.contains("entry 19\n  detail 19\n"));
        assert!(!text.contains("entry 20"));
        assert!(
            text.ends_with("  … and 5 more in plan.json (-v lists them all)\n"),
            "{text}"
        );
    }

    #[test]
    fn counts_read_as_english() {
        assert_eq!(
            count(1, "runtime image", "runtime images"),
            "1 runtime image"
        );
        assert_eq!(count(0, "flow", "flows"), "0 flows");
        assert_eq!(count(2, "flow", "flows"), "2 flows");
    }
}
