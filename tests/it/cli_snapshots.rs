//! Snapshots of what a person sees: the demo's summary and the scan help text. A change
//! here is a change of the user interface; review it with `cargo insta review`.

use crate::common;

use std::process::Command;

fn run_in(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_unsprawl"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the unsprawl binary runs")
}

#[test]
fn demo_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run_in(tmp.path(), &["demo", "-o", "out"]);
    assert!(out.status.success());
    insta::assert_snapshot!(String::from_utf8_lossy(&out.stderr));
    // the demo's inventory is a valid v1 document with every image analysed
    let inv = common::read_inventory(&tmp.path().join("out/inventory.json"));
    assert!(
        inv.images
            .iter()
            .all(|i| i.status == unsprawl::inventory::Status::Ok)
    );
    // a second run finds every layer in its cache
    let again = run_in(tmp.path(), &["demo", "-o", "out"]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("(0 read, 19 from cache)"));
}

#[test]
fn quiet_says_nothing_verbose_says_every_detail_and_vv_traces() {
    let tmp = tempfile::tempdir().unwrap();
    let quiet = run_in(tmp.path(), &["demo", "-o", "out", "--quiet"]);
    assert!(quiet.status.success());
    assert_eq!(
        String::from_utf8_lossy(&quiet.stderr),
        "",
        "--quiet: errors only"
    );
    assert!(
        tmp.path().join("out/report/report.html").exists(),
        "the documents are written"
    );
    let verbose = run_in(tmp.path(), &["demo", "-o", "out", "-v"]);
    assert!(verbose.status.success());
    insta::assert_snapshot!(String::from_utf8_lossy(&verbose.stderr));
    let traced = run_in(tmp.path(), &["demo", "-o", "out", "-vv"]);
    let err = String::from_utf8_lossy(&traced.stderr);
    assert!(
        err.contains("DEBUG layer sha256:") && err.contains(": from the cache"),
        "{err}"
    );
    assert!(
        run_in(tmp.path(), &["demo", "-o", "out", "-q", "-v"])
            .status
            .code()
            == Some(2),
        "--quiet and -v exclude each other"
    );
}

#[test]
fn rules_error_in_a_list_form() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(run_in(tmp.path(), &["demo", "-o", "out"]).status.success());
    std::fs::write(
        tmp.path().join("team.toml"),
        "[requirements]\nfrom = \"installed\"\nignore = { remove = [\"pip\"] }\n",
    )
    .unwrap();
    let out = run_in(
        tmp.path(),
        &[
            "plan",
            "out/inventory.json",
            "--rules",
            "team.toml",
            "-o",
            "p/plan.json",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(!tmp.path().join("p").exists(), "nothing is written");
    insta::assert_snapshot!(String::from_utf8_lossy(&out.stderr));
}

#[test]
fn scan_help() {
    let out = common::ok(&["scan", "oci-dir", "--help"]);
    insta::assert_snapshot!(String::from_utf8_lossy(&out.stdout));
}

#[test]
fn plan_explain() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(run_in(tmp.path(), &["demo", "-o", "out"]).status.success());
    std::fs::write(
        tmp.path().join("strict.toml"),
        "[versions]\ndefault = \"exact\"\n",
    )
    .unwrap();
    let out = run_in(
        tmp.path(),
        &[
            "plan",
            "out/inventory.json",
            "--rules",
            "strict.toml",
            "--explain",
            "flow-a-nightly",
        ],
    );
    assert!(out.status.success());
    insta::assert_snapshot!(String::from_utf8_lossy(&out.stdout));
}

/// `-o -` is standard output for every document, the same way: the report's JSON (or the
/// one format named), the plan without its folder, the migration without its per-flow
/// documents; nothing named `-` is created, and an apply, which must journal, refuses it.
#[test]
fn dash_is_standard_output_for_every_document() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    assert!(run_in(d, &["demo", "-o", "out"]).status.success());
    let json = |o: &std::process::Output| -> serde_json::Value {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).expect("a JSON document on stdout")
    };
    let work = d.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let inv = d.join("out/inventory.json");
    let inv = inv.to_str().unwrap();
    let r = json(&run_in(
        &work,
        &["report", inv, "--no-timestamp", "-o", "-"],
    ));
    assert_eq!(r["schema"], "unsprawl/report/v2");
    let md = run_in(&work, &["report", inv, "--format", "md", "-o", "-"]);
    assert!(
        String::from_utf8_lossy(&md.stdout).starts_with("## Image sprawl report"),
        "markdown"
    );
    let two = run_in(&work, &["report", inv, "--format", "json,md", "-o", "-"]);
    assert_eq!(two.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&two.stderr).contains("name one --format"));
    let plan = json(&run_in(
        &work,
        &["plan", inv, "--image-registry", "localhost/x", "-o", "-"],
    ));
    assert_eq!(plan["schema"], "unsprawl/plan/v2");
    let plan_path = d.join("out/plan.json");
    let plan_path = plan_path.to_str().unwrap();
    let migrate = |extra: &[&str]| {
        let mut args = vec![
            "migrate",
            plan_path,
            "--runtime-images",
            "../out/runtime-images.oci",
            "--repo-host",
            "git.example.com",
            "--repo",
            "platform/flows",
            "--flows-repo",
            "../out/flows-repo",
            "--ref-from",
            "branch=main",
            "--export",
        ];
        args.push(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/prefect1/export.graphql.json"
        ));
        args.extend(["-o", "-"]);
        args.extend(extra);
        run_in(&work, &args)
    };
    let m = migrate(&[]);
    assert_eq!(m.status.code(), Some(1), "the demo refuses some flows");
    let m: serde_json::Value = serde_json::from_slice(&m.stdout).unwrap();
    assert_eq!(m["schema"], "unsprawl/migration/v3");
    let apply = migrate(&["--apply"]);
    assert_eq!(apply.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&apply.stderr).contains("give -o a folder, not -"));
    let left: Vec<_> = std::fs::read_dir(&work)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "nothing written here: {left:?}");
}

/// Shell completions for bash, zsh and fish name every command; `--version` names the
/// layer analyser beside the release.
#[test]
fn completions_and_version() {
    for shell in ["bash", "zsh", "fish"] {
        let out = common::ok(&["completions", shell]);
        let text = String::from_utf8_lossy(&out.stdout);
        for cmd in [
            "scan", "plan", "build", "report", "audit", "migrate", "rollback",
        ] {
            assert!(text.contains(cmd), "{shell}: no {cmd}");
        }
    }
    let v = common::ok(&["--version"]);
    assert!(String::from_utf8_lossy(&v.stdout).starts_with(&format!(
        "unsprawl {} (layer analyser v",
        env!("CARGO_PKG_VERSION")
    )));
}
