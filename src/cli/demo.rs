//! `unsprawl demo`: every stage on the bundled corpus (fixture images built into an OCI
//! layout and a docker-save archive, three teams' Prefect 1 registrations, a flows
//! repository): scan, link, plan, build, a dry-run migration and the report, into one
//! folder, with no network. `reports/example/` is a copy of its report.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};

use super::*;

/// The whole pipeline on the bundled corpus, into `out`.
pub(super) fn run(out: &Path) -> Result<ExitCode> {
    let specs = fixture::bundled_specs()?;
    let files = fixture::BundledFiles;
    let corpus = fixture::Corpus::new(specs, &files);
    let images = corpus.build_all()?;
    let layout = out.join("images/oci");
    let archive = out.join("images/docker-save.tar");
    if layout.exists() {
        std::fs::remove_dir_all(&layout)
            .with_context(|| format!("cannot clear {}", layout.display()))?;
    }
    fixture::write_oci_layout(&layout, &images)?;
    // the same two images also as a `docker save`: the inventory joins the copies
    let saved: Vec<fixture::BuiltImage> = ["team-a-flow-a", "tools-alpine"]
        .iter()
        .map(|n| corpus.build(n))
        .collect::<Result<_>>()?;
    fixture::write_docker_archive(&archive, &saved, fixture::ArchiveShape::Classic)?;
    say::say!(
        "demo: built {} fixture images into {}",
        images.len(),
        out.join("images").display()
    );

    let opts = ScanOptions {
        cache_root: Some(out.join("cache")),
        ..ScanOptions::default()
    };
    let (mut inv, stats) = scan::scan(&[Input::OciDir(layout), Input::Archive(archive)], &opts);
    let inv_path = out.join("inventory.json");
    print_summary(&inv, &stats, &inv_path);

    // the flows registered on those images (a saved Prefect 1 GraphQL response)
    let export = "fixtures/prefect1/export.graphql.json";
    let parsed = crate::flows::prefect1::parse(export, fixture::BUNDLED_PREFECT1_EXPORT)?;
    inv.errors.extend(parsed.problems);
    inv.sources.push(crate::inventory::SourceRef {
        kind: "prefect1-export".into(),
        location: export.into(),
    });
    // the repository those flows' code lives in, as a git checkout
    let repo_dir = out.join("flows-repo");
    let branch = fixture::flows_repo::write_flows_repo(&repo_dir)?;
    let files = crate::flows::source::read_repo(&repo_dir).map_err(anyhow::Error::msg)?;
    crate::flows::link(&mut inv, parsed.flows, &[], Some(&files));
    // no timestamps: the same fixtures give the same documents, byte for byte (the
    // report records them by SHA-256, and reports/example is checked for drift)
    inv.scanned_at = None;
    write_json(&inv_path, &inv)?;
    print_flow_summary(&inv, &inv_path);

    // the runtime images those flows need, under the built-in rules, named in a registry
    // of this machine (the demo builds them into an OCI layout, pushes nothing)
    let mut rules = crate::rules::Rules::default_rules();
    rules.image.registry = "localhost/unsprawl-demo".into();
    let opts = crate::plan::Options {
        timestamp: false,
        ..crate::plan::Options::default()
    };
    let mut solved = crate::plan::solve(&inv, &rules, &opts)?;
    let plan_path = out.join("plan.json");
    solved.plan.inputs = plan::plan_inputs(&inv_path, &[], &plan_path)?;
    plan::write_plan(&solved, &plan_path)?;
    plan::print_plan_summary(&solved.plan, &plan_path);

    // the migration to Git storage, as a dry run (the flows that import the repository's
    // own mylib are refused: Git storage runs a flow file alone)
    let rows = crate::flows::prefect1::parse_export_rows(export, fixture::BUNDLED_PREFECT1_EXPORT)?;
    // the runtime images, built from the scanned images' own files into an OCI layout,
    // and seen there by the migration's runtime-image check
    let runtime_dir = out.join("runtime-images.oci");
    let (built_note, built) = build_demo_images(
        &inv,
        &solved.plan,
        &plan_path,
        &runtime_dir,
        &out.join("cache"),
    )?;
    say::say!("{built_note}");
    let build_path = out.join("build.json");
    let build_doc = crate::build::BuildDoc {
        schema: crate::build::SCHEMA.into(),
        generator: crate::provenance::Generator::this(),
        inputs: vec![crate::provenance::record("plan", &plan_path, out)?],
        images: built,
    };
    write_json(&build_path, &build_doc)?;
    let seen = crate::migrate::runtime_image::check(
        &solved.plan,
        &crate::migrate::runtime_image::Location::Layout(runtime_dir),
        Some(out.join("cache")),
    );
    let carried_files = crate::migrate::runtime_image::carried_files(
        &inv,
        &solved.plan,
        &seen,
        &crate::build::source::Access {
            temp_dir: crate::scan::scratch::dir(Some(&out.join("cache"))),
            cache_root: Some(out.join("cache")),
            ..crate::build::source::Access::default()
        },
    );
    let checkout = crate::migrate::gitref::Checkout::open(&repo_dir).map_err(anyhow::Error::msg)?;
    let git_ref = crate::migrate::gitref::decide(
        &crate::migrate::gitref::RefFrom::Branch(branch),
        &|_| None,
        &checkout,
    )
    .map_err(anyhow::Error::msg)?;
    let git = crate::migrate::GitTarget::new(
        Some("https://git.example.com/platform/flows.git"),
        None,
        None,
        git_ref,
    )
    .map_err(anyhow::Error::msg)?;
    let m = crate::migrate::prepare(crate::migrate::Inputs {
        inventory: &inv,
        plan: &solved.plan,
        git,
        checkout: &checkout,
        registrations: crate::migrate::Registrations::Prefect1(rows),
        registrations_from: export.into(),
        from_server: false,
        runtime_images: &seen,
        default_run_config: "KubernetesRun".into(),
        token_secret: None,
        carried_files,
    });
    let migration_dir = out.join("migration");
    let mut m = m;
    m.inputs = migrate::migration_inputs(&plan_path, &inv_path, &migration_dir)?;
    crate::migrate::documents::write(&m, &migration_dir)?;
    migrate::print_summary(&m, &migration_dir);

    // and the audit report of it all (no timestamps: the same input, the same files;
    // reports/example is a copy, checked for drift by the tests), following the weekly
    // audits of this estate's earlier weeks (bundled) as a scheduled audit would
    let previous_path = out.join("previous-report.json");
    std::fs::write(&previous_path, BUNDLED_PREVIOUS_REPORT)
        .with_context(|| format!("cannot write {}", previous_path.display()))?;
    let previous = report::previous_from(&previous_path, BUNDLED_PREVIOUS_REPORT)?;
    let mut r = crate::report::build(
        &inv,
        Some(&solved.plan),
        Some(&previous),
        &[],
        &crate::report::Options {
            stale_after: std::time::Duration::from_secs(180 * 86_400),
            timestamp: false,
            built: &build_doc.images,
            price: crate::report::savings::Price::default(),
        },
    );
    let report_dir = out.join("report");
    r.inputs = report::report_inputs(
        &inv_path,
        Some(&plan_path),
        Some(&previous_path),
        &report_dir,
    )?;
    r.inputs.push(crate::provenance::record(
        "build",
        &build_path,
        &report_dir,
    )?);
    let written = report::write_report(&r, &report_dir, &report::ALL_FORMATS)?;
    say::say!("report: {}", written.join(", "));
    Ok(ExitCode::SUCCESS)
}

