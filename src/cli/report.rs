//! `unsprawl report`: inventory (+ plan, + last report) in, report files out, and an exit
//! code CI can act on: 0 fine, 1 a `--fail-on` rule is broken, 2 error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};

use crate::inventory::Inventory;
use crate::plan::Plan;
use crate::report::{self, Report, policy::Rule, render};

#[derive(Args)]
pub(super) struct ReportArgs {
    /// The inventory (`unsprawl scan …`).
    inventory: PathBuf,
    /// The plan (`unsprawl plan …`): adds the consolidation's effect.
    #[arg(long)]
    plan: Option<PathBuf>,
    /// The last report's `report.json`: adds what grew, what is new, what went away.
    #[arg(long)]
    previous: Option<PathBuf>,
    /// The build document (`unsprawl build …`): the runtime images' stored bytes are
    /// measured from it instead of estimated.
    #[arg(long, value_name = "BUILD_JSON")]
    build: Option<PathBuf>,
    #[command(flatten)]
    price: PriceArgs,
    /// Which files to write.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "json,md,html,csv"
    )]
    format: Vec<Format>,
    /// The folder the files go to (default `reports/<today>/`); `-`: one document (the
    /// JSON, or the one `--format` named) to standard output.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Images no live flow has used for longer than this are stale: since the last use
    /// an earlier report saw (--previous), else since their creation.
    #[arg(long, default_value = "180d", value_parser = humantime::parse_duration)]
    stale_after: std::time::Duration,
    /// Exit 1 when the report breaks this rule: images>N, orphans>N, dangling>N,
    /// stale>N, growth>P% (growth needs --previous). Repeatable.
    #[arg(long = "fail-on", value_name = "RULE")]
    fail_on: Vec<Rule>,
    /// No timestamps: identical input gives byte-identical files.
    #[arg(long)]
    no_timestamp: bool,
}

/// What storage costs, for the savings in money.
#[derive(Args)]
pub(super) struct PriceArgs {
    /// What a GB (10^9 bytes) of registry storage costs a month.
    #[arg(long, value_name = "PRICE", default_value = "0.10", value_parser = price_per_gb)]
    price_per_gb_month: f64,
    /// The currency of --price-per-gb-month, as the report prints it.
    #[arg(long, default_value = "USD", value_parser = currency)]
    currency: String,
}

impl PriceArgs {
    pub(super) fn price(&self) -> crate::report::savings::Price {
        crate::report::savings::Price {
            per_gb_month: self.price_per_gb_month,
            currency: self.currency.clone(),
        }
    }
}

fn price_per_gb(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(p) if p.is_finite() && p >= 0.0 => Ok(p),
        _ => Err(format!("{s:?} is not a price (a number ≥ 0, e.g. 0.10)")),
    }
}

fn currency(s: &str) -> std::result::Result<String, String> {
    let ok = !s.is_empty()
        && s.chars().count() <= 8
        && s.chars().all(|c| !c.is_control() && !"<>&\"'".contains(c));
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is not a currency (a short name such as USD or EUR)"
        ))
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum Format {
    Json,
    Md,
    Html,
    Csv,
}

pub(super) fn read<T: serde::de::DeserializeOwned>(path: &Path, schema: &str) -> Result<T> {
    Ok(crate::document::read(path, &[schema])?)
}

/// A previous report for the trend: this schema, or the one before it (whose
/// `generator` was a string and which had no inputs).
pub(super) fn read_previous(path: &Path) -> Result<Report> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    previous_from(path, &text)
}

/// [`read_previous`] of a text already read (`path` names it in errors).
pub(super) fn previous_from(path: &Path, text: &str) -> Result<Report> {
    let mut v: serde_json::Value =
        serde_json::from_str(text).with_context(|| format!("{} is not JSON", path.display()))?;
    let found = v.get("schema").and_then(|s| s.as_str()).unwrap_or("");
    if !report::PREVIOUS_SCHEMAS.contains(&found) {
        anyhow::bail!(
            "{} has schema {found:?}, expected one of {:?}",
            path.display(),
            report::PREVIOUS_SCHEMAS
        );
    }
    if let Some(g) = v
        .get("generator")
        .and_then(|g| g.as_str())
        .map(str::to_string)
    {
        let (tool, version) = g.split_once(' ').unwrap_or((g.as_str(), ""));
        v["generator"] = serde_json::json!({"tool": tool, "version": version});
    }
    serde_json::from_value(v).with_context(|| format!("{} is not a report", path.display()))
}

