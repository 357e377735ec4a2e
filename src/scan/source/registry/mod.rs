//! A whole OCI registry as a source: repositories (catalog or a given list), their tags,
//! every platform manifest behind each tag, then the usual layer analysis.
//!
//! Requests, cheapest first: tags are listed; each tag's manifest digest is learned with
//! a `HEAD` (not counted as a pull by Docker Hub); a manifest is fetched (`GET`) only
//! when its digest is not in the content-addressed manifest cache. Configs are cached the
//! same way and layers through the layer cache, so a re-scan of an unchanged registry
//! sends only listing and `HEAD` requests.

pub mod auth;
pub mod http;
pub mod store;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use globset::{Glob, GlobMatcher};
use oci_spec::image::{ImageIndex, ImageManifest};
use reqwest::Method;
use url::Url;

use super::{FoundImage, LayerRef, SourceProblem, sha256_digest};
use crate::inventory::SourceRef;
use auth::Credentials;
use http::{Http, HttpError, MANIFEST_ACCEPT};
use store::{RepoStore, Shared};

use super::media::{CONFIG_TYPES, INDEX_TYPES};

/// What to scan in one registry.
#[derive(Debug, Clone)]
pub struct RegistryInput {
    /// `host[:port]`
    pub host: String,
    /// Exact images inside the registry: `(repository, tag or digest)`, as
    /// [`crate::reference::RegistryTarget`] reads them.
    pub references: Vec<(String, String)>,
    /// Repository names or globs (`team-*/**`); empty = every repository in the catalog.
    pub repos: Vec<String>,
    pub tag_glob: Option<String>,
    /// `(os, architecture)`; `None` = every platform.
    pub platform: Option<(String, String)>,
    pub plain_http: bool,
    pub insecure: bool,
    /// Certificate authorities to trust besides the system's (`--ca-file`).
    pub ca_certs: Vec<reqwest::Certificate>,
    pub credentials: Option<Credentials>,
    /// Requests in flight to this registry at once.
    pub concurrency: usize,
    /// `n=` for catalog and tag pages (`None`: the registry's default).
    pub page_size: Option<usize>,
    pub retry: crate::net::Policy,
    /// Where the catalog, tags and manifests found are counted as they come.
    pub progress: crate::scan::progress::Progress,
}

impl RegistryInput {
    pub fn new(host: &str) -> Self {
        RegistryInput {
            host: host.to_string(),
            references: Vec::new(),
            repos: Vec::new(),
            tag_glob: None,
            platform: None,
            plain_http: false,
            insecure: false,
            ca_certs: Vec::new(),
            progress: Default::default(),
            credentials: None,
            concurrency: 4,
            page_size: None,
            retry: crate::net::Policy::default(),
        }
    }
}

/// What a registry walk found, and what it cost.
pub struct Walk {
    pub images: Vec<FoundImage>,
    pub problems: Vec<SourceProblem>,
    /// Requests sent by method (`GET`, `HEAD`), for the summary and the tests.
    pub requests: HashMap<String, u64>,
    pub rate_limit: http::RateLimit,
    /// Keeps the runtime that layer streams use alive as long as the images.
    pub runtime: Arc<tokio::runtime::Runtime>,
}

/// Write a cache file via a temporary file and rename; a failure only loses the entry.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) {
    let Some(dir) = path.parent() else { return };
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    if let Ok(mut tmp) = tempfile::NamedTempFile::new_in(dir)
        && std::io::Write::write_all(&mut tmp, bytes).is_ok()
    {
        let _ = tmp.persist(path);
    }
}

struct Walker {
    input: RegistryInput,
    http: Arc<Http>,
    shared: Arc<Shared>,
    manifest_dir: Option<PathBuf>,
    stores: Mutex<HashMap<String, Arc<RepoStore>>>,
    /// Manifests read in this run, by digest (bounded by the distinct manifests, not the
    /// tags): the thousandth tag of one image costs a `HEAD`, not a `GET`.
    manifests: Mutex<HashMap<String, Arc<tokio::sync::OnceCell<SeenManifest>>>>,
    source: SourceRef,
}

