//! `unsprawl plan` end to end on the bundled fixture corpus (built and scanned by the
//! demo), whose optimum is known: the three linked Python 3.11 flows differ only in
//! `requests` (2.31.0 vs 2.32.3), so the default `minor` policy puts them on one image
//! and `exact` needs two; the Python 3.10 flow always gets its own.

use crate::common;

use std::path::Path;

use common::{ok, p, unsprawl};
use unsprawl::plan::Plan;

fn demo_inventory(dir: &Path) -> std::path::PathBuf {
    ok(&["demo", "-o", p(&dir.join("demo"))]);
    dir.join("demo/inventory.json")
}

fn read_plan(path: &Path) -> Plan {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn fixture_plans_have_the_known_optimum() {
    let tmp = tempfile::tempdir().unwrap();
    let inv = demo_inventory(tmp.path());
    let out = tmp.path().join("relaxed/plan.json");
    ok(&[
        "plan",
        "--image-registry",
        "registry.local:5000/prefect",
        p(&inv),
        "-o",
        p(&out),
    ]);
    let plan = read_plan(&out);
    assert_eq!(plan.schema, "unsprawl/plan/v2");
    let s = &plan.summary;
    // flow-git already runs from Git storage: left out by design, not "unplanned"
    assert_eq!((s.flows, s.planned, s.unplanned, s.excluded), (8, 4, 4, 1));
    assert!(plan.excluded[0].reason.starts_with("already migrated"));
    assert_eq!((s.runtime_images, s.lower_bound, s.optimal), (2, 2, true));
    assert_eq!(s.current_images, 3);
    let py311 = plan
        .runtime_images
        .iter()
        .find(|i| i.python == "3.11")
        .unwrap();
    assert_eq!(py311.members.len(), 3);
    let requests = py311
        .requirements
        .iter()
        .find(|r| r.name == "requests")
        .unwrap();
    assert_eq!(
        requests.version, "2.32.3",
        "the newest version every member allows"
    );
    // the flow built with 2.31.0 is told it moves
    let moved: Vec<String> = plan
        .flows
        .iter()
        .flat_map(|f| {
            f.moves
                .iter()
                .map(move |m| format!("{} {} {}→{}", f.name, m.name, m.from, m.to))
        })
        .collect();
    assert_eq!(
        moved,
        [
            "flow-a requests 2.31.0→2.32.3",
            "flow-a-nightly requests 2.31.0→2.32.3"
        ],
        "numpy 1.26.4 is newer than team-b's 1.24.4 but was only seen on Python 3.11"
    );
    // files beside the plan, named in it
    let dir = out.parent().unwrap();
    for img in &plan.runtime_images {
        let df = std::fs::read_to_string(dir.join(&img.dockerfile)).unwrap();
        assert!(df.contains(&format!("FROM python:{}-slim-bookworm", img.python)));
        let req = std::fs::read_to_string(dir.join(&img.requirements_file)).unwrap();
        assert!(req.contains("prefect==1.4.1"), "{req}");
        assert!(!req.contains("pip=="), "packaging tools are ignored");
    }
    // every unplanned flow says why
    assert!(plan.unplanned.iter().all(|u| !u.reason.is_empty()));
    assert_eq!(
        plan.unplanned
            .iter()
            .filter(|u| u.reason.contains("no scanned source"))
            .count(),
        2
    );

    // a team that wants its packaging tools pinned replaces the built-in ignore list
    let pinned = tmp.path().join("pin-pip.toml");
    std::fs::write(&pinned, "[requirements]\nignore = { replace = [] }\n").unwrap();
    let out_pip = tmp.path().join("pin-pip/plan.json");
    ok(&[
        "plan",
        "--image-registry",
        "registry.local:5000/prefect",
        p(&inv),
        "--rules",
        p(&pinned),
        "-o",
        p(&out_pip),
    ]);
    let with_pip = read_plan(&out_pip);
    assert_eq!(with_pip.inputs[1].role, "rules");
    for img in &with_pip.runtime_images {
        assert!(
            img.requirements.iter().any(|r| r.name == "pip"),
            "{}: {:?}",
            img.name,
            img.requirements
        );
        let req = std::fs::read_to_string(out_pip.parent().unwrap().join(&img.requirements_file))
            .unwrap();
        assert!(req.contains("pip=="), "{req}");
    }

    // exact pins: the two requests versions cannot share
    let strict = tmp.path().join("strict.toml");
    std::fs::write(&strict, "[versions]\ndefault = \"exact\"\n").unwrap();
    let out2 = tmp.path().join("strict/plan.json");
    ok(&[
        "plan",
        "--image-registry",
        "registry.local:5000/prefect",
        p(&inv),
        "--rules",
        p(&strict),
        "-o",
        p(&out2),
    ]);
    let s = read_plan(&out2).summary;
    assert_eq!((s.runtime_images, s.lower_bound, s.optimal), (3, 3, true));

    // --strict: unplanned flows make exit code 1 (the plan is still written)
    let out3 = tmp.path().join("strict-exit/plan.json");
    let r = unsprawl(&[
        "plan",
        "--image-registry",
        "registry.local:5000/prefect",
        p(&inv),
        "--strict",
        "-o",
        p(&out3),
    ]);
    assert_eq!(r.status.code(), Some(1));
    assert!(out3.exists());
}

#[test]
fn explain_names_the_distribution_that_separates_flows() {
    let tmp = tempfile::tempdir().unwrap();
    let inv = demo_inventory(tmp.path());
    let strict = tmp.path().join("strict.toml");
    std::fs::write(&strict, "[versions]\ndefault = \"exact\"\n").unwrap();
    let r = ok(&[
        "plan",
        p(&inv),
        "--rules",
        p(&strict),
        "--explain",
        "flow-a-nightly",
    ]);
    let text = String::from_utf8_lossy(&r.stdout);
    assert!(
        text.contains("requests 2.31.0 (exact → ==2.31.0) vs requests 2.32.3 (exact → ==2.32.3)"),
        "{text}"
    );
    // an ambiguous name lists the keys; an unplanned flow says why
    let r = unsprawl(&["plan", p(&inv), "--explain", "flow-a"]);
    assert_eq!(r.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&r.stderr).contains("names 2 flows; use a key"));
    let r = unsprawl(&["plan", p(&inv), "--explain", "flow-gone"]);
    assert!(String::from_utf8_lossy(&r.stderr).contains("is not planned: its image"));
    // explaining writes nothing
    assert!(!tmp.path().join("plan.json").exists());
}

