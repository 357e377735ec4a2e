//! Additions: what a runtime image must carry that none of its flows had, because the
//! flows move to Git storage and the image must now fetch their code (`[fetch.*]` in the
//! rules). A distribution is pinned here (harvested from a scanned image, else a
//! hash-pinned wheel from the index); OS packages and executables are named here and
//! resolved by `build` against the base it builds on.

use std::collections::{BTreeSet, HashMap};
use std::str::FromStr;

use pep440_rs::{Version, VersionSpecifiers};
use serde::{Deserialize, Serialize};

use crate::inventory::{DistPin, Inventory};
use crate::rules::Rules;
use crate::rules::fetch::{FetchDistribution, Wheel, target_storage};

/// One thing a runtime image gets beyond its flows' requirements.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Addition {
    /// `distribution`, `os-package` or `executable` (checked on `PATH`, brought by the
    /// OS packages).
    pub kind: String,
    pub name: String,
    /// A distribution's pinned version; OS packages take the version of the image they
    /// are harvested from.
    pub version: Option<String>,
    /// The target storage that needs it: `git-storage` (Prefect 1) or `git-clone`.
    pub needed_by: String,
    /// `scanned` (harvested from a scanned image, like any pin), `index` (the `wheel`),
    /// `base-or-scanned` (OS packages: the base when it has them, else a scanned image
    /// of the same OS release), `os-packages` (executables).
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wheel: Option<Wheel>,
    /// Why it cannot be supplied: `build` refuses the image, `migrate` its flows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

pub const DISTRIBUTION: &str = "distribution";
pub const OS_PACKAGE: &str = "os-package";
pub const EXECUTABLE: &str = "executable";

/// `(name, python)` → the versions scanned images have, each with its `Requires-Dist`.
type Scanned<'a> = HashMap<(String, Option<String>), Vec<(&'a str, &'a [String])>>;

/// What the additions of every runtime image of a plan are chosen from, gathered once
/// (a plan has thousands of flows and hundreds of images): each flow's target storage,
/// and every scanned version of the distributions the rules' `[fetch.*]` name.
pub struct Index<'a> {
    rules: &'a Rules,
    storage_of: HashMap<&'a str, &'static str>,
    scanned: Scanned<'a>,
}

