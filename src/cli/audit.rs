//! `unsprawl audit`: scan → link flows → plan → report in one run, for the periodic CI
//! job. Every document lands in one new folder (`reports/<UTC time>/`, never one an
//! earlier run wrote), so the job keeps them all; `--history reports/` finds the newest
//! earlier report itself for the trend.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::RegistryArgs;
use crate::flows::registrations::{RegistrationSource, add_flows};
use crate::report::policy::Rule;
use crate::scan::{self, Input, ScanOptions};

#[derive(Args)]
#[command(group(clap::ArgGroup::new("images").required(true).multiple(true)
    .args(["oci_dir", "archive", "registry", "engine"])))]
pub(super) struct AuditArgs {
    /// Exit 0 even when a source could not be read; by default that exits 1 (2, with
    /// nothing written, when nothing was read).
    #[arg(long)]
    allow_partial: bool,
    /// The registry runtime images are named in (as `plan --image-registry`); without it
    /// the audit's plan keeps the rules' name, and only counts.
    #[arg(long, value_name = "HOST/PATH")]
    image_registry: Option<String>,
    /// OCI layouts to scan.
    #[arg(long = "oci-dir", visible_alias = "with-oci-dir", value_name = "PATH")]
    oci_dir: Vec<PathBuf>,
    /// docker-save archives to scan.
    #[arg(long, visible_alias = "with-archive", value_name = "FILE")]
    archive: Vec<PathBuf>,
    /// Registries or images to scan (as `scan registry` takes them).
    #[arg(long, visible_alias = "with-registry", value_name = "HOST|REFERENCE")]
    registry: Vec<String>,
    /// Scan a Docker engine: `default` (DOCKER_HOST or the default socket) or its address.
    #[arg(long, value_name = "HOST")]
    engine: Option<String>,
    #[command(flatten)]
    registry_args: RegistryArgs,
    /// Prefect 1 registrations: a saved GraphQL response or `prefect build` file.
    #[arg(long, visible_alias = "export", value_name = "FILE", conflicts_with_all = ["prefect1_api", "prefect_api"])]
    prefect1_export: Option<PathBuf>,
    /// Prefect 1 GraphQL endpoint (key from $PREFECT__CLOUD__API_KEY).
    #[arg(long, value_name = "URL", conflicts_with = "prefect_api")]
    prefect1_api: Option<String>,
    /// Prefect 2/3 REST API (key from $PREFECT_API_KEY).
    #[arg(long, value_name = "URL")]
    prefect_api: Option<String>,
    /// `FROM=TO` registry host aliases for linking flows to images.
    #[arg(long = "registry-alias", value_name = "FROM=TO")]
    aliases: Vec<String>,
    /// Planning rules merged over the built-in default.
    #[arg(long = "rules", value_name = "FILE")]
    rules: Vec<PathBuf>,
    /// A checkout of the flows' git repository: what each flow file imports joins its
    /// requirement (as `scan prefect1 --flows-repo`).
    #[arg(long, value_name = "DIR")]
    flows_repo: Option<PathBuf>,
    /// Exit 1 when a flow is dangling or has problems (as the scan commands' `--strict`).
    #[arg(long)]
    strict: bool,
    /// The last audit's `report.json`, for the trend.
    #[arg(long, conflicts_with = "history")]
    previous: Option<PathBuf>,
    /// A folder of earlier audits (`reports/`): the newest `*/report.json` in it is the
    /// previous report, and the trend carries its history on.
    #[arg(long, value_name = "DIR")]
    history: Option<PathBuf>,
    /// Exit 1 when broken: images>N, orphans>N, dangling>N, stale>N, growth>P%.
    #[arg(long = "fail-on", value_name = "RULE")]
    fail_on: Vec<Rule>,
    /// Images no live flow has used for longer than this are stale: since the last use
    /// an earlier audit saw (--history), else since their creation.
    #[arg(long, default_value = "180d", value_parser = humantime::parse_duration)]
    stale_after: std::time::Duration,
    #[command(flatten)]
    price: super::report::PriceArgs,
    /// Layers analysed at once (default: one per core).
    #[arg(long)]
    jobs: Option<usize>,
    /// Progress on stderr, as for `scan`: `auto` (a bar on a terminal, else nothing),
    /// `json`, `quiet`.
    #[arg(long, value_enum, default_value = "auto")]
    progress: super::ProgressArg,
    /// Layer cache (default: the user's cache dir + /unsprawl); audits are incremental.
    #[arg(long, env = "UNSPRAWL_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Where everything goes (default `reports/<UTC time>/`, a new folder every run).
    #[arg(short, long)]
    output: Option<PathBuf>,
}

/// The newest earlier report under `history`: by its `generated_at`, then its folder name.
fn newest_report(history: &std::path::Path) -> Result<Option<PathBuf>> {
    use anyhow::Context;
    let entries = match std::fs::read_dir(history) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(e).with_context(|| format!("--history {}", history.display()));
        }
    };
    let mut found: Vec<(String, PathBuf)> = vec![];
    for e in entries.flatten() {
        let path = e.path().join("report.json");
        if !path.is_file() {
            continue;
        }
        // a report another tool or an old unsprawl left is skipped, not fatal
        let Ok(r) = super::report::read_previous(&path) else {
            continue;
        };
        found.push((r.generated_at.unwrap_or_default(), path));
    }
    found.sort();
    Ok(found.pop().map(|(_, p)| p))
}

