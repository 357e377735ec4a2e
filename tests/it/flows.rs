//! End to end: Prefect 1 registrations of several teams linked to the scanned fixture
//! images: exact links, dangling and orphan sets, and both requirement sets per flow.

use crate::common;

use std::collections::BTreeSet;
use std::path::Path;

use common::*;
use unsprawl::inventory::{Flow, Inventory};

/// Scan the bundled corpus (OCI layout) into `dir/images.json`.
fn images(dir: &Path) -> std::path::PathBuf {
    let oci = dir.join("oci");
    build_fixtures(&[], &["--oci", p(&oci)], &[]);
    let out = dir.join("images.json");
    ok(&["scan", "oci-dir", p(&oci), "--no-cache", "-o", p(&out)]);
    out
}

/// `scan prefect1` of the bundled export against `imgs`, writing `out`.
fn export_scan(imgs: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "scan",
        "prefect1",
        "--export",
        "fixtures/prefect1/export.graphql.json",
        "--images",
        p(imgs),
        "-o",
        p(out),
    ];
    args.extend(extra);
    unsprawl(&args)
}

fn assert_ok(o: std::process::Output) {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn flow<'a>(inv: &'a Inventory, project: &str, name: &str) -> &'a Flow {
    inv.flows
        .iter()
        .find(|f| f.name == name && f.project.as_deref() == Some(project))
        .unwrap_or_else(|| panic!("no flow {project}/{name}"))
}

fn names(pins: &[unsprawl::inventory::DistPin]) -> BTreeSet<&str> {
    pins.iter().map(|p| p.name.as_str()).collect()
}

/// Everything `pip install prefect==1.4.1` brought in (fixtures/images/prefect1-*.toml).
const PREFECT1: &[&str] = &[
    "certifi",
    "charset-normalizer",
    "click",
    "cloudpickle",
    "croniter",
    "dask",
    "distributed",
    "docker",
    "idna",
    "marshmallow",
    "marshmallow-oneofschema",
    "msgpack",
    "mypy-extensions",
    "pendulum",
    "prefect",
    "python-box",
    "python-dateutil",
    "python-slugify",
    "pytz",
    "pytzdata",
    "pyyaml",
    "requests",
    "six",
    "tabulate",
    "text-unidecode",
    "toml",
    "toolz",
    "tornado",
    "urllib3",
];

