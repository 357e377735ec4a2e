//! A distribution no scanned image has (dulwich, for Prefect 1 Git storage): its
//! hash-pinned wheel, from a local directory or a PEP 503/691 package index, installed
//! the way pip lays a wheel out (the `.data/` schemes moved, console scripts written, a
//! fresh `RECORD`), so it lands in the new layer beside the harvested distributions.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::harvest::{Content, Harvested, record_hash};
use crate::rules::fetch::Wheel;

/// Where wheels come from.
#[derive(Debug, Clone)]
pub struct WheelSource {
    /// Looked in first (`--wheels DIR`): the file by its name.
    pub dir: Option<PathBuf>,
    /// A PEP 503 simple index (`--index-url`); `None` is offline.
    pub index_url: Option<String>,
}

pub const DEFAULT_INDEX: &str = "https://pypi.org/simple";

#[derive(Debug, thiserror::Error)]
pub enum WheelError {
    #[error(
        "{file} is needed and not in {where_}: build with --index-url URL (a PyPI mirror) or --wheels DIR holding it"
    )]
    Unavailable { file: String, where_: String },
    #[error("{file}: the package index {index} {message}")]
    Index {
        file: String,
        index: String,
        message: String,
    },
    #[error(
        "{file} from {from} has SHA-256 {actual}, the plan pins {expected}: refusing other bytes"
    )]
    Hash {
        file: String,
        from: String,
        expected: String,
        actual: String,
    },
    #[error("{file} is not a usable wheel: {message}")]
    Bad { file: String, message: String },
}

/// The wheel's bytes, checked against its pinned SHA-256.
pub fn fetch(w: &Wheel, src: &WheelSource) -> Result<Vec<u8>, WheelError> {
    let (bytes, from) = if let Some(p) = src.dir.as_ref().map(|d| d.join(&w.file))
        && p.is_file()
    {
        let b = std::fs::read(&p).map_err(|e| WheelError::Bad {
            file: w.file.clone(),
            message: format!("cannot read {}: {e}", p.display()),
        })?;
        (b, p.display().to_string())
    } else if let Some(index) = &src.index_url {
        download(w, index)?
    } else {
        return Err(WheelError::Unavailable {
            file: w.file.clone(),
            where_: src
                .dir
                .as_ref()
                .map(|d| format!("{} (and no index was given)", d.display()))
                .unwrap_or_else(|| "any wheel directory (and no index was given)".into()),
        });
    };
    let actual = hex::encode(Sha256::digest(&bytes));
    if !actual.eq_ignore_ascii_case(&w.sha256) {
        return Err(WheelError::Hash {
            file: w.file.clone(),
            from,
            expected: w.sha256.clone(),
            actual,
        });
    }
    Ok(bytes)
}

/// Find the file on the index's project page (JSON, else HTML links) and download it.
fn download(w: &Wheel, index: &str) -> Result<(Vec<u8>, String), WheelError> {
    let project = crate::rules::normalize(w.file.split('-').next().unwrap_or(""));
    let page = format!("{}/{project}/", index.trim_end_matches('/'));
    let err = |message: String| WheelError::Index {
        file: w.file.clone(),
        index: redact(index),
        message,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| err(format!("cannot start a runtime: {e}")))?;
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| err(format!("cannot make a client: {e}")))?;
        let resp = client
            .get(&page)
            .header(
                "Accept",
                "application/vnd.pypi.simple.v1+json, text/html;q=0.1",
            )
            .send()
            .await
            .map_err(|e| err(format!("cannot be reached ({})", without_url(&e))))?;
        if !resp.status().is_success() {
            return Err(err(format!("answered {} for {project}", resp.status())));
        }
        let base = resp.url().clone();
        let json = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("json"));
        let body = resp
            .text()
            .await
            .map_err(|e| err(format!("page cut off ({})", without_url(&e))))?;
        let href = if json {
            let v: serde_json::Value = serde_json::from_str(&body)
                .map_err(|e| err(format!("sent a project page that is not JSON: {e}")))?;
            v["files"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|f| f["filename"] == w.file.as_str())
                .and_then(|f| f["url"].as_str())
                .map(str::to_string)
        } else {
            html_link(&body, &w.file)
        };
        let Some(href) = href else {
            return Err(err(format!(
                "does not list {} on its {project} page",
                w.file
            )));
        };
        let mut url = base
            .join(&href)
            .map_err(|e| err(format!("gave a bad link {href:?}: {e}")))?;
        // a mirror's relative link needs the index's credentials too (same origin only)
        if let Ok(index_url) = url::Url::parse(index)
            && url.origin() == index_url.origin()
            && url.username().is_empty()
            && !index_url.username().is_empty()
        {
            let _ = url.set_username(index_url.username());
            let _ = url.set_password(index_url.password());
        }
        let resp = client
            .get(url.clone())
            .send()
            .await
            .map_err(|e| err(format!("cannot send the file ({})", without_url(&e))))?;
        if !resp.status().is_success() {
            return Err(err(format!("answered {} for the file", resp.status())));
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| err(format!("file cut off ({})", without_url(&e))))?;
        Ok((bytes.to_vec(), redact(url.as_str())))
    })
}

