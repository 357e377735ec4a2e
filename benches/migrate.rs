//! Preparing the migration of 2,000 synthetic Prefect 1 flows (every flow file read at
//! the reference from git and parsed, imports checked against its runtime image, the new
//! serialized flow built, gzip+base64 compressed and hashed for its idempotency key),
//! against a baseline measured in the same run: reading and parsing the same files from
//! the working tree once, which `scan --flows-repo` pays anyway.
//!
//! Prints the ratio prepare / read and the time per flow. Run with
//! `cargo bench --bench migrate` (about 10 s).

mod common;
use common::time;

use serde_json::{Value, json};
use unsprawl::inventory::FlowSourceFile;
use unsprawl::migrate::gitref::{Checkout, RefFrom, decide};
use unsprawl::migrate::{GitTarget, Inputs, Registrations, Status, prepare};
use unsprawl::plan::{self, Options, synthetic};
use unsprawl::rules::Rules;

const ROUNDS: usize = 5;

fn main() {
    let n: usize = std::env::var("UNSPRAWL_BENCH_FLOWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let mut inv = synthetic::inventory(&synthetic::Spec::realistic(n, 7));
    let base: Value = serde_json::from_str(include_str!(
        "../fixtures/prefect1/flow_docker_k8s.serialized.json"
    ))
    .unwrap();
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
    for (i, f) in inv.flows.iter_mut().enumerate() {
        let image = inv
            .images
            .iter()
            .find(|img| Some(&img.id) == f.link.image_id.as_ref())
            .unwrap();
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
        let storage = json!({"type": "Docker", "__version__": "1.4.1", "registry_url": "registry.example.com/flows",
            "image_name": f.name, "image_tag": "1", "path": null, "stored_as_script": false,
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
    let solved = plan::solve(&inv, &Rules::default_rules(), &Options::default()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("flows");
    let branch = unsprawl::fixture::flows_repo::commit_files(&dir, &files).unwrap();

    let (read, parsed) = time(ROUNDS, || unsprawl::flows::source::read_repo(&dir).unwrap());
    assert_eq!(parsed.len(), n);
    // the registrations are owned by the migration: their copies are made before timing
    let mut copies: Vec<Vec<Value>> = (0..ROUNDS).map(|_| rows.clone()).collect();
    // the bench times the preparation, not a registry: every runtime image counts as
    // seen, providing what any scanned distribution provides
    let provided: std::collections::BTreeSet<String> = inv
        .images
        .iter()
        .filter_map(|i| i.contents.as_ref())
        .flat_map(|c| c.python.distributions.iter())
        .flat_map(|d| d.import_names.iter().cloned())
        .collect();
    let seen: unsprawl::migrate::runtime_image::Verdicts = solved
        .plan
        .runtime_images
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
        .collect();
    let (migrate, m) = time(ROUNDS, || {
        let checkout = Checkout::open(&dir).unwrap();
        let git_ref = decide(&RefFrom::Branch(branch.clone()), &|_| None, &checkout).unwrap();
        let git = GitTarget::new(
            Some("https://git.example.com/platform/flows.git"),
            None,
            None,
            git_ref,
        )
        .unwrap();
        prepare(Inputs {
            inventory: &inv,
            plan: &solved.plan,
            git,
            checkout: &checkout,
            registrations: Registrations::Prefect1(copies.pop().expect("one per round")),
            registrations_from: "bench".into(),
            from_server: false,
            runtime_images: &seen,
            default_run_config: "KubernetesRun".into(),
            token_secret: None,
            carried_files: Default::default(),
        })
    });
    let ready = m.items.iter().filter(|i| i.status == Status::Ready).count();
    assert_eq!(
        ready,
        m.items.len(),
        "every synthetic flow verifies: {:?}",
        m.items
            .iter()
            .find(|i| i.status != Status::Ready)
            .map(|i| (&i.checks, &i.notes))
    );
    println!(
        "migrate prepare, {n} flows: {:.2}× reading and parsing the flow files from the working tree \
         ({:.0} µs per flow; read {:.0} µs per file); {ready} ready",
        migrate.as_secs_f64() / read.as_secs_f64(),
        migrate.as_secs_f64() * 1e6 / n as f64,
        read.as_secs_f64() * 1e6 / n as f64,
    );
}
