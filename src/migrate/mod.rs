//! `unsprawl migrate`: every planned flow moves from its own image to Git storage (Prefect
//! 1) or a `git_clone` pull step (Prefect 2/3) on its runtime image.
//!
//! The migration document (`unsprawl/migration/v3`) holds, per flow, the checks that ran,
//! what the registration is now (`before`), what it becomes (`after`), the exact write
//! (`write`) and what a rollback registers again (`restore`). Only flows whose checks all
//! pass are `ready`; nothing else is ever written. `--apply` writes the ready ones,
//! journaled (see `journal.rs`, `apply.rs`).

pub mod apply;
pub mod diff;
pub mod documents;
pub mod gitref;
pub mod journal;
pub mod prefect1;
pub mod prefect3;
pub mod runtime_image;
pub mod source_patch;

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::flows::source::analyse;
use crate::flows::stdlib::is_stdlib;
use crate::inventory::{Flow, Inventory, System};
use crate::plan::document::Plan;
use gitref::{Checkout, GitRef};

/// v3: the new Prefect 1 flow is stored once (compressed, in `write.create`) and the
/// restored one compressed (`restore.serialized_flow_compressed`).
pub const SCHEMA: &str = "unsprawl/migration/v3";

/// Where the flows' code will be cloned from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitTarget {
    /// The clone URL (Prefect 3 `repository`).
    pub url: String,
    /// Prefect 1 `repo_host` (`host[:port]`) and `repo` (`owner/name`).
    pub repo_host: String,
    pub repo: String,
    /// Prefect 1 Secret / Prefect 3 Secret block holding the access token (its name only).
    pub token_secret: Option<String>,
    pub token_username: Option<String>,
    #[serde(rename = "ref")]
    pub git_ref: GitRef,
}