/// The last of three weekly audits of the demo's estate, from before its newest image
/// was pushed (made by `unsprawl report --previous …` on the demo inventory less those
/// images; see `fixtures/demo/README.md`): the demo's report has a trend to show.
const BUNDLED_PREVIOUS_REPORT: &str = include_str!("../../fixtures/demo/previous-report.json");

/// The wheels the demo's runtime images need, bundled (`fixtures/wheels/`), written
/// beside the layout.
fn demo_wheels(layout: &Path) -> Result<PathBuf> {
    const DULWICH: &[u8] = include_bytes!("../../fixtures/wheels/dulwich-0.22.8-py3-none-any.whl");
    let dir = layout.with_extension("wheels");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let file = dir.join("dulwich-0.22.8-py3-none-any.whl");
    std::fs::write(&file, DULWICH).with_context(|| format!("cannot write {}", file.display()))?;
    Ok(dir)
}

/// The demo's runtime images, on the layers their member images share.
fn build_demo_images(
    inv: &Inventory,
    plan: &crate::plan::Plan,
    plan_path: &Path,
    dir: &Path,
    cache: &Path,
) -> Result<(String, Vec<crate::build::BuiltImage>)> {
    use crate::build::{self, BaseFrom, Options, source};
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot clear {}", dir.display()))?;
    }
    let opts = Options {
        base_from: BaseFrom::Members,
        access: source::Access {
            temp_dir: crate::scan::scratch::dir(Some(cache)),
            cache_root: Some(cache.to_path_buf()),
            ..source::Access::default()
        },
        plan_digest: crate::provenance::file_sha256(plan_path)?,
        // the demo is offline: the one wheel it needs (dulwich) is bundled
        wheels: build::wheel::WheelSource {
            dir: Some(demo_wheels(dir)?),
            index_url: None,
        },
    };
    let mut sources = source::Sources::default();
    let mut built = vec![];
    let mut entries = vec![];
    let mut lines = vec![];
    for rt in &plan.runtime_images {
        match build::build_image(inv, rt, &mut sources, &opts) {
            Ok(b) => {
                lines.push(format!("  built    {}  {}", b.name, b.manifest_digest));
                entries.push(build::entry(&b, "built", vec![]));
                built.push(b);
            }
            Err(e) => {
                lines.push(format!("  refused  {e}"));
                entries.push(build::refused(rt, &e));
            }
        }
    }
    let refs: Vec<&build::Built> = built.iter().collect();
    build::publish::write_layout(dir, &refs)?;
    let note = format!(
        "build: {} of {} → {}\n{}",
        built.len(),
        say::count(plan.runtime_images.len(), "runtime image", "runtime images"),
        dir.display(),
        lines.join("\n")
    );
    Ok((note, entries))
}
