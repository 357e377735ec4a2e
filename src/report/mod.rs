//! Report: the audit of image sprawl (`unsprawl/report/v1`) from an inventory, and, when
//! given, a plan and the previous report (for trends). The JSON document is the source
//! of truth; Markdown, CSV and HTML ([`render`]) are views of it, and `--fail-on`
//! ([`policy`]) turns it into a CI verdict.

pub mod policy;
pub mod render;
pub mod savings;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::inventory::{Image, Inventory};
use crate::plan::Plan;

pub const SCHEMA: &str = "unsprawl/report/v2";
/// Reports of this older shape are still read as `--previous` (for the trend).
pub const PREVIOUS_SCHEMAS: &[&str] = &["unsprawl/report/v1", SCHEMA];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub schema: String,
    pub generator: crate::provenance::Generator,
    /// The inventory, plan and previous report it was made from, by path and SHA-256.
    #[serde(default)]
    pub inputs: Vec<crate::provenance::Input>,
    /// `null` with `--no-timestamp` (byte-identical reports for identical input).
    pub generated_at: Option<String>,
    pub inventory_scanned_at: Option<String>,
    pub sources: Vec<String>,
    pub totals: Totals,
    /// By repository (registry host and path, without tag), largest first.
    pub repositories: Vec<RepositoryRow>,
    /// By team (the flows' Prefect project), largest first: what each team's live flows
    /// run on today and on how many runtime images the plan puts them.
    #[serde(default)]
    pub teams: Vec<TeamRow>,
    /// How many images have each Python minor / Prefect version / OS.
    pub python_versions: BTreeMap<String, usize>,
    pub prefect_versions: BTreeMap<String, usize>,
    pub operating_systems: BTreeMap<String, usize>,
    /// How many linked flows were built on each base image (Docker storage's
    /// `base_image`, read from the pickle; `unknown` when the image does not say).
    pub base_images: BTreeMap<String, usize>,
    /// Distributions installed in the most images, with their version spread.
    pub duplicated_distributions: Vec<DistributionRow>,
    /// One row per image (also the CSV).
    pub images: Vec<ImageRow>,
    /// References of images no flow uses (only when flows were scanned).
    pub orphans: Vec<String>,
    /// Live flows whose image is in no scanned source.
    pub dangling: Vec<String>,
    /// References of images that only registrations which are not live use (archived
    /// versions): neither orphans nor planned; safe to prune once nobody restores them.
    #[serde(default)]
    pub archived_only: Vec<String>,
    /// Live flows whose code already comes from git (`name (image)`).
    #[serde(default)]
    pub already_migrated: Vec<String>,
    /// Live deployments that are paused (planned and migrated like the others).
    #[serde(default)]
    pub paused: Vec<String>,
    /// Registrations that are not live (`name: why`), never planned or migrated.
    #[serde(default)]
    pub not_live: Vec<String>,
    /// Live flows whose old image gave them more than distributions (`name: what`):
    /// env carried into the run config, secret-looking variables (names only), copied
    /// files, user and working directory — for the platform team to review.
    #[serde(default)]
    pub parity: Vec<String>,
    /// Images no live flow has used for more than `stale_after_days` (see
    /// [`ImageRow::stale`]).
    pub stale: Vec<String>,
    pub stale_after_days: u64,
    pub plan: Option<PlanEffect>,
    pub trend: Option<Trend>,
    /// `--fail-on` rules that the numbers break.
    pub violations: Vec<policy::Violation>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Totals {
    pub images: usize,
    /// References (repository:tag) over all images.
    pub tags: usize,
    pub unique_manifests: usize,
    pub unique_layers: usize,
    /// Σ stored bytes of each distinct layer once: what the registry really holds.
    pub stored_bytes_unique: u64,
    /// Σ stored bytes over images, as if nothing were shared.
    pub stored_bytes_sum: u64,
    /// Layer references over all images / distinct layers (1.0 = nothing shared).
    pub layer_sharing: f64,
    /// Every registration read (archived versions included).
    pub flows: usize,
    /// The registrations that run.
    #[serde(default)]
    pub live_flows: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RepositoryRow {
    pub repository: String,
    pub images: usize,
    pub tags: usize,
    pub stored_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TeamRow {
    /// The Prefect project (`(no project)` for deployments without one).
    pub team: String,
    pub live_flows: usize,
    /// Distinct images those flows run on today.
    pub images: usize,
    /// Σ stored bytes of the distinct layers of those images.
    pub stored_bytes: u64,
    /// Distinct runtime images the plan puts the team's planned flows on.
    pub runtime_images: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DistributionRow {
    pub name: String,
    pub images: usize,
    pub versions: BTreeMap<String, usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ImageRow {
    pub id: String,
    pub references: Vec<String>,
    pub created: Option<String>,
    pub stored_bytes: u64,
    pub os: Option<String>,
    pub python: Vec<String>,
    pub prefect: Vec<String>,
    pub distributions: usize,
    /// Live flows that run on it.
    pub flows: usize,
    /// No registration uses it, live or not.
    pub orphan: bool,
    /// Only registrations that are not live use it.
    #[serde(default)]
    pub archived_only: bool,
    /// No live flow has run on it for longer than `stale_after_days`: by when audits
    /// last saw one use it (`last_used`), else by its creation date; by creation date
    /// alone when no registrations were scanned.
    pub stale: bool,
    /// When a live flow last used it, as this audit or an earlier one saw it (the
    /// inventory's scan time; carried on from `--previous` while no live flow uses it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PlanEffect {
    /// Distinct images the planned flows run on today.
    pub images_before: usize,
    pub runtime_images: usize,
    pub lower_bound: usize,
    pub optimal: bool,
    pub planned_flows: usize,
    pub unplanned_flows: usize,
    /// Σ stored bytes of the distinct layers of the images the planned flows use today.
    pub stored_bytes_before: u64,
    /// Σ estimated installed bytes of the runtime images (their bases not included).
    pub runtime_image_bytes: u64,
    /// What the runtime images get that no flow image had: what fetches code from git.
    #[serde(default)]
    pub additions: Vec<AdditionRow>,
    /// Stored bytes today against the runtime images' stored bytes, and their price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub savings: Option<savings::Savings>,
    /// Each runtime image with the flows it will run, largest membership first.
    #[serde(default)]
    pub images: Vec<RuntimeImageRow>,
}

/// One runtime image of the plan, as a lead reads it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RuntimeImageRow {
    pub name: String,
    pub base_image: String,
    pub python: String,
    /// Pinned distributions.
    pub distributions: usize,
    /// The member flows, by name (`flow` or `flow/deployment`), sorted.
    pub flows: Vec<String>,
    /// How many of today's images it replaces.
    pub replaces: usize,
}

fn runtime_image_rows(p: &Plan) -> Vec<RuntimeImageRow> {
    let name_of: HashMap<&str, &str> = p
        .flows
        .iter()
        .map(|f| (f.flow.as_str(), f.name.as_str()))
        .collect();
    let mut rows: Vec<RuntimeImageRow> = p
        .runtime_images
        .iter()
        .map(|i| {
            let mut flows: Vec<String> = i
                .members
                .iter()
                .map(|k| name_of.get(k.as_str()).copied().unwrap_or(k).to_string())
                .collect();
            flows.sort();
            RuntimeImageRow {
                name: i.name.clone(),
                base_image: i.base_image.clone(),
                python: i.python.clone(),
                distributions: i.requirements.len(),
                flows,
                replaces: i.replaces.len(),
            }
        })
        .collect();
    rows.sort_by(|a, b| b.flows.len().cmp(&a.flows.len()).then(a.name.cmp(&b.name)));
    rows
}

/// One addition across the plan's runtime images.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AdditionRow {
    /// `dulwich 0.22.8`, `git`.
    pub what: String,
    /// `git-storage` (Prefect 1) or `git-clone` (Prefect 2/3).
    pub needed_by: String,
    /// How many runtime images get it.
    pub images: usize,
    /// Why some cannot (a `problem` in the plan), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Trend {
    pub previous_generated_at: Option<String>,
    pub images_before: usize,
    pub images_delta: i64,
    pub stored_bytes_delta: i64,
    /// Growth of stored unique bytes, in percent of the previous report.
    pub growth_percent: f64,
    pub new_images: Vec<String>,
    pub gone_images: Vec<String>,
    /// The earlier reports this one follows, oldest first (carried on from the previous
    /// report's own history, the last [`HISTORY_POINTS`] kept): the trend chart's points
    /// before this report's.
    #[serde(default)]
    pub history: Vec<HistoryPoint>,
}

/// How many earlier reports a trend keeps: two years of weekly audits.
pub const HISTORY_POINTS: usize = 104;

/// One earlier report, as the trend chart plots it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct HistoryPoint {
    pub generated_at: Option<String>,
    pub images: usize,
    pub tags: usize,
    pub stored_bytes_unique: u64,
}

impl HistoryPoint {
    pub fn of(r: &Report) -> HistoryPoint {
        HistoryPoint {
            generated_at: r.generated_at.clone(),
            images: r.totals.images,
            tags: r.totals.tags,
            stored_bytes_unique: r.totals.stored_bytes_unique,
        }
    }
}

pub struct Options<'a> {
    pub stale_after: Duration,
    pub timestamp: bool,
    /// The build document's images, if the runtime images were built: their stored
    /// bytes are measured instead of estimated.
    pub built: &'a [crate::build::BuiltImage],
    pub price: savings::Price,
}

