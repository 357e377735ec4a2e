//! The header every document shares: who wrote it (`generator`) and what it was made
//! from (`inputs`, each by path and SHA-256), so a reviewer can tell which inventory a
//! plan came from and a later stage can refuse a document whose inputs changed since.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Who wrote a document: the same object in the inventory, plan, migration and report.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Generator {
    pub tool: String,
    pub version: String,
    /// Version of the layer analysers (inventories only; part of the layer cache key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analyser_version: Option<u32>,
}

impl Generator {
    /// This build of unsprawl.
    pub fn this() -> Generator {
        Generator {
            tool: "unsprawl".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            analyser_version: None,
        }
    }
}

/// One file a document was made from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Input {
    /// What the file was to this stage: `inventory`, `rules`, `plan`, `previous-report`,
    /// `images`, `export`.
    pub role: String,
    /// Relative to the folder of the document that records it when the file lies below
    /// or beside it (so a folder of documents can be moved whole), else absolute.
    pub path: String,
    /// `sha256:<hex>` of the file's bytes when it was read.
    pub sha256: String,
}

/// Reading an input failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {}: {source}", path.display())]
pub struct InputError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// `sha256:<hex>` of a byte string.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// `sha256:<hex>` of a file, streamed.
pub fn file_sha256(path: &Path) -> Result<String, InputError> {
    let mut f = std::fs::File::open(path).map_err(|source| InputError {
        path: path.to_path_buf(),
        source,
    })?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        use std::io::Read;
        let n = f.read(&mut buf).map_err(|source| InputError {
            path: path.to_path_buf(),
            source,
        })?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}

/// The folder a document at `doc` lives in (`.` for a bare file name or stdout).
pub fn folder_of(doc: &Path) -> PathBuf {
    match doc.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Record `file` as an input of a document written into `doc_dir`.
pub fn record(role: &str, file: &Path, doc_dir: &Path) -> Result<Input, InputError> {
    Ok(Input {
        role: role.into(),
        path: relative_path(file, doc_dir),
        sha256: file_sha256(file)?,
    })
}

/// `file` as seen from `dir`: relative when both resolve (pathdiff does the `..`
/// arithmetic), else absolute, else as given.
pub fn relative_path(file: &Path, dir: &Path) -> String {
    let abs = |p: &Path| std::path::absolute(p).ok();
    let file_abs = std::fs::canonicalize(file).ok().or_else(|| abs(file));
    let dir_abs = std::fs::canonicalize(dir).ok().or_else(|| abs(dir));
    match (file_abs, dir_abs) {
        (Some(f), Some(d)) => pathdiff::diff_paths(&f, &d)
            .filter(|r| !r.as_os_str().is_empty())
            .unwrap_or(f)
            .display()
            .to_string(),
        (Some(f), None) => f.display().to_string(),
        _ => file.display().to_string(),
    }
}

/// Where a recorded input is, for a document that lives in `doc_dir`.
pub fn resolve(input: &Input, doc_dir: &Path) -> PathBuf {
    let p = Path::new(&input.path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        doc_dir.join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_recorded_relative_to_the_document_and_resolve_back() {
        let tmp = tempfile::tempdir().unwrap();
        let inv = tmp.path().join("scan/inventory.json");
        std::fs::create_dir_all(inv.parent().unwrap()).unwrap();
        std::fs::write(&inv, b"{}").unwrap();
        let plan_dir = tmp.path().join("plans");
        std::fs::create_dir_all(&plan_dir).unwrap();
        let i = record("inventory", &inv, &plan_dir).unwrap();
        assert_eq!(i.path, "../scan/inventory.json");
        assert_eq!(i.sha256, sha256(b"{}"));
        assert_eq!(
            std::fs::canonicalize(resolve(&i, &plan_dir)).unwrap(),
            std::fs::canonicalize(&inv).unwrap()
        );
        let beside = record("inventory", &inv, inv.parent().unwrap()).unwrap();
        assert_eq!(beside.path, "inventory.json");
        assert!(record("rules", &tmp.path().join("missing.toml"), &plan_dir).is_err());
    }
}
