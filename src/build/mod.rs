//! `unsprawl build`: the plan's runtime images, assembled from what the scan saw. Each
//! pinned distribution's installed files are harvested from a scanned image that has
//! exactly that version ([`harvest`]) and written into one new layer on a base
//! ([`assemble`]); the base layers are reused by digest, never rebuilt. No daemon, no
//! package index, no compiler. The result goes into an OCI layout and/or a registry
//! ([`publish`]), and is described by the build document (`unsprawl/build/v1`).

pub mod assemble;
pub mod dpkg;
pub mod harvest;
pub mod publish;
pub mod source;
pub mod wheel;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::inventory::{Image, Inventory};
use crate::plan::document::{Plan, RuntimeImage};
use crate::scan::layer::LayerFacts;
use crate::scan::source::FoundImage;
use assemble::LayerDesc;
use harvest::{Harvested, Wanted};
use source::{Access, Sources, label};

pub const SCHEMA: &str = "unsprawl/build/v1";

/// The label every runtime image carries: its plan content hash.
pub const CONTENT_HASH_LABEL: &str = "io.unsprawl.content-hash";

/// Packaging tools a base may bring: a layer installing only these is still the base.
const PACKAGING: &[&str] = &["pip", "setuptools", "wheel"];

/// Where a runtime image's base comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaseFrom {
    /// The plan's `base_image` (rules `[image.base]`), which must be a scanned image.
    Rules,
    /// The layers the member images already share below their first install.
    Members,
}

pub struct Options {
    pub base_from: BaseFrom,
    pub access: Access,
    /// The plan file's `sha256:` (the `io.unsprawl.plan` label).
    pub plan_digest: String,
    /// Where the wheels of distribution additions come from.
    pub wheels: wheel::WheelSource,
}

/// Why one runtime image cannot be built (the others still are).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{image}: {message}")]
    Base { image: String, message: String },
    #[error(
        "{image}: {name} {version} is in no scanned image (for Python {python}): nothing to harvest it from"
    )]
    NoSource {
        image: String,
        name: String,
        version: String,
        python: String,
    },
    #[error("{image}: {source}")]
    Source {
        image: String,
        #[source]
        source: source::SourceError,
    },
    #[error("{image}: {source}")]
    Harvest {
        image: String,
        #[source]
        source: Box<harvest::HarvestError>,
    },
    #[error("{image}: {message}")]
    Addition { image: String, message: String },
    #[error("{image}: {source}")]
    Wheel {
        image: String,
        #[source]
        source: wheel::WheelError,
    },
    #[error("{image}: {source}")]
    Dpkg {
        image: String,
        #[source]
        source: Box<dpkg::DpkgError>,
    },
    #[error("{image}: cannot write the new layer: {source}")]
    Layer {
        image: String,
        #[source]
        source: std::io::Error,
    },
}

/// A base layer: reused by digest from the image it was found in.
#[derive(Clone)]
pub struct BaseLayer {
    pub desc: LayerDesc,
    pub found: FoundImage,
    /// The key of its blob in `found.store`.
    pub key: String,
}

/// One built runtime image, not yet written anywhere.
pub struct Built {
    pub name: String,
    pub content_hash: String,
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
    pub manifest_digest: String,
    pub base: Vec<BaseLayer>,
    pub new_layer: assemble::NewLayer,
    /// Where each pinned distribution came from.
    pub distributions: Vec<DistSource>,
    /// Where each addition came from (`plan.json` `additions`).
    pub additions: Vec<AdditionSource>,
    pub base_image: String,
}

/// The build document: what was built, from what, and where it went.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BuildDoc {
    pub schema: String,
    pub generator: crate::provenance::Generator,
    pub inputs: Vec<crate::provenance::Input>,
    pub images: Vec<BuiltImage>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BuiltImage {
    pub name: String,
    pub content_hash: String,
    /// `built`, `skipped` (already in the registry with this content hash) or `refused`.
    pub status: String,
    pub manifest_digest: Option<String>,
    /// The image its base layers come from.
    pub base_image: Option<String>,
    pub layers: usize,
    /// Each layer's digest and stored (compressed) size, base first: what the image
    /// costs a registry, and what the report compares today's layers with.
    #[serde(default)]
    pub layer_sizes: Vec<LayerSize>,
    pub distributions: Vec<DistSource>,
    /// What fetches the flows' code, and where each came from.
    #[serde(default)]
    pub additions: Vec<AdditionSource>,
    /// Why it was refused, or what else happened to it.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LayerSize {
    pub digest: String,
    pub stored_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DistSource {
    pub name: String,
    pub version: String,
    /// The scanned image its files were harvested from.
    pub from: String,
}

/// One addition as built.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AdditionSource {
    /// `distribution` or `os-package` (the dependencies it pulled in included).
    pub kind: String,
    pub name: String,
    pub version: String,
    /// The scanned image it was harvested from, the wheel file, or `the base`.
    pub from: String,
}

