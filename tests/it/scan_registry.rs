//! End to end against a real CNCF distribution registry (started per test on a free
//! loopback port): the same analysis as from an OCI layout, pagination, multi-arch,
//! both media type families, each kind of auth, throttling, a registry dying mid-scan,
//! and a warm re-scan that sends only listing and manifest `HEAD` requests.

use crate::common;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use common::registry::{Auth, Faults, Proxy, ProxyMode, Registry, push_fixtures};
use common::*;
use unsprawl::inventory::{Image, Inventory, Status};

const SPECS: &[&str] = &["fixtures/registry"];

fn scan(args: &[&str], password: Option<&str>) -> (std::process::Output, Option<Inventory>) {
    let tmp = tempfile::tempdir().unwrap();
    let out_path = tmp.path().join("inv.json");
    let mut all = vec!["scan", "registry"];
    all.extend(args);
    all.extend(["-o", p(&out_path), "--plain-http"]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_unsprawl"))
        .args(&all)
        .current_dir(repo())
        .env("DOCKER_CONFIG", tmp.path()) // no credentials from this machine's docker login
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(pw) = password {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{pw}\n").as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    let inv = out_path.exists().then(|| read_inventory(&out_path));
    (out, inv)
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Contents by (config digest) of an OCI-layout scan of the same fixtures: the reference.
fn layout_scan(names: &[&str]) -> BTreeMap<String, Image> {
    let tmp = tempfile::tempdir().unwrap();
    let oci = tmp.path().join("oci");
    build_fixtures(SPECS, &["--oci", p(&oci)], names);
    let out = tmp.path().join("inv.json");
    ok(&["scan", "oci-dir", p(&oci), "--no-cache", "-o", p(&out)]);
    read_inventory(&out)
        .images
        .into_iter()
        .map(|i| (i.id.clone(), i))
        .collect()
}

#[test]
fn anonymous_registry_matches_the_layout_with_pagination_multiarch_and_docker_types() {
    let reg = Registry::start(Auth::None);
    push_fixtures(&reg.host(), SPECS, &[], None);
    let want = layout_scan(&[]);
    // n=2 forces several catalog and tag pages, followed through relative Link headers
    let (o, inv) = scan(
        &[
            &reg.host(),
            "--no-cache",
            "--page-size",
            "2",
            "--progress",
            "json",
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let inv = inv.unwrap();
    assert!(inv.errors.is_empty(), "{:?}", inv.errors);
    // progress from the first request: repositories, then their tags, then the tags'
    // manifests (each step to its total), then the layers with images done of all
    let events: Vec<serde_json::Value> = stderr(&o)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let steps: Vec<String> = events
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["event"].as_str().unwrap(),
                e["step"].as_str().unwrap_or("")
            )
        })
        .fold(Vec::new(), |mut v, s| {
            if v.last() != Some(&s) {
                v.push(s);
            }
            v
        });
    assert_eq!(
        steps[..4],
        [
            "finding repositories",
            "finding tags of repositories",
            "finding manifests of tags",
            "reading "
        ],
        "{steps:?}"
    );
    for step in ["tags of repositories", "manifests of tags"] {
        let last = events.iter().rfind(|e| e["step"] == step).unwrap();
        assert_eq!(last["done"], last["total"], "{step}: {last}");
    }
    let last = events.iter().rfind(|e| e["event"] == "layer").unwrap();
    assert_eq!(last["images_done"], last["images"], "{last}");
    assert_eq!(last["images"], inv.images.len());
    assert_eq!(inv.images.len(), want.len(), "every image, every platform");
    for img in &inv.images {
        let w = &want[&img.id];
        assert_eq!(
            img.status,
            Status::Ok,
            "{:?} {:?}",
            img.references,
            img.errors
        );
        assert_eq!(img.contents, w.contents, "{:?}", img.references);
        assert_eq!(img.platform, w.platform);
        assert!(img.references.iter().all(|r| r.starts_with(&reg.host())));
        assert_eq!(img.locations[0].source.kind, "registry");
    }
    let multi: Vec<&Image> = inv
        .images
        .iter()
        .filter(|i| {
            i.references
                .iter()
                .any(|r| r.ends_with("/platform/multi:1.0"))
        })
        .collect();
    let mut arches: Vec<&str> = multi
        .iter()
        .map(|i| i.platform.architecture.as_str())
        .collect();
    arches.sort();
    assert_eq!(arches, vec!["amd64", "arm64"], "attestations are skipped");
    let docker = inv
        .images
        .iter()
        .find(|i| {
            i.references
                .iter()
                .any(|r| r.ends_with("/legacy/docker-v2:old"))
        })
        .unwrap();
    assert_eq!(
        docker.layers[0].media_type,
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );
    let b = inv
        .images
        .iter()
        .find(|i| {
            i.references
                .iter()
                .any(|r| r.ends_with("/team-b/flow-a:latest"))
        })
        .unwrap();
    assert_eq!(
        b.references.len(),
        2,
        "both tags of one manifest are one image"
    );

    // one platform only, one repository glob, one tag glob
    let (o, inv) = scan(
        &[
            &reg.host(),
            "--no-cache",
            "--platform",
            "linux/arm64",
            "--repo",
            "platform/*",
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let inv = inv.unwrap();
    assert_eq!(inv.images.len(), 1);
    assert_eq!(inv.images[0].platform.architecture, "arm64");
    let (_, inv) = scan(
        &[
            &reg.host(),
            "--no-cache",
            "--repo",
            "team*/**",
            "--tag-glob",
            "2022*",
        ],
        None,
    );
    let refs: Vec<String> = inv
        .unwrap()
        .images
        .iter()
        .flat_map(|i| i.references.clone())
        .collect();
    assert_eq!(refs.len(), 1, "only the matching tag: {refs:?}");
    assert!(refs[0].ends_with("/team-b/flow-a:2022-06-30"), "{refs:?}");

    // single references, one of them missing
    let host = reg.host();
    let good = format!("{host}/team/flow-a:2023-01-01");
    let missing = format!("{host}/team/nope:1");
    let (o, inv) = scan(&[&good, &missing, "--no-cache"], None);
    // a missing named tag is not a green run: exit 1, naming it and what to do
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("team/nope:1"), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("hint: check the repository and tag"),
        "{}",
        stderr(&o)
    );
    let inv = inv.unwrap();
    assert_eq!(inv.images.len(), 1);
    assert_eq!(inv.errors.len(), 1);
    assert_eq!(inv.errors[0].path.as_deref(), Some(missing.as_str()));
}

#[test]
fn warm_rescan_sends_only_listing_and_manifest_head_requests() {
    let reg = Registry::start(Auth::None);
    push_fixtures(
        &reg.host(),
        &[],
        &["team-a-flow-a", "team-b-flow-a-py310"],
        None,
    );
    let cache = tempfile::tempdir().unwrap();
    let cold = Proxy::start(reg.port, ProxyMode::Pass);
    let (o, _) = scan(&[&cold.host(), "--cache-dir", p(cache.path())], None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        cold.paths().iter().any(|(_, p)| p.contains("/blobs/")),
        "the cold scan reads blobs"
    );

    let warm = Proxy::start(reg.port, ProxyMode::Pass);
    let (o, inv) = scan(&[&warm.host(), "--cache-dir", p(cache.path())], None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("(0 read,"), "{}", stderr(&o));
    assert!(inv.unwrap().images.iter().all(|i| i.status == Status::Ok));
    for (method, path) in warm.paths() {
        let listing =
            method == "GET" && (path.starts_with("/v2/_catalog") || path.contains("/tags/list"));
        let manifest_head = method == "HEAD" && path.contains("/manifests/");
        assert!(
            listing || manifest_head || path == "/v2/",
            "warm scan sent {method} {path}"
        );
    }
}

/// A registry of a million tags over a few images must cost the scan their names, not a
/// manifest, a config and a found image each (3 KB and two GETs per tag, before).
#[test]
fn the_tags_of_one_image_cost_one_manifest_and_one_config_read_even_without_a_cache() {
    let reg = Registry::start(Auth::None);
    push_fixtures(&reg.host(), &[], &["team-a-flow-a"], None);
    // more tags of the same manifest, pushed as any client tags an image
    let base = format!("http://{}/v2/team/flow-a/manifests", reg.host());
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let http = reqwest::Client::new();
        let got = http
            .get(format!("{base}/2023-01-01"))
            .header(
                "Accept",
                "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json",
            )
            .send()
            .await
            .unwrap();
        let media = got.headers()["content-type"].to_str().unwrap().to_string();
        let manifest = got.bytes().await.unwrap();
        for t in 0..20 {
            let put = http
                .put(format!("{base}/extra-{t}"))
                .header("Content-Type", &media)
                .body(manifest.clone())
                .send()
                .await
                .unwrap();
            assert!(put.status().is_success(), "tagging: {}", put.status());
        }
    });
    let proxy = Proxy::start(reg.port, ProxyMode::Pass);
    let (o, inv) = scan(&[&proxy.host(), "--no-cache"], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let inv = inv.unwrap();
    assert_eq!(inv.images.len(), 1);
    assert_eq!(
        inv.images[0].references.len(),
        21,
        "{:?}",
        inv.images[0].references
    );
    assert_eq!(inv.images[0].locations.len(), 21);
    let paths = proxy.paths();
    let manifest_gets = paths
        .iter()
        .filter(|(m, p)| m == "GET" && p.contains("/manifests/"))
        .count();
    let heads = paths
        .iter()
        .filter(|(m, p)| m == "HEAD" && p.contains("/manifests/"))
        .count();
    let config = &inv.images[0].id;
    let config_gets = paths
        .iter()
        .filter(|(m, p)| m == "GET" && p.ends_with(&format!("/blobs/{config}")))
        .count();
    assert_eq!((heads, manifest_gets, config_gets), (21, 1, 1), "{paths:?}");
}

#[test]
fn basic_auth_with_password_stdin_and_wrong_credentials() {
    let reg = Registry::start(Auth::Basic {
        user: "ci".into(),
        password: "hunter2-basic".into(),
    });
    push_fixtures(
        &reg.host(),
        &[],
        &["team-a-flow-a"],
        Some(("ci", "hunter2-basic")),
    );
    let (o, inv) = scan(
        &[
            &reg.host(),
            "--no-cache",
            "--username",
            "ci",
            "--password-stdin",
        ],
        Some("hunter2-basic"),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let inv = inv.unwrap();
    assert_eq!(inv.images.len(), 1);
    assert_eq!(inv.images[0].status, Status::Ok);

    let (o, inv) = scan(
        &[
            &reg.host(),
            "--no-cache",
            "--username",
            "ci",
            "--password-stdin",
        ],
        Some("wrong-pass-xyz"),
    );
    let text = stderr(&o);
    // refused credentials: nothing read, nothing written, exit 2, the fix named
    assert_eq!(o.status.code(), Some(2), "{text}");
    assert!(inv.is_none());
    assert!(text.contains("refused the credentials"), "{text}");
    assert!(
        text.contains("hint: pass --username USER --password-stdin"),
        "{text}"
    );
    assert!(!text.contains("wrong-pass-xyz"), "no secret in errors");
    let (_, inv) = scan(
        &[
            &reg.host(),
            "--no-cache",
            "--username",
            "ci",
            "--password-stdin",
            "--allow-partial",
        ],
        Some("wrong-pass-xyz"),
    );
    let json = serde_json::to_string(&inv.unwrap()).unwrap();
    assert!(
        !json.contains("wrong-pass-xyz"),
        "no secret in the inventory"
    );

    let (o, _) = scan(&[&reg.host(), "--no-cache"], None);
    assert!(
        stderr(&o).contains("asks for credentials"),
        "{}",
        stderr(&o)
    );

    // a podman/skopeo auth file: by --authfile, or by $REGISTRY_AUTH_FILE as podman reads it
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let auth_file = |password: &str| {
        let path = dir.path().join(format!("auth-{password}.json"));
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("ci:{password}"));
        std::fs::write(
            &path,
            format!(r#"{{"auths": {{"{}": {{"auth": "{b64}"}}}}}}"#, reg.host()),
        )
        .unwrap();
        path
    };
    let good = auth_file("hunter2-basic");
    let (o, inv) = scan(&[&reg.host(), "--no-cache", "--authfile", p(&good)], None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(inv.unwrap().images[0].status, Status::Ok);
    let out = dir.path().join("inv.json");
    let o = Command::new(env!("CARGO_BIN_EXE_unsprawl"))
        .args([
            "scan",
            "registry",
            &reg.host(),
            "--no-cache",
            "--plain-http",
            "-o",
        ])
        .arg(&out)
        .env("DOCKER_CONFIG", dir.path())
        .env("REGISTRY_AUTH_FILE", &good)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let bad = auth_file("wrong-in-file-xyz");
    let (o, _) = scan(&[&reg.host(), "--no-cache", "--authfile", p(&bad)], None);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("refused the credentials"),
        "{}",
        stderr(&o)
    );
    assert!(
        !stderr(&o).contains("wrong-in-file-xyz"),
        "no secret in errors"
    );
}

#[test]
fn token_auth_with_catalog_scope() {
    let reg = Registry::start(Auth::Token {
        user: "robot".into(),
        password: "t0ken-pass".into(),
    });
    push_fixtures(
        &reg.host(),
        &[],
        &["team-a-flow-a", "tools-alpine"],
        Some(("robot", "t0ken-pass")),
    );
    let (o, inv) = scan(
        &[
            &reg.host(),
            "--no-cache",
            "--username",
            "robot",
            "--password-stdin",
        ],
        Some("t0ken-pass"),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let inv = inv.unwrap();
    assert_eq!(inv.images.len(), 2, "{:?}", inv.errors);
    assert!(
        inv.images.iter().all(|i| i.status == Status::Ok),
        "{:?}",
        inv.images.iter().map(|i| &i.errors).collect::<Vec<_>>()
    );

    let (o, _) = scan(
        &[
            &reg.host(),
            "--no-cache",
            "--username",
            "robot",
            "--password-stdin",
        ],
        Some("bad-t0ken"),
    );
    let text = stderr(&o);
    assert!(text.contains("refused the credentials"), "{text}");
    assert!(!text.contains("bad-t0ken"));
}

#[test]
fn throttled_registry_is_waited_for_not_failed() {
    let reg = Registry::start(Auth::None);
    push_fixtures(&reg.host(), &[], &["team-a-flow-a", "tools-alpine"], None);
    let proxy = Proxy::start(reg.port, ProxyMode::Throttle { every: 4 });
    let (o, inv) = scan(&[&proxy.host(), "--no-cache"], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let inv = inv.unwrap();
    assert!(inv.errors.is_empty(), "{:?}", inv.errors);
    assert_eq!(inv.images.len(), 2);
    assert!(
        inv.images.iter().all(|i| i.status == Status::Ok),
        "{:?}",
        inv.images.iter().map(|i| &i.errors).collect::<Vec<_>>()
    );
    assert!(
        proxy.throttled.load(std::sync::atomic::Ordering::SeqCst) >= 3,
        "the proxy did throttle"
    );
}

#[test]
fn a_registry_dying_mid_scan_fails_some_images_and_the_next_run_resumes() {
    let reg = Registry::start(Auth::None);
    push_fixtures(&reg.host(), &[], &[], None);
    let cache = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(reg.port, ProxyMode::DieAfterBlobs { n: 12 });
    let t = std::time::Instant::now();
    let (o, inv) = scan(
        &[&proxy.host(), "--cache-dir", p(cache.path()), "--strict"],
        None,
    );
    let took = t.elapsed();
    eprintln!("scan with a dead registry: {took:.1?}");
    // the host's breaker opens: the layers left fail at once, not after their own retries
    assert!(took < std::time::Duration::from_secs(30), "{took:?}");
    assert!(
        stderr(&o).contains("is down: ")
            || format!("{:?}", inv.as_ref().map(|i| &i.images)).contains("is down: "),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "--strict reports the failures: {}",
        stderr(&o)
    );
    let inv = inv.unwrap();
    let failed: Vec<&Image> = inv
        .images
        .iter()
        .filter(|i| i.status == Status::Failed)
        .collect();
    assert!(!failed.is_empty(), "some images lost layers");
    for f in &failed {
        assert!(
            f.errors.iter().any(|e| e.layer.is_some()),
            "the failure names the layer: {:?}",
            f.errors
        );
    }
    // the registry is back (no proxy): the second run reads only what the first did not
    let (o, inv) = scan(&[&reg.host(), "--cache-dir", p(cache.path())], None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(inv.unwrap().images.iter().all(|i| i.status == Status::Ok));
    let text = stderr(&o);
    let from_cache: usize = text
        .split(" from cache")
        .next()
        .and_then(|s| s.rsplit(", ").next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("no cache count in {text}"));
    assert!(from_cache >= 1, "{text}");
}

#[test]
fn a_dead_registry_fails_scan_and_audit_naming_it_and_the_fix() {
    let port = unsprawl_testkit::local_registry::free_port();
    let host = format!("127.0.0.1:{port}");
    let (o, inv) = scan(&[&host, "--no-cache"], None);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(inv.is_none(), "nothing trustworthy, nothing written");
    assert!(
        err.contains(&host) && err.contains("nothing was scanned"),
        "{err}"
    );
    assert!(err.contains("hint: is the registry up"), "{err}");

    let tmp = tempfile::tempdir().unwrap();
    let report = tmp.path().join("report");
    let o = Command::new(env!("CARGO_BIN_EXE_unsprawl"))
        .args([
            "audit",
            "--registry",
            &host,
            "--plain-http",
            "--cache-dir",
            p(&tmp.path().join("c")),
            "-o",
            p(&report),
        ])
        .current_dir(repo())
        .env("DOCKER_CONFIG", tmp.path())
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&host) && err.contains("--allow-partial"),
        "{err}"
    );
    assert!(
        !report.join("report.json").exists(),
        "no green report of nothing"
    );
}

/// The network at its worst between us and a real registry (the project's own proxy):
/// resets, bodies cut half way, 429 with `Retry-After`, 503, a blob trickling a byte at a
/// time, and the registry gone for three seconds mid-scan. The inventory is the clean
/// scan's, to the byte, in bounded time.
#[test]
fn resets_cut_bodies_throttling_a_trickle_and_an_outage_change_nothing() {
    let reg = Registry::start(Auth::None);
    push_fixtures(&reg.host(), SPECS, &[], None);
    let out = |o: &std::process::Output, inv: Option<Inventory>| {
        assert!(o.status.success(), "{}", stderr(o));
        let mut inv = inv.unwrap();
        inv.scanned_at = None;
        serde_json::to_string_pretty(&inv).unwrap()
    };
    let (o, inv) = scan(&[&reg.host(), "--no-cache", "--strict"], None);
    let clean = out(&o, inv);
    let proxy = Proxy::start(
        reg.port,
        ProxyMode::Faults(Faults {
            seed: 7,
            reset: 150,
            throttle: 60,
            unavailable: 60,
            truncate: 150,
            trickle_first: 1,
            outage: Some((12, std::time::Duration::from_secs(3))),
            lose_answer_of_writes: &[],
        }),
    );
    let t = std::time::Instant::now();
    let (o, inv) = scan(
        &[
            &proxy.host(),
            "--no-cache",
            "--strict",
            "--tries",
            "20",
            "--stall-window",
            "2s",
        ],
        None,
    );
    let took = t.elapsed();
    let faulty = out(&o, inv).replace(&proxy.host(), &reg.host());
    let injected = proxy.injected();
    eprintln!("faults injected: {injected:?}; scan took {took:.1?}");
    for kind in ["reset", "429", "503", "truncated", "trickle", "outage"] {
        assert!(
            injected.get(kind).copied().unwrap_or(0) >= 1,
            "no {kind}: {injected:?}"
        );
    }
    assert!(
        faulty == clean,
        "the inventory differs from the clean scan's"
    );
    assert!(took < std::time::Duration::from_secs(120), "{took:?}");
}

/// Planted credentials, looked for everywhere: a password in the registry argument
/// (refused), on `--password-stdin` and in a Docker config (`auth`, and that base64 itself)
/// for a registry behind a token service, across scan (with JSON progress lines and a
/// cache), report and audit, `RUST_LOG=trace` set. Not one byte of them in any output,
/// log line, cache file or report.
#[test]
fn planted_credentials_appear_in_no_output_log_cache_or_report() {
    const PASSWORD: &str = "pl4nted-Pa55word-9c1e";
    const IN_URL: &str = "url-Secret-7f3a";
    let reg = Registry::start(Auth::Token {
        user: "robot".into(),
        password: PASSWORD.into(),
    });
    push_fixtures(
        &reg.host(),
        &[],
        &["team-a-flow-a", "tools-alpine"],
        Some(("robot", PASSWORD)),
    );
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let docker = d.join("docker");
    std::fs::create_dir_all(&docker).unwrap();
    let auth = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("robot:{PASSWORD}"),
    );
    std::fs::write(
        docker.join("config.json"),
        serde_json::json!({"auths": {reg.host(): {"auth": auth}}}).to_string(),
    )
    .unwrap();
    let work = d.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let cache = work.join("cache");
    let mut printed = String::new();
    let mut run = |args: &[&str], stdin: Option<&str>, docker_config: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_unsprawl"));
        c.args(args)
            .current_dir(repo())
            .env("DOCKER_CONFIG", if docker_config { &docker } else { &work })
            .env("RUST_LOG", "trace")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        if let Some(s) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(format!("{s}\n").as_bytes())
                .unwrap();
        }
        drop(child.stdin.take());
        let o = child.wait_with_output().unwrap();
        printed.push_str(&String::from_utf8_lossy(&o.stdout));
        printed.push_str(&String::from_utf8_lossy(&o.stderr));
        o
    };
    let host = reg.host();
    let url_host = format!("robot:{IN_URL}@{host}");
    let o = run(
        &["scan", "registry", &url_host, "--plain-http", "-o", "-"],
        None,
        false,
    );
    assert_eq!(
        o.status.code(),
        Some(2),
        "userinfo in the argument is refused"
    );
    let inv1 = work.join("inv1.json");
    let o = run(
        &[
            "scan",
            "registry",
            &host,
            "--plain-http",
            "--username",
            "robot",
            "--password-stdin",
            "--cache-dir",
            p(&cache),
            "--progress",
            "json",
            "--no-timestamp",
            "-o",
            p(&inv1),
        ],
        Some(PASSWORD),
        false,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let inv2 = work.join("inv2.json");
    let o = run(
        &[
            "scan",
            "registry",
            &host,
            "--plain-http",
            "--no-cache",
            "-o",
            p(&inv2),
        ],
        None,
        true,
    );
    assert!(o.status.success(), "the Docker config's credentials work");
    let o = run(
        &["report", p(&inv2), "-o", p(&work.join("report"))],
        None,
        false,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run(
        &[
            "audit",
            "--registry",
            &host,
            "--plain-http",
            "--cache-dir",
            p(&cache),
            "-o",
            p(&work.join("audit")),
        ],
        None,
        true,
    );
    assert!(
        o.status.code().is_some_and(|c| c <= 1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let planted = [PASSWORD, IN_URL, auth.as_str()];
    for s in planted {
        assert!(!printed.contains(s), "printed: {s}");
    }
    let mut files = 0;
    let mut stack = vec![work.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let bytes = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
            for s in planted {
                assert!(!bytes.contains(s), "{} holds {s}", path.display());
            }
            files += 1;
        }
    }
    assert!(files >= 10, "{files} files looked at");
}

/// Registry arguments as crane and curl users write them: `http://HOST` is that host over
/// plain HTTP (no `--plain-http` needed); a Docker Hub shorthand (`python:3.11-slim`) is
/// refused with the spelling that names its registry.
#[test]
fn registry_arguments_with_a_scheme_or_a_docker_hub_shorthand() {
    let reg = Registry::start(Auth::None);
    push_fixtures(&reg.host(), &[], &["tools-alpine"], None);
    let tmp = tempfile::tempdir().unwrap();
    let run = |target: &str| {
        Command::new(env!("CARGO_BIN_EXE_unsprawl"))
            .args(["scan", "registry", target, "--no-cache", "-o"])
            .arg(tmp.path().join("inv.json"))
            .current_dir(repo())
            .env("DOCKER_CONFIG", tmp.path())
            .output()
            .unwrap()
    };
    let o = run(&format!("http://{}/", reg.host()));
    assert!(o.status.success(), "{}", stderr(&o));
    let inv = read_inventory(&tmp.path().join("inv.json"));
    assert_eq!(inv.images.len(), 1);
    assert!(
        inv.images[0].references[0].starts_with(&format!("{}/", reg.host())),
        "{:?}",
        inv.images[0].references
    );
    let o = run("python:3.11-slim");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("python:3.11-slim is not a registry host")
            && stderr(&o).contains("index.docker.io/library/python:3.11-slim"),
        "{}",
        stderr(&o)
    );
}

/// A registry whose certificate a CA this machine does not trust signed: refused with the
/// flag that fixes it, read with `--ca-file` (the CA added to the system's, verification
/// kept), and with `--insecure`; a file with no certificate in it is refused by name.
#[test]
fn a_registry_signed_by_an_unknown_ca_is_refused_with_a_hint_and_read_with_its_ca_file() {
    unsprawl_testkit::local_registry::ensure_installed();
    let dir = tempfile::tempdir().unwrap();
    let f = |n: &str| dir.path().join(n);
    let (ca, key, cert) = (f("ca.pem"), f("key.pem"), f("cert.pem"));
    std::fs::write(f("san.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    // a company CA, and the registry's certificate signed by it
    for args in [
        vec![
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=test company CA",
            "-keyout",
            p(&f("ca.key")),
            "-out",
            p(&ca),
        ],
        vec![
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            p(&key),
            "-out",
            p(&f("reg.csr")),
        ],
        vec![
            "x509",
            "-req",
            "-in",
            p(&f("reg.csr")),
            "-CA",
            p(&ca),
            "-CAkey",
            p(&f("ca.key")),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            p(&f("san.cnf")),
            "-out",
            p(&cert),
        ],
    ] {
        let st = Command::new("openssl")
            .args(&args)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "openssl {args:?}");
    }
    // nested under the config's `http:` (after its `addr:`)
    let tls = format!(
        "  tls:\n    certificate: {}\n    key: {}\n",
        cert.display(),
        key.display()
    );
    let reg = unsprawl_testkit::local_registry::LocalRegistry::start(&dir.path().join("reg"), &tls)
        .expect("the TLS registry starts");
    let run = |extra: &[&str]| {
        let out = dir.path().join("inv.json");
        let host = reg.host();
        let mut args = vec!["scan", "registry", &host, "-o", p(&out), "--no-cache"];
        args.extend(extra);
        let o = Command::new(env!("CARGO_BIN_EXE_unsprawl"))
            .args(&args)
            .env("DOCKER_CONFIG", dir.path())
            .env_remove("SSL_CERT_FILE")
            .output()
            .unwrap();
        (o.status.code(), stderr(&o))
    };
    let started = std::time::Instant::now();
    let (code, err) = run(&[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--ca-file"), "{err}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "a certificate refusal is final, not retried"
    );
    let (code, err) = run(&["--plain-http"]);
    assert_eq!(code, Some(2), "{err}");
    let (code, err) = run(&["--ca-file", p(&ca)]);
    assert_eq!(code, Some(0), "{err}");
    let (code, err) = run(&["--insecure"]);
    assert_eq!(code, Some(0), "{err}");
    let (code, err) = run(&["--ca-file", p(&key)]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("no PEM certificate") && err.contains("key.pem"),
        "{err}"
    );
}
