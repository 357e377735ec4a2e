//! Squash per-layer facts into what the image's final filesystem shows.
//!
//! Layers apply in order: a layer's whiteouts and opaque directories hide what the layers
//! below put there, then its own files go on top. Symlinks and hard links are followed
//! through the squashed view, so `/etc/os-release -> ../usr/lib/os-release` resolves even
//! when the two live in different layers.

use std::collections::{BTreeMap, BTreeSet};

use super::analyze::{os_release, python};
use super::layer::{FileFact, LayerFacts, resolve_link};
use crate::inventory::{
    Contents, Distribution, FlowSource, Interpreter, PickledFlow, Prefect, Problem, Python,
    SystemPackages,
};

/// The visible files: path → (index of the layer that wrote it, what it says).
pub(crate) type View<'a> = BTreeMap<&'a str, (usize, &'a FileFact)>;

fn remove_tree(view: &mut View<'_>, dir: &str, include_self: bool) {
    if include_self {
        view.remove(dir);
    }
    // every key under `dir/` sorts between `dir/` and `dir0` ('0' follows '/')
    let lo = format!("{dir}/");
    let hi = format!("{dir}0");
    use std::ops::Bound;
    let doomed: Vec<&str> = view
        .range::<str, _>((Bound::Included(lo.as_str()), Bound::Excluded(hi.as_str())))
        .map(|(k, _)| *k)
        .collect();
    for k in doomed {
        view.remove(k);
    }
}

pub(crate) fn build_view<'a>(layers: &[&'a LayerFacts]) -> View<'a> {
    let mut view = View::new();
    for (i, layer) in layers.iter().enumerate() {
        for d in &layer.opaque_dirs {
            remove_tree(&mut view, d, false);
        }
        for w in &layer.whiteouts {
            remove_tree(&mut view, w, true);
        }
        for (path, fact) in &layer.files {
            view.insert(path.as_str(), (i, fact));
        }
    }
    view
}

/// Follow symlinks and hard links (at most 16 hops) to the file that holds the content.
fn resolve<'a>(
    view: &View<'a>,
    path: &str,
) -> Result<Option<(String, usize, &'a FileFact)>, String> {
    let mut cur = path.to_string();
    for _ in 0..16 {
        let Some(&(layer, fact)) = view.get(cur.as_str()) else {
            return if cur == path {
                Ok(None)
            } else {
                Err(format!(
                    "{path} links to {cur}, which is not in the image (or was not kept)"
                ))
            };
        };
        cur = match fact {
            FileFact::Symlink { target } => match resolve_link(&cur, target) {
                Some(t) => t,
                None => return Err(format!("{path} is a symlink to the root")),
            },
            FileFact::Hardlink { target } => target.clone(),
            _ => return Ok(Some((cur, layer, fact))),
        };
    }
    Err(format!("{path}: too many levels of links"))
}

/// Hard links at paths the analysis reads whose targets have no facts: `(the link's
/// layer, target, link path)`. The target is a file the analysis did not read where it
/// was written (a `METADATA` linked to `opt/blob`), so the layers at and below the link
/// must be read again for it ([`super::layer::analyse_also`]).
pub fn dangling_links(layers: &[&LayerFacts]) -> Vec<(usize, String, String)> {
    let view = build_view(layers);
    let mut out = vec![];
    for (&path, &(layer, fact)) in &view {
        if let FileFact::Hardlink { target } = fact
            && super::layer::is_read(path)
            && !view.contains_key(target.as_str())
        {
            out.push((layer, target.clone(), path.to_string()));
        }
    }
    out
}

