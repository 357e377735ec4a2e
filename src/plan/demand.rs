//! From the inventory to what the planner works on: every distribution version seen in
//! the scanned images (the only versions a runtime image may pin, so builds are
//! reproducible), and each flow's needs as the set of those versions it may run with.
//!
//! Allowed sets are bitsets over a distribution's seen versions, sorted by PEP 440 order.
//! Under the named policies they are intervals of that order, so flows that pairwise
//! share a version share one all together (Helly's theorem in one dimension).

use std::collections::{BTreeSet, HashMap};
use std::str::FromStr;

use pep440_rs::{Version, VersionSpecifiers};

use crate::inventory::{Flow, Image, Inventory, LinkStatus};
use crate::rules::{Needs, Rules, SeparateMode, normalize};

/// Every distribution seen in the inventory's images.
#[derive(Debug, Default)]
pub struct Catalogue {
    pub dists: Vec<DistEntry>,
    index: HashMap<String, u32>,
}

#[derive(Debug)]
pub struct DistEntry {
    /// PEP 503 normalized.
    pub name: String,
    /// Seen versions, ascending (unparseable ones first, compared as text).
    pub versions: Vec<SeenVersion>,
    /// Import names any of its versions provides.
    pub import_names: BTreeSet<String>,
    /// Largest installed size seen for any version (the estimate when a version's is unknown).
    pub max_bytes: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct SeenVersion {
    pub text: String,
    pub parsed: Option<Version>,
    pub bytes: Option<u64>,
    /// Python minors it was seen installed for (`None`: a version-less site dir). A
    /// runtime image only pins a version seen on its own Python: a wheel built for
    /// 3.11 says nothing about 3.10.
    pub pythons: BTreeSet<Option<String>>,
}

impl DistEntry {
    fn words(&self) -> usize {
        self.versions.len().div_ceil(64)
    }

    pub fn position(&self, text: &str) -> Option<u32> {
        self.versions
            .iter()
            .position(|v| v.text == text)
            .map(|i| i as u32)
    }

    pub fn bytes_of(&self, version: u32) -> Option<u64> {
        self.versions[version as usize].bytes
    }
}

impl Catalogue {
    pub fn from_images(images: &[Image]) -> Catalogue {
        type Seen = (Option<u64>, BTreeSet<Option<String>>);
        let mut seen: HashMap<String, (BTreeSet<String>, HashMap<String, Seen>)> = HashMap::new();
        for img in images {
            let Some(c) = &img.contents else { continue };
            for d in &c.python.distributions {
                let e = seen.entry(normalize(&d.name)).or_default();
                e.0.extend(d.import_names.iter().cloned());
                let b = e.1.entry(d.version.clone()).or_default();
                b.0 = b.0.max(d.installed_bytes);
                b.1.insert(d.python.clone());
            }
        }
        let mut names: Vec<String> = seen.keys().cloned().collect();
        names.sort();
        let mut cat = Catalogue::default();
        for name in names {
            let (imports, versions) = seen.remove(&name).expect("listed");
            let mut versions: Vec<SeenVersion> = versions
                .into_iter()
                .map(|(text, (bytes, pythons))| SeenVersion {
                    parsed: Version::from_str(&text).ok(),
                    text,
                    bytes,
                    pythons,
                })
                .collect();
            versions.sort_by(|a, b| (&a.parsed, &a.text).cmp(&(&b.parsed, &b.text)));
            let max_bytes = versions.iter().filter_map(|v| v.bytes).max();
            cat.index.insert(name.clone(), cat.dists.len() as u32);
            cat.dists.push(DistEntry {
                name,
                versions,
                import_names: imports,
                max_bytes,
            });
        }
        cat
    }

    pub fn id(&self, name: &str) -> Option<u32> {
        self.index.get(name).copied()
    }

