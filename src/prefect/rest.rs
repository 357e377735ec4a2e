//! Prefect 2/3 REST: a bearer key, and only calls that may be sent again (reads,
//! `…/filter` POSTs that change nothing, idempotent PATCHes), so every one retries
//! resets, 503s while the SQLite server settles, and 429s.

use serde_json::{Value, json};

use super::ApiError;

pub struct Api {
    /// `http://host:4200/api`, or a Cloud workspace's URL.
    pub base: String,
    pub client: reqwest::Client,
    pub key: Option<String>,
}

impl Api {
    /// `null` for an empty answer (a PATCH's 204).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let url = format!(
            "{}/{}",
            self.base.trim_end_matches('/'),
            path.trim_start_matches('/')
        );
        let text = super::send(&url, || {
            let mut req = self.client.request(method.clone(), &url);
            if let Some(k) = &self.key {
                req = req.bearer_auth(k);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            req
        })
        .await?;
        super::json(&url, &text)
    }

    /// Every item of a `…/filter` endpoint, `page` at a time.
    pub async fn all(&self, path: &str, page: usize) -> Result<Vec<Value>, ApiError> {
        let mut out = Vec::new();
        loop {
            let body = json!({"limit": page, "offset": out.len()});
            let batch = self.call(reqwest::Method::POST, path, Some(&body)).await?;
            let items = batch.as_array().cloned().ok_or_else(|| ApiError::Shape {
                url: format!("{}/{path}", self.base.trim_end_matches('/')),
                what: "expected a JSON array".into(),
            })?;
            let n = items.len();
            out.extend(items);
            if n < page {
                return Ok(out);
            }
        }
    }
}
