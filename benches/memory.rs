//! Peak memory (RSS) of the stages that hold a whole Prefect 1 estate, against a floor
//! measured in the same run: a process holding the export file's bytes once.
//!
//! Estate: N synthetic flow versions on Docker storage (default 10,000;
//! `UNSPRAWL_BENCH_FLOWS=50000` is the 50,000-flow export the reliability issue names),
//! each row with a 4 KB serialized flow, on N/25 per-flow images (flow versions share
//! their flow's image), their flow files committed to a git repository; built once under
//! `target/bench-memory/N/`.
//!
//! floor   = read `export.json` into memory, once;
//! scan    = `unsprawl scan prefect1 --export export.json --images images.json` (the real
//!           binary);
//! plan    = `unsprawl plan inventory.json` (the real binary);
//! migrate = what `unsprawl migrate --export` runs, in a child process of this bench:
//!           read the plan, the inventory and the export, prepare every flow, write
//!           `migration.json`, `diff.md` and the per-flow documents. Every runtime image
//!           counts as seen (the bench measures the migration, not a registry).
//!
//! Tags: one small image in a real loopback registry (Debian `docker-registry`) under
//! `UNSPRAWL_BENCH_TAGS` tags (default 50,000; 1,000,000 is the reliability issue's case),
//! `unsprawl scan registry` against the same scan of 1,000 tags: the peak RSS should not
//! grow with the tags beyond their names in the inventory. The tags are written into the
//! registry's storage as `docker-registry` itself stores a tag (two `link` files), since
//! pushing a million manifests would take the bench an hour.
//!
//! `UNSPRAWL_BENCH_STAGES=1` makes the migrate child print its VmHWM after each stage (plan,
//! inventory, export, checkout, prepare, documents), to see where a peak comes from.
//!
//! Prints each peak, its ratio to the floor, and the targets (migrate ≤ 1 GB on a 200 MB
//! export). Run with `cargo bench --bench memory`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;
use unsprawl::migrate::gitref::{Checkout, RefFrom, decide};
use unsprawl::migrate::{GitTarget, Inputs, prepare};
use unsprawl::plan::{self, Options};
use unsprawl::rules::Rules;

const PHASE: &str = "UNSPRAWL_BENCH_MEMORY_PHASE";

fn env_or(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn root(n: usize, tasks: usize) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("target/bench-memory/{n}x{tasks}"))
}

