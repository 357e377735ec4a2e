//! Where images come from. A source finds images (manifest → config → layers) and hands
//! out their blobs; it never analyses anything: OCI layouts, docker-save archives,
//! registries and Docker engines all have this one shape.

pub mod archive;
pub mod engine;
pub mod oci_layout;
pub mod registry;

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;

use crate::inventory::SourceRef;

/// Read access to the blobs of one source. Keys are paths inside the source
/// (`blobs/sha256/…` in an OCI layout, `abc…/layer.tar` in a classic `docker save`).
pub trait BlobStore: Send + Sync {
    fn open(&self, key: &str) -> io::Result<Box<dyn Read + Send + '_>>;
    fn size(&self, key: &str) -> io::Result<u64>;
    fn exists(&self, key: &str) -> bool {
        self.size(key).is_ok()
    }
    /// A small blob (manifest, index, config) whole; a store may serve it from a cache.
    fn read_small(&self, key: &str) -> io::Result<Vec<u8>> {
        read_small_from(self, key)
    }
}

/// Read a small blob (a manifest, index or config) whole, refusing absurd sizes.
pub fn read_small(store: &dyn BlobStore, key: &str) -> io::Result<Vec<u8>> {
    store.read_small(key)
}

/// The plain way to read a small blob: open it and read it, refusing absurd sizes.
pub fn read_small_from<S: BlobStore + ?Sized>(store: &S, key: &str) -> io::Result<Vec<u8>> {
    const MAX: u64 = 16 << 20;
    let size = store.size(key)?;
    if size > MAX {
        return Err(io::Error::other(format!(
            "{key} is {size} bytes, more than the {MAX} allowed for a manifest or config"
        )));
    }
    let mut buf = Vec::with_capacity(size as usize);
    store.open(key)?.take(MAX).read_to_end(&mut buf)?;
    Ok(buf)
}

/// Blobs as files under a directory (an OCI image layout).
pub struct DirStore {
    pub root: PathBuf,
}

impl BlobStore for DirStore {
    fn open(&self, key: &str) -> io::Result<Box<dyn Read + Send + '_>> {
        Ok(Box::new(File::open(self.root.join(key))?))
    }
    fn size(&self, key: &str) -> io::Result<u64> {
        let m = std::fs::metadata(self.root.join(key))?;
        if !m.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{key} is not a file"),
            ));
        }
        Ok(m.len())
    }
}

/// Blobs as members of an uncompressed tar file, opened by seeking to their data.
pub struct TarStore {
    pub file: PathBuf,
    /// member name (normalized) → (data offset, size)
    pub members: std::collections::HashMap<String, (u64, u64)>,
    /// Keeps a decompressed temporary copy alive as long as the store.
    pub _temp: Option<tempfile::TempPath>,
}

impl BlobStore for TarStore {
    fn open(&self, key: &str) -> io::Result<Box<dyn Read + Send + '_>> {
        let &(offset, size) = self.members.get(key).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{key} is not in the archive"),
            )
        })?;
        let mut f = File::open(&self.file)?;
        f.seek(SeekFrom::Start(offset))?;
        Ok(Box::new(
            io::BufReader::with_capacity(256 << 10, f).take(size),
        ))
    }
    fn size(&self, key: &str) -> io::Result<u64> {
        self.members.get(key).map(|m| m.1).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{key} is not in the archive"),
            )
        })
    }
}

/// A layer as a manifest lists it.
#[derive(Debug, Clone)]
pub struct LayerRef {
    pub key: String,
    /// Digest of the stored blob, when the source names one.
    pub digest: Option<String>,
    pub media_type: String,
    pub size: Option<u64>,
}

/// An image found in a source, not yet read beyond its manifest.
#[derive(Clone)]
pub struct FoundImage {
    pub source: SourceRef,
    pub reference: Option<String>,
    /// Other references to the same manifest in the same place (a registry's tags of
    /// one image): one found image for them all, so a million tags cost their names.
    pub also: Vec<String>,
    pub manifest_digest: Option<String>,
    pub config_key: String,
    pub config_digest: Option<String>,
    /// Shared between the tags of one manifest: a million tags are one list.
    pub layers: Arc<[LayerRef]>,
    pub store: Arc<dyn BlobStore>,
    /// The store itself verifies each blob against its digest (oci-client does), so the
    /// layer reader need not hash the stored bytes again.
    pub digest_checked_by_store: bool,
}

/// Something a source could not make sense of, outside any one image.
#[derive(Debug, Clone)]
pub struct SourceProblem {
    pub what: String,
    pub message: String,
}

