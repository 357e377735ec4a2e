//! A local Docker engine, through the Engine API (`bollard`, with API version
//! negotiation: dockerd 20.10 only speaks 1.41).
//!
//! The engine lists and inspects its images; their content comes from one batched
//! `GET /images/get` (what `docker save` uses) streamed to a temp file, so a layer that
//! several images share is streamed once, and the archive reader takes it from there.
//! Images are asked for by tag (so the archive carries their names); untagged ones by id.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::path::Path;

use bollard::Docker;
use bollard::query_parameters::ListImagesOptionsBuilder;
use futures_util::StreamExt;

use super::SourceProblem;

/// The oldest Engine API unsprawl talks to (Docker 1.13: `docker save` of several names,
/// RootFS in inspect).
const MIN_API: (u32, u32) = (1, 25);

#[derive(Debug, Clone, Default)]
pub struct EngineInput {
    /// `unix:///…`, `tcp://…`; `None`: `DOCKER_HOST`, else the default socket.
    pub host: Option<String>,
    /// `docker image ls --filter` expressions (`reference=team/*`, `label=…`, `before=…`).
    pub filters: Vec<String>,
}

impl EngineInput {
    /// Where it connects, as the docker CLI would.
    pub fn address(&self) -> String {
        self.host
            .clone()
            .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| "unix:///var/run/docker.sock".to_string())
    }
}

/// The engine's images, saved to a temp file that lives as long as this value.
pub struct Exported {
    pub file: tempfile::NamedTempFile,
    /// Images asked for.
    pub images: usize,
    pub problems: Vec<SourceProblem>,
    /// Negotiated API version.
    pub api_version: String,
}

/// Why an engine could not be read; each says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot start an async runtime: {0}")]
    Runtime(String),
    /// Connecting, or agreeing on an API version, failed (the text explains why and
    /// what to try: the socket's permissions, DOCKER_HOST, the address form).
    #[error("{0}")]
    Connect(String),
    #[error(
        "the Docker engine at {address} speaks Engine API {server_api:?}; unsprawl needs {}.{} or newer (Docker 1.13+)",
        MIN_API.0,
        MIN_API.1
    )]
    TooOld { address: String, server_api: String },
    #[error("--filter {0}: expected KEY=VALUE, e.g. reference=team/*")]
    Filter(String),
    #[error("listing images of {address}: {message}")]
    List { address: String, message: String },
    #[error("saving images from {address}: {message}")]
    Save { address: String, message: String },
    #[error("cannot write a temp file in {dir}: {message}")]
    TempFile { dir: String, message: String },
}

fn runtime() -> Result<tokio::runtime::Runtime, EngineError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| EngineError::Runtime(e.to_string()))
}

/// Connect and agree on an API version; the error says what to do about it.
pub fn probe(input: &EngineInput) -> Result<String, EngineError> {
    let address = input.address();
    runtime()?.block_on(async { connect(&address).await.map(|(_, v)| v) })
}

/// List, inspect and export the engine's images (matching the filters).
pub fn export(input: &EngineInput, temp_dir: &Path) -> Result<Exported, EngineError> {
    let address = input.address();
    runtime()?.block_on(export_async(input, &address, temp_dir))
}

async fn connect(address: &str) -> Result<(Docker, String), EngineError> {
    let docker = Docker::connect_with_host(address).map_err(|e| explain_connect(address, &e))?;
    // what the server speaks, before negotiating down to it
    let version = docker
        .version()
        .await
        .map_err(|e| explain_connect(address, &e))?;
    let server_api = version.api_version.clone().unwrap_or_default();
    if parse_api(&server_api).is_none_or(|v| v < MIN_API) {
        return Err(EngineError::TooOld {
            address: address.to_string(),
            server_api,
        });
    }
    let docker = docker
        .negotiate_version()
        .await
        .map_err(|e| explain_connect(address, &e))?;
    let api = docker.client_version().to_string();
    Ok((docker, api))
}

fn explain_connect(address: &str, e: &bollard::errors::Error) -> EngineError {
    let text = e.to_string();
    let lower = format!("{text} {e:?}").to_lowercase();
    EngineError::Connect(if lower.contains("permission denied") {
        format!(
            "permission denied on the Docker socket {address}: run as a member of the `docker` group, or as root"
        )
    } else if lower.contains("no such file")
        || lower.contains("socket not found")
        || lower.contains("connection refused")
    {
        format!(
            "cannot reach the Docker engine at {address}: is dockerd running? (set --host or DOCKER_HOST) ({text})"
        )
    } else if lower.contains("unsupported") && lower.contains("scheme") {
        format!(
            "{address} is not a Docker host: use unix:///path/to/docker.sock or tcp://host:port"
        )
    } else {
        format!("the Docker engine at {address} did not answer: {text}")
    })
}

