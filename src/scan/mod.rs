//! `scan`: find images in sources, analyse each distinct layer once, squash per image,
//! and write the inventory.
//!
//! The steps, each its own module:
//! 1. [`source`] lists images (manifest → config → layers) and opens blobs;
//! 2. [`layer`] streams one layer and keeps the facts that matter ([`cache`] remembers
//!    them by diff_id, so shared base layers are read once, ever);
//! 3. [`squash`] stacks an image's layer facts into what its filesystem shows.

pub mod analyze;
pub mod cache;
pub mod layer;
pub mod paths;
pub mod progress;
pub mod scratch;
pub mod source;
pub mod squash;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;

use crate::inventory::{
    HistoryEntry, Image, ImageSize, Inventory, Layer, Location, Platform, Problem, RuntimeConfig,
    SourceRef, Status,
};
use cache::LayerCache;
use layer::{Expected, LayerFacts, Limits};
use source::{BlobStore, FoundImage, read_small, sha256_digest};

/// The layer analyser's version (see [`crate::inventory::ANALYSER_VERSION`]).
pub use crate::inventory::ANALYSER_VERSION;

/// One input named on the command line.
#[derive(Debug, Clone)]
pub enum Input {
    OciDir(PathBuf),
    Archive(PathBuf),
    Registry(Box<source::registry::RegistryInput>),
    /// A Docker engine (Engine API).
    Engine(source::engine::EngineInput),
}

pub struct ScanOptions {
    pub limits: Limits,
    /// `None` disables the layer cache.
    pub cache_root: Option<PathBuf>,
    /// Worker threads for layer analysis (`None`: one per core).
    pub jobs: Option<usize>,
    /// Where compressed archives are unpacked for random access.
    pub temp_dir: PathBuf,
    /// Hash every uncompressed layer and compare with the config's diff_id, even where
    /// it costs a second SHA-256 pass (see [`layer`]).
    pub verify_diff_ids: bool,
    /// Skip images whose config says they were created before this time.
    pub since: Option<std::time::SystemTime>,
    pub progress: progress::ProgressMode,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            limits: Limits::default(),
            cache_root: Some(LayerCache::default_root()),
            jobs: None,
            temp_dir: std::env::temp_dir(),
            verify_diff_ids: false,
            since: None,
            progress: progress::ProgressMode::Auto,
        }
    }
}

/// Counters a caller may print or a benchmark may check.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ScanStats {
    pub images: usize,
    /// Requests sent to registries, by method (`GET`, `HEAD`), not counting blob streams.
    pub registry_requests: BTreeMap<String, u64>,
    /// The last rate limit a registry announced (`ratelimit-limit`, `-remaining`).
    pub rate_limits: Vec<(String, source::registry::http::RateLimit)>,
    pub unique_layers: usize,
    pub layers_from_cache: usize,
    pub layers_read: usize,
    pub bytes_read: u64,
}

/// An image found and its config read, before its layers are analysed.
struct Resolved {
    found: Vec<FoundImage>,
    id: String,
    config: Option<ParsedConfig>,
    errors: Vec<Problem>,
}

struct ParsedConfig {
    platform: Platform,
    created: Option<String>,
    runtime: RuntimeConfig,
    diff_ids: Vec<String>,
    /// `created_by` of each non-empty history entry, in layer order.
    layer_history: Vec<Option<String>>,
}

fn parse_config(bytes: &[u8]) -> Result<ParsedConfig, String> {
    let c: oci_spec::image::ImageConfiguration =
        serde_json::from_slice(bytes).map_err(|e| format!("image config is invalid: {e}"))?;
    let inner = c.config().clone().unwrap_or_default();
    let mut env: BTreeMap<String, String> = inner
        .env()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv, String::new()),
        })
        .collect();
    // a credential baked into the image never reaches a document
    let secrets = crate::secrets::redact_env(&mut env);
    let labels: BTreeMap<String, String> = inner
        .labels()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let history: Vec<HistoryEntry> = c
        .history()
        .clone()
        .unwrap_or_default()
        .iter()
        .map(|h| HistoryEntry {
            created: h.created().clone(),
            created_by: h
                .created_by()
                .as_deref()
                .map(|c| crate::secrets::scrub(c, &secrets)),
            empty_layer: h.empty_layer().unwrap_or(false),
        })
        .collect();
    let layer_history = history
        .iter()
        .filter(|h| !h.empty_layer)
        .map(|h| h.created_by.clone())
        .collect();
    Ok(ParsedConfig {
        platform: Platform {
            os: c.os().to_string(),
            architecture: c.architecture().to_string(),
            variant: c.variant().clone(),
        },
        created: c.created().clone(),
        runtime: RuntimeConfig {
            env,
            labels,
            entrypoint: inner.entrypoint().clone(),
            cmd: inner.cmd().clone(),
            working_dir: inner.working_dir().clone().filter(|w| !w.is_empty()),
            user: inner.user().clone().filter(|u| !u.is_empty()),
            history,
        },
        diff_ids: c.rootfs().diff_ids().clone(),
        layer_history,
    })
}

