//! The `runtime-image` check: no flow moves onto an image unsprawl has not seen with its
//! own eyes. Each runtime image of the plan is looked up where it was built to (an OCI
//! layout, or the registry its name says), its content-hash label compared with the
//! plan's, and its contents scanned with our own scanner (cached, so cheap): every pinned
//! distribution once, at the pinned version, and the modules its distributions provide.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use crate::build::CONTENT_HASH_LABEL;
use crate::inventory::{Image, Inventory};
use crate::plan::document::{Plan, RuntimeImage};
use crate::reference::RegistryTarget;
use crate::rules::fetch::FetchNeeds;
use crate::scan::source::registry::RegistryInput;
use crate::scan::source::registry::auth::Credentials;
use crate::scan::{Input, ScanOptions};

/// Where the runtime images are to be found.
pub enum Location {
    /// An OCI layout `unsprawl build -o DIR` wrote.
    Layout(PathBuf),
    /// The registry each image's name says.
    Registry {
        plain_http: bool,
        credentials: Option<Credentials>,
    },
}

/// What was seen of one runtime image that passed.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub detail: String,
    /// Top-level modules its distributions provide.
    pub modules: BTreeSet<String>,
    /// Per target storage (`git-storage`, `git-clone`): whether the image can fetch a
    /// flow's code that way, and what showed it (or what is missing).
    pub fetch: BTreeMap<String, Result<String, String>>,
    /// The image as scanned (its locations let its layers be read again).
    pub image: Option<Box<Image>>,
    /// Its OS package names, user and working directory (for the `parity` check).
    pub os_packages: BTreeSet<String>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
}

/// Per runtime image name: seen and as planned, or why not.
pub type Verdicts = HashMap<String, Result<Seen, String>>;

/// Look at every runtime image of the plan.
pub fn check(plan: &Plan, at: &Location, cache_root: Option<PathBuf>) -> Verdicts {
    let opts = ScanOptions {
        cache_root,
        progress: crate::scan::progress::ProgressMode::Quiet,
        ..ScanOptions::default()
    };
    let (inputs, hint) = match at {
        Location::Layout(dir) => (
            vec![Input::OciDir(dir.clone())],
            format!("run `unsprawl build PLAN -o {}`", dir.display()),
        ),
        Location::Registry {
            plain_http,
            credentials,
        } => {
            let mut by_host: BTreeMap<String, RegistryInput> = BTreeMap::new();
            for img in &plan.runtime_images {
                // a name no registry could serve is found nowhere, and refused below
                let Ok(RegistryTarget {
                    host,
                    image: Some(image),
                    ..
                }) = RegistryTarget::parse(&img.name)
                else {
                    continue;
                };
                let r = by_host.entry(host).or_insert_with_key(|host| {
                    let mut r = RegistryInput::new(host);
                    r.plain_http = *plain_http;
                    r.credentials = credentials.clone();
                    r
                });
                r.references.push(image);
            }
            (
                by_host
                    .into_values()
                    .map(|r| Input::Registry(Box::new(r)))
                    .collect(),
                "run `unsprawl build PLAN --push`".to_string(),
            )
        }
    };
    let (inv, _) = crate::scan::scan(&inputs, &opts);
    let fetch = fetch_rules(plan);
    plan.runtime_images
        .iter()
        .map(|rt| (rt.name.clone(), verdict(rt, &inv, &hint, &fetch)))
        .collect()
}

