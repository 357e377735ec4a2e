//! The migration end to end against a real Prefect 3 server: 24 deployments of three
//! teams, each baked into a per-deployment image, move to a git_clone pull step on their
//! runtime image. Dry run first (nothing changes), then an apply killed part way, resumed
//! without writing anything twice, read back over REST and `prefect deployment inspect`;
//! then a rollback restores every deployment to the byte; then a broken reference and a
//! deployment changed since the scan are refused and never written.

use crate::common;

use std::collections::{BTreeMap, HashMap};
use std::process::{Output, Stdio};
use std::time::Instant;

use common::git_repo::{GitRepo, clean_command, stderr};
use common::journal::{done_keys, wait_for_done};
use common::prefect3_server::Server;
use common::registry::{Faults, Proxy, ProxyMode};
use common::*;
use reqwest::Method;
use serde_json::{Value, json};

const TEAMS: &[&str] = &["team-d", "team-e", "team-f"];
const PER_TEAM: usize = 8;
const IMAGE: &str = "registry.local:5000/team-d/etl:2024-11-01";

fn flow_file(team: &str, n: usize) -> (String, String) {
    (
        format!("teams/{team}/flow_{n}.py"),
        format!(
            "import pandas as pd\nfrom prefect import flow, task\n\n\n@task\ndef extract():\n    return pd.DataFrame({{\"x\": [{n}]}})\n\n\n@flow(name=\"{team}-flow-{n}\")\ndef flow_{n}():\n    return extract().sum()\n"
        ),
    )
}

fn run(args: &[&str]) -> Output {
    clean_command(args).output().unwrap()
}

/// Every deployment by id, whole, as the server returns it.
fn all_deployments(server: &Server) -> BTreeMap<String, Value> {
    server
        .call(
            Method::POST,
            "deployments/filter",
            Some(json!({"limit": 200})),
        )
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["id"].as_str().unwrap().to_string(), d.clone()))
        .collect()
}

/// `migrate --apply` of `plan` onto the runtime images in `built`, the code at the
/// flows repository's active branch, documents and journal into `out`.
fn apply(
    plan: &std::path::Path,
    built: &std::path::Path,
    git: &GitRepo,
    out: &std::path::Path,
) -> Output {
    run(&[
        "migrate",
        p(plan),
        "--runtime-images",
        p(built),
        "--repo-url",
        "https://git.example.com/platform/flows.git",
        "--flows-repo",
        p(git.path()),
        "-o",
        p(out),
        "--apply",
    ])
}

