//! What the benchmarks share: the median of repeated runs (these machines are noisy, so
//! every figure is a median, and every result a ratio against a baseline of the same run).
#![allow(dead_code)]

use std::time::{Duration, Instant};

pub fn median(mut d: Vec<Duration>) -> Duration {
    d.sort();
    d[d.len() / 2]
}

/// Run `f` `rounds` times: the median time and the last result.
pub fn time<T>(rounds: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut times = vec![];
    let mut last = None;
    for _ in 0..rounds {
        let t = Instant::now();
        let out = f();
        times.push(t.elapsed());
        last = Some(out);
    }
    (median(times), last.expect("rounds > 0"))
}

/// Build a corpus into `dir` unless the last build there was of the same specs (the
/// fixture builder's source and the spec files' text are the key).
pub fn build_once(
    dir: &std::path::Path,
    spec_dirs: &[&str],
    build: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut key = include_str!("../../src/fixture/build.rs").to_string();
    for d in spec_dirs {
        let mut files: Vec<_> = std::fs::read_dir(root.join(d))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        files.sort();
        for f in files {
            key.push_str(&std::fs::read_to_string(f)?);
        }
    }
    let stamp = dir.join("specs.stamp");
    let hash = unsprawl::scan::source::sha256_digest(key.as_bytes());
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(hash.as_str()) {
        return Ok(());
    }
    let _ = std::fs::remove_dir_all(dir);
    build()?;
    std::fs::write(stamp, hash)?;
    Ok(())
}

/// A Prefect 1 estate of `n` synthetic flows on Docker storage: the inventory, the
/// export rows (the `flow` query's shape, with a 4 KB serialized flow each, as a real
/// Kubernetes flow has) and the flow files to commit into the flows repository. The
/// flows share `images` per-flow images round-robin (flow versions of one image share
/// its requirement), `n` of them for one image per flow. With `tasks` above the
/// fixture's 3, each flow has that many (a chain), as a large real flow has.
pub struct Prefect1Estate {
    pub inv: unsprawl::inventory::Inventory,
    pub rows: Vec<serde_json::Value>,
    pub files: Vec<(String, String)>,
}

pub fn prefect1_estate(n: usize, images: usize, tasks: usize) -> Prefect1Estate {
    use serde_json::{Value, json};
    use unsprawl::inventory::FlowSourceFile;
    let mut inv =
        unsprawl::plan::synthetic::inventory(&unsprawl::plan::synthetic::Spec::realistic(n, 7));
    let mut base: Value = serde_json::from_str(include_str!(
        "../../fixtures/prefect1/flow_docker_k8s.serialized.json"
    ))
    .unwrap();
    for t in 3..tasks {
        let mut task = base["tasks"][0].clone();
        task["slug"] = json!(format!("step-{t}"));
        task["name"] = json!(format!("step {t}"));
        let edge = json!({"__version__": "1.4.1", "flattened": false, "key": "n", "mapped": false,
            "upstream_task": {"__version__": "1.4.1", "slug": format!("step-{}", t.saturating_sub(1))},
            "downstream_task": {"__version__": "1.4.1", "slug": format!("step-{t}")}});
        base["tasks"].as_array_mut().unwrap().push(task);
        base["edges"].as_array_mut().unwrap().push(edge);
    }
    let k = images.clamp(1, n.max(1));
    inv.images.truncate(k);
    for i in k..inv.flows.len() {
        let (link, reference, requirement) = {
            let f = &inv.flows[i % k];
            (
                f.link.clone(),
                f.image_reference.clone(),
                f.requirement.clone(),
            )
        };
        let f = &mut inv.flows[i];
        (f.link, f.image_reference, f.requirement) = (link, reference, requirement);
    }
    // the synthetic images carry no Prefect; these flows import it
    for img in &mut inv.images {
        let c = img.contents.as_mut().unwrap();
        let mut prefect = c.python.distributions[0].clone();
        prefect.name = "prefect".into();
        prefect.display_name = "prefect".into();
        prefect.version = "1.4.1".into();
        prefect.import_names = vec!["prefect".into()];
        c.python.distributions.push(prefect);
    }
    let mut files = vec![];
    let mut rows = vec![];
    let by_id: std::collections::HashMap<&str, &unsprawl::inventory::Image> =
        inv.images.iter().map(|i| (i.id.as_str(), i)).collect();
    for (i, f) in inv.flows.iter_mut().enumerate() {
        let image = by_id[f.link.image_id.as_deref().unwrap()];
        // the flow imports three of the distributions its image has
        let modules: Vec<String> = image
            .contents
            .as_ref()
            .unwrap()
            .python
            .distributions
            .iter()
            .filter(|d| d.name != "pip")
            .take(3)
            .flat_map(|d| d.import_names.clone())
            .collect();
        let path = format!("flows/team-{}/{}.py", i % 40, f.name.replace('-', "_"));
        let imports: String = modules.iter().map(|m| format!("import {m}\n")).collect();
        files.push((
        path.clone(),
        format!(
            "{imports}from prefect import Flow, task\n\n\n@task\ndef step(x):\n    return x + 1\n\n\nwith Flow(\"{}\") as flow:\n    step(1)\n",
            f.name
        ),
    ));
        let id = format!("00000000-0000-4000-8000-{i:012}");
        // Docker storage names the image it pushed: registry.example.com/flows/NAME:1
        let image_name = image.references[0]
            .trim_start_matches("registry.example.com/flows/")
            .trim_end_matches(":1")
            .to_string();
        let storage = json!({"type": "Docker", "__version__": "1.4.1", "registry_url": "registry.example.com/flows",
        "image_name": image_name, "image_tag": "1", "path": null, "stored_as_script": false,
        "prefect_version": "1.4.1", "secrets": [], "flows": {&f.name: "/opt/prefect/flows/x.prefect"}});
        let run_config = base["run_config"].clone();
        let mut flow = base.clone();
        flow["name"] = json!(f.name);
        flow["storage"] = storage.clone();
        rows.push(json!({
        "id": id, "name": f.name, "version": 1, "version_group_id": format!("vg-{i}"), "archived": false,
        "storage": storage, "run_config": run_config, "serialized_flow": flow, "is_schedule_active": false,
        "description": null, "project": {"id": "p", "name": "synthetic"},
        "flow_group": {"id": format!("fg-{i}"), "run_config": null},
    }));
        f.flow_id = Some(id);
        f.version_group_id = Some(format!("vg-{i}"));
        f.storage = rows[i]["storage"].clone();
        f.run_config = rows[i]["run_config"].clone();
        f.source = Some(FlowSourceFile {
            path,
            matched_by: "flow-name".into(),
            imports: modules.clone(),
        });
        if let Some(r) = f.requirement.as_mut() {
            r.imported_modules = modules;
        }
    }
    Prefect1Estate { inv, rows, files }
}