/// Read and verify the config of a found image.
fn read_config(f: &FoundImage) -> Result<(String, ParsedConfig), String> {
    let bytes = read_small(f.store.as_ref(), &f.config_key)
        .map_err(|e| format!("missing or unreadable config blob {}: {e}", f.config_key))?;
    let digest = sha256_digest(&bytes);
    if let Some(want) = &f.config_digest
        && want.starts_with("sha256:")
        && *want != digest
    {
        return Err(format!(
            "config blob {} hashes to {digest}, but the manifest names {want}",
            f.config_key
        ));
    }
    let parsed = parse_config(&bytes)?;
    if parsed.diff_ids.len() != f.layers.len() {
        return Err(format!(
            "the manifest lists {} layers but the config names {} diff_ids",
            f.layers.len(),
            parsed.diff_ids.len()
        ));
    }
    Ok((digest, parsed))
}

/// Which blob a layer is read from: its stored digest when the source names one (it is
/// verified on reading), else the diff_id (a plain tar, whose digest is its diff_id).
fn job_key(l: &source::LayerRef, diff_id: &str) -> String {
    l.digest.clone().unwrap_or_else(|| diff_id.to_string())
}

/// A layer to read: where its blob is and what it must hash to.
#[derive(Clone)]
struct LayerJob {
    store: Arc<dyn BlobStore>,
    key: String,
    expected: Expected,
}

impl LayerJob {
    /// Open the blob and analyse it, also reading `also`'s link targets
    /// ([`layer::analyse_also`]); the facts are cached when a cache is given.
    fn read(
        &self,
        limits: &layer::Limits,
        also: &BTreeMap<String, String>,
        cache: Option<&LayerCache>,
    ) -> Result<LayerFacts, layer::LayerError> {
        let facts = self
            .store
            .open(&self.key)
            .map_err(|source| layer::LayerError::Open {
                blob: self.key.clone(),
                source,
            })
            .and_then(|blob| layer::analyse_also(blob, &self.expected, limits, also))?;
        self.cache(&facts, cache);
        Ok(facts)
    }

    /// Keep `facts` in the layer cache (a failure only loses the entry).
    fn cache(&self, facts: &LayerFacts, cache: Option<&LayerCache>) {
        if let Some(c) = cache
            && let Err(e) = c.put(self.expected.digest.as_deref(), facts)
        {
            eprintln!("warning: cannot write layer cache entry: {e}");
        }
    }
}