/// `reports/<UTC time>/`, or with `-2`, `-3`… when a run in the same second made it.
fn new_run_dir() -> PathBuf {
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let stamp = now.trim_end_matches('Z').replace(':', "");
    let base = PathBuf::from("reports").join(format!("{stamp}Z"));
    let mut dir = base.clone();
    let mut n = 1;
    while dir.exists() {
        n += 1;
        dir = PathBuf::from(format!("{}-{n}", base.display()));
    }
    dir
}

pub(super) fn run(a: &AuditArgs) -> Result<ExitCode> {
    let dir = a.output.clone().unwrap_or_else(new_run_dir);
    let previous_path = match (&a.previous, &a.history) {
        (Some(p), _) => Some(p.clone()),
        (None, Some(h)) => newest_report(h)?,
        (None, None) => None,
    };
    let mut inputs: Vec<Input> = a.oci_dir.iter().cloned().map(Input::OciDir).collect();
    inputs.extend(a.archive.iter().cloned().map(Input::Archive));
    if !a.registry.is_empty() {
        inputs.extend(super::registry_inputs(&a.registry, &a.registry_args)?);
    }
    if let Some(host) = &a.engine {
        let engine = crate::scan::source::engine::EngineInput {
            host: (host != "default").then(|| host.clone()),
            filters: vec![],
        };
        crate::scan::source::engine::probe(&engine).map_err(anyhow::Error::msg)?;
        inputs.push(Input::Engine(engine));
    }
    let mut opts = ScanOptions {
        progress: a.progress.into(),
        jobs: a.jobs,
        ..ScanOptions::default()
    };
    if let Some(c) = &a.cache_dir {
        opts.cache_root = Some(c.clone());
    }
    let (mut inv, stats) = scan::scan(&inputs, &opts);
    if !a.allow_partial && !inv.errors.is_empty() && inv.images.is_empty() {
        anyhow::bail!("{}", super::nothing_scanned(&inv));
    }
    let incomplete = !a.allow_partial && !inv.errors.is_empty();
    let inv_path = dir.join("inventory.json");
    super::print_summary(&inv, &stats, &inv_path);

    let from = if let Some(f) = &a.prefect1_export {
        Some(RegistrationSource::Export(f.clone()))
    } else if let Some(api) = &a.prefect1_api {
        Some(RegistrationSource::Api {
            api: api.clone(),
            key: std::env::var("PREFECT__CLOUD__API_KEY")
                .ok()
                .filter(|k| !k.is_empty()),
            project: None,
            page_size: 100,
        })
    } else {
        a.prefect_api
            .as_ref()
            .map(|api| RegistrationSource::Prefect3 {
                api: Some((
                    api.clone(),
                    std::env::var("PREFECT_API_KEY")
                        .ok()
                        .filter(|k| !k.is_empty()),
                )),
                yaml: vec![],
                page_size: 200,
            })
    };
    if let Some(from) = &from {
        let aliases = super::parse_aliases(&a.aliases)?;
        add_flows(&mut inv, from, &aliases, a.flows_repo.as_deref())?;
        super::print_flow_summary(&inv, &inv_path);
    }
    super::write_json(&inv_path, &inv)?;

    let files: Vec<&std::path::Path> = a.rules.iter().map(PathBuf::as_path).collect();
    let mut rules = crate::rules::Rules::load(&files).map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(r) = &a.image_registry {
        rules.image.registry = super::plan::checked_registry(r)?;
    }
    let plan = if inv.flows.is_empty() {
        None
    } else {
        let mut solved = crate::plan::solve(&inv, &rules, &crate::plan::Options::default())?;
        let plan_path = dir.join("plan.json");
        solved.plan.inputs = super::plan::plan_inputs(&inv_path, &a.rules, &plan_path)?;
        super::plan::write_plan(&solved, &plan_path)?;
        super::plan::print_plan_summary(&solved.plan, &plan_path);
        Some(solved.plan)
    };
    let previous = previous_path
        .as_deref()
        .map(super::report::read_previous)
        .transpose()?;
    if let Some(p) = &previous_path {
        super::say::say!("previous report: {}", p.display());
    }
    let mut r = crate::report::build(
        &inv,
        plan.as_ref(),
        previous.as_ref(),
        &a.fail_on,
        &crate::report::Options {
            stale_after: a.stale_after,
            timestamp: true,
            built: &[],
            price: a.price.price(),
        },
    );
    let plan_path = dir.join("plan.json");
    r.inputs = super::report::report_inputs(
        &inv_path,
        plan.as_ref().map(|_| plan_path.as_path()),
        previous_path.as_deref(),
        &dir,
    )?;
    let written = super::report::write_report(&r, &dir, &super::report::ALL_FORMATS)?;
    super::say::say!("report: {}", written.join(", "));
    if incomplete {
        eprintln!(
            "incomplete: {} in the inventory; the report covers what could be read (exit 1; --allow-partial for 0)",
            super::say::count(inv.errors.len(), "source problem", "source problems")
        );
        return Ok(ExitCode::from(1));
    }
    let links = inv.flow_links.clone().unwrap_or_default();
    let flows_clean = links.dangling.is_empty() && inv.flows.iter().all(|f| f.problems.is_empty());
    if a.strict && !flows_clean {
        eprintln!(
            "strict: {} and {} with problems (exit 1)",
            super::say::count(links.dangling.len(), "dangling flow", "dangling flows"),
            inv.flows.iter().filter(|f| !f.problems.is_empty()).count()
        );
        return Ok(ExitCode::from(1));
    }
    Ok(super::report::verdict(&r))
}
