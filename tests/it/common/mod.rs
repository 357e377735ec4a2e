//! Helpers for the end-to-end tests: build fixture images with the binary's own
//! `fixtures` command, run the binary, read what it wrote.
#![allow(dead_code)]

pub mod git_repo;
pub mod graphql_stub;
pub mod http_stub;
pub mod journal;
pub mod package_index;
pub mod prefect1;
pub mod prefect1_stub;
pub mod prefect3_server;
pub mod registry;
pub mod venv;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use unsprawl::inventory::{Image, Inventory};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn unsprawl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_unsprawl"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("the unsprawl binary runs")
}

/// Run and insist on success, printing stderr otherwise.
pub fn ok(args: &[&str]) -> Output {
    let out = unsprawl(args);
    assert!(
        out.status.success(),
        "unsprawl {args:?} failed with {:?}:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Build fixture specs (`fixtures/images` plus `extra_spec_dirs`) into `dest` args.
pub fn build_fixtures(extra_spec_dirs: &[&str], dest: &[&str], names: &[&str]) {
    let mut args = vec!["fixtures", "--specs", "fixtures/images"];
    for d in extra_spec_dirs {
        args.extend(["--specs", d]);
    }
    args.extend(["--files", "fixtures"]);
    args.extend(dest);
    args.extend(names);
    ok(&args);
}

pub fn read_inventory(path: &Path) -> Inventory {
    Inventory::read(path).expect("the inventory is readable")
}

pub fn image<'a>(inv: &'a Inventory, reference: &str) -> &'a Image {
    inv.images
        .iter()
        .find(|i| i.references.iter().any(|r| r == reference))
        .unwrap_or_else(|| panic!("no image {reference} in the inventory"))
}

pub fn p(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

/// A named pipe at `path` (with the system's `mkfifo`).
pub fn mkfifo(path: &Path) {
    assert!(
        std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .expect("mkfifo runs")
            .success(),
        "mkfifo {}",
        path.display()
    );
}
