//! `scan engine` against `docker save` of the same images from the same private dockerd,
//! measured in the same run (a ratio: these machines are small and noisy).
//!
//! baseline = `docker save -o FILE` of every image (what any engine-side tool must at
//!            least stream);
//! cold     = `unsprawl scan engine --no-cache` (list, inspect, stream the same save,
//!            analyse every layer);
//! warm     = the same scan with every layer already in the cache (the stream is still
//!            read: the Engine API cannot export only some layers).
//!
//! Needs root and Debian's docker.io (installed when missing), so `.ci/run` leaves it
//! out. Run with `cargo bench --bench engine`; it loads the benchmark corpus
//! (`fixtures/bench`, 92 MB stored) into the engine first.

mod common;
use common::median;

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use unsprawl::fixture::{self, ArchiveShape, Corpus, DirFiles};
use unsprawl_testkit::local_dockerd::Dockerd;

const ROUNDS: usize = 3;

fn main() -> anyhow::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir_in(root.join("target"))?;
    let specs = fixture::load_specs(&[&root.join("fixtures/bench")])?;
    let files = DirFiles(root.join("fixtures"));
    let corpus = Corpus::new(specs, &files);
    let images = ["bench-team-a", "bench-team-b", "bench-team-c"]
        .iter()
        .map(|n| corpus.build(n))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let archive = tmp.path().join("bench.tar");
    fixture::write_docker_archive(&archive, &images, ArchiveShape::Classic)?;
    let engine = Dockerd::start();
    engine.load(&archive);
    let tags: Vec<String> = engine
        .ok(&["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"])
        .lines()
        .map(String::from)
        .collect();
    println!(
        "engine bench: {} images in a private dockerd, median of {ROUNDS}",
        tags.len()
    );

    let bin = env!("CARGO_BIN_EXE_unsprawl");
    let cache = tmp.path().join("cache");
    let scan = |cached: bool| {
        let mut c = Command::new(bin);
        c.args([
            "scan",
            "engine",
            "--host",
            &engine.host(),
            "--progress",
            "quiet",
            "-o",
        ])
        .arg(tmp.path().join("inv.json"));
        if cached {
            c.arg("--cache-dir").arg(&cache);
        } else {
            c.arg("--no-cache");
        }
        let t = Instant::now();
        let out = c.output().expect("unsprawl runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        t.elapsed()
    };
    let (mut base, mut cold, mut warm) = (vec![], vec![], vec![]);
    scan(true); // fill the cache
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let out_file = tmp.path().join("saved.tar");
        let mut a: Vec<&str> = vec!["save", "-o", out_file.to_str().unwrap()];
        a.extend(tags.iter().map(String::as_str));
        engine.ok(&a);
        base.push(t.elapsed());
        std::fs::remove_file(&out_file)?;
        cold.push(scan(false));
        warm.push(scan(true));
    }
    let (b, c, w) = (median(base), median(cold), median(warm));
    println!(
        "  cold scan / docker save {:.2}x   warm scan / docker save {:.2}x   (docker save {:.2} s)",
        c.as_secs_f64() / b.as_secs_f64(),
        w.as_secs_f64() / b.as_secs_f64(),
        b.as_secs_f64()
    );
    Ok(())
}