/// Build one runtime image of the plan.
pub fn build_image<'a>(
    inv: &'a Inventory,
    rt: &RuntimeImage,
    sources: &mut Sources,
    opts: &Options,
) -> Result<Built, BuildError> {
    let by_id: BTreeMap<&str, &Image> = inv.images.iter().map(|i| (i.id.as_str(), i)).collect();
    let flows: BTreeMap<&str, &crate::inventory::Flow> =
        inv.flows.iter().map(|f| (f.key.as_str(), f)).collect();
    let members: Vec<&Image> = {
        let ids: BTreeSet<&str> = rt
            .members
            .iter()
            .filter_map(|k| flows.get(k.as_str()))
            .filter_map(|f| f.link.image_id.as_deref())
            .collect();
        ids.iter().filter_map(|id| by_id.get(id).copied()).collect()
    };
    let base_err = |message: String| BuildError::Base {
        image: rt.name.clone(),
        message,
    };
    // the base: an image and how many of its layers
    let (base_img, base_layers) = match opts.base_from {
        BaseFrom::Rules => {
            let want = crate::reference::canonical(&rt.base_image);
            let img = inv
                .images
                .iter()
                .find(|i| {
                    i.references
                        .iter()
                        .any(|r| crate::reference::canonical(r) == want)
                })
                .ok_or_else(|| {
                    base_err(format!(
                        "its base {} is in no scanned source: scan it (or your mirror of it, named in the rules' [image.base]), or build with --base-from members",
                        rt.base_image
                    ))
                })?;
            (img, img.layers.len())
        }
        BaseFrom::Members => members
            .iter()
            .filter_map(|img| member_base(img, &rt.python).map(|n| (*img, n)))
            .max_by(|a, b| {
                python_patch(a.0, &rt.python)
                    .cmp(&python_patch(b.0, &rt.python))
                    .then(b.0.id.cmp(&a.0.id))
            })
            .ok_or_else(|| {
                base_err(
                    "no member image has base layers below its first install (every layer installs something)"
                        .into(),
                )
            })?,
    };
    let (base_found, base_facts) = opened(sources, base_img, opts, rt)?;
    let base_facts: Vec<LayerFacts> = base_facts.into_iter().take(base_layers).collect();
    let site = target_site(base_img, &base_facts, &rt.python);

    // each pin from one scanned image that has exactly that version (members first)
    let mut by_source: BTreeMap<String, Vec<Wanted>> = BTreeMap::new();
    let mut dist_sources = vec![];
    for pin in &rt.requirements {
        let has = |img: &'a Image| pinned_in(img, &pin.name, &pin.version, &rt.python);
        let chosen = members
            .iter()
            .copied()
            .chain(inv.images.iter())
            .find_map(|img| has(img).map(|d| (img, d)));
        let Some((img, d)) = chosen else {
            return Err(BuildError::NoSource {
                image: rt.name.clone(),
                name: pin.name.clone(),
                version: pin.version.clone(),
                python: rt.python.clone(),
            });
        };
        by_source.entry(img.id.clone()).or_default().push(Wanted {
            name: pin.name.clone(),
            version: pin.version.clone(),
            site: d.location.trim_start_matches('/').to_string(),
        });
        dist_sources.push(DistSource {
            name: pin.name.clone(),
            version: pin.version.clone(),
            from: label(img),
        });
    }
    let mut addition_sources = vec![];
    let mut wheels = vec![];
    let mut os_wanted = vec![];
    for a in &rt.additions {
        if let Some(p) = &a.problem {
            return Err(BuildError::Addition {
                image: rt.name.clone(),
                message: format!("cannot add {} {} for {}: {p}", a.kind, a.name, a.needed_by),
            });
        }
        match (a.kind.as_str(), a.source.as_str(), &a.version) {
            (crate::plan::additions::DISTRIBUTION, "scanned", Some(v)) => {
                let img = inv
                    .images
                    .iter()
                    .find(|i| pinned_in(i, &a.name, v, &rt.python).is_some())
                    .ok_or_else(|| BuildError::NoSource {
                        image: rt.name.clone(),
                        name: a.name.clone(),
                        version: v.clone(),
                        python: rt.python.clone(),
                    })?;
                let d = pinned_in(img, &a.name, v, &rt.python).expect("found above");
                by_source.entry(img.id.clone()).or_default().push(Wanted {
                    name: a.name.clone(),
                    version: v.clone(),
                    site: d.location.trim_start_matches('/').to_string(),
                });
                addition_sources.push(AdditionSource {
                    kind: a.kind.clone(),
                    name: a.name.clone(),
                    version: v.clone(),
                    from: label(img),
                });
            }
            (crate::plan::additions::DISTRIBUTION, _, _) => {
                let w = a.wheel.as_ref().ok_or_else(|| BuildError::Addition {
                    image: rt.name.clone(),
                    message: format!("the plan names no wheel for {}", a.name),
                })?;
                wheels.push(w.clone());
            }
            (crate::plan::additions::OS_PACKAGE, _, _) => os_wanted.push(a.name.clone()),
            _ => {}
        }
    }
    let mut harvested: Vec<Harvested> = vec![];
    for w in &wheels {
        let wheel_err = |source| BuildError::Wheel {
            image: rt.name.clone(),
            source,
        };
        let bytes = wheel::fetch(w, &opts.wheels).map_err(wheel_err)?;
        let interpreter = if site.starts_with("usr/local/") {
            "/usr/local/bin/python"
        } else {
            "/usr/bin/python3"
        };
        let h = wheel::install(w, &bytes, interpreter).map_err(wheel_err)?;
        addition_sources.push(AdditionSource {
            kind: crate::plan::additions::DISTRIBUTION.into(),
            name: h.name.clone(),
            version: h.version.clone(),
            from: w.file.clone(),
        });
        harvested.push(h);
    }
    let mut os_files = os_additions(
        inv,
        rt,
        &os_wanted,
        &members,
        (base_img, &base_found, &base_facts),
        sources,
        opts,
        &mut addition_sources,
    )?;
    let copied = storage_files(inv, rt, sources, opts, &mut addition_sources)?;
    os_files.extend(copied);
    for (id, wanted) in &by_source {
        let img = by_id[id.as_str()];
        let (found, facts) = opened(sources, img, opts, rt)?;
        let got = harvest::harvest(&label(img), &found, &facts, wanted).map_err(|source| {
            BuildError::Harvest {
                image: rt.name.clone(),
                source: Box::new(source),
            }
        })?;
        harvested.extend(got);
    }
    harvested.sort_by(|a, b| a.name.cmp(&b.name));

    // another version of a pinned distribution in the base is whited out, files and all
    // (distribution additions too: a base's own other dulwich must not stay beside ours)
    let pinned: BTreeMap<&str, &str> = rt
        .requirements
        .iter()
        .map(|p| (p.name.as_str(), p.version.as_str()))
        .chain(rt.additions.iter().filter_map(|a| {
            (a.kind == crate::plan::additions::DISTRIBUTION)
                .then_some(())
                .and(a.version.as_deref())
                .map(|v| (a.name.as_str(), v))
        }))
        .collect();
    let mut hide = BTreeSet::new();
    for (name, version, dir, rows) in harvest::installed(&base_facts, &site) {
        if pinned.get(name.as_str()).is_some_and(|v| *v != version) {
            hide.insert(format!("{site}/{dir}"));
            for r in rows {
                if let Some(p) = harvest::join(&site, &r)
                    && !p.starts_with(&format!("{site}/{dir}/"))
                {
                    hide.insert(p);
                }
            }
        }
    }
    let new_layer = assemble::layer(&site, &harvested, &os_files, &hide).map_err(|source| {
        BuildError::Layer {
            image: rt.name.clone(),
            source,
        }
    })?;

    let base: Vec<BaseLayer> = base_found
        .layers
        .iter()
        .zip(&base_img.layers)
        .take(base_layers)
        // the blob as this copy stores it (a `docker save` holds plain tars, whose digest
        // is their diff_id), not as another copy of the image does
        .map(|(l, layer)| BaseLayer {
            desc: LayerDesc {
                media_type: assemble::oci_layer_type(&l.media_type),
                digest: l.digest.clone().unwrap_or_else(|| layer.diff_id.clone()),
                size: l
                    .size
                    .or_else(|| base_found.store.size(&l.key).ok())
                    .unwrap_or(layer.stored_bytes),
                diff_id: layer.diff_id.clone(),
            },
            found: base_found.clone(),
            key: l.key.clone(),
        })
        .collect();
    let env = base_env(base_img, &rt.python);
    let mut labels = BTreeMap::new();
    labels.insert(CONTENT_HASH_LABEL.to_string(), rt.content_hash.clone());
    labels.insert("io.unsprawl.plan".to_string(), opts.plan_digest.clone());
    labels.insert("io.unsprawl.members".to_string(), rt.members.join(","));
    labels.insert("io.unsprawl.base".to_string(), label(base_img));
    let mut history: Vec<String> = base_img
        .layers
        .iter()
        .take(base_layers)
        .map(|l| l.created_by.clone().unwrap_or_default())
        .collect();
    history.push(format!(
        "unsprawl build: {} distributions harvested from {} scanned image(s)",
        harvested.len(),
        by_source.len()
    ));
    let mut diff_ids: Vec<String> = base.iter().map(|b| b.desc.diff_id.clone()).collect();
    diff_ids.push(new_layer.desc.diff_id.clone());
    let config = assemble::config(&assemble::ConfigInput {
        os: &base_img.platform.os,
        architecture: &base_img.platform.architecture,
        env,
        labels,
        history,
        diff_ids,
    });
    let mut layers: Vec<LayerDesc> = base.iter().map(|b| b.desc.clone()).collect();
    layers.push(new_layer.desc.clone());
    let mut annotations = BTreeMap::new();
    annotations.insert(
        "org.opencontainers.image.created".to_string(),
        assemble::EPOCH.to_string(),
    );
    annotations.insert(
        "org.opencontainers.image.title".to_string(),
        rt.name.clone(),
    );
    annotations.insert(
        "org.opencontainers.image.description".to_string(),
        format!(
            "Prefect runtime image for {} flow(s): Python {}, {} pinned distributions",
            rt.members.len(),
            rt.python,
            rt.requirements.len()
        ),
    );
    annotations.insert(
        "org.opencontainers.image.base.name".to_string(),
        label(base_img),
    );
    annotations.insert(CONTENT_HASH_LABEL.to_string(), rt.content_hash.clone());
    let manifest = assemble::manifest(&config, &layers, &annotations);
    Ok(Built {
        name: rt.name.clone(),
        content_hash: rt.content_hash.clone(),
        manifest_digest: crate::scan::source::sha256_digest(&manifest),
        config,
        manifest,
        base,
        new_layer,
        distributions: dist_sources,
        additions: addition_sources,
        base_image: label(base_img),
    })
}

