//! A Prefect 1 GraphQL endpoint stub: answers the flows query from saved rows, page by
//! page (`limit`/`offset` variables), checks the bearer key, and can fail at an offset.
//! Prefect 1 Server needs Hasura and cannot run here; the rows are real response shapes.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

pub struct Stub {
    pub url: String,
    /// `(limit, offset)` of every flows request answered.
    pub pages: Arc<Mutex<Vec<(u64, u64)>>>,
    _server: super::http_stub::Running,
}

/// The fields Prefect 1 Server's GraphQL schema has on the tables the flows query reads
/// (Hasura's `flow`, `flow_group` and `project` tables, as Prefect 1.4.1 Server defines them).
const SCHEMA: &[(&str, &[&str])] = &[
    (
        "flow",
        &[
            "id",
            "name",
            "version",
            "version_group_id",
            "flow_group_id",
            "flow_group",
            "project_id",
            "project",
            "archived",
            "core_version",
            "storage",
            "run_config",
            "environment",
            "serialized_flow",
            "parameters",
            "schedule",
            "is_schedule_active",
            "description",
            "settings",
            "created",
            "updated",
            "tasks",
            "edges",
            "flow_runs",
        ],
    ),
    (
        "flow_group",
        &[
            "id",
            "name",
            "labels",
            "run_config",
            "schedule",
            "default_parameters",
            "settings",
            "description",
            "flows",
        ],
    ),
    ("project", &["id", "name", "description", "flows"]),
    (
        "tasks",
        &[
            "id",
            "flow_id",
            "slug",
            "name",
            "type",
            "max_retries",
            "retry_delay",
            "tags",
            "trigger",
            "cache_key",
            "auto_generated",
            "mapped",
            "description",
        ],
    ),
    (
        "edges",
        &[
            "id",
            "flow_id",
            "key",
            "mapped",
            "upstream_task",
            "downstream_task",
        ],
    ),
    ("upstream_task", &["id", "slug", "name"]),
    ("downstream_task", &["id", "slug", "name"]),
];

/// A parsed selection set: each field, with its own selection when it has one.
#[derive(Clone, Debug)]
struct Field(String, Option<Selection>);
type Selection = Vec<Field>;

/// Parse `{ a b { c } d(x: 1) }` from `chars[*at..]` (arguments are skipped).
fn selection(chars: &[char], at: &mut usize) -> Result<Selection, String> {
    let skip_ws = |at: &mut usize| {
        while *at < chars.len() && (chars[*at].is_whitespace() || chars[*at] == ',') {
            *at += 1;
        }
    };
    skip_ws(at);
    if chars.get(*at) != Some(&'{') {
        return Err("expected a selection set".into());
    }
    *at += 1;
    let mut out = vec![];
    loop {
        skip_ws(at);
        match chars.get(*at) {
            None => return Err("unclosed selection set".into()),
            Some('}') => {
                *at += 1;
                return Ok(out);
            }
            Some(c) if c.is_alphanumeric() || *c == '_' => {
                let start = *at;
                while *at < chars.len() && (chars[*at].is_alphanumeric() || chars[*at] == '_') {
                    *at += 1;
                }
                let name: String = chars[start..*at].iter().collect();
                skip_ws(at);
                if chars.get(*at) == Some(&'(') {
                    let mut depth = 0;
                    while *at < chars.len() {
                        match chars[*at] {
                            '(' => depth += 1,
                            ')' => {
                                depth -= 1;
                                if depth == 0 {
                                    *at += 1;
                                    break;
                                }
                            }
                            _ => {}
                        }
                        *at += 1;
                    }
                    skip_ws(at);
                }
                let sub = if chars.get(*at) == Some(&'{') {
                    Some(selection(chars, at)?)
                } else {
                    None
                };
                out.push(Field(name, sub));
            }
            Some(c) => return Err(format!("unexpected {c:?} in a selection set")),
        }
    }
}

