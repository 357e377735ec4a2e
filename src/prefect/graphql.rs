//! Prefect 1 GraphQL (Server's Hasura endpoint, or Cloud): every call is a POST with the
//! client version header Prefect 1.4.1 sends. Reads repeat freely; the writes `migrate`
//! sends repeat safely too (a registration carries an idempotency key, and a flow
//! group's run config is set to a value), so a call that broke off is sent again.

use serde_json::{Value, json};

use super::ApiError;

/// `query` with `variables` at `api`; its `data`, or the GraphQL errors it answered.
pub async fn call(
    client: &reqwest::Client,
    api: &str,
    key: Option<&str>,
    query: &str,
    variables: &Value,
) -> Result<Value, ApiError> {
    let body = json!({"query": query, "variables": variables});
    let text = super::send(api, || {
        let req = client
            .post(api)
            .header("X-PREFECT-CORE-VERSION", "1.4.1")
            .json(&body);
        match key {
            Some(k) => req.bearer_auth(k),
            None => req,
        }
    })
    .await?;
    let doc = super::json(api, &text)?;
    if let Some(errs) = doc
        .get("errors")
        .and_then(Value::as_array)
        .filter(|e| !e.is_empty())
    {
        return Err(ApiError::GraphQl {
            url: api.to_string(),
            messages: errs
                .iter()
                .filter_map(|e| e.get("message").and_then(Value::as_str))
                .map(str::to_string)
                .collect(),
        });
    }
    Ok(doc.get("data").cloned().unwrap_or(Value::Null))
}
