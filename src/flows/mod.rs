//! Flows: read registrations, link each to the scanned image it runs on, and derive what
//! it needs from a runtime image (the planner's input).
//!
//! A flow's **requirement** is recorded two ways: `installed`, the distributions its
//! image installed beyond the base (where the base ends is guessed from the history, or
//! from layers shared with another scanned image), and `imports`, the distributions that
//! provide the modules the flow's pickle references, closed over `Requires-Dist`.

pub mod liveness;
pub mod prefect1;
pub mod prefect1_api;
pub mod prefect3;
pub mod registrations;
pub mod source;
pub mod stdlib;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::dist_name::normalize as normalize_name;
use crate::inventory::{
    BaseGuess, DistPin, Distribution, Flow, FlowLink, FlowLinks, FlowSourceFile, Image, Inventory,
    Problem, Requirement, SharedImage, Status,
};
use crate::reference::{ImageRef, canonical};
use source::PyFile;

/// The strings of a JSON array (labels, tags), sorted and deduplicated; `None` when the
/// value is not an array (absent or `null`: "not set", which callers tell from empty).
pub(crate) fn string_set(v: Option<&serde_json::Value>) -> Option<Vec<String>> {
    let mut out: Vec<String> = v?
        .as_array()?
        .iter()
        .filter_map(serde_json::Value::as_str)
        .map(str::to_string)
        .collect();
    out.sort();
    out.dedup();
    Some(out)
}

impl FlowLink {
    /// Not linked (yet): no image named.
    pub fn none() -> Self {
        FlowLink {
            status: crate::inventory::LinkStatus::NoImage,
            image_id: None,
            matched_by: None,
            same_name_elsewhere: Vec::new(),
        }
    }
}

/// Modules a pickle references only because it is a pickle, or by-value pseudo-modules.
const NOT_IMPORTS: &[&str] = &["cloudpickle", "__main__", "copy_reg"];

/// `repo:tag` → `(repository, tag)` without the host, for the loosest match (tags only:
/// a digest names content, not a name to confuse).
fn repository_and_tag(reference: &str) -> Option<(String, String)> {
    let r = ImageRef::parse(reference).ok()?;
    Some((r.repository().to_string(), r.tag()?.to_string()))
}

/// Rewrite the registry host of a reference (`--registry-alias registry.local:5000=127.0.0.1:5055`).
fn apply_alias(r: &str, aliases: &[(String, String)]) -> Option<String> {
    aliases.iter().find_map(|(from, to)| {
        r.strip_prefix(&format!("{from}/"))
            .map(|rest| format!("{to}/{rest}"))
    })
}

