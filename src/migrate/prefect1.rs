//! Prefect 1: the new version of a flow, with Git storage and a run config of the same
//! type pointing at its runtime image, serialized as Prefect 1.4.1's schemas write them.
//!
//! The serialized flow is the server's copy with `storage` and `run_config` replaced;
//! edges are rebuilt from the `edges` relation when `flow.register()` left them out of
//! the stored copy (otherwise the new version would lose every dependency).

use std::io::Write;

use base64::Engine;
use serde_json::{Map, Value, json};
use sha2::Digest;

use super::GitTarget;
use super::gitref::RefKind;

/// Run config types that name an image, with every field Prefect 1.4.1 emits.
pub const RUN_CONFIG_FIELDS: &[(&str, &[&str])] = &[
    (
        "KubernetesRun",
        &[
            "image",
            "env",
            "labels",
            "job_template_path",
            "job_template",
            "cpu_limit",
            "cpu_request",
            "memory_limit",
            "memory_request",
            "service_account_name",
            "image_pull_secrets",
            "image_pull_policy",
        ],
    ),
    (
        "DockerRun",
        &["image", "env", "labels", "ports", "host_config"],
    ),
    (
        "ECSRun",
        &[
            "image",
            "env",
            "labels",
            "task_definition_path",
            "task_definition",
            "task_definition_arn",
            "cpu",
            "memory",
            "task_role_arn",
            "execution_role_arn",
            "run_task_kwargs",
        ],
    ),
    (
        "VertexRun",
        &[
            "image",
            "env",
            "labels",
            "machine_type",
            "scheduling",
            "service_account",
            "network",
            "worker_pool_specs",
        ],
    ),
];

/// Git storage for `flow_name` defined in `flow_path` (relative to the repository root).
pub fn git_storage(git: &GitTarget, flow_name: &str, flow_path: &str, version: &str) -> Value {
    let (branch, tag) = match git.git_ref.kind {
        RefKind::Branch => (Value::from(git.git_ref.name.clone()), Value::Null),
        RefKind::Tag => (Value::Null, Value::from(git.git_ref.name.clone())),
    };
    json!({
        "type": "Git",
        "__version__": version,
        "flow_path": flow_path,
        "flow_name": flow_name,
        "repo": git.repo,
        "repo_host": git.repo_host,
        "branch_name": branch,
        "tag": tag,
        "commit": null,
        "clone_depth": 1,
        "use_ssh": false,
        "format_access_token": true,
        "git_token_secret_name": git.token_secret,
        "git_token_username": git.token_username,
        "git_clone_url_secret_name": null,
        "flows": {flow_name: flow_path},
        "secrets": [],
    })
}

/// The run config the new version gets: the one in effect, same type, `image` replaced.
/// A type without an image (`LocalRun`, `UniversalRun`) or none at all (a legacy
/// `environment`) becomes `default_type` with the old env and labels; the returned note
/// says so.
pub fn run_config(
    effective: &Value,
    image: &str,
    default_type: &str,
    version: &str,
) -> Result<(Value, Option<String>), String> {
    let old_type = effective.get("type").and_then(Value::as_str);
    let keep_type = old_type.filter(|t| RUN_CONFIG_FIELDS.iter().any(|(n, _)| n == t));
    let (ty, note) = match (keep_type, old_type) {
        (Some(t), _) => (t, None),
        (None, Some(t)) => (
            default_type,
            Some(format!(
                "{t} names no image: the new version gets a {default_type} (env and labels kept)"
            )),
        ),
        (None, None) => (
            default_type,
            Some(format!(
                "no run config (a legacy environment): the new version gets a {default_type}"
            )),
        ),
    };
    let fields = RUN_CONFIG_FIELDS
        .iter()
        .find(|(n, _)| *n == ty)
        .map(|(_, f)| *f)
        .ok_or_else(|| {
            format!("--default-run-config {ty}: not a run config that names an image")
        })?;
    let mut out = Map::new();
    out.insert("type".into(), ty.into());
    out.insert("__version__".into(), version.into());
    for f in fields {
        let v = if keep_type.is_some() || *f == "env" || *f == "labels" {
            effective.get(*f).cloned().unwrap_or(Value::Null)
        } else {
            Value::Null
        };
        out.insert((*f).into(), v);
    }
    out.insert("image".into(), image.into());
    if out.get("labels").is_none_or(Value::is_null) {
        out.insert("labels".into(), json!([]));
    }
    // fields the type does not declare would be dropped silently by Prefect: say so
    if keep_type.is_some()
        && let Some(obj) = effective.as_object()
    {
        let unknown: Vec<&String> = obj
            .keys()
            .filter(|k| *k != "type" && *k != "__version__" && !fields.contains(&k.as_str()))
            .collect();
        if !unknown.is_empty() {
            return Err(format!(
                "the {ty} has fields Prefect 1.4.1 does not know: {unknown:?}"
            ));
        }
    }
    Ok((Value::Object(out), note))
}

