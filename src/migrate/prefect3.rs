//! Prefect 2/3: a deployment moves to a `git_clone` pull step and its runtime image in
//! `job_variables.image` (the deployment fields Prefect 3's REST API `PATCH /deployments/{id}` takes).
//!
//! PATCH replaces `job_variables` and `pull_steps` whole, so the body carries the merged
//! objects; it always sends `work_pool_name` (the server validates job variables only
//! then) together with the current `work_queue_name` (without it the deployment would
//! move to the pool's default queue).

use serde_json::{Map, Value, json};

use super::GitTarget;

/// The deployment fields a migration changes, and a rollback restores.
pub const FIELDS: &[&str] = &[
    "pull_steps",
    "job_variables",
    "entrypoint",
    "path",
    "work_pool_name",
    "work_queue_name",
];

/// What `DeploymentUpdate` accepts (3.9.1): a body with anything else is refused (422).
const UPDATE_KEYS: &[&str] = &[
    "version",
    "description",
    "paused",
    "schedules",
    "concurrency_limit",
    "concurrency_options",
    "global_concurrency_limit_id",
    "parameters",
    "parameter_openapi_schema",
    "tags",
    "work_queue_name",
    "work_pool_name",
    "path",
    "job_variables",
    "pull_steps",
    "entrypoint",
    "storage_document_id",
    "infrastructure_document_id",
    "enforce_parameter_schema",
    "version_info",
];

/// The migration's fields of a deployment (absent ones as `null`).
pub fn snapshot(deployment: &Value) -> Value {
    Value::Object(
        FIELDS
            .iter()
            .map(|k| {
                (
                    k.to_string(),
                    deployment.get(*k).cloned().unwrap_or(Value::Null),
                )
            })
            .collect(),
    )
}

/// The `git_clone` pull steps for the repository at the chosen reference. Tags go into
/// `branch` too: `git clone --branch` takes both, and there is no `tag` argument.
pub fn git_clone_step(git: &GitTarget) -> Value {
    let mut step = Map::new();
    step.insert("id".into(), "clone-step".into());
    step.insert("repository".into(), git.url.clone().into());
    step.insert("branch".into(), git.git_ref.name.clone().into());
    if let Some(secret) = &git.token_secret {
        step.insert(
            "access_token".into(),
            format!("{{{{ prefect.blocks.secret.{secret} }}}}").into(),
        );
    }
    // the engine changes into the clone itself; the explicit step is what the verified
    // reference deployment has, and keeps older 2.x workers right too
    json!([
        {"prefect.deployments.steps.git_clone": step},
        {"prefect.deployments.steps.set_working_directory": {"directory": "{{ clone-step.directory }}"}},
    ])
}

/// The PATCH body: the current job variables with `image` replaced, the pull step, and
/// the entrypoint relative to the repository root.
pub fn patch_body(current: &Value, git: &GitTarget, image: &str, entrypoint: &str) -> Value {
    let mut job_variables = current
        .get("job_variables")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    job_variables.insert("image".into(), image.into());
    json!({
        "pull_steps": git_clone_step(git),
        "job_variables": job_variables,
        "entrypoint": entrypoint,
        "path": null,
        "work_pool_name": current.get("work_pool_name").cloned().unwrap_or(Value::Null),
        "work_queue_name": current.get("work_queue_name").cloned().unwrap_or(Value::Null),
    })
}

/// What is wrong with a body before it is sent.
pub fn check_body(body: &Value) -> Vec<String> {
    let mut out = vec![];
    let Some(obj) = body.as_object() else {
        return vec!["the PATCH body is not an object".into()];
    };
    for k in obj.keys() {
        if !UPDATE_KEYS.contains(&k.as_str()) {
            out.push(format!("{k} is not a DeploymentUpdate field"));
        }
    }
    if obj.get("work_pool_name").is_none_or(Value::is_null) {
        out.push("the deployment has no work pool: there is nowhere to set an image".into());
    }
    let step = body.pointer("/pull_steps/0/prefect.deployments.steps.git_clone");
    if step
        .and_then(|s| s.get("repository"))
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        out.push("the git_clone step has no repository".into());
    }
    let ep = obj.get("entrypoint").and_then(Value::as_str).unwrap_or("");
    match ep.rsplit_once(':') {
        Some((path, func))
            if !path.starts_with('/') && path.ends_with(".py") && !func.is_empty() => {}
        _ => out.push(format!("entrypoint {ep:?} is not path/in/repo.py:function")),
    }
    out
}

/// The deployment's block for `prefect.yaml`, for teams that deploy with `prefect deploy`.
pub fn yaml_deployment(name: &str, body: &Value) -> Value {
    json!({
        "name": name,
        "entrypoint": body["entrypoint"],
        "pull": body["pull_steps"],
        "work_pool": {
            "name": body["work_pool_name"],
            "work_queue_name": body["work_queue_name"],
            "job_variables": body["job_variables"],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::gitref::{GitRef, RefKind};

    fn git() -> GitTarget {
        GitTarget {
            url: "https://git.example.com/team/flows.git".into(),
            repo_host: "git.example.com".into(),
            repo: "team/flows".into(),
            token_secret: Some("flows-git-token".into()),
            token_username: None,
            git_ref: GitRef {
                kind: RefKind::Branch,
                name: "main".into(),
                decided_by: "test".into(),
                annotated: false,
                commit: "0".repeat(40),
                notes: vec![],
            },
        }
    }

    #[test]
    fn body_matches_the_verified_patch() {
        let before: Value = serde_json::from_str(include_str!(
            "../../fixtures/prefect3/deployment.before_patch.json"
        ))
        .unwrap();
        let body = patch_body(
            &before,
            &git(),
            "registry.local:5000/team/runtime-py311:2023-01",
            "flows/flow_a.py:flow_a",
        );
        assert!(check_body(&body).is_empty(), "{:?}", check_body(&body));
        let after: Value = serde_json::from_str(include_str!(
            "../../fixtures/prefect3/deployment.after_patch.json"
        ))
        .unwrap();
        // the reference PATCH, made by hand, gave the same stored fields
        for k in [
            "pull_steps",
            "job_variables",
            "entrypoint",
            "path",
            "work_pool_name",
        ] {
            assert_eq!(body[k], after[k], "{k}");
        }
        assert_eq!(body["work_queue_name"], before["work_queue_name"]);
        let mut bad = body.clone();
        bad["tag"] = "v1".into();
        bad["entrypoint"] = "/abs.py:f".into();
        assert_eq!(check_body(&bad).len(), 2);
    }
}
