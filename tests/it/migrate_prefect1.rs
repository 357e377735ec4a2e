//! The Prefect 1 migration: 24 flows of three projects on Docker storage, with every run
//! config kind (KubernetesRun, DockerRun, ECSRun, LocalRun, UniversalRun, none with a
//! legacy environment), a flow group override that pins the old image, and a stored flow
//! without edges. The documents are validated by real Prefect 1.4.1; the apply path runs
//! against a GraphQL stub that checks each request and loses the answer to one
//! registration mid-batch; the resume creates no duplicate version; rollback restores.

use crate::common;

use std::process::Output;

use common::git_repo::{GitRepo, clean_command, stderr};
use common::*;
use serde_json::{Value, json};

const TEAMS: &[&str] = &["team-a", "team-b", "team-c"];
const KEY: &str = "p1-secret-key";
const IMAGE: (&str, &str, &str) = ("registry.local:5000/team-c", "report", "v7");

fn run(args: &[&str]) -> Output {
    clean_command(args)
        .env("PREFECT__CLOUD__API_KEY", KEY)
        .output()
        .unwrap()
}

fn run_config(kind: usize, team: &str, image: &str) -> Value {
    let base: Value = serde_json::from_str(include_str!(
        "../../fixtures/prefect1/flow_docker_k8s.serialized.json"
    ))
    .unwrap();
    let mut k8s = base["run_config"].clone();
    k8s["labels"] = json!([team]);
    k8s["image"] = json!(image);
    match kind {
        1..=3 => k8s,
        4 => json!({"type": "DockerRun", "__version__": "1.4.1", "image": image, "env": {"A": "1"},
                    "labels": [team], "ports": [8080], "host_config": {"mem_limit": "1g"}}),
        5 => {
            json!({"type": "ECSRun", "__version__": "1.4.1", "image": image, "env": null, "labels": [team],
                    "task_definition_path": null, "task_definition": null, "task_definition_arn": null,
                    "cpu": "1 vcpu", "memory": "2 GB", "task_role_arn": null, "execution_role_arn": null,
                    "run_task_kwargs": {"cluster": "flows"}})
        }
        6 => {
            json!({"type": "LocalRun", "__version__": "1.4.1", "env": {"B": "2"}, "labels": [team], "working_dir": null})
        }
        7 => json!({"type": "UniversalRun", "__version__": "1.4.1", "env": null, "labels": [team]}),
        _ => Value::Null,
    }
}

/// One flow version as the server's flows query returns it.
fn row(i: usize, team: &str, n: usize) -> Value {
    let base: Value = serde_json::from_str(include_str!(
        "../../fixtures/prefect1/flow_docker_k8s.serialized.json"
    ))
    .unwrap();
    let name = format!("{team}-flow-{n}");
    let image = format!("{}/{}:{}", IMAGE.0, IMAGE.1, IMAGE.2);
    let storage = json!({"type": "Docker", "__version__": "1.4.1", "registry_url": IMAGE.0,
        "image_name": IMAGE.1, "image_tag": IMAGE.2, "path": null, "stored_as_script": false,
        "prefect_version": "1.4.1", "secrets": [],
        "flows": {&name: format!("/opt/prefect/flows/{name}.prefect")}});
    let rc = run_config(n, team, "registry.local:5000/some/older-image:1");
    let mut flow = base.clone();
    flow["name"] = json!(name);
    flow["storage"] = storage.clone();
    flow["run_config"] = rc.clone();
    let edges: Vec<Value> = base["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            json!({"key": e["key"], "mapped": e["mapped"],
            "upstream_task": {"slug": e["upstream_task"]["slug"]},
            "downstream_task": {"slug": e["downstream_task"]["slug"]}})
        })
        .collect();
    if n == 3 {
        // registered with flow.register(): the stored copy has no edges
        flow.as_object_mut().unwrap().remove("edges");
    }
    let environment = if n == 8 {
        json!({"type": "LocalEnvironment", "labels": [team], "metadata": {"image": image}, "__version__": "0.15.0"})
    } else {
        Value::Null
    };
    let group_rc = if n == 2 {
        // the group override pins the old image: folded into the new version, cleared
        let mut o = run_config(1, team, &image);
        o["env"] = json!({"FROM_GROUP": "1"});
        o
    } else {
        Value::Null
    };
    json!({
        "id": format!("00000000-0000-4000-9000-{i:012}"),
        "name": name, "version": 2, "version_group_id": format!("vg-{name}"), "archived": false,
        "core_version": "1.4.1", "created": "2023-01-01T00:00:00+00:00",
        "storage": storage, "run_config": rc, "environment": environment,
        "schedule": null, "is_schedule_active": n.is_multiple_of(2), "parameters": [], "description": null,
        "project": {"id": format!("p-{team}"), "name": team},
        "flow_group": {"id": format!("fg-{name}"), "name": format!("vg-{name}"), "labels": [team],
                       "run_config": group_rc, "schedule": null, "default_parameters": {}, "settings": {}},
        "serialized_flow": flow,
        "tasks": [], "edges": edges,
    })
}

