//! `unsprawl build plan.json [--push] [-o DIR]`: the plan's runtime images, harvested
//! from the scanned images, into an OCI layout and/or the registry the plan names.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};

use crate::build::publish::{Pushed, Pusher};
use crate::build::source::{Access, Sources};
use crate::build::{self, BaseFrom, BuildDoc, Options};
use crate::inventory::Inventory;
use crate::plan::Plan;

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub(super) enum BaseArg {
    /// The plan's base image (rules `[image.base]`), which must have been scanned.
    Rules,
    /// The layers the member images share below their first install.
    Members,
}

#[derive(Args)]
pub(super) struct BuildArgs {
    /// The plan (`unsprawl plan`): its runtime images and their pins.
    plan: PathBuf,
    /// Where the plan's inventory is now [default: as the plan records it].
    #[arg(long)]
    inventory: Option<PathBuf>,
    /// Push every image to the registry its name says.
    #[arg(long)]
    push: bool,
    /// Write the images into this OCI layout (and `build.json` beside them).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Where each image's base comes from.
    #[arg(long, value_enum, default_value = "rules")]
    base_from: BaseArg,
    /// Talk plain HTTP to registries (loopback and test registries).
    #[arg(long)]
    plain_http: bool,
    /// Accept a registry's self-signed TLS certificate.
    #[arg(long)]
    insecure: bool,
    /// Registry user (with --password-stdin); otherwise the Docker config's.
    #[arg(long, requires = "password_stdin")]
    username: Option<String>,
    /// Read the registry password from standard input (never from the command line).
    #[arg(long, requires = "username")]
    password_stdin: bool,
    /// Layer cache directory (default: the user's cache dir + /unsprawl).
    #[arg(long, env = "UNSPRAWL_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// The package index (PEP 503) the wheels of additions no scanned image has come
    /// from (dulwich for Prefect 1 Git storage); a mirror's URL for an air-gapped site.
    #[arg(long, default_value = build::wheel::DEFAULT_INDEX, conflicts_with = "no_index")]
    index_url: String,
    /// Look for those wheels in this directory first (by file name).
    #[arg(long, value_name = "DIR")]
    wheels: Option<PathBuf>,
    /// Use no package index: wheels only from --wheels.
    #[arg(long)]
    no_index: bool,
}