/// Add `flows` to the inventory: link each to an image, derive its requirement, and
/// summarise dangling flows, orphan images, shared images and group overrides.
pub fn link(
    inv: &mut Inventory,
    mut flows: Vec<Flow>,
    aliases: &[(String, String)],
    repo: Option<&[PyFile]>,
) {
    let mut by_ref: HashMap<String, usize> = HashMap::new();
    let mut by_repo_tag: HashMap<(String, String), BTreeSet<usize>> = HashMap::new();
    for (i, img) in inv.images.iter().enumerate() {
        for r in &img.references {
            let Ok(parsed) = ImageRef::parse(r) else {
                by_ref.insert(r.clone(), i);
                continue;
            };
            if let Some(tag) = parsed.tag() {
                let rt = (parsed.repository().to_string(), tag.to_string());
                by_repo_tag.entry(rt).or_default().insert(i);
            }
            by_ref.insert(parsed.canonical(), i);
            if let Some(d) = &img.manifest_digest {
                by_ref.insert(format!("{}@{d}", parsed.name()), i);
            }
        }
    }
    let lookup = |r: &str| -> Option<(usize, &'static str)> {
        if let Some(&i) = by_ref.get(&canonical(r)) {
            return Some((i, "reference"));
        }
        let a = apply_alias(r, aliases)?;
        by_ref.get(&canonical(&a)).map(|&i| (i, "alias"))
    };
    // images that only share repository and tag: a hint, never a link
    let elsewhere = |r: &str| -> Vec<String> {
        let Some(rt) = repository_and_tag(r) else {
            return Vec::new();
        };
        let mut v: Vec<String> = by_repo_tag
            .get(&rt)
            .into_iter()
            .flatten()
            .flat_map(|&i| inv.images[i].references.iter())
            .filter(|x| repository_and_tag(x).as_ref() == Some(&rt))
            .cloned()
            .collect();
        v.sort();
        v.dedup();
        v
    };

    liveness::classify(&mut flows);
    for f in &mut flows {
        let migrated = f.state.is_live() && liveness::code_from_git(f);
        let Some(r) = f.image_reference.clone() else {
            f.link = FlowLink::none();
            if migrated {
                f.link.status = crate::inventory::LinkStatus::AlreadyMigrated;
            }
            continue;
        };
        match lookup(&r) {
            // its code comes from git already: nothing to plan, whatever its image
            _ if migrated => {
                f.link = FlowLink {
                    status: crate::inventory::LinkStatus::AlreadyMigrated,
                    image_id: lookup(&r).map(|(i, _)| inv.images[i].id.clone()),
                    matched_by: lookup(&r).map(|(_, how)| how.to_string()),
                    same_name_elsewhere: Vec::new(),
                };
                if let Some(files) = repo {
                    attach_source(f, None, files);
                }
            }
            Some((i, how)) => {
                let img = &inv.images[i];
                f.link = FlowLink {
                    status: crate::inventory::LinkStatus::Linked,
                    image_id: Some(img.id.clone()),
                    matched_by: Some(how.into()),
                    same_name_elsewhere: Vec::new(),
                };
                if let Some(files) = repo {
                    attach_source(f, pickled_file(f, img), files);
                }
                // only what runs is planned: no requirement for an archived version
                if f.state.is_live() {
                    f.requirement = requirement(f, img, &inv.images, repo);
                }
            }
            None => {
                if let Some(files) = repo {
                    attach_source(f, None, files);
                }
                f.link = FlowLink {
                    status: crate::inventory::LinkStatus::Dangling,
                    image_id: None,
                    matched_by: None,
                    same_name_elsewhere: elsewhere(&r),
                };
            }
        }
    }
    flows.sort_by(|a, b| a.key.cmp(&b.key));

    // who uses each image: every registration (for orphans), and the live ones
    let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut used: BTreeSet<&str> = BTreeSet::new();
    for f in &flows {
        if let Some(id) = &f.link.image_id {
            used.insert(id);
            if f.state.is_live() {
                users.entry(id.clone()).or_default().push(f.key.clone());
            }
        }
    }
    let live_where = |pred: &dyn Fn(&Flow) -> bool| -> Vec<String> {
        flows
            .iter()
            .filter(|f| f.state.is_live() && pred(f))
            .map(|f| f.key.clone())
            .collect()
    };
    let links = FlowLinks {
        dangling: live_where(&|f| f.link.status == crate::inventory::LinkStatus::Dangling),
        no_image: live_where(&|f| f.link.status == crate::inventory::LinkStatus::NoImage),
        orphans: inv
            .images
            .iter()
            .filter(|i| !used.contains(i.id.as_str()))
            .map(|i| i.id.clone())
            .collect(),
        shared: users
            .iter()
            .filter(|(_, fs)| fs.len() > 1)
            .map(|(id, fs)| SharedImage {
                image_id: id.clone(),
                flows: fs.clone(),
            })
            .collect(),
        group_overrides: live_where(&|f| f.group_overrides_run_config),
        archived_only: inv
            .images
            .iter()
            .filter(|i| used.contains(i.id.as_str()) && !users.contains_key(&i.id))
            .map(|i| i.id.clone())
            .collect(),
        already_migrated: live_where(&|f| {
            f.link.status == crate::inventory::LinkStatus::AlreadyMigrated
        }),
        not_live: flows
            .iter()
            .filter(|f| !f.state.is_live())
            .map(|f| f.key.clone())
            .collect(),
        paused: live_where(&|f| f.state == crate::inventory::FlowState::Paused),
    };
    inv.flows = flows;
    inv.flow_links = Some(links);
}

