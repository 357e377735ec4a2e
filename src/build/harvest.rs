//! Harvest, don't reinstall: the installed files of pinned distributions, taken from a
//! scanned image that has exactly that version, as its final filesystem shows them
//! (whiteouts applied, later layers winning), each checked against its `RECORD` hash.
//! The bytes that ran in production are the bytes the runtime image carries.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::Read;

use base64::Engine;
use sha2::{Digest, Sha256};

use crate::scan::analyze::python::RecordEntry;
use crate::scan::layer::{FileFact, LayerFacts, normalize, resolve_link};
use crate::scan::source::FoundImage;

/// One distribution to take from one image.
#[derive(Debug, Clone)]
pub struct Wanted {
    /// PEP 503 name and exact version.
    pub name: String,
    pub version: String,
    /// The source image's `site-packages` directory holding it (no leading `/`).
    pub site: String,
}

/// A file as the new layer will hold it.
#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    File { data: Vec<u8>, mode: u32 },
    Symlink { target: String },
}

impl Content {
    /// What identifies it: the file's SHA-256, or where the symlink points.
    pub fn digest(&self) -> String {
        match self {
            Content::File { data, .. } => crate::scan::source::sha256_digest(data),
            Content::Symlink { target } => format!("symlink to {target}"),
        }
    }
}

/// The folders (or files) Docker storage's `files=` copied into a flow's image, as image
/// paths without the leading `/`; empty when it copied none.
pub fn copied_in(flow: &crate::inventory::Flow) -> Vec<String> {
    flow.requirement
        .as_ref()
        .map(|r| {
            r.parity
                .files
                .iter()
                .map(|d| d.trim_matches('/').to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// A [`stream`] filter: the paths at or under any of `roots`.
pub fn under(roots: &[String]) -> impl Fn(&str) -> bool + '_ {
    move |p: &str| {
        roots.iter().any(|r| {
            p == r
                || p.strip_prefix(r.as_str())
                    .is_some_and(|x| x.starts_with('/'))
        })
    }
}

/// What one distribution brings: its files by path relative to `site-packages` (RECORD's
/// own form, so `../../../bin/tool` for a console script).
#[derive(Debug, Clone)]
pub struct Harvested {
    pub name: String,
    pub version: String,
    /// The `*.dist-info` directory name (`pandas-1.5.3.dist-info`).
    pub dist_info: String,
    pub files: BTreeMap<String, Content>,
}

/// Why a distribution cannot be harvested.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum HarvestError {
    #[error(
        "{dist} is not installed in {image} (no {site}/*.dist-info with that name and version)"
    )]
    NotInstalled {
        dist: String,
        image: String,
        site: String,
    },
    #[error("{dist} in {image} has no RECORD (nor installed-files.txt): its files are unknown")]
    NoRecord { dist: String, image: String },
    #[error("{dist} in {image}: {path} is listed in RECORD but missing from the image")]
    Missing {
        dist: String,
        image: String,
        path: String,
    },
    #[error(
        "{dist} in {image}: {path} does not match its RECORD hash ({expected}, the file hashes to {actual})"
    )]
    HashMismatch {
        dist: String,
        image: String,
        path: String,
        expected: String,
        actual: String,
    },
    #[error("{dist} in {image}: RECORD path {path:?} leaves the image root")]
    UnsafePath {
        dist: String,
        image: String,
        path: String,
    },
    #[error("reading {image}: {message}")]
    Read { image: String, message: String },
}

/// `sha256=<urlsafe base64, no padding>`, as pip writes RECORD.
pub fn record_hash(bytes: &[u8]) -> String {
    format!(
        "sha256={}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(bytes))
    )
}

/// `site` joined with a RECORD path, normalized (`..` resolved); `None` above the root.
pub fn join(site: &str, rel: &str) -> Option<String> {
    resolve_link(&format!("{site}/x"), rel)
}

