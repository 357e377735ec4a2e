//! `unsprawl migrate` (plan + inventory in; migration document, diff and per-flow
//! documents out; `--apply` writes) and `unsprawl rollback JOURNAL`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::say;
use clap::{Args, ValueEnum};

use crate::inventory::{Inventory, System};
use crate::migrate::apply::{self, Endpoint};
use crate::migrate::gitref::{self, Checkout, RefFrom};
use crate::migrate::{self, GitTarget, Inputs, Migration, Registrations, Status};
use crate::plan::Plan;

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub(super) enum Target {
    Prefect1,
    Prefect3,
}

impl From<Target> for System {
    fn from(t: Target) -> System {
        match t {
            Target::Prefect1 => System::Prefect1,
            Target::Prefect3 => System::Prefect3,
        }
    }
}

#[derive(Args)]
pub(super) struct MigrateArgs {
    /// The plan (`unsprawl plan`): which runtime image each flow moves to.
    plan: PathBuf,
    /// The inventory the plan was made from [default: inventory.json beside the plan].
    #[arg(long)]
    inventory: Option<PathBuf>,
    /// The flows repository's clone URL (`https://host/owner/name.git`).
    #[arg(long, conflicts_with_all = ["repo_host", "repo"])]
    repo_url: Option<String>,
    /// Or its host (`git.example.com[:port]`) …
    #[arg(long, requires = "repo")]
    repo_host: Option<String>,
    /// … and `OWNER/NAME`.
    #[arg(long, requires = "repo_host")]
    repo: Option<String>,
    /// A checkout of that repository (or a folder of one): the reference is read from it
    /// and every flow file is checked at that reference.
    #[arg(long)]
    flows_repo: PathBuf,
    /// Name of the Prefect 1 Secret / Prefect 3 Secret block holding the git token.
    #[arg(long)]
    git_token_secret: Option<String>,
    /// Prefect 1 `git_token_username` (default: the repository owner).
    #[arg(long)]
    git_token_username: Option<String>,
    /// `env` (BUILD_TAG → GIT_BRANCH → active branch; CI variables on a detached HEAD),
    /// `branch=NAME` or `tag=NAME`.
    #[arg(long, default_value = "env")]
    ref_from: RefFrom,
    /// Which system's flows to migrate [default: the planned flows' system].
    #[arg(long, value_enum)]
    target: Option<Target>,
    /// The server to read (and with --apply, write): Prefect 1 GraphQL URL or Prefect 3
    /// API URL [default: where the inventory read the flows].
    #[arg(long)]
    api: Option<String>,
    /// Prefect 1: a saved flows response to read instead of a server (dry run only).
    #[arg(long, conflicts_with = "api")]
    export: Option<PathBuf>,
    /// Environment variable holding the API key (sent as a bearer token, never printed)
    /// [default: PREFECT__CLOUD__API_KEY for Prefect 1, PREFECT_API_KEY for Prefect 3].
    #[arg(long)]
    api_key_env: Option<String>,
    /// The OCI layout `unsprawl build -o DIR` wrote the runtime images to [default: the
    /// registry each image's name says].
    #[arg(long, value_name = "DIR")]
    runtime_images: Option<PathBuf>,
    /// Talk plain HTTP to the runtime images' registry.
    #[arg(long)]
    plain_http: bool,
    /// Prefect 1: the run config type for flows whose run config names no image.
    #[arg(long, default_value = "KubernetesRun")]
    default_run_config: String,
    /// Where the migration document, the diff and the per-flow documents go.
    #[arg(short, long, default_value = "migration")]
    output: PathBuf,
    /// Write the ready flows to the server (journaled in OUTPUT/journal.jsonl).
    #[arg(long)]
    apply: bool,
    /// With --apply: wait this long between writes (spares a busy server).
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pause: Duration,
}

#[derive(Args)]
pub(super) struct RollbackArgs {
    /// The journal an apply wrote (`migration/journal.jsonl`).
    journal: PathBuf,
    /// The server [default: the one the journal names].
    #[arg(long)]
    api: Option<String>,
    /// As for `migrate`.
    #[arg(long)]
    api_key_env: Option<String>,
    /// Restore for real; without it, print what would be restored.
    #[arg(long)]
    apply: bool,
    /// Also restore registrations someone changed after the migration.
    #[arg(long)]
    force: bool,
}