fn parse_api(v: &str) -> Option<(u32, u32)> {
    let (a, b) = v.split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

async fn export_async(
    input: &EngineInput,
    address: &str,
    temp_dir: &Path,
) -> Result<Exported, EngineError> {
    let (docker, api_version) = connect(address).await?;

    let mut filters: HashMap<String, Vec<String>> = HashMap::new();
    for f in &input.filters {
        let (k, v) = f
            .split_once('=')
            .ok_or_else(|| EngineError::Filter(f.clone()))?;
        filters
            .entry(k.to_string())
            .or_default()
            .push(v.to_string());
    }
    let listed = docker
        .list_images(Some(
            ListImagesOptionsBuilder::new().filters(&filters).build(),
        ))
        .await
        .map_err(|e| EngineError::List {
            address: address.to_string(),
            message: e.to_string(),
        })?;

    let mut problems = vec![];
    let mut names: BTreeSet<String> = BTreeSet::new();
    for image in &listed {
        // inspect confirms the image is still there (it may be removed while we work)
        match docker.inspect_image(&image.id).await {
            Ok(_) => {}
            Err(e) => {
                problems.push(SourceProblem {
                    what: format!("{address} {}", image.id),
                    message: format!("skipped: the image went away while scanning ({e})"),
                });
                continue;
            }
        }
        let tags: Vec<&String> = image
            .repo_tags
            .iter()
            .filter(|t| t.as_str() != "<none>:<none>")
            .collect();
        if tags.is_empty() {
            names.insert(image.id.clone());
        } else {
            names.extend(tags.into_iter().cloned());
        }
    }

    let temp_error = |e: &dyn std::fmt::Display| EngineError::TempFile {
        dir: temp_dir.display().to_string(),
        message: e.to_string(),
    };
    let file = crate::scan::scratch::file(temp_dir, "engine").map_err(|e| temp_error(&e))?;
    if names.is_empty() {
        // an empty but valid docker save archive: the scan finds no images
        let mut b = tar::Builder::new(file.reopen().map_err(|e| temp_error(&e))?);
        let body = b"[]";
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "manifest.json", &body[..])
            .and_then(|_| b.finish())
            .map_err(|e| temp_error(&e))?;
        return Ok(Exported {
            file,
            images: 0,
            problems,
            api_version,
        });
    }

    // one batch; if an image vanished in between, drop it and try again once
    let mut names: Vec<String> = names.into_iter().collect();
    for attempt in 0..2 {
        match save(&docker, &names, file.as_file()).await {
            Ok(()) => break,
            Err(e) if attempt == 0 => {
                let mut still = vec![];
                for n in names {
                    if docker.inspect_image(&n).await.is_ok() {
                        still.push(n);
                    } else {
                        problems.push(SourceProblem {
                            what: format!("{address} {n}"),
                            message: format!("skipped: the image went away while saving ({e})"),
                        });
                    }
                }
                names = still;
                file.as_file().set_len(0).map_err(|e| temp_error(&e))?;
                use std::io::Seek;
                file.as_file()
                    .seek(std::io::SeekFrom::Start(0))
                    .map_err(|e| temp_error(&e))?;
            }
            Err(e) => {
                return Err(EngineError::Save {
                    address: address.to_string(),
                    message: e,
                });
            }
        }
    }
    Ok(Exported {
        file,
        images: names.len(),
        problems,
        api_version,
    })
}

/// Stream `GET /images/get?names=…` into `out`.
async fn save(docker: &Docker, names: &[String], out: &std::fs::File) -> Result<(), String> {
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut stream = docker.export_images(&refs);
    let mut w = std::io::BufWriter::with_capacity(1 << 20, out);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        w.write_all(&chunk).map_err(|e| e.to_string())?;
    }
    w.flush().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_follows_the_docker_cli() {
        let i = EngineInput {
            host: Some("tcp://10.0.0.1:2375".into()),
            filters: vec![],
        };
        assert_eq!(i.address(), "tcp://10.0.0.1:2375");
        assert_eq!(parse_api("1.41"), Some((1, 41)));
        assert!(parse_api("1.24").unwrap() < MIN_API);
    }

    #[test]
    fn a_missing_socket_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let sock = tmp.path().join("nothing.sock");
        let i = EngineInput {
            host: Some(format!("unix://{}", sock.display())),
            filters: vec![],
        };
        let e = export(&i, tmp.path()).err().unwrap().to_string();
        assert!(e.contains("is dockerd running?"), "{e}");
        assert!(e.contains("nothing.sock"), "{e}");
    }
}