fn glob(pattern: &str) -> Result<GlobMatcher, String> {
    Glob::new(pattern)
        .map(|g| g.compile_matcher())
        .map_err(|e| format!("{pattern:?} is not a valid glob: {e}"))
}

fn has_glob_chars(s: &str) -> bool {
    s.contains(['*', '?', '[', '{'])
}

/// Walk a registry. `cache_root` holds the manifest and config caches (`None`: no cache).
pub fn walk(input: RegistryInput, cache_root: Option<&Path>) -> Result<Walk, String> {
    let runtime = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the I/O runtime: {e}"))?,
    );
    let scheme = if input.plain_http { "http" } else { "https" };
    let base = Url::parse(&format!("{scheme}://{}/", input.host))
        .map_err(|e| format!("{:?} is not a registry host: {e}", input.host))?;
    let http = Http::new(
        base,
        input.credentials.clone(),
        input.concurrency,
        input.retry.clone(),
        input.insecure,
        &input.ca_certs,
    )
    .map_err(|e| e.to_string())?;
    let registry_dir = cache_root.map(|r| r.join("registry"));
    let http = Arc::new(http);
    let shared = Arc::new(Shared {
        http: http.clone(),
        runtime: runtime.handle().clone(),
        registry: input.host.clone(),
        small_blob_dir: registry_dir.as_ref().map(|d| d.join("blobs")),
    });
    let source = SourceRef {
        kind: "registry".into(),
        location: input.host.clone(),
    };
    let walker = Walker {
        http,
        shared,
        manifest_dir: registry_dir.map(|d| d.join("manifests")),
        stores: Mutex::new(HashMap::new()),
        manifests: Mutex::new(HashMap::new()),
        source,
        input,
    };
    let (images, problems) = runtime.block_on(walker.run())?;
    let requests = walker.http.sent.lock().expect("counter lock").clone();
    let rate_limit = walker
        .http
        .rate_limit
        .lock()
        .expect("rate limit lock")
        .clone();
    Ok(Walk {
        images,
        problems,
        requests,
        rate_limit,
        runtime,
    })
}

/// A manifest's bytes, digest and media type, as read once in this run.
type SeenManifest = (Arc<[u8]>, String, String);

/// One tag or digest to resolve: `(repository, tag-or-digest)`.
type Target = (String, String);

impl Walker {
    fn url(&self, path: &str) -> Url {
        self.http
            .base
            .join(path)
            .expect("registry paths are valid URLs")
    }

    fn store(&self, repo: &str) -> Arc<RepoStore> {
        self.stores
            .lock()
            .expect("stores lock")
            .entry(repo.to_string())
            .or_insert_with(|| {
                Arc::new(RepoStore {
                    shared: self.shared.clone(),
                    repository: repo.to_string(),
                    known: Mutex::new(HashMap::new()),
                })
            })
            .clone()
    }