/// Find each wanted distribution's RECORD in the squashed facts, then stream the image's
/// layers once and keep exactly the files those RECORDs list.
pub fn harvest(
    image: &str,
    found: &FoundImage,
    facts: &[LayerFacts],
    wanted: &[Wanted],
) -> Result<Vec<Harvested>, HarvestError> {
    let refs: Vec<&LayerFacts> = facts.iter().collect();
    let view = crate::scan::squash::build_view(&refs);
    // per distribution: its dist-info dir and RECORD rows
    let mut plans: Vec<(Wanted, String, Vec<RecordEntry>)> = vec![];
    for w in wanted {
        let prefix = format!("{}/", w.site);
        let dist_info = view.iter().find_map(|(path, (_, fact))| {
            let rest = path.strip_prefix(&prefix)?;
            let (dir, file) = rest.split_once('/')?;
            let metadata = (file == "METADATA" && dir.ends_with(".dist-info"))
                || (file == "PKG-INFO" && dir.ends_with(".egg-info"));
            if !metadata {
                return None;
            }
            match fact {
                FileFact::DistMetadata { meta }
                    if crate::rules::normalize(&meta.name) == w.name
                        && meta.version == w.version =>
                {
                    Some(dir.to_string())
                }
                _ => None,
            }
        });
        let Some(dir) = dist_info else {
            return Err(HarvestError::NotInstalled {
                dist: format!("{} {}", w.name, w.version),
                image: image.into(),
                site: w.site.clone(),
            });
        };
        // a wheel's RECORD, or a legacy install's list of its files
        let record = if dir.ends_with(".egg-info") {
            format!("{}/{dir}/installed-files.txt", w.site)
        } else {
            format!("{}/{dir}/RECORD", w.site)
        };
        let rows = match view.get(record.as_str()) {
            Some((_, FileFact::Record { summary })) if !summary.files.is_empty() => {
                summary.files.clone()
            }
            _ => {
                return Err(HarvestError::NoRecord {
                    dist: format!("{} {}", w.name, w.version),
                    image: image.into(),
                });
            }
        };
        plans.push((w.clone(), dir, rows));
    }

    // every path of the image some RECORD lists
    let mut want_path: HashSet<String> = HashSet::new();
    for (w, _, rows) in &plans {
        for r in rows {
            let Some(abs) = join(&w.site, &r.path) else {
                return Err(HarvestError::UnsafePath {
                    dist: format!("{} {}", w.name, w.version),
                    image: image.into(),
                    path: r.path.clone(),
                });
            };
            want_path.insert(abs);
        }
    }
    let mut got = stream(image, found, facts, &|p: &str| want_path.contains(p))?;

    let mut out = vec![];
    for (w, dir, rows) in plans {
        let mut files = BTreeMap::new();
        for r in &rows {
            let abs = join(&w.site, &r.path).expect("checked above");
            let Some(content) = got.remove(&abs) else {
                return Err(HarvestError::Missing {
                    dist: format!("{} {}", w.name, w.version),
                    image: image.into(),
                    path: r.path.clone(),
                });
            };
            if let (Content::File { data, .. }, Some(expected)) = (&content, &r.hash) {
                let actual = record_hash(data);
                if &actual != expected {
                    return Err(HarvestError::HashMismatch {
                        dist: format!("{} {}", w.name, w.version),
                        image: image.into(),
                        path: r.path.clone(),
                        expected: expected.clone(),
                        actual,
                    });
                }
            }
            files.insert(r.path.clone(), content);
        }
        out.push(Harvested {
            name: w.name,
            version: w.version,
            dist_info: dir,
            files,
        });
    }
    Ok(out)
}

