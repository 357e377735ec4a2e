//! What a runtime image needs to *fetch* a flow's code once the flow moves to Git
//! storage, as data (`[fetch.*]` in the rules): Docker storage baked the code into the
//! image, so no scanned image was ever asked for these. The plan adds them to every
//! runtime image with such a flow and lists them apart, as additions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::inventory::System;

/// The target storage of a flow, by the system it is registered in.
pub const GIT_STORAGE: &str = "git-storage";
/// Prefect 2/3 deployments move to a `git_clone` pull step.
pub const GIT_CLONE: &str = "git-clone";

/// Which `[fetch.*]` table applies to a flow registered in `system`.
pub fn target_storage(system: System) -> &'static str {
    match system {
        System::Prefect1 => GIT_STORAGE,
        System::Prefect3 => GIT_CLONE,
    }
}

/// One `[fetch.NAME]` table.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FetchNeeds {
    /// Python distributions the storage imports (Prefect 1 Git storage: dulwich).
    pub distributions: Vec<FetchDistribution>,
    /// OS packages that provide the executables (`git`, `ca-certificates`).
    pub os_packages: Vec<String>,
    /// Executables that must be on the image's `PATH` (the `git_clone` step runs `git`).
    pub executables: Vec<String>,
}

/// A distribution the storage needs, and the wheels that may supply it when no scanned
/// image has it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchDistribution {
    /// PEP 503 name.
    pub name: String,
    /// PEP 440 specifier a harvested version must meet (`>=0.19.7`: what `prefect[git]` asks).
    pub version: String,
    /// Tried in order: the first whose `python` holds the image's Python is used.
    #[serde(default)]
    pub wheels: Vec<Wheel>,
}

/// A hash-pinned wheel on the package index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wheel {
    /// The file name, as the index lists it (`dulwich-0.22.8-py3-none-any.whl`).
    pub file: String,
    /// Hex SHA-256 of the file: the build refuses any other bytes.
    pub sha256: String,
    /// Its `Requires-Python` (`>=3.9`).
    pub python: String,
    /// Its `Requires-Dist` that the image must already satisfy (`urllib3>=1.25`).
    #[serde(default)]
    pub requires: Vec<String>,
}

impl Wheel {
    /// The distribution version its file name says (`dulwich-0.22.8-…` → `0.22.8`).
    pub fn version(&self) -> Option<&str> {
        self.file.strip_suffix(".whl")?.split('-').nth(1)
    }
}

/// `[fetch.NAME]` as written: each field given replaces the one merged before.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFetch {
    distributions: Option<Vec<FetchDistribution>>,
    os_packages: Option<Vec<String>>,
    executables: Option<Vec<String>>,
}

/// Merge `raw` over `into`; an error names the table and what is wrong.
pub(super) fn merge(
    into: &mut BTreeMap<String, FetchNeeds>,
    raw: BTreeMap<String, RawFetch>,
) -> Result<(), String> {
    for (name, r) in raw {
        if name != GIT_STORAGE && name != GIT_CLONE {
            return Err(format!(
                "unknown [fetch.{name}]: expected [fetch.{GIT_STORAGE}] (Prefect 1 Git storage) or [fetch.{GIT_CLONE}] (Prefect 2/3 git_clone)"
            ));
        }
        let e = into.entry(name.clone()).or_default();
        if let Some(d) = r.distributions {
            for dist in &d {
                check_distribution(&name, dist)?;
            }
            e.distributions = d
                .into_iter()
                .map(|mut d| {
                    d.name = super::normalize(&d.name);
                    d
                })
                .collect();
        }
        if let Some(p) = r.os_packages {
            e.os_packages = p;
        }
        if let Some(x) = r.executables {
            e.executables = x;
        }
    }
    Ok(())
}

fn check_distribution(table: &str, d: &FetchDistribution) -> Result<(), String> {
    use std::str::FromStr;
    let at = format!("[fetch.{table}] distribution `{}`", d.name);
    pep440_rs::VersionSpecifiers::from_str(&d.version).map_err(|e| {
        format!(
            "{at}: version {:?} is not a PEP 440 specifier: {e}",
            d.version
        )
    })?;
    for w in &d.wheels {
        let ok_name = w.file.ends_with(".whl")
            && w.file.split('-').count() >= 5
            && super::normalize(w.file.split('-').next().unwrap_or(""))
                == super::normalize(&d.name);
        if !ok_name {
            return Err(format!(
                "{at}: wheel {:?} is not a wheel file name of {} (NAME-VERSION-PY-ABI-PLATFORM.whl)",
                w.file, d.name
            ));
        }
        if w.sha256.len() != 64 || !w.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "{at}: wheel {} needs `sha256` as 64 hex digits",
                w.file
            ));
        }
        pep440_rs::VersionSpecifiers::from_str(&w.python).map_err(|e| {
            format!(
                "{at}: wheel {} python {:?} is not a PEP 440 specifier: {e}",
                w.file, w.python
            )
        })?;
        for r in &w.requires {
            crate::dist_name::requirement(r).map_err(|e| {
                format!(
                    "{at}: wheel {} requires {r:?} is not a PEP 508 requirement: {e}",
                    w.file
                )
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wheel_version_is_read_from_its_file_name() {
        let w = Wheel {
            file: "dulwich-0.22.8-py3-none-any.whl".into(),
            sha256: "0".repeat(64),
            python: ">=3.9".into(),
            requires: vec![],
        };
        assert_eq!(w.version(), Some("0.22.8"));
    }

    #[test]
    fn a_wrong_fetch_table_is_named_with_its_line() {
        let mut r = crate::rules::Rules::default_rules();
        let e = r
            .merge_text(
                "team.toml",
                "schema = \"unsprawl/rules/v1\"\n[fetch.svn]\nexecutables = [\"svn\"]\n",
            )
            .unwrap_err();
        assert_eq!(e.line, 2, "{e:?}");
        assert!(e.message.contains("unknown [fetch.svn]"), "{e:?}");
        let e = r
            .merge_text(
                "team.toml",
                "[fetch.git-storage]\ndistributions = [{ name = \"dulwich\", version = \">=0.20\", wheels = [{ file = \"dulwich-0.21.7-py3-none-any.whl\", sha256 = \"abc\", python = \">=3.7\" }] }]\n",
            )
            .unwrap_err();
        assert!(
            e.message.contains("needs `sha256` as 64 hex digits"),
            "{e:?}"
        );
        // a field given replaces that field only
        r.merge_text("team.toml", "[fetch.git-clone]\nos_packages = []\n")
            .unwrap();
        assert!(r.fetch["git-clone"].os_packages.is_empty());
        assert_eq!(r.fetch["git-clone"].executables, ["git"]);
    }

    #[test]
    fn systems_map_to_their_target_storage() {
        assert_eq!(target_storage(System::Prefect1), GIT_STORAGE);
        assert_eq!(target_storage(System::Prefect3), GIT_CLONE);
    }
}