    pub fn get(&self, id: u32) -> &DistEntry {
        &self.dists[id as usize]
    }
}

/// Which flows may ever share an image: same Python minor, OS family and separation group.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Partition {
    pub python: String,
    pub os_family: String,
    /// The `[[separate]]` rule that matched, if any.
    pub group: Option<String>,
    /// The rule said `mode = "alone"`.
    pub alone: bool,
}

/// One distribution a flow needs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Need {
    pub dist: u32,
    /// The version it was built with (index into the distribution's versions).
    pub built: u32,
    /// Seen versions it may run with.
    pub allowed: Box<[u64]>,
}

impl Need {
    pub fn allows(&self, version: u32) -> bool {
        bit(&self.allowed, version)
    }
}

pub fn bit(words: &[u64], i: u32) -> bool {
    words
        .get((i / 64) as usize)
        .is_some_and(|w| w & (1 << (i % 64)) != 0)
}

pub fn intersects(a: &[u64], b: &[u64]) -> bool {
    a.iter().zip(b).any(|(x, y)| x & y != 0)
}

/// The highest set bit.
pub fn highest(words: &[u64]) -> Option<u32> {
    words
        .iter()
        .enumerate()
        .rev()
        .find(|(_, w)| **w != 0)
        .map(|(i, w)| (i * 64) as u32 + 63 - w.leading_zeros())
}

/// A flow the planner can place.
#[derive(Debug, Clone)]
pub struct Demand {
    /// Index into the inventory's flows.
    pub flow: usize,
    pub partition: Partition,
    /// Sorted by distribution id.
    pub needs: Vec<Need>,
}

/// A flow the planner cannot place, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub flow: usize,
    pub reason: String,
}

/// What the planner makes of the inventory's flows.
pub struct Collected {
    pub demands: Vec<Demand>,
    /// Flows that should be planned but cannot be.
    pub refusals: Vec<Refusal>,
    /// Flows left out by design: not live (archived, superseded, flow deleted) or
    /// already migrated. Never planned, never counted against the plan.
    pub excluded: Vec<Refusal>,
}

/// `3.11`: digits, one dot, digits.
pub fn is_python_minor(v: &str) -> bool {
    v.split_once('.').is_some_and(|(a, b)| {
        !a.is_empty()
            && !b.is_empty()
            && a.len() <= 2
            && b.len() <= 3
            && a.bytes().all(|c| c.is_ascii_digit())
            && b.bytes().all(|c| c.is_ascii_digit())
    })
}

/// Why a registration is left out of planning by design, if it is.
pub fn excluded(flow: &Flow) -> Option<String> {
    if !flow.state.is_live() {
        return Some(format!(
            "not live ({}): {}",
            flow.state.as_str(),
            flow.state_reason
                .as_deref()
                .unwrap_or("not the registration that runs")
        ));
    }
    (flow.link.status == LinkStatus::AlreadyMigrated).then(|| {
        format!(
            "already migrated: its code comes from {} on {}",
            flow.storage_kind.as_deref().unwrap_or("git"),
            flow.image_reference
                .as_deref()
                .unwrap_or("its run config's image")
        )
    })
}

/// Each live flow's demand under the rules, or why it cannot be planned.
pub fn collect(inv: &Inventory, rules: &Rules, cat: &Catalogue) -> Collected {
    let images: HashMap<&str, &Image> = inv.images.iter().map(|i| (i.id.as_str(), i)).collect();
    let mut masks: Masks = HashMap::new();
    let mut demands = vec![];
    let mut refusals = vec![];
    let mut left_out = vec![];
    for (fi, flow) in inv.flows.iter().enumerate() {
        if let Some(reason) = excluded(flow) {
            left_out.push(Refusal { flow: fi, reason });
            continue;
        }
        match demand(flow, &images, rules, cat, &mut masks) {
            Ok((partition, needs)) => demands.push(Demand {
                flow: fi,
                partition,
                needs,
            }),
            Err(reason) => refusals.push(Refusal { flow: fi, reason }),
        }
    }
    Collected {
        demands,
        refusals,
        excluded: left_out,
    }
}

type Masks = HashMap<(u32, u32, String), Box<[u64]>>;

