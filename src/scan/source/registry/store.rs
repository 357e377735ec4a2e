//! Blobs of one registry repository, through `oci-client`.
//!
//! Layer analysis is synchronous (a rayon worker streams, decompresses and untars), so a
//! blob's async byte stream is bridged into a `Read` on the worker's thread. oci-client
//! verifies each blob against its digest as the stream ends; a mismatch surfaces as a
//! read error and fails that layer. Small blobs (configs) are kept in a content-addressed
//! disk cache, so a warm re-scan fetches none.

use std::collections::HashMap;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oci_client::Reference;
use oci_client::errors::OciDistributionError;
use oci_client::manifest::OciDescriptor;

use crate::scan::source::{BlobStore, sha256_digest};

/// What the repository's stores share: the client, its runtime, the small-blob cache.
pub struct Shared {
    pub client: oci_client::Client,
    pub runtime: tokio::runtime::Handle,
    pub registry: String,
    /// `<cache>/registry/blobs`, when caching.
    pub small_blob_dir: Option<PathBuf>,
    pub retry_tries: u32,
}

pub struct RepoStore {
    pub shared: Arc<Shared>,
    pub repository: String,
    /// Sizes and media types from the manifests, by digest.
    pub known: Mutex<HashMap<String, (u64, String)>>,
}

fn retryable(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::ServerError { code, .. } => *code == 429 || *code >= 500,
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|x| {
            format!("{:?}", x.code)
                .to_ascii_uppercase()
                .contains("TOOMANYREQUESTS")
        }),
        OciDistributionError::RequestError(r) => r.is_connect() || r.is_timeout(),
        _ => false,
    }
}

/// oci-client errors carry URLs; blob URLs hold no secrets, but keep messages short.
fn describe(e: &OciDistributionError) -> String {
    match e {
        OciDistributionError::RequestError(r) => super::http::without_url(r),
        other => other.to_string(),
    }
}

impl RepoStore {
    fn reference(&self, digest: &str) -> Reference {
        Reference::with_digest(
            self.shared.registry.clone(),
            self.repository.clone(),
            digest.to_string(),
        )
    }

    fn descriptor(&self, digest: &str) -> OciDescriptor {
        let known = self.known.lock().expect("store lock").get(digest).cloned();
        let (size, media_type) = known.unwrap_or((0, String::new()));
        OciDescriptor {
            digest: digest.to_string(),
            size: size as i64,
            media_type,
            ..Default::default()
        }
    }

    fn open_stream(&self, digest: &str) -> io::Result<oci_client::client::SizedStream> {
        let reference = self.reference(digest);
        let desc = self.descriptor(digest);
        let client = &self.shared.client;
        self.shared.runtime.block_on(async {
            let mut tries = 0;
            loop {
                tries += 1;
                match client.pull_blob_stream(&reference, &desc).await {
                    Ok(s) => return Ok(s),
                    Err(e) if retryable(&e) && tries < self.shared.retry_tries => {
                        tokio::time::sleep(Duration::from_millis(250 << tries.min(7))).await;
                    }
                    Err(e) => {
                        return Err(io::Error::other(format!(
                            "{}/{}@{digest}: {}",
                            self.shared.registry,
                            self.repository,
                            describe(&e)
                        )));
                    }
                }
            }
        })
    }

    fn small_blob_path(&self, digest: &str) -> Option<PathBuf> {
        let dir = self.shared.small_blob_dir.as_ref()?;
        let key = crate::scan::source::blob_key(digest).ok()?;
        Some(dir.join(key.replace('/', "-")))
    }
}

impl BlobStore for RepoStore {
    fn open(&self, key: &str) -> io::Result<Box<dyn Read + Send + '_>> {
        let stream = self.open_stream(key)?;
        let reader = tokio_util::io::StreamReader::new(stream.stream);
        Ok(Box::new(tokio_util::io::SyncIoBridge::new_with_handle(
            reader,
            self.shared.runtime.clone(),
        )))
    }

    fn size(&self, key: &str) -> io::Result<u64> {
        self.known
            .lock()
            .expect("store lock")
            .get(key)
            .map(|k| k.0)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{key} is not named by any manifest"),
                )
            })
    }

    fn read_small(&self, key: &str) -> io::Result<Vec<u8>> {
        let cached = self.small_blob_path(key);
        if let Some(p) = &cached
            && let Ok(bytes) = std::fs::read(p)
            && sha256_digest(&bytes) == key
        {
            return Ok(bytes);
        }
        let bytes = crate::scan::source::read_small_from(self, key)?;
        if let Some(p) = cached
            && sha256_digest(&bytes) == key
        {
            super::write_atomically(&p, &bytes);
        }
        Ok(bytes)
    }
}