fn flow_file(team: &str, n: usize) -> (String, String) {
    if (team, n) == ("team-c", 1) {
        // one team still sets Docker storage in the flow file: it gets a source patch
        return (
            format!("flows/{team}/flow_{n}.py"),
            format!(
                "import simplejson\nfrom prefect import Flow, task\nfrom prefect.storage import Docker\nfrom prefect.run_configs import KubernetesRun\n\n\n@task\ndef parse(rows):\n    return simplejson.loads(rows)\n\n\nwith Flow(\n    \"{team}-flow-{n}\",\n    storage=Docker(registry_url=\"registry.local:5000/team-c\", image_name=\"report\"),\n    run_config=KubernetesRun(labels=[\"{team}\"]),\n) as flow:\n    parse(\"[1]\")\n"
            ),
        );
    }
    (
        format!("flows/{team}/flow_{n}.py"),
        format!(
            "import simplejson\nfrom jinja2 import Template\nfrom prefect import Flow, task\n\n\n@task\ndef render(rows):\n    return Template(\"{{{{ rows|length }}}}\").render(rows=simplejson.loads(rows))\n\n\nwith Flow(\"{team}-flow-{n}\") as flow:\n    render(\"[{n}]\")\n"
        ),
    )
}

#[test]
fn flows_move_to_git_storage_validated_by_prefect_1_4_1_resumed_and_rolled_back() {
    let mut rows = vec![];
    let mut files = vec![];
    for team in TEAMS {
        for n in 1..=8 {
            rows.push(row(rows.len(), team, n));
            files.push(flow_file(team, n));
        }
    }
    let originals = rows.clone();
    let stub = common::prefect1_stub::start(rows, KEY);
    let refs: Vec<(&str, String)> = files.iter().map(|(p, t)| (p.as_str(), t.clone())).collect();
    let git = GitRepo::new(&refs);
    git.git(&["tag", "flows-2024.11"]);
    git.add_origin();

    let tmp = tempfile::tempdir().unwrap();
    let oci = tmp.path().join("oci");
    build_fixtures(&[], &["--oci", p(&oci)], &["team-c-report"]);
    let imgs = tmp.path().join("images.json");
    ok(&["scan", "oci-dir", p(&oci), "--no-cache", "-o", p(&imgs)]);
    let (inv, plan) = (
        tmp.path().join("inventory.json"),
        tmp.path().join("plan.json"),
    );
    let scan_and_plan = || {
        let o = run(&[
            "scan",
            "prefect1",
            "--api",
            &stub.url,
            "--images",
            p(&imgs),
            "--flows-repo",
            p(git.path()),
            "-o",
            p(&inv),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        ok(&[
            "plan",
            "--image-registry",
            "registry.local:5000/prefect",
            p(&inv),
            "-o",
            p(&plan),
        ]);
    };
    scan_and_plan();

    // the runtime images, built from the scanned image's own files into a layout
    let runtime = tmp.path().join("runtime.oci");
    ok(&[
        "build",
        p(&plan),
        "--wheels",
        "fixtures/wheels",
        "--no-index",
        "-o",
        p(&runtime),
        "--base-from",
        "members",
        "--cache-dir",
        p(&tmp.path().join("cache")),
    ]);
    let out = tmp.path().join("migration");
    let base = [
        "migrate",
        p(&plan),
        "--runtime-images",
        p(&runtime),
        "--repo-host",
        "git.example.com",
        "--repo",
        "platform/flows",
        "--flows-repo",
        p(git.path()),
        "--ref-from",
        "tag=flows-2024.11",
        "--git-token-secret",
        "GIT_TOKEN",
        "-o",
        p(&out),
    ];
    // the default summary is one screen: 20 flows, the rest counted, no field diffs
    let o = run(&base);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("24 flows: 24 ready, 0 refused"), "{err}");
    assert!(err.contains("… and 4 more in"), "{err}");
    assert!(!err.contains("storage.type:"), "{err}");
    // -v: every flow with its field diff
    let mut verbose = base.to_vec();
    verbose.push("-v");
    let o = run(&verbose);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(err.matches("  ready    ").count(), 24, "{err}");
    assert!(err.contains("storage.type: \"Docker\" → \"Git\""), "{err}");
    assert!(err.contains("+ storage.tag: \"flows-2024.11\""), "{err}");
    assert!(
        stub.state.lock().unwrap().registered.is_empty(),
        "a dry run registers nothing"
    );

    // what was written, loaded by Prefect 1.4.1 itself (strict: no key it would drop)
    let flows_json = out.join("prefect1/flows.json");
    assert!(common::prefect1::validate(&flows_json).contains("24 flow(s)"));
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&flows_json).unwrap()).unwrap();
    let by_name = |n: &str| {
        doc["flows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == n)
            .unwrap()
            .clone()
    };
    for team in TEAMS {
        for n in 1..=8 {
            let f = by_name(&format!("{team}-flow-{n}"));
            let s = &f["storage"];
            assert_eq!(s["type"], "Git");
            assert_eq!(s["flow_path"], format!("flows/{team}/flow_{n}.py"));
            assert_eq!(
                (s["repo"].as_str(), s["repo_host"].as_str()),
                (Some("platform/flows"), Some("git.example.com"))
            );
            assert_eq!(
                (s["tag"].as_str(), &s["branch_name"], &s["commit"]),
                (Some("flows-2024.11"), &Value::Null, &Value::Null)
            );
            assert_eq!(s["git_token_secret_name"], "GIT_TOKEN");
            assert!(
                f["run_config"]["image"]
                    .as_str()
                    .unwrap()
                    .starts_with("registry.local:5000/prefect/")
            );
            assert_eq!(
                f["edges"].as_array().unwrap().len(),
                2,
                "{team}-flow-{n}: edges kept or rebuilt"
            );
            assert_eq!(f["tasks"].as_array().unwrap().len(), 3);
            assert!(f.get("environment").is_none());
        }
    }
    let rc = |n: usize| by_name(&format!("team-b-flow-{n}"))["run_config"].clone();
    assert_eq!(
        rc(1)["service_account_name"],
        "prefect-flows",
        "other fields kept"
    );
    assert_eq!(
        rc(2)["env"],
        json!({"FROM_GROUP": "1"}),
        "the group override folded in"
    );
    assert_eq!(rc(4)["type"], "DockerRun");
    assert_eq!(rc(4)["ports"], json!([8080]));
    assert_eq!(rc(5)["run_task_kwargs"], json!({"cluster": "flows"}));
    assert_eq!(
        (rc(6)["type"].as_str(), &rc(6)["env"]),
        (Some("KubernetesRun"), &json!({"B": "2"}))
    );
    assert_eq!(
        rc(8)["type"],
        "KubernetesRun",
        "a legacy environment gets a run config"
    );
    // the GraphQL variables: gzip+base64 of the same flow, the group kept
    let vars_dir = out.join("prefect1/graphql");
    let one = std::fs::read_dir(&vars_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let vars: Value = serde_json::from_str(&std::fs::read_to_string(one).unwrap()).unwrap();
    assert!(
        vars["input"]["version_group_id"]
            .as_str()
            .unwrap()
            .starts_with("vg-")
    );
    assert_eq!(vars["input"]["idempotency_key"].as_str().unwrap().len(), 64);

    // the one flow file that sets Docker storage itself gets a patch that git applies
    let patches: Vec<_> = std::fs::read_dir(out.join("prefect1/source-patches"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(patches.len(), 1, "{patches:?}");
    let patch = std::fs::read_to_string(&patches[0]).unwrap();
    assert!(patch.contains("+    storage=Git(repo=\"platform/flows\", flow_path=\"flows/team-c/flow_1.py\", repo_host=\"git.example.com\", tag=\"flows-2024.11\", git_token_secret_name=\"GIT_TOKEN\"),"), "{patch}");
    assert!(
        patch.contains("+    run_config=KubernetesRun(image=\"registry.local:5000/prefect/"),
        "{patch}"
    );
    assert!(
        patch.contains("+from prefect.storage import Git"),
        "{patch}"
    );
    git.git(&["apply", "--check", p(&patches[0])]);

    // apply; the 4th registration is stored and answered 500 (retried with its
    // idempotency key: nothing twice), the 10th flow's (the 11th request) stored and
    // answered with an error
    stub.state.lock().unwrap().http_500_at = Some(4);
    stub.state.lock().unwrap().fail_create_at = Some(11);
    let journal = out.join("journal.jsonl");
    let mut apply = base.to_vec();
    apply.push("--apply");
    let o = run(&apply);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("run the same command again to continue"),
        "{}",
        stderr(&o)
    );
    assert_eq!(common::journal::entries(&journal, "done").len(), 9);
    assert_eq!(common::journal::entries(&journal, "failed").len(), 1);
    let o = run(&apply);
    assert!(o.status.success(), "{}", stderr(&o));
    // the 10th flow's version was stored: only its group override is left to clear
    assert!(
        stderr(&o).contains("15 written, 9 already migrated"),
        "{}",
        stderr(&o)
    );
    let diff = std::fs::read_to_string(out.join("diff.md")).unwrap();
    assert!(diff.contains("override still pins the old image"), "{diff}");
    let st = stub.state.lock().unwrap();
    assert!(st.bad_requests.is_empty(), "{:?}", st.bad_requests);
    assert_eq!(
        st.registered.len(),
        24,
        "one new version per flow, none twice"
    );
    drop(st);
    for r in &originals {
        let g = r["version_group_id"].as_str().unwrap();
        let versions = stub.versions(g);
        assert_eq!(versions.len(), 2, "{g}: the old version and one new one");
        let live = stub.live(g);
        assert_eq!(live["version"], 3);
        assert_eq!(live["storage"]["type"], "Git");
        assert_eq!(
            live["flow_group"]["run_config"],
            Value::Null,
            "{g}: no override left"
        );
    }
    // what the server stored is what Prefect 1.4.1 loads
    let stored = tmp.path().join("stored.json");
    let registered = stub.state.lock().unwrap().registered.clone();
    std::fs::write(
        &stored,
        json!({"version": 1, "flows": registered}).to_string(),
    )
    .unwrap();
    common::prefect1::validate(&stored);

    // rollback: every flow back on its old storage, run config and group override
    let o = run(&["rollback", p(&journal), "--apply"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("24 restored"), "{}", stderr(&o));
    for r in &originals {
        let g = r["version_group_id"].as_str().unwrap();
        let live = stub.live(g);
        assert_eq!(live["version"], 4);
        for k in ["storage", "run_config"] {
            assert_eq!(live[k].to_string(), r[k].to_string(), "{g}: {k} restored");
        }
        assert_eq!(
            live["flow_group"]["run_config"].to_string(),
            r["flow_group"]["run_config"].to_string()
        );
        assert_eq!(
            live["serialized_flow"]["tasks"],
            r["serialized_flow"]["tasks"]
        );
        assert_eq!(live["edges"], r["edges"], "{g}: dependencies kept");
    }
    assert!(stub.state.lock().unwrap().bad_requests.is_empty());

    // a group override with another image is refused: it would win over the runtime image
    {
        let mut st = stub.state.lock().unwrap();
        st.group_run_config.insert(
            "vg-team-a-flow-1".into(),
            run_config(1, "team-a", "registry.local:5000/elsewhere:1"),
        );
    }
    // the old inventory names versions the rollback replaced: refused, scan again
    let o = run(&base);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("24 refused"), "{}", stderr(&o));
    assert!(stderr(&o).contains("not live any more"), "{}", stderr(&o));
    scan_and_plan();
    let o = run(&base);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("23 ready, 1 refused"), "{err}");
    assert!(
        err.contains("override sets image \"registry.local:5000/elsewhere:1\""),
        "{err}"
    );
    assert!(
        !std::fs::read_to_string(out.join("prefect1/flows.json"))
            .unwrap()
            .contains("\"team-a-flow-1\"")
    );

    // a version someone else registers after this run read the group (and before its
    // turn) is not superseded: each group is read again right before its registration
    let done_before = common::journal::entries(&journal, "done").len();
    let mut apply = base.to_vec();
    apply.extend(["--apply", "--pause", "300ms"]);
    let child = clean_command(&apply)
        .env("PREFECT__CLOUD__API_KEY", KEY)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    common::journal::wait_for_done(&journal, done_before + 3, || true);
    let m: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("migration.json")).unwrap())
            .unwrap();
    let last = m["items"]
        .as_array()
        .unwrap()
        .iter()
        .rfind(|i| i["status"] == "ready")
        .unwrap();
    let group = last["write"]["create"]["input"]["version_group_id"]
        .as_str()
        .unwrap();
    let theirs = stub.register_elsewhere(group);
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("has a new live version"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        stub.live(group)["id"],
        theirs.as_str(),
        "their version stays live"
    );
}