/// The OS packages `wanted` (what fetches code) as files for the new layer: nothing when
/// the base has them, else harvested (their dependency closure too) from a scanned image
/// of the base's OS release (members first) that has them installed; then every dpkg
/// package a member's image has and the image still lacks, from that member (parity).
#[allow(clippy::too_many_arguments)]
fn os_additions(
    inv: &Inventory,
    rt: &RuntimeImage,
    wanted: &[String],
    members: &[&Image],
    (base_img, base_found, base_facts): (&Image, &FoundImage, &[LayerFacts]),
    sources: &mut Sources,
    opts: &Options,
    record: &mut Vec<AdditionSource>,
) -> Result<BTreeMap<String, harvest::Content>, BuildError> {
    let dpkg_err = |source| BuildError::Dpkg {
        image: rt.name.clone(),
        source: Box::new(source),
    };
    // what a base has counts from any package manager (an Alpine base with git is fine);
    // what is harvested comes from dpkg's records only
    let packages = |img: &Image, dpkg_only: bool| -> BTreeMap<String, String> {
        img.contents
            .as_ref()
            .and_then(|c| c.system_packages.as_ref())
            .filter(|p| !dpkg_only || p.manager == "dpkg")
            .map(|p| {
                p.packages
                    .iter()
                    .map(|x| (x.name.clone(), x.version.clone()))
                    .collect()
            })
            .unwrap_or_default()
    };
    // the base is the layers it is built on, which with --base-from members is less than
    // the whole member image: read its package database from those layers' facts
    let in_base: BTreeMap<String, String> = {
        let refs: Vec<&LayerFacts> = base_facts.iter().collect();
        let view = crate::scan::squash::build_view(&refs);
        ["var/lib/dpkg/status", "lib/apk/db/installed"]
            .iter()
            .filter_map(|p| view.get(p))
            .flat_map(|(_, fact)| match fact {
                crate::scan::layer::FileFact::DpkgStatus { packages }
                | crate::scan::layer::FileFact::ApkInstalled { packages } => packages.clone(),
                _ => vec![],
            })
            .map(|p| (p.name, p.version))
            .collect()
    };
    let missing: Vec<String> = wanted
        .iter()
        .filter(|w| !in_base.contains_key(*w))
        .cloned()
        .collect();
    for w in wanted.iter().filter(|w| in_base.contains_key(*w)) {
        record.push(AdditionSource {
            kind: crate::plan::additions::OS_PACKAGE.into(),
            name: w.clone(),
            version: in_base[w].clone(),
            from: "the base".into(),
        });
    }
    let os = |img: &Image| {
        img.contents
            .as_ref()
            .and_then(|c| c.os.as_ref())
            .map(|o| (o.id.clone(), o.version_id.clone()))
    };
    let pretty = |img: &Image| {
        img.contents
            .as_ref()
            .and_then(|c| c.os.as_ref())
            .and_then(|o| o.pretty_name.clone())
            .unwrap_or_else(|| "an unknown OS release".into())
    };
    let base_os = os(base_img);
    // the dpkg database the next harvest builds on: the base's, then with each addition
    let mut status: Option<String> = None;
    let read_base_status = |wanted: &[String]| -> Result<String, BuildError> {
        dpkg::read_status(&label(base_img), base_found, base_facts)
            .map_err(dpkg_err)?
            .ok_or_else(|| {
                dpkg_err(dpkg::DpkgError::NoDatabase {
                    image: label(base_img),
                    wanted: wanted.join(", "),
                })
            })
    };
    let mut files: BTreeMap<String, harvest::Content> = BTreeMap::new();
    let mut have: BTreeSet<String> = in_base.keys().cloned().collect();
    let mut take = |source: &Image,
                    wanted: &[String],
                    status: &mut Option<String>,
                    have: &mut BTreeSet<String>,
                    sources: &mut Sources|
     -> Result<(), BuildError> {
        let current = match status.take() {
            Some(s) => s,
            None => read_base_status(wanted)?,
        };
        let (found, facts) = opened(sources, source, opts, rt)?;
        let added =
            dpkg::harvest(wanted, &current, &label(source), &found, &facts).map_err(dpkg_err)?;
        for (name, version) in &added.packages {
            have.insert(name.clone());
            record.push(AdditionSource {
                kind: crate::plan::additions::OS_PACKAGE.into(),
                name: name.clone(),
                version: version.clone(),
                from: label(source),
            });
        }
        *status = match added.files.get(dpkg::STATUS) {
            Some(harvest::Content::File { data, .. }) => {
                Some(String::from_utf8_lossy(data).into_owned())
            }
            _ => Some(current),
        };
        files.extend(added.files);
        Ok(())
    };
    if !missing.is_empty() {
        let source = members
            .iter()
            .copied()
            .chain(inv.images.iter())
            .find(|img| {
                base_os.is_some()
                    && os(img) == base_os
                    && img.platform.architecture == base_img.platform.architecture
                    && {
                        let have = packages(img, true);
                        missing.iter().all(|m| have.contains_key(m))
                    }
            })
            .ok_or_else(|| BuildError::Addition {
                image: rt.name.clone(),
                message: format!(
                    "its base {} lacks {} and no scanned image of {} ({}) has {} installed: use a base that has them ([image.base] in the rules), or scan an image of that release that has them",
                    label(base_img),
                    missing.join(", "),
                    pretty(base_img),
                    base_img.platform.architecture,
                    if missing.len() == 1 { "it" } else { "them" }
                ),
            })?;
        take(source, &missing, &mut status, &mut have, sources)?;
    }
    // an image holds one version of a package: members that installed one at other
    // versions cannot share it (the first member's would be chosen silently)
    let mut seen_at: BTreeMap<String, (String, String)> = BTreeMap::new();
    for m in members {
        for (name, version) in packages(m, true) {
            if have.contains(&name) {
                continue;
            }
            match seen_at.get(&name) {
                Some((v, from)) if *v != version => {
                    return Err(BuildError::Addition {
                        image: rt.name.clone(),
                        message: format!(
                            "member images {from} and {} have {name} at {v} and {version}, and one image holds one version of it: plan their flows apart with a [[separate]] rule, or rebuild one on the other's version",
                            label(m)
                        ),
                    });
                }
                Some(_) => {}
                None => {
                    seen_at.insert(name, (version, label(m)));
                }
            }
        }
    }
    // parity: every dpkg package a member's own image has, carried from that image (the
    // packages its flows' extra commands installed, a library a distribution links to)
    for m in members {
        let lack: Vec<String> = packages(m, true)
            .into_keys()
            .filter(|n| !have.contains(n))
            .collect();
        if lack.is_empty() {
            continue;
        }
        if base_os.is_none() || os(m) != base_os {
            return Err(BuildError::Addition {
                image: rt.name.clone(),
                message: format!(
                    "member image {} ({}) has {} that its base {} ({}) lacks, and packages of another OS release are not carried over: use a base of its release ([image.base], or --base-from members)",
                    label(m),
                    pretty(m),
                    lack.join(", "),
                    label(base_img),
                    pretty(base_img)
                ),
            });
        }
        take(m, &lack, &mut status, &mut have, sources)?;
    }
    Ok(files)
}