/// Fixture images (`images`, from `fixtures/images` and `spec_dirs`) scanned, the
/// deployments `api` serves linked with the flows repository, planned for
/// `registry.local:5000/prefect` and built with `--base-from members`, all under `d`:
/// the plan and the built layout.
fn plan_and_build(
    d: &std::path::Path,
    api: &str,
    git: &GitRepo,
    spec_dirs: &[&str],
    images: &[&str],
) -> (std::path::PathBuf, std::path::PathBuf) {
    let oci = d.join("oci");
    build_fixtures(spec_dirs, &["--oci", p(&oci)], images);
    let imgs = d.join("images.json");
    ok(&["scan", "oci-dir", p(&oci), "--no-cache", "-o", p(&imgs)]);
    let inv = d.join("inventory.json");
    ok(&[
        "scan",
        "prefect",
        "--api",
        api,
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
    let built = d.join("runtime.oci");
    ok(&["build", p(&plan), "-o", p(&built), "--base-from", "members"]);
    (plan, built)
}

#[test]
fn deployments_migrate_resume_after_a_kill_and_roll_back_to_the_byte() {
    let server = Server::start();
    server.cli(&["work-pool", "create", "k8s-pool", "--type", "kubernetes"]);
    let mut files = vec![];
    for team in TEAMS {
        for n in 1..=PER_TEAM {
            let flow = server.call(
                Method::POST,
                "flows/",
                Some(json!({"name": format!("{team}-flow-{n}")})),
            );
            let (path, text) = flow_file(team, n);
            server.call(
                Method::POST,
                "deployments/",
                Some(json!({
                    "name": format!("{team}-flow-{n}-docker"),
                    "flow_id": flow["id"],
                    "work_pool_name": "k8s-pool",
                    "work_queue_name": if n % 2 == 0 { (*team).to_string() } else { "default".to_string() },
                    "job_variables": {"image": IMAGE, "namespace": team, "env": {"TEAM": team, "N": n.to_string()}},
                    "entrypoint": format!("{path}:flow_{n}"),
                    "path": ".",
                    "pull_steps": [],
                    "tags": [team, "etl"],
                })),
            );
            files.push((path, text));
        }
    }
    // one deployment was moved by hand already: a git_clone step on a shared image that no
    // scanned source holds. It is already migrated (not dangling) and never touched.
    let done_flow = server.call(
        Method::POST,
        "flows/",
        Some(json!({"name": "team-d-flow-1"})),
    );
    let by_hand = server.call(
        Method::POST,
        "deployments/",
        Some(json!({
            "name": "by-hand",
            "flow_id": done_flow["id"],
            "work_pool_name": "k8s-pool",
            "job_variables": {"image": "registry.local:5000/platform/runtime:3.11-shared"},
            "entrypoint": "teams/team-d/flow_1.py:flow_1",
            "pull_steps": [{"prefect.deployments.steps.git_clone": {
                "repository": "https://git.example.com/platform/flows.git", "branch": "main"}}],
            "tags": ["team-d"],
        })),
    );
    let by_hand_id = by_hand["id"].as_str().unwrap().to_string();
    let refs: Vec<(&str, String)> = files.iter().map(|(p, t)| (p.as_str(), t.clone())).collect();
    let git = GitRepo::new(&refs);
    git.add_origin();
    let original = all_deployments(&server);
    assert_eq!(original.len(), TEAMS.len() * PER_TEAM + 1);

    // scan → link (with the flows repository) → plan
    let tmp = tempfile::tempdir().unwrap();
    let oci = tmp.path().join("oci");
    // the flow image has no git; the platform's CI image (same Debian release) has it
    build_fixtures(
        &["fixtures/fetch"],
        &["--oci", p(&oci)],
        &["team-d-etl-prefect3", "platform-git"],
    );
    let imgs = tmp.path().join("images.json");
    ok(&["scan", "oci-dir", p(&oci), "--no-cache", "-o", p(&imgs)]);
    let inv = tmp.path().join("inventory.json");
    ok(&[
        "scan",
        "prefect",
        "--api",
        &server.api,
        "--images",
        p(&imgs),
        "--flows-repo",
        p(git.path()),
        "-o",
        p(&inv),
    ]);
    let inv_doc: Value = serde_json::from_str(&std::fs::read_to_string(&inv).unwrap()).unwrap();
    let key = format!("prefect3:{by_hand_id}");
    let hand = inv_doc["flows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["key"] == key.as_str())
        .unwrap();
    assert_eq!(hand["link"]["status"], "already-migrated");
    assert_eq!(inv_doc["flow_links"]["already_migrated"], json!([key]));
    assert_eq!(inv_doc["flow_links"]["dangling"], json!([]));
    let plan = tmp.path().join("plan.json");
    ok(&[
        "plan",
        "--image-registry",
        "registry.local:5000/prefect",
        p(&inv),
        "-o",
        p(&plan),
    ]);
    let report_dir = tmp.path().join("report");
    ok(&[
        "report",
        p(&inv),
        "--plan",
        p(&plan),
        "--format",
        "json,md",
        "--no-timestamp",
        "-o",
        p(&report_dir),
    ]);
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(report_dir.join("report.json")).unwrap())
            .unwrap();
    assert_eq!(
        report["already_migrated"],
        json!(["team-d-flow-1/by-hand (registry.local:5000/platform/runtime:3.11-shared)"])
    );
    assert_eq!(report["dangling"], json!([]));
    let md = std::fs::read_to_string(report_dir.join("report.md")).unwrap();
    assert!(md.contains("| already migrated flows | 1 |"), "{md}");
    let plan_doc: Value = serde_json::from_str(&std::fs::read_to_string(&plan).unwrap()).unwrap();
    let runtime = plan_doc["runtime_images"][0]["name"]
        .as_str()
        .unwrap()
        .to_string();

    // before its runtime image exists, no deployment may move
    let out = tmp.path().join("migration");
    let built = tmp.path().join("runtime.oci");
    let mut unbuilt = vec![
        "migrate",
        p(&plan),
        "--repo-url",
        "https://git.example.com/platform/flows.git",
        "--flows-repo",
        p(git.path()),
        "--runtime-images",
        p(&built),
        "-o",
        p(&out),
    ];
    let o = run(&unbuilt);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("24 flows: 0 ready, 24 refused"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("is not built yet"), "{}", stderr(&o));
    unbuilt.push("--apply");
    let o = run(&unbuilt);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(all_deployments(&server), original, "nothing written");
    let o = run(&["build", p(&plan), "-o", p(&built), "--base-from", "members"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let build_doc: Value =
        serde_json::from_str(&std::fs::read_to_string(built.join("build.json")).unwrap()).unwrap();
    let added: Vec<String> = build_doc["images"][0]["additions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            format!(
                "{} from {}",
                a["name"].as_str().unwrap(),
                a["from"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        added.contains(&"git from registry.local:5000/platform/ci-git:2024-10".to_string())
            && added.contains(&"ca-certificates from the base".to_string()),
        "{added:?}"
    );
    let base = [
        "migrate",
        p(&plan),
        "--runtime-images",
        p(&built),
        "--repo-url",
        "https://git.example.com/platform/flows.git",
        "--flows-repo",
        p(git.path()),
        "--git-token-secret",
        "flows-git-token",
        "-o",
        p(&out),
    ];

    // the token's Secret block does not exist yet: every deployment is refused, naming it
    let o = run(&base);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("24 flows: 0 ready, 24 refused"), "{err}");
    assert!(
        err.contains(
            "✗ git-token: the Secret block \"flows-git-token\" does not exist on the server"
        ),
        "{err}"
    );
    let secret_type = server.call(reqwest::Method::GET, "block_types/slug/secret", None);
    let schemas = server.call(
        reqwest::Method::POST,
        "block_schemas/filter",
        Some(json!({"block_schemas": {"block_type_id": {"any_": [secret_type["id"]]}}})),
    );
    server.call(
        reqwest::Method::POST,
        "block_documents/",
        Some(json!({
            "name": "flows-git-token",
            "block_type_id": secret_type["id"],
            "block_schema_id": schemas[0]["id"],
            "data": {"value": "tok-never-printed"},
        })),
    );

    // dry run: every deployment ready, the diff printed (-v), nothing changed on the server
    let mut verbose = base.to_vec();
    verbose.push("-v");
    let o = run(&verbose);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("24 flows: 24 ready, 0 refused"), "{err}");
    assert!(
        err.contains(
            "skipped  team-d-flow-1/by-hand: already migrated: its code comes from git_clone"
        ),
        "{err}"
    );
    assert!(err.contains("from active branch"), "{err}");
    assert!(
        err.contains(&format!("job_variables.image: \"{IMAGE}\" → \"{runtime}\"")),
        "{err}"
    );
    assert!(err.contains("dry run: nothing was written"), "{err}");
    assert!(!err.contains("tok-never-printed"), "{err}");
    assert_eq!(
        all_deployments(&server),
        original,
        "a dry run writes nothing"
    );
    let m: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("migration.json")).unwrap())
            .unwrap();
    assert_eq!(m["schema"], "unsprawl/migration/v3");
    for it in m["items"].as_array().unwrap() {
        let checks = it["checks"].as_array().unwrap();
        let named = |n: &str| checks.iter().find(|c| c["check"] == n).cloned();
        if it["status"] != "ready" {
            continue;
        }
        let fetch = named("fetch-code").expect("every moved deployment has the check");
        assert_eq!(fetch["ok"], true, "{fetch}");
        assert!(
            fetch["detail"]
                .as_str()
                .unwrap()
                .ends_with("git-clone: package git, package ca-certificates, /usr/bin/git"),
            "{fetch}"
        );
        assert_eq!(named("git-token").unwrap()["ok"], true);
    }
    assert_eq!(
        std::fs::read_dir(out.join("prefect3/patches"))
            .unwrap()
            .count(),
        24
    );
    let yaml = std::fs::read_to_string(out.join("prefect3/prefect.yaml")).unwrap();
    assert!(yaml.contains("prefect.deployments.steps.git_clone") && yaml.contains(&runtime));
    assert!(
        std::fs::read_to_string(out.join("diff.md"))
            .unwrap()
            .contains("✓ flow-file")
    );

    // apply, killed after a few writes (a real SIGKILL, mid-run)
    let journal = out.join("journal.jsonl");
    let mut args = base.to_vec();
    args.extend(["--apply", "--pause", "300ms"]);
    let mut child = clean_command(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_done(&journal, 5, || child.try_wait().unwrap().is_none());
    child.kill().unwrap();
    child.wait().unwrap();
    let first_run = done_keys(&journal);
    assert!(first_run.len() < 24, "the kill came before the end");
    let between = all_deployments(&server);

    // run again: it continues, and what was written before is not written again
    let mut args = base.to_vec();
    args.push("--apply");
    let t = Instant::now();
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    eprintln!(
        "resumed apply: {} deployments written in {:.2?} (the whole command)",
        24 - first_run.len(),
        t.elapsed()
    );
    let all_done = done_keys(&journal);
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for k in &all_done {
        *counts.entry(k).or_default() += 1;
    }
    assert_eq!(counts.len(), 24, "every deployment written");
    assert!(
        counts.values().all(|&c| c == 1),
        "none written twice: {counts:?}"
    );
    let after = all_deployments(&server);
    for key in &first_run {
        let id = key.trim_start_matches("prefect3:");
        assert_eq!(
            after[id]["updated"], between[id]["updated"],
            "{key} untouched by the resume"
        );
    }

    // read back: every deployment on the runtime image, cloned from git; the one moved by
    // hand as it was
    assert_eq!(after[&by_hand_id], original[&by_hand_id]);
    for (id, d) in after.iter().filter(|(id, _)| **id != by_hand_id) {
        let before = &original[id];
        assert_eq!(d["job_variables"]["image"], runtime.as_str());
        assert_eq!(
            d["job_variables"]["namespace"], before["job_variables"]["namespace"],
            "merged, not replaced"
        );
        assert_eq!(d["job_variables"]["env"], before["job_variables"]["env"]);
        assert_eq!(
            d["work_queue_name"], before["work_queue_name"],
            "queue kept"
        );
        assert_eq!(d["path"], Value::Null);
        assert_eq!(d["entrypoint"], before["entrypoint"]);
        let step = &d["pull_steps"][0]["prefect.deployments.steps.git_clone"];
        assert_eq!(
            step["repository"],
            "https://git.example.com/platform/flows.git"
        );
        assert_eq!(step["branch"], "main");
        assert_eq!(
            step["access_token"],
            "{{ prefect.blocks.secret.flows-git-token }}"
        );
        assert_eq!(d["tags"], before["tags"]);
    }
    let inspect = server.cli_output(&[
        "deployment",
        "inspect",
        "team-e-flow-3/team-e-flow-3-docker",
    ]);
    assert!(
        inspect.contains("git_clone") && inspect.contains(&runtime),
        "{inspect}"
    );

    // a third run finds nothing to do
    let o = run(&args);
    assert!(o.status.success());
    assert!(
        stderr(&o).contains("0 ready, 0 refused, 24 already migrated"),
        "{}",
        stderr(&o)
    );
    assert_eq!(all_deployments(&server), after);

    // rollback: a dry run first, then for real; every deployment as it was, to the byte
    let o = run(&["rollback", p(&journal)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("24 to restore"), "{}", stderr(&o));
    assert_eq!(
        all_deployments(&server),
        after,
        "a rollback dry run writes nothing"
    );
    let o = run(&["rollback", p(&journal), "--apply"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let restored = all_deployments(&server);
    let strip = |m: &BTreeMap<String, Value>| -> BTreeMap<String, Value> {
        m.iter()
            .map(|(k, d)| {
                let mut d = d.clone();
                d.as_object_mut().unwrap().remove("updated");
                (k.clone(), d)
            })
            .collect()
    };
    assert_eq!(
        serde_json::to_string_pretty(&strip(&restored)).unwrap(),
        serde_json::to_string_pretty(&strip(&original)).unwrap(),
        "every deployment restored field for field (only the update time moves)"
    );
    let o = run(&["rollback", p(&journal), "--apply"]);
    assert!(o.status.success());
    assert!(
        stderr(&o).contains("0 restored, 24 already as before"),
        "{}",
        stderr(&o)
    );

    // refusals: a reference where one flow file is gone, a deployment changed since the scan
    git.git(&["checkout", "-q", "-b", "broken"]);
    git.git(&["rm", "-q", "teams/team-f/flow_8.py"]);
    git.commit(&[], "drop a flow");
    let (id, d) = restored
        .iter()
        .find(|(_, d)| d["name"] == "team-d-flow-1-docker")
        .unwrap();
    let mut jv = d["job_variables"].clone();
    jv["namespace"] = "moved".into();
    server.call(
        Method::PATCH,
        &format!("deployments/{id}"),
        Some(json!({"job_variables": jv, "work_pool_name": "k8s-pool", "work_queue_name": d["work_queue_name"]})),
    );
    let changed = all_deployments(&server);
    let o = run(&base);
    assert_eq!(o.status.code(), Some(1), "refusals exit 1: {}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("22 ready, 2 refused"), "{err}");
    assert!(
        err.contains("teams/team-f/flow_8.py does not exist at branch broken"),
        "{err}"
    );
    assert!(err.contains("changed since the scan"), "{err}");
    let patches: Vec<String> = std::fs::read_dir(out.join("prefect3/patches"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(patches.len(), 22);
    assert!(
        !patches
            .iter()
            .any(|p| p.starts_with("team-f-flow-8") || p.starts_with("team-d-flow-1-"))
    );
    assert_eq!(
        all_deployments(&server),
        changed,
        "a dry run writes nothing"
    );

    // a deployment someone changes after the run read it (and before its turn) is not
    // written: the run reads each deployment again right before its PATCH, and stops
    let done_before = done_keys(&journal).len();
    let mut args = base.to_vec();
    args.extend(["--apply", "--pause", "300ms"]);
    let child = clean_command(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_done(&journal, done_before + 3, || true);
    let m: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("migration.json")).unwrap())
            .unwrap();
    let last = m["items"]
        .as_array()
        .unwrap()
        .iter()
        .rfind(|i| i["status"] == "ready")
        .unwrap();
    let id = last["id"].as_str().unwrap();
    let d = server.call(Method::GET, &format!("deployments/{id}"), None);
    let mut jv = d["job_variables"].clone();
    jv["namespace"] = "late-change".into();
    server.call(
        Method::PATCH,
        &format!("deployments/{id}"),
        Some(json!({"job_variables": jv, "work_pool_name": "k8s-pool", "work_queue_name": d["work_queue_name"]})),
    );
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("changed since this run read it"),
        "{}",
        stderr(&o)
    );
    let d = server.call(Method::GET, &format!("deployments/{id}"), None);
    assert_eq!(
        d["job_variables"]["namespace"], "late-change",
        "not overwritten"
    );
    assert_eq!(d["pull_steps"], json!([]), "not migrated");
}

/// Parity on a real server: a deployment whose image set `REPORT_BUCKET` (and installed
/// libpq5) gets that env merged into its `job_variables.env`, never over a value the
/// deployment sets itself; one whose image baked in a password is refused, and the
/// password is in no output, document, journal or deployment.
#[test]
fn image_env_is_carried_into_job_variables_and_a_baked_secret_is_refused_unprinted() {
    const SECRET: &str = "hunter2-prod-9f8e7d";
    let server = Server::start();
    server.cli(&["work-pool", "create", "k8s-pool", "--type", "kubernetes"]);
    let deployments = [
        // (name, image, the deployment's own env)
        (
            "report",
            "registry.local:5000/team-f/report:2024-12-01",
            json!({"TEAM": "team-f"}),
        ),
        (
            "report-eu",
            "registry.local:5000/team-f/report-eu:2024-12-01",
            json!({"REPORT_BUCKET": "s3://set-by-the-deployment"}),
        ),
        (
            "etl",
            "registry.local:5000/team-e/etl:2024-12-01",
            json!({"TEAM": "team-e"}),
        ),
    ];
    let mut files = vec![];
    for (name, image, env) in &deployments {
        let flow = server.call(Method::POST, "flows/", Some(json!({ "name": name })));
        let path = format!("teams/parity/{name}.py");
        server.call(
            Method::POST,
            "deployments/",
            Some(json!({
                "name": name,
                "flow_id": flow["id"],
                "work_pool_name": "k8s-pool",
                "job_variables": {"image": image, "env": env},
                "entrypoint": format!("{path}:main"),
                "pull_steps": [],
            })),
        );
        files.push((
            path,
            "from prefect import flow\n\n\n@flow\ndef main():\n    return 1\n".to_string(),
        ));
    }
    let refs: Vec<(&str, String)> = files.iter().map(|(p, t)| (p.as_str(), t.clone())).collect();
    let git = GitRepo::new(&refs);
    git.add_origin();
    let original = all_deployments(&server);

    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let oci = d.join("oci");
    let (plan, built) = plan_and_build(
        d,
        &server.api,
        &git,
        &["fixtures/parity", "fixtures/fetch"],
        &[
            "team-e-secrets",
            "team-f-libpq",
            "team-f-libpq-eu",
            "platform-git",
        ],
    );
    let out = d.join("migration");
    let o = apply(&plan, &built, &git, &out);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "one refused: {err}");
    assert!(err.contains("3 flows: 2 ready, 1 refused"), "{err}");
    assert!(
        err.contains("✗ parity: the old image set DB_PASSWORD to values that look like secrets (withheld here)"),
        "{err}"
    );

    // read back: the env merged in, the deployment's own value kept, the etl untouched
    let after = all_deployments(&server);
    let by_name = |name: &str| {
        after
            .values()
            .find(|d| d["name"] == name)
            .unwrap_or_else(|| panic!("{name}"))
    };
    assert_eq!(
        by_name("report")["job_variables"]["env"],
        json!({"TEAM": "team-f", "REPORT_BUCKET": "s3://team-f/reports"})
    );
    assert_eq!(
        by_name("report-eu")["job_variables"]["env"],
        json!({"REPORT_BUCKET": "s3://set-by-the-deployment"}),
        "never over a value the deployment sets"
    );
    let etl = by_name("etl");
    assert_eq!(
        etl,
        &original[etl["id"].as_str().unwrap()],
        "refused: untouched"
    );

    // the password: in no byte written, printed or stored on the server
    assert!(!err.contains(SECRET) && !String::from_utf8_lossy(&o.stdout).contains(SECRET));
    assert!(!serde_json::to_string(&after).unwrap().contains(SECRET));
    let mut stack = vec![d.to_path_buf()];
    let mut checked = 0;
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            if path.starts_with(&oci) {
                continue; // the team's own image: it holds the password, by design
            }
            if path.is_dir() {
                stack.push(path);
            } else if !String::from_utf8_lossy(&std::fs::read(&path).unwrap()).contains(SECRET) {
                checked += 1;
            } else {
                panic!("{} holds the password", path.display());
            }
        }
    }
    assert!(checked > 10, "{checked} files checked");
}

/// The Prefect API through a hostile network (the project's own proxy): resets and 503s
/// at random, and two PATCHes whose answers are lost after the server applied them. The
/// apply rides it out: every deployment moved, each written once in the journal, read
/// back as the migration says.
#[test]
fn apply_through_resets_503s_and_lost_answers_writes_each_deployment_once() {
    let server = Server::start();
    server.cli(&["work-pool", "create", "k8s-pool", "--type", "kubernetes"]);
    let mut files = vec![];
    for n in 1..=6 {
        let flow = server.call(
            Method::POST,
            "flows/",
            Some(json!({"name": format!("team-d-flow-{n}")})),
        );
        let (path, text) = flow_file("team-d", n);
        server.call(
            Method::POST,
            "deployments/",
            Some(json!({
                "name": format!("team-d-flow-{n}-docker"),
                "flow_id": flow["id"],
                "work_pool_name": "k8s-pool",
                "job_variables": {"image": IMAGE, "env": {"N": n.to_string()}},
                "entrypoint": format!("{path}:flow_{n}"),
                "pull_steps": [],
            })),
        );
        files.push((path, text));
    }
    let refs: Vec<(&str, String)> = files.iter().map(|(p, t)| (p.as_str(), t.clone())).collect();
    let git = GitRepo::new(&refs);
    git.add_origin();
    let port: u16 = server
        .api
        .trim_start_matches("http://127.0.0.1:")
        .trim_end_matches("/api")
        .parse()
        .unwrap();
    let proxy = Proxy::start(
        port,
        ProxyMode::Faults(Faults {
            seed: 11,
            reset: 60,
            unavailable: 60,
            lose_answer_of_writes: &[2, 5],
            ..Faults::default()
        }),
    );
    let api = format!("http://{}/api", proxy.host());

    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (plan, built) = plan_and_build(
        d,
        &api,
        &git,
        &["fixtures/fetch"],
        &["team-d-etl-prefect3", "platform-git"],
    );
    let out = d.join("migration");
    let o = apply(&plan, &built, &git, &out);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    let injected = proxy.injected();
    eprintln!("faults injected: {injected:?}");
    assert_eq!(injected.get("lost answer"), Some(&2), "{injected:?}");
    assert!(
        injected.contains_key("reset") && injected.contains_key("503"),
        "{injected:?}"
    );
    let done = done_keys(&out.join("journal.jsonl"));
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for k in &done {
        *counts.entry(k).or_default() += 1;
    }
    assert_eq!(counts.len(), 6, "every deployment written: {done:?}");
    assert!(counts.values().all(|&c| c == 1), "none twice: {counts:?}");
    let runtime = json!(
        serde_json::from_str::<Value>(&std::fs::read_to_string(&plan).unwrap()).unwrap()["runtime_images"]
            [0]["name"]
    );
    for d in all_deployments(&server).values() {
        assert_eq!(d["job_variables"]["image"], runtime, "{d}");
        assert!(
            d["pull_steps"][0]
                .get("prefect.deployments.steps.git_clone")
                .is_some(),
            "{d}"
        );
    }
}
