//! A stateful Prefect 1 Server stand-in for the apply path (Prefect 1 Server needs Hasura
//! and Postgres and cannot run here). It behaves as `prefect1.md` §e describes the real
//! one: `create_flow_from_compressed_string` must carry gzip+base64 JSON, a project id,
//! a known `version_group_id` and an idempotency key; a key equal to the group's last one
//! creates nothing; a new version archives the others. It checks every request and can
//! fail the Nth registration *after* storing it (the answer is lost), which is the
//! hardest case for a resume.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex};

use base64::Engine;
use serde_json::{Value, json};

#[derive(Default)]
pub struct State {
    /// Every version, archived ones too.
    pub rows: Vec<Value>,
    /// Per version group: the last idempotency key and the flow group's run config.
    pub idempotency: HashMap<String, String>,
    pub group_run_config: HashMap<String, Value>,
    /// Decoded `serialized_flow` of every registration that created a version.
    pub registered: Vec<Value>,
    /// Registration requests seen (created or not).
    pub creates_seen: usize,
    /// Answer this registration (1-based) with a GraphQL error after storing it: the
    /// write committed, the answer says it failed. Not a transport failure, so the
    /// client does not send it again by itself; the next run must resume.
    pub fail_create_at: Option<usize>,
    /// Answer HTTP 500 to this registration (1-based) after storing it: a client that
    /// retries sends the same idempotency key and creates nothing twice.
    pub http_500_at: Option<usize>,
    /// Problems found in requests (a test asserts this stays empty).
    pub bad_requests: Vec<String>,
}

pub struct Stub {
    pub url: String,
    pub state: Arc<Mutex<State>>,
    _server: super::http_stub::Running,
}

impl Stub {
    /// Versions of a group, oldest first.
    pub fn versions(&self, group: &str) -> Vec<Value> {
        let st = self.state.lock().unwrap();
        let mut v: Vec<Value> = st
            .rows
            .iter()
            .filter(|r| r["version_group_id"] == group)
            .cloned()
            .collect();
        v.sort_by_key(|r| r["version"].as_i64());
        v
    }

    /// The live (unarchived) version of a group, with its group's override.
    pub fn live(&self, group: &str) -> Value {
        let st = self.state.lock().unwrap();
        let row = st
            .rows
            .iter()
            .find(|r| r["version_group_id"] == group && r["archived"] == false)
            .cloned()
            .unwrap_or_else(|| panic!("group {group} has no live version"));
        with_group(&st, row)
    }
}

impl Stub {
    /// A new version of `group` registered by someone else (a copy of the live one).
    pub fn register_elsewhere(&self, group: &str) -> String {
        let mut st = self.state.lock().unwrap();
        let mut row = st
            .rows
            .iter()
            .find(|r| r["version_group_id"] == group && r["archived"] == false)
            .cloned()
            .unwrap();
        let id = format!("20000000-0000-4000-8000-{:012}", st.rows.len());
        row["id"] = json!(id);
        row["version"] = json!(row["version"].as_i64().unwrap() + 1);
        for r in st
            .rows
            .iter_mut()
            .filter(|r| r["version_group_id"] == group)
        {
            r["archived"] = json!(true);
        }
        st.rows.push(row);
        id
    }
}

fn with_group(st: &State, mut row: Value) -> Value {
    let g = row["version_group_id"].as_str().unwrap_or("").to_string();
    row["flow_group"]["run_config"] = st.group_run_config.get(&g).cloned().unwrap_or(Value::Null);
    row
}

pub fn start(rows: Vec<Value>, key: &str) -> Stub {
    let mut st = State::default();
    for r in &rows {
        let g = r["version_group_id"].as_str().unwrap().to_string();
        st.group_run_config
            .insert(g, r["flow_group"]["run_config"].clone());
    }
    st.rows = rows;
    let state = Arc::new(Mutex::new(st));
    let (state2, key) = (state.clone(), format!("Bearer {key}"));
    let server = super::http_stub::serve(move |auth, body| {
        if auth != key {
            return (401, json!({"errors": [{"message": "Invalid API key"}]}));
        }
        let req: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        answer(&mut state2.lock().unwrap(), &req)
    });
    Stub {
        url: format!("{}/graphql", server.base),
        state,
        _server: server,
    }
}

fn error(st: &mut State, msg: String) -> (u16, Value) {
    st.bad_requests.push(msg.clone());
    (200, json!({"errors": [{"message": msg}]}))
}