/// `row` as an older version of its group: another id and version, archived or not, on
/// another image (Docker storage names it, as Prefect 1 kept it per version).
fn older_version(
    live: &Value,
    id: usize,
    version: i64,
    archived: bool,
    image: (&str, &str, &str),
) -> Value {
    let mut r = live.clone();
    r["id"] = json!(format!("00000000-0000-4000-a000-{id:012}"));
    r["version"] = json!(version);
    r["archived"] = json!(archived);
    r["created"] = json!(format!("2022-0{version}-01T00:00:00+00:00"));
    for path in ["/storage", "/serialized_flow/storage"] {
        let storage = r.pointer_mut(path).expect("Docker storage");
        storage["registry_url"] = json!(image.0);
        storage["image_name"] = json!(image.1);
        storage["image_tag"] = json!(image.2);
    }
    r
}

#[test]
fn archived_versions_are_kept_but_never_planned_or_migrated() {
    // live v3 of each flow on team C's Python 3.11 image; v1 and v2, archived, on team
    // B's Python 3.10 image: planning those would add a 3.10 runtime image for nothing
    let old = ("registry.local:5000/team-b", "flow-a", "2022-06-30");
    let names = ["orders-etl", "billing", "../../escape", "a/b"];
    let mut live_rows = vec![];
    let mut files = vec![];
    for (n, name) in names.iter().enumerate() {
        let mut r = row(n, "team-a", 1);
        r["name"] = json!(name);
        r["serialized_flow"]["name"] = json!(name);
        r["version"] = json!(3);
        r["version_group_id"] = json!(format!("vg-{n}"));
        r["flow_group"]["name"] = json!(format!("vg-{n}"));
        live_rows.push(r);
        files.push((
            format!("flows/flow_{n}.py"),
            format!(
                "import simplejson\nfrom jinja2 import Template\nfrom prefect import Flow, task\n\n\n@task\ndef render(rows):\n    return Template(\"x\").render(rows=simplejson.loads(rows))\n\n\nwith Flow({name:?}) as flow:\n    render(\"[1]\")\n"
            ),
        ));
    }
    let mut all_rows = live_rows.clone();
    for (n, live) in live_rows.iter().enumerate() {
        all_rows.push(older_version(live, 10 * n + 1, 1, true, old));
        all_rows.push(older_version(live, 10 * n + 2, 2, true, old));
    }
    let refs: Vec<(&str, String)> = files.iter().map(|(p, t)| (p.as_str(), t.clone())).collect();
    let git = GitRepo::new(&refs);

    let tmp = tempfile::tempdir().unwrap();
    let oci = tmp.path().join("oci");
    build_fixtures(
        &[],
        &["--oci", p(&oci)],
        &["team-c-report", "team-b-flow-a-py310"],
    );
    let imgs = tmp.path().join("images.json");
    ok(&["scan", "oci-dir", p(&oci), "--no-cache", "-o", p(&imgs)]);
    let scan_and_plan = |rows: &[Value], dir: &str| {
        let d = tmp.path().join(dir);
        std::fs::create_dir_all(&d).unwrap();
        let export = d.join("export.json");
        std::fs::write(&export, json!({"data": {"flow": rows}}).to_string()).unwrap();
        let inv = d.join("inventory.json");
        ok(&[
            "scan",
            "prefect1",
            "--export",
            p(&export),
            "--images",
            p(&imgs),
            "--flows-repo",
            p(git.path()),
            "-o",
            p(&inv),
        ]);
        let plan = d.join("plan.json");
        ok(&[
            "plan",
            "--image-registry",
            "registry.local:5000/prefect",
            p(&inv),
            "-o",
            p(&plan),
        ]);
        let read = |f: &std::path::Path| -> Value {
            serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap()
        };
        (read(&inv), read(&plan), plan, inv)
    };
    let (inv, plan, plan_path, inv_path) = scan_and_plan(&all_rows, "all");
    let (_, live_plan, _, _) = scan_and_plan(&live_rows, "live");

    // the inventory keeps all 12 versions; 8 are not live, and the 3.10 image is only theirs
    let flows = inv["flows"].as_array().unwrap();
    assert_eq!(flows.len(), 12);
    let live: Vec<&Value> = flows.iter().filter(|f| f["state"] == "live").collect();
    assert_eq!(live.len(), 4);
    assert!(live.iter().all(|f| f["version"] == 3));
    let archived: Vec<&Value> = flows.iter().filter(|f| f["state"] == "archived").collect();
    assert_eq!(archived.len(), 8);
    assert!(
        archived
            .iter()
            .all(|f| f["archived"] == true && f["requirement"].is_null())
    );
    assert!(
        archived[0]["state_reason"]
            .as_str()
            .unwrap()
            .contains("of its group"),
        "{}",
        archived[0]["state_reason"]
    );
    let links = &inv["flow_links"];
    let py310 = inv["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["references"].to_string().contains("team-b/flow-a"))
        .unwrap()["id"]
        .clone();
    assert_eq!(links["archived_only"], json!([py310]));
    assert!(!links["orphans"].as_array().unwrap().contains(&py310));
    assert_eq!(links["not_live"].as_array().unwrap().len(), 8);

    // the plan places the four live flows only, at the minimum those need
    let s = &plan["summary"];
    assert_eq!(
        (
            s["flows"].as_u64(),
            s["planned"].as_u64(),
            s["excluded"].as_u64()
        ),
        (Some(4), Some(4), Some(8))
    );
    assert_eq!(plan["excluded"].as_array().unwrap().len(), 8);
    assert!(
        plan["excluded"][0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("not live (archived)")
    );
    for k in ["runtime_images", "lower_bound"] {
        assert_eq!(
            s[k], live_plan["summary"][k],
            "{k} equals the live flows' own minimum"
        );
    }
    assert_eq!(
        s["runtime_images"], 1,
        "four flows on one image need one runtime image"
    );
    assert!(
        plan["runtime_images"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["python"] == "3.11")
    );
    let planned: Vec<&str> = plan["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["flow"].as_str().unwrap())
        .collect();
    let live_keys: Vec<&str> = live.iter().map(|f| f["key"].as_str().unwrap()).collect();
    assert_eq!(planned.len(), 4);
    assert!(planned.iter().all(|k| live_keys.contains(k)), "{planned:?}");
    // the plan records the inventory it was made from
    let recorded = &plan["inputs"][0];
    assert_eq!(
        (recorded["role"].as_str(), recorded["path"].as_str()),
        (Some("inventory"), Some("inventory.json"))
    );
    assert!(recorded["sha256"].as_str().unwrap().starts_with("sha256:"));

    // migrate (from the export, a dry run): one Git-storage flow per live registration
    let out = tmp.path().join("all/migration");
    let export = tmp.path().join("all/export.json");
    let runtime = tmp.path().join("all/runtime.oci");
    ok(&[
        "build",
        p(&plan_path),
        "--wheels",
        "fixtures/wheels",
        "--no-index",
        "-o",
        p(&runtime),
        "--base-from",
        "members",
    ]);
    let migrate_at = |ref_from: &str, to: &std::path::Path, extra: &[&str]| {
        let mut args = vec![
            "migrate",
            p(&plan_path),
            "--runtime-images",
            p(&runtime),
            "--repo-host",
            "git.example.com",
            "--repo",
            "platform/flows",
            "--flows-repo",
            p(git.path()),
            "--ref-from",
            ref_from,
            "--export",
            p(&export),
            "-o",
            p(to),
        ];
        args.extend(extra);
        run(&args)
    };
    let migrate = |extra: &[&str]| migrate_at("branch=main", &out, extra);
    // an annotated tag: Prefect 1 Git storage cannot check one out, so nothing moves
    git.git(&["tag", "-a", "release-1", "-m", "release 1"]);
    let elsewhere = tempfile::tempdir().unwrap();
    let o = migrate_at("tag=release-1", elsewhere.path(), &[]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("4 flows: 0 ready, 4 refused"), "{err}");
    assert!(
        err.contains("✗ git-ref: tag release-1 is an annotated tag, which Prefect 1 Git storage cannot check out"),
        "{err}"
    );

    let o = migrate(&[]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("4 flows: 4 ready, 0 refused"), "{err}");
    assert_eq!(err.matches("skipped  ").count(), 8, "{err}");
    assert!(
        err.contains("not live (archived): version 1 is archived; version 3 of its group"),
        "{err}"
    );
    let m: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("migration.json")).unwrap())
            .unwrap();
    // every runtime image can fetch the code: dulwich, read back from the built image
    for it in m["items"].as_array().unwrap() {
        let fetch = it["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == "fetch-code")
            .unwrap_or_else(|| panic!("no fetch-code check: {it}"));
        assert_eq!(fetch["ok"], true, "{fetch}");
        assert!(
            fetch["detail"]
                .as_str()
                .unwrap()
                .ends_with("git-storage: dulwich 0.22.8"),
            "{fetch}"
        );
    }
    let registration = m["items"][0]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "registration")
        .unwrap();
    // an export proves nothing about the server: not a ✓
    assert!(
        registration["detail"]
            .as_str()
            .unwrap()
            .starts_with("not checked against a server (export)"),
        "{registration}"
    );
    assert_eq!(registration["checked"], false);
    let diff = std::fs::read_to_string(out.join("diff.md")).unwrap();
    assert!(
        diff.contains("- – registration: not checked against a server (export)"),
        "{diff}"
    );
    assert!(!diff.contains("✓ registration"), "{diff}");
    assert_eq!(diff.matches("not live (archived)").count(), 8, "{diff}");
    let flows_json = out.join("prefect1/flows.json");
    assert!(common::prefect1::validate(&flows_json).contains("4 flow(s)"));
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&flows_json).unwrap()).unwrap();
    let mut written: Vec<&str> = doc["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    written.sort();
    assert_eq!(written, ["../../escape", "a/b", "billing", "orders-etl"]);
    // names are data: every file stays under -o, named by a sanitized name and the id
    for sub in ["prefect1/flows", "prefect1/graphql"] {
        let names: Vec<String> = std::fs::read_dir(out.join(sub))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 4, "{names:?}");
        assert!(
            names
                .iter()
                .all(|n| !n.contains('/') && !n.starts_with('.')),
            "{names:?}"
        );
    }
    let listing = |d: &std::path::Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    };
    assert_eq!(listing(tmp.path()), ["all", "images.json", "live", "oci"]);
    assert_eq!(
        listing(&tmp.path().join("all")),
        [
            "export.json",
            "inventory.json",
            "migration",
            "plan.json",
            "runtime-images",
            "runtime.oci"
        ]
    );
    assert_eq!(m["inputs"][0]["role"], "plan");
    assert_eq!(m["inputs"][1]["path"], "../inventory.json");

    // an inventory that changed after planning is refused, naming the file and the fix
    let mut text = std::fs::read_to_string(&inv_path).unwrap();
    text.push('\n');
    std::fs::write(&inv_path, text).unwrap();
    let o = migrate(&[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("has changed since") && err.contains("inventory.json"),
        "{err}"
    );
    assert!(err.contains("unsprawl plan"), "{err}");
}