impl From<SourceProblem> for crate::inventory::Problem {
    fn from(p: SourceProblem) -> Self {
        crate::inventory::Problem {
            layer: None,
            path: Some(p.what),
            message: p.message,
        }
    }
}

/// Manifest media types every source must tell apart.
pub mod media {
    pub const INDEX_TYPES: [&str; 2] = [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ];
    pub const MANIFEST_TYPES: [&str; 2] = [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ];
    /// Config types of runnable images; anything else is an artifact (signature, SBOM…).
    pub const CONFIG_TYPES: [&str; 2] = [
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.docker.container.image.v1+json",
    ];

    /// What a manifest document is, from its media type (the descriptor's or the
    /// registry's `Content-Type`, else the document's own `mediaType`).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Kind {
        Index,
        Manifest,
        /// Docker schema 1 (legacy, signed): not analysed.
        Schema1,
        /// An OCI artifact manifest: not an image, skipped.
        Artifact,
        /// A type that is neither: refused, named.
        Unknown(String),
    }

    pub fn classify(declared: &str, bytes: &[u8]) -> Kind {
        let doc = serde_json::from_slice::<serde_json::Value>(bytes).ok();
        let own = doc
            .as_ref()
            .and_then(|v| v.get("mediaType"))
            .and_then(|m| m.as_str())
            .unwrap_or_default();
        let declared = declared.split(';').next().unwrap_or_default().trim();
        let media = if declared.is_empty() || declared == "application/json" {
            own
        } else {
            declared
        };
        let schema = doc.as_ref().and_then(|v| v.get("schemaVersion")).cloned();
        if media.contains("distribution.manifest.v1") || schema == Some(serde_json::json!(1)) {
            return Kind::Schema1;
        }
        if INDEX_TYPES.contains(&media) {
            return Kind::Index;
        }
        if MANIFEST_TYPES.contains(&media) {
            return Kind::Manifest;
        }
        if media == "application/vnd.oci.artifact.manifest.v1+json" {
            return Kind::Artifact;
        }
        if media.is_empty() {
            // an OCI document may leave mediaType out: tell by shape
            return match doc {
                Some(v) if v.get("manifests").is_some() => Kind::Index,
                Some(v) if v.get("config").is_some() && v.get("layers").is_some() => Kind::Manifest,
                _ => Kind::Unknown("(none)".into()),
            };
        }
        Kind::Unknown(media.to_string())
    }

    /// The problem for a manifest that is not one: what it is, said plainly.
    pub fn refusal(kind: &Kind, digest: &str) -> Option<String> {
        match kind {
            Kind::Schema1 => Some(format!(
                "manifest {digest} is Docker schema 1 (legacy): not analysed (re-push the image to convert it)"
            )),
            Kind::Unknown(t) => Some(format!(
                "manifest {digest} has media type {t}, which is neither an image manifest nor an index: not analysed"
            )),
            _ => None,
        }
    }

    /// Index entries that are not images to analyse: BuildKit attestations and
    /// `unknown/unknown` platforms, and platforms other than `want` when one is asked for.
    pub fn skip_entry(d: &oci_spec::image::Descriptor, want: Option<&(String, String)>) -> bool {
        let attestation = d
            .annotations()
            .as_ref()
            .and_then(|a| a.get("vnd.docker.reference.type"))
            .is_some_and(|t| t == "attestation-manifest");
        let platform = d
            .platform()
            .as_ref()
            .map(|p| (p.os().to_string(), p.architecture().to_string()));
        let unknown = platform
            .as_ref()
            .is_some_and(|(o, a)| o == "unknown" && a == "unknown");
        let filtered = matches!((want, &platform), (Some(w), Some(p)) if w != p);
        attestation || unknown || filtered
    }
}

/// The key of a blob in an OCI layout, checking the digest cannot escape `blobs/`.
pub fn blob_key(digest: &str) -> Result<String, String> {
    let (alg, hex) = digest
        .split_once(':')
        .ok_or_else(|| format!("{digest:?} is not a digest (algorithm:hex)"))?;
    let want = match alg {
        "sha256" => 64,
        "sha512" => 128,
        _ => return Err(format!("{digest:?} uses an unsupported digest algorithm")),
    };
    if hex.len() != want
        || !hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return Err(format!("{digest:?} is not a well-formed {alg} digest"));
    }
    Ok(format!("blobs/{alg}/{hex}"))
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_keys_cannot_escape() {
        let ok = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            blob_key(&ok).unwrap(),
            format!("blobs/sha256/{}", "a".repeat(64))
        );
        assert!(blob_key("sha256:../../etc/passwd").is_err());
        assert!(blob_key("md5:abc").is_err());
        assert!(blob_key("nocolon").is_err());
    }
}