/// Where `img`'s base ends: the last history CMD/ENTRYPOINT before the image's own
/// layers (trivy's guess), else the longest layer prefix it shares with another image.
pub fn guess_base(img: &Image, all: &[Image]) -> (usize, &'static str) {
    let h = &img.config.history;
    // trailing empty entries (the image's own CMD, ENV…) are not the base's
    let mut end = h.len();
    while end > 0 && h[end - 1].empty_layer {
        end -= 1;
    }
    if let Some(pos) = h[..end].iter().rposition(|e| {
        e.empty_layer
            && e.created_by
                .as_deref()
                .is_some_and(|c| c.contains("CMD") || c.contains("ENTRYPOINT"))
    }) {
        let layers = h[..pos].iter().filter(|e| !e.empty_layer).count();
        if layers > 0 && layers < img.layers.len() {
            return (layers, "history");
        }
    }
    let shared = all
        .iter()
        .filter(|o| o.id != img.id)
        .map(|o| {
            o.layers
                .iter()
                .zip(&img.layers)
                .take_while(|(a, b)| a.diff_id == b.diff_id)
                .count()
        })
        .filter(|&n| n < img.layers.len())
        .max()
        .unwrap_or(0);
    if shared > 0 {
        (shared, "shared-layers")
    } else {
        (0, "none")
    }
}

fn pin(d: &Distribution) -> DistPin {
    DistPin {
        name: d.name.clone(),
        version: d.version.clone(),
    }
}

/// The pickled flow of `f` inside `img`, if the image holds one.
fn pickled_flow<'a>(f: &Flow, img: &'a Image) -> Option<&'a crate::inventory::PickledFlow> {
    let c = img.contents.as_ref()?;
    c.prefect
        .flows
        .iter()
        .find(|p| p.flow_name.as_deref() == Some(f.name.as_str()))
        .or(c
            .prefect
            .flows
            .first()
            .filter(|_| c.prefect.flows.len() == 1))
}

/// The `__file__` the registering machine recorded in the flow's pickle.
fn pickled_file<'a>(f: &Flow, img: &'a Image) -> Option<&'a str> {
    pickled_flow(f, img)?
        .imports
        .source_files
        .first()
        .map(String::as_str)
}

/// How many trailing path components two paths share.
fn common_suffix(a: &str, b: &str) -> usize {
    a.rsplit('/')
        .zip(b.rsplit('/'))
        .take_while(|(x, y)| x == y)
        .count()
}