/// The plan's additions, one row per thing and target storage (executables are checks,
/// not things added).
fn addition_rows(p: &Plan) -> Vec<AdditionRow> {
    let mut rows: BTreeMap<(String, String), AdditionRow> = BTreeMap::new();
    for a in p
        .runtime_images
        .iter()
        .flat_map(|i| &i.additions)
        .filter(|a| a.kind != crate::plan::additions::EXECUTABLE)
    {
        let what = match &a.version {
            Some(v) => format!("{} {v}", a.name),
            None => a.name.clone(),
        };
        let row = rows
            .entry((what.clone(), a.needed_by.clone()))
            .or_insert_with(|| AdditionRow {
                what,
                needed_by: a.needed_by.clone(),
                images: 0,
                problem: None,
            });
        row.images += 1;
        if row.problem.is_none() {
            row.problem = a.problem.clone();
        }
    }
    rows.into_values().collect()
}

fn label(img: &Image) -> String {
    img.references
        .first()
        .cloned()
        .unwrap_or_else(|| img.id.chars().take(19).collect())
}

/// The repository of a reference as the inventory writes it (no host added).
fn repository(reference: &str) -> String {
    crate::reference::Parts::of(reference).name.to_string()
}

pub fn build(
    inv: &Inventory,
    plan: Option<&Plan>,
    previous: Option<&Report>,
    fail_on: &[policy::Rule],
    opts: &Options,
) -> Report {
    let mut layers: HashMap<&str, u64> = HashMap::new();
    let mut layer_refs = 0usize;
    let mut manifests: BTreeSet<&str> = BTreeSet::new();
    for img in &inv.images {
        for l in &img.layers {
            layers.insert(&l.digest, l.stored_bytes);
            layer_refs += 1;
        }
        if let Some(m) = &img.manifest_digest {
            manifests.insert(m);
        }
    }
    // live users per image, and every image any registration (live or not) names
    let mut flows_by_image: HashMap<&str, usize> = HashMap::new();
    let mut used: BTreeSet<&str> = BTreeSet::new();
    for f in &inv.flows {
        if let Some(id) = &f.link.image_id {
            used.insert(id);
            if f.state.is_live() {
                *flows_by_image.entry(id.as_str()).or_default() += 1;
            }
        }
    }
    let scanned = inv
        .scanned_at
        .as_deref()
        .and_then(crate::time::parse)
        .unwrap_or_else(SystemTime::now);
    let have_flows = !inv.flows.is_empty();
    let older_than_stale = |t: Option<&str>| {
        t.and_then(crate::time::parse)
            .is_some_and(|c| scanned.duration_since(c).unwrap_or_default() > opts.stale_after)
    };
    // when a live flow last ran on each image, as earlier audits saw it
    let last_used_before: HashMap<&str, &str> = previous
        .into_iter()
        .flat_map(|p| &p.images)
        .filter_map(|i| Some((i.id.as_str(), i.last_used.as_deref()?)))
        .collect();
    let last_used = |img: &Image, live_flows: usize| -> Option<String> {
        if live_flows > 0 {
            inv.scanned_at.clone()
        } else {
            last_used_before.get(img.id.as_str()).map(|t| t.to_string())
        }
    };
    // stale: no live flow for longer than `stale_after` (its last use as audits saw it,
    // else its creation); without registrations to tell, by creation date alone
    let is_stale = |img: &Image, live_flows: usize, last_used: Option<&str>| {
        if !have_flows {
            return older_than_stale(img.created.as_deref());
        }
        live_flows == 0
            && match last_used {
                Some(t) => older_than_stale(Some(t)),
                None => older_than_stale(img.created.as_deref()),
            }
    };

    let mut repositories: BTreeMap<String, RepositoryRow> = BTreeMap::new();
    let mut python = BTreeMap::new();
    let mut prefect = BTreeMap::new();
    let mut oses = BTreeMap::new();
    let mut dists: BTreeMap<String, DistributionRow> = BTreeMap::new();
    let mut images = vec![];
    for img in &inv.images {
        let repos: BTreeSet<String> = img.references.iter().map(|r| repository(r)).collect();
        for r in repos {
            let row = repositories.entry(r.clone()).or_insert(RepositoryRow {
                repository: r.clone(),
                images: 0,
                tags: 0,
                stored_bytes: 0,
            });
            row.images += 1;
            row.tags += img.references.iter().filter(|x| repository(x) == r).count();
            row.stored_bytes += img.size.stored_bytes;
        }
        let c = img.contents.as_ref();
        let os = c.and_then(|c| c.os.as_ref()).and_then(|o| {
            o.pretty_name.clone().or_else(|| {
                o.id.clone()
                    .map(|id| format!("{id} {}", o.version_id.clone().unwrap_or_default()))
            })
        });
        *oses
            .entry(os.clone().unwrap_or_else(|| "unknown".into()))
            .or_default() += 1;
        let pythons: Vec<String> = c
            .map(|c| {
                c.python
                    .interpreters
                    .iter()
                    .map(|i| i.minor.clone())
                    .collect()
            })
            .unwrap_or_default();
        for p in &pythons {
            *python.entry(p.clone()).or_default() += 1;
        }
        let prefects = c.map(|c| c.prefect.versions.clone()).unwrap_or_default();
        for p in &prefects {
            *prefect.entry(p.clone()).or_default() += 1;
        }
        let mut seen_here = BTreeSet::new();
        for d in c
            .map(|c| c.python.distributions.as_slice())
            .unwrap_or_default()
        {
            let row = dists.entry(d.name.clone()).or_insert(DistributionRow {
                name: d.name.clone(),
                images: 0,
                versions: BTreeMap::new(),
            });
            if seen_here.insert(d.name.clone()) {
                row.images += 1;
            }
            *row.versions.entry(d.version.clone()).or_default() += 1;
        }
        let flows = flows_by_image.get(img.id.as_str()).copied().unwrap_or(0);
        let used_at = last_used(img, flows);
        images.push(ImageRow {
            id: img.id.clone(),
            references: img.references.clone(),
            created: img.created.clone(),
            stored_bytes: img.size.stored_bytes,
            os,
            python: pythons,
            prefect: prefects,
            distributions: c.map(|c| c.python.distributions.len()).unwrap_or(0),
            flows,
            orphan: have_flows && !used.contains(img.id.as_str()),
            archived_only: flows == 0 && used.contains(img.id.as_str()),
            stale: is_stale(img, flows, used_at.as_deref()),
            last_used: used_at,
        });
    }
    let mut base_images: BTreeMap<String, usize> = BTreeMap::new();
    for f in inv
        .flows
        .iter()
        .filter(|f| f.link.status == crate::inventory::LinkStatus::Linked && f.state.is_live())
    {
        let base = f
            .requirement
            .as_ref()
            .and_then(|r| r.base.named.clone())
            .unwrap_or_else(|| "unknown".into());
        *base_images.entry(base).or_default() += 1;
    }
    let mut duplicated: Vec<DistributionRow> =
        dists.into_values().filter(|d| d.images > 1).collect();
    duplicated.sort_by(|a, b| b.images.cmp(&a.images).then(a.name.cmp(&b.name)));
    duplicated.truncate(25);

    let totals = Totals {
        images: inv.images.len(),
        tags: inv.images.iter().map(|i| i.references.len()).sum(),
        unique_manifests: manifests.len(),
        unique_layers: layers.len(),
        stored_bytes_unique: layers.values().sum(),
        stored_bytes_sum: inv.images.iter().map(|i| i.size.stored_bytes).sum(),
        layer_sharing: if layers.is_empty() {
            1.0
        } else {
            (layer_refs as f64 / layers.len() as f64 * 100.0).round() / 100.0
        },
        flows: inv.flows.len(),
        live_flows: inv.flows.iter().filter(|f| f.state.is_live()).count(),
    };
    let labels_where = |keep: fn(&ImageRow) -> bool| -> Vec<String> {
        inv.images
            .iter()
            .zip(&images)
            .filter(|(_, r)| keep(r))
            .map(|(i, _)| label(i))
            .collect()
    };
    let orphans = labels_where(|r| r.orphan);
    let stale = labels_where(|r| r.stale);
    let archived_only = labels_where(|r| r.archived_only);
    let live_flows_where = |status: &str| -> Vec<String> {
        inv.flows
            .iter()
            .filter(|f| f.state.is_live() && f.link.status == status)
            .map(|f| {
                format!(
                    "{} ({})",
                    f.title(),
                    f.image_reference.as_deref().unwrap_or("-")
                )
            })
            .collect()
    };
    let dangling = live_flows_where("dangling");
    let already_migrated = live_flows_where("already-migrated");
    let paused: Vec<String> = inv
        .flows
        .iter()
        .filter(|f| f.state == crate::inventory::FlowState::Paused)
        .map(crate::inventory::Flow::title)
        .collect();
    let not_live: Vec<String> = inv
        .flows
        .iter()
        .filter(|f| !f.state.is_live())
        .map(|f| {
            format!(
                "{}: {}",
                f.title(),
                f.state_reason.as_deref().unwrap_or(f.state.as_str())
            )
        })
        .collect();

    let parity: Vec<String> = inv
        .flows
        .iter()
        .filter(|f| f.state.is_live())
        .filter_map(|f| {
            let p = &f.requirement.as_ref()?.parity;
            let mut what = vec![];
            if !p.env.is_empty() {
                let keys: Vec<&str> = p.env.keys().map(String::as_str).collect();
                what.push(format!("env {} carried", keys.join(", ")));
            }
            if !p.secret_env.is_empty() {
                what.push(format!(
                    "secret-looking {} (refused: move into a Prefect Secret)",
                    p.secret_env.join(", ")
                ));
            }
            if !p.files.is_empty() {
                what.push(format!(
                    "files {} (refused: not carried yet)",
                    p.files.join(", ")
                ));
            }
            if let Some(u) = &p.user {
                what.push(format!("user {u}"));
            }
            if let Some(w) = &p.working_dir {
                what.push(format!("working directory {w}"));
            }
            (!what.is_empty()).then(|| format!("{}: {}", f.title(), what.join("; ")))
        })
        .collect();

    let teams = team_rows(inv, plan);
    let plan = plan.map(|p| {
        let used: BTreeSet<&str> = p
            .flows
            .iter()
            .filter_map(|f| f.current_image.as_deref())
            .collect();
        let mut used_layers: HashMap<&str, u64> = HashMap::new();
        for img in inv.images.iter().filter(|i| used.contains(i.id.as_str())) {
            for l in &img.layers {
                used_layers.insert(&l.digest, l.stored_bytes);
            }
        }
        PlanEffect {
            images_before: p.summary.current_images,
            runtime_images: p.summary.runtime_images,
            lower_bound: p.summary.lower_bound,
            optimal: p.summary.optimal,
            planned_flows: p.summary.planned,
            unplanned_flows: p.summary.unplanned,
            stored_bytes_before: used_layers.values().sum(),
            runtime_image_bytes: p.runtime_images.iter().map(|i| i.estimated_bytes).sum(),
            additions: addition_rows(p),
            savings: Some(savings::compute(
                inv,
                p,
                opts.built,
                &used_layers,
                &opts.price,
            )),
            images: runtime_image_rows(p),
        }
    });

    let trend = previous.map(|prev| {
        let now: BTreeSet<&str> = images.iter().map(|i| i.id.as_str()).collect();
        let before: BTreeSet<&str> = prev.images.iter().map(|i| i.id.as_str()).collect();
        let name = |rows: &[ImageRow], id: &str| {
            rows.iter()
                .find(|r| r.id == id)
                .and_then(|r| r.references.first().cloned())
                .unwrap_or_else(|| id.chars().take(19).collect())
        };
        let delta = totals.stored_bytes_unique as i64 - prev.totals.stored_bytes_unique as i64;
        let mut history: Vec<HistoryPoint> = prev
            .trend
            .as_ref()
            .map(|t| t.history.clone())
            .unwrap_or_default();
        history.push(HistoryPoint::of(prev));
        let excess = history.len().saturating_sub(HISTORY_POINTS);
        history.drain(..excess);
        Trend {
            history,
            previous_generated_at: prev.generated_at.clone(),
            images_before: prev.totals.images,
            images_delta: totals.images as i64 - prev.totals.images as i64,
            stored_bytes_delta: delta,
            growth_percent: if prev.totals.stored_bytes_unique == 0 {
                0.0
            } else {
                (delta as f64 * 1000.0 / prev.totals.stored_bytes_unique as f64).round() / 10.0
            },
            new_images: now
                .difference(&before)
                .map(|id| name(&images, id))
                .collect(),
            gone_images: before
                .difference(&now)
                .map(|id| name(&prev.images, id))
                .collect(),
        }
    });

    let mut report = Report {
        schema: SCHEMA.into(),
        generator: crate::provenance::Generator::this(),
        inputs: Vec::new(),
        generated_at: opts
            .timestamp
            .then(|| humantime::format_rfc3339_seconds(SystemTime::now()).to_string()),
        inventory_scanned_at: if opts.timestamp {
            inv.scanned_at.clone()
        } else {
            None
        },
        sources: inv
            .sources
            .iter()
            .map(|s| format!("{} {}", s.kind, s.location))
            .collect(),
        totals,
        repositories: {
            let mut rows: Vec<RepositoryRow> = repositories.into_values().collect();
            rows.sort_by(|a, b| {
                b.stored_bytes
                    .cmp(&a.stored_bytes)
                    .then_with(|| a.repository.cmp(&b.repository))
            });
            rows
        },
        teams,
        python_versions: python,
        prefect_versions: prefect,
        operating_systems: oses,
        base_images,
        duplicated_distributions: duplicated,
        images,
        orphans,
        dangling,
        archived_only,
        already_migrated,
        paused,
        not_live,
        parity,
        stale,
        stale_after_days: opts.stale_after.as_secs() / 86_400,
        plan,
        trend,
        violations: vec![],
    };
    report.violations = policy::check(&report, fail_on);
    report
}