pub(super) fn run(a: &BuildArgs) -> Result<ExitCode> {
    if !a.push && a.output.is_none() {
        bail!(
            "say where the images go: --push (to the registry the plan names) and/or -o DIR (an OCI layout)"
        );
    }
    let plan: Plan = super::report::read(&a.plan, crate::plan::document::SCHEMA)?;
    if a.push && build::placeholder_registry(&plan) {
        bail!(
            "{} names runtime images in the placeholder registry {}: nothing can be pushed there. \
             Set your registry in a rules file (`[image] registry = \"registry.company.com/prefect\"`) \
             or with `unsprawl plan --image-registry HOST/PATH`, and plan again",
            a.plan.display(),
            crate::rules::PLACEHOLDER_REGISTRY
        );
    }
    for img in &plan.runtime_images {
        if a.push {
            crate::build::publish::reference(&img.name)?;
        }
    }
    let inv_path = super::migrate::plan_inventory(&plan, &a.plan, a.inventory.as_deref())?;
    let inv = Inventory::read(&inv_path)?;
    let credentials = if a.password_stdin {
        let mut s = String::new();
        std::io::stdin()
            .read_line(&mut s)
            .context("cannot read the password from standard input")?;
        Some(crate::scan::source::registry::auth::Credentials::new(
            a.username.clone().unwrap_or_default(),
            s.trim_end_matches(['\n', '\r']).to_string(),
        ))
    } else {
        None
    };
    let cache_root = a
        .cache_dir
        .clone()
        .unwrap_or_else(crate::scan::cache::LayerCache::default_root);
    let access = Access {
        plain_http: a.plain_http,
        insecure: a.insecure,
        credentials: credentials.clone(),
        temp_dir: crate::scan::scratch::dir(Some(&cache_root)),
        cache_root: Some(cache_root),
    };
    let opts = Options {
        base_from: match a.base_from {
            BaseArg::Rules => BaseFrom::Rules,
            BaseArg::Members => BaseFrom::Members,
        },
        access,
        plan_digest: crate::provenance::file_sha256(&a.plan)?,
        wheels: build::wheel::WheelSource {
            dir: a.wheels.clone(),
            index_url: (!a.no_index).then(|| a.index_url.clone()),
        },
    };
    // each source is opened once for every image that needs it
    let mut sources = Sources::default();
    let mut results = vec![];
    for rt in &plan.runtime_images {
        results.push(build::build_image(&inv, rt, &mut sources, &opts));
    }
    let pusher = if a.push {
        Some(Pusher::new(a.plain_http, credentials).map_err(anyhow::Error::msg)?)
    } else {
        None
    };
    let mut doc = BuildDoc {
        schema: build::SCHEMA.into(),
        generator: crate::provenance::Generator::this(),
        inputs: Vec::new(),
        images: vec![],
    };
    let mut refused = 0;
    let built: Vec<&build::Built> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    if let Some(dir) = &a.output {
        crate::build::publish::write_layout(dir, &built)?;
    }
    // one image after another: the tag of each is pushed only after its blobs
    let pushed: Vec<Result<Pushed, String>> = match &pusher {
        Some(p) => built
            .iter()
            .map(|b| p.push(b).map_err(|e| e.to_string()))
            .collect(),
        None => vec![],
    };
    let mut pushed = pushed.into_iter();
    for (rt, r) in plan.runtime_images.iter().zip(&results) {
        match r {
            Ok(b) => {
                let mut notes = vec![];
                let mut status = "built";
                if let Some(dir) = &a.output {
                    notes.push(format!("written to the OCI layout {}", dir.display()));
                }
                if pusher.is_some() {
                    match pushed.next().expect("one push per built image") {
                        Ok(Pushed::Pushed { uploaded, mounted }) => notes.push(format!(
                            "pushed: {} uploaded, {mounted} mounted from the repository they were scanned in",
                            super::say::count(uploaded, "blob", "blobs")
                        )),
                        Ok(Pushed::AlreadyThere { same_digest }) => {
                            status = "skipped";
                            notes.push(if same_digest {
                                "already in the registry, the same manifest: nothing pushed".into()
                            } else {
                                "already in the registry with this content hash (built elsewhere): nothing pushed".into()
                            });
                        }
                        Err(e) => {
                            status = "refused";
                            refused += 1;
                            notes.push(format!("push failed: {e}"));
                        }
                    }
                }
                doc.images.push(build::entry(b, status, notes));
            }
            Err(e) => {
                refused += 1;
                doc.images.push(build::refused(rt, e));
            }
        }
    }
    if let Some(dir) = &a.output {
        doc.inputs = vec![
            crate::provenance::record("plan", &a.plan, dir)?,
            crate::provenance::record("inventory", &inv_path, dir)?,
        ];
        super::write_json(&dir.join("build.json"), &doc)?;
    }
    print_summary(&doc, a.output.as_deref());
    Ok(if refused > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_summary(doc: &BuildDoc, out: Option<&Path>) {
    use std::io::Write;
    let mut e = super::say::summary();
    let count = |s: &str| doc.images.iter().filter(|i| i.status == s).count();
    let _ = writeln!(
        e,
        "build: {}: {} built, {} already in the registry, {} refused{}",
        super::say::count(doc.images.len(), "runtime image", "runtime images"),
        count("built"),
        count("skipped"),
        count("refused"),
        out.map(|d| format!(" → {}", d.display()))
            .unwrap_or_default()
    );
    for i in &doc.images {
        let _ = writeln!(
            e,
            "  {:<8} {}  {}",
            i.status,
            i.name,
            i.manifest_digest.as_deref().unwrap_or("")
        );
        for n in &i.notes {
            let _ = writeln!(e, "           {n}");
        }
    }
}
