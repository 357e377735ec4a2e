//! Prefect 2/3 deployments over REST (`POST /api/deployments/filter`, pages of ≤ 200),
//! with their flows' names and their work pools' default images.
//!
//! A deployment runs on `job_variables.image`, else on the `image` default of its work
//! pool's base job template. Its code comes from its pull steps (`git_clone`…) or, with
//! none, from the image itself (the per-deployment-image pattern this tool migrates away
//! from). The REST client is [`crate::prefect::rest`].

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::inventory::{Flow, FlowLink, FlowState, Problem};
use crate::prefect::ApiError;
use crate::prefect::rest::Api;

pub struct Listing {
    pub flows: Vec<Flow>,
    pub problems: Vec<Problem>,
}

/// Read every deployment of the server at `api` (`http://host:4200/api`).
pub fn list(api: &str, key: Option<&str>, page: usize) -> Result<Listing, ApiError> {
    let (runtime, client) = crate::prefect::client()?;
    let api_client = Api {
        base: api.to_string(),
        client,
        key: key.map(str::to_string),
    };
    let page = page.clamp(1, 200);
    runtime.block_on(async {
        let deployments = api_client.all("deployments/filter", page).await?;
        let flows = api_client.all("flows/filter", page).await?;
        let flow_names: HashMap<String, String> = flows
            .iter()
            .filter_map(|f| {
                Some((
                    f.get("id")?.as_str()?.to_string(),
                    f.get("name")?.as_str()?.to_string(),
                ))
            })
            .collect();
        let mut pools: HashMap<String, Result<Value, ApiError>> = HashMap::new();
        for d in &deployments {
            if let Some(p) = d.get("work_pool_name").and_then(Value::as_str)
                && !pools.contains_key(p)
            {
                let got = api_client
                    .call(reqwest::Method::GET, &format!("work_pools/{p}"), None)
                    .await;
                pools.insert(p.to_string(), got);
            }
        }
        let mut problems = Vec::new();
        for (name, pool) in &pools {
            if let Err(e) = pool {
                problems.push(Problem {
                    layer: None,
                    path: Some(format!("{api} work pool {name}")),
                    message: e.to_string(),
                });
            }
        }
        let flows = deployments
            .iter()
            .map(|d| {
                let mut f = deployment(d, &flow_names, &pools);
                mark_if_flow_deleted(&mut f, d, &flow_names, api);
                f
            })
            .collect();
        Ok(Listing { flows, problems })
    })
}

/// The server lists every flow: a deployment whose flow is not among them is left over
/// from a deleted flow, and is not live.
fn mark_if_flow_deleted(f: &mut Flow, d: &Value, flow_names: &HashMap<String, String>, api: &str) {
    if let Some(id) = str_of(d, "flow_id")
        && !flow_names.contains_key(&id)
    {
        f.state = FlowState::FlowDeleted;
        f.state_reason = Some(format!("its flow {id} no longer exists on {api}"));
    }
}