    async fn run(&self) -> Result<(Vec<FoundImage>, Vec<SourceProblem>), String> {
        let mut problems = Vec::new();
        let targets: Vec<Target> = if self.input.references.is_empty() {
            let repos = self.repositories().await?;
            let host = &self.input.host;
            let progress = &self.input.progress;
            progress.finding(host, "repositories", repos.len(), None);
            let tag_glob = self.input.tag_glob.as_deref().map(glob).transpose()?;
            // bounded: a catalog of 100,000 repositories is not 100,000 requests at once
            let mut listed_repos = 0;
            let listed: Vec<_> = futures_util::stream::iter(repos.iter().map(|r| self.tags(r)))
                .buffered(self.input.concurrency.max(1) * 2)
                .inspect(|_| {
                    listed_repos += 1;
                    progress.finding(
                        host,
                        "tags of repositories",
                        listed_repos,
                        Some(repos.len()),
                    );
                })
                .collect()
                .await;
            let mut t = Vec::new();
            for (repo, tags) in repos.iter().zip(listed) {
                match tags {
                    Ok(tags) => t.extend(
                        tags.into_iter()
                            .filter(|tag| tag_glob.as_ref().is_none_or(|g| g.is_match(tag)))
                            .map(|tag| (repo.clone(), tag)),
                    ),
                    Err(e) => problems.push(SourceProblem {
                        what: format!("{}/{repo}", self.input.host),
                        message: format!("cannot list tags: {e}"),
                    }),
                }
            }
            t
        } else {
            self.input.references.clone()
        };

        // merged as they come: the tags of one manifest in one repository become one
        // found image with their names (bounded by the distinct images, not the tags)
        let mut resolved = futures_util::stream::iter(
            targets
                .iter()
                .map(|t| async move { (t, self.resolve(t).await) }),
        )
        .buffered(self.input.concurrency.max(1) * 2);
        let mut images: Vec<FoundImage> = Vec::new();
        let mut at: HashMap<(String, String, String), usize> = HashMap::new();
        let mut resolved_tags = 0;
        while let Some(((repo, tag), r)) = futures_util::StreamExt::next(&mut resolved).await {
            resolved_tags += 1;
            self.input.progress.finding(
                &self.input.host,
                "manifests of tags",
                resolved_tags,
                Some(targets.len()),
            );
            match r {
                Ok((found, skipped)) => {
                    for f in found {
                        let key = (
                            repo.clone(),
                            f.manifest_digest.clone().unwrap_or_default(),
                            f.config_key.clone(),
                        );
                        match at.get(&key) {
                            Some(&i) => images[i].also.extend(f.reference),
                            None => {
                                at.insert(key, images.len());
                                images.push(f);
                            }
                        }
                    }
                    problems.extend(skipped);
                }
                Err(message) => problems.push(SourceProblem {
                    what: reference_name(&self.input.host, repo, tag),
                    message,
                }),
            }
        }
        Ok((images, problems))
    }

    /// The repositories to scan: as given, or from the catalog filtered by globs.
    async fn repositories(&self) -> Result<Vec<String>, String> {
        let exact =
            !self.input.repos.is_empty() && !self.input.repos.iter().any(|r| has_glob_chars(r));
        if exact {
            return Ok(self.input.repos.clone());
        }
        let globs: Vec<GlobMatcher> = self
            .input
            .repos
            .iter()
            .map(|r| glob(r))
            .collect::<Result<_, _>>()?;
        let mut url = self.url("/v2/_catalog");
        if let Some(n) = self.input.page_size {
            url.query_pairs_mut().append_pair("n", &n.to_string());
        }
        #[derive(serde::Deserialize)]
        struct Catalog {
            #[serde(default)]
            repositories: Option<Vec<String>>,
        }
        let all = self
            .http
            .paged(url, "registry:catalog:*", |body| {
                serde_json::from_slice::<Catalog>(body)
                    .map(|c| c.repositories.unwrap_or_default())
                    .map_err(|e| format!("the catalog is not valid JSON: {e}"))
            })
            .await
            .map_err(|e| match e {
                HttpError::Status { status: 401 | 403 | 404, .. } | HttpError::Unauthorized { .. } => format!(
                    "{e}\n  this registry does not list its repositories (_catalog); name them with --repo or --repos-file"
                ),
                e => e.to_string(),
            })?;
        let set: BTreeSet<String> = all
            .into_iter()
            .filter(|r| globs.is_empty() || globs.iter().any(|g| g.is_match(r)))
            .collect();
        Ok(set.into_iter().collect())
    }