/// Find the file of the flows repository that defines `f`, and note it on the flow.
fn attach_source(f: &mut Flow, pickled_file: Option<&str>, files: &[PyFile]) {
    let by_path = |p: &str| files.iter().find(|x| x.path == p.trim_start_matches("./"));
    let named = |how: &str, file: &PyFile| FlowSourceFile {
        path: file.path.clone(),
        matched_by: how.into(),
        imports: file.imports.iter().cloned().collect(),
    };
    let declared = f
        .storage
        .get("entrypoint")
        .and_then(|e| e.as_str())
        .and_then(|e| e.rsplit_once(':').map(|(p, _)| p.to_string()))
        .map(|p| ("entrypoint", p))
        .or_else(|| {
            f.storage
                .get("flow_path")
                .and_then(|p| p.as_str())
                .map(|p| ("flow_path", p.to_string()))
        });
    if let Some((how, p)) = declared
        && let Some(file) = by_path(&p)
    {
        f.source = Some(named(how, file));
        return;
    }
    let candidates: Vec<&PyFile> = files.iter().filter(|x| x.flows.contains(&f.name)).collect();
    match candidates.as_slice() {
        [one] => f.source = Some(named("flow-name", one)),
        [] => {
            let base = pickled_file.and_then(|p| p.rsplit('/').next());
            let by_name: Vec<&PyFile> = files
                .iter()
                .filter(|x| base.is_some_and(|b| x.path.rsplit('/').next() == Some(b)))
                .collect();
            if let [one] = by_name.as_slice() {
                f.source = Some(named("file-name", one));
            }
        }
        many => {
            let scored: Vec<(usize, &PyFile)> = many
                .iter()
                .map(|x| {
                    (
                        pickled_file.map(|p| common_suffix(p, &x.path)).unwrap_or(0),
                        *x,
                    )
                })
                .collect();
            let best = scored.iter().map(|s| s.0).max().unwrap_or(0);
            let winners: Vec<&PyFile> =
                scored.iter().filter(|s| s.0 == best).map(|s| s.1).collect();
            match winners.as_slice() {
                [one] if best > 0 => f.source = Some(named("flow-name+file", one)),
                _ => f.problems.push(Problem {
                    layer: None,
                    path: Some(f.key.clone()),
                    message: format!(
                        "{} files of the flows repository define a flow named {:?}: {}",
                        many.len(),
                        f.name,
                        many.iter()
                            .map(|x| x.path.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                }),
            }
        }
    }
}

/// The requirement of a flow running on `img`.
fn requirement(
    f: &Flow,
    img: &Image,
    all: &[Image],
    repo: Option<&[PyFile]>,
) -> Option<Requirement> {
    if img.status == Status::Failed {
        return None;
    }
    let c = img.contents.as_ref()?;
    let pickled = c
        .prefect
        .flows
        .iter()
        .find(|p| p.flow_name.as_deref() == Some(f.name.as_str()));
    let pickled = pickled.or(c
        .prefect
        .flows
        .first()
        .filter(|_| c.prefect.flows.len() == 1));
    // Python: the one the flow was pickled with, else the one Prefect is installed for
    let python = pickled
        .and_then(|p| p.versions.get("python"))
        .map(|v| v.split('.').take(2).collect::<Vec<_>>().join("."))
        .filter(|m| c.python.interpreters.iter().any(|i| &i.minor == m))
        .or_else(|| {
            c.python
                .distributions
                .iter()
                .find(|d| d.name == "prefect")
                .and_then(|d| d.python.clone())
        })
        .or_else(|| {
            (c.python.interpreters.len() == 1).then(|| c.python.interpreters[0].minor.clone())
        });
    let dists: Vec<&Distribution> = c
        .python
        .distributions
        .iter()
        .filter(|d| d.python.is_none() || d.python == python)
        .collect();

    let (base_layers, method) = guess_base(img, all);
    let own: BTreeSet<&str> = img.layers[base_layers..]
        .iter()
        .map(|l| l.diff_id.as_str())
        .collect();
    let mut installed: Vec<DistPin> = dists
        .iter()
        .filter(|d| own.contains(d.layer.as_str()))
        .map(|d| pin(d))
        .collect();
    installed.sort();
    installed.dedup();

    // imports: modules → distributions, closed over Requires-Dist
    let mut modules: BTreeSet<String> = BTreeSet::new();
    let mut local: BTreeSet<String> = BTreeSet::new();
    let pickle_modules = pickled
        .map(|p| p.imports.top_level.clone())
        .unwrap_or_default();
    let source_modules = f
        .source
        .as_ref()
        .map(|s| s.imports.clone())
        .unwrap_or_default();
    for m in pickle_modules.iter().chain(&source_modules) {
        if stdlib::is_stdlib(m, python.as_deref())
            || NOT_IMPORTS.contains(&m.as_str())
            || m.starts_with('<')
        {
            continue;
        }
        match (&f.source, repo) {
            (Some(s), Some(files)) if source::is_local(m, &s.path, files) => {
                local.insert(m.clone());
            }
            _ => {
                modules.insert(m.clone());
            }
        }
    }
    let mut provider: HashMap<&str, Vec<&Distribution>> = HashMap::new();
    for d in &dists {
        for n in &d.import_names {
            provider.entry(n.as_str()).or_default().push(d);
        }
    }
    let by_name: HashMap<&str, &Distribution> =
        dists.iter().map(|d| (d.name.as_str(), *d)).collect();
    let mut wanted: BTreeSet<String> = BTreeSet::new();
    let mut unresolved = Vec::new();
    let mut queue: Vec<&Distribution> = Vec::new();
    for m in &modules {
        match provider.get(m.as_str()) {
            Some(ds) => queue.extend(ds.iter().copied()),
            None => unresolved.push(m.clone()),
        }
    }
    while let Some(d) = queue.pop() {
        if !wanted.insert(d.name.clone()) {
            continue;
        }
        for r in &d.requires_dist {
            if let Some(dep) = required_name(r)
                && let Some(dd) = by_name.get(dep.as_str())
            {
                queue.push(dd);
            }
        }
    }
    let mut imports: Vec<DistPin> = wanted
        .iter()
        .filter_map(|n| by_name.get(n.as_str()))
        .map(|d| pin(d))
        .collect();
    imports.sort();

    let named = pickled
        .and_then(|p| p.storage.as_ref())
        .and_then(|s| s.state.get("base_image"))
        .and_then(|b| b.as_str())
        .map(str::to_string);
    let parity = parity(img, pickled);
    Some(Requirement {
        python,
        os_family: c.os.as_ref().and_then(|o| o.family.clone()),
        base: BaseGuess {
            layers: base_layers,
            method: method.into(),
            named,
        },
        installed,
        imports,
        imported_modules: modules
            .iter()
            .chain(&local)
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
        unresolved_modules: unresolved,
        local_modules: local.into_iter().collect(),
        parity,
    })
}

/// What the old image gave the flow beyond distributions: its environment (Docker
/// storage's `env_vars` over the image's `ENV`, less the base's and Prefect's own), the
/// paths `files` copied in, its OS packages, user and working directory.
fn parity(
    img: &Image,
    pickled: Option<&crate::inventory::PickledFlow>,
) -> crate::inventory::Parity {
    use crate::inventory::BASE_ENV;
    let state = pickled.and_then(|p| p.storage.as_ref()).map(|s| &s.state);
    let mut env: std::collections::BTreeMap<String, String> = img.config.env.clone();
    if let Some(vars) = state
        .and_then(|s| s.get("env_vars"))
        .and_then(|v| v.as_object())
    {
        for (k, v) in vars {
            if let Some(v) = v.as_str() {
                env.insert(k.clone(), v.to_string());
            }
        }
    }
    env.retain(|k, _| !BASE_ENV.contains(&k.as_str()));
    let secret_env: Vec<String> = env
        .iter()
        .filter(|(k, v)| crate::secrets::looks_secret(k, v))
        .map(|(k, _)| k.clone())
        .collect();
    env.retain(|k, _| !secret_env.contains(k));
    let mut files: Vec<String> = state
        .and_then(|s| s.get("files"))
        .and_then(|v| v.as_object())
        .map(|m| {
            m.values()
                .filter_map(|d| d.as_str())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    crate::inventory::Parity {
        env,
        secret_env,
        files,
        user: img
            .config
            .user
            .clone()
            .filter(|u| !matches!(u.as_str(), "root" | "0" | "0:0" | "root:root")),
        working_dir: img.config.working_dir.clone().filter(|w| w != "/"),
    }
}

/// The normalized name a `Requires-Dist` line needs, unless only an extra asks for it.
fn required_name(line: &str) -> Option<String> {
    match crate::dist_name::requirement(line) {
        Ok(r) => {
            let marker = r.marker.try_to_string().unwrap_or_default();
            (!marker.contains("extra")).then(|| normalize_name(r.name.as_ref()))
        }
        // not PEP 508: take the leading name, and skip anything conditional on an extra
        Err(_) => {
            if line.contains("extra") {
                return None;
            }
            let name: String = line
                .trim()
                .chars()
                .take_while(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.'))
                .collect();
            (!name.is_empty()).then(|| normalize_name(&name))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_names_skip_extras() {
        assert_eq!(
            required_name("numpy>=1.21.0; python_version >= \"3.10\"").as_deref(),
            Some("numpy")
        );
        assert_eq!(required_name("pytest; extra == \"test\""), None);
        assert_eq!(
            required_name("Typing_Extensions (>=4)").as_deref(),
            Some("typing-extensions")
        );
    }
}
