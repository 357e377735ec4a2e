//! Real Prefect 1.4.1 for validating what the migration writes: a venv under `target/`
//! (`prefect==1.4.1 "marshmallow<4" "pendulum<3"`, created with pip on first use) and
//! the project's copy of `validate_prefect1.py` (`tests/tools/`), run with `--strict`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn venv() -> PathBuf {
    super::venv::ensure(
        "prefect1",
        "prefect",
        &["prefect==1.4.1", "marshmallow<4", "pendulum<3"],
    )
}

/// Validate a document with Prefect 1.4.1's own schemas; returns what it printed, and
/// panics (with that text) when Prefect refuses it.
pub fn validate(doc: &Path) -> String {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(venv().join("bin/python"))
        .arg(super::repo().join("tests/tools/validate_prefect1.py"))
        .arg(doc)
        .arg("--strict")
        .env("HOME", home.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && text.starts_with("OK"),
        "Prefect 1.4.1 refuses {}: {text}{}",
        doc.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    text
}