/// Per flow whose Docker storage copied files in: whether its runtime image holds each
/// of them with the bytes its old image had (both images' layers read again, each
/// once), or what differs.
pub fn carried_files(
    inv: &Inventory,
    plan: &Plan,
    seen: &Verdicts,
    access: &crate::build::source::Access,
) -> HashMap<String, Result<String, String>> {
    use crate::build::harvest::{copied_in, stream, under};
    use crate::build::source::{Sources, label};
    let mut sources = Sources::default();
    let mut read = |img: &Image, roots: &[String]| -> Result<BTreeMap<String, String>, String> {
        let found = sources.open(img, access).map_err(|e| e.to_string())?;
        let facts = sources
            .facts(img, &found, access)
            .map_err(|e| e.to_string())?;
        let got = stream(&label(img), &found, &facts, &under(roots)).map_err(|e| e.to_string())?;
        Ok(got.into_iter().map(|(p, c)| (p, c.digest())).collect())
    };
    let mut out = HashMap::new();
    let by_key: HashMap<&str, &crate::inventory::Flow> =
        inv.flows.iter().map(|f| (f.key.as_str(), f)).collect();
    for placement in &plan.flows {
        let Some(flow) = by_key.get(placement.flow.as_str()) else {
            continue;
        };
        let roots = copied_in(flow);
        if roots.is_empty() {
            continue;
        }
        let dests: Vec<String> = roots.iter().map(|r| format!("/{r}")).collect();
        let verdict = (|| {
            let old = flow
                .link
                .image_id
                .as_deref()
                .and_then(|id| inv.images.iter().find(|i| i.id == id))
                .ok_or("its old image is not in the inventory")?;
            let Some(Ok(Seen {
                image: Some(new), ..
            })) = seen.get(&placement.runtime_image)
            else {
                return Err("its runtime image was not seen".to_string());
            };
            let before = read(old, &roots)?;
            if before.is_empty() {
                return Err(format!(
                    "Docker storage copied {} into the old image, but {} has nothing there",
                    dests.join(", "),
                    label(old)
                ));
            }
            let after = read(new, &roots)?;
            let differ: Vec<String> = before
                .iter()
                .filter(|(p, d)| after.get(*p) != Some(d))
                .map(|(p, _)| format!("/{p}"))
                .collect();
            if differ.is_empty() {
                Ok(format!(
                    "the {} file(s) Docker storage copied in ({}) are in the runtime image, byte for byte",
                    before.len(),
                    dests.join(", ")
                ))
            } else {
                Err(format!(
                    "the runtime image lacks or changed {} of the files Docker storage copied in: {}; build it again",
                    differ.len(),
                    differ.join(", ")
                ))
            }
        })();
        out.insert(flow.key.clone(), verdict);
    }
    out
}

/// What each target storage needs, as the plan's rules say (the built-in default for a
/// plan from before `[fetch]`).
pub fn fetch_rules(plan: &Plan) -> BTreeMap<String, FetchNeeds> {
    plan.rules
        .get("fetch")
        .and_then(|f| serde_json::from_value(f.clone()).ok())
        .filter(|f: &BTreeMap<String, FetchNeeds>| !f.is_empty())
        .unwrap_or_else(|| crate::rules::Rules::default_rules().fetch)
}

fn verdict(
    rt: &RuntimeImage,
    seen: &Inventory,
    hint: &str,
    fetch: &BTreeMap<String, FetchNeeds>,
) -> Result<Seen, String> {
    let Some(img) = seen.images.iter().find(|i| {
        i.references
            .iter()
            .any(|r| r == &rt.name || rt.name.ends_with(&format!("/{r}")))
    }) else {
        let why = seen
            .errors
            .iter()
            .find(|e| {
                e.path
                    .as_deref()
                    .is_some_and(|p| rt.name.contains(p) || p.contains(&rt.name))
            })
            .map(|e| format!(" ({})", e.message))
            .unwrap_or_default();
        return Err(format!("{} is not built yet{why}: {hint}", rt.name));
    };
    compare(rt, img, fetch)
}

