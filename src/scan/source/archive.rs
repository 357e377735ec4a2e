//! `docker save` tarballs in all three shapes: the classic `manifest.json` +
//! `<id>/layer.tar`, Docker 25+'s OCI layout with a `manifest.json` beside it, and the
//! containerd image store's gzip-compressed layers. A compressed archive
//! (`docker save | gzip`) is decompressed once to a temporary file so members can be
//! read by seeking, in parallel.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use super::{BlobStore, FoundImage, LayerRef, SourceProblem, TarStore, oci_layout, read_small};
use crate::inventory::SourceRef;

/// One entry of a `docker save` `manifest.json`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SaveEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

pub struct Opened {
    pub images: Vec<FoundImage>,
    pub problems: Vec<SourceProblem>,
}

/// Open an archive and list its images.
pub fn open(path: &Path, temp_dir: &Path) -> Result<Opened, String> {
    let source = SourceRef {
        kind: "archive".into(),
        location: path.display().to_string(),
    };
    open_as(path, temp_dir, source)
}

/// Open an archive whose images are recorded as coming from `source` (a Docker
/// engine's save stream is an archive, but its images live in the engine).
pub fn open_as(path: &Path, temp_dir: &Path, source: SourceRef) -> Result<Opened, String> {
    let store = Arc::new(index_archive(path, temp_dir)?);
    let mut problems = Vec::new();

    let from_layout = if store.exists("oci-layout") {
        let w = oci_layout::walk(store.clone(), &source);
        Some(w)
    } else {
        None
    };

    if !store.exists("manifest.json") {
        return match from_layout {
            Some(w) => Ok(Opened {
                images: w.images,
                problems: w.problems,
            }),
            None => Err(format!(
                "{} is neither a docker save archive (no manifest.json) nor an OCI layout (no oci-layout)",
                path.display()
            )),
        };
    }
    let bytes = read_small(store.as_ref(), "manifest.json").map_err(|e| e.to_string())?;
    let entries: Vec<SaveEntry> = serde_json::from_slice(&bytes).map_err(|e| {
        format!(
            "{}: manifest.json is not a docker save manifest: {e}",
            path.display()
        )
    })?;

    // What the OCI index (Docker 25+) knows: manifest digests and layer media types.
    let by_config: HashMap<String, FoundImage> = from_layout
        .map(|w| {
            w.images
                .into_iter()
                .filter_map(|i| i.config_digest.clone().map(|c| (c, i)))
                .collect()
        })
        .unwrap_or_default();

    let mut images = Vec::new();
    for e in entries {
        let config_key = normalize_member(&e.config);
        let config_digest = digest_from_member(&config_key);
        let known = config_digest.as_ref().and_then(|d| by_config.get(d));
        let layers: Arc<[LayerRef]> = e
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let key = normalize_member(l);
                let digest = digest_from_member(&key).filter(|_| key.starts_with("blobs/"));
                let media_type = known
                    .and_then(|k| k.layers.get(i))
                    .map(|l| l.media_type.clone())
                    .unwrap_or_else(|| {
                        if key.starts_with("blobs/") {
                            ""
                        } else {
                            "application/vnd.docker.image.rootfs.diff.tar"
                        }
                        .to_string()
                    });
                LayerRef {
                    size: store.size(&key).ok(),
                    key,
                    digest,
                    media_type,
                }
            })
            .collect();
        let tags = e.repo_tags.unwrap_or_default();
        let make = |reference: Option<String>| FoundImage {
            source: source.clone(),
            reference,
            manifest_digest: known.and_then(|k| k.manifest_digest.clone()),
            config_key: config_key.clone(),
            config_digest: config_digest.clone(),
            layers: layers.clone(),
            store: store.clone(),
            digest_checked_by_store: false,
            also: Vec::new(),
        };
        if tags.is_empty() {
            images.push(make(None));
        } else {
            images.extend(tags.into_iter().map(|t| make(Some(t))));
        }
    }
    if images.is_empty() {
        problems.push(SourceProblem {
            what: source.location.clone(),
            message: "manifest.json lists no images".into(),
        });
    }
    Ok(Opened { images, problems })
}

fn normalize_member(name: &str) -> String {
    name.trim_start_matches("./")
        .trim_start_matches('/')
        .to_string()
}

/// `sha256:<hex>` from `blobs/sha256/<hex>`, `<hex>.json` or `<hex>/layer.tar`.
fn digest_from_member(key: &str) -> Option<String> {
    let hex = key
        .strip_prefix("blobs/sha256/")
        .or_else(|| key.strip_suffix(".json"))?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| format!("sha256:{hex}"))
}

/// Index the members of a tar (decompressing it first if needed).
fn index_archive(path: &Path, temp_dir: &Path) -> Result<TarStore, String> {
    let fail = |e: io::Error| format!("cannot read archive {}: {e}", path.display());
    let mut reader = BufReader::new(File::open(path).map_err(fail)?);
    let head = reader.fill_buf().map_err(fail)?.to_vec();
    let (file, temp) = match head.as_slice() {
        [0x1f, 0x8b, ..] | [0x28, 0xb5, 0x2f, 0xfd, ..] => {
            let mut dec: Box<dyn Read> = if head[0] == 0x1f {
                Box::new(flate2::bufread::MultiGzDecoder::new(reader))
            } else {
                Box::new(zstd::stream::read::Decoder::with_buffer(reader).map_err(fail)?)
            };
            let mut tmp = crate::scan::scratch::file(temp_dir, "archive").map_err(|e| {
                format!(
                    "cannot create a temporary file in {}: {e}",
                    temp_dir.display()
                )
            })?;
            io::copy(&mut dec, &mut tmp)
                .map_err(|e| format!("{} is corrupt: {e}", path.display()))?;
            let tp = tmp.into_temp_path();
            (tp.to_path_buf(), Some(tp))
        }
        _ => (path.to_path_buf(), None),
    };
    let f = File::open(&file).map_err(fail)?;
    let mut ar = tar::Archive::new(BufReader::new(f));
    let mut members = HashMap::new();
    // Docker ≤ 24 writes a layer shared by two images once and links the second name to it.
    let mut links = Vec::new();
    for entry in ar.entries().map_err(fail)? {
        let entry =
            entry.map_err(|e| format!("{} is not a valid tar archive: {e}", path.display()))?;
        let name = normalize_member(&String::from_utf8_lossy(&entry.path_bytes()));
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            if let Some(target) = entry.link_name_bytes() {
                let target = String::from_utf8_lossy(&target).into_owned();
                let resolved = if kind.is_symlink() {
                    crate::scan::layer::resolve_link(&name, &target)
                } else {
                    Some(normalize_member(&target))
                };
                if let Some(t) = resolved {
                    links.push((name, t));
                }
            }
        } else if kind.is_file() {
            members.insert(name, (entry.raw_file_position(), entry.size()));
        }
    }
    for (name, target) in links {
        if let Some(&m) = members.get(&target) {
            members.insert(name, m);
        }
    }
    Ok(TarStore {
        file,
        members,
        _temp: temp,
    })
}