/// The API key from `--api-key-env`, or from the target's usual variable.
fn key_from(env: Option<&str>, target: System) -> Option<String> {
    let var = env.unwrap_or(if target == System::Prefect1 {
        "PREFECT__CLOUD__API_KEY"
    } else {
        "PREFECT_API_KEY"
    });
    std::env::var(var).ok().filter(|k| !k.is_empty())
}

pub(super) fn run(a: &MigrateArgs) -> Result<ExitCode> {
    let plan: Plan = super::report::read(&a.plan, crate::plan::document::SCHEMA)?;
    let inv_path = plan_inventory(&plan, &a.plan, a.inventory.as_deref())?;
    let inv = Inventory::read(&inv_path)?;
    let checkout = Checkout::open(&a.flows_repo).map_err(anyhow::Error::msg)?;
    let git_ref = gitref::decide(&a.ref_from, &|k| std::env::var(k).ok(), &checkout)
        .map_err(anyhow::Error::msg)?;
    let mut git = GitTarget::new(
        a.repo_url.as_deref(),
        a.repo_host.as_deref(),
        a.repo.as_deref(),
        git_ref,
    )
    .map_err(anyhow::Error::msg)?;
    git.token_secret = a.git_token_secret.clone();
    git.token_username = a.git_token_username.clone();

    let by_key: std::collections::HashMap<&str, &crate::inventory::Flow> =
        inv.flows.iter().map(|f| (f.key.as_str(), f)).collect();
    let planned = || {
        plan.flows
            .iter()
            .filter_map(|p| by_key.get(p.flow.as_str()))
    };
    let systems: std::collections::BTreeSet<System> = planned().map(|f| f.system).collect();
    let target = match (a.target, systems.len()) {
        (Some(t), _) => t,
        (None, 0) => bail!("{}: no planned flows to migrate", a.plan.display()),
        (None, 1) if systems.contains(&System::Prefect3) => Target::Prefect3,
        (None, 1) => Target::Prefect1,
        _ => bail!("the plan has Prefect 1 and Prefect 3 flows: pick one with --target"),
    };
    let kind = System::from(target);
    let scanned_from = |k: &str| {
        inv.sources
            .iter()
            .rfind(|s| s.kind == k)
            .map(|s| s.location.clone())
    };
    let ep = |api: String| Endpoint {
        api,
        key: key_from(a.api_key_env.as_deref(), kind),
    };
    let (registrations, from, endpoint) = match target {
        Target::Prefect1 => {
            // the flags first, then where the inventory read the flows
            let export = match (&a.export, &a.api) {
                (Some(file), _) => Some(file.clone()),
                (None, Some(_)) => None,
                (None, None) => scanned_from("prefect1-export").map(PathBuf::from),
            };
            match (
                export,
                a.api.clone().or_else(|| scanned_from("prefect1-api")),
            ) {
                (Some(file), _) => {
                    let rows = crate::flows::prefect1::read_export(&file)?;
                    (
                        Registrations::Prefect1(rows),
                        file.display().to_string(),
                        None,
                    )
                }
                (_, Some(api)) => {
                    let e = ep(api.clone());
                    let rows = apply::read_flows(&e, None).map_err(anyhow::Error::msg)?;
                    let rows = rows
                        .iter()
                        .map(serde_json::value::to_raw_value)
                        .collect::<Result<_, _>>()?;
                    (Registrations::Prefect1(rows), api, Some(e))
                }
                _ => bail!("where are the flows registered? pass --api URL (or --export FILE)"),
            }
        }
        Target::Prefect3 => {
            let api = a
                .api
                .clone()
                .or_else(|| scanned_from("prefect3-api"))
                .context("where are the deployments? pass --api URL")?;
            let e = ep(api.clone());
            let ids: Vec<String> = planned()
                .filter(|f| f.system == System::Prefect3)
                .filter_map(|f| f.flow_id.clone())
                .collect();
            let deps = apply::read_deployments(&e, &ids).map_err(anyhow::Error::msg)?;
            (Registrations::Prefect3(deps), api, Some(e))
        }
    };
    if a.apply && a.output == Path::new("-") {
        bail!("--apply journals every write in OUTPUT/journal.jsonl: give -o a folder, not -");
    }
    if a.apply && endpoint.is_none() {
        bail!("--apply needs a server: pass --api URL (an --export file can only be read)");
    }
    let at = match &a.runtime_images {
        Some(dir) => migrate::runtime_image::Location::Layout(dir.clone()),
        None => migrate::runtime_image::Location::Registry {
            plain_http: a.plain_http,
            credentials: None,
        },
    };
    let seen = migrate::runtime_image::check(
        &plan,
        &at,
        Some(crate::scan::cache::LayerCache::default_root()),
    );
    let carried_files = migrate::runtime_image::carried_files(
        &inv,
        &plan,
        &seen,
        &crate::build::source::Access {
            plain_http: a.plain_http,
            temp_dir: crate::scan::scratch::dir(Some(
                &crate::scan::cache::LayerCache::default_root(),
            )),
            cache_root: Some(crate::scan::cache::LayerCache::default_root()),
            ..crate::build::source::Access::default()
        },
    );
    let token_secret = match (&git.token_secret, target, &endpoint) {
        (Some(name), Target::Prefect3, Some(e)) => Some(apply::secret_block(e, name)),
        _ => None,
    };
    let m = migrate::prepare(Inputs {
        inventory: &inv,
        plan: &plan,
        git,
        checkout: &checkout,
        registrations,
        registrations_from: from,
        from_server: endpoint.is_some(),
        runtime_images: &seen,
        default_run_config: a.default_run_config.clone(),
        token_secret,
        carried_files,
    });
    let mut m = m;
    m.inputs = migration_inputs(&a.plan, &inv_path, &a.output)?;
    migrate::documents::write(&m, &a.output)?;
    print_summary(&m, &a.output);
    if !a.apply {
        say::say!(
            "dry run: nothing was written to the server (add --apply to write the ready flows)"
        );
        return Ok(exit_for(&m));
    }
    let endpoint = endpoint.expect("checked before preparing");
    let journal = a.output.join("journal.jsonl");
    let out = apply::apply(&m, &endpoint, &journal, a.pause).map_err(anyhow::Error::msg)?;
    say::say!(
        "applied: {} written, {} already migrated, {} refused (not written); journal {}",
        out.written.len(),
        out.already.len(),
        out.refused.len(),
        journal.display()
    );
    Ok(exit_for(&m))
}

