//! Blobs of one registry repository, read through the walk's [`Http`] client: the same
//! auth, retry policy and per-host breaker as every other request.
//!
//! Layer analysis is synchronous (a rayon worker streams, decompresses and untars), so a
//! blob's async body is bridged into a `Read` on the worker's thread ([`BlobReader`]).
//! A body that breaks off, stalls or trickles below the policy's minimum throughput is
//! asked for again from the byte it stopped at (`Range`; a registry that ignores it sends
//! the whole blob and the bytes already read are skipped), so the consumer never sees the
//! break. Every byte is hashed as it passes and the blob's digest checked at its end: a
//! mismatch fails that layer, naming the digest. Small blobs (configs) are kept in a
//! content-addressed disk cache, so a warm re-scan fetches none.

use std::collections::HashMap;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::TryStreamExt;
use reqwest::{Method, StatusCode};
use sha2::{Digest, Sha256, Sha512};

use super::http::{Attempt, Http, HttpError};
use crate::net::Transient;
use crate::scan::source::{BlobStore, sha256_digest};

/// What the repository's stores share: the client, its runtime, the small-blob cache.
pub struct Shared {
    pub http: Arc<Http>,
    pub runtime: tokio::runtime::Handle,
    pub registry: String,
    /// `<cache>/registry/blobs`, when caching.
    pub small_blob_dir: Option<PathBuf>,
}

pub struct RepoStore {
    pub shared: Arc<Shared>,
    pub repository: String,
    /// Sizes and media types from the manifests, by digest.
    pub known: Mutex<HashMap<String, (u64, String)>>,
}

/// The digest's own algorithm (OCI allows sha512 beside sha256).
#[derive(Clone)]
enum Hasher {
    Sha256(Sha256),
    Sha512(Sha512),
}

impl Hasher {
    fn for_digest(digest: &str) -> Hasher {
        if digest.starts_with("sha512:") {
            Hasher::Sha512(Sha512::new())
        } else {
            Hasher::Sha256(Sha256::new())
        }
    }

    fn update(&mut self, b: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(b),
            Hasher::Sha512(h) => h.update(b),
        }
    }

    fn digest(&self) -> String {
        match self.clone() {
            Hasher::Sha256(h) => format!("sha256:{}", hex::encode(h.finalize())),
            Hasher::Sha512(h) => format!("sha512:{}", hex::encode(h.finalize())),
        }
    }
}

type Body = tokio_util::io::SyncIoBridge<
    tokio_util::io::StreamReader<
        std::pin::Pin<Box<dyn futures_util::Stream<Item = io::Result<bytes::Bytes>> + Send>>,
        bytes::Bytes,
    >,
>;

/// One blob's bytes, whole and verified, however many requests it takes.
pub struct BlobReader<'a> {
    store: &'a RepoStore,
    digest: String,
    /// From the manifest, when it named the blob.
    size: Option<u64>,
    url: url::Url,
    scope: String,
    attempt: Attempt,
    body: Option<Body>,
    /// Bytes handed to the consumer (and hashed).
    delivered: u64,
    hasher: Hasher,
    /// A whole blob sent again where a range was asked for: bytes to drop first.
    skip: u64,
    /// Throughput since `window_start`.
    window_start: Instant,
    window_bytes: u64,
    done: bool,
}

impl RepoStore {
    fn label(&self, digest: &str) -> String {
        format!("{}/{}@{digest}", self.shared.registry, self.repository)
    }

    /// The reader for a blob; nothing is sent until the first read.
    pub fn reader(&self, digest: &str) -> BlobReader<'_> {
        let http = &self.shared.http;
        let size = self
            .known
            .lock()
            .expect("store lock")
            .get(digest)
            .map(|k| k.0);
        BlobReader {
            store: self,
            digest: digest.to_string(),
            size,
            url: http
                .base
                .join(&format!("/v2/{}/blobs/{digest}", self.repository))
                .expect("registry paths are valid URLs"),
            scope: format!("repository:{}:pull", self.repository),
            attempt: http.attempt(),
            body: None,
            delivered: 0,
            hasher: Hasher::for_digest(digest),
            skip: 0,
            window_start: Instant::now(),
            window_bytes: 0,
            done: false,
        }
    }

    fn small_blob_path(&self, digest: &str) -> Option<PathBuf> {
        let dir = self.shared.small_blob_dir.as_ref()?;
        let key = crate::scan::source::blob_key(digest).ok()?;
        Some(dir.join(key.replace('/', "-")))
    }
}

