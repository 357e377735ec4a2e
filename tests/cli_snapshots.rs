//! Snapshots of what a person sees: the demo's summary and the scan help text. A change
//! here is a change of the user interface; review it with `cargo insta review`.

mod common;

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