/// Read every layer in order and keep the wanted paths as the final filesystem has them.
pub fn stream(
    image: &str,
    found: &FoundImage,
    facts: &[LayerFacts],
    want: &dyn Fn(&str) -> bool,
) -> Result<HashMap<String, Content>, HarvestError> {
    let read_err = |message: String| HarvestError::Read {
        image: image.into(),
        message,
    };
    let mut have: HashMap<String, Content> = HashMap::new();
    for (l, f) in found.layers.iter().zip(facts) {
        // whiteouts and opaque dirs hide what is below, then the layer's own files go on
        let hidden = |path: &str| {
            f.whiteouts
                .iter()
                .chain(&f.opaque_dirs)
                .any(|w| path == w || path.starts_with(&format!("{w}/")))
        };
        have.retain(|p, _| !hidden(p) || f.opaque_dirs.iter().any(|o| p == o));
        // every layer is read: the facts list only files of interest, so they cannot say
        // which layers hold a distribution's other files
        let blob = found
            .store
            .open(&l.key)
            .map_err(|e| read_err(format!("layer {}: {e}", l.key)))?;
        let tar_stream =
            crate::scan::layer::decompressed(blob).map_err(|e| read_err(e.to_string()))?;
        let mut archive = tar::Archive::new(tar_stream);
        let mut this_layer: HashMap<String, Content> = HashMap::new();
        let mut links: Vec<(String, String)> = vec![];
        for entry in archive.entries().map_err(|e| read_err(e.to_string()))? {
            let mut entry = entry.map_err(|e| read_err(e.to_string()))?;
            let Ok(path) = normalize(&entry.path_bytes()) else {
                continue;
            };
            if !want(&path) {
                continue;
            }
            let kind = entry.header().entry_type();
            if kind.is_symlink() {
                let target = entry
                    .link_name_bytes()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                this_layer.insert(path, Content::Symlink { target });
            } else if kind.is_hard_link() {
                let target = entry
                    .link_name_bytes()
                    .map(|b| normalize(&b).unwrap_or_default())
                    .unwrap_or_default();
                links.push((path, target));
            } else if kind.is_file() || kind == tar::EntryType::Continuous {
                let mode = entry.header().mode().unwrap_or(0o644) & 0o7777;
                let mut data = Vec::with_capacity(entry.size() as usize);
                entry
                    .read_to_end(&mut data)
                    .map_err(|e| read_err(format!("{path}: {e}")))?;
                this_layer.insert(path, Content::File { data, mode });
            }
        }
        // a hard link takes its target's content (same layer, or the view below)
        for (path, target) in links {
            let c = this_layer
                .get(&target)
                .or_else(|| have.get(&target))
                .cloned()
                .ok_or_else(|| {
                    read_err(format!(
                        "{path} is a hard link to {target}, whose content was not harvested"
                    ))
                })?;
            this_layer.insert(path, c);
        }
        have.extend(this_layer);
    }
    Ok(have)
}

/// Every distribution `site` holds in the squashed facts: `(name, version, dist-info dir,
/// RECORD paths)`; what a base brings and the new layer may have to white out.
pub fn installed(facts: &[LayerFacts], site: &str) -> Vec<(String, String, String, Vec<String>)> {
    let refs: Vec<&LayerFacts> = facts.iter().collect();
    let view = crate::scan::squash::build_view(&refs);
    let prefix = format!("{site}/");
    let mut out = vec![];
    let mut seen = BTreeSet::new();
    for (path, (_, fact)) in &view {
        let Some(rest) = path.strip_prefix(&prefix) else {
            continue;
        };
        let Some((dir, "METADATA" | "PKG-INFO")) = rest.split_once('/') else {
            continue;
        };
        if let FileFact::DistMetadata { meta } = fact
            && seen.insert(dir.to_string())
        {
            let list = if dir.ends_with(".egg-info") {
                "installed-files.txt"
            } else {
                "RECORD"
            };
            let rows = match view.get(format!("{site}/{dir}/{list}").as_str()) {
                Some((_, FileFact::Record { summary })) => {
                    summary.files.iter().map(|r| r.path.clone()).collect()
                }
                _ => vec![],
            };
            out.push((
                crate::rules::normalize(&meta.name),
                meta.version.clone(),
                dir.to_string(),
                rows,
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_hashes_are_written_as_pip_writes_them() {
        // `python -c "import hashlib,base64;print(base64.urlsafe_b64encode(hashlib.sha256(b'hello\\n').digest()).rstrip(b'='))"`
        assert_eq!(
            record_hash(b"hello\n"),
            "sha256=WJG1tSLV3whtD_CxEPvZ0hu0_HFjrzTQgoai6Eb2vgM"
        );
    }

    #[test]
    fn record_paths_resolve_against_site_packages() {
        let site = "usr/local/lib/python3.11/site-packages";
        assert_eq!(
            join(site, "../../../bin/prefect").as_deref(),
            Some("usr/local/bin/prefect")
        );
        assert_eq!(
            join(site, "pandas/__init__.py").as_deref(),
            Some("usr/local/lib/python3.11/site-packages/pandas/__init__.py")
        );
    }
}
