//! `unsprawl plan`: inventory in, plan document and runtime image files out.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use indicatif::HumanBytes;

use crate::inventory::Inventory;
use crate::plan::{self, Objective, Options, Plan};
use crate::rules::Rules;

#[derive(Args)]
pub(super) struct PlanArgs {
    /// The inventory (`unsprawl scan …`), with flows linked.
    inventory: PathBuf,
    /// A rules file merged over the built-in `rules/default.toml` (repeatable, in order).
    #[arg(long = "rules", value_name = "FILE")]
    rules: Vec<PathBuf>,
    /// Where the plan document goes; Dockerfiles and requirements go beside it, under
    /// `runtime-images/`.
    #[arg(short, long, default_value = "plan.json")]
    output: PathBuf,
    /// `images`: fewest runtime images. `bytes`: also weigh what flows pull but do not need.
    #[arg(long, value_enum, default_value = "images")]
    objective: ObjectiveArg,
    /// With `--objective bytes`: how many bytes one more runtime image is worth.
    #[arg(long, default_value = "500MB", value_parser = parse_bytes)]
    image_weight: u64,
    /// Print why this flow (key, name or name/deployment) is where it is; writes nothing.
    #[arg(long, value_name = "FLOW")]
    explain: Option<String>,
    /// Exit 1 when some flows could not be planned.
    #[arg(long)]
    strict: bool,
    /// The registry (and path) runtime images are named in, e.g.
    /// `registry.company.com/prefect`; overrides the rules' `[image] registry`.
    #[arg(long, value_name = "HOST/PATH")]
    image_registry: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum ObjectiveArg {
    Images,
    Bytes,
}

/// `500MB`, `2GiB`, `1000000`.
fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("`{s}` is not a size like 500MB"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        other => {
            return Err(format!(
                "unknown unit `{other}` (B, KB, MB, GB, KiB, MiB, GiB)"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{s}` is too large"))
}

pub(super) fn run(a: &PlanArgs) -> Result<ExitCode> {
    let inv = Inventory::read(&a.inventory)?;
    let files: Vec<&Path> = a.rules.iter().map(PathBuf::as_path).collect();
    let mut rules = Rules::load(&files).map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(r) = &a.image_registry {
        rules.image.registry = checked_registry(r)?;
    }
    // a plan names images to build and run: never in a registry that cannot exist
    if a.explain.is_none()
        && rules
            .image
            .registry
            .starts_with(crate::rules::PLACEHOLDER_REGISTRY)
    {
        anyhow::bail!(
            "the runtime images would be named in the placeholder registry {:?} of the built-in rules: \
             say where yours go with `--image-registry HOST/PATH` or in a rules file \
             (`[image]` `registry = \"registry.company.com/prefect\"`)",
            rules.image.registry
        );
    }
    let opts = Options {
        objective: match a.objective {
            ObjectiveArg::Images => Objective::Images,
            ObjectiveArg::Bytes => Objective::Bytes {
                image_weight: a.image_weight,
            },
        },
        ..Options::default()
    };
    let mut solved = plan::solve(&inv, &rules, &opts)?;
    solved.plan.inputs = plan_inputs(&a.inventory, &a.rules, &a.output)?;
    if let Some(flow) = &a.explain {
        let text = solved
            .explain(&inv, &rules, flow)
            .map_err(anyhow::Error::msg)?;
        print!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    write_plan(&solved, &a.output)?;
    print_plan_summary(&solved.plan, &a.output);
    Ok(if a.strict && !solved.plan.unplanned.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `host[:port]/path`: a registry host and an optional repository path, lower case.
pub(super) fn checked_registry(r: &str) -> Result<String> {
    let r = r.trim_end_matches('/');
    let (host, path) = r.split_once('/').unwrap_or((r, ""));
    let host_ok = !host.is_empty()
        && (host.contains(['.', ':']) || host == "localhost")
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c));
    let path_ok = path.split('/').all(|c| {
        path.is_empty()
            || (!c.is_empty()
                && c.chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "._-".contains(ch)))
    });
    if r.contains("://") || !host_ok || !path_ok {
        anyhow::bail!(
            "--image-registry {r:?}: expected HOST[:PORT][/PATH] with a dotted host, a port or localhost, and a lower-case path (e.g. registry.company.com/prefect)"
        );
    }
    Ok(r.to_string())
}

/// The inventory and rules files, recorded relative to where the plan goes.
pub(super) fn plan_inputs(
    inventory: &Path,
    rules: &[PathBuf],
    output: &Path,
) -> Result<Vec<crate::provenance::Input>> {
    use crate::provenance::{folder_of, record};
    let dir = folder_of(output);
    let mut inputs = vec![record("inventory", inventory, &dir)?];
    for r in rules {
        inputs.push(record("rules", r, &dir)?);
    }
    Ok(inputs)
}

/// The plan document and its files. `runtime-images/` is replaced whole, but only when
/// unsprawl made it (its marker says so), and only once the new one is complete: a plan
/// never deletes a folder it did not write, and a full disk leaves the old one intact.
pub(super) fn write_plan(solved: &plan::Solved, output: &Path) -> Result<()> {
    if output == Path::new("-") {
        // the document alone: its Dockerfiles and requirements need a folder
        super::say::say!(
            "plan: the plan goes to standard output; runtime-images/ is not written (give -o FILE for it)"
        );
        return super::write_json(output, &solved.plan);
    }
    let dir = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    crate::output::check_file(output)?;
    crate::output::replace_folder(
        &dir.join("runtime-images"),
        "Written by `unsprawl plan`; replaced by the next plan written here.",
        |staging| -> Result<bool> {
            for (rel, text) in &solved.files {
                let inside = Path::new(rel)
                    .strip_prefix("runtime-images")
                    .with_context(|| format!("{rel} is not under runtime-images/"))?;
                crate::output::write_file(&staging.join(inside), text.as_bytes())?;
            }
            Ok(true)
        },
    )?;
    super::write_json(output, &solved.plan)
}

pub(super) fn print_plan_summary(plan: &Plan, out: &Path) {
    let s = &plan.summary;
    use super::say::{self, List, count};
    let mut e = say::summary();
    let bound = if plan.objective == "bytes" {
        format!("the fewest-images plan has {}", s.fewest_images.images)
    } else if s.optimal {
        "optimal".to_string()
    } else {
        format!(
            "at most {} more than optimal",
            s.runtime_images - s.lower_bound
        )
    };
    let _ = writeln!(
        e,
        "plan: {} of {} on {} (lower bound {}: {bound}); today they use {}",
        s.planned,
        count(s.flows, "flow", "flows"),
        count(s.runtime_images, "runtime image", "runtime images"),
        s.lower_bound,
        count(s.current_images, "image", "images")
    );
    if s.excluded > 0 {
        let _ = writeln!(
            e,
            "  {} left out: not live or already migrated",
            count(s.excluded, "registration", "registrations")
        );
    }
    if s.splits > 0 {
        let _ = writeln!(
            e,
            "  {} split to stay under [image] max_bytes",
            count(s.splits, "image", "images")
        );
    }
    if plan.objective == "bytes" {
        let _ = writeln!(
            e,
            "  bytes objective: {} images, {} pulled but unneeded (fewest-images plan: {} images, {})",
            s.chosen.images,
            HumanBytes(s.chosen.unneeded_bytes),
            s.fewest_images.images,
            HumanBytes(s.fewest_images.unneeded_bytes)
        );
    }
    let shown = if say::details() {
        plan.runtime_images.len()
    } else {
        say::LIST_LIMIT
    };
    for img in plan.runtime_images.iter().take(shown) {
        let _ = writeln!(
            e,
            "  {}  {}, {} pins, ~{}",
            img.name,
            count(img.members.len(), "flow", "flows"),
            img.requirements.len(),
            HumanBytes(img.estimated_bytes)
        );
        // what fetches the members' code, which no flow image had
        let added: Vec<String> = img
            .additions
            .iter()
            .filter(|a| a.kind != crate::plan::additions::EXECUTABLE)
            .map(|a| match &a.version {
                Some(v) => format!("{} {v}", a.name),
                None => a.name.clone(),
            })
            .collect();
        if !added.is_empty() {
            let needed: std::collections::BTreeSet<&str> =
                img.additions.iter().map(|a| a.needed_by.as_str()).collect();
            let _ = writeln!(
                e,
                "      + {} (to fetch code: {})",
                added.join(", "),
                needed.into_iter().collect::<Vec<_>>().join(", ")
            );
        }
        for a in img.additions.iter().filter(|a| a.problem.is_some()) {
            let _ = writeln!(
                e,
                "      ✗ cannot add {}: {}",
                a.name,
                a.problem.as_deref().unwrap_or_default()
            );
        }
    }
    if plan.runtime_images.len() > shown {
        let _ = writeln!(
            e,
            "  … and {} more runtime images in {} (-v lists them all)",
            plan.runtime_images.len() - shown,
            out.display()
        );
    }
    let mut list = List::new(&mut e);
    for u in &plan.unplanned {
        list.entry(&[format!(
            "  not planned: {} ({}): {}",
            u.flow, u.name, u.reason
        )]);
    }
    for u in &plan.excluded {
        list.entry(&[format!(
            "  left out:    {} ({}): {}",
            u.flow, u.name, u.reason
        )]);
    }
    list.finish(&out.display().to_string());
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let _ = writeln!(
        e,
        "  → {} and {}",
        out.display(),
        dir.join("runtime-images").display()
    );
}

#[cfg(test)]
mod tests {
    use super::parse_bytes;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("500MB"), Ok(500_000_000));
        assert_eq!(parse_bytes("2GiB"), Ok(2 << 30));
        assert_eq!(parse_bytes("1000"), Ok(1000));
        assert!(parse_bytes("5 parsecs").is_err());
        assert!(parse_bytes("99999999999999GB").is_err());
    }
}