#[test]
fn flows_of_three_teams_link_to_their_images_with_both_requirements() {
    let tmp = tempfile::tempdir().unwrap();
    let imgs = images(tmp.path());
    let out = tmp.path().join("inventory.json");
    let o = export_scan(&imgs, &out, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let inv = read_inventory(&out);
    assert_eq!(
        inv.flows.len(),
        9,
        "the nameless row is an error, not a flow"
    );
    assert_eq!(inv.errors.len(), 1);
    assert!(inv.errors[0].message.contains("without a name"));

    let id_of = |reference: &str| image(&inv, reference).id.clone();
    let team_a = id_of("registry.local:5000/team/flow-a:2023-01-01");
    let team_b = id_of("registry.local:5000/team-b/flow-a:latest");
    let team_c = id_of("registry.local:5000/team-c/report:v7");

    // links
    let a = flow(&inv, "team-a", "flow-a");
    assert_eq!(a.link.status, "linked");
    assert_eq!(a.link.image_id.as_deref(), Some(team_a.as_str()));
    assert_eq!(a.link.matched_by.as_deref(), Some("reference"));
    assert_eq!(a.storage_kind.as_deref(), Some("Docker"));
    assert_eq!(a.image_from.as_deref(), Some("storage"));
    assert!(a.has_schedule);
    assert_eq!(a.labels, vec!["k8s", "team"]);
    assert_eq!(
        a.run_config["service_account_name"], "prefect-flows",
        "kept whole"
    );
    let b = flow(&inv, "team-b", "flow-a");
    assert_eq!(b.link.image_id.as_deref(), Some(team_b.as_str()));
    assert!(b.group_overrides_run_config);
    assert_eq!(
        b.run_config_kind.as_deref(),
        Some("KubernetesRun"),
        "the group's run config is in effect"
    );
    assert_eq!(b.labels, vec!["k8s", "team-b"]);
    let c = flow(&inv, "team-c", "report");
    assert_eq!(c.link.image_id.as_deref(), Some(team_c.as_str()));
    assert_eq!(c.labels, vec!["reports", "team-c"], "flow group labels win");
    let legacy = flow(&inv, "team-c", "legacy-etl");
    assert_eq!(legacy.image_from.as_deref(), Some("environment.metadata"));
    assert_eq!(legacy.run_config_kind, None);

    let links = inv.flow_links.as_ref().unwrap();
    let keys = |names: &[(&str, &str)]| -> Vec<String> {
        let mut v: Vec<String> = names
            .iter()
            .map(|(p, n)| flow(&inv, p, n).key.clone())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        links.dangling,
        keys(&[("team-a", "flow-gone"), ("team-c", "legacy-etl")])
    );
    assert_eq!(
        links.no_image,
        keys(&[("team-b", "odd-storage"), ("team-b", "broken-storage")])
    );
    let mut orphans = vec![
        id_of("registry.local:5000/team-d/etl:2024-11-01"),
        id_of("registry.local:5000/tools/alpine-py:3.19"),
    ];
    orphans.sort();
    let mut got_orphans = links.orphans.clone();
    got_orphans.sort();
    assert_eq!(got_orphans, orphans);
    assert_eq!(links.shared.len(), 1);
    assert_eq!(links.shared[0].image_id, team_a);
    assert_eq!(
        links.shared[0].flows,
        keys(&[("team-a", "flow-a"), ("team-a", "flow-a-nightly")])
    );
    assert_eq!(links.group_overrides, keys(&[("team-b", "flow-a")]));
    assert!(
        flow(&inv, "team-b", "odd-storage").problems[0]
            .message
            .contains("unknown storage type \"Memory\"")
    );
    assert!(
        flow(&inv, "team-b", "broken-storage").problems[0]
            .message
            .contains("not a JSON object")
    );

    // requirements, both ways
    let ra = a.requirement.as_ref().unwrap();
    assert_eq!(ra.python.as_deref(), Some("3.11"));
    assert_eq!(ra.os_family.as_deref(), Some("debian"));
    assert_eq!(
        (ra.base.layers, ra.base.method.as_str()),
        (3, "shared-layers")
    );
    assert_eq!(
        ra.base.named.as_deref(),
        Some("prefecthq/prefect:1.4.1-python3.11")
    );
    assert_eq!(
        names(&ra.installed),
        BTreeSet::from(["numpy", "pandas"]),
        "pip install 'pandas==1.5.3'"
    );
    assert_eq!(
        names(&ra.imports),
        PREFECT1.iter().copied().collect::<BTreeSet<_>>()
    );
    assert_eq!(ra.imported_modules, vec!["mylib", "prefect", "yaml"]);
    assert_eq!(
        ra.unresolved_modules,
        vec!["mylib"],
        "copied in with `files=`, no distribution"
    );
    let pandas = ra.installed.iter().find(|p| p.name == "pandas").unwrap();
    assert_eq!(pandas.version, "1.5.3");

    let rb = b.requirement.as_ref().unwrap();
    assert_eq!(rb.python.as_deref(), Some("3.10"));
    assert_eq!(
        rb.base.layers, 1,
        "only the Debian layer is shared with another image"
    );
    assert_eq!(names(&rb.imports), names(&ra.imports));
    assert!(
        rb.imports
            .iter()
            .any(|p| p.name == "prefect" && p.version == "1.4.1")
    );
    assert!(names(&rb.installed).contains("numpy"));
    assert!(names(&rb.installed).contains("prefect"));

    let rc = c.requirement.as_ref().unwrap();
    assert_eq!(
        names(&rc.installed),
        BTreeSet::from(["jinja2", "markupsafe", "requests", "simplejson"])
    );
    assert!(
        rc.installed
            .iter()
            .any(|p| p.name == "requests" && p.version == "2.32.3")
    );
    assert!(
        rc.imports.is_empty(),
        "no pickled flow in that image: nothing known of its imports"
    );
}

#[test]
fn other_registry_names_link_only_through_an_alias() {
    let tmp = tempfile::tempdir().unwrap();
    let imgs = images(tmp.path());
    let export = tmp.path().join("build.json");
    std::fs::write(
        &export,
        serde_json::json!({"version": 1, "flows": [{
            "name": "flow-a", "type": "prefect.core.flow.Flow", "tasks": [], "edges": [],
            "storage": {"type": "Docker", "registry_url": "mirror.example.com/team", "image_name": "flow-a",
                        "image_tag": "2023-01-01", "flows": {"flow-a": "/opt/prefect/flows/flow-a.prefect"}},
            "run_config": {"type": "KubernetesRun", "image": null, "labels": []}
        }]})
        .to_string(),
    )
    .unwrap();
    let out = tmp.path().join("inv.json");
    let args = [
        "scan",
        "prefect1",
        "--export",
        p(&export),
        "--images",
        p(&imgs),
        "-o",
        p(&out),
    ];
    let o = unsprawl(&args);
    assert!(String::from_utf8_lossy(&o.stderr).contains("use --registry-alias"));
    let inv = read_inventory(&out);
    assert_eq!(
        inv.flows[0].link.status, "dangling",
        "never linked on the name alone"
    );
    assert_eq!(
        inv.flows[0].link.same_name_elsewhere,
        vec!["registry.local:5000/team/flow-a:2023-01-01"]
    );
    let mut with_alias = args.to_vec();
    with_alias.extend(["--registry-alias", "mirror.example.com=registry.local:5000"]);
    ok(&with_alias);
    let inv = read_inventory(&out);
    assert_eq!(inv.flows[0].link.status, "linked");
    assert_eq!(inv.flows[0].link.matched_by.as_deref(), Some("alias"));

    // --strict fails on the dangling flow, and a broken export is a clean error
    let mut strict = args.to_vec();
    strict.push("--strict");
    assert_eq!(unsprawl(&strict).status.code(), Some(1));
    std::fs::write(
        &export,
        "{\"errors\": [{\"message\": \"Invalid API key\"}]}",
    )
    .unwrap();
    let o = unsprawl(&args);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("Invalid API key"));
}