    async fn tags(&self, repo: &str) -> Result<Vec<String>, HttpError> {
        let mut url = self.url(&format!("/v2/{repo}/tags/list"));
        if let Some(n) = self.input.page_size {
            url.query_pairs_mut().append_pair("n", &n.to_string());
        }
        #[derive(serde::Deserialize)]
        struct Tags {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        self.http
            .paged(url, &format!("repository:{repo}:pull"), |body| {
                serde_json::from_slice::<Tags>(body)
                    .map(|t| t.tags.unwrap_or_default())
                    .map_err(|e| format!("the tag list is not valid JSON: {e}"))
            })
            .await
    }

    fn cached_manifest(&self, digest: &str) -> Option<Vec<u8>> {
        let p = self.manifest_path(digest)?;
        let bytes = std::fs::read(p).ok()?;
        (sha256_digest(&bytes) == digest).then_some(bytes)
    }

    fn manifest_path(&self, digest: &str) -> Option<PathBuf> {
        let key = super::blob_key(digest).ok()?;
        Some(self.manifest_dir.as_ref()?.join(key.replace('/', "-")))
    }

    /// The manifest a tag or digest names: `HEAD` for the digest, then the cache or a `GET`.
    async fn manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<(Vec<u8>, String, String), String> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let scope = format!("repository:{repo}:pull");
        let is_digest = reference.contains(':');
        let head_digest = if is_digest {
            Some(reference.to_string())
        } else {
            let res = self
                .http
                .request(Method::HEAD, url.clone(), &scope, Some(MANIFEST_ACCEPT))
                .await
                .map_err(|e| e.to_string())?;
            if !res.status.is_success() {
                return Err(format!(
                    "manifest HEAD answered HTTP {}",
                    res.status.as_u16()
                ));
            }
            res.headers
                .get("docker-content-digest")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let Some(d) = head_digest else {
            // no digest to know it by: read it, unshared
            return self.get_manifest(url, &scope, None).await;
        };
        // one read per digest, even when its tags' HEADs all answer at once
        let cell = self
            .manifests
            .lock()
            .expect("memo lock")
            .entry(d.clone())
            .or_default()
            .clone();
        let (bytes, digest, media) = cell
            .get_or_try_init(|| async {
                if let Some(bytes) = self.cached_manifest(&d) {
                    let media = media_type_of(&bytes);
                    return Ok((Arc::from(bytes), d.clone(), media));
                }
                let (bytes, got, media) = self.get_manifest(url, &scope, Some(&d)).await?;
                Ok::<_, String>((Arc::from(bytes), got, media))
            })
            .await?
            .clone();
        Ok((bytes.to_vec(), digest, media))
    }

    /// `GET` a manifest, verify it against the digest its `HEAD` named, cache it on disk.
    async fn get_manifest(
        &self,
        url: Url,
        scope: &str,
        head_digest: Option<&str>,
    ) -> Result<(Vec<u8>, String, String), String> {
        let res = self
            .http
            .request(Method::GET, url, scope, Some(MANIFEST_ACCEPT))
            .await
            .map_err(|e| e.to_string())?;
        if !res.status.is_success() {
            return Err(format!(
                "manifest GET answered HTTP {}",
                res.status.as_u16()
            ));
        }
        let bytes = res.body.to_vec();
        let got = sha256_digest(&bytes);
        if let Some(want) = head_digest
            && want.starts_with("sha256:")
            && want != got
        {
            return Err(format!(
                "manifest hashes to {got}, but the registry names it {want}"
            ));
        }
        let media = res
            .headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.split(';').next().unwrap_or(s).trim().to_string())
            .filter(|s| !s.is_empty() && s != "application/json")
            .unwrap_or_else(|| media_type_of(&bytes));
        if let Some(p) = self.manifest_path(&got) {
            write_atomically(&p, &bytes);
        }
        Ok((bytes, got, media))
    }

