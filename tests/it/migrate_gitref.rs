//! The git reference rule on a real repository made by the test: branches, tags, a
//! Jenkins build id in BUILD_TAG, detached HEADs with and without CI variables.

use crate::common;

use std::collections::HashMap;

use common::git_repo::GitRepo;
use unsprawl::migrate::gitref::{Checkout, GitRef, RefFrom, RefKind, decide};

fn with_env(co: &Checkout, from: &RefFrom, vars: &[(&str, &str)]) -> Result<GitRef, String> {
    let env: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    decide(from, &|k| env.get(k).cloned(), co).map_err(|e| e.to_string())
}

fn is(r: &GitRef, kind: RefKind, name: &str, by: &str) {
    assert_eq!(
        (r.kind, r.name.as_str(), r.decided_by.as_str()),
        (kind, name, by),
        "{r:?}"
    );
}

#[test]
fn the_reference_rule_on_a_real_repository() {
    let repo = GitRepo::new(&[("flows/a.py", "A = 1\n".into())]);
    let first = repo.head();
    repo.git(&["tag", "v1.0.0"]);
    let second = repo.commit(&[("flows/b.py", "B = 2\n".into())], "b");
    repo.git(&["branch", "feature"]);
    repo.add_origin();
    let co = Checkout::open(repo.path()).unwrap();
    let env = RefFrom::Env;

    // nothing set: the active branch, as the remote has it
    let r = with_env(&co, &env, &[]).unwrap();
    is(&r, RefKind::Branch, "main", "active branch");
    assert_eq!(r.commit, second);
    assert!(r.notes.is_empty(), "{:?}", r.notes);

    // BUILD_TAG wins when it is a tag of the repository …
    let r = with_env(
        &co,
        &env,
        &[("BUILD_TAG", "v1.0.0"), ("GIT_BRANCH", "main")],
    )
    .unwrap();
    is(&r, RefKind::Tag, "v1.0.0", "BUILD_TAG");
    assert_eq!(r.commit, first);
    // … and is ignored, with a note, when Jenkins put a build id there
    let r = with_env(
        &co,
        &env,
        &[
            ("BUILD_TAG", "jenkins-flows-42"),
            ("GIT_BRANCH", "origin/feature"),
        ],
    )
    .unwrap();
    is(&r, RefKind::Branch, "feature", "GIT_BRANCH");
    assert!(r.notes[0].contains("jenkins-flows-42"), "{:?}", r.notes);
    let r = with_env(&co, &env, &[("GIT_BRANCH", "refs/heads/main")]).unwrap();
    is(&r, RefKind::Branch, "main", "GIT_BRANCH");
    let e = with_env(&co, &env, &[("GIT_BRANCH", "origin/gone")]).unwrap_err();
    assert!(e.contains("\"gone\""), "{e}");

    // explicit choices are checked too
    is(
        &with_env(&co, &RefFrom::Tag("v1.0.0".into()), &[("BUILD_TAG", "x")]).unwrap(),
        RefKind::Tag,
        "v1.0.0",
        "--ref-from",
    );
    assert!(with_env(&co, &RefFrom::Tag("v9".into()), &[]).is_err());
    assert!("tag=".parse::<RefFrom>().is_err());
    assert_eq!(
        "branch=dev".parse::<RefFrom>().unwrap(),
        RefFrom::Branch("dev".into())
    );

    // a detached HEAD on a tagged commit: that tag
    repo.git(&["checkout", "-q", "--detach", &first]);
    let co = Checkout::open(repo.path()).unwrap();
    is(
        &with_env(&co, &env, &[]).unwrap(),
        RefKind::Tag,
        "v1.0.0",
        "the tag on HEAD",
    );
    // CI variables come before it
    is(
        &with_env(&co, &env, &[("CI_COMMIT_BRANCH", "feature")]).unwrap(),
        RefKind::Branch,
        "feature",
        "CI_COMMIT_BRANCH",
    );
    is(
        &with_env(
            &co,
            &env,
            &[("GITHUB_REF_TYPE", "branch"), ("GITHUB_REF_NAME", "main")],
        )
        .unwrap(),
        RefKind::Branch,
        "main",
        "GITHUB_REF_NAME",
    );
    is(
        &with_env(&co, &env, &[("BRANCH_NAME", "feature")]).unwrap(),
        RefKind::Branch,
        "feature",
        "BRANCH_NAME",
    );
    // a detached HEAD with no tag and nothing set: refused, saying what to do
    repo.git(&["checkout", "-q", "--detach", &second]);
    let co = Checkout::open(repo.path()).unwrap();
    let e = with_env(&co, &env, &[]).unwrap_err();
    assert!(e.contains("detached") && e.contains("--ref-from"), "{e}");

    // files are read at the reference, not from the working tree
    assert!(co.read_at(&first, "flows/b.py").unwrap().is_none());
    assert_eq!(
        co.read_at(&second, "flows/b.py").unwrap().unwrap(),
        b"B = 2\n"
    );
    assert!(co.exists_at(&second, "flows"));
}

#[test]
fn a_local_branch_not_on_origin_is_noted() {
    let repo = GitRepo::new(&[("f.py", "x = 1\n".into())]);
    repo.add_origin();
    repo.git(&["checkout", "-q", "-b", "unpushed"]);
    let co = Checkout::open(repo.path()).unwrap();
    let r = with_env(&co, &RefFrom::Env, &[]).unwrap();
    is(&r, RefKind::Branch, "unpushed", "active branch");
    assert!(r.notes[0].contains("pushed"), "{:?}", r.notes);
    // and a folder inside the checkout maps to paths from the repository root
    std::fs::create_dir_all(repo.path().join("sub")).unwrap();
    let co = Checkout::open(&repo.path().join("sub")).unwrap();
    assert_eq!(co.repo_path("a.py"), "sub/a.py");
}

#[test]
fn an_annotated_tag_is_told_apart_from_a_lightweight_one() {
    // Prefect 1.4.1 Git storage checks a tag out with `repo[ref].tree`: a lightweight tag
    // (a ref to a commit) works, an annotated tag object has no tree (verified by hand
    // with prefect==1.4.1 and dulwich 0.22.8), so migrate refuses it for Prefect 1
    let repo = GitRepo::new(&[("f.py", "x = 1\n".into())]);
    let commit = repo.head();
    repo.git(&["tag", "light"]);
    repo.git(&["tag", "-a", "annotated", "-m", "release"]);
    let co = Checkout::open(repo.path()).unwrap();
    let light = decide(&RefFrom::Tag("light".into()), &|_| None, &co).unwrap();
    let annotated = decide(&RefFrom::Tag("annotated".into()), &|_| None, &co).unwrap();
    assert_eq!(
        (light.annotated, light.commit.as_str()),
        (false, commit.as_str())
    );
    assert_eq!(
        (annotated.annotated, annotated.commit.as_str()),
        (true, commit.as_str()),
        "peeled to the same commit, but an annotated tag"
    );
}
