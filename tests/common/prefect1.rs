//! Real Prefect 1.4.1 for validating what the migration writes: a venv under `target/`
//! (`prefect==1.4.1 "marshmallow<4" "pendulum<3"`, created with pip on first use) and
//! the project's copy of `validate_prefect1.py` (`tests/tools/`), run with `--strict`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;

static VENV: Once = Once::new();

pub fn venv() -> PathBuf {
    let dir = super::repo().join("target/test-venvs/prefect1");
    VENV.call_once(|| {
        if dir.join("bin/python").exists()
            && Command::new(dir.join("bin/python"))
                .args(["-c", "import prefect"])
                .env("HOME", std::env::temp_dir())
                .status()
                .is_ok_and(|s| s.success())
        {
            return;
        }
        let st = Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(&dir)
            .status()
            .unwrap();
        assert!(st.success(), "python3 -m venv");
        let st = Command::new(dir.join("bin/pip"))
            .args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "prefect==1.4.1",
                "marshmallow<4",
                "pendulum<3",
            ])
            .status()
            .unwrap();
        assert!(st.success(), "pip install prefect==1.4.1");
    });
    dir
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
