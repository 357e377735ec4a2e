//! `unsprawl build` against its floor, measured in the same run (a ratio, not seconds).
//!
//! floor = read every layer of the source image once (decompress, walk the tar, read each
//!         file's bytes) + gzip the new layer's tar once and write it to disk;
//! build = `build::build_image` (harvest the pinned distributions' RECORD files from the
//!         squashed image, check every hash, assemble the reproducible layer, config and
//!         manifest) + writing the new layer to disk; the layer facts come from the cache
//!         the scan filled, as after a real scan.
//!
//! The corpus (`fixtures/bench-build/bench-ml.toml` on `fixtures/bench/bench-base.toml`):
//! 200 MB of distribution files to harvest above a 200 MB base. Built on first use into
//! `target/bench-build-corpus/`. Run with `cargo bench --bench build`. Target: ≤ 1.5×.

mod common;
use common::median;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use unsprawl::build::{self, BaseFrom, Options, source};
use unsprawl::fixture::{self, Corpus, DirFiles};
use unsprawl::scan::{self, Input, ScanOptions};

const ROUNDS: usize = 3;

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-build-corpus")
}

fn build_corpus(dir: &Path) -> anyhow::Result<()> {
    common::build_once(dir, &["fixtures/bench", "fixtures/bench-build"], || {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let specs = fixture::load_specs(&[
            &root.join("fixtures/bench"),
            &root.join("fixtures/bench-build"),
        ])?;
        let files = DirFiles(root.join("fixtures"));
        let image = Corpus::new(specs, &files).build("bench-ml")?;
        fixture::write_oci_layout(&dir.join("oci"), &[image])
    })
}

/// One flow registration on the corpus image (Docker storage names it).
const EXPORT: &str = r#"{"data": {"flow": [{"id": "00000000-0000-4000-8000-00000000b001",
  "name": "ml-flow", "version": 1, "version_group_id": "vg-ml", "archived": false,
  "storage": {"type": "Docker", "image_name": "bench/ml", "image_tag": "1", "registry_url": null},
  "run_config": {"type": "KubernetesRun", "labels": []},
  "project": {"id": "p", "name": "bench"},
  "flow_group": {"id": "fg", "name": "vg-ml", "labels": null, "run_config": null}}]}}"#;

fn main() -> anyhow::Result<()> {
    let dir = corpus_dir();
    build_corpus(&dir)?;
    let oci = dir.join("oci");
    let cache = dir.join("cache");
    let opts = ScanOptions {
        cache_root: Some(cache.clone()),
        progress: scan::progress::ProgressMode::Quiet,
        ..ScanOptions::default()
    };
    let (mut inv, _) = scan::scan(&[Input::OciDir(oci.clone())], &opts);
    let parsed =
        unsprawl::flows::prefect1::parse("bench export", EXPORT).map_err(anyhow::Error::msg)?;
    unsprawl::flows::link(&mut inv, parsed.flows, &[], None);
    let mut rules = unsprawl::rules::Rules::default_rules();
    rules.image.registry = "localhost/bench".into();
    // the floor reads and gzips the harvested files only: no additions to fetch code
    rules.fetch.clear();
    let solved = unsprawl::plan::solve(&inv, &rules, &unsprawl::plan::Options::default())?;
    anyhow::ensure!(solved.plan.runtime_images.len() == 1, "one runtime image");
    let rt = &solved.plan.runtime_images[0];
    let img = &inv.images[0];
    let bopts = Options {
        base_from: BaseFrom::Members,
        access: source::Access {
            temp_dir: std::env::temp_dir(),
            cache_root: Some(cache),
            ..source::Access::default()
        },
        plan_digest: "sha256:bench".into(),
        wheels: unsprawl::build::wheel::WheelSource {
            dir: None,
            index_url: None,
        },
    };
    let out = tempfile::tempdir()?;

    let mut build_times = vec![];
    let mut floor_times = vec![];
    let mut harvested = 0u64;
    for round in 0..ROUNDS {
        // build
        let t = Instant::now();
        let mut sources = source::Sources::default();
        let b = build::build_image(&inv, rt, &mut sources, &bopts)?;
        std::fs::write(out.path().join(format!("layer-{round}")), &b.new_layer.blob)?;
        build_times.push(t.elapsed());

        // the raw tar of the new layer, made outside the timing
        let mut raw = vec![];
        flate2::read::GzDecoder::new(b.new_layer.blob.as_slice()).read_to_end(&mut raw)?;
        harvested = raw.len() as u64;

        // floor: read the source layers once, gzip the new layer once
        let t = Instant::now();
        for l in &img.layers {
            let path = oci
                .join("blobs/sha256")
                .join(l.digest.trim_start_matches("sha256:"));
            let f = std::io::BufReader::with_capacity(256 << 10, std::fs::File::open(path)?);
            let mut tar = tar::Archive::new(flate2::bufread::MultiGzDecoder::new(f));
            let mut buf = vec![];
            for e in tar.entries()? {
                let mut e = e?;
                buf.clear();
                e.read_to_end(&mut buf)?;
            }
        }
        let mut gz = flate2::GzBuilder::new().mtime(0).write(
            Vec::with_capacity(raw.len() / 2),
            flate2::Compression::new(6),
        );
        gz.write_all(&raw)?;
        std::fs::write(out.path().join(format!("floor-{round}")), gz.finish()?)?;
        floor_times.push(t.elapsed());
    }
    let (b, f) = (median(build_times), median(floor_times));
    println!(
        "build, 1 runtime image, {} MB harvested onto a {}-layer base: {:.2}× the floor (read the source layers once + gzip the new layer once); build {:.2?}, floor {:.2?} (medians of {ROUNDS})",
        harvested / 1_000_000,
        img.layers.len() - 1,
        b.as_secs_f64() / f.as_secs_f64(),
        b,
        f
    );
    Ok(())
}