/// Every runtime image of `plan` counted as seen, providing what any scanned
/// distribution provides: the benches time the migration, not a registry.
pub fn every_runtime_image_seen(
    inv: &unsprawl::inventory::Inventory,
    plan: &unsprawl::plan::document::Plan,
) -> unsprawl::migrate::runtime_image::Verdicts {
    let provided: std::collections::BTreeSet<String> = inv
        .images
        .iter()
        .filter_map(|i| i.contents.as_ref())
        .flat_map(|c| c.python.distributions.iter())
        .flat_map(|d| d.import_names.iter().cloned())
        .collect();
    plan.runtime_images
        .iter()
        .map(|r| {
            (
                r.name.clone(),
                Ok(unsprawl::migrate::runtime_image::Seen {
                    detail: "benchmark".into(),
                    modules: provided.clone(),
                    fetch: [(
                        unsprawl::rules::fetch::GIT_STORAGE.to_string(),
                        Ok("benchmark".to_string()),
                    )]
                    .into(),
                    image: None,
                    os_packages: Default::default(),
                    user: None,
                    working_dir: None,
                }),
            )
        })
        .collect()
}

/// Run a command to completion; return its wall time and peak RSS (VmHWM, sampled).
pub fn measure(cmd: &mut std::process::Command) -> (std::time::Duration, u64) {
    let t = std::time::Instant::now();
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("command starts");
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak_kb = 0u64;
    loop {
        if let Ok(s) = std::fs::read_to_string(&status_path)
            && let Some(line) = s.lines().find(|l| l.starts_with("VmHWM:"))
        {
            let kb: u64 = line
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            peak_kb = peak_kb.max(kb);
        }
        if let Some(st) = child.try_wait().unwrap() {
            assert!(st.success(), "{cmd:?} failed");
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    (t.elapsed(), peak_kb * 1024)
}

/// Build fixture images from their specs and push them to a plain-HTTP registry.
pub fn push_specs(
    host: &str,
    specs: std::collections::BTreeMap<String, unsprawl::fixture::spec::ImageSpec>,
) -> anyhow::Result<()> {
    let files = unsprawl::fixture::BundledFiles;
    let images = unsprawl::fixture::Corpus::new(specs, &files).build_all()?;
    unsprawl::fixture::push::push(
        &images,
        host,
        true,
        oci_client::secrets::RegistryAuth::Anonymous,
    )
}