/// A URL without its user and password (a mirror URL may carry them).
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if !u.username().is_empty() || u.password().is_some() {
                let _ = u.set_username("");
                let _ = u.set_password(None);
            }
            u.to_string()
        }
        Err(_) => "<the index URL>".into(),
    }
}

/// A reqwest error and its causes (connection refused, DNS, TLS), without the URL it
/// carries (which may hold credentials).
fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    if let Some(u) = e.url() {
        s = s.replace(u.as_str(), "<url>");
    }
    s
}

/// The `href` of the `<a>` whose target file is `file` (the fragment is a hash).
fn html_link(body: &str, file: &str) -> Option<String> {
    let mut rest = body;
    while let Some(i) = rest.find("href=") {
        rest = &rest[i + 5..];
        let quote = rest.chars().next()?;
        if quote != '"' && quote != '\'' {
            continue;
        }
        let end = rest[1..].find(quote)?;
        let href = rest[1..1 + end].replace("&amp;", "&");
        rest = &rest[1 + end..];
        let path = href.split(['#', '?']).next().unwrap_or("");
        if path.rsplit('/').next() == Some(file) {
            return Some(href);
        }
    }
    None
}

/// Lay `bytes` (the wheel `w`) out as pip installs it into `site`, for an interpreter at
/// `python` (the console scripts' shebang).
pub fn install(w: &Wheel, bytes: &[u8], python: &str) -> Result<Harvested, WheelError> {
    let bad = |message: String| WheelError::Bad {
        file: w.file.clone(),
        message,
    };
    let mut parts = w.file.trim_end_matches(".whl").split('-');
    let (name, version) = (
        parts.next().unwrap_or_default().to_string(),
        parts.next().unwrap_or_default().to_string(),
    );
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| bad(format!("not a zip archive: {e}")))?;
    let data_dir = format!("{name}-{version}.data/");
    let dist_info = format!("{name}-{version}.dist-info");
    let mut files: BTreeMap<String, Content> = BTreeMap::new();
    let mut entry_points = None;
    for i in 0..zip.len() {
        let mut f = zip
            .by_index(i)
            .map_err(|e| bad(format!("entry {i}: {e}")))?;
        if f.is_dir() {
            continue;
        }
        let Some(path) = f
            .enclosed_name()
            .map(|p| p.to_string_lossy().replace('\\', "/"))
        else {
            return Err(bad(format!("entry {:?} leaves the install root", f.name())));
        };
        let mut data = Vec::with_capacity(f.size() as usize);
        f.read_to_end(&mut data)
            .map_err(|e| bad(format!("{path}: {e}")))?;
        let exec = f.unix_mode().is_some_and(|m| m & 0o111 != 0);
        if path == format!("{dist_info}/RECORD") {
            continue;
        }
        if path == format!("{dist_info}/entry_points.txt") {
            entry_points = Some(String::from_utf8_lossy(&data).into_owned());
        }
        // `.data/<scheme>/…` goes where the scheme says (relative to site-packages)
        let (rel, mode) = match path.strip_prefix(&data_dir) {
            None => (path.clone(), if exec { 0o755 } else { 0o644 }),
            Some(rest) => {
                let (scheme, sub) = rest
                    .split_once('/')
                    .ok_or_else(|| bad(format!("{path}: no scheme directory")))?;
                match scheme {
                    "purelib" | "platlib" => (sub.to_string(), 0o644),
                    "scripts" => {
                        if data.starts_with(b"#!python") {
                            let nl = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
                            let mut fixed = format!("#!{python}").into_bytes();
                            fixed.extend_from_slice(&data[nl..]);
                            data = fixed;
                        }
                        (format!("../../../bin/{sub}"), 0o755)
                    }
                    "data" => (format!("../../../{sub}"), 0o644),
                    "headers" => (format!("../../../include/{name}/{sub}"), 0o644),
                    other => return Err(bad(format!("{path}: unknown scheme {other:?}"))),
                }
            }
        };
        files.insert(rel, Content::File { data, mode });
    }
    if !files.keys().any(|k| k == &format!("{dist_info}/METADATA")) {
        return Err(bad(format!("no {dist_info}/METADATA")));
    }
    for (script, target) in console_scripts(entry_points.as_deref().unwrap_or("")) {
        let (module, func) = target.split_once(':').unwrap_or((target.as_str(), "main"));
        let head = func.split('.').next().unwrap_or(func);
        let text = format!(
            "#!{python}\n# -*- coding: utf-8 -*-\nimport re\nimport sys\nfrom {module} import {head}\nif __name__ == \"__main__\":\n    sys.argv[0] = re.sub(r\"(-script\\.pyw|\\.exe)?$\", \"\", sys.argv[0])\n    sys.exit({func}())\n"
        );
        files.insert(
            format!("../../../bin/{script}"),
            Content::File {
                data: text.into_bytes(),
                mode: 0o755,
            },
        );
    }
    files.insert(
        format!("{dist_info}/INSTALLER"),
        Content::File {
            data: b"unsprawl\n".to_vec(),
            mode: 0o644,
        },
    );
    // RECORD last, listing every file with its hash (and itself without one)
    let mut record = String::new();
    for (p, c) in &files {
        if let Content::File { data, .. } = c {
            record.push_str(&format!(
                "{},{},{}\n",
                csv_field(p),
                record_hash(data),
                data.len()
            ));
        }
    }
    record.push_str(&format!("{dist_info}/RECORD,,\n"));
    files.insert(
        format!("{dist_info}/RECORD"),
        Content::File {
            data: record.into_bytes(),
            mode: 0o644,
        },
    );
    Ok(Harvested {
        name: crate::rules::normalize(&name),
        version,
        dist_info,
        files,
    })
}