/// The inventory the plan was made from, as the plan records it (`--inventory` may
/// name where it is now), refused when its bytes changed since: a flow scanned again
/// (a new version, an archived one) must be planned again before it is migrated.
pub(super) fn plan_inventory(
    plan: &Plan,
    plan_path: &Path,
    given: Option<&Path>,
) -> Result<PathBuf> {
    use crate::provenance::{file_sha256, folder_of, resolve};
    let Some(recorded) = plan.inputs.iter().find(|i| i.role == "inventory") else {
        bail!(
            "{} records no inventory it was made from: plan again with `unsprawl plan INVENTORY -o {}`",
            plan_path.display(),
            plan_path.display()
        );
    };
    let path = match given {
        Some(p) => p.to_path_buf(),
        None => resolve(recorded, &folder_of(plan_path)),
    };
    let now = file_sha256(&path).with_context(|| {
        format!(
            "{} was made from the inventory {} (as recorded in the plan); pass where it is now with --inventory",
            plan_path.display(),
            recorded.path
        )
    })?;
    if now != recorded.sha256 {
        bail!(
            "{} has changed since {} was made from it (recorded {}, now {}): plan again with `unsprawl plan {} -o {}`",
            path.display(),
            plan_path.display(),
            short_digest(&recorded.sha256),
            short_digest(&now),
            path.display(),
            plan_path.display()
        );
    }
    Ok(path)
}

fn short_digest(d: &str) -> &str {
    &d[..d.len().min("sha256:".len() + 12)]
}