/// The new serialized flow: the stored one with storage and run config replaced, edges
/// rebuilt when missing, and the 0.x `environment` dropped (1.x run configs replace it).
pub fn serialized_flow(row: &Value, storage: &Value, run_config: &Value) -> Result<Value, String> {
    let mut flow = restorable_flow(row)?;
    let obj = flow.as_object_mut().expect("checked");
    obj.insert("storage".into(), storage.clone());
    obj.insert("run_config".into(), run_config.clone());
    obj.remove("environment");
    Ok(flow)
}

/// The stored serialized flow as it can be registered again (edges rebuilt): what a
/// rollback registers.
pub fn restorable_flow(row: &Value) -> Result<Value, String> {
    let flow = json_field(row.get("serialized_flow"));
    let Some(obj) = flow.as_object() else {
        return Err("the server has no serialized_flow for this version".into());
    };
    let mut obj = obj.clone();
    if !obj.get("tasks").is_some_and(Value::is_array) {
        return Err("the stored serialized_flow has no tasks".into());
    }
    if !obj.get("edges").is_some_and(Value::is_array) {
        let version = obj.get("__version__").cloned().unwrap_or(Value::Null);
        let rel = row.get("edges").and_then(Value::as_array);
        let mut edges: Vec<Value> = rel
            .into_iter()
            .flatten()
            .map(|e| {
                let slug = |k: &str| {
                    e.pointer(&format!("/{k}/slug"))
                        .cloned()
                        .unwrap_or(Value::Null)
                };
                json!({
                    "upstream_task": {"slug": slug("upstream_task"), "__version__": version},
                    "downstream_task": {"slug": slug("downstream_task"), "__version__": version},
                    "key": e.get("key").cloned().unwrap_or(Value::Null),
                    "mapped": e.get("mapped").cloned().unwrap_or(Value::Bool(false)),
                    "flattened": false,
                    "__version__": version,
                })
            })
            .collect();
        if rel.is_none()
            && obj
                .get("tasks")
                .and_then(Value::as_array)
                .is_some_and(|t| t.len() > 1)
        {
            return Err(
                "the stored serialized_flow has no edges and the row has no edges relation to rebuild them from"
                    .into(),
            );
        }
        edges.sort_by_key(|e| {
            (
                e.pointer("/upstream_task/slug").map(Value::to_string),
                e.pointer("/downstream_task/slug").map(Value::to_string),
                e.get("key").map(Value::to_string),
            )
        });
        obj.insert("edges".into(), Value::Array(edges));
    }
    Ok(Value::Object(obj))
}

/// A JSON column the server may return as text (the scan reads it the same way).
pub use crate::flows::prefect1::json_field;

/// `prefect.utilities.graphql.compress`: gzip of the JSON text, then standard base64.
pub fn compress(flow: &Value) -> String {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(flow.to_string().as_bytes())
        .expect("writing to memory");
    let bytes = gz.finish().expect("writing to memory");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The flow [`compress`] packed: what a create call's `serialized_flow` registers.
pub fn expand(compressed: &str) -> Result<Value, String> {
    use std::io::Read;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(compressed)
        .map_err(|e| format!("not base64: {e}"))?;
    let mut text = Vec::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_end(&mut text)
        .map_err(|e| format!("not gzip: {e}"))?;
    serde_json::from_slice(&text).map_err(|e| format!("not a JSON flow: {e}"))
}

/// `json.dumps(v, sort_keys=True)` as Python writes it (`", "`, `": "`, ASCII escapes):
/// the text `prefect register` hashes into its idempotency key.
pub fn python_json(v: &Value) -> String {
    let mut out = String::new();
    write_py(v, &mut out);
    out
}

/// A float as Python's `repr` writes it: the shortest digits that read back the same,
/// fixed notation when the decimal point falls within 16 places (`0.0001`, `3.0`,
/// `1234567890123456.0`), else `d.ddde±XX` (`1e-05`, `1.5e-07`, `1e+16`).
pub fn python_float(f: f64) -> String {
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    // Rust's `{:e}` is the shortest round-trip form too: `1.2345678e4`
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').expect("`{:e}` has an exponent");
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let exp: i32 = exp.parse().expect("an integer exponent");
    let decpt = exp + 1; // the value is 0.DIGITS × 10^decpt
    let sign = if f < 0.0 { "-" } else { "" };
    let n = digits.len() as i32;
    let body = if -4 < decpt && decpt <= 16 {
        if decpt <= 0 {
            format!("0.{}{digits}", "0".repeat((-decpt) as usize))
        } else if decpt >= n {
            format!("{digits}{}.0", "0".repeat((decpt - n) as usize))
        } else {
            format!(
                "{}.{}",
                &digits[..decpt as usize],
                &digits[decpt as usize..]
            )
        }
    } else {
        let (first, rest) = digits.split_at(1);
        let e = decpt - 1;
        format!(
            "{first}{}{rest}e{}{:02}",
            if rest.is_empty() { "" } else { "." },
            if e < 0 { '-' } else { '+' },
            e.abs()
        )
    };
    format!("{sign}{body}")
}

fn write_py(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|_| n.is_f64()) {
                out.push_str(&python_float(f));
            } else {
                out.push_str(&n.to_string());
            }
        }
        Value::String(s) => {
            out.push('"');
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    '\u{8}' => out.push_str("\\b"),
                    '\u{c}' => out.push_str("\\f"),
                    // ensure_ascii escapes everything outside ' '..='~' (DEL too)
                    c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                        let mut buf = [0u16; 2];
                        for unit in c.encode_utf16(&mut buf) {
                            out.push_str(&format!("\\u{unit:04x}"));
                        }
                    }
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_py(x, out);
            }
            out.push(']');
        }
        Value::Object(o) => {
            out.push('{');
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_py(&Value::String(k.clone()), out);
                out.push_str(": ");
                write_py(&o[k], out);
            }
            out.push('}');
        }
    }
}

