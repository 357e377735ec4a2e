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

/// Serve `rows`; `key` is the only accepted API key; `fail_at` answers 500 at that offset.
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
        if !query.contains("flow(") || !filter_ok {
            (200, json!({"errors": [{"message": "unexpected query"}]}))
        } else if fail_at == Some(offset) {
            (500, json!({"errors": [{"message": "internal error"}]}))
        } else {
            pages2.lock().unwrap().push((limit, offset));
            let page: Vec<Value> = rows
                .iter()
                .skip(offset as usize)
                .take(limit as usize)
                .cloned()
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