fn demand(
    flow: &Flow,
    images: &HashMap<&str, &Image>,
    rules: &Rules,
    cat: &Catalogue,
    masks: &mut Masks,
) -> Result<(Partition, Vec<Need>), String> {
    let req = match (&flow.requirement, flow.link.status) {
        (Some(r), _) => r,
        (None, LinkStatus::Dangling) => {
            return Err(format!(
                "its image {} is in no scanned source",
                flow.image_reference.as_deref().unwrap_or("?")
            ));
        }
        (None, LinkStatus::NoImage) => return Err("it names no image (the agent's default)".into()),
        (None, _) => return Err("its image could not be analysed".into()),
    };
    let python = req
        .python
        .clone()
        .ok_or("no Python version is known for its image")?;
    // it names a folder and a Dockerfile line: data, never a path or a command
    if !is_python_minor(&python) {
        return Err(format!(
            "its Python version {python:?} is not MAJOR.MINOR (the inventory is damaged or hostile)"
        ));
    }
    if !rules.python_versions.is_empty() && !rules.python_versions.contains(&python) {
        return Err(format!(
            "Python {python} is not in the rules' [python] versions ({})",
            rules.python_versions.join(", ")
        ));
    }
    let os_family = req
        .os_family
        .clone()
        .ok_or("no OS family is known for its image (no os-release)")?;
    if !rules.os_families.is_empty() && !rules.os_families.contains(&os_family) {
        return Err(format!(
            "OS family {os_family} is not in the rules' [os] families ({})",
            rules.os_families.join(", ")
        ));
    }
    if !rules.image.base.contains_key(&os_family) {
        return Err(format!(
            "the rules' [image.base] has no base image for OS family {os_family}"
        ));
    }

    // (name, version) pairs the flow needs
    let pins: Vec<(String, String)> = match rules.needs {
        Needs::Imports => req
            .imports
            .iter()
            .map(|p| (normalize(&p.name), p.version.clone()))
            .collect(),
        Needs::Installed => {
            let img = flow
                .link
                .image_id
                .as_deref()
                .and_then(|id| images.get(id))
                .ok_or("its linked image is missing from the inventory")?;
            let c = img.contents.as_ref().ok_or("its image has no contents")?;
            c.python
                .distributions
                .iter()
                .filter(|d| d.python.is_none() || d.python.as_deref() == Some(python.as_str()))
                .map(|d| (normalize(&d.name), d.version.clone()))
                .collect()
        }
    };
    let mut needs: Vec<Need> = vec![];
    for (name, version) in pins {
        if rules.ignore.contains(&name) {
            continue;
        }
        let id = cat
            .id(&name)
            .ok_or_else(|| format!("{name} is in no scanned image"))?;
        let entry = cat.get(id);
        let built = entry
            .position(&version)
            .ok_or_else(|| format!("{name} {version} is in no scanned image"))?;
        let allowed = masks
            .entry((id, built, python.clone()))
            .or_insert_with(|| {
                let spec = rules.policy_for(&name).allowed_for(entry, built);
                allowed_mask(entry, built, &spec, &python)
            })
            .clone();
        if allowed.iter().all(|w| *w == 0) {
            return Err(format!(
                "{name} {version}: no version seen on Python {python} is allowed by the rules' policy `{}`",
                rules.policy_for(&name)
            ));
        }
        needs.push(Need {
            dist: id,
            built,
            allowed,
        });
    }
    needs.sort_by_key(|n| n.dist);
    needs.dedup_by_key(|n| n.dist);

    let group = rules.separate.iter().find(|s| {
        flow.labels.iter().any(|l| s.labels.contains(l))
            || needs
                .iter()
                .any(|n| s.matches_distribution(&cat.get(n.dist).name))
    });
    let partition = Partition {
        python,
        os_family,
        group: group.map(|g| g.name.clone()),
        alone: group.is_some_and(|g| g.mode == SeparateMode::Alone),
    };
    Ok((partition, needs))
}