impl<'a> Index<'a> {
    pub fn new(inv: &'a Inventory, rules: &'a Rules) -> Index<'a> {
        let wanted: BTreeSet<&str> = rules
            .fetch
            .values()
            .flat_map(|n| &n.distributions)
            .map(|d| d.name.as_str())
            .collect();
        let mut scanned: Scanned<'a> = HashMap::new();
        for d in inv
            .images
            .iter()
            .filter_map(|i| i.contents.as_ref())
            .flat_map(|c| &c.python.distributions)
        {
            // inventory names are PEP 503 normalized already
            if wanted.contains(d.name.as_str()) {
                scanned
                    .entry((d.name.clone(), d.python.clone()))
                    .or_default()
                    .push((d.version.as_str(), d.requires_dist.as_slice()));
            }
        }
        Index {
            rules,
            storage_of: inv
                .flows
                .iter()
                .map(|f| (f.key.as_str(), target_storage(f.system)))
                .collect(),
            scanned,
        }
    }

    /// The additions of one runtime image for Python `python`, whose members are
    /// `members` (flow keys) and whose pins are `pins`.
    pub fn for_image(&self, python: &str, members: &[String], pins: &[DistPin]) -> Vec<Addition> {
        let storages: BTreeSet<&str> = members
            .iter()
            .filter_map(|m| self.storage_of.get(m.as_str()).copied())
            .collect();
        let mut out = vec![];
        for storage in storages {
            let Some(needs) = self.rules.fetch.get(storage) else {
                continue;
            };
            for d in &needs.distributions {
                if let Some(a) = self.distribution(python, pins, storage, d) {
                    out.push(a);
                }
            }
            for p in &needs.os_packages {
                out.push(Addition {
                    kind: OS_PACKAGE.into(),
                    name: p.clone(),
                    version: None,
                    needed_by: storage.into(),
                    source: "base-or-scanned".into(),
                    wheel: None,
                    problem: None,
                });
            }
            for x in &needs.executables {
                out.push(Addition {
                    kind: EXECUTABLE.into(),
                    name: x.clone(),
                    version: None,
                    needed_by: storage.into(),
                    source: "os-packages".into(),
                    wheel: None,
                    problem: None,
                });
            }
        }
        out.sort_by(|a, b| (&a.kind, &a.name).cmp(&(&b.kind, &b.name)));
        out.dedup_by(|a, b| a.kind == b.kind && a.name == b.name);
        out
    }

    /// `None` when a pin already meets it.
    fn distribution(
        &self,
        python: &str,
        pins: &[DistPin],
        storage: &str,
        d: &FetchDistribution,
    ) -> Option<Addition> {
        let spec = VersionSpecifiers::from_str(&d.version).ok()?;
        let meets = |v: &str| Version::from_str(v).is_ok_and(|v| spec.contains(&v));
        let mut a = Addition {
            kind: DISTRIBUTION.into(),
            name: d.name.clone(),
            version: None,
            needed_by: storage.into(),
            source: String::new(),
            wheel: None,
            problem: None,
        };
        if let Some(p) = pins.iter().find(|p| p.name == d.name) {
            if meets(&p.version) {
                return None;
            }
            a.version = Some(p.version.clone());
            a.source = "pinned".into();
            a.problem = Some(format!(
                "its flows pin {} {}, but {storage} needs {}{}: allow a newer version in [versions.packages]",
                d.name, p.version, d.name, d.version
            ));
            return Some(a);
        }
        // the newest version a scanned image has for this Python (or a version-less site)
        let scanned = [Some(python.to_string()), None]
            .into_iter()
            .filter_map(|py| self.scanned.get(&(d.name.clone(), py)))
            .flatten()
            .filter(|(v, _)| meets(v))
            .max_by_key(|(v, _)| Version::from_str(v).ok());
        if let Some((v, requires)) = scanned {
            a.version = Some(v.to_string());
            a.source = "scanned".into();
            a.problem = unmet(requires, pins);
            return Some(a);
        }
        let py = Version::from_str(python).ok();
        let wheel = d.wheels.iter().find(|w| {
            VersionSpecifiers::from_str(&w.python)
                .ok()
                .zip(py.as_ref())
                .is_some_and(|(s, v)| s.contains(v))
        });
        match wheel {
            Some(w) => {
                a.version = w.version().map(str::to_string);
                a.source = "index".into();
                a.problem = unmet(&w.requires, pins);
                a.wheel = Some(w.clone());
            }
            None => {
                a.source = "index".into();
                a.problem = Some(format!(
                    "no scanned image has {}{} for Python {python}, and no wheel in [fetch.{storage}] is for Python {python}: add one (file, sha256, python)",
                    d.name, d.version
                ));
            }
        }
        Some(a)
    }
}