impl GitTarget {
    /// From `--repo-url`, or `--repo-host` + `--repo`.
    pub fn new(
        url: Option<&str>,
        host: Option<&str>,
        repo: Option<&str>,
        git_ref: GitRef,
    ) -> Result<GitTarget, String> {
        let (url, repo_host, repo) = match (url, host, repo) {
            (Some(u), None, None) => {
                let parsed = url::Url::parse(u).map_err(|e| format!("--repo-url {u:?}: {e}"))?;
                let mut host = parsed.host_str().unwrap_or("").to_string();
                if let Some(p) = parsed.port() {
                    host = format!("{host}:{p}");
                }
                let repo = parsed
                    .path()
                    .trim_matches('/')
                    .trim_end_matches(".git")
                    .to_string();
                (u.to_string(), host, repo)
            }
            (None, Some(h), Some(r)) => {
                if h.contains("://") || r.split('/').count() < 2 {
                    return Err(format!(
                        "--repo-host {h:?} --repo {r:?}: expected a bare host and OWNER/NAME"
                    ));
                }
                (format!("https://{h}/{r}.git"), h.to_string(), r.to_string())
            }
            _ => {
                return Err("say where the flows live: --repo-url URL, or --repo-host HOST --repo OWNER/NAME".into());
            }
        };
        if url.contains('@') && !url.starts_with("git@") {
            return Err("--repo-url must not carry credentials: use --git-token-secret".into());
        }
        Ok(GitTarget {
            url,
            repo_host,
            repo,
            token_secret: None,
            token_username: None,
            git_ref,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Migration {
    pub schema: String,
    pub generator: crate::provenance::Generator,
    /// The plan and inventory it was prepared from, by path and SHA-256.
    pub inputs: Vec<crate::provenance::Input>,
    /// The system whose registrations it rewrites.
    pub target: crate::inventory::System,
    /// Where the registrations were read (an export file or an API URL).
    pub registrations: String,
    pub git: GitTarget,
    pub summary: Summary,
    pub items: Vec<Item>,
    /// Flows of the inventory this migration does not touch, and why.
    pub skipped: Vec<Skipped>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub items: usize,
    pub ready: usize,
    pub refused: usize,
    /// Already on Git storage at this reference with their runtime image.
    pub done: usize,
    pub skipped: usize,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ready,
    Refused,
    Done,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Item {
    /// The inventory's flow key.
    pub key: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
    /// The flow version id (Prefect 1) or deployment id (Prefect 3) written to.
    pub id: String,
    pub runtime_image: String,
    pub current_image: Option<String>,
    /// The flow file, relative to the repository root.
    pub flow_path: Option<String>,
    pub status: Status,
    pub checks: Vec<Check>,
    pub notes: Vec<String>,
    pub before: Value,
    pub after: Value,
    /// Prefect 1: `{create: <GraphQL variables>, flow_group_id, clear_group_run_config}`
    /// (the new flow once, compressed in `create.input.serialized_flow`: see
    /// [`prefect1::expand`]); Prefect 3: the PATCH body.
    pub write: Value,
    /// Prefect 1: the stored flow (edges rebuilt; `serialized_flow_compressed`, gzip +
    /// base64 as registering takes it) and group run config a rollback registers again.
    /// Prefect 3: `before` is enough.
    pub restore: Value,
    /// Prefect 1: a unified diff of the flow file replacing `Docker(...)` with `Git(...)`
    /// and pointing its run config at the runtime image (for teams that register from CI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_patch: Option<String>,
}

impl Item {
    /// `flow` or `flow/deployment`, as people name it.
    pub fn title(&self) -> String {
        match &self.deployment {
            Some(d) => format!("{}/{d}", self.name),
            None => self.name.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Check {
    pub check: String,
    /// Nothing found against it. With `checked: false` that is not a proof: the check
    /// could not be made here (a registration read from an export, not a server).
    pub ok: bool,
    #[serde(default = "yes")]
    pub checked: bool,
    pub detail: String,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Skipped {
    pub flow: String,
    /// `flow` or `flow/deployment`, as people name it.
    #[serde(default)]
    pub name: String,
    pub reason: String,
}

/// The registrations as the server has them now.
pub enum Registrations {
    /// Flow rows (`flow` query shape, with tasks and edges), each kept as its text and
    /// parsed while its flow is prepared.
    Prefect1(Vec<crate::flows::prefect1::Row>),
    /// Deployments by id (`GET /api/deployments/{id}`; absent when not found).
    Prefect3(HashMap<String, Value>),
}

pub struct Inputs<'a> {
    pub inventory: &'a Inventory,
    pub plan: &'a Plan,
    pub git: GitTarget,
    pub checkout: &'a Checkout,
    pub registrations: Registrations,
    pub registrations_from: String,
    /// The registrations were just read from the server (not from an export file).
    pub from_server: bool,
    /// What was seen of each runtime image (`runtime_image::check`).
    pub runtime_images: &'a runtime_image::Verdicts,
    pub default_run_config: String,
    /// Prefect 3 with `--git-token-secret`: whether the server has that Secret block.
    pub token_secret: Option<Result<String, String>>,
    /// Per flow whose storage copied files in: whether its runtime image holds them
    /// (`runtime_image::carried_files`).
    pub carried_files: HashMap<String, Result<String, String>>,
}

/// Build and verify every item. Pure over its inputs: no network, no writes.
pub fn prepare(inp: Inputs<'_>) -> Migration {
    let target = match inp.registrations {
        Registrations::Prefect1(_) => System::Prefect1,
        Registrations::Prefect3(_) => System::Prefect3,
    };
    let flows: HashMap<&str, &Flow> = inp
        .inventory
        .flows
        .iter()
        .map(|f| (f.key.as_str(), f))
        .collect();
    let modules = ModuleIndex::new(inp.inventory, inp.plan);
    let rows = match &inp.registrations {
        Registrations::Prefect1(rows) => Some(RowIndex::new(rows)),
        Registrations::Prefect3(_) => None,
    };
    let mut items = vec![];
    // what the plan left out by design (archived, already migrated) says so as it is
    let mut skipped: Vec<Skipped> = inp
        .plan
        .excluded
        .iter()
        .map(|u| Skipped {
            flow: u.flow.clone(),
            name: title_of(flows.get(u.flow.as_str()).copied(), &u.name),
            reason: u.reason.clone(),
        })
        .chain(inp.plan.unplanned.iter().map(|u| Skipped {
            flow: u.flow.clone(),
            name: title_of(flows.get(u.flow.as_str()).copied(), &u.name),
            reason: format!("not planned: {}", u.reason),
        }))
        .collect();
    for placement in &inp.plan.flows {
        let Some(flow) = flows.get(placement.flow.as_str()) else {
            skipped.push(Skipped {
                flow: placement.flow.clone(),
                name: placement.name.clone(),
                reason: "planned but not in the inventory (a plan of another inventory?)".into(),
            });
            continue;
        };
        if flow.system != target {
            skipped.push(Skipped {
                flow: placement.flow.clone(),
                name: title_of(Some(flow), &flow.name),
                reason: format!(
                    "another system: a {} flow; this migration targets {target}",
                    flow.system
                ),
            });
            continue;
        }
        // a plan never places these (its verification refuses it); never write one
        if let Some(why) = crate::plan::demand::excluded(flow) {
            skipped.push(Skipped {
                flow: placement.flow.clone(),
                name: title_of(Some(flow), &flow.name),
                reason: why,
            });
            continue;
        }
        let mut item = Item {
            key: flow.key.clone(),
            name: flow.name.clone(),
            deployment: flow.deployment.clone(),
            id: flow.flow_id.clone().unwrap_or_default(),
            runtime_image: placement.runtime_image.clone(),
            current_image: flow.image_reference.clone(),
            flow_path: None,
            status: Status::Ready,
            checks: vec![],
            notes: vec![],
            before: Value::Null,
            after: Value::Null,
            write: Value::Null,
            restore: Value::Null,
            source_patch: None,
        };
        if flow.state == crate::inventory::FlowState::Paused {
            item.notes
                .push("the deployment is paused: it is migrated and stays paused".into());
        }
        let file = check_flow_file(&mut item, flow, &inp, target);
        if let Some((file, _)) = &file {
            check_modules(&mut item, flow, file, &modules, &inp, target);
        }
        check_runtime_image(&mut item, flow, inp.runtime_images);
        check_parity(&mut item, flow, &inp);
        check_token_secret(&mut item, target, &inp);
        check_annotated_tag(&mut item, target, &inp);
        match &inp.registrations {
            Registrations::Prefect1(_) => build_prefect1(
                &mut item,
                flow,
                rows.as_ref().expect("built for Prefect 1"),
                &inp,
                file.is_some(),
            ),
            Registrations::Prefect3(deps) => build_prefect3(&mut item, flow, deps, &inp),
        }
        if item.status != Status::Done && item.checks.iter().any(|c| !c.ok) {
            item.status = Status::Refused;
        }
        if let (Status::Ready, System::Prefect1, Some((_, text)), Some(path)) =
            (item.status, target, &file, item.flow_path.clone())
            && !item.write["create"].is_null()
        {
            match source_patch::rewrite(&path, text, &inp.git, &path, &item.after["run_config"]) {
                Ok(Some((new, notes))) => {
                    item.source_patch = Some(source_patch::unified(&path, text, &new));
                    item.notes.extend(notes);
                }
                Ok(None) => {}
                Err(e) => item.notes.push(format!("no source patch: {e}")),
            }
        }
        items.push(item);
    }
    let count = |s: Status| items.iter().filter(|i| i.status == s).count();
    let summary = Summary {
        items: items.len(),
        ready: count(Status::Ready),
        refused: count(Status::Refused),
        done: count(Status::Done),
        skipped: skipped.len(),
    };
    Migration {
        schema: SCHEMA.into(),
        generator: crate::provenance::Generator::this(),
        inputs: Vec::new(),
        target,
        registrations: inp.registrations_from.clone(),
        git: inp.git.clone(),
        summary,
        items,
        skipped,
    }
}

/// The flow's title, or the plan's name for one the inventory lacks.
fn title_of(flow: Option<&Flow>, fallback: &str) -> String {
    flow.map(Flow::title)
        .unwrap_or_else(|| fallback.to_string())
}

fn check(item: &mut Item, name: &str, result: Result<String, String>) {
    let (ok, detail) = match result {
        Ok(d) => (true, d),
        Err(d) => (false, d),
    };
    item.checks.push(Check {
        check: name.into(),
        ok,
        checked: true,
        detail,
    });
}

/// The flow file at the reference, and that it defines the flow.
fn check_flow_file(
    item: &mut Item,
    flow: &Flow,
    inp: &Inputs<'_>,
    target: System,
) -> Option<(crate::flows::source::PyFile, String)> {
    let r = &inp.git.git_ref;
    let at = format!("{} {} ({:.12})", kind_word(r), r.name, r.commit);
    let Some(src) = &flow.source else {
        check(
            item,
            "flow-file",
            Err(
                "no file of the flows repository defines this flow (scan with --flows-repo)".into(),
            ),
        );
        return None;
    };
    let path = inp.checkout.repo_path(&src.path);
    item.flow_path = Some(path.clone());
    let bytes = match inp.checkout.read_at(&r.commit, &path) {
        Ok(Some(b)) => b,
        Ok(None) => {
            check(
                item,
                "flow-file",
                Err(format!("{path} does not exist at {at}")),
            );
            return None;
        }
        Err(e) => {
            check(item, "flow-file", Err(e.to_string()));
            return None;
        }
    };
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let file = analyse(path.clone(), &text);
    if let Some(e) = &file.error {
        check(item, "flow-file", Err(format!("{path} at {at}: {e}")));
        return None;
    }
    let defined = if target == System::Prefect3 {
        let func = entrypoint_function(flow);
        match func {
            Some(f) if file.flow_functions.contains(&f) => {
                Ok(format!("{path} at {at} defines @flow {f}"))
            }
            Some(f) => Err(format!(
                "{path} at {at} has no @flow function {f} (it has: {})",
                list(&file.flow_functions)
            )),
            None => Err("the deployment has no entrypoint function".into()),
        }
    } else if file.flows.contains(&flow.name) {
        Ok(format!("{path} at {at} defines flow {:?}", flow.name))
    } else {
        Err(format!(
            "{path} at {at} does not define flow {:?} (it defines: {})",
            flow.name,
            list(&file.flows)
        ))
    };
    check(item, "flow-file", defined);
    Some((file, text))
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

fn kind_word(r: &GitRef) -> &'static str {
    match r.kind {
        gitref::RefKind::Branch => "branch",
        gitref::RefKind::Tag => "tag",
    }
}

fn entrypoint_function(flow: &Flow) -> Option<String> {
    flow.storage
        .get("entrypoint")
        .and_then(Value::as_str)
        .and_then(|e| e.rsplit_once(':'))
        .map(|(_, f)| f.to_string())
}

/// The runtime image gives the flow what its old image did beyond distributions, or
/// the flow is refused: its OS packages, the files Docker storage copied in, its user and
/// working directory; env is carried into the run config (see [`carry_env`]), unless a
/// value looks like a secret.
fn check_parity(item: &mut Item, flow: &Flow, inp: &Inputs<'_>) {
    let Some(Ok(seen)) = inp.runtime_images.get(&item.runtime_image) else {
        return; // the runtime-image check already refused it
    };
    let parity = flow
        .requirement
        .as_ref()
        .map(|r| r.parity.clone())
        .unwrap_or_default();
    let mut problems = vec![];
    if !parity.secret_env.is_empty() {
        problems.push(format!(
            "the old image set {} to values that look like secrets (withheld here): a registration must not carry them in clear; move each into a Prefect Secret (Prefect 1: a secret the agent has; Prefect 3: a Secret block), read it from there in the flow, and scan again",
            parity.secret_env.join(", ")
        ));
    }
    let mut carried = None;
    if !parity.files.is_empty() {
        match inp.carried_files.get(&flow.key) {
            Some(Ok(d)) => carried = Some(d.clone()),
            Some(Err(e)) => problems.push(e.clone()),
            None => problems.push(format!(
                "Docker storage copied {} into the old image, and nothing compared it with the runtime image",
                parity.files.join(", ")
            )),
        }
    }
    for (what, old, new) in [
        ("user", &parity.user, &seen.user),
        ("working directory", &parity.working_dir, &seen.working_dir),
    ] {
        if let Some(o) = old
            && Some(o) != new.as_ref()
        {
            problems.push(format!(
                "the old image ran with {what} {o:?}, the runtime image with {}, and no run config field sets it",
                new.as_deref().map(|n| format!("{n:?}")).unwrap_or_else(|| "the default".into())
            ));
        }
    }
    let image_packages: BTreeSet<&str> = flow
        .link
        .image_id
        .as_deref()
        .and_then(|id| inp.inventory.images.iter().find(|i| i.id == id))
        .and_then(|i| i.contents.as_ref())
        .and_then(|c| c.system_packages.as_ref())
        .map(|p| p.packages.iter().map(|x| x.name.as_str()).collect())
        .unwrap_or_default();
    let missing: Vec<&str> = image_packages
        .iter()
        .copied()
        .filter(|p| !seen.os_packages.contains(*p))
        .collect();
    if !missing.is_empty() {
        let shown: Vec<&str> = missing.iter().copied().take(12).collect();
        problems.push(format!(
            "the runtime image lacks OS package(s) the old image had: {}{}; use a base that has them ([image.base], or build with --base-from members)",
            shown.join(", "),
            if missing.len() > shown.len() {
                format!(" and {} more", missing.len() - shown.len())
            } else {
                String::new()
            }
        ));
    }
    let result = if problems.is_empty() {
        let env: Vec<&str> = parity.env.keys().map(String::as_str).collect();
        Ok(format!(
            "the runtime image has the old image's {} OS package(s){}{}",
            image_packages.len(),
            carried.map(|c| format!("; {c}")).unwrap_or_default(),
            if env.is_empty() {
                String::new()
            } else {
                format!(
                    "; its env {} is carried into the run config",
                    env.join(", ")
                )
            }
        ))
    } else {
        Err(problems.join("; "))
    };
    check(item, "parity", result);
}

/// Merge the old image's env into a run config's (or job variables') `env`, never
/// overriding a value the registration sets; the names added.
fn carry_env(target: &mut Value, flow: &Flow) -> Vec<String> {
    let Some(env) = flow.requirement.as_ref().map(|r| &r.parity.env) else {
        return vec![];
    };
    if env.is_empty() || !target.is_object() {
        return vec![];
    }
    if !target["env"].is_object() {
        target["env"] = json!({});
    }
    let mut added = vec![];
    let map = target["env"].as_object_mut().expect("made an object above");
    for (k, v) in env {
        if !map.contains_key(k) {
            map.insert(k.clone(), v.clone().into());
            added.push(k.clone());
        }
    }
    added
}

/// Prefect 1.4.1 Git storage checks a tag out through `tree` of what the ref points at,
/// which an annotated tag object has not: every run of the flow would fail.
fn check_annotated_tag(item: &mut Item, target: System, inp: &Inputs<'_>) {
    let r = &inp.git.git_ref;
    if target == System::Prefect1 && r.kind == gitref::RefKind::Tag && r.annotated {
        check(
            item,
            "git-ref",
            Err(format!(
                "tag {} is an annotated tag, which Prefect 1 Git storage cannot check out ('Tag' object has no attribute 'tree'): use a lightweight tag (`git tag {}-light {:.12}` and push it) or a branch",
                r.name, r.name, r.commit
            )),
        );
    }
}

/// The git token's secret exists where the run resolves it: a Prefect 3 Secret block
/// is looked up on the server; a Prefect 1 secret lives with the agent, out of sight.
fn check_token_secret(item: &mut Item, target: System, inp: &Inputs<'_>) {
    let Some(name) = &inp.git.token_secret else {
        return;
    };
    match (target, &inp.token_secret) {
        (System::Prefect3, Some(verdict)) => check(item, "git-token", verdict.clone()),
        (System::Prefect3, None) => check(
            item,
            "git-token",
            Err(format!(
                "the Secret block {name:?} was not looked up (no server): pass --api URL"
            )),
        ),
        _ => item.notes.push(format!(
            "Git storage reads the token from the Prefect Secret {name:?} where the flow runs: make sure the agent has it (unsprawl cannot check an agent's secrets)"
        )),
    }
}

/// The runtime image exists, is the one planned, and provides what this flow imports.
fn check_runtime_image(item: &mut Item, flow: &Flow, seen: &runtime_image::Verdicts) {
    // a name no container runtime can pull is never ready, whatever a layout calls it
    let reference = item
        .runtime_image
        .parse::<oci_client::Reference>()
        .map_err(|e| e.to_string());
    let result = match (reference, seen.get(&item.runtime_image)) {
        (Err(e), _) => Err(format!(
            "{:?} is not a valid image reference ({e}): the plan is damaged or hostile; plan again",
            item.runtime_image
        )),
        (Ok(_), None) => Err(format!(
            "{} was not looked at: nothing moves onto an image unsprawl has not seen",
            item.runtime_image
        )),
        (Ok(_), Some(Err(e))) => Err(e.clone()),
        (Ok(_), Some(Ok(s))) => {
            let python = flow.requirement.as_ref().and_then(|r| r.python.as_deref());
            let missing: Vec<&str> = flow
                .requirement
                .iter()
                .flat_map(|r| {
                    r.imported_modules
                        .iter()
                        .filter(|m| !r.local_modules.contains(m))
                })
                .map(String::as_str)
                .filter(|m| !is_stdlib(m, python) && !s.modules.contains(*m))
                .collect();
            if missing.is_empty() {
                Ok(s.detail.clone())
            } else {
                Err(format!(
                    "{} as built provides no {}, which the flow imports",
                    item.runtime_image,
                    missing.join(", ")
                ))
            }
        }
    };
    check(item, "runtime-image", result);
    // Git storage moves the code out of the image: the image must now be able to get it
    if let Some(Ok(s)) = seen.get(&item.runtime_image) {
        let storage = crate::rules::fetch::target_storage(flow.system);
        let result = s.fetch.get(storage).cloned().unwrap_or_else(|| {
            Err(format!(
                "the plan's rules say nothing about what fetches code for {storage}: plan again with this unsprawl"
            ))
        });
        check(item, "fetch-code", result);
    }
}

/// Which top-level modules each runtime image provides.
struct ModuleIndex {
    by_image: HashMap<String, BTreeSet<String>>,
}

impl ModuleIndex {
    fn new(inv: &Inventory, plan: &Plan) -> ModuleIndex {
        let mut names: HashMap<&str, BTreeSet<&str>> = HashMap::new();
        for img in &inv.images {
            for d in img.contents.iter().flat_map(|c| &c.python.distributions) {
                names
                    .entry(d.name.as_str())
                    .or_default()
                    .extend(d.import_names.iter().map(String::as_str));
            }
        }
        let ignored: Vec<String> = plan
            .rules
            .get("ignore")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(crate::rules::normalize)
                    .collect()
            })
            .unwrap_or_default();
        let by_image = plan
            .runtime_images
            .iter()
            .map(|img| {
                let provided = img
                    .requirements
                    .iter()
                    .map(|r| r.name.clone())
                    .chain(ignored.iter().cloned())
                    .flat_map(|n| names.get(n.as_str()).cloned().unwrap_or_default())
                    .map(str::to_string)
                    .collect();
                (img.name.clone(), provided)
            })
            .collect();
        ModuleIndex { by_image }
    }
}

/// Every module the flow imports (as scanned, and as the file at the reference says)
/// is in the standard library, provided by the runtime image, or — Prefect 3 only —
/// code of the repository (the flow runs inside the clone). Prefect 1 Git storage runs
/// the file alone from a temporary clone, so repository modules do not import there.
fn check_modules(
    item: &mut Item,
    flow: &Flow,
    file: &crate::flows::source::PyFile,
    index: &ModuleIndex,
    inp: &Inputs<'_>,
    target: System,
) {
    let python = flow.requirement.as_ref().and_then(|r| r.python.as_deref());
    let mut wanted: BTreeSet<&str> = file.imports.iter().map(String::as_str).collect();
    if let Some(r) = &flow.requirement {
        wanted.extend(r.imported_modules.iter().map(String::as_str));
    }
    let provided = index.by_image.get(&item.runtime_image);
    let dir = file.path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
    let commit = &inp.git.git_ref.commit;
    let local = |m: &str| {
        let mut at = vec![format!("{m}.py"), m.to_string()];
        if !dir.is_empty() {
            at.push(format!("{dir}/{m}.py"));
            at.push(format!("{dir}/{m}"));
        }
        at.iter().any(|p| inp.checkout.exists_at(commit, p))
    };
    let mut missing = vec![];
    let mut repo_code = vec![];
    for m in wanted {
        if m.is_empty() || m == "__future__" || is_stdlib(m, python) {
            continue;
        }
        if provided.is_some_and(|p| p.contains(m)) {
            continue;
        }
        if local(m) {
            repo_code.push(m);
        } else {
            missing.push(m);
        }
    }
    let mut problems = vec![];
    if !missing.is_empty() {
        problems.push(format!(
            "imports {}, which no distribution of {} provides",
            missing.join(", "),
            item.runtime_image
        ));
    }
    if target == System::Prefect1 && !repo_code.is_empty() {
        problems.push(format!(
            "imports {} from the repository; Git storage runs the flow file alone from a temporary \
             clone, so install that code into the runtime image first",
            repo_code.join(", ")
        ));
    }
    check(
        item,
        "modules",
        if problems.is_empty() {
            Ok(if repo_code.is_empty() {
                format!("{} provides every module it imports", item.runtime_image)
            } else {
                format!(
                    "{} provides every module it imports; {} come from the clone",
                    item.runtime_image,
                    repo_code.join(", ")
                )
            })
        } else {
            Err(problems.join("; "))
        },
    );
}

/// Prefect 1 rows by flow version id, and each version group's newest live version.
struct RowIndex<'a> {
    rows: &'a [crate::flows::prefect1::Row],
    heads: Vec<RowHead>,
    by_id: HashMap<String, usize>,
    live_by_group: HashMap<String, usize>,
}

/// What the index needs of a row; the rest of its text is skipped, not parsed.
#[derive(Default, serde::Deserialize)]
struct RowHead {
    #[serde(default)]
    id: Value,
    #[serde(default)]
    version_group_id: Value,
    #[serde(default)]
    version: Value,
    #[serde(default)]
    archived: Value,
}

impl RowHead {
    fn id(&self) -> &str {
        self.id.as_str().unwrap_or("")
    }
    fn version(&self) -> i64 {
        self.version.as_i64().unwrap_or(0)
    }
}

impl<'a> RowIndex<'a> {
    fn new(rows: &'a [crate::flows::prefect1::Row]) -> RowIndex<'a> {
        let heads: Vec<RowHead> = rows
            .iter()
            .map(|r| serde_json::from_str(r.get()).unwrap_or_default())
            .collect();
        let mut by_id = HashMap::new();
        let mut live_by_group: HashMap<String, usize> = HashMap::new();
        for (i, h) in heads.iter().enumerate() {
            if let Some(id) = h.id.as_str() {
                by_id.insert(id.to_string(), i);
            }
            let archived = h.archived.as_bool() == Some(true);
            if let Some(g) = h.version_group_id.as_str()
                && !archived
            {
                let newer = live_by_group
                    .get(g)
                    .is_none_or(|&old| h.version.as_i64() > heads[old].version.as_i64());
                if newer {
                    live_by_group.insert(g.to_string(), i);
                }
            }
        }
        RowIndex {
            rows,
            heads,
            by_id,
            live_by_group,
        }
    }

    /// Row `i`, parsed (its text was valid JSON when read).
    fn row(&self, i: usize) -> Value {
        serde_json::from_str(self.rows[i].get()).unwrap_or(Value::Null)
    }
}

fn build_prefect1(
    item: &mut Item,
    flow: &Flow,
    rows: &RowIndex<'_>,
    inp: &Inputs<'_>,
    file_ok: bool,
) {
    let id = flow.flow_id.as_deref().unwrap_or("");
    let Some(&at) = rows.by_id.get(id) else {
        // after an apply, the live version of the group is a new one
        let live = flow
            .version_group_id
            .as_deref()
            .and_then(|g| rows.live_by_group.get(g).copied())
            .map(|i| rows.row(i));
        match live.as_ref() {
            Some(r) if is_migrated_prefect1(r, item, inp, false) => {
                item.status = Status::Done;
                item.notes.push(format!(
                    "version {} of the group already runs from Git on {}",
                    r.get("version").and_then(Value::as_i64).unwrap_or(0),
                    item.runtime_image
                ));
                item.id = r.get("id").and_then(Value::as_str).unwrap_or("").into();
            }
            // a resume after the new version was registered but before its flow group
            // override was cleared: only that step is left
            Some(r) if is_migrated_prefect1(r, item, inp, true) => {
                let f = |p: &str| prefect1::json_field(r.pointer(p));
                let (storage, run_config) = (f("/storage"), f("/run_config"));
                item.id = r.get("id").and_then(Value::as_str).unwrap_or("").into();
                check(
                    item,
                    "registration",
                    Ok(format!(
                        "version {} already runs from Git; its flow group override still pins the old image and is cleared",
                        r.get("version").and_then(Value::as_i64).unwrap_or(0)
                    )),
                );
                item.before = json!({"storage": storage, "run_config": run_config, "flow_group_run_config": f("/flow_group/run_config")});
                item.after = json!({"storage": storage, "run_config": run_config, "flow_group_run_config": null});
                item.write = json!({
                    "create": null,
                    "flow_group_id": r.pointer("/flow_group/id").cloned().unwrap_or(Value::Null),
                    "clear_group_run_config": true,
                });
            }
            _ => check(
                item,
                "registration",
                Err(format!(
                    "flow version {id} is not live any more (archived or replaced): scan again"
                )),
            ),
        }
        return;
    };
    let row = &rows.row(at);
    if let Err(why) = row_is_live(at, rows) {
        check(item, "registration", Err(why));
        return;
    }
    if is_migrated_prefect1(row, item, inp, false) {
        item.status = Status::Done;
        return;
    }
    let storage = prefect1::json_field(row.get("storage"));
    let run_config = prefect1::json_field(row.get("run_config"));
    let group_rc = prefect1::json_field(row.pointer("/flow_group/run_config"));
    if storage != flow.storage
        || run_config != flow.run_config
        || group_rc != flow.flow_group_run_config
    {
        check(
            item,
            "registration",
            Err("its storage or run config changed since the scan: scan again".into()),
        );
        return;
    }
    if inp.from_server {
        check(
            item,
            "registration",
            Ok(format!("version {id} is live and unchanged since the scan")),
        );
    } else {
        // an export can only say what it says: `--apply` (which needs a server) re-reads
        item.checks.push(Check {
            check: "registration".into(),
            ok: true,
            checked: false,
            detail: format!(
                "not checked against a server (export): version {id} is the live version of its group in {}",
                inp.registrations_from
            ),
        });
    }
    let version = prefect1::json_field(row.get("serialized_flow"))
        .get("__version__")
        .and_then(Value::as_str)
        .unwrap_or("1.4.1")
        .to_string();
    // a flow group override replaces every version's run config: one that pins the old
    // image is folded into the new version and cleared; any other would win over it
    let mut clear_group = false;
    let effective = if group_rc.is_null() {
        run_config.clone()
    } else {
        let pins_old = group_rc.get("image").and_then(Value::as_str)
            == item.current_image.as_deref()
            || group_rc.get("image").is_none_or(Value::is_null);
        if !pins_old {
            check(
                item,
                "flow-group",
                Err(format!(
                    "its flow group's run config override sets image {}: it would win over the runtime image; clear it first",
                    group_rc["image"]
                )),
            );
            return;
        }
        clear_group = true;
        item.notes.push(
            "the flow group's run config override is folded into the new version and cleared"
                .into(),
        );
        group_rc.clone()
    };
    let Some(flow_path) = item.flow_path.clone().filter(|_| file_ok) else {
        return;
    };
    let new_storage = prefect1::git_storage(&inp.git, &flow.name, &flow_path, &version);
    let (new_rc, note) = match prefect1::run_config(
        &effective,
        &item.runtime_image,
        &inp.default_run_config,
        &version,
    ) {
        Ok(x) => x,
        Err(e) => {
            check(item, "document", Err(e));
            return;
        }
    };
    item.notes.extend(note);
    let mut new_rc = new_rc;
    let carried = carry_env(&mut new_rc, flow);
    if !carried.is_empty() {
        item.notes.push(format!(
            "env carried from the old image into the run config: {}",
            carried.join(", ")
        ));
    }
    let problems = prefect1::check_git_storage(&new_storage, &flow.name);
    let new_flow = match prefect1::serialized_flow(row, &new_storage, &new_rc) {
        Ok(f) => f,
        Err(e) => {
            check(item, "document", Err(e));
            return;
        }
    };
    let restore_flow = prefect1::restorable_flow(row)
        .map(|f| Value::String(prefect1::compress(&f)))
        .unwrap_or(Value::Null);
    match prefect1::create_variables(row, &new_flow) {
        Ok(vars) if problems.is_empty() => {
            check(
                item,
                "document",
                Ok("Git storage and run config follow Prefect 1.4.1's rules".into()),
            );
            // the new flow is stored once, compressed as Prefect sends it
            // (`create.input.serialized_flow`); the documents expand it for review
            item.write = json!({
                "create": vars,
                "flow_group_id": row.pointer("/flow_group/id").cloned().unwrap_or(Value::Null),
                "clear_group_run_config": clear_group,
            });
        }
        Ok(_) => check(item, "document", Err(problems.join("; "))),
        Err(e) => check(item, "document", Err(e)),
    }
    item.before =
        json!({"storage": storage, "run_config": run_config, "flow_group_run_config": group_rc});
    item.after = json!({
        "storage": new_storage,
        "run_config": new_rc,
        "flow_group_run_config": if clear_group { Value::Null } else { group_rc.clone() },
    });
    item.restore = json!({
        "serialized_flow_compressed": restore_flow,
        "flow_group_run_config": group_rc,
        "flow_group_id": row.pointer("/flow_group/id").cloned().unwrap_or(Value::Null),
        "project_id": row.pointer("/project/id").cloned().unwrap_or(Value::Null),
        "version_group_id": row.get("version_group_id").cloned().unwrap_or(Value::Null),
        "is_schedule_active": row.get("is_schedule_active").cloned().unwrap_or(Value::Bool(false)),
        "description": row.get("description").cloned().unwrap_or(Value::Null),
    });
}

/// Only the newest unarchived version of a group runs: an archived or superseded one is
/// never migrated (registering it would make year-old code the newest version).
fn row_is_live(at: usize, rows: &RowIndex<'_>) -> Result<(), String> {
    let row = &rows.heads[at];
    let live = row
        .version_group_id
        .as_str()
        .and_then(|g| rows.live_by_group.get(g))
        .map(|&l| &rows.heads[l]);
    let archived = row.archived.as_bool() == Some(true);
    match live {
        Some(l) if l.id() == row.id() => Ok(()),
        Some(l) => Err(format!(
            "version {} ({}) is {}; version {} ({}) of its group is live, and only the live version is migrated",
            row.version(),
            row.id(),
            if archived {
                "archived"
            } else {
                "not the newest unarchived one"
            },
            l.version(),
            l.id()
        )),
        None if archived => Err(format!(
            "version {} ({}) is archived and its group has no live version: nothing to migrate",
            row.version(),
            row.id()
        )),
        None => Ok(()),
    }
}

/// Already on Git storage at this repository and reference, on the runtime image; with
/// `override_left`, except for a flow group override that still pins the old image.
fn is_migrated_prefect1(row: &Value, item: &Item, inp: &Inputs<'_>, override_left: bool) -> bool {
    let s = prefect1::json_field(row.get("storage"));
    let rc = prefect1::json_field(row.get("run_config"));
    let field = |k: &str| s.get(k).and_then(Value::as_str);
    let at_ref = match inp.git.git_ref.kind {
        gitref::RefKind::Branch => field("branch_name"),
        gitref::RefKind::Tag => field("tag"),
    } == Some(inp.git.git_ref.name.as_str());
    field("type") == Some("Git")
        && field("repo") == Some(inp.git.repo.as_str())
        && at_ref
        && rc.get("image").and_then(Value::as_str) == Some(item.runtime_image.as_str())
        && {
            let group = prefect1::json_field(row.pointer("/flow_group/run_config"));
            let image = group.get("image").and_then(Value::as_str);
            if override_left {
                !group.is_null() && (image.is_none() || image == item.current_image.as_deref())
            } else {
                group.is_null()
            }
        }
}

fn build_prefect3(item: &mut Item, flow: &Flow, deps: &HashMap<String, Value>, inp: &Inputs<'_>) {
    let Some(dep) = deps.get(&item.id) else {
        check(
            item,
            "registration",
            Err(format!(
                "deployment {} is not on the server any more: scan again",
                item.id
            )),
        );
        return;
    };
    let live = prefect3::snapshot(dep);
    let func = entrypoint_function(flow).unwrap_or_default();
    let entrypoint = format!("{}:{func}", item.flow_path.clone().unwrap_or_default());
    let mut body = prefect3::patch_body(dep, &inp.git, &item.runtime_image, &entrypoint);
    let carried = carry_env(&mut body["job_variables"], flow);
    if !carried.is_empty() {
        item.notes.push(format!(
            "env carried from the old image into job_variables.env: {}",
            carried.join(", ")
        ));
    }
    if item.flow_path.is_some() && live == prefect3::snapshot(&body) {
        item.status = Status::Done;
        item.before = live.clone();
        item.after = live;
        return;
    }
    let scanned = json!({
        "pull_steps": flow.storage.get("pull_steps").cloned().unwrap_or(Value::Null),
        "job_variables": flow.run_config.clone(),
        "entrypoint": flow.storage.get("entrypoint").cloned().unwrap_or(Value::Null),
        "path": flow.storage.get("path").cloned().unwrap_or(Value::Null),
        "work_pool_name": flow.storage.get("work_pool_name").cloned().unwrap_or(Value::Null),
        "work_queue_name": flow.storage.get("work_queue_name").cloned().unwrap_or(Value::Null),
    });
    if scanned != live {
        check(
            item,
            "registration",
            Err(
                "its pull steps, job variables or entrypoint changed since the scan: scan again"
                    .into(),
            ),
        );
        return;
    }
    check(
        item,
        "registration",
        Ok("the deployment is unchanged since the scan".into()),
    );
    if item.flow_path.is_none() {
        return;
    }
    let problems = prefect3::check_body(&body);
    check(
        item,
        "document",
        if problems.is_empty() {
            Ok("the PATCH body is a valid DeploymentUpdate with the pool and queue kept".into())
        } else {
            Err(problems.join("; "))
        },
    );
    item.before = live;
    item.after = prefect3::snapshot(&body);
    item.write = body;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(id: &str, v: i64, archived: bool) -> crate::flows::prefect1::Row {
        serde_json::value::to_raw_value(
            &json!({"id": id, "version": v, "version_group_id": "vg-orders", "archived": archived}),
        )
        .unwrap()
    }

    #[test]
    fn only_the_live_version_of_a_group_passes_the_registration_check() {
        let rows = vec![
            version("v1", 1, true),
            version("v2", 2, false),
            version("v3", 3, false),
            version("v4", 4, true),
        ];
        let index = RowIndex::new(&rows);
        assert_eq!(row_is_live(2, &index), Ok(()), "the newest unarchived");
        let archived = row_is_live(0, &index).unwrap_err();
        assert!(
            archived.contains("version 1 (v1) is archived; version 3 (v3) of its group is live"),
            "{archived}"
        );
        let newer_but_archived = row_is_live(3, &index).unwrap_err();
        assert!(
            newer_but_archived.contains("archived"),
            "{newer_but_archived}"
        );
        let superseded = row_is_live(1, &index).unwrap_err();
        assert!(
            superseded.contains("not the newest unarchived one"),
            "{superseded}"
        );

        let all_archived = vec![version("a", 1, true)];
        let index = RowIndex::new(&all_archived);
        let e = row_is_live(0, &index).unwrap_err();
        assert!(e.contains("has no live version"), "{e}");
    }
}
