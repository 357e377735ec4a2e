//! Progress of the layer analysis: a bar on a terminal, JSON lines for machines, or
//! nothing (the default off a terminal, so CI logs stay clean).

use std::io::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProgressMode {
    /// A bar when stderr is a terminal and `CI` is unset; otherwise quiet.
    #[default]
    Auto,
    /// One JSON object per analysed layer on stderr.
    Json,
    Quiet,
}

pub enum Progress {
    Bar(indicatif::ProgressBar),
    Json,
    Quiet,
}

impl Progress {
    /// Start reporting on `layers` layers of `bytes` stored bytes.
    pub fn start(mode: ProgressMode, layers: usize, bytes: u64) -> Self {
        use std::io::IsTerminal;
        match mode {
            ProgressMode::Json => Progress::Json,
            ProgressMode::Quiet => Progress::Quiet,
            ProgressMode::Auto
                if layers > 0
                    && std::io::stderr().is_terminal()
                    && std::env::var_os("CI").is_none() =>
            {
                let bar = indicatif::ProgressBar::new(bytes);
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{spinner} layers {msg} {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                bar.set_message(format!("0/{layers}"));
                Progress::Bar(bar)
            }
            ProgressMode::Auto => Progress::Quiet,
        }
    }

    /// One layer is done (`error` says why not, if it failed).
    pub fn layer_done(
        &self,
        done: usize,
        total: usize,
        diff_id: &str,
        bytes: u64,
        error: Option<&str>,
    ) {
        match self {
            Progress::Bar(b) => {
                b.inc(bytes);
                b.set_message(format!("{done}/{total}"));
            }
            Progress::Json => {
                let line = serde_json::json!({
                    "event": "layer", "done": done, "total": total,
                    "diff_id": diff_id, "stored_bytes": bytes, "error": error,
                });
                let _ = writeln!(std::io::stderr().lock(), "{line}");
            }
            Progress::Quiet => {}
        }
    }

    pub fn finish(&self) {
        if let Progress::Bar(b) = self {
            b.finish_and_clear();
        }
    }
}
