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
            let mut by_host: BTreeMap<&str, RegistryInput> = BTreeMap::new();
            for img in &plan.runtime_images {
                let Some((host, rest)) = img.name.split_once('/') else {
                    continue;
                };
                let r = by_host.entry(host).or_insert_with(|| {
                    let mut r = RegistryInput::new(host);
                    r.plain_http = *plain_http;
                    r.credentials = credentials.clone();
                    r
                });
                r.references.push(rest.to_string());
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
    plan.runtime_images
        .iter()
        .map(|rt| (rt.name.clone(), verdict(rt, &inv, &hint)))
        .collect()
}

fn verdict(rt: &RuntimeImage, seen: &Inventory, hint: &str) -> Result<Seen, String> {
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
    compare(rt, img)
}

/// The image as scanned against the plan's runtime image.
pub fn compare(rt: &RuntimeImage, img: &Image) -> Result<Seen, String> {
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
    })
}
