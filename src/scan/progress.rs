//! Progress of a scan, from its first request: a bar on a terminal, JSON lines for
//! machines, or nothing (the default off a terminal, so CI logs stay clean).
//!
//! A registry is first *found out* (catalog, tags, manifests: counted as they come, on
//! a spinner), then its distinct layers are read (a bar over their stored bytes, with
//! layers and whole images done of their totals, and an ETA from the bytes' rate).

use std::io::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProgressMode {
    /// A bar when stderr is a terminal and `CI` is unset; otherwise quiet.
    #[default]
    Auto,
    /// One JSON object per step and per analysed layer on stderr.
    Json,
    Quiet,
}

/// A handle on the scan's progress; clones report to the same bar.
#[derive(Clone, Default)]
pub struct Progress(Kind);

#[derive(Clone, Default)]
enum Kind {
    Bar(indicatif::ProgressBar),
    Json,
    #[default]
    Quiet,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Kind::Bar(_) => "Progress::Bar",
            Kind::Json => "Progress::Json",
            Kind::Quiet => "Progress::Quiet",
        })
    }
}

const LAYERS: &str =
    "{spinner} {msg} {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}";

impl Progress {
    /// Start reporting: a spinner until the layers are known.
    pub fn start(mode: ProgressMode) -> Self {
        use std::io::IsTerminal;
        Progress(match mode {
            ProgressMode::Json => Kind::Json,
            ProgressMode::Quiet => Kind::Quiet,
            ProgressMode::Auto
                if std::io::stderr().is_terminal() && std::env::var_os("CI").is_none() =>
            {
                let bar = indicatif::ProgressBar::new_spinner();
                bar.enable_steady_tick(std::time::Duration::from_millis(120));
                bar.set_message("finding images");
                Kind::Bar(bar)
            }
            ProgressMode::Auto => Kind::Quiet,
        })
    }

    /// A finding-out step of one source: `step` is `repositories`, `tags` or
    /// `manifests`; `done` of `total` when the total is known.
    pub fn finding(&self, source: &str, step: &str, done: usize, total: Option<usize>) {
        match &self.0 {
            Kind::Bar(b) => b.set_message(match total {
                Some(t) => format!("{source}: {step} {done}/{t}"),
                None => format!("{source}: {done} {step}"),
            }),
            // about a hundred lines per step, not one per tag of 50,000
            Kind::Json
                if total.is_some_and(|t| done != t && !done.is_multiple_of((t / 100).max(1))) => {}
            Kind::Json => {
                let line = serde_json::json!({
                    "event": "finding", "source": source, "step": step,
                    "done": done, "total": total,
                });
                let _ = writeln!(std::io::stderr().lock(), "{line}");
            }
            Kind::Quiet => {}
        }
    }

    /// The layers to read are known: `layers` of `bytes` stored bytes, and the images
    /// whose every layer is already known (from the cache) of all of them.
    pub fn reading(&self, layers: usize, bytes: u64, images_done: usize, images: usize) {
        match &self.0 {
            Kind::Bar(b) if layers > 0 => {
                b.set_style(
                    indicatif::ProgressStyle::with_template(LAYERS)
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                b.set_length(bytes);
                b.set_position(0);
                b.reset_eta();
                b.set_message(message(0, layers, images_done, images));
            }
            Kind::Json => {
                let line = serde_json::json!({
                    "event": "reading", "layers": layers, "stored_bytes": bytes,
                    "images_done": images_done, "images": images,
                });
                let _ = writeln!(std::io::stderr().lock(), "{line}");
            }
            _ => {}
        }
    }

    /// One layer is done (`error` says why not, if it failed).
    pub fn layer_done(&self, layer: LayerDone<'_>) {
        match &self.0 {
            Kind::Bar(b) => {
                b.inc(layer.bytes);
                b.set_message(message(
                    layer.done,
                    layer.total,
                    layer.images_done,
                    layer.images,
                ));
            }
            Kind::Json => {
                let line = serde_json::json!({
                    "event": "layer", "done": layer.done, "total": layer.total,
                    "diff_id": layer.diff_id, "stored_bytes": layer.bytes,
                    "images_done": layer.images_done, "images": layer.images,
                    "error": layer.error,
                });
                let _ = writeln!(std::io::stderr().lock(), "{line}");
            }
            Kind::Quiet => {}
        }
    }

    pub fn finish(&self) {
        if let Kind::Bar(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}

/// What [`Progress::layer_done`] reports.
pub struct LayerDone<'a> {
    pub done: usize,
    pub total: usize,
    pub diff_id: &'a str,
    pub bytes: u64,
    pub images_done: usize,
    pub images: usize,
    pub error: Option<&'a str>,
}

fn message(done: usize, total: usize, images_done: usize, images: usize) -> String {
    format!("layers {done}/{total}, images {images_done}/{images}")
}
