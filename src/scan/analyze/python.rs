//! Installed Python distributions (`*.dist-info`, `*.egg-info`) and interpreters.
//!
//! Each file is parsed on its own (per layer, cacheable); the squash step joins the files
//! of one metadata directory back into a distribution.

use serde::{Deserialize, Serialize};

/// What a `METADATA` / `PKG-INFO` file says.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DistMetadata {
    pub name: String,
    pub version: String,
    pub requires_dist: Vec<String>,
    pub requires_python: Option<String>,
}

/// What a `RECORD` file says: the import names its files provide, their total size, and
/// every file with its hash (what `unsprawl build` harvests and verifies).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RecordSummary {
    pub import_names: Vec<String>,
    pub bytes: Option<u64>,
    #[serde(default)]
    pub files: Vec<RecordEntry>,
}

/// One row of `RECORD`: a path relative to the site-packages directory (`../../../bin/x`
/// for a console script), its `sha256=<urlsafe base64, no padding>` and size, when given.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RecordEntry {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// Why a metadata file could not be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MetadataError {
    #[error("metadata has no {0} field")]
    Missing(&'static str),
}

/// The header block of an email-style metadata file (up to the first blank line),
/// with folded continuation lines joined.
fn headers(text: &str) -> Vec<(&str, String)> {
    let mut out: Vec<(&str, String)> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(last) = out.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            out.push((k.trim(), v.trim().to_string()));
        }
    }
    out
}

/// Parse core metadata (PEP 566 `METADATA`, or a legacy `PKG-INFO`).
pub fn parse_metadata(text: &str) -> Result<DistMetadata, MetadataError> {
    let h = headers(text);
    let one = |k: &str| {
        h.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    Ok(DistMetadata {
        name: one("Name").ok_or(MetadataError::Missing("Name"))?,
        version: one("Version").ok_or(MetadataError::Missing("Version"))?,
        requires_dist: h
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("Requires-Dist"))
            .map(|(_, v)| v.clone())
            .collect(),
        requires_python: one("Requires-Python"),
    })
}

/// Names listed in `top_level.txt`.
pub fn parse_top_level(text: &str) -> Vec<String> {
    let mut v: Vec<String> = text
        .lines()
        .map(|l| l.trim().split('/').next().unwrap_or("").to_string())
        .filter(|l| !l.is_empty())
        .collect();
    v.sort();
    v.dedup();
    v
}

fn is_identifier(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(f) if f == '_' || f.is_alphabetic())
        && c.all(|ch| ch == '_' || ch.is_alphanumeric())
}

/// The top-level module a path relative to `site-packages` provides, if any.
fn import_name_of(path: &str) -> Option<String> {
    if path.starts_with("..") || path.starts_with('/') {
        return None;
    }
    match path.split_once('/') {
        Some((dir, _)) => {
            if dir.ends_with(".dist-info")
                || dir.ends_with(".egg-info")
                || dir.ends_with(".data")
                || dir == "__pycache__"
                || !is_identifier(dir)
            {
                None
            } else {
                Some(dir.to_string())
            }
        }
        None => {
            let stem = if let Some(s) = path.strip_suffix(".py") {
                s
            } else if path.ends_with(".so") || path.ends_with(".pyd") {
                path.split('.').next().unwrap_or("")
            } else {
                return None;
            };
            is_identifier(stem).then(|| stem.to_string())
        }
    }
}

/// Summarize `RECORD` (CSV of path, hash, size): import names and installed bytes.
pub fn parse_record(text: &str) -> RecordSummary {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut names = Vec::new();
    let mut bytes = 0u64;
    let mut sized = false;
    let mut files = Vec::new();
    for row in rdr.records().flatten() {
        let Some(path) = row.get(0) else { continue };
        let size = row.get(2).and_then(|s| s.trim().parse::<u64>().ok());
        if let Some(n) = size {
            bytes += n;
            sized = true;
        }
        if !path.is_empty() {
            files.push(RecordEntry {
                path: path.to_string(),
                hash: row
                    .get(1)
                    .map(str::trim)
                    .filter(|h| !h.is_empty())
                    .map(str::to_string),
                size,
            });
        }
        if let Some(n) = import_name_of(path) {
            names.push(n);
        }
    }
    names.sort();
    names.dedup();
    RecordSummary {
        import_names: names,
        bytes: sized.then_some(bytes),
        files,
    }
}

/// A legacy install's `*.egg-info/installed-files.txt` (one path a line, relative to the
/// egg-info directory), as RECORD rows relative to site-packages, without hashes.
pub fn parse_installed_files(path: &str, text: &str) -> RecordSummary {
    let egg_dir = path
        .rsplit_once('/')
        .map(|(d, _)| d.rsplit('/').next().unwrap_or(d))
        .unwrap_or("");
    let mut files = vec![];
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        // resolve against `<site>/<egg dir>/`, then drop the `<site>/` again
        let Some(rel) = crate::scan::paths::resolve_link(&format!("site/{egg_dir}/x"), line) else {
            continue;
        };
        let Some(rel) = rel.strip_prefix("site/") else {
            continue;
        };
        if rel == egg_dir {
            continue; // `./`: the directory itself
        }
        files.push(RecordEntry {
            path: rel.to_string(),
            hash: None,
            size: None,
        });
    }
    RecordSummary {
        import_names: vec![],
        bytes: None,
        files,
    }
}

