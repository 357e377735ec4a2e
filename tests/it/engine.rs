//! `scan engine` against a real dockerd (Debian docker.io 20.10, Engine API 1.41, which
//! bollard must negotiate down to), with fixture images `docker load`ed into it.

use crate::common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

use common::registry::{Auth, Registry, push_fixtures};
use common::{build_fixtures, image, ok, p, read_inventory, unsprawl};
use unsprawl_testkit::local_dockerd::Dockerd;

const NAMES: [&str; 3] = ["team-a-flow-a", "tools-alpine", "python311"];

/// The analysis, without where the image was found.
fn analysis(inv: &unsprawl::inventory::Inventory) -> Vec<serde_json::Value> {
    inv.images
        .iter()
        .map(|i| {
            serde_json::json!({
                "id": i.id,
                "layers": i.layers.iter().map(|l| &l.diff_id).collect::<Vec<_>>(),
                "config": i.config,
                "status": i.status,
                "contents": i.contents,
            })
        })
        .collect()
}

#[test]
fn engine_scan_matches_the_archive_scan_and_joins_registry_copies() {
    let engine = Dockerd::start();
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("fixtures.tar");
    build_fixtures(
        &[],
        &["--archive", p(&archive), "--shape", "classic"],
        &NAMES,
    );
    engine.load(&archive);

    // the same images through the archive reader and through the engine
    let from_archive = tmp.path().join("archive.json");
    ok(&[
        "scan",
        "archive",
        p(&archive),
        "--no-cache",
        "-o",
        p(&from_archive),
    ]);
    let from_engine = tmp.path().join("engine.json");
    ok(&[
        "scan",
        "engine",
        "--host",
        &engine.host(),
        "--no-cache",
        "-o",
        p(&from_engine),
    ]);
    let (a, e) = (read_inventory(&from_archive), read_inventory(&from_engine));
    assert_eq!(e.images.len(), 3);
    assert_eq!(analysis(&a), analysis(&e));
    assert_eq!(e.sources[0].kind, "engine");
    let flow = image(&e, "registry.local:5000/team/flow-a:2023-01-01");
    assert_eq!(flow.locations[0].source.kind, "engine");
    assert_eq!(flow.locations[0].source.location, engine.host());
    // an untagged image is still found, by id
    assert!(e.images.iter().any(|i| i.references.is_empty()));

    // --filter narrows what is asked for
    let filtered = tmp.path().join("filtered.json");
    ok(&[
        "scan",
        "engine",
        "--host",
        &engine.host(),
        "--filter",
        "reference=registry.local:5000/tools/*",
        "--no-cache",
        "-o",
        p(&filtered),
    ]);
    let f = read_inventory(&filtered);
    assert_eq!(f.images.len(), 1);
    assert_eq!(
        f.images[0].references,
        ["registry.local:5000/tools/alpine-py:3.19"]
    );

    // one of them also in a registry: one image, two locations
    let reg = Registry::start(Auth::None);
    push_fixtures(&reg.host(), &[], &["team-a-flow-a"], None);
    let joined = tmp.path().join("joined.json");
    ok(&[
        "scan",
        "engine",
        "--host",
        &engine.host(),
        "--with-registry",
        &reg.host(),
        "--plain-http",
        "-o",
        p(&joined),
        "--cache-dir",
        p(&tmp.path().join("cache")),
    ]);
    let j = read_inventory(&joined);
    assert_eq!(j.images.len(), 3, "the registry copy is the same image");
    let both = j.images.iter().find(|i| i.id == flow.id).unwrap();
    let kinds: BTreeSet<&str> = both
        .locations
        .iter()
        .map(|l| l.source.kind.as_str())
        .collect();
    assert_eq!(kinds, BTreeSet::from(["engine", "registry"]));
    assert!(
        both.manifest_digest.is_some(),
        "the registry knows the manifest digest"
    );
}

#[test]
fn engine_errors_are_clear() {
    // no daemon behind the socket
    let tmp = tempfile::tempdir().unwrap();
    let missing = format!("unix://{}", tmp.path().join("none.sock").display());
    let out_path = tmp.path().join("x.json");
    let r = unsprawl(&["scan", "engine", "--host", &missing, "-o", p(&out_path)]);
    assert_eq!(r.status.code(), Some(2));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains("is dockerd running?") && err.contains("none.sock"),
        "{err}"
    );
    assert!(!out_path.exists(), "nothing written");

    // DOCKER_HOST is honoured like the docker CLI does
    let r = std::process::Command::new(env!("CARGO_BIN_EXE_unsprawl"))
        .args(["scan", "engine", "-o", p(&out_path)])
        .env("DOCKER_HOST", &missing)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&r.stderr).contains("none.sock"));

    // an engine too old to talk to (a stub: no such dockerd can be installed here)
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in listener.incoming().take(4) {
            let Ok(mut s) = s else { continue };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            while r.read_line(&mut line).unwrap_or(0) > 2 {
                line.clear();
            }
            let body = r#"{"Version":"1.12.6","ApiVersion":"1.24","MinAPIVersion":"1.12"}"#;
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let r = unsprawl(&[
        "scan",
        "engine",
        "--host",
        &format!("tcp://127.0.0.1:{port}"),
        "-o",
        p(&out_path),
    ]);
    assert_eq!(r.status.code(), Some(2));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains("speaks Engine API \"1.24\"") && err.contains("1.25 or newer"),
        "{err}"
    );

    // a socket this user may not open (the daemon's socket is root:docker 0660)
    let engine = Dockerd::start();
    let r = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_unsprawl"))
        .args([
            "scan",
            "engine",
            "--host",
            &engine.host(),
            "-o",
            "/tmp/unsprawl-never-written.json",
        ])
        .current_dir("/")
        .output()
        .unwrap();
    assert_eq!(
        r.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert!(String::from_utf8_lossy(&r.stderr).contains("permission denied on the Docker socket"));
}
