//! The human diff of a migration: per flow, the fields of storage and run config (or of
//! the deployment) that change, one line each, in the order the documents have them.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::Value;

use super::{Migration, Status};

/// `a.b[0].c` → value, for every leaf (empty objects and arrays count as leaves).
fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, String>) {
    match v {
        Value::Object(o) if !o.is_empty() => {
            for (k, x) in o {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&p, x, out);
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for (i, x) in a.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), x, out);
            }
        }
        _ => {
            out.insert(prefix.to_string(), v.to_string());
        }
    }
}

/// The changed leaves of `before` → `after`, as `  path: old → new` lines (`-`/`+` for
/// fields only one side has).
pub fn fields(before: &Value, after: &Value) -> Vec<String> {
    let (mut b, mut a) = (BTreeMap::new(), BTreeMap::new());
    flatten("", before, &mut b);
    flatten("", after, &mut a);
    let keys: std::collections::BTreeSet<&String> = b.keys().chain(a.keys()).collect();
    keys.into_iter()
        .filter_map(|k| match (b.get(k), a.get(k)) {
            (Some(x), Some(y)) if x == y => None,
            (Some(x), Some(y)) => Some(format!("  {k}: {x} → {y}")),
            // a field that is null on one side only is noise: Prefect emits every field
            (Some(x), None) if x == "null" => None,
            (None, Some(y)) if y == "null" => None,
            (Some(x), None) => Some(format!("- {k}: {x}")),
            (None, Some(y)) => Some(format!("+ {k}: {y}")),
            (None, None) => None,
        })
        .collect()
}

/// The whole migration as Markdown: the reference, then each flow.
pub fn markdown(m: &Migration) -> String {
    let mut s = String::new();
    let r = &m.git.git_ref;
    let _ = writeln!(s, "# Migration to Git ({})\n", m.target);
    let _ = writeln!(
        s,
        "Repository {} at {} `{}` (commit {:.12}, chosen by {}).",
        m.git.url,
        super::kind_word(r),
        r.name,
        r.commit,
        r.decided_by
    );
    for n in &r.notes {
        let _ = writeln!(s, "\n> {n}");
    }
    let _ = writeln!(
        s,
        "\n{} flows: {} ready, {} refused, {} already migrated; {} not touched.\n",
        m.summary.items, m.summary.ready, m.summary.refused, m.summary.done, m.summary.skipped
    );
    for it in &m.items {
        let status = match it.status {
            Status::Ready => "ready",
            Status::Refused => "REFUSED",
            Status::Done => "already migrated",
        };
        let _ = writeln!(s, "## {} — {status}\n", it.title());
        let _ = writeln!(
            s,
            "`{}` → runtime image `{}`, file `{}`\n",
            it.key,
            it.runtime_image,
            it.flow_path.as_deref().unwrap_or("?")
        );
        for c in &it.checks {
            let _ = writeln!(
                s,
                "- {} {}: {}",
                match (c.ok, c.checked) {
                    (false, _) => "✗",
                    (true, false) => "–",
                    (true, true) => "✓",
                },
                c.check,
                c.detail
            );
        }
        for n in &it.notes {
            let _ = writeln!(s, "- note: {n}");
        }
        if it.status == Status::Ready {
            let _ = writeln!(s, "\n```diff");
            for l in fields(&it.before, &it.after) {
                let _ = writeln!(s, "{l}");
            }
            let _ = writeln!(s, "```");
        }
        let _ = writeln!(s);
    }
    if !m.skipped.is_empty() {
        let _ = writeln!(s, "## Not touched\n");
        for k in &m.skipped {
            if k.name.is_empty() {
                let _ = writeln!(s, "- `{}`: {}", k.flow, k.reason);
            } else {
                let _ = writeln!(s, "- {} (`{}`): {}", k.name, k.flow, k.reason);
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lists_changed_added_and_removed_fields() {
        let b = json!({"storage": {"type": "Docker", "image_name": "a", "path": null}, "run_config": {"image": "x", "env": {}}});
        let a = json!({"storage": {"type": "Git", "repo": "t/f", "tag": null}, "run_config": {"image": "y", "env": {}}});
        assert_eq!(
            fields(&b, &a),
            vec![
                "  run_config.image: \"x\" → \"y\"",
                "- storage.image_name: \"a\"",
                "+ storage.repo: \"t/f\"",
                "  storage.type: \"Docker\" → \"Git\"",
            ]
        );
    }
}