/// The estate's files, written once per shape (the generator's source is the key).
fn estate(n: usize, tasks: usize) -> anyhow::Result<PathBuf> {
    let dir = root(n, tasks);
    let key = unsprawl::scan::source::sha256_digest(
        format!(
            "{}{}",
            include_str!("common/mod.rs"),
            include_str!("memory.rs")
        )
        .as_bytes(),
    );
    let stamp = dir.join("estate.stamp");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(key.as_str()) {
        return Ok(dir);
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let common::Prefect1Estate { inv, rows, files } =
        common::prefect1_estate(n, (n / 25).max(1), tasks);
    let branch = unsprawl::fixture::flows_repo::commit_files(&dir.join("flows"), &files)?;
    std::fs::write(dir.join("branch"), branch)?;
    let mut images = inv.clone();
    images.flows.clear();
    unsprawl::output::write_json(&dir.join("images.json"), &images)?;
    unsprawl::output::write_json(&dir.join("inventory.json"), &inv)?;
    let export = std::fs::File::create(dir.join("export.json"))?;
    serde_json::to_writer(
        std::io::BufWriter::new(export),
        &json!({"data": {"flow": rows}}),
    )?;
    drop(rows);
    let mut rules = Rules::default_rules();
    rules.image.registry = "registry.bench.internal/runtime".into();
    let solved = plan::solve(&inv, &rules, &Options::default())?;
    let mut plan = solved.plan;
    plan.inputs = vec![unsprawl::provenance::record(
        "inventory",
        &dir.join("inventory.json"),
        &dir,
    )?];
    unsprawl::output::write_json(&dir.join("plan.json"), &plan)?;
    std::fs::write(&stamp, key)?;
    Ok(dir)
}

/// The child's work: hold the export (floor), or migrate as `unsprawl migrate` does.
fn child(phase: &str, dir: &Path) -> anyhow::Result<()> {
    match phase {
        "floor" => {
            let bytes = std::fs::read(dir.join("export.json"))?;
            std::hint::black_box(&bytes);
        }
        "migrate" => {
            let hwm = |at: &str| {
                if std::env::var_os("UNSPRAWL_BENCH_STAGES").is_some() {
                    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
                    let l = s.lines().find(|l| l.starts_with("VmHWM")).unwrap_or("");
                    let r = s.lines().find(|l| l.starts_with("VmRSS")).unwrap_or("");
                    eprintln!("{at}: {l} {r}");
                }
            };
            let plan: unsprawl::plan::Plan = unsprawl::document::read(
                &dir.join("plan.json"),
                &[unsprawl::plan::document::SCHEMA],
            )?;
            hwm("plan");
            let inv = unsprawl::inventory::Inventory::read(&dir.join("inventory.json"))?;
            hwm("inventory");
            let rows = unsprawl::flows::prefect1::read_export(&dir.join("export.json"))?;
            hwm("export");
            let checkout = Checkout::open(&dir.join("flows")).map_err(anyhow::Error::msg)?;
            hwm("checkout");
            let branch = std::fs::read_to_string(dir.join("branch"))?;
            let git_ref = decide(&RefFrom::Branch(branch), &|_| None, &checkout)
                .map_err(anyhow::Error::msg)?;
            let git = GitTarget::new(
                Some("https://git.example.com/platform/flows.git"),
                None,
                None,
                git_ref,
            )
            .map_err(anyhow::Error::msg)?;
            let seen = common::every_runtime_image_seen(&inv, &plan);
            let m = prepare(Inputs {
                inventory: &inv,
                plan: &plan,
                git,
                checkout: &checkout,
                registrations: unsprawl::migrate::Registrations::Prefect1(rows),
                registrations_from: "export.json".into(),
                from_server: false,
                runtime_images: &seen,
                default_run_config: "KubernetesRun".into(),
                token_secret: None,
                carried_files: Default::default(),
            });
            hwm("prepare");
            let out = dir.join("migration");
            unsprawl::migrate::documents::write(&m, &out)?;
            hwm("documents");
            anyhow::ensure!(
                m.summary.ready == m.items.len(),
                "every synthetic flow verifies: {} of {} ready",
                m.summary.ready,
                m.items.len()
            );
        }
        other => anyhow::bail!("unknown phase {other}"),
    }
    Ok(())
}

fn this_bench(phase: &str, dir: &Path) -> Command {
    let mut c = Command::new(std::env::current_exe().expect("the bench binary"));
    c.env(PHASE, phase).arg(dir);
    c
}

fn unsprawl(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_unsprawl"));
    c.current_dir(dir).args(args);
    c
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn main() -> anyhow::Result<()> {
    if let Ok(phase) = std::env::var(PHASE) {
        let dir = std::env::args().nth(1).expect("the estate folder");
        return child(&phase, Path::new(&dir));
    }
    // many small flows, and fewer large ones (150 tasks: a 100 KB serialized flow)
    measure_estate(env_or("UNSPRAWL_BENCH_FLOWS", 10_000), 3, None)?;
    measure_estate(
        env_or("UNSPRAWL_BENCH_DEEP_FLOWS", 2_000),
        150,
        Some("migrate ≤ 1,000 MB on a 200 MB export"),
    )?;
    measure_tags(env_or("UNSPRAWL_BENCH_TAGS", 50_000))?;
    Ok(())
}

/// A registry of one repository whose one image has `tags` tags (at least 1,000).
fn tagged_registry(tags: usize) -> anyhow::Result<unsprawl_testkit::local_registry::LocalRegistry> {
    use unsprawl::fixture;
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("target/bench-memory/tags-{tags}"));
    let _ = std::fs::remove_dir_all(&dir);
    let reg = unsprawl_testkit::local_registry::LocalRegistry::start(&dir, "")?;
    let spec = r#"name = "bench/many"
tags = ["t0"]
[[layers]]
created_by = "ADD app"
files = [{ path = "app/main.py", text = "print('hello')\n" }]
"#;
    let mut all = std::collections::BTreeMap::new();
    all.insert("many".to_string(), fixture::spec::parse("many", spec)?);
    common::push_specs(&reg.host(), all)?;
    let tags_dir = reg
        .data_dir
        .join("docker/registry/v2/repositories/bench/many/_manifests/tags");
    let digest = std::fs::read_to_string(tags_dir.join("t0/current/link"))?;
    let hex = digest.trim_start_matches("sha256:");
    for t in 1..tags {
        let tag = tags_dir.join(format!("t{t}"));
        std::fs::create_dir_all(tag.join("current"))?;
        std::fs::write(tag.join("current/link"), &digest)?;
        let index = tag.join(format!("index/sha256/{hex}"));
        std::fs::create_dir_all(&index)?;
        std::fs::write(index.join("link"), &digest)?;
    }
    Ok(reg)
}

fn measure_tags(tags: usize) -> anyhow::Result<()> {
    let tags = tags.max(1_000);
    let mut peaks = vec![];
    for n in [1_000, tags] {
        let reg = tagged_registry(n)?;
        let out = tempfile::tempdir()?;
        let (t, peak) = common::measure(
            Command::new(env!("CARGO_BIN_EXE_unsprawl"))
                .args([
                    "scan",
                    "registry",
                    &reg.host(),
                    "--plain-http",
                    "--no-cache",
                    "-o",
                ])
                .arg(out.path().join("inventory.json")),
        );
        let inv = unsprawl::inventory::Inventory::read(&out.path().join("inventory.json"))?;
        let refs: usize = inv.images.iter().map(|i| i.references.len()).sum();
        anyhow::ensure!(refs == n, "{n} tags scanned as {refs} references");
        peaks.push((n, peak, t));
        let _ = std::fs::remove_dir_all(reg.data_dir.parent().expect("the registry folder"));
    }
    let (n0, p0, _) = peaks[0];
    let (n1, p1, t1) = peaks[1];
    println!(
        "memory, scan registry, one image under {n1} tags: peak RSS {:.0} MB = {:.2}× the same scan of {n0} tags ({:.0} MB); {:.0} bytes per tag ({:.1} s)",
        mb(p1),
        p1 as f64 / p0 as f64,
        mb(p0),
        (p1.saturating_sub(p0)) as f64 / (n1 - n0).max(1) as f64,
        t1.as_secs_f64()
    );
    println!("  target: RSS independent of the number of tags (a tag costs its name)");
    Ok(())
}

fn measure_estate(n: usize, tasks: usize, target: Option<&str>) -> anyhow::Result<()> {
    let dir = estate(n, tasks)?;
    let export = std::fs::metadata(dir.join("export.json"))?.len();
    let (_, floor) = common::measure(&mut this_bench("floor", &dir));
    let (scan_t, scan) = common::measure(&mut unsprawl(
        &dir,
        &[
            "scan",
            "prefect1",
            "--export",
            "export.json",
            "--images",
            "images.json",
            "-o",
            "scanned.json",
        ],
    ));
    let (plan_t, planned) = common::measure(&mut unsprawl(
        &dir,
        &[
            "plan",
            "inventory.json",
            "--image-registry",
            "registry.bench.internal/runtime",
            "-o",
            "planned.json",
        ],
    ));
    let (migrate_t, migrate) = common::measure(&mut this_bench("migrate", &dir));
    println!(
        "memory, {n} flows of {tasks} tasks, export {:.0} MB: floor (the export held once) {:.0} MB",
        mb(export),
        mb(floor)
    );
    for (what, peak, t) in [
        ("scan prefect1", scan, scan_t),
        ("plan", planned, plan_t),
        ("migrate (prepare + documents)", migrate, migrate_t),
    ] {
        println!(
            "  {what:<30} peak RSS {:>6.0} MB = {:.2}× floor ({:.1} s)",
            mb(peak),
            peak as f64 / floor as f64,
            t.as_secs_f64()
        );
    }
    if let Some(t) = target {
        println!("  target: {t}");
    }
    Ok(())
}