/// The files Docker storage's `files=` copied into each member's image (its
/// `requirement.parity.files`), taken from that image as its final filesystem shows them.
/// Two members with different bytes at one path refuse the image.
fn storage_files(
    inv: &Inventory,
    rt: &RuntimeImage,
    sources: &mut Sources,
    opts: &Options,
    record: &mut Vec<AdditionSource>,
) -> Result<BTreeMap<String, harvest::Content>, BuildError> {
    let mut out: BTreeMap<String, (harvest::Content, String)> = BTreeMap::new();
    for flow in inv
        .flows
        .iter()
        .filter(|f| rt.members.binary_search(&f.key).is_ok())
    {
        let roots = harvest::copied_in(flow);
        if roots.is_empty() {
            continue;
        }
        let Some(img) = flow
            .link
            .image_id
            .as_deref()
            .and_then(|id| inv.images.iter().find(|i| i.id == id))
        else {
            continue;
        };
        let (found, facts) = opened(sources, img, opts, rt)?;
        let got = harvest::stream(&label(img), &found, &facts, &harvest::under(&roots)).map_err(
            |source| BuildError::Harvest {
                image: rt.name.clone(),
                source: Box::new(source),
            },
        )?;
        for r in &roots {
            if !got
                .keys()
                .any(|p| p == r || p.starts_with(&format!("{r}/")))
            {
                return Err(BuildError::Addition {
                    image: rt.name.clone(),
                    message: format!(
                        "{} copied /{r} in with Docker storage's files=, but {} has nothing there",
                        flow.title(),
                        label(img)
                    ),
                });
            }
        }
        for (path, content) in got {
            if let Some((before, from)) = out.get(&path) {
                if *before != content {
                    return Err(BuildError::Addition {
                        image: rt.name.clone(),
                        message: format!(
                            "/{path} differs between {from} and {}: its flows cannot share one image (plan them apart with a [[separate]] rule)",
                            label(img)
                        ),
                    });
                }
                continue;
            }
            out.insert(path, (content, label(img)));
        }
    }
    let mut files = BTreeMap::new();
    for (path, (content, from)) in out {
        record.push(AdditionSource {
            kind: "file".into(),
            name: format!("/{path}"),
            version: content.digest(),
            from,
        });
        files.insert(path, content);
    }
    Ok(files)
}