    /// Every image behind one tag (one per platform for an index), plus what was skipped.
    async fn resolve(
        &self,
        (repo, tag): &Target,
    ) -> Result<(Vec<FoundImage>, Vec<SourceProblem>), String> {
        let name = reference_name(&self.input.host, repo, tag);
        let (bytes, digest, media) = self.manifest(repo, tag).await?;
        let kind = super::media::classify(&media, &bytes);
        if let Some(message) = super::media::refusal(&kind, &digest) {
            return Ok((
                Vec::new(),
                vec![SourceProblem {
                    what: name,
                    message,
                }],
            ));
        }
        if kind == super::media::Kind::Artifact {
            return Ok((Vec::new(), Vec::new()));
        }
        let mut problems = Vec::new();
        let mut images = Vec::new();
        if kind == super::media::Kind::Index {
            let index: ImageIndex = serde_json::from_slice(&bytes)
                .map_err(|e| format!("index {digest} is invalid: {e}"))?;
            for d in index.manifests() {
                if super::media::skip_entry(d, self.input.platform.as_ref()) {
                    continue;
                }
                let child = d.digest().to_string();
                match self.manifest(repo, &child).await {
                    Ok((b, cd, _)) => match self.image(repo, &name, &b, &cd) {
                        Ok(Some(i)) => images.push(i),
                        Ok(None) => {}
                        Err(message) => problems.push(SourceProblem {
                            what: format!("{name} ({child})"),
                            message,
                        }),
                    },
                    Err(message) => problems.push(SourceProblem {
                        what: format!("{name} ({child})"),
                        message,
                    }),
                }
            }
        } else if let Some(i) = self.image(repo, &name, &bytes, &digest)? {
            images.push(i);
        }
        Ok((images, problems))
    }

    /// A found image from an image manifest (`None` for artifacts that are not images).
    fn image(
        &self,
        repo: &str,
        name: &str,
        bytes: &[u8],
        digest: &str,
    ) -> Result<Option<FoundImage>, String> {
        let m: ImageManifest = serde_json::from_slice(bytes)
            .map_err(|e| format!("manifest {digest} is invalid: {e}"))?;
        let config_type = m.config().media_type().to_string();
        if !CONFIG_TYPES.contains(&config_type.as_str()) {
            return Ok(None);
        }
        let store = self.store(repo);
        let mut known = store.known.lock().expect("store lock");
        let config_digest = m.config().digest().to_string();
        super::blob_key(&config_digest)?;
        known.insert(config_digest.clone(), (m.config().size(), config_type));
        let mut layers = Vec::new();
        for l in m.layers() {
            let ld = l.digest().to_string();
            super::blob_key(&ld)?;
            let mt = l.media_type().to_string();
            if mt.contains("foreign") || mt.contains("nondistributable") {
                return Err(format!(
                    "layer {ld} is a foreign (non-distributable) layer ({mt}): Windows images are not analysed"
                ));
            }
            known.insert(ld.clone(), (l.size(), mt.clone()));
            layers.push(LayerRef {
                key: ld.clone(),
                digest: Some(ld),
                media_type: mt,
                size: Some(l.size()),
            });
        }
        drop(known);
        Ok(Some(FoundImage {
            source: self.source.clone(),
            reference: Some(name.to_string()),
            manifest_digest: Some(digest.to_string()),
            config_key: config_digest.clone(),
            config_digest: Some(config_digest),
            layers: layers.into(),
            store,
            digest_checked_by_store: true,
            also: Vec::new(),
        }))
    }
}

/// The media type a manifest declares inside itself (registries may not send one).
fn media_type_of(bytes: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
    if let Some(m) = v.get("mediaType").and_then(|m| m.as_str()) {
        return m.to_string();
    }
    if v.get("manifests").is_some() {
        INDEX_TYPES[0].to_string()
    } else {
        "application/vnd.oci.image.manifest.v1+json".to_string()
    }
}

fn reference_name(host: &str, repo: &str, tag: &str) -> String {
    if tag.contains(':') {
        format!("{host}/{repo}@{tag}")
    } else {
        format!("{host}/{repo}:{tag}")
    }
}