/// The `Requires-Dist` lines (not conditional on an extra) the pins do not meet.
fn unmet(requires: &[String], pins: &[DistPin]) -> Option<String> {
    let mut missing = vec![];
    for line in requires {
        let Ok(r) = crate::dist_name::requirement(line) else {
            continue;
        };
        if r.marker
            .try_to_string()
            .is_some_and(|m| m.contains("extra"))
        {
            continue;
        }
        let name = crate::rules::normalize(r.name.as_ref());
        let ok = pins.iter().any(|p| {
            p.name == name
                && match &r.version_or_url {
                    Some(pep508_rs::VersionOrUrl::VersionSpecifier(s)) => {
                        Version::from_str(&p.version).is_ok_and(|v| s.contains(&v))
                    }
                    _ => true,
                }
        });
        if !ok {
            missing.push(line.clone());
        }
    }
    (!missing.is_empty()).then(|| {
        format!(
            "it needs {} and the image does not pin that: add a flow image that has it, or a wheel whose requirements the image meets",
            missing.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin(n: &str, v: &str) -> DistPin {
        DistPin {
            name: n.into(),
            version: v.into(),
        }
    }

    fn dulwich(version: &str, python: &str) -> crate::inventory::Distribution {
        crate::inventory::Distribution {
            name: "dulwich".into(),
            display_name: "dulwich".into(),
            version: version.into(),
            python: Some(python.into()),
            location: format!("/usr/local/lib/python{python}/site-packages"),
            metadata_kind: "dist-info".into(),
            requires_dist: vec!["urllib3>=1.25".into()],
            requires_python: None,
            import_names: vec!["dulwich".into()],
            installed_bytes: None,
            layer: "sha256:0".into(),
        }
    }

    fn prefect1_inventory() -> Inventory {
        crate::plan::synthetic::inventory(&crate::plan::synthetic::Spec {
            flows: 2,
            pythons: vec!["3.11".into()],
            distributions: 3,
            teams: 1,
            per_flow: (1, 2),
            max_versions: 1,
            seed: 1,
        })
    }

    fn for_image(
        inv: &Inventory,
        rules: &Rules,
        python: &str,
        members: &[String],
        pins: &[DistPin],
    ) -> Vec<Addition> {
        Index::new(inv, rules).for_image(python, members, pins)
    }

    #[test]
    fn a_scanned_version_wins_over_the_wheel_and_a_pin_that_is_too_old_is_a_problem() {
        let rules = Rules::default_rules();
        let mut inv = prefect1_inventory();
        let members: Vec<String> = inv.flows.iter().map(|f| f.key.clone()).collect();
        let pins = [pin("urllib3", "1.26.18")];
        // nobody has dulwich: the rules' wheel
        let a = for_image(&inv, &rules, "3.11", &members, &pins);
        assert_eq!(a.len(), 1, "{a:?}");
        assert_eq!(
            (a[0].source.as_str(), a[0].version.as_deref()),
            ("index", Some("0.22.8"))
        );
        assert_eq!(a[0].problem, None);
        // a scanned image has one for this Python (and an older one, and one for 3.10)
        let c = inv.images[0].contents.as_mut().unwrap();
        c.python.distributions.push(dulwich("0.21.7", "3.11"));
        c.python.distributions.push(dulwich("0.20.0", "3.11"));
        c.python.distributions.push(dulwich("0.22.1", "3.10"));
        let a = for_image(&inv, &rules, "3.11", &members, &pins);
        assert_eq!(
            (a[0].source.as_str(), a[0].version.as_deref()),
            ("scanned", Some("0.21.7"))
        );
        assert!(a[0].wheel.is_none());
        // a pin that meets the rules' range: nothing to add
        assert!(for_image(&inv, &rules, "3.11", &members, &[pin("dulwich", "0.21.7")]).is_empty());
        // a pin below it: a problem that says what to change
        let a = for_image(&inv, &rules, "3.11", &members, &[pin("dulwich", "0.19.0")]);
        assert!(
            a[0].problem
                .as_deref()
                .unwrap()
                .contains("needs dulwich>=0.19.7"),
            "{a:?}"
        );
        // a Python no wheel is for, and no scanned dulwich: a problem naming the fix
        let a = for_image(&inv, &rules, "3.8", &members, &pins);
        assert!(
            a[0].problem
                .as_deref()
                .unwrap()
                .contains("no wheel in [fetch.git-storage] is for Python 3.8"),
            "{a:?}"
        );
        // the wheel's own requirement unmet
        let a = for_image(&prefect1_inventory(), &rules, "3.11", &members, &[]);
        assert!(
            a[0].problem.as_deref().unwrap().contains("urllib3>=1.25"),
            "{a:?}"
        );
    }

    #[test]
    fn requirements_the_pins_meet_are_not_reported() {
        let pins = [pin("urllib3", "1.26.18")];
        assert_eq!(unmet(&["urllib3>=1.25".into()], &pins), None);
        assert_eq!(unmet(&["gpg; extra == \"pgp\"".into()], &pins), None);
        let m = unmet(&["urllib3>=2".into()], &pins).unwrap();
        assert!(m.contains("urllib3>=2"), "{m}");
        assert!(unmet(&["certifi".into()], &pins).is_some());
    }
}