fn saved_rows() -> Vec<serde_json::Value> {
    let text =
        std::fs::read_to_string(repo().join("fixtures/prefect1/export.graphql.json")).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    doc["data"]["flow"].as_array().unwrap().clone()
}

fn api_scan(url: &str, key: &str, imgs: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "scan",
        "prefect1",
        "--api",
        url,
        "--api-key-env",
        "TEST_PREFECT_KEY",
        "--images",
        p(imgs),
        "-o",
        p(out),
        "--page-size",
        "3",
    ];
    args.extend(extra);
    std::process::Command::new(env!("CARGO_BIN_EXE_unsprawl"))
        .args(&args)
        .current_dir(repo())
        .env("TEST_PREFECT_KEY", key)
        .output()
        .unwrap()
}

#[test]
fn graphql_api_pages_through_every_flow_and_fails_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let imgs = images(tmp.path());
    let rows = saved_rows();
    assert_eq!(rows.len(), 10);

    // paging: 3 a page over 10 rows is 4 requests, and the same result as the export
    let stub = common::graphql_stub::start(rows.clone(), "good-key-123", None);
    let out = tmp.path().join("api.json");
    let o = api_scan(&stub.url, "good-key-123", &imgs, &out, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        *stub.pages.lock().unwrap(),
        vec![(3, 0), (3, 3), (3, 6), (3, 9)]
    );
    let from_api = read_inventory(&out);
    let export_out = tmp.path().join("export.json");
    assert_ok(export_scan(&imgs, &export_out, &[]));
    let from_export = read_inventory(&export_out);
    assert_eq!(from_api.flows, from_export.flows);
    assert_eq!(from_api.flow_links, from_export.flow_links);
    assert_eq!(from_api.sources.last().unwrap().kind, "prefect1-api");

    // an expired key: a clear error, exit 2, the key never printed
    let o = api_scan(&stub.url, "expired-key-456", &imgs, &out, &[]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("refused the API key"), "{err}");
    assert!(!err.contains("expired-key-456"));

    // a 500 mid-paging: the flows read so far are kept, the gap is an error
    let failing = common::graphql_stub::start(rows, "good-key-123", Some(6));
    let partial_out = tmp.path().join("partial.json");
    let o = api_scan(&failing.url, "good-key-123", &imgs, &partial_out, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let partial = read_inventory(&partial_out);
    assert_eq!(partial.flows.len(), 6);
    assert!(
        partial
            .errors
            .iter()
            .any(|e| e.message.contains("stopped at offset 6") && e.message.contains("HTTP 500")),
        "{:?}",
        partial.errors
    );
    let o = api_scan(
        &failing.url,
        "good-key-123",
        &imgs,
        &partial_out,
        &["--strict"],
    );
    assert_eq!(o.status.code(), Some(1));

    // --project: only that project's flows are asked for and read
    let project_out = tmp.path().join("project.json");
    let o = api_scan(
        &stub.url,
        "good-key-123",
        &imgs,
        &project_out,
        &["--project", "team-c"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let only_c = read_inventory(&project_out);
    assert!(!only_c.flows.is_empty());
    assert!(
        only_c
            .flows
            .iter()
            .all(|f| f.project.as_deref() == Some("team-c")),
        "{:?}",
        only_c.flows.iter().map(|f| &f.project).collect::<Vec<_>>()
    );

    // the stand-in is as strict as Hasura: a misspelt field is an error, and a query that
    // leaves out `flow_group { run_config }` does not get it
    let ask = |query: &str| -> serde_json::Value {
        let body = serde_json::json!({"query": query, "variables": {"where": {"archived": {"_eq": false}}, "limit": 100, "offset": 0}});
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                reqwest::Client::new()
                    .post(&stub.url)
                    .bearer_auth("good-key-123")
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap()
            })
    };
    let misspelt = ask("query { flow(where: $where) { id nmae flow_group { run_config } } }");
    assert!(
        misspelt["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("\"nmae\" not found in type: 'flow'"),
        "{misspelt}"
    );
    let narrow = ask("query { flow(where: $where) { id name } }");
    let first = &narrow["data"]["flow"][0];
    assert!(
        first.get("flow_group").is_none() && first.get("storage").is_none(),
        "{first}"
    );
    let ours = ask(unsprawl::flows::prefect1_api::FLOWS_QUERY);
    assert!(
        ours.get("errors").is_none(),
        "our own query passes the schema: {ours}"
    );
}