/// The inventory, plan and previous report, recorded relative to the report folder.
pub(super) fn report_inputs(
    inventory: &Path,
    plan: Option<&Path>,
    previous: Option<&Path>,
    dir: &Path,
) -> Result<Vec<crate::provenance::Input>> {
    use crate::provenance::record;
    let mut inputs = vec![record("inventory", inventory, dir)?];
    if let Some(p) = plan {
        inputs.push(record("plan", p, dir)?);
    }
    if let Some(p) = previous {
        inputs.push(record("previous-report", p, dir)?);
    }
    Ok(inputs)
}

pub(super) fn run(a: &ReportArgs) -> Result<ExitCode> {
    let inv = Inventory::read(&a.inventory)?;
    let plan: Option<Plan> = a
        .plan
        .as_deref()
        .map(|p| read(p, crate::plan::SCHEMA))
        .transpose()?;
    let previous: Option<Report> = a.previous.as_deref().map(read_previous).transpose()?;
    let built: Option<crate::build::BuildDoc> = a
        .build
        .as_deref()
        .map(|p| read(p, crate::build::SCHEMA))
        .transpose()?;
    let mut r = report::build(
        &inv,
        plan.as_ref(),
        previous.as_ref(),
        &a.fail_on,
        &report::Options {
            stale_after: a.stale_after,
            timestamp: !a.no_timestamp,
            built: built.as_ref().map_or(&[], |b| b.images.as_slice()),
            price: a.price.price(),
        },
    );
    let dir = a.output.clone().unwrap_or_else(today_dir);
    let to_stdout = dir == Path::new("-");
    let inputs_dir = if to_stdout {
        PathBuf::from(".")
    } else {
        dir.clone()
    };
    r.inputs = report_inputs(
        &a.inventory,
        a.plan.as_deref(),
        a.previous.as_deref(),
        &inputs_dir,
    )?;
    if let Some(b) = &a.build {
        r.inputs
            .push(crate::provenance::record("build", b, &inputs_dir)?);
    }
    let written = if to_stdout {
        // one document to standard output: the JSON unless one other --format is named
        let format = match a.format.as_slice() {
            [one] => *one,
            f if f == ALL_FORMATS => Format::Json,
            _ => anyhow::bail!("-o - writes one document to standard output: name one --format"),
        };
        let text = match format {
            Format::Json => serde_json::to_string_pretty(&r)? + "\n",
            Format::Md => render::markdown(&r)?,
            Format::Html => render::html(&r)?,
            Format::Csv => render::csv(&r)?,
        };
        std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes())?;
        vec!["standard output".to_string()]
    } else {
        write_report(&r, &dir, &a.format)?
    };
    super::say::say!(
        "report: {} images ({} tags, {} distinct layers), {} orphan, {} dangling, {} stale{} → {}",
        r.totals.images,
        r.totals.tags,
        r.totals.unique_layers,
        r.orphans.len(),
        r.dangling.len(),
        r.stale.len(),
        r.plan
            .as_ref()
            .map(|p| format!(
                "; plan {} → {} runtime images",
                p.images_before, p.runtime_images
            ))
            .unwrap_or_default(),
        written.join(", ")
    );
    Ok(verdict(&r))
}

/// Say which `--fail-on` rules broke; exit 1 if any did.
pub(super) fn verdict(r: &Report) -> ExitCode {
    for v in &r.violations {
        eprintln!("  policy violated: {} (value {})", v.rule, v.value);
    }
    if r.violations.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `reports/YYYY-MM-DD` (UTC).
pub(super) fn today_dir() -> PathBuf {
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    PathBuf::from("reports").join(&now[..10])
}

pub(super) const ALL_FORMATS: [Format; 4] = [Format::Json, Format::Md, Format::Html, Format::Csv];

pub(super) fn write_report(r: &Report, dir: &Path, formats: &[Format]) -> Result<Vec<String>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut written = vec![];
    for f in formats {
        let (name, text) = match f {
            Format::Json => {
                super::write_json(&dir.join("report.json"), r)?;
                written.push(dir.join("report.json").display().to_string());
                continue;
            }
            Format::Md => ("report.md", render::markdown(r)?),
            Format::Html => ("report.html", render::html(r)?),
            Format::Csv => ("images.csv", render::csv(r)?),
        };
        let path = dir.join(name);
        crate::output::write_file(&path, text.as_bytes())?;
        written.push(path.display().to_string());
    }
    Ok(written)
}