#[test]
fn bad_rules_point_at_the_line_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let inv = demo_inventory(tmp.path());
    let bad = tmp.path().join("team.toml");
    std::fs::write(
        &bad,
        "[versions]\ndefault = \"minor\"\n\n[versions.packages]\npandas = \">=1.5,!=1.5.2\"\n",
    )
    .unwrap();
    let out = tmp.path().join("out/plan.json");
    let r = unsprawl(&["plan", p(&inv), "--rules", p(&bad), "-o", p(&out)]);
    assert_eq!(r.status.code(), Some(2));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("team.toml:5:10:"), "{err}");
    assert!(err.contains("must be intervals"), "{err}");
    assert!(!out.exists());

    // a missing rules file, and an inventory that is not one
    let r = unsprawl(&["plan", p(&inv), "--rules", "/nonexistent.toml"]);
    assert!(String::from_utf8_lossy(&r.stderr).contains("/nonexistent.toml: cannot read"));
    let r = unsprawl(&["plan", p(&bad)]);
    assert_eq!(r.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&r.stderr).contains("is not JSON"));

    // the built-in placeholder registry is refused, saying how to name yours
    let out = tmp.path().join("placeholder/plan.json");
    let r = unsprawl(&["plan", p(&inv), "-o", p(&out)]);
    assert_eq!(r.status.code(), Some(2));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains("placeholder registry")
            && err.contains("--image-registry")
            && err.contains("[image]"),
        "{err}"
    );
    assert!(!out.exists() && !tmp.path().join("placeholder/runtime-images").exists());
    for bad in [
        "https://registry.local/prefect",
        "Registry.Local/Prefect",
        "justaname",
    ] {
        let r = unsprawl(&["plan", p(&inv), "--image-registry", bad, "-o", p(&out)]);
        assert_eq!(r.status.code(), Some(2), "{bad}");
        assert!(
            String::from_utf8_lossy(&r.stderr).contains("expected HOST[:PORT][/PATH]"),
            "{bad}"
        );
    }
}

#[test]
fn a_folder_unsprawl_did_not_write_is_never_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let inv = demo_inventory(tmp.path());
    let mine = tmp.path().join("mine/runtime-images");
    std::fs::create_dir_all(&mine).unwrap();
    std::fs::write(mine.join("notes.txt"), "keep me").unwrap();
    let r = unsprawl(&[
        "plan",
        "--image-registry",
        "registry.local:5000/prefect",
        p(&inv),
        "-o",
        p(&tmp.path().join("mine/plan.json")),
    ]);
    assert_eq!(r.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&r.stderr).contains("was not written by unsprawl"));
    assert_eq!(
        std::fs::read_to_string(mine.join("notes.txt")).unwrap(),
        "keep me"
    );

    // its own folder is replaced: no stale Dockerfiles from an earlier plan
    let out = tmp.path().join("ours/plan.json");
    let strict = tmp.path().join("strict.toml");
    std::fs::write(&strict, "[versions]\ndefault = \"exact\"\n").unwrap();
    ok(&[
        "plan",
        "--image-registry",
        "registry.local:5000/prefect",
        p(&inv),
        "--rules",
        p(&strict),
        "-o",
        p(&out),
    ]);
    ok(&[
        "plan",
        "--image-registry",
        "registry.local:5000/prefect",
        p(&inv),
        "-o",
        p(&out),
    ]);
    let dirs = std::fs::read_dir(tmp.path().join("ours/runtime-images"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().is_dir())
        .count();
    assert_eq!(dirs, read_plan(&out).runtime_images.len());
}