/// A scanned image's blobs and the facts of its layers (each opened once per build:
/// [`Sources`] keeps them), an error naming the runtime image being built.
fn opened(
    sources: &mut Sources,
    img: &Image,
    opts: &Options,
    rt: &RuntimeImage,
) -> Result<(FoundImage, Vec<LayerFacts>), BuildError> {
    let err = |source| BuildError::Source {
        image: rt.name.clone(),
        source,
    };
    let found = sources.open(img, &opts.access).map_err(err)?;
    let facts = sources.facts(img, &found, &opts.access).map_err(err)?;
    Ok((found, facts))
}

/// The dist-info distribution `name` at exactly `version` in `img`, for Python `python`.
fn pinned_in<'a>(
    img: &'a Image,
    name: &str,
    version: &str,
    python: &str,
) -> Option<&'a crate::inventory::Distribution> {
    img.contents
        .as_ref()?
        .python
        .distributions
        .iter()
        .find(|d| {
            d.name == name
                && d.version == version
                && d.python.as_deref().is_none_or(|p| p == python)
        })
}

/// How many of `img`'s layers come before the first that installs anything but the
/// packaging tools (for Python `python`): the base its flow image was built on.
fn member_base(img: &Image, python: &str) -> Option<usize> {
    let c = img.contents.as_ref()?;
    let first = img.layers.iter().position(|l| {
        c.python.distributions.iter().any(|d| {
            d.layer == l.diff_id
                && !PACKAGING.contains(&d.name.as_str())
                && d.python.as_deref().is_none_or(|p| p == python)
        })
    })?;
    (first > 0).then_some(first)
}

