//! Where built runtime images go: an OCI image layout (blobs copied, the index updated
//! by reference name) and/or a registry (base layers mounted from the repository they
//! were scanned in when the registry allows, else uploaded; the tag pushed last, so a
//! crash half-way leaves nothing tagged, and a re-run finishes the job).

use std::io::Read;
use std::path::Path;

use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use serde_json::{Value, json};

use super::{Built, CONTENT_HASH_LABEL};
use crate::scan::source::registry::auth::Credentials;

/// Why publishing an image failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("{image}: {message}")]
    Layout { image: String, message: String },
    #[error("{image}: {message}")]
    Registry { image: String, message: String },
    #[error("{0:?} is not an image reference (registry/repository:tag)")]
    Reference(String),
}

fn hex_of(digest: &str) -> &str {
    digest.split_once(':').map(|(_, h)| h).unwrap_or(digest)
}

/// Add `images` to the OCI layout at `dir` (created when missing), replacing index
/// entries of the same reference name.
pub fn write_layout(dir: &Path, images: &[&Built]) -> Result<(), PublishError> {
    let err = |image: &str, e: String| PublishError::Layout {
        image: image.into(),
        message: e,
    };
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)
        .map_err(|e| err("-", format!("cannot create {}: {e}", blobs.display())))?;
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
        .map_err(|e| err("-", e.to_string()))?;
    let put = |image: &str, digest: &str, bytes: &[u8]| -> Result<(), PublishError> {
        let p = blobs.join(hex_of(digest));
        if p.exists() {
            return Ok(());
        }
        let tmp = blobs.join(format!(".{}.partial", hex_of(digest)));
        std::fs::write(&tmp, bytes)
            .and_then(|()| std::fs::rename(&tmp, &p))
            .map_err(|e| err(image, format!("cannot write blob {digest}: {e}")))
    };
    let index_path = dir.join("index.json");
    let mut index: Value = std::fs::read(&index_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []}));
    for b in images {
        for base in &b.base {
            let p = blobs.join(hex_of(&base.desc.digest));
            if p.exists() {
                continue;
            }
            let mut data = vec![];
            base.found
                .store
                .open(&base.key)
                .and_then(|mut r| r.read_to_end(&mut data))
                .map_err(|e| {
                    err(
                        &b.name,
                        format!("cannot read base layer {}: {e}", base.desc.digest),
                    )
                })?;
            put(&b.name, &base.desc.digest, &data)?;
        }
        put(&b.name, &b.new_layer.desc.digest, &b.new_layer.blob)?;
        put(
            &b.name,
            &crate::scan::source::sha256_digest(&b.config),
            &b.config,
        )?;
        put(&b.name, &b.manifest_digest, &b.manifest)?;
        let entry = json!({
            "mediaType": super::assemble::OCI_MANIFEST,
            "digest": b.manifest_digest,
            "size": b.manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": b.name},
        });
        let list = index["manifests"]
            .as_array_mut()
            .expect("an index has manifests");
        list.retain(|m| m["annotations"]["org.opencontainers.image.ref.name"] != b.name.as_str());
        list.push(entry);
        list.sort_by(|a, b| {
            a["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .cmp(&b["annotations"]["org.opencontainers.image.ref.name"].as_str())
        });
    }
    let tmp = dir.join(".index.json.partial");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&index).expect("JSON"))
        .and_then(|()| std::fs::rename(&tmp, &index_path))
        .map_err(|e| err("-", format!("cannot write {}: {e}", index_path.display())))
}

/// `host/repo:tag` for oci-client: a push names its registry and its tag, so neither
/// may be left to a default.
pub fn reference(name: &str) -> Result<Reference, PublishError> {
    let bad = || PublishError::Reference(name.to_string());
    let parts = crate::reference::Parts::of(name);
    let names_host = name
        .split_once('/')
        .is_some_and(|(h, _)| h.contains(['.', ':']) || h == "localhost");
    if !names_host || parts.tag.is_none() || parts.digest.is_some() {
        return Err(bad());
    }
    crate::reference::ImageRef::parse(name)
        .map(crate::reference::ImageRef::into_oci)
        .map_err(|_| bad())
}

