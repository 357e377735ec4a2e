//! Layer analysis against its floor, measured in the same run (ratios, not seconds:
//! these machines are small and noisy).
//!
//! floor = stream every unique layer blob once, decompress it and walk its tar entries,
//!         with the same parallelism the scanner uses, doing nothing else;
//! cold  = `scan` of the same OCI layout without a cache (configs, both digests, file
//!         extraction and parsing, squash, inventory);
//! warm  = the same scan with every layer already in the cache.
//!
//! The corpus compresses 2.3× (92 MB stored, 212 MB of files), as the real
//! python:3.11-slim base layer does (92.7 MB gzip → 210 MB tar).
//!
//! Run with `cargo bench --bench scan`. The corpus (≥ 200 MB of uncompressed layers, three
//! images sharing two base layers) is built from `fixtures/bench/*.toml` on first use
//! into `target/bench-corpus/`.

mod common;
use common::median;

use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;
use unsprawl::fixture::{self, Corpus, DirFiles};
use unsprawl::scan::{self, Input, ScanOptions};

const ROUNDS: usize = 5;

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-corpus")
}

fn build_corpus(dir: &Path) -> anyhow::Result<()> {
    common::build_once(dir, &["fixtures/bench"], || {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let specs = fixture::load_specs(&[&root.join("fixtures/bench")])?;
        let files = DirFiles(root.join("fixtures"));
        let images = Corpus::new(specs, &files).build_all()?;
        fixture::write_oci_layout(&dir.join("oci"), &images)
    })
}

/// Every distinct layer blob of the layout, with its size.
fn layer_blobs(oci: &Path) -> Vec<(PathBuf, u64)> {
    let mut blobs = std::collections::BTreeMap::new();
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(oci.join("index.json")).unwrap()).unwrap();
    for m in index["manifests"].as_array().unwrap() {
        let hex = m["digest"].as_str().unwrap().trim_start_matches("sha256:");
        let man: serde_json::Value =
            serde_json::from_slice(&std::fs::read(oci.join("blobs/sha256").join(hex)).unwrap())
                .unwrap();
        for l in man["layers"].as_array().unwrap() {
            let hex = l["digest"].as_str().unwrap().trim_start_matches("sha256:");
            blobs.insert(hex.to_string(), l["size"].as_u64().unwrap());
        }
    }
    blobs
        .into_iter()
        .map(|(h, s)| (oci.join("blobs/sha256").join(h), s))
        .collect()
}

/// The floor: decompress and walk the tar of every unique layer, nothing more.
fn floor(blobs: &[(PathBuf, u64)]) -> u64 {
    blobs
        .par_iter()
        .map(|(path, _)| {
            let f = BufReader::with_capacity(256 << 10, std::fs::File::open(path).unwrap());
            let dec = flate2::bufread::MultiGzDecoder::new(f);
            let mut ar = tar::Archive::new(BufReader::with_capacity(128 << 10, dec));
            let mut n = 0u64;
            for e in ar.entries().unwrap() {
                n += e.unwrap().size();
            }
            let mut rest = ar.into_inner();
            std::io::copy(&mut rest, &mut std::io::sink()).unwrap();
            let _ = rest.read(&mut [0u8; 1]);
            n
        })
        .sum()
}

fn main() -> anyhow::Result<()> {
    let dir = corpus_dir();
    build_corpus(&dir)?;
    let oci = dir.join("oci");
    let blobs = layer_blobs(&oci);
    let stored: u64 = blobs.iter().map(|b| b.1).sum();
    let cache = tempfile::tempdir()?;
    let cold_opts = ScanOptions {
        cache_root: None,
        ..ScanOptions::default()
    };
    let verify_opts = ScanOptions {
        cache_root: None,
        verify_diff_ids: true,
        ..ScanOptions::default()
    };
    let warm_opts = ScanOptions {
        cache_root: Some(cache.path().to_path_buf()),
        ..ScanOptions::default()
    };
    let inputs = [Input::OciDir(oci.clone())];
    // fill the page cache and the layer cache once, and check the corpus is whole
    let (inv, _) = scan::scan(&inputs, &warm_opts);
    assert!(
        inv.images
            .iter()
            .all(|i| i.status == unsprawl::inventory::Status::Ok)
    );
    let uncompressed = floor(&blobs);

    let (mut floors, mut colds, mut warms, mut verifies) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        // interleaved, so drift in machine load hits all three alike
        let t = Instant::now();
        floor(&blobs);
        floors.push(t.elapsed());
        let t = Instant::now();
        let (_, stats) = scan::scan(&inputs, &cold_opts);
        colds.push(t.elapsed());
        assert_eq!(stats.layers_from_cache, 0);
        let t = Instant::now();
        scan::scan(&inputs, &verify_opts);
        verifies.push(t.elapsed());
        let t = Instant::now();
        let (_, stats) = scan::scan(&inputs, &warm_opts);
        warms.push(t.elapsed());
        assert_eq!(stats.layers_read, 0);
    }
    let (f, c, w, v) = (
        median(floors),
        median(colds),
        median(warms),
        median(verifies),
    );
    println!(
        "corpus: {} images, {} unique layers, {:.0} MB stored, {:.0} MB of file data",
        inv.images.len(),
        blobs.len(),
        stored as f64 / 1e6,
        uncompressed as f64 / 1e6
    );
    println!(
        "cold scan / floor (decompress + untar): {:.2}x   (target <= 1.30x)",
        c.as_secs_f64() / f.as_secs_f64()
    );
    println!(
        "cold scan --verify-diff-ids / floor:    {:.2}x   (a second SHA-256 over every uncompressed byte)",
        v.as_secs_f64() / f.as_secs_f64()
    );
    println!(
        "warm scan / cold scan:                  {:.3}x  (target <= 0.05x)",
        w.as_secs_f64() / c.as_secs_f64()
    );
    println!(
        "({ROUNDS} interleaved rounds, medians; rayon threads: {})",
        rayon::current_num_threads()
    );
    if std::env::var_os("BENCH_VERBOSE").is_some() {
        println!("absolute (noisy): floor {f:?}, cold {c:?}, warm {w:?}");
    }
    Ok(())
}