/// The image as scanned against the plan's runtime image.
pub fn compare(
    rt: &RuntimeImage,
    img: &Image,
    fetch: &BTreeMap<String, FetchNeeds>,
) -> Result<Seen, String> {
    let label = img.config.labels.get(CONTENT_HASH_LABEL);
    if label != Some(&rt.content_hash) {
        return Err(format!(
            "{} exists but differs from the plan: its {CONTENT_HASH_LABEL} label is {}, the plan's content hash is {} (build it again)",
            rt.name,
            label
                .map(|l| format!("{l:?}"))
                .unwrap_or_else(|| "missing".into()),
            rt.content_hash
        ));
    }
    let Some(c) = &img.contents else {
        return Err(format!(
            "{} could not be analysed: {:?}",
            rt.name, img.errors
        ));
    };
    let dists: Vec<_> = c
        .python
        .distributions
        .iter()
        .filter(|d| d.python.as_deref().is_none_or(|p| p == rt.python))
        .collect();
    let mut problems = vec![];
    for pin in &rt.requirements {
        let found: Vec<&str> = dists
            .iter()
            .filter(|d| d.name == pin.name)
            .map(|d| d.version.as_str())
            .collect();
        match found.as_slice() {
            [v] if *v == pin.version => {}
            [] => problems.push(format!("lacks {} (pinned {})", pin.name, pin.version)),
            [v] => problems.push(format!(
                "has {} {v} where the plan pins {}",
                pin.name, pin.version
            )),
            many => problems.push(format!(
                "has {} {} times ({})",
                pin.name,
                many.len(),
                many.join(", ")
            )),
        }
    }
    if !problems.is_empty() {
        return Err(format!(
            "{} does not provide what the plan pins: {}",
            rt.name,
            problems.join("; ")
        ));
    }
    Ok(Seen {
        detail: format!(
            "{} exists ({}), carries the plan's content hash and provides all {} pinned distributions",
            rt.name,
            img.manifest_digest.as_deref().unwrap_or(&img.id),
            rt.requirements.len()
        ),
        modules: dists
            .iter()
            .flat_map(|d| d.import_names.iter().cloned())
            .collect(),
        image: Some(Box::new(img.clone())),
        os_packages: c
            .system_packages
            .iter()
            .flat_map(|p| &p.packages)
            .map(|p| p.name.clone())
            .collect(),
        user: img.config.user.clone(),
        working_dir: img.config.working_dir.clone(),
        fetch: fetch
            .iter()
            .map(|(storage, needs)| {
                (
                    storage.clone(),
                    can_fetch(rt, img, c, &dists, storage, needs),
                )
            })
            .collect(),
    })
}

