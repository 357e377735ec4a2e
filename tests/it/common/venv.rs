//! Python venvs under `target/test-venvs/` for the real Prefect versions the tests run,
//! created with pip on first use (a fresh CI machine needs nothing by hand) and checked
//! by importing `module`, so a half-made venv is made again.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

/// The venvs this test process has checked already.
static CHECKED: Mutex<Vec<String>> = Mutex::new(Vec::new());

pub fn ensure(name: &str, module: &str, packages: &[&str]) -> PathBuf {
    let dir = super::repo().join("target/test-venvs").join(name);
    let mut checked = CHECKED.lock().unwrap_or_else(|e| e.into_inner());
    if checked.iter().any(|c| c == name) {
        return dir;
    }
    let works = || {
        Command::new(dir.join("bin/python"))
            .args(["-c", &format!("import {module}")])
            .env("HOME", std::env::temp_dir())
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if works() {
        checked.push(name.into());
        return dir;
    }
    let st = Command::new("python3")
        .args(["-m", "venv", "--clear"])
        .arg(&dir)
        .status()
        .unwrap();
    assert!(st.success(), "python3 -m venv {}", dir.display());
    let st = Command::new(dir.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .args(packages)
        .status()
        .unwrap();
    assert!(st.success(), "pip install {packages:?}");
    assert!(
        works(),
        "{module} does not import after installing {packages:?}"
    );
    checked.push(name.into());
    dir
}
