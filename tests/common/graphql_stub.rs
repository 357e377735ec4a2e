//! A Prefect 1 GraphQL endpoint stub: answers the flows query from saved rows, page by
//! page (`limit`/`offset` variables), checks the bearer key, and can fail at an offset.
//! Prefect 1 Server needs Hasura and cannot run here; the rows are real response shapes.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

pub struct Stub {
    pub url: String,
    /// `(limit, offset)` of every flows request answered.
    pub pages: Arc<Mutex<Vec<(u64, u64)>>>,
    stop: Arc<AtomicBool>,
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Serve `rows`; `key` is the only accepted API key; `fail_at` answers 500 at that offset.
pub fn start(rows: Vec<Value>, key: &str, fail_at: Option<u64>) -> Stub {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/graphql", listener.local_addr().unwrap());
    listener.set_nonblocking(true).unwrap();
    let pages = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let (pages2, stop2, key) = (pages.clone(), stop.clone(), format!("Bearer {key}"));
    std::thread::spawn(move || {
        while !stop2.load(Ordering::Relaxed) {
            let Ok((mut s, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            s.set_nonblocking(false).unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            let _ = r.read_line(&mut line);
            let (mut len, mut auth) = (0usize, String::new());
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                    break;
                }
                let (k, v) = h.trim_end().split_once(':').unwrap_or(("", ""));
                match k.to_ascii_lowercase().as_str() {
                    "content-length" => len = v.trim().parse().unwrap_or(0),
                    "authorization" => auth = v.trim().to_string(),
                    _ => {}
                }
            }
            let mut body = vec![0u8; len];
            let _ = r.read_exact(&mut body);
            let (status, answer) = if auth != key {
                (401, json!({"errors": [{"message": "Invalid API key"}]}))
            } else {
                let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
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
            };
            let text = answer.to_string();
            let _ = write!(
                s,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    Stub { url, pages, stop }
}