/// One row per team (Prefect project) of live flows, largest first.
fn team_rows(inv: &Inventory, plan: Option<&Plan>) -> Vec<TeamRow> {
    let images: HashMap<&str, &Image> = inv.images.iter().map(|i| (i.id.as_str(), i)).collect();
    let runtime_of: HashMap<&str, &str> = plan
        .map(|p| {
            p.flows
                .iter()
                .map(|f| (f.flow.as_str(), f.runtime_image.as_str()))
                .collect()
        })
        .unwrap_or_default();
    type Acc<'a> = (
        usize,
        BTreeSet<&'a str>,
        HashMap<&'a str, u64>,
        BTreeSet<&'a str>,
    );
    let mut by_team: BTreeMap<String, Acc> = BTreeMap::new();
    for f in inv.flows.iter().filter(|f| f.state.is_live()) {
        let team = f.project.clone().unwrap_or_else(|| "(no project)".into());
        let acc = by_team.entry(team).or_default();
        acc.0 += 1;
        if let Some(img) = f.link.image_id.as_deref().and_then(|id| images.get(id)) {
            acc.1.insert(img.id.as_str());
            for l in &img.layers {
                acc.2.insert(l.digest.as_str(), l.stored_bytes);
            }
        }
        if let Some(rt) = runtime_of.get(f.key.as_str()) {
            acc.3.insert(rt);
        }
    }
    let mut rows: Vec<TeamRow> = by_team
        .into_iter()
        .map(|(team, (live_flows, imgs, layers, runtime))| TeamRow {
            team,
            live_flows,
            images: imgs.len(),
            stored_bytes: layers.values().sum(),
            runtime_images: runtime.len(),
        })
        .collect();
    rows.sort_by(|a, b| {
        b.stored_bytes
            .cmp(&a.stored_bytes)
            .then_with(|| a.team.cmp(&b.team))
    });
    rows
}

#[cfg(test)]
mod tests {
    use super::repository;

    #[test]
    fn repositories_drop_tag_and_digest() {
        assert_eq!(
            repository("registry.local:5000/team/flow-a:2023-01-01"),
            "registry.local:5000/team/flow-a"
        );
        assert_eq!(repository("localhost:5000/x"), "localhost:5000/x");
        assert_eq!(repository("h/x@sha256:ab"), "h/x");
    }
}
