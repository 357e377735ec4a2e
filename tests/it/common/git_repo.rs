//! A real git repository made by the test (with the `git` binary, installed when
//! missing): commits, branches, tags, a detached HEAD, a bare `origin`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Variables CI systems set that the git reference rule reads: cleared for every
/// command the tests run, so the CI machine's own values never leak in.
pub const REF_VARS: &[&str] = &[
    "BUILD_TAG",
    "GIT_BRANCH",
    "CI_COMMIT_TAG",
    "CI_COMMIT_BRANCH",
    "GITHUB_REF_TYPE",
    "GITHUB_REF_NAME",
    "TAG_NAME",
    "BRANCH_NAME",
];

pub struct GitRepo {
    pub dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl GitRepo {
    /// A repository on branch `main` with `files` committed.
    pub fn new(files: &[(&str, String)]) -> GitRepo {
        unsprawl_testkit::local_registry::apt_install_for(&["git"], &["git"]);
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("flows");
        std::fs::create_dir_all(&dir).unwrap();
        let r = GitRepo { dir, _tmp: tmp };
        r.git(&["init", "-q", "-b", "main"]);
        r.commit(files, "flows");
        r
    }

    pub fn git(&self, args: &[&str]) -> Output {
        let out = Command::new("git")
            .args([
                "-c",
                "user.email=t@example.com",
                "-c",
                "user.name=T",
                "-c",
                "advice.detachedHead=false",
            ])
            .args(args)
            .current_dir(&self.dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", self.dir.parent().unwrap())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    pub fn write(&self, path: &str, text: &str) {
        let p = self.dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    pub fn commit(&self, files: &[(&str, String)], message: &str) -> String {
        for (path, text) in files {
            self.write(path, text);
        }
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", message]);
        self.head()
    }

    pub fn head(&self) -> String {
        String::from_utf8(self.git(&["rev-parse", "HEAD"]).stdout)
            .unwrap()
            .trim()
            .to_string()
    }

    /// A bare clone as `origin`, fetched so `refs/remotes/origin/*` exist.
    pub fn add_origin(&self) -> PathBuf {
        let bare = self.dir.parent().unwrap().join("origin.git");
        let out = Command::new("git")
            .args(["clone", "-q", "--bare"])
            .arg(&self.dir)
            .arg(&bare)
            .output()
            .unwrap();
        assert!(out.status.success());
        self.git(&["remote", "add", "origin", bare.to_str().unwrap()]);
        self.git(&["fetch", "-q", "origin"]);
        bare
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }
}

/// The binary, run from the repository, with the CI systems' reference variables
/// cleared (see `REF_VARS`).
pub fn clean_command(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_unsprawl"));
    c.args(args).current_dir(super::repo());
    for v in REF_VARS {
        c.env_remove(v);
    }
    c
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
