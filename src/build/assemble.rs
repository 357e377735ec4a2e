//! The runtime image, byte for byte reproducible: one new layer (entries sorted, owner
//! root, fixed mtimes, gzip without a timestamp) on the base layers, an OCI config that
//! carries what a Python base needs and the plan's labels, and an OCI manifest.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use serde_json::{Value, json};

use super::harvest::{Content, Harvested, join};
use crate::scan::source::sha256_digest;

/// A fixed time for every entry and the config (`SOURCE_DATE_EPOCH=0`): the same plan
/// gives the same digests.
pub const EPOCH: &str = "1970-01-01T00:00:00Z";

/// A layer as the manifest lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerDesc {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    pub diff_id: String,
}

/// The new layer: compressed bytes and how to name them.
pub struct NewLayer {
    pub blob: Vec<u8>,
    pub desc: LayerDesc,
    pub entries: usize,
}

/// Write `harvested` under `site` (the runtime image's site-packages), plus whiteouts
/// for `hide` (paths of another version of a pinned distribution in the base).
pub fn layer(
    site: &str,
    harvested: &[Harvested],
    extra: &BTreeMap<String, Content>,
    hide: &BTreeSet<String>,
) -> std::io::Result<NewLayer> {
    // root-relative files (OS packages and their dpkg records) first, the site's over them
    let mut files: BTreeMap<String, &Content> = extra.iter().map(|(p, c)| (p.clone(), c)).collect();
    for h in harvested {
        for (rel, c) in &h.files {
            if let Some(p) = join(site, rel) {
                files.insert(p, c);
            }
        }
    }
    let mut dirs: BTreeSet<String> = BTreeSet::new();
    for p in files.keys().chain(hide.iter()) {
        let mut cur = p.as_str();
        while let Some((parent, _)) = cur.rsplit_once('/') {
            dirs.insert(parent.to_string());
            cur = parent;
        }
    }
    // one sorted list: directories, files, whiteouts (`dir/.wh.name`)
    enum Entry<'a> {
        Dir,
        File(&'a Content),
        Whiteout,
    }
    let mut all: BTreeMap<String, Entry> = BTreeMap::new();
    for d in &dirs {
        all.insert(d.clone(), Entry::Dir);
    }
    for (p, c) in &files {
        all.insert(p.clone(), Entry::File(c));
    }
    for h in hide {
        let (parent, name) = h.rsplit_once('/').unwrap_or(("", h.as_str()));
        let wh = if parent.is_empty() {
            format!(".wh.{name}")
        } else {
            format!("{parent}/.wh.{name}")
        };
        all.insert(wh, Entry::Whiteout);
    }
    let mut tar = tar::Builder::new(Vec::new());
    tar.mode(tar::HeaderMode::Deterministic);
    let header = |kind: tar::EntryType, mode: u32, size: u64| {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(size);
        h
    };
    for (path, e) in &all {
        match e {
            Entry::Dir => {
                let mut h = header(tar::EntryType::Directory, 0o755, 0);
                tar.append_data(&mut h, format!("{path}/"), std::io::empty())?;
            }
            Entry::File(Content::File { data, mode }) => {
                let mut h = header(tar::EntryType::Regular, *mode, data.len() as u64);
                tar.append_data(&mut h, path, data.as_slice())?;
            }
            Entry::File(Content::Symlink { target }) => {
                let mut h = header(tar::EntryType::Symlink, 0o777, 0);
                tar.append_link(&mut h, path, target)?;
            }
            Entry::Whiteout => {
                let mut h = header(tar::EntryType::Regular, 0o644, 0);
                tar.append_data(&mut h, path, std::io::empty())?;
            }
        }
    }
    let raw = tar.into_inner()?;
    let diff_id = sha256_digest(&raw);
    let mut gz = flate2::GzBuilder::new().mtime(0).write(
        Vec::with_capacity(raw.len() / 2),
        flate2::Compression::new(6),
    );
    gz.write_all(&raw)?;
    let blob = gz.finish()?;
    Ok(NewLayer {
        desc: LayerDesc {
            media_type: OCI_LAYER_GZIP.into(),
            digest: sha256_digest(&blob),
            size: blob.len() as u64,
            diff_id,
        },
        blob,
        entries: all.len(),
    })
}

pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// The OCI media type for a layer blob of any type (Docker's name the same bytes).
pub fn oci_layer_type(media_type: &str) -> String {
    match media_type {
        "application/vnd.docker.image.rootfs.diff.tar.gzip" => OCI_LAYER_GZIP.into(),
        "application/vnd.docker.image.rootfs.diff.tar" | "application/x-tar" => {
            "application/vnd.oci.image.layer.v1.tar".into()
        }
        "application/vnd.docker.image.rootfs.diff.tar.zstd" => {
            "application/vnd.oci.image.layer.v1.tar+zstd".into()
        }
        other => other.into(),
    }
}

/// What the config says beyond its layers.
pub struct ConfigInput<'a> {
    pub os: &'a str,
    pub architecture: &'a str,
    pub env: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// `created_by` of each base layer, then the new layer's.
    pub history: Vec<String>,
    pub diff_ids: Vec<String>,
}

/// The image config as bytes (keys sorted: serde_json's maps are ordered).
pub fn config(c: &ConfigInput<'_>) -> Vec<u8> {
    let history: Vec<Value> = c
        .history
        .iter()
        .map(|h| json!({"created": EPOCH, "created_by": h}))
        .collect();
    let doc = json!({
        "architecture": c.architecture,
        "os": c.os,
        "created": EPOCH,
        "config": {
            "Env": c.env,
            "Labels": c.labels,
            "Cmd": ["python3"],
        },
        "rootfs": {"type": "layers", "diff_ids": c.diff_ids},
        "history": history,
    });
    serde_json::to_vec(&doc).expect("a JSON value serializes")
}

/// The OCI manifest as bytes.
pub fn manifest(
    config: &[u8],
    layers: &[LayerDesc],
    annotations: &BTreeMap<String, String>,
) -> Vec<u8> {
    let layers: Vec<Value> = layers
        .iter()
        .map(|l| json!({"mediaType": l.media_type, "digest": l.digest, "size": l.size}))
        .collect();
    let doc = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256_digest(config), "size": config.len()},
        "layers": layers,
        "annotations": annotations,
    });
    serde_json::to_vec(&doc).expect("a JSON value serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_files_give_the_same_layer_digest() {
        let h = Harvested {
            name: "x".into(),
            version: "1".into(),
            dist_info: "x-1.dist-info".into(),
            files: [
                (
                    "x/__init__.py".to_string(),
                    Content::File {
                        data: b"a".to_vec(),
                        mode: 0o644,
                    },
                ),
                (
                    "../../../bin/x".to_string(),
                    Content::File {
                        data: b"#!/bin/sh\n".to_vec(),
                        mode: 0o755,
                    },
                ),
            ]
            .into_iter()
            .collect(),
        };
        let site = "usr/local/lib/python3.11/site-packages";
        let hide: BTreeSet<String> = [format!("{site}/x-0.9.dist-info")].into_iter().collect();
        let a = layer(site, std::slice::from_ref(&h), &BTreeMap::new(), &hide).unwrap();
        let b = layer(site, &[h], &BTreeMap::new(), &hide).unwrap();
        assert_eq!(a.desc, b.desc);
        let mut names = vec![];
        let mut t = tar::Archive::new(flate2::read::GzDecoder::new(a.blob.as_slice()));
        for e in t.entries().unwrap() {
            let e = e.unwrap();
            assert_eq!(e.header().mtime().unwrap(), 0);
            names.push(e.path().unwrap().display().to_string());
        }
        assert!(names.contains(&"usr/local/bin/x".to_string()), "{names:?}");
        assert!(
            names.contains(&format!("{site}/.wh.x-0.9.dist-info")),
            "{names:?}"
        );
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
    }
}