/// Whether the scanned image has what `storage` needs: each distribution once at a
/// version the rules allow, each OS package installed, each executable on its `PATH`.
fn can_fetch(
    rt: &RuntimeImage,
    img: &Image,
    c: &crate::inventory::Contents,
    dists: &[&crate::inventory::Distribution],
    storage: &str,
    needs: &FetchNeeds,
) -> Result<String, String> {
    use std::str::FromStr;
    if let Some(a) = rt
        .additions
        .iter()
        .find(|a| a.needed_by == storage && a.problem.is_some())
    {
        return Err(format!(
            "the plan could not add {} for {storage}: {}",
            a.name,
            a.problem.as_deref().unwrap_or_default()
        ));
    }
    let mut seen = vec![];
    let mut missing = vec![];
    for d in &needs.distributions {
        let spec = pep440_rs::VersionSpecifiers::from_str(&d.version).ok();
        let found: Vec<&str> = dists
            .iter()
            .filter(|x| x.name == d.name)
            .map(|x| x.version.as_str())
            .collect();
        match found.as_slice() {
            [v] if spec
                .as_ref()
                .is_none_or(|s| pep440_rs::Version::from_str(v).is_ok_and(|v| s.contains(&v))) =>
            {
                seen.push(format!("{} {v}", d.name))
            }
            [] => missing.push(format!("{} ({}{})", d.name, d.name, d.version)),
            [v] => missing.push(format!("{} {v} (needs {}{})", d.name, d.name, d.version)),
            many => missing.push(format!("{} once (it has {})", d.name, many.join(", "))),
        }
    }
    let packages: BTreeSet<&str> = c
        .system_packages
        .iter()
        .flat_map(|p| &p.packages)
        .map(|p| p.name.as_str())
        .collect();
    for p in &needs.os_packages {
        if packages.contains(p.as_str()) {
            seen.push(format!("package {p}"));
        } else {
            missing.push(format!("OS package {p}"));
        }
    }
    let path =
        img.config.env.get("PATH").cloned().unwrap_or_else(|| {
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()
        });
    for x in &needs.executables {
        let on_path = path
            .split(':')
            .map(|d| format!("{}/{x}", d.trim_end_matches('/')))
            .find(|p| c.executables.contains(p));
        match on_path {
            Some(p) => seen.push(p),
            None => missing.push(format!("a `{x}` executable on its PATH ({path})")),
        }
    }
    if missing.is_empty() {
        Ok(format!(
            "{} can fetch code for {storage}: {}",
            rt.name,
            seen.join(", ")
        ))
    } else {
        Err(format!(
            "{} cannot fetch the flow's code ({storage}): it lacks {}; plan and build again (the plan adds what [fetch.{storage}] in the rules names)",
            rt.name,
            missing.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A built image exactly as planned, but without what fetches code: every flow on it
    /// is refused `fetch-code` for Prefect 1 Git storage until dulwich is there.
    #[test]
    fn an_image_without_dulwich_cannot_fetch_prefect1_code() {
        let inv = crate::plan::synthetic::inventory(&crate::plan::synthetic::Spec {
            flows: 3,
            pythons: vec!["3.11".into()],
            distributions: 4,
            teams: 1,
            per_flow: (1, 3),
            max_versions: 1,
            seed: 7,
        });
        let mut rules = crate::rules::Rules::default_rules();
        rules.image.registry = "localhost/test".into();
        // the wheel's requirement, met: the synthetic images have no urllib3
        rules.fetch.get_mut("git-storage").unwrap().distributions[0].wheels[0]
            .requires
            .clear();
        let solved = crate::plan::solve(&inv, &rules, &Default::default()).unwrap();
        let rt = &solved.plan.runtime_images[0];
        assert_eq!(rt.additions[0].name, "dulwich");
        let mut img = inv.images[0].clone();
        img.config
            .labels
            .insert(CONTENT_HASH_LABEL.into(), rt.content_hash.clone());
        let c = img.contents.as_mut().unwrap();
        let template = c.python.distributions[0].clone();
        c.python.distributions = rt
            .requirements
            .iter()
            .map(|p| crate::inventory::Distribution {
                name: p.name.clone(),
                version: p.version.clone(),
                ..template.clone()
            })
            .collect();
        let fetch = fetch_rules(&solved.plan);
        let seen = compare(rt, &img, &fetch).unwrap();
        let e = seen.fetch["git-storage"].as_ref().unwrap_err();
        assert!(
            e.contains(
                "cannot fetch the flow's code (git-storage): it lacks dulwich (dulwich>=0.19.7)"
            ),
            "{e}"
        );
        // two of them is no better than none
        let c = img.contents.as_mut().unwrap();
        for v in ["0.22.8", "0.21.7"] {
            c.python.distributions.push(crate::inventory::Distribution {
                name: "dulwich".into(),
                version: v.into(),
                ..template.clone()
            });
        }
        let seen = compare(rt, &img, &fetch).unwrap();
        assert!(
            seen.fetch["git-storage"]
                .as_ref()
                .unwrap_err()
                .contains("dulwich once (it has 0.22.8, 0.21.7)")
        );
        img.contents.as_mut().unwrap().python.distributions.pop();
        let seen = compare(rt, &img, &fetch).unwrap();
        assert_eq!(
            seen.fetch["git-storage"].as_deref(),
            Ok(format!("{} can fetch code for git-storage: dulwich 0.22.8", rt.name).as_str())
        );
    }
}
