//! Reading the versioned documents the stages hand each other (inventory, plan,
//! migration, report): the `schema` field is checked first, so a document of another
//! kind or version is refused by name rather than by a missing field deep inside it.
//! The file is parsed once into its type, never through an untyped copy: a 50,000-flow
//! inventory costs its own size, not three times it.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not JSON: {source}", path.display())]
    NotJson {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{} has schema {found:?}, this unsprawl reads {expected:?}", path.display())]
    Schema {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("{} does not match {schema}: {source}", path.display())]
    Shape {
        path: PathBuf,
        schema: String,
        #[source]
        source: serde_json::Error,
    },
}

/// The one field every document has; the rest is skipped unparsed.
#[derive(Deserialize)]
struct Probe {
    #[serde(default)]
    schema: Option<String>,
}

/// Read `path` as a document of `schema` (one of `accepted`, for readers of older ones).
pub fn read<T: DeserializeOwned>(path: &Path, accepted: &[&str]) -> Result<T, DocumentError> {
    let bytes = std::fs::read(path).map_err(|source| DocumentError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let probe: Probe = serde_json::from_slice(&bytes).map_err(|source| DocumentError::NotJson {
        path: path.to_path_buf(),
        source,
    })?;
    let found = probe.schema.unwrap_or_default();
    if !accepted.contains(&found.as_str()) {
        return Err(DocumentError::Schema {
            path: path.to_path_buf(),
            found,
            expected: accepted.join(" or "),
        });
    }
    serde_json::from_slice(&bytes).map_err(|source| DocumentError::Shape {
        path: path.to_path_buf(),
        schema: found,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug)]
    struct Doc {
        #[allow(dead_code)]
        n: u32,
    }

    #[test]
    fn a_document_is_refused_by_schema_first_then_by_shape_each_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.json");
        let read = |text: &str| {
            std::fs::write(&p, text).unwrap();
            read::<Doc>(&p, &["unsprawl.test/v1"]).map_err(|e| e.to_string())
        };
        assert!(read(r#"{"schema": "unsprawl.test/v1", "n": 3}"#).is_ok());
        let e = read(r#"{"schema": "unsprawl.other/v1", "n": 3}"#).unwrap_err();
        assert!(
            e.contains(
                "has schema \"unsprawl.other/v1\", this unsprawl reads \"unsprawl.test/v1\""
            ),
            "{e}"
        );
        let e = read(r#"{"n": 3}"#).unwrap_err();
        assert!(e.contains("has schema \"\""), "{e}");
        let e = read(r#"{"schema": "unsprawl.test/v1", "n": "three"}"#).unwrap_err();
        assert!(e.contains("does not match unsprawl.test/v1"), "{e}");
        let e = read("{not json").unwrap_err();
        assert!(e.contains("is not JSON"), "{e}");
        assert!(e.contains("d.json"), "{e}");
        let e = super::read::<Doc>(&dir.path().join("absent.json"), &["x"])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("cannot read") && e.contains("absent.json"),
            "{e}"
        );
    }
}