/// Find, analyse and squash every image of `inputs`.
pub fn scan(inputs: &[Input], opts: &ScanOptions) -> (Inventory, ScanStats) {
    let mut sources = Vec::new();
    let mut errors = Vec::new();
    let mut found = Vec::new();
    let mut stats = ScanStats::default();
    // registry walks own the runtime their blob streams run on: keep them to the end
    let mut runtimes = Vec::new();
    // engine save streams are read lazily, like any archive: keep the files to the end
    let mut saved = Vec::new();
    let bar = progress::Progress::start(opts.progress);
    for input in inputs {
        match input {
            Input::Engine(e) => {
                let src = SourceRef {
                    kind: "engine".into(),
                    location: e.address(),
                };
                sources.push(src.clone());
                let opened = source::engine::export(e, &opts.temp_dir)
                    .map_err(|e| e.to_string())
                    .and_then(|x| {
                        errors.extend(x.problems.iter().cloned().map(Problem::from));
                        let o =
                            source::archive::open_as(x.file.path(), &opts.temp_dir, src.clone());
                        saved.push(x);
                        o
                    });
                match opened {
                    Ok(o) => {
                        found.extend(o.images);
                        errors.extend(o.problems.into_iter().map(Problem::from));
                    }
                    Err(message) => errors.push(Problem {
                        layer: None,
                        path: Some(src.location.clone()),
                        message,
                    }),
                }
            }
            Input::Registry(r) => {
                sources.push(SourceRef {
                    kind: "registry".into(),
                    location: r.host.clone(),
                });
                let mut r_in = (**r).clone();
                r_in.progress = bar.clone();
                match source::registry::walk(r_in, opts.cache_root.as_deref()) {
                    Ok(w) => {
                        found.extend(w.images);
                        errors.extend(w.problems.into_iter().map(Problem::from));
                        for (m, n) in w.requests {
                            *stats.registry_requests.entry(m).or_default() += n;
                        }
                        if w.rate_limit.limit.is_some() {
                            stats.rate_limits.push((r.host.clone(), w.rate_limit));
                        }
                        runtimes.push(w.runtime);
                    }
                    Err(message) => errors.push(Problem {
                        layer: None,
                        path: Some(r.host.clone()),
                        message,
                    }),
                }
            }
            Input::OciDir(p) => {
                let src = SourceRef {
                    kind: "oci-dir".into(),
                    location: p.display().to_string(),
                };
                let store: Arc<dyn BlobStore> = Arc::new(source::DirStore { root: p.clone() });
                let w = source::oci_layout::walk(store, &src);
                found.extend(w.images);
                errors.extend(w.problems.into_iter().map(Problem::from));
                sources.push(src);
            }
            Input::Archive(p) => {
                sources.push(SourceRef {
                    kind: "archive".into(),
                    location: p.display().to_string(),
                });
                match source::archive::open(p, &opts.temp_dir) {
                    Ok(o) => {
                        found.extend(o.images);
                        errors.extend(o.problems.into_iter().map(Problem::from));
                    }
                    Err(message) => errors.push(Problem {
                        layer: None,
                        path: Some(p.display().to_string()),
                        message,
                    }),
                }
            }
        }
    }

    // Read configs (in parallel: from a registry each is a round trip); the same config
    // digest from several places is one image.
    // Each config is read once per store: a million tags of one image in one repository
    // are one config read and one parsed config, not a million.
    let key_of = |f: &FoundImage| {
        (
            Arc::as_ptr(&f.store) as *const () as usize,
            f.config_key.clone(),
            f.config_digest.clone(),
            f.layers.len(),
        )
    };
    let mut first_of: HashMap<_, usize> = HashMap::new();
    let mut unique = Vec::new();
    for (i, f) in found.iter().enumerate() {
        first_of.entry(key_of(f)).or_insert_with(|| {
            unique.push(i);
            unique.len() - 1
        });
    }
    let mut configs: Vec<(Result<String, String>, Option<ParsedConfig>)> = unique
        .par_iter()
        .map(|&i| match read_config(&found[i]) {
            Ok((id, parsed)) => (Ok(id), Some(parsed)),
            Err(e) => (Err(e), None),
        })
        .collect();
    let mut by_id: BTreeMap<String, Resolved> = BTreeMap::new();
    for mut f in found {
        let at = first_of[&key_of(&f)];
        match configs[at].0.clone() {
            Ok(id) => {
                let r = by_id.entry(id.clone()).or_insert_with(|| Resolved {
                    found: Vec::new(),
                    id,
                    config: None,
                    errors: Vec::new(),
                });
                if r.config.is_none() {
                    r.config = configs[at].1.take();
                }
                // only the first found copy's layers are read; the rest are names
                if !r.found.is_empty() {
                    f.layers = Arc::from([]);
                }
                r.found.push(f);
            }
            Err(message) => {
                let id = f
                    .config_digest
                    .clone()
                    .unwrap_or_else(|| format!("unknown:{}", f.config_key));
                let r = by_id.entry(id.clone()).or_insert_with(|| Resolved {
                    found: Vec::new(),
                    id,
                    config: None,
                    errors: Vec::new(),
                });
                r.errors.push(Problem {
                    layer: None,
                    path: Some(f.config_key.clone()),
                    message,
                });
                r.found.push(f);
            }
        }
    }

    if let Some(since) = opts.since {
        // an image without a readable `created` is kept: better scanned than silently lost
        by_id.retain(|_, r| {
            r.config
                .as_ref()
                .and_then(|c| c.created.as_deref())
                .and_then(crate::time::parse)
                .is_none_or(|t| t >= since)
        });
    }

    // One job per distinct blob, from the first image that has it.
    let mut jobs: BTreeMap<String, LayerJob> = BTreeMap::new();
    for r in by_id.values() {
        let (Some(c), Some(f)) = (&r.config, r.found.first()) else {
            continue;
        };
        for (l, diff_id) in f.layers.iter().zip(&c.diff_ids) {
            jobs.entry(job_key(l, diff_id)).or_insert_with(|| LayerJob {
                store: f.store.clone(),
                key: l.key.clone(),
                expected: Expected {
                    digest: l.digest.clone(),
                    diff_id: diff_id.clone(),
                    stored_bytes: l.size.or_else(|| f.store.size(&l.key).ok()).unwrap_or(0),
                    verify_diff_id: opts.verify_diff_ids,
                    digest_checked_by_source: f.digest_checked_by_store,
                },
            });
        }
    }

    let cache =
        opts.cache_root
            .as_ref()
            .and_then(|root| match LayerCache::new(root, &opts.limits) {
                Ok(c) => Some(c),
                Err(e) => {
                    eprintln!(
                        "warning: layer cache at {} is unusable ({e}); scanning without it",
                        root.display()
                    );
                    None
                }
            });
    stats.unique_layers = jobs.len();
    let mut facts: HashMap<String, Result<LayerFacts, String>> = HashMap::new();
    let mut todo = Vec::new();
    let every_job = jobs.clone();
    for (key, job) in jobs {
        let cached = cache.as_ref().and_then(|c| {
            c.get_by_diff_id(&job.expected.diff_id).or_else(|| {
                job.expected
                    .digest
                    .as_deref()
                    .and_then(|d| c.get_by_digest(d, &job.expected.diff_id))
            })
        });
        match cached {
            Some(f) => {
                tracing::debug!("layer {key}: from the cache");
                stats.layers_from_cache += 1;
                facts.insert(key, Ok(f));
            }
            None => {
                tracing::debug!("layer {key}: not cached, to read");
                todo.push((key, job))
            }
        }
    }
    stats.layers_read = todo.len();
    stats.bytes_read = todo.iter().map(|(_, j)| j.expected.stored_bytes).sum();

    // largest first, so one big layer does not start last and finish alone
    todo.sort_by_key(|(_, j)| std::cmp::Reverse(j.expected.stored_bytes));
    let images_left = ImagesLeft::new(&by_id, &todo);
    bar.reading(
        todo.len(),
        stats.bytes_read,
        images_left.done(),
        images_left.images,
    );
    let done = AtomicUsize::new(0);
    let analyse_all = || -> Vec<(String, Result<LayerFacts, String>)> {
        todo.par_iter()
            .map(|(key, job)| {
                let result = job
                    .read(&opts.limits, &BTreeMap::new(), cache.as_ref())
                    .map_err(|e| e.to_string());
                bar.layer_done(progress::LayerDone {
                    done: done.fetch_add(1, Ordering::Relaxed) + 1,
                    total: todo.len(),
                    diff_id: &job.expected.diff_id,
                    bytes: job.expected.stored_bytes,
                    images_done: images_left.layer_done(key),
                    images: images_left.images,
                    error: result.as_ref().err().map(String::as_str),
                });
                (key.clone(), result)
            })
            .collect()
    };
    let analysed = match opts.jobs {
        Some(n) => match rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build()
        {
            Ok(pool) => pool.install(analyse_all),
            Err(_) => analyse_all(),
        },
        None => analyse_all(),
    };
    bar.finish();
    facts.extend(analysed);
    read_link_targets(&by_id, &every_job, &mut facts, cache.as_ref(), opts);

    let images: Vec<Image> = by_id.into_values().map(|r| assemble(r, &facts)).collect();
    stats.images = images.len();
    drop(runtimes);
    drop(saved);
    let mut inv = Inventory::new(sources, images, errors);
    inv.scanned_at =
        Some(humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string());
    (inv, stats)
}

