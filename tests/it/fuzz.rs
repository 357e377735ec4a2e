//! Fuzz targets, one per parser of untrusted bytes: layer tars (through the whole layer
//! analysis), pickles, flow files, METADATA, dpkg and apk databases, manifests, Prefect 1
//! exports, prefect.yaml, and rules files. Each must never panic, hang or allocate
//! without bound, whatever it is fed.
//!
//! bolero drives them: under `cargo test` (stable) with random inputs for a bounded time
//! per target (`UNSPRAWL_FUZZ_SECS`, default 2), each input a set of byte edits and a
//! cut applied to a real seed document, so the parsers are reached past their first
//! check; the same targets run coverage-guided under `cargo bolero test --engine
//! libfuzzer` on a nightly toolchain. Each prints how many inputs it ran per second.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use unsprawl::scan::layer::{Expected, Limits, analyse};

fn budget() -> Duration {
    Duration::from_secs_f64(
        std::env::var("UNSPRAWL_FUZZ_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(2.0),
    )
}

/// The seed with `edits` (offset, byte) applied and cut to `cut` bytes (when shorter).
fn mutate(seed: &[u8], edits: &[(u16, u8)], cut: u16) -> Vec<u8> {
    let mut b = seed.to_vec();
    if !b.is_empty() {
        for &(at, v) in edits {
            let i = at as usize % b.len();
            b[i] = v;
        }
    }
    if (cut as usize) < b.len() && cut.is_multiple_of(3) {
        b.truncate(cut as usize);
    }
    b
}

/// Run `target` on mutations of `seed` for the budget; print the rate.
fn fuzz(name: &str, seed: Vec<u8>, target: impl Fn(&[u8]) + std::panic::RefUnwindSafe) {
    let runs = AtomicU64::new(0);
    let start = Instant::now();
    bolero::check!()
        .with_type::<(Vec<(u16, u8)>, u16)>()
        .with_test_time(budget())
        .for_each(|(edits, cut)| {
            runs.fetch_add(1, Ordering::Relaxed);
            target(&mutate(&seed, edits, *cut));
        });
    let n = runs.load(Ordering::Relaxed);
    eprintln!(
        "fuzz {name}: {n} inputs in {:.1?}, {:.0}/s",
        start.elapsed(),
        n as f64 / start.elapsed().as_secs_f64()
    );
    assert!(n > 0, "{name} ran nothing");
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A small layer with one of every file the analysis reads.
fn seed_layer() -> Vec<u8> {
    let mut t = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        t.append_data(&mut h, path, data).unwrap();
    };
    add("etc/os-release", b"ID=debian\nVERSION_ID=\"12\"\n");
    add(
        "var/lib/dpkg/status",
        b"Package: libc6\nStatus: install ok installed\nVersion: 2.36-9\nArchitecture: amd64\n\n",
    );
    let site = "usr/local/lib/python3.11/site-packages";
    add(
        &format!("{site}/six-1.16.0.dist-info/METADATA"),
        b"Metadata-Version: 2.1\nName: six\nVersion: 1.16.0\nRequires-Dist: a>=1\n\nbody\n",
    );
    add(
        &format!("{site}/six-1.16.0.dist-info/RECORD"),
        b"six.py,sha256=abc,10\nsix-1.16.0.dist-info/RECORD,,\n",
    );
    add(
        &format!("{site}/six-1.16.0.dist-info/top_level.txt"),
        b"six\n",
    );
    add(
        "opt/prefect/flows/flow-a.prefect",
        &std::fs::read(common_repo().join("fixtures/prefect/flow-a.prefect")).unwrap(),
    );
    add(".wh.gone", b"");
    t.into_inner().unwrap()
}

fn common_repo() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn fuzz_layer_tar() {
    let limits = Limits {
        max_layer_bytes: 1 << 20,
        ..Limits::default()
    };
    fuzz("layer tar", seed_layer(), |b| {
        let expected = Expected {
            digest: None,
            diff_id: "sha256:0".into(),
            stored_bytes: b.len() as u64,
            verify_diff_id: false,
            digest_checked_by_source: false,
        };
        let _ = analyse(b, &expected, &limits);
    });
}

#[test]
fn fuzz_pickle_and_flow_file() {
    let pkl = std::fs::read(common_repo().join("fixtures/prefect/flow-a.cloudpickle.pkl")).unwrap();
    fuzz("pickle", pkl, |b| {
        let _ = unsprawl::pickle::walk(b);
    });
    let flow = std::fs::read(common_repo().join("fixtures/prefect/flow-a.prefect")).unwrap();
    fuzz("flow file", flow, |b| {
        let _ = unsprawl::scan::analyze::prefect::read_flow_file(b);
    });
}

#[test]
fn fuzz_metadata_and_package_databases() {
    use unsprawl::scan::analyze::{packages, python};
    fuzz(
        "METADATA",
        b"Metadata-Version: 2.1\nName: six\nVersion: 1.16.0\nRequires-Dist: a>=1; python_version<'3.12'\nRequires-Python: >=3.8\n\nbody".to_vec(),
        |b| {
            let _ = python::parse_metadata(&text(b));
        },
    );
    fuzz(
        "dpkg status",
        b"Package: git\nStatus: install ok installed\nVersion: 1:2.39.5-0+deb12u1\nDepends: libc6 (>= 2.34), git-man\nProvides: git-core\n\n".to_vec(),
        |b| {
            let _ = packages::parse_dpkg(&text(b));
        },
    );
    fuzz(
        "apk installed",
        b"P:musl\nV:1.2.4-r2\nA:x86_64\no:musl\n\nP:git\nV:2.43.0-r0\n".to_vec(),
        |b| {
            let _ = packages::parse_apk(&text(b));
        },
    );
}

#[test]
fn fuzz_manifests() {
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{}", "a".repeat(64)), "size": 10},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": format!("sha256:{}", "b".repeat(64)), "size": 20}],
    })
    .to_string();
    fuzz("manifest", manifest.into_bytes(), |b| {
        let _ = unsprawl::scan::source::media::classify("", b);
        let _ = serde_json::from_slice::<oci_spec::image::ImageManifest>(b);
        let _ = serde_json::from_slice::<oci_spec::image::ImageIndex>(b);
    });
}

#[test]
fn fuzz_prefect_documents() {
    let export =
        std::fs::read(common_repo().join("fixtures/prefect1/export.graphql.json")).unwrap();
    fuzz("prefect1 export", export, |b| {
        let _ = unsprawl::flows::prefect1::parse("fuzz.json", &text(b));
    });
    let yaml = b"name: flows\ndeployments:\n  - name: etl\n    entrypoint: flows/etl.py:etl\n    work_pool:\n      name: k8s\n      job_variables:\n        image: registry.local:5000/team/etl:1\n    pull:\n      - prefect.deployments.steps.git_clone:\n          repository: https://git.example.com/f.git\n".to_vec();
    fuzz("prefect.yaml", yaml, |b| {
        let _ = unsprawl::flows::prefect3::from_yaml("prefect.yaml", &text(b));
    });
}

#[test]
fn fuzz_rules() {
    let rules = std::fs::read(common_repo().join("rules/default.toml")).unwrap();
    fuzz("rules", rules, |b| {
        let mut r = unsprawl::rules::Rules::default_rules();
        let _ = r.merge_text("fuzz.toml", &text(b));
    });
}