fn answer(st: &mut State, req: &Value) -> (u16, Value) {
    let query = req["query"].as_str().unwrap_or("");
    let vars = match &req["variables"] {
        Value::String(s) => serde_json::from_str(s).unwrap_or(Value::Null),
        v => v.clone(),
    };
    if query.contains("create_flow_from_compressed_string(") {
        create(st, &vars["input"])
    } else if query.contains("set_flow_group_run_config(") {
        let fg = vars["input"]["flow_group_id"].as_str().unwrap_or("");
        let group = st
            .rows
            .iter()
            .find(|r| r["flow_group"]["id"] == fg)
            .and_then(|r| r["version_group_id"].as_str())
            .map(str::to_string);
        let Some(group) = group else {
            return error(
                st,
                format!("set_flow_group_run_config: no flow group {fg:?}"),
            );
        };
        st.group_run_config
            .insert(group, vars["input"]["run_config"].clone());
        (
            200,
            json!({"data": {"set_flow_group_run_config": {"success": true}}}),
        )
    } else if query.contains("flow(") {
        let w = &vars["where"];
        if w["archived"]["_eq"] != json!(false) {
            return error(st, "flows query without the archived filter".into());
        }
        let group = w["version_group_id"]["_eq"].as_str();
        let mut rows: Vec<Value> = st
            .rows
            .iter()
            .filter(|r| r["archived"] == false)
            .filter(|r| group.is_none_or(|g| r["version_group_id"] == g))
            .cloned()
            .collect();
        rows.sort_by(|a, b| {
            (a["name"].as_str(), -a["version"].as_i64().unwrap_or(0))
                .cmp(&(b["name"].as_str(), -b["version"].as_i64().unwrap_or(0)))
        });
        let limit = vars["limit"].as_u64().unwrap_or(100) as usize;
        let offset = vars["offset"].as_u64().unwrap_or(0) as usize;
        let page: Vec<Value> = rows
            .into_iter()
            .skip(offset)
            .take(limit)
            .map(|r| with_group(st, r))
            .collect();
        (200, json!({"data": {"flow": page}}))
    } else {
        error(st, format!("unexpected query {query:.60}"))
    }
}

fn create(st: &mut State, input: &Value) -> (u16, Value) {
    st.creates_seen += 1;
    let Some(text) = input["serialized_flow"].as_str() else {
        return error(st, "serialized_flow is not a string".into());
    };
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(text) else {
        return error(st, "serialized_flow is not standard base64".into());
    };
    if raw.get(..2) != Some(&[0x1f, 0x8b]) {
        return error(st, "Unable to decompress serialized flow (not gzip)".into());
    }
    let mut json_text = String::new();
    if flate2::read::GzDecoder::new(&raw[..])
        .read_to_string(&mut json_text)
        .is_err()
    {
        return error(st, "Unable to decompress serialized flow".into());
    }
    let Ok(flow) = serde_json::from_str::<Value>(&json_text) else {
        return error(st, "the decompressed flow is not JSON".into());
    };
    let group = input["version_group_id"].as_str().unwrap_or("").to_string();
    let key = input["idempotency_key"].as_str().unwrap_or("").to_string();
    if input["project_id"].as_str().is_none_or(str::is_empty) {
        return error(st, "no project_id".into());
    }
    if key.is_empty() {
        return error(st, "no idempotency_key".into());
    }
    let Some(live) = st
        .rows
        .iter()
        .find(|r| r["version_group_id"] == group.as_str() && r["archived"] == false)
        .cloned()
    else {
        return error(
            st,
            format!("version_group_id {group:?} is not a group of this server"),
        );
    };
    if live["project"]["id"] != input["project_id"] {
        return error(st, "project_id differs from the group's".into());
    }
    if flow["name"] != live["name"] {
        return error(
            st,
            format!(
                "the flow is named {}, its group {}",
                flow["name"], live["name"]
            ),
        );
    }
    if st.idempotency.get(&group) == Some(&key) {
        // the same registration again: no new version (server behaviour, §e step 3)
        return (
            200,
            json!({"data": {"create_flow_from_compressed_string": {"id": live["id"]}}}),
        );
    }
    let version = st
        .rows
        .iter()
        .filter(|r| r["version_group_id"] == group.as_str())
        .filter_map(|r| r["version"].as_i64())
        .max()
        .unwrap_or(0)
        + 1;
    for r in st
        .rows
        .iter_mut()
        .filter(|r| r["version_group_id"] == group.as_str())
    {
        r["archived"] = json!(true);
    }
    let id = format!("10000000-0000-4000-8000-{:012}", st.rows.len());
    let mut row = live.clone();
    row["id"] = json!(id);
    row["version"] = json!(version);
    row["archived"] = json!(false);
    row["storage"] = flow["storage"].clone();
    row["run_config"] = flow["run_config"].clone();
    row["serialized_flow"] = flow.clone();
    row["is_schedule_active"] = input["set_schedule_active"].clone();
    row["edges"] = json!(
        flow["edges"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| json!({"key": e["key"], "mapped": e["mapped"],
                "upstream_task": {"slug": e["upstream_task"]["slug"]},
                "downstream_task": {"slug": e["downstream_task"]["slug"]}}))
            .collect::<Vec<_>>()
    );
    st.rows.push(row);
    st.idempotency.insert(group, key);
    st.registered.push(flow);
    if st.fail_create_at == Some(st.creates_seen) {
        return (200, json!({"errors": [{"message": "internal error"}]}));
    }
    if st.http_500_at == Some(st.creates_seen) {
        return (500, json!({"errors": [{"message": "internal error"}]}));
    }
    (
        200,
        json!({"data": {"create_flow_from_compressed_string": {"id": id}}}),
    )
}