/// The image's contents from its layers (bottom first) and its config's environment.
pub fn squash(layers: &[&LayerFacts], env: &BTreeMap<String, String>) -> (Contents, Vec<Problem>) {
    let view = build_view(layers);
    let mut problems = BTreeSet::new();
    let diff_id = |i: usize| layers[i].diff_id.clone();

    // Resolve every visible path once; links that lead nowhere are problems.
    let mut files: BTreeMap<&str, (usize, &FileFact)> = BTreeMap::new();
    for (&path, &(layer, _)) in &view {
        // a hard link's target read for the link (`opt/blob` for a METADATA) counts only
        // through the link, never as a file of its own
        if !super::layer::is_read(path) {
            continue;
        }
        match resolve(&view, path) {
            Ok(Some((_, l, fact))) => {
                files.insert(path, (l, fact));
            }
            Ok(None) => {}
            Err(message) => {
                problems.insert(Problem {
                    layer: Some(diff_id(layer)),
                    path: Some(format!("/{path}")),
                    message,
                });
            }
        }
    }
    for (&path, &(layer, fact)) in &files {
        if let FileFact::Unreadable { message } = fact {
            problems.insert(Problem {
                layer: Some(diff_id(layer)),
                path: Some(format!("/{path}")),
                message: message.clone(),
            });
        }
    }

    let os = ["etc/os-release", "usr/lib/os-release"]
        .iter()
        .find_map(|p| match files.get(p) {
            Some((_, FileFact::OsRelease { fields })) => {
                let real = resolve(&view, p)
                    .ok()
                    .flatten()
                    .map(|r| r.0)
                    .unwrap_or(p.to_string());
                Some(os_release::to_inventory(fields, &format!("/{real}")))
            }
            _ => None,
        });

    let mut dpkg = Vec::new();
    let mut apk = Vec::new();
    let mut interpreters: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut flows = Vec::new();
    let mut flow_sources = Vec::new();
    let mut metadata_dirs = Vec::new();
    let mut executables = Vec::new();
    for (&path, &(layer, fact)) in &files {
        match fact {
            FileFact::Executable { mode } if mode & 0o111 != 0 => {
                executables.push(format!("/{path}"));
            }
            FileFact::DpkgStatus { packages } => dpkg.extend(packages.iter().cloned()),
            FileFact::ApkInstalled { packages } => apk.extend(packages.iter().cloned()),
            FileFact::Interpreter { minor } if !minor.is_empty() => {
                interpreters
                    .entry(minor.clone())
                    .or_default()
                    .insert(format!("/{path}"));
            }
            FileFact::DistMetadata { meta } => metadata_dirs.push((path, layer, meta)),
            FileFact::PrefectFlow { flow } => flows.push(PickledFlow {
                path: format!("/{path}"),
                format: flow.format.clone(),
                flow_name: flow.flow_name.clone(),
                versions: flow.versions.clone(),
                imports: flow.imports.clone(),
                storage: flow.storage.clone(),
                run_config: flow.run_config.clone(),
                layer: diff_id(layer),
            }),
            FileFact::FlowSource { bytes, sha256 } => flow_sources.push(FlowSource {
                path: format!("/{path}"),
                bytes: *bytes,
                sha256: sha256.clone(),
                layer: diff_id(layer),
            }),
            _ => {}
        }
    }
    dpkg.sort();
    dpkg.dedup();
    apk.sort();
    apk.dedup();
    let system_packages = if !dpkg.is_empty() || files.contains_key("var/lib/dpkg/status") {
        Some(SystemPackages {
            manager: "dpkg".into(),
            packages: dpkg,
        })
    } else if files.contains_key("lib/apk/db/installed") {
        Some(SystemPackages {
            manager: "apk".into(),
            packages: apk,
        })
    } else {
        None
    };

    // The full version of an interpreter: the official images' PYTHON_VERSION, or what
    // a flow pickled by that interpreter recorded.
    let mut full_versions: Vec<String> = env.get("PYTHON_VERSION").into_iter().cloned().collect();
    full_versions.extend(
        flows
            .iter()
            .filter_map(|f| f.versions.get("python").cloned()),
    );
    let interpreters: Vec<Interpreter> = interpreters
        .into_iter()
        .map(|(minor, evidence)| Interpreter {
            version: full_versions
                .iter()
                .find(|v| v.starts_with(&format!("{minor}.")))
                .cloned(),
            minor,
            evidence: evidence.into_iter().collect(),
        })
        .collect();
    let only_python = (interpreters.len() == 1).then(|| interpreters[0].minor.clone());

    let mut distributions: Vec<Distribution> = metadata_dirs
        .into_iter()
        .map(|(path, layer, meta)| {
            let single_file_egg = path.ends_with(".egg-info");
            let (dir, kind) = if single_file_egg {
                (path, "egg-info")
            } else {
                let dir = path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                (
                    dir,
                    if dir.ends_with(".egg-info") {
                        "egg-info"
                    } else {
                        "dist-info"
                    },
                )
            };
            let location = dir
                .rsplit_once('/')
                .map(|(l, _)| l)
                .unwrap_or("")
                .to_string();
            let sibling = |name: &str| files.get(format!("{dir}/{name}").as_str()).map(|x| x.1);
            let top_level = match sibling("top_level.txt") {
                Some(FileFact::TopLevel { names }) => Some(names.clone()),
                _ => None,
            };
            let record = match sibling("RECORD") {
                Some(FileFact::Record { summary }) => Some(summary),
                _ => None,
            };
            let mut requires_dist = meta.requires_dist.clone();
            if let Some(FileFact::EggRequires { requires }) = sibling("requires.txt")
                && requires_dist.is_empty()
            {
                requires_dist = requires.clone();
            }
            let import_names = top_level
                .filter(|t| !t.is_empty())
                .or_else(|| {
                    record
                        .map(|r| r.import_names.clone())
                        .filter(|n| !n.is_empty())
                })
                .unwrap_or_else(|| vec![crate::dist_name::normalize(&meta.name).replace('-', "_")]);
            Distribution {
                name: crate::dist_name::normalize(&meta.name),
                display_name: meta.name.clone(),
                version: meta.version.clone(),
                python: python::site_python(&location).or_else(|| only_python.clone()),
                location: format!("/{location}"),
                metadata_kind: kind.into(),
                requires_dist,
                requires_python: meta.requires_python.clone(),
                import_names,
                installed_bytes: record.and_then(|r| r.bytes),
                layer: diff_id(layer),
            }
        })
        .collect();
    distributions.sort_by(|a, b| {
        (&a.name, &a.location, &a.version).cmp(&(&b.name, &b.location, &b.version))
    });
    // Two metadata directories of one distribution in one site directory (an upgrade that
    // died half way): Python imports whichever it finds first, so neither can be trusted.
    // Both are named in a problem and neither is kept.
    let mut twins: BTreeSet<(String, String)> = BTreeSet::new();
    for w in distributions.windows(2) {
        if w[0].name == w[1].name && w[0].location == w[1].location {
            twins.insert((w[0].name.clone(), w[0].location.clone()));
        }
    }
    for (name, location) in &twins {
        let found: Vec<&Distribution> = distributions
            .iter()
            .filter(|d| &d.name == name && &d.location == location)
            .collect();
        problems.insert(Problem {
            layer: found.last().map(|d| d.layer.clone()),
            path: Some(location.clone()),
            message: format!(
                "{} metadata directories of {name} side by side ({}): which one Python uses is not knowable, so neither is kept",
                found.len(),
                found
                    .iter()
                    .map(|d| format!("{} {}", d.display_name, d.version))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    distributions.retain(|d| !twins.contains(&(d.name.clone(), d.location.clone())));

    let mut prefect_versions: Vec<String> = distributions
        .iter()
        .filter(|d| d.name == "prefect")
        .map(|d| d.version.clone())
        .collect();
    prefect_versions.sort();
    prefect_versions.dedup();

    let contents = Contents {
        os,
        system_packages,
        python: Python {
            interpreters,
            distributions,
        },
        prefect: Prefect {
            versions: prefect_versions,
            flows,
            flow_sources,
        },
        executables,
    };
    (contents, problems.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(
        id: &str,
        files: Vec<(&str, FileFact)>,
        whiteouts: &[&str],
        opaque: &[&str],
    ) -> LayerFacts {
        LayerFacts {
            diff_id: id.into(),
            diff_id_verified: true,
            uncompressed_bytes: 0,
            entries: 0,
            files: files.into_iter().map(|(p, f)| (p.to_string(), f)).collect(),
            whiteouts: whiteouts.iter().map(|s| s.to_string()).collect(),
            opaque_dirs: opaque.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn meta(name: &str, version: &str) -> FileFact {
        FileFact::DistMetadata {
            meta: python::DistMetadata {
                name: name.into(),
                version: version.into(),
                requires_dist: vec![],
                requires_python: None,
            },
        }
    }

    #[test]
    fn whiteouts_and_opaque_dirs_hide_lower_layers() {
        let sp = "usr/local/lib/python3.11/site-packages";
        let l1 = layer(
            "l1",
            vec![
                (&format!("{sp}/a-1.0.dist-info/METADATA"), meta("a", "1.0")),
                (&format!("{sp}/b-1.0.dist-info/METADATA"), meta("b", "1.0")),
                ("opt/x/c-1.0.dist-info/METADATA", meta("c", "1.0")),
            ],
            &[],
            &[],
        );
        let l2 = layer(
            "l2",
            vec![(&format!("{sp}/a-2.0.dist-info/METADATA"), meta("a", "2.0"))],
            &[&format!("{sp}/a-1.0.dist-info")],
            &["opt/x"],
        );
        let (c, p) = squash(&[&l1, &l2], &BTreeMap::new());
        assert!(p.is_empty());
        let got: Vec<(String, String, String)> = c
            .python
            .distributions
            .iter()
            .map(|d| (d.name.clone(), d.version.clone(), d.layer.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a".into(), "2.0".into(), "l2".into()),
                ("b".into(), "1.0".into(), "l1".into())
            ]
        );
        assert_eq!(c.python.distributions[0].python.as_deref(), Some("3.11"));
    }

    #[test]
    fn symlinked_os_release_resolves_across_layers() {
        let mut fields = BTreeMap::new();
        fields.insert("ID".to_string(), "debian".to_string());
        let l1 = layer(
            "l1",
            vec![("usr/lib/os-release", FileFact::OsRelease { fields })],
            &[],
            &[],
        );
        let l2 = layer(
            "l2",
            vec![(
                "etc/os-release",
                FileFact::Symlink {
                    target: "../usr/lib/os-release".into(),
                },
            )],
            &[],
            &[],
        );
        let (c, p) = squash(&[&l1, &l2], &BTreeMap::new());
        assert!(p.is_empty());
        let os = c.os.unwrap();
        assert_eq!(os.id.as_deref(), Some("debian"));
        assert_eq!(os.path, "/usr/lib/os-release");
    }

    #[test]
    fn dangling_links_and_unreadable_files_are_problems() {
        let l1 = layer(
            "l1",
            vec![
                (
                    "etc/os-release",
                    FileFact::Symlink {
                        target: "nowhere".into(),
                    },
                ),
                (
                    "x/y.dist-info/METADATA",
                    FileFact::Unreadable {
                        message: "too big".into(),
                    },
                ),
            ],
            &[],
            &[],
        );
        let (c, p) = squash(&[&l1], &BTreeMap::new());
        assert!(c.os.is_none());
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].path.as_deref(), Some("/x/y.dist-info/METADATA"));
    }
}