/// An oci-client for pushing: plain HTTP or HTTPS, each blob in one request.
pub fn push_client(plain_http: bool) -> Client {
    Client::new(oci_client::client::ClientConfig {
        protocol: if plain_http {
            oci_client::client::ClientProtocol::Http
        } else {
            oci_client::client::ClientProtocol::Https
        },
        use_monolithic_push: true,
        ..Default::default()
    })
}

/// A registry client for pushing.
pub struct Pusher {
    client: Client,
    runtime: tokio::runtime::Runtime,
    credentials: Option<Credentials>,
}

/// What a push did.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    /// Uploaded (`blobs` uploaded, `mounted` mounted from another repository).
    Pushed { uploaded: usize, mounted: usize },
    /// The tag already names an image with this content hash.
    AlreadyThere { same_digest: bool },
}

impl Pusher {
    pub fn new(plain_http: bool, credentials: Option<Credentials>) -> Result<Pusher, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the I/O runtime: {e}"))?;
        Ok(Pusher {
            client: push_client(plain_http),
            runtime,
            credentials,
        })
    }

    fn auth(&self, host: &str) -> Result<RegistryAuth, String> {
        let creds = match &self.credentials {
            Some(c) => Some(c.clone()),
            // as the scan reads them: podman's auth file first, then the Docker config
            None => Credentials::lookup(
                host,
                std::env::var_os("REGISTRY_AUTH_FILE")
                    .map(std::path::PathBuf::from)
                    .as_deref(),
            )?,
        };
        Ok(match creds {
            Some(c) => RegistryAuth::Basic(c.username.clone(), c.password().to_string()),
            None => RegistryAuth::Anonymous,
        })
    }

    /// The content hash label of the image `name` names now, if it names one.
    pub fn existing(&self, name: &str) -> Result<Option<(String, Option<String>)>, PublishError> {
        let r = reference(name)?;
        let err = |message: String| PublishError::Registry {
            image: name.into(),
            message,
        };
        let auth = self.auth(r.registry()).map_err(err)?;
        self.runtime.block_on(async {
            match self.client.pull_manifest_and_config(&r, &auth).await {
                Ok((_, digest, config)) => {
                    let v: Value = serde_json::from_str(&config).unwrap_or(Value::Null);
                    let label = v
                        .pointer(&format!("/config/Labels/{CONTENT_HASH_LABEL}"))
                        .and_then(Value::as_str)
                        .map(str::to_string);
                    Ok(Some((digest, label)))
                }
                Err(oci_client::errors::OciDistributionError::ImageManifestNotFoundError(_)) => {
                    Ok(None)
                }
                Err(oci_client::errors::OciDistributionError::RegistryError {
                    envelope, ..
                }) if envelope
                    .errors
                    .iter()
                    .any(|e| format!("{:?}", e.code).contains("Unknown")) =>
                {
                    Ok(None)
                }
                Err(oci_client::errors::OciDistributionError::ServerError {
                    code: 404, ..
                }) => Ok(None),
                Err(e) => Err(err(format!("cannot read {name}: {}", describe(&e)))),
            }
        })
    }

    /// Push one image: blobs (mounted or uploaded), then its manifest by tag.
    pub fn push(&self, b: &Built) -> Result<Pushed, PublishError> {
        let r = reference(&b.name)?;
        let err = |message: String| PublishError::Registry {
            image: b.name.clone(),
            message,
        };
        if let Some((digest, label)) = self.existing(&b.name)?
            && label.as_deref() == Some(b.content_hash.as_str())
        {
            return Ok(Pushed::AlreadyThere {
                same_digest: digest == b.manifest_digest,
            });
        }
        let auth = self.auth(r.registry()).map_err(err)?;
        let at = |digest: &str| {
            Reference::with_digest(
                r.registry().to_string(),
                r.repository().to_string(),
                digest.to_string(),
            )
        };
        // one request at a time on our runtime: a base blob read from a registry store
        // blocks on that store's own runtime, so it is read outside ours
        let rt = &self.runtime;
        rt.block_on(self.client.auth(&r, &auth, RegistryOperation::Push))
            .map_err(|e| {
                err(format!(
                    "the registry refused to let us push: {}",
                    describe(&e)
                ))
            })?;
        let (mut uploaded, mut mounted) = (0, 0);
        for base in &b.base {
            let d = &base.desc.digest;
            if rt
                .block_on(self.client.blob_exists(&at(d), d))
                .unwrap_or(false)
            {
                continue;
            }
            // same registry: mount across repositories; a 202 (not mounted) or any
            // refusal falls back to an upload
            if base.found.source.kind == "registry"
                && base.found.source.location == r.registry()
                && let Some(from) = base.found.reference.as_deref()
            {
                let repo = repository_in(from, r.registry());
                let src =
                    Reference::with_digest(r.registry().to_string(), repo.to_string(), d.clone());
                if rt.block_on(self.client.mount_blob(&at(d), &src, d)).is_ok() {
                    mounted += 1;
                    continue;
                }
            }
            let mut data = vec![];
            base.found
                .store
                .open(&base.key)
                .and_then(|mut rd| rd.read_to_end(&mut data))
                .map_err(|e| err(format!("cannot read base layer {d}: {e}")))?;
            rt.block_on(self.client.push_blob(&at(d), data, d))
                .map_err(|e| err(format!("cannot upload base layer {d}: {}", describe(&e))))?;
            uploaded += 1;
        }
        let config_digest = crate::scan::source::sha256_digest(&b.config);
        for (digest, bytes) in [
            (
                b.new_layer.desc.digest.as_str(),
                b.new_layer.blob.as_slice(),
            ),
            (config_digest.as_str(), b.config.as_slice()),
        ] {
            if rt
                .block_on(self.client.blob_exists(&at(digest), digest))
                .unwrap_or(false)
            {
                continue;
            }
            rt.block_on(self.client.push_blob(&at(digest), bytes.to_vec(), digest))
                .map_err(|e| err(format!("cannot upload blob {digest}: {}", describe(&e))))?;
            uploaded += 1;
        }
        // the tag last: a crash before here leaves nothing tagged, and a re-run finishes
        rt.block_on(self.client.push_manifest_raw(
            &r,
            b.manifest.clone(),
            super::assemble::OCI_MANIFEST.parse().expect("a media type"),
        ))
        .map_err(|e| err(format!("cannot push the manifest: {}", describe(&e))))?;
        Ok(Pushed::Pushed { uploaded, mounted })
    }
}

