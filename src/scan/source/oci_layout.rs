//! OCI image layouts (`oci-layout`, `index.json`, `blobs/…`), on disk or inside a
//! Docker 25+ `docker save` tarball. Indexes are followed to every platform manifest;
//! attestations and other artifacts are skipped.

use std::sync::Arc;

use oci_spec::image::{ImageIndex, ImageManifest};

use super::{BlobStore, FoundImage, LayerRef, SourceProblem, blob_key, read_small, sha256_digest};
use crate::inventory::SourceRef;

use super::media::CONFIG_TYPES;

/// Annotations that name an image inside a layout, best first.
const NAME_ANNOTATIONS: [&str; 2] = [
    "io.containerd.image.name",
    "org.opencontainers.image.ref.name",
];

/// Everything found in one layout: images, and problems that belong to no image.
#[derive(Default)]
pub struct Walk {
    pub images: Vec<FoundImage>,
    pub problems: Vec<SourceProblem>,
}

/// Walk `index.json` of a layout held in `store`.
pub fn walk(store: Arc<dyn BlobStore>, source: &SourceRef) -> Walk {
    let mut out = Walk::default();
    if !store.exists("oci-layout") {
        out.problems.push(SourceProblem {
            what: source.location.clone(),
            message: "not an OCI image layout: there is no oci-layout file".into(),
        });
        return out;
    }
    let index = match read_small(store.as_ref(), "index.json")
        .map_err(|e| e.to_string())
        .and_then(|b| {
            serde_json::from_slice::<ImageIndex>(&b)
                .map_err(|e| format!("index.json is not a valid OCI index: {e}"))
        }) {
        Ok(i) => i,
        Err(message) => {
            out.problems.push(SourceProblem {
                what: format!("{}/index.json", source.location),
                message,
            });
            return out;
        }
    };
    let mut w = Walker {
        store,
        source: source.clone(),
        out,
    };
    for d in index.manifests() {
        w.descriptor(d, None, 0);
    }
    w.out
}

struct Walker {
    store: Arc<dyn BlobStore>,
    source: SourceRef,
    out: Walk,
}

fn annotated_name(d: &oci_spec::image::Descriptor) -> Option<String> {
    let a = d.annotations().as_ref()?;
    NAME_ANNOTATIONS.iter().find_map(|k| a.get(*k).cloned())
}

impl Walker {
    fn problem(&mut self, what: String, message: String) {
        self.out.problems.push(SourceProblem { what, message });
    }

    /// Read a blob named by a descriptor and check its digest.
    fn fetch(&mut self, digest: &str, name: &str) -> Option<Vec<u8>> {
        let key = match blob_key(digest) {
            Ok(k) => k,
            Err(e) => {
                self.problem(name.to_string(), e);
                return None;
            }
        };
        match read_small(self.store.as_ref(), &key) {
            Ok(bytes) => {
                let got = sha256_digest(&bytes);
                if digest.starts_with("sha256:") && got != digest {
                    self.problem(
                        name.to_string(),
                        format!("blob {key} hashes to {got}, but is referenced as {digest}"),
                    );
                    return None;
                }
                Some(bytes)
            }
            Err(e) => {
                self.problem(
                    name.to_string(),
                    format!("missing or unreadable blob {key}: {e}"),
                );
                None
            }
        }
    }

    fn descriptor(
        &mut self,
        d: &oci_spec::image::Descriptor,
        parent_name: Option<&str>,
        depth: u32,
    ) {
        if super::media::skip_entry(d, None) {
            return;
        }
        let name = annotated_name(d).or(parent_name.map(str::to_string));
        let digest = d.digest().to_string();
        let what = format!(
            "{}{}",
            self.source.location,
            name.as_deref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_else(|| format!(" ({digest})"))
        );
        if depth > 4 {
            self.problem(what, "indexes nest more than 4 deep".into());
            return;
        }
        let Some(bytes) = self.fetch(&digest, &what) else {
            return;
        };
        let kind = super::media::classify(d.media_type().as_ref(), &bytes);
        if let Some(message) = super::media::refusal(&kind, &digest) {
            self.problem(what, message);
            return;
        }
        if kind == super::media::Kind::Artifact {
            return;
        }
        if kind == super::media::Kind::Index {
            match serde_json::from_slice::<ImageIndex>(&bytes) {
                Ok(index) => {
                    for child in index.manifests() {
                        self.descriptor(child, name.as_deref(), depth + 1);
                    }
                }
                Err(e) => self.problem(what, format!("index {digest} is invalid: {e}")),
            }
            return;
        }
        let manifest = match serde_json::from_slice::<ImageManifest>(&bytes) {
            Ok(m) => m,
            Err(e) => {
                self.problem(what, format!("manifest {digest} is invalid: {e}"));
                return;
            }
        };
        let config_type = manifest.config().media_type().to_string();
        if !CONFIG_TYPES.contains(&config_type.as_str()) {
            return; // an artifact (signature, SBOM, helm chart…), not an image
        }
        let config_digest = manifest.config().digest().to_string();
        let config_key = match blob_key(&config_digest) {
            Ok(k) => k,
            Err(e) => {
                self.problem(what, e);
                return;
            }
        };
        let mut layers = Vec::new();
        for l in manifest.layers() {
            let ld = l.digest().to_string();
            match blob_key(&ld) {
                Ok(key) => layers.push(LayerRef {
                    key,
                    digest: Some(ld),
                    media_type: l.media_type().to_string(),
                    size: Some(l.size()),
                }),
                Err(e) => {
                    self.problem(what.clone(), e);
                    return;
                }
            }
        }
        self.out.images.push(FoundImage {
            source: self.source.clone(),
            reference: name,
            manifest_digest: Some(digest),
            config_key,
            config_digest: Some(config_digest),
            layers: layers.into(),
            store: self.store.clone(),
            digest_checked_by_store: false,
            also: Vec::new(),
        });
    }
}