#[test]
fn flows_repo_gives_each_flow_its_file_and_imports() {
    let tmp = tempfile::tempdir().unwrap();
    let imgs = images(tmp.path());
    let out = tmp.path().join("inventory.json");
    assert_ok(export_scan(
        &imgs,
        &out,
        &["--flows-repo", "fixtures/flows-repo"],
    ));
    let inv = read_inventory(&out);
    let a = flow(&inv, "team-a", "flow-a");
    let src = a.source.as_ref().unwrap();
    assert_eq!(
        (src.path.as_str(), src.matched_by.as_str()),
        ("flow_a.py", "flow-name")
    );
    assert_eq!(
        src.imports,
        vec!["datetime", "json", "mylib", "os", "prefect", "yaml"]
    );
    let r = a.requirement.as_ref().unwrap();
    assert_eq!(
        r.local_modules,
        vec!["mylib"],
        "mylib/ is in the repository"
    );
    assert!(r.unresolved_modules.is_empty());
    assert_eq!(r.imported_modules, vec!["mylib", "prefect", "yaml"]);

    let git = flow(&inv, "team-a", "flow-git");
    let src = git.source.as_ref().unwrap();
    assert_eq!(
        (src.path.as_str(), src.matched_by.as_str()),
        ("flows/flow_git.py", "flow_path")
    );
    assert!(
        git.requirement.is_none(),
        "dangling: no image to read requirements from"
    );

    let c = flow(&inv, "team-c", "report");
    assert_eq!(c.source.as_ref().unwrap().path, "teams/c/report.py");
    let rc = c.requirement.as_ref().unwrap();
    let imports = names(&rc.imports);
    for want in ["jinja2", "markupsafe", "simplejson", "six", "prefect"] {
        assert!(imports.contains(want), "{want} in {imports:?}");
    }
    assert!(
        rc.imports
            .iter()
            .any(|p| p.name == "jinja2" && p.version == "3.1.3"),
        "the venv's jinja2 (the opaque dir hid 3.0.0)"
    );
    assert_eq!(
        flow(&inv, "team-a", "flow-a-nightly")
            .source
            .as_ref()
            .unwrap()
            .path,
        "flows/nightly.py"
    );
    // a missing repository is a clear error
    let o = export_scan(&imgs, &out, &["--flows-repo", "fixtures/no-such-repo"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no-such-repo"));
}

#[test]
fn prefect_yaml_deployments_link_like_the_servers() {
    let tmp = tempfile::tempdir().unwrap();
    let imgs = images(tmp.path());
    let out = tmp.path().join("inventory.json");
    ok(&[
        "scan",
        "prefect",
        "--prefect-yaml",
        "fixtures/prefect3/prefect.yaml",
        "--images",
        p(&imgs),
        "-o",
        p(&out),
        "--flows-repo",
        "fixtures/flows-repo",
    ]);
    let inv = read_inventory(&out);
    let dep = |n: &str| {
        inv.flows
            .iter()
            .find(|f| f.deployment.as_deref() == Some(n))
            .unwrap()
    };
    let baked = dep("etl-baked");
    assert_eq!(baked.link.status, "linked");
    assert_eq!(
        baked.link.image_id.as_deref(),
        Some(
            image(&inv, "registry.local:5000/team-d/etl:2024-11-01")
                .id
                .as_str()
        )
    );
    // a git_clone pull step on a shared image nobody scanned: already migrated, not dangling
    assert_eq!(dep("flow-a-yaml").link.status, "already-migrated");
    assert_eq!(
        dep("flow-a-yaml").storage_kind.as_deref(),
        Some("git_clone")
    );
    let built = dep("built-at-deploy");
    // its code comes from the file's git_clone pull section: already migrated, and the
    // image it would run on is only known after a build
    assert_eq!(built.link.status, "already-migrated");
    assert_eq!(built.link.image_id, None);
    assert!(built.problems[0].message.contains("build step"));
    assert_eq!(inv.sources.last().unwrap().kind, "prefect3-yaml");
}