/// The repository of a reference found in `host` (`host/team/app:tag` → `team/app`).
fn repository_in<'a>(reference: &'a str, host: &str) -> &'a str {
    let r = reference
        .strip_prefix(host)
        .and_then(|r| r.strip_prefix('/'))
        .unwrap_or(reference);
    crate::reference::Parts::of(r).name
}

/// oci-client errors, short and without URLs' query strings.
fn describe(e: &oci_client::errors::OciDistributionError) -> String {
    use oci_client::errors::OciDistributionError as E;
    match e {
        E::RequestError(r) => crate::net::without_url(r),
        E::ServerError { code, message, .. } => format!(
            "HTTP {code}: {}",
            message.chars().take(200).collect::<String>()
        ),
        E::UnauthorizedError { .. } => {
            "HTTP 401: not authorized (pass --username and --password-stdin)".into()
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_of_found_references() {
        assert_eq!(
            repository_in("127.0.0.1:5000/team/app:1", "127.0.0.1:5000"),
            "team/app"
        );
        assert_eq!(
            repository_in("team/app@sha256:ab", "127.0.0.1:5000"),
            "team/app"
        );
        assert_eq!(repository_in("app", "h"), "app");
    }

    #[test]
    fn references_must_be_full_and_valid() {
        let r = reference("127.0.0.1:5000/prefect/runtime:3.11-ab12").unwrap();
        assert_eq!(
            (r.registry(), r.repository(), r.tag()),
            ("127.0.0.1:5000", "prefect/runtime", Some("3.11-ab12"))
        );
        for bad in [
            "runtime:3.11",
            "127.0.0.1:5000/Prefect/runtime:1",
            "127.0.0.1:5000/p/r",
            "127.0.0.1:5000/p/r:a b",
            "127.0.0.1:5000/p//r:1",
        ] {
            assert!(reference(bad).is_err(), "{bad}");
        }
    }
}