/// `sha256_hex(json.dumps(serialized_flow, sort_keys=True))`, as `prefect register`.
pub fn idempotency_key(flow: &Value) -> String {
    hex::encode(sha2::Sha256::digest(python_json(flow).as_bytes()))
}

/// The GraphQL variables of `create_flow_from_compressed_string` for this version.
pub fn create_variables(row: &Value, flow: &Value) -> Result<Value, String> {
    let project_id = row
        .pointer("/project/id")
        .and_then(Value::as_str)
        .ok_or("the row has no project id")?;
    let group = row
        .get("version_group_id")
        .and_then(Value::as_str)
        .ok_or("the row has no version_group_id")?;
    Ok(json!({"input": {
        "serialized_flow": compress(flow),
        "project_id": project_id,
        "version_group_id": group,
        "set_schedule_active": row.get("is_schedule_active").and_then(Value::as_bool).unwrap_or(false),
        "description": row.get("description").cloned().unwrap_or(Value::Null),
        "idempotency_key": idempotency_key(flow),
    }}))
}

/// The structural rules Prefect's schema and constructors enforce on what we write
/// (§a, §d): a document failing them is never written.
pub fn check_git_storage(s: &Value, flow_name: &str) -> Vec<String> {
    let mut out = vec![];
    let path = s.get("flow_path").and_then(Value::as_str).unwrap_or("");
    if path.is_empty() || path.starts_with('/') {
        out.push(format!(
            "flow_path {path:?} must be relative to the repository root"
        ));
    }
    if s.get("repo_host")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        out.push("repo_host must be a host name (null does not load)".into());
    }
    if s.get("repo")
        .and_then(Value::as_str)
        .is_none_or(|r| r.split('/').count() < 2)
    {
        out.push("repo must be OWNER/NAME".into());
    }
    let set = ["branch_name", "tag", "commit"]
        .iter()
        .filter(|k| s.get(**k).is_some_and(|v| !v.is_null()))
        .count();
    if set != 1 || s.get("commit").is_some_and(|c| !c.is_null()) {
        out.push(
            "exactly one of branch_name or tag must be set (commit is ignored at run time)".into(),
        );
    }
    if s.pointer(&format!(
        "/flows/{}",
        flow_name.replace('~', "~0").replace('/', "~1")
    ))
    .and_then(Value::as_str)
        != Some(path)
    {
        out.push(format!("flows has no entry {flow_name:?} → {path:?}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_are_written_as_python_repr_writes_them() {
        // `python3 -c "print([repr(x) for x in (...)])"`
        for (f, py) in [
            (1e-05, "1e-05"),
            (0.0001, "0.0001"),
            (1.5e-7, "1.5e-07"),
            (0.1, "0.1"),
            (3.0, "3.0"),
            (12345.678, "12345.678"),
            (1e16, "1e+16"),
            (1234567890123456.0, "1234567890123456.0"),
            (1e21, "1e+21"),
            (1e100, "1e+100"),
            (-2.5e-300, "-2.5e-300"),
            (-0.0, "-0.0"),
            (123.0e10, "1230000000000.0"),
        ] {
            assert_eq!(python_float(f), py, "{f:e}");
        }
    }

    #[test]
    fn the_document_check_refuses_what_prefect_1_would_not_load() {
        let good = serde_json::json!({"type": "Git", "flow_path": "flows/a.py", "repo_host": "git.example.com",
            "repo": "platform/flows", "branch_name": "main", "tag": null, "commit": null,
            "flows": {"a": "flows/a.py"}});
        assert!(check_git_storage(&good, "a").is_empty());
        let refused = |patch: serde_json::Value, want: &str| {
            let mut s = good.clone();
            for (k, v) in patch.as_object().unwrap() {
                s[k] = v.clone();
            }
            let problems = check_git_storage(&s, "a");
            assert!(
                problems.iter().any(|p| p.contains(want)),
                "{want}: {problems:?}"
            );
        };
        refused(
            serde_json::json!({"flow_path": "/abs/a.py", "flows": {"a": "/abs/a.py"}}),
            "relative",
        );
        refused(serde_json::json!({"repo_host": null}), "repo_host");
        refused(serde_json::json!({"repo": "flows"}), "OWNER/NAME");
        refused(
            serde_json::json!({"tag": "v1"}),
            "exactly one of branch_name or tag",
        );
        refused(
            serde_json::json!({"branch_name": null}),
            "exactly one of branch_name or tag",
        );
        refused(serde_json::json!({"commit": "abc"}), "commit is ignored");
        refused(
            serde_json::json!({"flows": {"b": "flows/a.py"}}),
            "flows has no entry",
        );
    }

    #[test]
    fn python_json_matches_json_dumps() {
        // json.dumps({"b": [1, 2.0, "é\n"], "a": None}, sort_keys=True)
        let v = json!({"b": [1, 2.0, "é\n"], "a": null});
        assert_eq!(python_json(&v), r#"{"a": null, "b": [1, 2.0, "\u00e9\n"]}"#);
        assert_eq!(python_json(&json!("😀")), r#""\ud83d\ude00""#);
    }

    #[test]
    fn compress_is_gzip_base64_of_the_json() {
        use std::io::Read;
        let v = json!({"name": "flow-a"});
        let raw = base64::engine::general_purpose::STANDARD
            .decode(compress(&v))
            .unwrap();
        assert_eq!(&raw[..2], &[0x1f, 0x8b], "gzip magic, not zlib");
        let mut text = String::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), v);
    }

    #[test]
    fn run_config_keeps_type_and_fields() {
        let old: Value = serde_json::from_str(include_str!(
            "../../fixtures/prefect1/flow_docker_k8s.serialized.json"
        ))
        .unwrap();
        let (rc, note) = run_config(
            &old["run_config"],
            "reg/runtime:1",
            "KubernetesRun",
            "1.4.1",
        )
        .unwrap();
        assert_eq!(note, None);
        assert_eq!(rc["type"], "KubernetesRun");
        assert_eq!(rc["image"], "reg/runtime:1");
        for k in [
            "env",
            "labels",
            "cpu_request",
            "service_account_name",
            "image_pull_secrets",
        ] {
            assert_eq!(rc[k], old["run_config"][k], "{k} kept");
        }
        let (rc, note) = run_config(
            &json!({"type": "LocalRun", "env": {"A": "1"}, "labels": ["x"], "working_dir": "/r"}),
            "img",
            "DockerRun",
            "1.4.1",
        )
        .unwrap();
        assert_eq!(rc["type"], "DockerRun");
        assert_eq!(rc["env"], json!({"A": "1"}));
        assert_eq!(rc["ports"], Value::Null);
        assert!(note.unwrap().contains("LocalRun"));
        let (rc, _) = run_config(&Value::Null, "img", "KubernetesRun", "1.4.1").unwrap();
        assert_eq!(rc["labels"], json!([]));
        assert!(run_config(&Value::Null, "img", "LocalRun", "1.4.1").is_err());
    }

    #[test]
    fn edges_are_rebuilt_from_the_relation() {
        let mut row = json!({
            "serialized_flow": {"name": "f", "tasks": [{"slug": "a-1"}, {"slug": "b-1"}], "__version__": "1.4.1"},
            "edges": [{"key": "x", "mapped": false, "upstream_task": {"slug": "a-1"}, "downstream_task": {"slug": "b-1"}}],
        });
        let f = restorable_flow(&row).unwrap();
        assert_eq!(f["edges"][0]["upstream_task"]["slug"], "a-1");
        assert_eq!(f["edges"][0]["key"], "x");
        row.as_object_mut().unwrap().remove("edges");
        assert!(restorable_flow(&row).unwrap_err().contains("no edges"));
    }
}