/// The idempotency key we send equals the one Prefect 1.4.1's own
/// `register_serialized_flow` computes, on flows with floats in exponent form, non-ASCII
/// text, nested empty containers, large integers and keys that sort differently.
#[test]
fn idempotency_keys_equal_what_prefect_1_4_1_computes() {
    let base: Value = serde_json::from_str(include_str!(
        "../../fixtures/prefect1/flow_docker_k8s.serialized.json"
    ))
    .unwrap();
    let extras = [
        json!(1e-05),
        json!(0.1),
        json!(1e100),
        json!(-2.5e-300),
        json!(123456789012345678_i64),
        json!(3.0),
        json!("Zürich — 東京 🚀"),
        json!("quote \" and \\ backslash\n"),
        json!({}),
        json!([]),
        json!({"a": {"b": [[], {}]}}),
        json!([1, "two", null, true, 2.5]),
        json!({"Z": 1, "a": 2, "_": 3, "é": 4}),
        json!(null),
        json!(false),
        json!(-0.0),
        json!(1.5e-7),
        json!("\u{7f}\u{1b}"),
        json!({"nested": {"deep": {"deeper": {"x": 1e21}}}}),
        json!([0.000001, 1e16, 12345.678]),
        json!(""),
        json!(u64::MAX),
    ];
    let flows: Vec<Value> = extras
        .iter()
        .enumerate()
        .map(|(i, extra)| {
            let mut f = base.clone();
            f["name"] = json!(format!("flow-{i}"));
            f["parameters"] = json!([{"name": "p", "default": extra, "required": false}]);
            f["environment"] = json!({"labels": [], "metadata": {"x": extra}});
            f
        })
        .collect();
    assert!(flows.len() >= 20);
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("flows.json");
    std::fs::write(&file, serde_json::to_string(&flows).unwrap()).unwrap();
    let out = std::process::Command::new(common::prefect1::venv().join("bin/python"))
        .arg(common::repo().join("tests/tools/prefect1_idempotency_keys.py"))
        .arg(&file)
        .env("HOME", tmp.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(theirs.len(), flows.len());
    // the document's own JSON, read back as Prefect reads it
    let ours: Vec<String> =
        serde_json::from_str::<Vec<Value>>(&std::fs::read_to_string(&file).unwrap())
            .unwrap()
            .iter()
            .map(unsprawl::migrate::prefect1::idempotency_key)
            .collect();
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        assert_eq!(a, b, "flow {i} with {}", extras[i]);
    }
}
