//! Prefect 1 Server / Cloud over GraphQL: every unarchived flow version with what the
//! migration needs, page by page (`limit`/`offset`).
//!
//! The API key is sent as `Authorization: Bearer …` and never printed. A failure after
//! some pages keeps the flows already read and says where the listing stopped, so
//! nothing is dropped silently.

use serde_json::{Value, json};

use crate::prefect::ApiError;

/// The flows query against Prefect 1 Server's GraphQL API (Hasura's `flow` table), paged,
/// with tasks and edges (the stored `serialized_flow` may lack edges; migration rebuilds them).
pub const FLOWS_QUERY: &str = r#"query Flows($where: flow_bool_exp, $limit: Int, $offset: Int) {
  flow(where: $where, order_by: [{name: asc}, {version: desc}], limit: $limit, offset: $offset) {
    id name version version_group_id archived core_version created
    storage run_config environment
    schedule is_schedule_active parameters description
    project { id name }
    flow_group { id name labels run_config schedule default_parameters settings }
    serialized_flow
    tasks { slug name type max_retries retry_delay tags trigger cache_key auto_generated }
    edges { key mapped upstream_task { slug } downstream_task { slug } }
  }
}"#;

pub struct Listing {
    /// Flow rows as the API returned them (same shape as a saved response).
    pub rows: Vec<Value>,
    /// Set when the listing stopped early: why, and at which offset.
    pub incomplete: Option<String>,
}

/// Read every unarchived flow version (of `project`, if given).
pub fn list_flows(
    api: &str,
    api_key: Option<&str>,
    project: Option<&str>,
    page: usize,
) -> Result<Listing, ApiError> {
    let (runtime, client) = crate::prefect::client()?;
    let mut filter = json!({"archived": {"_eq": false}});
    if let Some(p) = project {
        filter["project"] = json!({"name": {"_eq": p}});
    }
    runtime.block_on(async {
        let mut rows = Vec::new();
        let mut offset = 0usize;
        loop {
            let variables = json!({"where": filter, "limit": page, "offset": offset});
            let page_result =
                crate::prefect::graphql::call(&client, api, api_key, FLOWS_QUERY, &variables)
                    .await
                    .and_then(|data| {
                        data.get("flow")
                            .and_then(Value::as_array)
                            .cloned()
                            .ok_or_else(|| ApiError::Shape {
                                url: api.to_string(),
                                what: "the answer has no data.flow list".into(),
                            })
                    });
            match page_result {
                Ok(batch) => {
                    let n = batch.len();
                    rows.extend(batch);
                    if n < page {
                        return Ok(Listing {
                            rows,
                            incomplete: None,
                        });
                    }
                    offset += n;
                }
                // nothing read yet: the whole listing failed
                Err(e) if rows.is_empty() => return Err(e),
                Err(e) => {
                    return Ok(Listing {
                        rows,
                        incomplete: Some(format!(
                            "the flow listing stopped at offset {offset}: {e}"
                        )),
                    });
                }
            }
        }
    })
}