/// 0 when every planned flow is migrated or ready; 1 when some were refused.
fn exit_for(m: &Migration) -> ExitCode {
    if m.summary.refused > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// The plan and inventory, recorded relative to the migration folder.
pub(super) fn migration_inputs(
    plan: &Path,
    inventory: &Path,
    out_dir: &Path,
) -> Result<Vec<crate::provenance::Input>> {
    // `-o -`: the document goes to standard output; paths are recorded from here
    let out_dir = if out_dir == Path::new("-") {
        Path::new(".")
    } else {
        out_dir
    };
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    Ok(vec![
        crate::provenance::record("plan", plan, out_dir)?,
        crate::provenance::record("inventory", inventory, out_dir)?,
    ])
}

pub(super) fn print_summary(m: &Migration, dir: &Path) {
    use super::say::{self, List, count};
    let mut e = say::summary();
    let r = &m.git.git_ref;
    let kind = match r.kind {
        gitref::RefKind::Branch => "branch",
        gitref::RefKind::Tag => "tag",
    };
    let _ = writeln!(
        e,
        "git: {} at {kind} {} ({:.12}, from {})",
        m.git.url, r.name, r.commit, r.decided_by
    );
    for n in &r.notes {
        let _ = writeln!(e, "  note: {n}");
    }
    let _ = writeln!(
        e,
        "{}: {} ready, {} refused, {} already migrated; {} not touched → {}",
        count(m.summary.items, "flow", "flows"),
        m.summary.ready,
        m.summary.refused,
        m.summary.done,
        m.summary.skipped,
        dir.display()
    );
    let whole = dir.join("diff.md").display().to_string();
    let mut list = List::new(&mut e);
    // the refused first (what the reader must act on), then the untouched, then the rest
    let order = |s: Status| match s {
        Status::Refused => 0,
        Status::Ready => 1,
        Status::Done => 2,
    };
    let mut items: Vec<&migrate::Item> = m.items.iter().collect();
    items.sort_by_key(|it| order(it.status));
    let refused = items
        .iter()
        .take_while(|it| it.status == Status::Refused)
        .count();
    for (i, it) in items.into_iter().enumerate() {
        // then what was not touched, and why: the next thing a reader looks for
        if i == refused {
            for s in &m.skipped {
                list.entry(&[format!("  {:<8} {}: {}", "skipped", s.name, s.reason)]);
            }
        }
        let status = match it.status {
            Status::Ready => "ready",
            Status::Refused => "refused",
            Status::Done => "done",
        };
        let mut lines = vec![format!(
            "  {status:<8} {} → {}",
            it.title(),
            it.runtime_image
        )];
        for c in it.checks.iter().filter(|c| !c.ok) {
            lines.push(format!("           ✗ {}: {}", c.check, c.detail));
        }
        if say::details() {
            for n in &it.notes {
                lines.push(format!("           note: {n}"));
            }
            if it.status == Status::Ready {
                for l in migrate::diff::fields(&it.before, &it.after) {
                    lines.push(format!("           {l}"));
                }
            }
        }
        list.entry(&lines);
    }
    if refused == m.items.len() {
        for s in &m.skipped {
            list.entry(&[format!("  {:<8} {}: {}", "skipped", s.name, s.reason)]);
        }
    }
    list.finish(&whole);
}

pub(super) fn rollback(a: &RollbackArgs) -> Result<ExitCode> {
    let entries = migrate::journal::read(&a.journal).map_err(anyhow::Error::msg)?;
    let api = match &a.api {
        Some(api) => api.clone(),
        None => entries
            .iter()
            .find(|e| e.op == "begin")
            .and_then(|e| e.data["api"].as_str())
            .map(str::to_string)
            .with_context(|| format!("{} names no server: pass --api", a.journal.display()))?,
    };
    let target = entries
        .iter()
        .find(|e| e.op == "begin")
        .and_then(|e| serde_json::from_value::<System>(e.data["target"].clone()).ok())
        .unwrap_or(System::Prefect3);
    let ep = Endpoint {
        api,
        key: key_from(a.api_key_env.as_deref(), target),
    };
    let out = apply::rollback(&a.journal, &ep, a.apply, a.force, |l| eprintln!("{l}"))
        .map_err(anyhow::Error::msg)?;
    say::say!(
        "rollback{}: {} {}, {} already as before, {} changed since and left alone",
        if a.apply { "" } else { " (dry run)" },
        out.written.len(),
        if a.apply { "restored" } else { "to restore" },
        out.already.len(),
        out.refused.len()
    );
    if !a.apply {
        say::say!("dry run: nothing was written (add --apply to restore)");
    }
    Ok(if out.refused.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