impl BlobReader<'_> {
    fn http(&self) -> &Http {
        &self.store.shared.http
    }

    fn error(&self, e: impl std::fmt::Display) -> io::Error {
        io::Error::other(format!("{}: {e}", self.store.label(&self.digest)))
    }

    /// Ask for the bytes from `delivered` on.
    fn open(&mut self) -> io::Result<()> {
        let from = (self.delivered > 0).then_some(self.delivered);
        let shared = self.store.shared.clone();
        let res = shared
            .runtime
            .block_on(shared.http.send(
                &Method::GET,
                &self.url,
                &self.scope,
                None,
                from,
                &mut self.attempt,
            ))
            .map_err(|e| self.error(e))?;
        let status = res.status();
        self.skip = match status {
            StatusCode::PARTIAL_CONTENT => 0,
            StatusCode::OK => self.delivered,
            s => {
                return Err(self.error(format!(
                    "HTTP {}{}",
                    s.as_u16(),
                    if s == StatusCode::NOT_FOUND {
                        " (the registry does not have this blob)"
                    } else {
                        ""
                    }
                )));
            }
        };
        let stream: std::pin::Pin<
            Box<dyn futures_util::Stream<Item = io::Result<bytes::Bytes>> + Send>,
        > = Box::pin(res.bytes_stream().map_err(io::Error::other));
        let _guard = shared.runtime.enter();
        self.body = Some(tokio_util::io::SyncIoBridge::new_with_handle(
            tokio_util::io::StreamReader::new(stream),
            shared.runtime.clone(),
        ));
        self.window_start = Instant::now();
        self.window_bytes = 0;
        Ok(())
    }

    /// This body broke (how: `what`): drop it and wait for the next try, or give up.
    fn broke(&mut self, what: String) -> io::Result<()> {
        self.body = None;
        let shared = self.store.shared.clone();
        let url = self.url.clone();
        shared
            .runtime
            .block_on(
                shared
                    .http
                    .again(&mut self.attempt, Transient::Connection, None, what, &url),
            )
            .map_err(|e| match e {
                HttpError::GaveUp { tries, last, .. } => self.error(format!(
                    "the body broke off {tries} times (last: {last}) after {} of {} bytes",
                    self.delivered,
                    self.size.map_or("?".to_string(), |s| s.to_string())
                )),
                e => self.error(e),
            })
    }

    /// The end of the body: all of the blob, and the blob it should be.
    fn finish(&mut self) -> io::Result<bool> {
        if let Some(size) = self.size
            && self.delivered < size
        {
            self.broke(format!(
                "the body ended after {} of {size} bytes",
                self.delivered
            ))?;
            return Ok(false);
        }
        let got = self.hasher.digest();
        if got != self.digest {
            return Err(self.error(format!(
                "digest mismatch: the registry sent {} bytes hashing to {got}",
                self.delivered
            )));
        }
        self.done = true;
        Ok(true)
    }
}

impl Read for BlobReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.body.is_none() {
                self.open()?;
            }
            let body = self.body.as_mut().expect("opened above");
            match body.read(buf) {
                Ok(0) => {
                    if self.finish()? {
                        return Ok(0);
                    }
                }
                Ok(mut n) => {
                    let mut start = 0;
                    if self.skip > 0 {
                        let k = (self.skip as usize).min(n);
                        self.skip -= k as u64;
                        start = k;
                    }
                    if start == n {
                        continue;
                    }
                    if start > 0 {
                        buf.copy_within(start..n, 0);
                        n -= start;
                    }
                    if self.size.is_some_and(|s| self.delivered + n as u64 > s) {
                        return Err(self.error(format!(
                            "the registry sent more than the {} bytes the manifest says",
                            self.size.unwrap_or_default()
                        )));
                    }
                    self.hasher.update(&buf[..n]);
                    self.delivered += n as u64;
                    self.window_bytes += n as u64;
                    let policy = self.http().policy();
                    let elapsed = self.window_start.elapsed();
                    if elapsed >= policy.throughput_window {
                        let rate = self.window_bytes as f64 / elapsed.as_secs_f64();
                        if rate < policy.min_throughput as f64 {
                            // hand over what came; the next read asks for the rest again
                            let what = format!(
                                "{rate:.0} bytes/s over {:.0?}, below the minimum of {} bytes/s",
                                elapsed, policy.min_throughput
                            );
                            self.broke(what)?;
                        } else {
                            self.window_start = Instant::now();
                            self.window_bytes = 0;
                        }
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => self.broke(e.to_string())?,
            }
        }
    }
}

impl BlobStore for RepoStore {
    fn open(&self, key: &str) -> io::Result<Box<dyn Read + Send + '_>> {
        Ok(Box::new(self.reader(key)))
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
