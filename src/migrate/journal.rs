//! The apply journal: one JSON line per event, flushed to disk (`fsync`) before the write
//! it announces. `intent` carries everything a rollback needs, so a crash at any point
//! leaves either no trace of a write or an `intent` that resume and rollback both read.
//! A torn last line (the crash came mid-line) is ignored: its write never started.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    /// `begin`, `intent`, `done`, `failed`.
    pub op: String,
    /// The flow key (absent for `begin`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// RFC 3339.
    pub at: String,
    #[serde(default)]
    pub data: Value,
}

pub struct Journal {
    file: File,
    pub path: PathBuf,
}

impl Journal {
    /// Open for appending, with the entries already there.
    pub fn open(path: &Path) -> Result<(Journal, Vec<Entry>), String> {
        let entries = read(path)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("cannot open journal {}: {e}", path.display()))?;
        Ok((
            Journal {
                file,
                path: path.to_path_buf(),
            },
            entries,
        ))
    }

    /// Append one entry and make it durable before returning.
    pub fn append(&mut self, op: &str, key: Option<&str>, data: Value) -> Result<(), String> {
        let e = Entry {
            op: op.into(),
            key: key.map(str::to_string),
            at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            data,
        };
        let mut line = serde_json::to_string(&e).expect("serializable");
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|_| self.file.sync_data())
            .map_err(|err| format!("cannot write journal {}: {err}", self.path.display()))
    }
}

/// Every complete entry of a journal (none when the file does not exist).
pub fn read(path: &Path) -> Result<Vec<Entry>, String> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(format!("cannot read journal {}: {e}", path.display())),
    };
    let lines: Vec<String> = BufReader::new(f)
        .lines()
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cannot read journal {}: {e}", path.display()))?;
    let n = lines.len();
    let mut out = vec![];
    for (i, l) in lines.iter().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Entry>(l) {
            Ok(e) => out.push(e),
            // the last line torn by a crash: its write never started
            Err(_) if i + 1 == n => {}
            Err(e) => {
                return Err(format!(
                    "journal {} line {}: not a journal entry ({e})",
                    path.display(),
                    i + 1
                ));
            }
        }
    }
    Ok(out)
}

/// Per key, in the order first written: the `intent` data and whether a `done` followed
/// the latest intent. A key written again (a resume finishing a half-done write) keeps
/// the first intent's `before` and `restore` (the state before any change) and takes the
/// latest `after`.
pub fn states(entries: &[Entry]) -> Vec<(String, Value, Option<Value>)> {
    let mut out: Vec<(String, Value, Option<Value>)> = vec![];
    for e in entries {
        let Some(k) = &e.key else { continue };
        match e.op.as_str() {
            "intent" => match out.iter_mut().find(|(x, _, _)| x == k) {
                Some(s) => {
                    s.1["after"] = e.data.get("after").cloned().unwrap_or(Value::Null);
                    s.2 = None;
                }
                None => out.push((k.clone(), e.data.clone(), None)),
            },
            "done" => {
                if let Some(s) = out.iter_mut().rev().find(|(x, _, _)| x == k) {
                    s.2 = Some(e.data.clone());
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_torn_last_line_is_ignored_and_states_follow_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j.jsonl");
        let (mut j, old) = Journal::open(&p).unwrap();
        assert!(old.is_empty());
        j.append("begin", None, json!({})).unwrap();
        j.append("intent", Some("a"), json!({"n": 1})).unwrap();
        j.append("done", Some("a"), json!({"id": "x"})).unwrap();
        j.append(
            "intent",
            Some("b"),
            json!({"n": 2, "before": 0, "after": 1}),
        )
        .unwrap();
        j.append(
            "intent",
            Some("b"),
            json!({"n": 3, "before": 1, "after": 2}),
        )
        .unwrap();
        drop(j);
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"{\"op\":\"do").unwrap();
        let e = read(&p).unwrap();
        assert_eq!(e.len(), 5);
        let s = states(&e);
        assert_eq!(
            s[0],
            ("a".into(), json!({"n": 1}), Some(json!({"id": "x"})))
        );
        assert_eq!(
            s[1],
            ("b".into(), json!({"n": 2, "before": 0, "after": 2}), None),
            "the first state before, the latest after"
        );
        std::fs::write(&p, "garbage\n{}\n").unwrap();
        assert!(read(&p).unwrap_err().contains("line 1"));
    }
}