/// How many images still wait for a layer: an image is done when the last of its
/// distinct layers to read is (what the progress bar counts as images done).
struct ImagesLeft {
    images: usize,
    /// For each layer to read, the images that wait for it.
    waiting: HashMap<String, Vec<usize>>,
    left: Vec<AtomicUsize>,
    done: AtomicUsize,
}

impl ImagesLeft {
    fn new(by_id: &BTreeMap<String, Resolved>, todo: &[(String, LayerJob)]) -> Self {
        let to_read: HashSet<&str> = todo.iter().map(|(k, _)| k.as_str()).collect();
        let mut waiting: HashMap<String, Vec<usize>> = HashMap::new();
        let mut left = Vec::with_capacity(by_id.len());
        for (i, r) in by_id.values().enumerate() {
            let mut keys = HashSet::new();
            if let (Some(c), Some(f)) = (&r.config, r.found.first()) {
                for (l, diff_id) in f.layers.iter().zip(&c.diff_ids) {
                    let k = job_key(l, diff_id);
                    if to_read.contains(k.as_str()) {
                        keys.insert(k);
                    }
                }
            }
            left.push(AtomicUsize::new(keys.len()));
            for k in keys {
                waiting.entry(k).or_default().push(i);
            }
        }
        let done = left
            .iter()
            .filter(|n| n.load(Ordering::Relaxed) == 0)
            .count();
        ImagesLeft {
            images: by_id.len(),
            waiting,
            left,
            done: AtomicUsize::new(done),
        }
    }