trait AllowedFor {
    fn allowed_for(&self, entry: &DistEntry, built: u32) -> Option<VersionSpecifiers>;
}

impl AllowedFor for crate::rules::Policy {
    /// `None`: the built version does not parse, so only that exact text is allowed.
    fn allowed_for(&self, entry: &DistEntry, built: u32) -> Option<VersionSpecifiers> {
        entry.versions[built as usize]
            .parsed
            .as_ref()
            .map(|v| self.allowed(v))
    }
}

/// Which seen versions `spec` allows for a flow on `python` built with version `built`.
/// Pre-releases follow pip: only when the specifier names one, or it is the version
/// already installed. Only versions seen on the same Python qualify.
pub fn allowed_mask(
    entry: &DistEntry,
    built: u32,
    spec: &Option<VersionSpecifiers>,
    python: &str,
) -> Box<[u64]> {
    let mut words = vec![0u64; entry.words()].into_boxed_slice();
    let pre_ok = spec
        .as_ref()
        .is_some_and(|s| s.iter().any(|c| c.version().any_prerelease()));
    for (i, v) in entry.versions.iter().enumerate() {
        let on_python = v
            .pythons
            .iter()
            .any(|p| p.as_deref().is_none_or(|p| p == python));
        // the version it was built with counts as seen on its Python (it ran there), but
        // only where the policy allows it: `prefect = "<1.3"` moves a 1.4.1 flow off 1.4.1
        let ok = match (spec, &v.parsed) {
            (None, _) => i as u32 == built,
            (Some(s), Some(p)) => {
                (on_python || i as u32 == built)
                    && s.contains(p)
                    && (pre_ok || !p.any_prerelease() || i as u32 == built)
            }
            (Some(_), None) => false,
        };
        if ok {
            words[i / 64] |= 1 << (i % 64);
        }
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_helpers() {
        let w = [0b1010u64, 1];
        assert!(bit(&w, 1) && bit(&w, 3) && bit(&w, 64) && !bit(&w, 2) && !bit(&w, 200));
        assert_eq!(highest(&w), Some(64));
        assert_eq!(highest(&[0, 0]), None);
        assert!(intersects(&w, &[2, 0]) && !intersects(&w, &[4, 0]));
    }

    fn entry(versions: &[&str]) -> DistEntry {
        DistEntry {
            name: "x".into(),
            versions: versions
                .iter()
                .map(|t| SeenVersion {
                    text: t.to_string(),
                    parsed: t.parse().ok(),
                    bytes: None,
                    pythons: [Some("3.11".to_string())].into(),
                })
                .collect(),
            import_names: BTreeSet::new(),
            max_bytes: None,
        }
    }

    #[test]
    fn masks_follow_policy_and_pre_release_rule() {
        let e = entry(&["1.0", "1.2", "1.5rc1", "1.5", "2.0"]);
        let minor = crate::rules::Policy::Minor;
        let m = allowed_mask(&e, 1, &minor.allowed_for(&e, 1), "3.11");
        let allowed: Vec<u32> = (0..5).filter(|&i| bit(&m, i)).collect();
        assert_eq!(allowed, vec![1, 3], "1.2 → 1.2, 1.5 (no 1.5rc1, no 2.0)");
        let m = allowed_mask(&e, 2, &minor.allowed_for(&e, 2), "3.11");
        let allowed: Vec<u32> = (0..5).filter(|&i| bit(&m, i)).collect();
        assert_eq!(
            allowed,
            vec![2, 3],
            "built with a pre-release: it and newer"
        );
        let bad = entry(&["not a version", "1.0"]);
        let m = allowed_mask(&bad, 0, &minor.allowed_for(&bad, 0), "3.11");
        assert_eq!(m[0], 1, "an unparseable version allows only itself");
        let m = allowed_mask(&e, 1, &minor.allowed_for(&e, 1), "3.10");
        assert_eq!(
            m[0], 0b10,
            "versions seen only on 3.11 are not pinned for 3.10"
        );
    }
}