/// Convert an egg's `requires.txt` (sections `[extra:marker]`) into PEP 508 strings.
pub fn parse_egg_requires(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut marker: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let (extra, cond) = section.split_once(':').unwrap_or((section, ""));
            let mut parts = Vec::new();
            if !extra.trim().is_empty() {
                parts.push(format!("extra == \"{}\"", extra.trim()));
            }
            if !cond.trim().is_empty() {
                parts.push(format!("({})", cond.trim()));
            }
            marker = (!parts.is_empty()).then(|| parts.join(" and "));
            continue;
        }
        out.push(match &marker {
            Some(m) => format!("{line}; {m}"),
            None => line.to_string(),
        });
    }
    out
}

/// `3.11` from a path component such as `python3.11`.
pub fn minor_of_component(c: &str) -> Option<String> {
    let rest = c.strip_prefix("python")?;
    let (maj, min) = rest.split_once('.')?;
    (!maj.is_empty()
        && !min.is_empty()
        && maj.bytes().all(|b| b.is_ascii_digit())
        && min.bytes().all(|b| b.is_ascii_digit()))
    .then(|| format!("{maj}.{min}"))
}

/// The Python minor version a path shows is installed: `bin/python3.11`,
/// `libpython3.11.so.1.0`, or the standard library's `lib/python3.11/os.py`.
pub fn interpreter_marker(path: &str) -> Option<String> {
    let (parent, file) = path.rsplit_once('/').unwrap_or(("", path));
    let parent_name = parent.rsplit('/').next().unwrap_or(parent);
    if parent_name == "bin" {
        return minor_of_component(file);
    }
    if let Some(rest) = file.strip_prefix("libpython")
        && file.contains(".so")
    {
        let digits: String = rest
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        return minor_of_component(&format!("python{}", digits.trim_end_matches('.')));
    }
    if file == "os.py" {
        let (grand, dir) = parent.rsplit_once('/').unwrap_or(("", parent));
        if grand == "lib" || grand.ends_with("/lib") {
            return minor_of_component(dir);
        }
    }
    None
}

/// The Python minor version a `site-packages` directory belongs to, if its path says.
pub fn site_python(location: &str) -> Option<String> {
    location.split('/').find_map(minor_of_component)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_headers_stop_at_body() {
        let m = parse_metadata("Metadata-Version: 2.1\nName: Typing_Extensions\nVersion: 4.8.0\nRequires-Python: >=3.8\nRequires-Dist: numpy (>=1.21) ; extra == 'x'\nRequires-Dist: six\n\nRequires-Dist: not-a-header\n").unwrap();
        assert_eq!(m.name, "Typing_Extensions");
        assert_eq!(
            m.requires_dist,
            vec!["numpy (>=1.21) ; extra == 'x'", "six"]
        );
        assert_eq!(m.requires_python.as_deref(), Some(">=3.8"));
        assert_eq!(crate::dist_name::normalize(&m.name), "typing-extensions");
        assert_eq!(
            parse_metadata("Name: x\n"),
            Err(MetadataError::Missing("Version"))
        );
    }

    #[test]
    fn record_gives_import_names_and_size() {
        let r = parse_record(
            "yaml/__init__.py,sha256=x,100\n_yaml/__init__.py,,50\nPyYAML-6.0.dist-info/RECORD,,\n../../../bin/tool,sha256=y,7\nsix.py,,3\n_cffi.cpython-311-x86_64-linux-gnu.so,,9\n\"a,b.py\",,1\nnumpy.libs/x.so,,1\n__pycache__/six.cpython-311.pyc,,2\n",
        );
        assert_eq!(r.import_names, vec!["_cffi", "_yaml", "six", "yaml"]);
        assert_eq!(r.bytes, Some(173));
    }

    #[test]
    fn egg_requires_sections_become_markers() {
        let r = parse_egg_requires(
            "six>=1\n\n[test]\npytest\n[:python_version < \"3.8\"]\nimportlib-metadata\n",
        );
        assert_eq!(
            r,
            vec![
                "six>=1",
                "pytest; extra == \"test\"",
                "importlib-metadata; (python_version < \"3.8\")"
            ]
        );
    }

    #[test]
    fn interpreter_markers() {
        assert_eq!(
            interpreter_marker("usr/local/bin/python3.11").as_deref(),
            Some("3.11")
        );
        assert_eq!(interpreter_marker("usr/bin/python3").as_deref(), None);
        assert_eq!(
            interpreter_marker("usr/lib/x86_64-linux-gnu/libpython3.9.so.1.0").as_deref(),
            Some("3.9")
        );
        assert_eq!(
            interpreter_marker("usr/local/lib/libpython3.8m.so").as_deref(),
            Some("3.8")
        );
        assert_eq!(
            interpreter_marker("usr/lib/python3.10/os.py").as_deref(),
            Some("3.10")
        );
        assert_eq!(
            interpreter_marker("usr/lib/python3.10/site-packages/x/os.py"),
            None
        );
        assert_eq!(
            site_python("usr/local/lib/python3.11/site-packages").as_deref(),
            Some("3.11")
        );
        assert_eq!(site_python("usr/lib/python3/dist-packages"), None);
    }
}