fn csv_field(p: &str) -> String {
    if p.contains([',', '"']) {
        format!("\"{}\"", p.replace('"', "\"\""))
    } else {
        p.to_string()
    }
}

/// `[console_scripts]` of an `entry_points.txt`: `(name, module:function)`.
fn console_scripts(text: &str) -> Vec<(String, String)> {
    let mut out = vec![];
    let mut inside = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            inside = line == "[console_scripts]";
            continue;
        }
        if inside && let Some((k, v)) = line.split_once('=') {
            let target = v.split('[').next().unwrap_or(v).trim();
            out.push((k.trim().to_string(), target.to_string()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_pages_are_searched_for_the_exact_file() {
        let page = r#"<a href="../../packages/aa/dulwich-0.22.8.tar.gz#sha256=1">x</a>
<a href='https://files.example/dulwich-0.22.8-py3-none-any.whl#sha256=ff' data-requires-python="&gt;=3.9">y</a>"#;
        assert_eq!(
            html_link(page, "dulwich-0.22.8-py3-none-any.whl").as_deref(),
            Some("https://files.example/dulwich-0.22.8-py3-none-any.whl#sha256=ff")
        );
        assert_eq!(html_link(page, "dulwich-0.22.7-py3-none-any.whl"), None);
    }

    #[test]
    fn index_urls_lose_their_credentials_in_messages() {
        assert_eq!(
            redact("https://user:s3cret@mirror.example/simple"),
            "https://mirror.example/simple"
        );
        assert!(!redact("not a url with s3cret").contains("s3cret"));
    }

    #[test]
    fn console_scripts_are_read_from_their_section_only() {
        let t = "[console_scripts]\ndulwich = dulwich.cli:main\n\n[gui_scripts]\nx = y:z\n";
        assert_eq!(
            console_scripts(t),
            vec![("dulwich".to_string(), "dulwich.cli:main".to_string())]
        );
    }
}
