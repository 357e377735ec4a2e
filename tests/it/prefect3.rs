//! End to end against a real Prefect 3 server: deployments that bake their code into a
//! per-deployment image, one on git_clone with a runtime image nobody scanned, one on a
//! process pool with no image; the binary lists them over REST and links them.

use crate::common;

use common::prefect3_server::Server;
use common::*;
use reqwest::Method;
use serde_json::json;

#[test]
fn deployments_of_a_real_server_link_to_their_images() {
    let server = Server::start();
    server.cli(&["work-pool", "create", "k8s-pool", "--type", "kubernetes"]);
    server.cli(&["work-pool", "create", "proc-pool", "--type", "process"]);
    let etl = server.call(Method::POST, "flows/", Some(json!({"name": "etl"})));
    let report = server.call(Method::POST, "flows/", Some(json!({"name": "report"})));
    let flow_id = |f: &serde_json::Value| f["id"].as_str().unwrap().to_string();
    server.call(
        Method::POST,
        "deployments/",
        Some(json!({
            "name": "etl-docker", "flow_id": flow_id(&etl), "work_pool_name": "k8s-pool",
            "job_variables": {"image": "registry.local:5000/team-d/etl:2024-11-01", "namespace": "flows"},
            "entrypoint": "flows/etl.py:etl", "path": ".", "pull_steps": [], "tags": ["team-d"],
        })),
    );
    server.call(
        Method::POST,
        "deployments/",
        Some(json!({
            "name": "etl-git", "flow_id": flow_id(&etl), "work_pool_name": "k8s-pool",
            "job_variables": {"image": "registry.local:5000/team/runtime-py311:2023-01"},
            "entrypoint": "flows/etl.py:etl", "path": null, "tags": ["team-d"],
            "pull_steps": [{"prefect.deployments.steps.git_clone": {
                "repository": "https://git.example.com/team/flows.git", "branch": "main"}}],
        })),
    );
    server.call(
        Method::POST,
        "deployments/",
        Some(json!({"name": "report-local", "flow_id": flow_id(&report), "work_pool_name": "proc-pool",
                    "entrypoint": "report.py:report", "path": "/srv/flows"})),
    );

    let tmp = tempfile::tempdir().unwrap();
    let oci = tmp.path().join("oci");
    build_fixtures(&[], &["--oci", p(&oci)], &[]);
    let imgs = tmp.path().join("images.json");
    ok(&["scan", "oci-dir", p(&oci), "--no-cache", "-o", p(&imgs)]);
    let out = tmp.path().join("inventory.json");
    let o = unsprawl(&[
        "scan",
        "prefect",
        "--api",
        &server.api,
        "--images",
        p(&imgs),
        "-o",
        p(&out),
        "--page-size",
        "2",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let inv = read_inventory(&out);
    assert_eq!(inv.flows.len(), 3, "three deployments over two pages");
    let dep = |name: &str| {
        inv.flows
            .iter()
            .find(|f| f.deployment.as_deref() == Some(name))
            .unwrap()
    };

    let docker = dep("etl-docker");
    assert_eq!(docker.system, "prefect3");
    assert_eq!(docker.name, "etl");
    assert_eq!(docker.storage_kind.as_deref(), Some("image"));
    assert_eq!(docker.run_config_kind.as_deref(), Some("kubernetes"));
    assert_eq!(docker.image_from.as_deref(), Some("job_variables"));
    assert_eq!(docker.link.status, "linked");
    assert_eq!(
        docker.link.image_id.as_deref(),
        Some(
            image(&inv, "registry.local:5000/team-d/etl:2024-11-01")
                .id
                .as_str()
        )
    );
    assert_eq!(docker.labels, vec!["team-d"]);
    assert_eq!(
        docker.run_config["namespace"], "flows",
        "job variables kept whole"
    );
    let req = docker.requirement.as_ref().unwrap();
    assert_eq!(req.python.as_deref(), Some("3.11"));
    assert!(
        req.installed
            .iter()
            .any(|p| p.name == "prefect" && p.version == "3.1.0")
    );

    let git = dep("etl-git");
    assert_eq!(git.storage_kind.as_deref(), Some("git_clone"));
    assert_eq!(
        git.link.status, "already-migrated",
        "its code comes from git: nothing to migrate, not dangling"
    );
    let local = dep("report-local");
    assert_eq!(local.name, "report");
    assert_eq!(local.run_config_kind.as_deref(), Some("process"));
    assert_eq!(local.link.status, "no-image");
    let links = inv.flow_links.as_ref().unwrap();
    assert!(links.dangling.is_empty(), "{:?}", links.dangling);
    assert_eq!(links.already_migrated, vec![git.key.clone()]);
    assert_eq!(links.no_image, vec![local.key.clone()]);

    // with no --api, Prefect's own PREFECT_API_URL names the server, as for `prefect`
    let by_env = tmp.path().join("by-env.json");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_unsprawl"))
        .args(["scan", "prefect", "--images", p(&imgs), "-o", p(&by_env)])
        .env("PREFECT_API_URL", &server.api)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let keys = |inv: &unsprawl::inventory::Inventory| {
        inv.flows.iter().map(|f| f.key.clone()).collect::<Vec<_>>()
    };
    assert_eq!(keys(&read_inventory(&by_env)), keys(&inv));
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_unsprawl"))
        .args(["scan", "prefect", "--images", p(&imgs), "-o", p(&by_env)])
        .env_remove("PREFECT_API_URL")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("--api URL (or $PREFECT_API_URL)"), "{err}");
}