/// The interpreter's patch version (`3.11.7` → 7), to pick the newest base.
fn python_patch(img: &Image, python: &str) -> u32 {
    img.contents
        .as_ref()
        .and_then(|c| c.python.interpreters.iter().find(|i| i.minor == python))
        .and_then(|i| i.version.as_deref())
        .and_then(|v| v.rsplit('.').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
}

/// The runtime image's site-packages: where the base's own distributions live, else
/// where its interpreter's standard library is.
fn target_site(base: &Image, base_facts: &[LayerFacts], python: &str) -> String {
    let diff_ids: BTreeSet<&str> = base_facts.iter().map(|f| f.diff_id.as_str()).collect();
    if let Some(c) = &base.contents
        && let Some(d) =
            c.python.distributions.iter().find(|d| {
                diff_ids.contains(d.layer.as_str()) && d.python.as_deref() == Some(python)
            })
    {
        return d.location.trim_start_matches('/').to_string();
    }
    format!("usr/local/lib/python{python}/site-packages")
}

/// What a Python base needs from its config: `PATH`, `LANG`, `PYTHON_VERSION`.
fn base_env(base: &Image, python: &str) -> Vec<String> {
    let mut env = BTreeMap::new();
    for k in ["PATH", "LANG", "PYTHON_VERSION"] {
        if let Some(v) = base.config.env.get(k) {
            env.insert(k.to_string(), v.clone());
        }
    }
    env.entry("PATH".to_string())
        .or_insert_with(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    if !env.contains_key("PYTHON_VERSION")
        && let Some(v) = base
            .contents
            .as_ref()
            .and_then(|c| c.python.interpreters.iter().find(|i| i.minor == python))
            .and_then(|i| i.version.clone())
    {
        env.insert("PYTHON_VERSION".into(), v);
    }
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// The build document's entry for a built image.
pub fn entry(b: &Built, status: &str, notes: Vec<String>) -> BuiltImage {
    BuiltImage {
        name: b.name.clone(),
        content_hash: b.content_hash.clone(),
        status: status.into(),
        manifest_digest: Some(b.manifest_digest.clone()),
        base_image: Some(b.base_image.clone()),
        layers: b.base.len() + 1,
        layer_sizes: b
            .base
            .iter()
            .map(|l| &l.desc)
            .chain([&b.new_layer.desc])
            .map(|d| LayerSize {
                digest: d.digest.clone(),
                stored_bytes: d.size,
            })
            .collect(),
        distributions: b.distributions.clone(),
        additions: b.additions.clone(),
        notes,
    }
}

/// The build document's entry for an image that could not be built.
pub fn refused(rt: &RuntimeImage, why: &BuildError) -> BuiltImage {
    BuiltImage {
        name: rt.name.clone(),
        content_hash: rt.content_hash.clone(),
        status: "refused".into(),
        manifest_digest: None,
        base_image: None,
        layers: 0,
        layer_sizes: vec![],
        distributions: vec![],
        additions: vec![],
        notes: vec![why.to_string()],
    }
}

/// The plan's registry is a placeholder: nothing can be pushed there.
pub fn placeholder_registry(plan: &Plan) -> bool {
    plan.runtime_images
        .iter()
        .any(|i| i.name.starts_with(crate::rules::PLACEHOLDER_REGISTRY))
}