/// The `flow(...) { ... }` selection of a query, checked against the schema.
fn flow_selection(query: &str) -> Result<Selection, String> {
    let start = query
        .find("flow(")
        .ok_or("the query selects no flow(...)")?;
    let chars: Vec<char> = query[start..].chars().collect();
    let mut at = 0;
    let top = selection(
        &['{']
            .iter()
            .chain(&chars)
            .copied()
            .chain(['}'])
            .collect::<Vec<_>>(),
        &mut at,
    )?;
    let Field(_, sel) = top.into_iter().next().ok_or("empty query")?;
    let sel = sel.ok_or("flow(...) has no selection set")?;
    fn check(table: &str, sel: &Selection, errors: &mut Vec<String>) {
        let fields = SCHEMA
            .iter()
            .find(|(t, _)| *t == table)
            .map(|(_, f)| *f)
            .unwrap_or(&[]);
        for Field(name, sub) in sel {
            if !fields.contains(&name.as_str()) {
                errors.push(format!("field \"{name}\" not found in type: '{table}'"));
            } else if let Some(sub) = sub {
                check(name, sub, errors);
            }
        }
    }
    let mut errors = vec![];
    check("flow", &sel, &mut errors);
    if errors.is_empty() {
        Ok(sel)
    } else {
        Err(errors.join("; "))
    }
}

/// Only what the query selected, as a GraphQL server answers.
fn project(v: &Value, sel: &Selection) -> Value {
    match v {
        Value::Array(a) => Value::Array(a.iter().map(|x| project(x, sel)).collect()),
        Value::Object(o) => Value::Object(
            sel.iter()
                .filter_map(|Field(name, sub)| {
                    let x = o.get(name)?;
                    Some((
                        name.clone(),
                        match sub {
                            Some(s) if x.is_object() || x.is_array() => project(x, s),
                            _ => x.clone(),
                        },
                    ))
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Serve `rows`; `key` is the only accepted API key; `fail_at` answers 500 at that offset.
/// The query's fields are checked against Prefect 1's schema (an unknown field is the
/// error Hasura gives), rows are answered with the selected fields only, filtered by
/// `where.project.name._eq` and sorted by `order_by` (name, then version descending).
pub fn start(rows: Vec<Value>, key: &str, fail_at: Option<u64>) -> Stub {
    let pages = Arc::new(Mutex::new(Vec::new()));
    let (pages2, key) = (pages.clone(), format!("Bearer {key}"));
    let server = super::http_stub::serve(move |auth, body| {
        if auth != key {
            return (401, json!({"errors": [{"message": "Invalid API key"}]}));
        }
        let req: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let query = req["query"].as_str().unwrap_or("");
        let limit = req["variables"]["limit"].as_u64().unwrap_or(100);
        let offset = req["variables"]["offset"].as_u64().unwrap_or(0);
        let filter_ok = req["variables"]["where"]["archived"]["_eq"] == json!(false);
        let sel = match flow_selection(query) {
            Ok(s) => s,
            Err(e) => return (200, json!({"errors": [{"message": e}]})),
        };
        if !filter_ok {
            (
                200,
                json!({"errors": [{"message": "unexpected query: no archived filter"}]}),
            )
        } else if fail_at == Some(offset) {
            (500, json!({"errors": [{"message": "internal error"}]}))
        } else {
            pages2.lock().unwrap().push((limit, offset));
            let project_name = req["variables"]["where"]["project"]["name"]["_eq"].as_str();
            let mut matching: Vec<&Value> = rows
                .iter()
                .filter(|r| project_name.is_none_or(|p| r["project"]["name"] == p))
                .collect();
            if query.contains("order_by") {
                matching.sort_by(|a, b| {
                    // ascending puts nulls last, as PostgreSQL does
                    let key = |r: &Value| {
                        (
                            r["name"].as_str().is_none(),
                            r["name"].as_str().map(str::to_string),
                        )
                    };
                    key(a)
                        .cmp(&key(b))
                        .then(b["version"].as_i64().cmp(&a["version"].as_i64()))
                });
            }
            let page: Vec<Value> = matching
                .into_iter()
                .skip(offset as usize)
                .take(limit as usize)
                .map(|r| project(r, &sel))
                .collect();
            (200, json!({"data": {"flow": page}}))
        }
    });
    Stub {
        url: format!("{}/graphql", server.base),
        pages,
        _server: server,
    }
}