/// Deployments declared in a `prefect.yaml` (what `prefect deploy` would create): the
/// file's `pull` section applies to deployments without their own; an image set from a
/// build step's output (`{{ build-image.image }}`) is not known until a build runs.
pub fn from_yaml(origin: &str, text: &str) -> Result<Listing, String> {
    let doc: Value =
        serde_norway::from_str(text).map_err(|e| format!("{origin}: not valid YAML: {e}"))?;
    let deployments = doc
        .get("deployments")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("{origin}: no `deployments:` list"))?;
    let shared_pull = doc.get("pull").cloned().unwrap_or(Value::Null);
    let mut flows = Vec::new();
    let mut problems = Vec::new();
    for (i, d) in deployments.iter().enumerate() {
        let Some(name) = str_of(d, "name") else {
            problems.push(Problem {
                layer: None,
                path: Some(format!("{origin}: deployments[{i}]")),
                message: "a deployment without a name".into(),
            });
            continue;
        };
        let pool = d.get("work_pool").cloned().unwrap_or(Value::Null);
        let api_shape = json!({
            "id": "",
            "name": name,
            "entrypoint": d.get("entrypoint").cloned().unwrap_or(Value::Null),
            "pull_steps": d.get("pull").cloned().filter(|p| !p.is_null()).unwrap_or(shared_pull.clone()),
            "job_variables": pool.get("job_variables").cloned().unwrap_or(json!({})),
            "work_pool_name": pool.get("name").cloned().unwrap_or(Value::Null),
            "work_queue_name": pool.get("work_queue_name").cloned().unwrap_or(Value::Null),
            "tags": d.get("tags").cloned().unwrap_or(Value::Null),
            "schedules": d.get("schedules").cloned().unwrap_or(Value::Null),
        });
        let mut f = deployment(&api_shape, &HashMap::new(), &HashMap::new());
        f.key = format!("prefect3-yaml:{origin}#{name}");
        f.flow_id = None;
        // without the flow's decorator at hand, its default name: the function's
        if let Some(func) =
            str_of(d, "entrypoint").and_then(|e| e.rsplit_once(':').map(|(_, f)| f.to_string()))
        {
            f.name = func.replace('_', "-");
        }
        if f.image_reference
            .as_deref()
            .is_some_and(|i| i.contains("{{"))
        {
            f.problems.push(Problem {
                layer: None,
                path: Some(f.key.clone()),
                message: format!(
                    "the image is {:?}, known only after a build step runs; scan the deployed server (--api) instead",
                    f.image_reference.as_deref().unwrap_or("")
                ),
            });
            f.image_reference = None;
            f.image_from = None;
        }
        flows.push(f);
    }
    Ok(Listing { flows, problems })
}

fn str_of(v: &Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::to_string)
        .filter(|s| !s.is_empty())
}

/// How a deployment gets its code.
fn code_source(d: &Value) -> String {
    let steps: Vec<String> = d
        .get("pull_steps")
        .and_then(Value::as_array)
        .map(|s| {
            s.iter()
                .filter_map(|step| step.as_object()?.keys().next().cloned())
                .collect()
        })
        .unwrap_or_default();
    if steps
        .iter()
        .any(|s| s.ends_with("git_clone") || s.ends_with("git_clone_project"))
    {
        "git_clone".into()
    } else if steps
        .iter()
        .any(|s| s.ends_with("pull_from_remote_storage"))
    {
        "remote_storage".into()
    } else if !d
        .get("storage_document_id")
        .unwrap_or(&Value::Null)
        .is_null()
    {
        "storage_block".into()
    } else {
        "image".into()
    }
}