    fn done(&self) -> usize {
        self.done.load(Ordering::Relaxed)
    }

    /// `key` was read: the images done now.
    fn layer_done(&self, key: &str) -> usize {
        for &i in self.waiting.get(key).into_iter().flatten() {
            if self.left[i].fetch_sub(1, Ordering::Relaxed) == 1 {
                self.done.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.done()
    }
}

/// Hard links at paths the analysis reads (a `METADATA`) whose targets are files it did
/// not read where they were written (a lower layer, or earlier in the same one): read the
/// layers at and below each such link again, also reading those targets, and keep the
/// new facts (cached, so a warm re-scan does not read them again). Rare: ordinary images
/// have none, and then nothing is read twice.
fn read_link_targets(
    by_id: &BTreeMap<String, Resolved>,
    jobs: &BTreeMap<String, LayerJob>,
    facts: &mut HashMap<String, Result<LayerFacts, String>>,
    cache: Option<&LayerCache>,
    opts: &ScanOptions,
) {
    let mut also: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    // (the link's layer, the layers at and below it, target)
    let mut asked: Vec<(String, Vec<String>, String)> = vec![];
    for r in by_id.values() {
        let (Some(c), Some(f)) = (&r.config, r.found.first()) else {
            continue;
        };
        let keys: Vec<String> = f
            .layers
            .iter()
            .zip(&c.diff_ids)
            .map(|(l, d)| job_key(l, d))
            .collect();
        let Some(layer_facts) = keys
            .iter()
            .map(|k| facts.get(k).and_then(|x| x.as_ref().ok()))
            .collect::<Option<Vec<&LayerFacts>>>()
        else {
            continue;
        };
        for (at, target, link) in squash::dangling_links(&layer_facts) {
            for k in &keys[..=at] {
                also.entry(k.clone())
                    .or_default()
                    .insert(target.clone(), link.clone());
            }
            asked.push((keys[at].clone(), keys[..=at].to_vec(), target));
        }
    }
    for (key, wants) in also {
        let Some(job) = jobs.get(&key) else { continue };
        if let Ok(f) = job.read(&opts.limits, &wants, cache) {
            facts.insert(key, Ok(f));
        }
    }
    // a target in none of those layers: say so at the target, in the link's layer (and
    // cache it), so the link is reported and the layers are not read again next time
    for (link_layer, below, target) in asked {
        let found = below.iter().any(|k| {
            facts
                .get(k)
                .and_then(|f| f.as_ref().ok())
                .is_some_and(|f| f.files.contains_key(&target))
        });
        if found {
            continue;
        }
        if let Some(Ok(f)) = facts.get_mut(&link_layer) {
            f.files.insert(
                target.clone(),
                layer::FileFact::Unreadable {
                    message: format!(
                        "it is a hard link to /{target}, which no layer at or below it holds"
                    ),
                },
            );
            if let Some(job) = jobs.get(&link_layer) {
                job.cache(f, cache);
            }
        }
    }
}

/// Build one inventory image from its config and its layers' facts.
fn assemble(r: Resolved, facts: &HashMap<String, Result<LayerFacts, String>>) -> Image {
    let mut references: BTreeSet<String> = BTreeSet::new();
    let mut locations: BTreeSet<Location> = BTreeSet::new();
    for f in &r.found {
        for reference in f.reference.iter().chain(&f.also) {
            references.insert(reference.clone());
            locations.insert(Location {
                source: f.source.clone(),
                reference: Some(reference.clone()),
            });
        }
        if f.reference.is_none() {
            locations.insert(Location {
                source: f.source.clone(),
                reference: None,
            });
        }
    }
    let first = &r.found[0];
    let manifest_digest = r.found.iter().find_map(|f| f.manifest_digest.clone());
    let mut errors = r.errors;
    let Some(cfg) = r.config else {
        return Image {
            id: r.id,
            references: references.into_iter().collect(),
            locations: locations.into_iter().collect(),
            manifest_digest,
            platform: Platform::default(),
            created: None,
            size: ImageSize::default(),
            layers: Vec::new(),
            config: RuntimeConfig::default(),
            status: Status::Failed,
            errors,
            contents: None,
        };
    };

    let mut layers = Vec::new();
    let mut layer_facts = Vec::new();
    for (i, (l, diff_id)) in first.layers.iter().zip(&cfg.diff_ids).enumerate() {
        let f = facts.get(&job_key(l, diff_id));
        match f {
            // the same blob, verified for another image, hashes to something else
            Some(Ok(f)) if f.diff_id_verified && f.diff_id != *diff_id => errors.push(Problem {
                layer: Some(diff_id.clone()),
                path: Some(l.key.clone()),
                message: format!(
                    "layer diff_id mismatch: the config claims {diff_id}, the content hashes to {}",
                    f.diff_id
                ),
            }),
            Some(Ok(f)) => layer_facts.push(f),
            Some(Err(message)) => errors.push(Problem {
                layer: Some(diff_id.clone()),
                path: Some(l.key.clone()),
                message: message.clone(),
            }),
            None => errors.push(Problem {
                layer: Some(diff_id.clone()),
                path: Some(l.key.clone()),
                message: "layer was not analysed".into(),
            }),
        }
        let stored = l
            .size
            .or_else(|| first.store.size(&l.key).ok())
            .unwrap_or(0);
        layers.push(Layer {
            digest: l.digest.clone().unwrap_or_else(|| diff_id.clone()),
            diff_id: diff_id.clone(),
            diff_id_verified: f
                .and_then(|f| f.as_ref().ok())
                .is_some_and(|f| f.diff_id_verified && f.diff_id == *diff_id),
            media_type: l.media_type.clone(),
            stored_bytes: stored,
            uncompressed_bytes: f
                .and_then(|f| f.as_ref().ok())
                .map(|f| f.uncompressed_bytes),
            created_by: cfg.layer_history.get(i).cloned().flatten(),
        });
    }
    let size = ImageSize {
        stored_bytes: layers.iter().map(|l| l.stored_bytes).sum(),
        uncompressed_bytes: layers.iter().map(|l| l.uncompressed_bytes).sum(),
    };
    let (status, contents) = if layer_facts.len() == layers.len() {
        let (contents, problems) = squash::squash(&layer_facts, &cfg.runtime.env);
        errors.extend(problems);
        let status = if errors.is_empty() {
            Status::Ok
        } else {
            Status::Partial
        };
        (status, Some(contents))
    } else {
        (Status::Failed, None)
    };
    Image {
        id: r.id,
        references: references.into_iter().collect(),
        locations: locations.into_iter().collect(),
        manifest_digest,
        platform: cfg.platform,
        created: cfg.created,
        size,
        layers,
        config: cfg.runtime,
        status,
        errors,
        contents,
    }
}