fn deployment(
    d: &Value,
    flow_names: &HashMap<String, String>,
    pools: &HashMap<String, Result<Value, ApiError>>,
) -> Flow {
    let id = str_of(d, "id").unwrap_or_default();
    let key = format!("prefect3:{id}");
    let deployment_name = str_of(d, "name");
    let flow_id = str_of(d, "flow_id");
    let flow_name = flow_id
        .as_ref()
        .and_then(|f| flow_names.get(f))
        .cloned()
        .or_else(|| deployment_name.clone())
        .unwrap_or_default();
    let job_variables = d.get("job_variables").cloned().unwrap_or(Value::Null);
    let pool_name = str_of(d, "work_pool_name");
    let pool = pool_name
        .as_ref()
        .and_then(|p| pools.get(p))
        .and_then(|p| p.as_ref().ok());
    let pool_image = pool
        .and_then(|p| p.pointer("/base_job_template/variables/properties/image/default"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let (image_reference, image_from) = match str_of(&job_variables, "image") {
        Some(i) => (Some(i), Some("job_variables".to_string())),
        None => match pool_image {
            Some(i) => (Some(i), Some("work_pool".to_string())),
            None => (None, None),
        },
    };
    let labels = super::string_set(d.get("tags")).unwrap_or_default();
    let storage = json!({
        "pull_steps": d.get("pull_steps").cloned().unwrap_or(Value::Null),
        "entrypoint": d.get("entrypoint").cloned().unwrap_or(Value::Null),
        "path": d.get("path").cloned().unwrap_or(Value::Null),
        "storage_document_id": d.get("storage_document_id").cloned().unwrap_or(Value::Null),
        "infrastructure_document_id": d.get("infrastructure_document_id").cloned().unwrap_or(Value::Null),
        "work_pool_name": d.get("work_pool_name").cloned().unwrap_or(Value::Null),
        "work_queue_name": d.get("work_queue_name").cloned().unwrap_or(Value::Null),
    });
    Flow {
        key,
        system: crate::inventory::System::Prefect3,
        name: flow_name,
        deployment: deployment_name,
        project: None,
        flow_id: Some(id),
        version: None,
        version_group_id: None,
        storage_kind: Some(code_source(d)),
        run_config_kind: pool.and_then(|p| str_of(p, "type")),
        image_reference,
        image_from,
        labels,
        has_schedule: d
            .get("schedules")
            .and_then(Value::as_array)
            .is_some_and(|s| !s.is_empty()),
        archived: false,
        state: if d.get("paused").and_then(Value::as_bool) == Some(true) {
            FlowState::Paused
        } else {
            FlowState::Live
        },
        state_reason: None,
        live_version: None,
        group_overrides_run_config: false,
        storage,
        run_config: job_variables,
        flow_group_run_config: Value::Null,
        environment: Value::Null,
        link: FlowLink::none(),
        source: None,
        requirement: None,
        problems: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_real_deployments() {
        let dep: Value = serde_json::from_str(include_str!(
            "../../fixtures/prefect3/deployment.before_patch.json"
        ))
        .unwrap();
        let pool: Value = serde_json::from_str(include_str!(
            "../../fixtures/prefect3/work_pool.k8s-pool.json"
        ))
        .unwrap();
        let mut pools = HashMap::new();
        pools.insert("k8s-pool".to_string(), Ok(pool));
        let f = deployment(&dep, &HashMap::new(), &pools);
        assert_eq!(f.storage_kind.as_deref(), Some("image"));
        assert_eq!(f.image_from.as_deref(), Some("job_variables"));
        assert_eq!(
            f.image_reference.as_deref(),
            Some("registry.local:5000/team/flow-a:2023-01-01")
        );
        assert_eq!(f.run_config_kind.as_deref(), Some("kubernetes"));
        assert_eq!(f.state, FlowState::Live);
        let mut paused = dep.clone();
        paused["paused"] = Value::Bool(true);
        let f = deployment(&paused, &HashMap::new(), &pools);
        assert_eq!(
            f.state,
            FlowState::Paused,
            "paused is live: migrated, reported"
        );
        assert!(f.state.is_live());
        // a deployment of a flow the server no longer lists is not live
        let mut f = deployment(&dep, &HashMap::new(), &pools);
        mark_if_flow_deleted(&mut f, &dep, &HashMap::new(), "http://server/api");
        assert_eq!(f.state, FlowState::FlowDeleted);
        assert!(!f.state.is_live());
        assert!(
            f.state_reason
                .as_deref()
                .unwrap()
                .contains("no longer exists")
        );
        let flow_id = dep["flow_id"].as_str().unwrap().to_string();
        let known: HashMap<String, String> = [(flow_id, "flow-a".to_string())].into();
        let mut f = deployment(&dep, &known, &pools);
        mark_if_flow_deleted(&mut f, &dep, &known, "http://server/api");
        assert_eq!(f.state, FlowState::Live);
        let after: Value = serde_json::from_str(include_str!(
            "../../fixtures/prefect3/deployment.after_patch.json"
        ))
        .unwrap();
        assert_eq!(code_source(&after), "git_clone");
    }

    #[test]
    fn reads_prefect_yaml() {
        let l = from_yaml(
            "prefect.yaml",
            include_str!("../../fixtures/prefect3/prefect.yaml"),
        )
        .unwrap();
        assert_eq!(l.flows.len(), 3);
        let git = &l.flows[0];
        assert_eq!(git.deployment.as_deref(), Some("flow-a-yaml"));
        assert_eq!(git.name, "flow-a");
        assert_eq!(
            git.storage_kind.as_deref(),
            Some("git_clone"),
            "the file's pull section"
        );
        assert_eq!(
            git.image_reference.as_deref(),
            Some("registry.local:5000/team/runtime-py311:2023-01")
        );
        assert!(git.has_schedule);
        let baked = &l.flows[1];
        assert_eq!(
            baked.storage_kind.as_deref(),
            Some("image"),
            "its own pull section"
        );
        let built = &l.flows[2];
        assert_eq!(built.image_reference, None);
        assert!(built.problems[0].message.contains("build step"));
        assert!(from_yaml("x.yaml", "deployments: [").is_err());
    }
}
