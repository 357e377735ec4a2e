//! Writing a migration (`--apply`) and undoing it (`unsprawl rollback`).
//!
//! Every write is announced in the journal (fsync'd) before it is sent and confirmed
//! after the server's answer was read back; the first failure stops the run. Running
//! apply again continues: flows whose registration already is the migrated one are
//! `done` (prepare reads the live state), and a Prefect 1 re-send carries the same
//! idempotency key, so the server creates no second version.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use super::journal::{self, Journal};
use super::{Migration, Status, prefect3};
use crate::inventory::System;
use crate::prefect::ApiError;
use crate::prefect::rest::Api;

const CREATE: &str = "mutation($input: create_flow_from_compressed_string_input!) { create_flow_from_compressed_string(input: $input) { id } }";
const SET_GROUP_RUN_CONFIG: &str = "mutation($input: set_flow_group_run_config_input!) { set_flow_group_run_config(input: $input) { success } }";

/// A server and its API key (read from the environment; never printed).
pub struct Endpoint {
    pub api: String,
    pub key: Option<String>,
}

impl Endpoint {
    fn rest(&self, client: reqwest::Client) -> Api {
        Api {
            base: self.api.clone(),
            client,
            key: self.key.clone(),
        }
    }
}

/// Deployments by id, as the server has them now; ids it does not know are left out.
pub fn read_deployments(ep: &Endpoint, ids: &[String]) -> Result<HashMap<String, Value>, ApiError> {
    let (rt, client) = crate::prefect::client()?;
    let api = ep.rest(client);
    rt.block_on(async {
        let mut out = HashMap::new();
        for id in ids {
            match api
                .call(reqwest::Method::GET, &format!("deployments/{id}"), None)
                .await
            {
                Ok(d) => {
                    out.insert(id.clone(), d);
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    })
}

/// Whether the server has a Secret block named `name` (where a `git_clone` step's
/// `{{ prefect.blocks.secret.NAME }}` is resolved at run time); its value is never read.
pub fn secret_block(ep: &Endpoint, name: &str) -> Result<String, String> {
    let (rt, client) = crate::prefect::client().map_err(|e| e.to_string())?;
    let api = ep.rest(client);
    rt.block_on(async {
        let body = serde_json::json!({
            "block_documents": {"name": {"any_": [name]}, "is_anonymous": {"eq_": false}},
            "block_types": {"slug": {"any_": ["secret"]}},
            "include_secrets": false,
            "limit": 1,
        });
        let found = api
            .call(reqwest::Method::POST, "block_documents/filter", Some(&body))
            .await
            .map_err(|e| format!("cannot look up the Secret block {name:?}: {e}"))?;
        match found.as_array().and_then(|a| a.first()) {
            Some(b) => Ok(format!(
                "the Secret block {name:?} exists on the server (id {})",
                b["id"].as_str().unwrap_or("?")
            )),
            None => Err(format!(
                "the Secret block {name:?} does not exist on the server, so the git_clone step cannot resolve {{{{ prefect.blocks.secret.{name} }}}}: create it first (`prefect block create secret`, or `Secret(value=...).save({name:?})` in Python)"
            )),
        }
    })
}

/// Every live Prefect 1 flow version (all of them: a partial listing is an error here).
pub fn read_flows(ep: &Endpoint, project: Option<&str>) -> Result<Vec<Value>, String> {
    let l = crate::flows::prefect1_api::list_flows(&ep.api, ep.key.as_deref(), project, 200)
        .map_err(|e| e.to_string())?;
    match l.incomplete {
        Some(why) => Err(why),
        None => Ok(l.rows),
    }
}

async fn graphql(
    client: &reqwest::Client,
    ep: &Endpoint,
    query: &str,
    variables: &Value,
) -> Result<Value, String> {
    crate::prefect::graphql::call(client, &ep.api, ep.key.as_deref(), query, variables)
        .await
        .map_err(|e| e.to_string())
}

/// What an apply or rollback did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub written: Vec<String>,
    pub already: Vec<String>,
    pub refused: Vec<String>,
}

/// Write every `ready` item, in order, `pause` apart.
pub fn apply(
    m: &Migration,
    ep: &Endpoint,
    journal_path: &Path,
    pause: Duration,
) -> Result<Outcome, String> {
    let (mut j, _) = Journal::open(journal_path)?;
    j.append(
        "begin",
        None,
        json!({"target": m.target, "api": ep.api, "git": m.git}),
    )?;
    let (rt, client) = crate::prefect::client().map_err(|e| e.to_string())?;
    let mut out = Outcome::default();
    for it in &m.items {
        match it.status {
            Status::Done => {
                out.already.push(it.key.clone());
                continue;
            }
            Status::Refused => {
                out.refused.push(it.key.clone());
                continue;
            }
            Status::Ready => {}
        }
        j.append(
            "intent",
            Some(&it.key),
            json!({
                "target": m.target, "id": it.id, "name": it.name,
                "before": it.before, "after": it.after, "restore": it.restore,
                "write": it.write,
            }),
        )?;
        let result = rt.block_on(async {
            if m.target == System::Prefect3 {
                let api = ep.rest(client.clone());
                // read again right before writing: the migration read it a while ago
                let now = api
                    .call(
                        reqwest::Method::GET,
                        &format!("deployments/{}", it.id),
                        None,
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                if prefect3::snapshot(&now) != it.before {
                    return Err(format!(
                        "deployment {} changed since this run read it, not written: {}",
                        it.id,
                        super::diff::fields(&it.before, &prefect3::snapshot(&now)).join("; ")
                    ));
                }
                write_deployment(api, &it.id, &it.write, &it.after).await
            } else {
                // read again right before writing: a version registered by someone else
                // since this run read the group would be superseded by a stale copy
                if !it.write["create"].is_null() {
                    let group = &it.write["create"]["input"]["version_group_id"];
                    let live = live_version(&client, ep, group).await?;
                    if live["id"] != it.id.as_str() {
                        return Err(format!(
                            "version group {group} has a new live version ({}) since this run read it, not written",
                            live["id"]
                        ));
                    }
                }
                write_flow(&client, ep, &it.write).await
            }
        });
        match result {
            Ok(r) => {
                j.append("done", Some(&it.key), r)?;
                out.written.push(it.key.clone());
            }
            Err(e) => {
                j.append("failed", Some(&it.key), json!({"error": e}))?;
                return Err(format!(
                    "{} ({}): {e}\n{} written before it; run the same command again to continue, \
                     or `unsprawl rollback {}` to undo",
                    it.key,
                    it.name,
                    out.written.len(),
                    journal_path.display()
                ));
            }
        }
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
    }
    Ok(out)
}

/// PATCH, then read back: the stored fields must be what was sent.
async fn write_deployment(
    api: Api,
    id: &str,
    body: &Value,
    expect: &Value,
) -> Result<Value, String> {
    api.call(
        reqwest::Method::PATCH,
        &format!("deployments/{id}"),
        Some(body),
    )
    .await
    .map_err(|e| e.to_string())?;
    let now = api
        .call(reqwest::Method::GET, &format!("deployments/{id}"), None)
        .await
        .map_err(|e| e.to_string())?;
    if prefect3::snapshot(&now) != *expect {
        return Err(format!(
            "deployment {id} reads back different from what was sent: {}",
            super::diff::fields(expect, &prefect3::snapshot(&now)).join("; ")
        ));
    }
    Ok(json!({"id": id, "updated": now.get("updated").cloned().unwrap_or(Value::Null)}))
}

/// Register the new version; then clear the flow group override it folded in.
async fn write_flow(
    client: &reqwest::Client,
    ep: &Endpoint,
    write: &Value,
) -> Result<Value, String> {
    // a resume may have only the override left to clear
    let new_id = if write["create"].is_null() {
        Value::Null
    } else {
        let data = graphql(client, ep, CREATE, &write["create"]).await?;
        data.pointer("/create_flow_from_compressed_string/id")
            .and_then(Value::as_str)
            .ok_or("the server answered create_flow_from_compressed_string without an id")?
            .into()
    };
    if write["clear_group_run_config"] == json!(true) {
        let group = write["flow_group_id"].clone();
        graphql(
            client,
            ep,
            SET_GROUP_RUN_CONFIG,
            &json!({"input": {"flow_group_id": group, "run_config": null}}),
        )
        .await?;
    }
    Ok(json!({"new_flow_id": new_id}))
}

/// Where a journal's rollback journal lives.
pub fn rollback_journal_path(journal: &Path) -> PathBuf {
    let mut p = journal.as_os_str().to_owned();
    p.push(".rollback");
    PathBuf::from(p)
}

/// Restore every flow the journal changed (newest first) to what it was. Without
/// `apply`, only says what it would do. A registration changed by someone else since the
/// migration is left alone (listed as refused) unless `force`.
pub fn rollback(
    journal_path: &Path,
    ep: &Endpoint,
    apply: bool,
    force: bool,
    mut say: impl FnMut(String),
) -> Result<Outcome, String> {
    let entries = journal::read(journal_path)?;
    if entries.is_empty() {
        return Err(format!(
            "{} is empty or missing: nothing to roll back",
            journal_path.display()
        ));
    }
    let rb_path = rollback_journal_path(journal_path);
    let restored: Vec<String> = journal::states(&journal::read(&rb_path)?)
        .into_iter()
        .filter(|(_, _, done)| done.is_some())
        .map(|(k, _, _)| k)
        .collect();
    let mut rb = if apply {
        Some(Journal::open(&rb_path)?.0)
    } else {
        None
    };
    let (rt, client) = crate::prefect::client().map_err(|e| e.to_string())?;
    let mut out = Outcome::default();
    for (key, intent, _) in journal::states(&entries).into_iter().rev() {
        if restored.contains(&key) {
            out.already.push(key);
            continue;
        }
        let target: Option<System> = serde_json::from_value(intent["target"].clone()).ok();
        let id = intent["id"].as_str().unwrap_or("").to_string();
        let name = intent["name"].as_str().unwrap_or("").to_string();
        let state = rt.block_on(async {
            if target == Some(System::Prefect3) {
                let api = ep.rest(client.clone());
                let now = api
                    .call(reqwest::Method::GET, &format!("deployments/{id}"), None)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>(prefect3::snapshot(&now))
            } else {
                let group = intent["restore"]["version_group_id"].clone();
                live_flow_state(&client, ep, &group).await
            }
        })?;
        let (before, after) = (&intent["before"], &intent["after"]);
        if state == *before {
            say(format!("{key} ({name}): already as before the migration"));
            out.already.push(key);
            continue;
        }
        if state != *after && !force {
            say(format!(
                "{key} ({name}): changed since the migration, left alone (--force restores it anyway): {}",
                super::diff::fields(after, &state).join("; ")
            ));
            out.refused.push(key);
            continue;
        }
        if !apply {
            say(format!("{key} ({name}): would restore"));
            for l in super::diff::fields(&state, before) {
                say(format!("    {l}"));
            }
            out.written.push(key);
            continue;
        }
        let rb = rb.as_mut().expect("opened when applying");
        rb.append("intent", Some(&key), intent.clone())?;
        let result = rt.block_on(async {
            if target == Some(System::Prefect3) {
                let mut body = before.clone();
                // a deployment that had no pool keeps none; the server refuses null there
                if body["work_pool_name"].is_null() {
                    body.as_object_mut().map(|o| o.remove("work_pool_name"));
                }
                write_deployment(ep.rest(client.clone()), &id, &body, before).await
            } else {
                restore_flow(&client, ep, &intent["restore"]).await
            }
        });
        match result {
            Ok(r) => {
                rb.append("done", Some(&key), r)?;
                say(format!("{key} ({name}): restored"));
                out.written.push(key);
            }
            Err(e) => {
                rb.append("failed", Some(&key), json!({"error": e}))?;
                return Err(format!(
                    "{key} ({name}): {e}\n{} restored before it; run the rollback again to continue",
                    out.written.len()
                ));
            }
        }
    }
    Ok(out)
}

/// The storage, run config and group override of a version group's live version.
async fn live_flow_state(
    client: &reqwest::Client,
    ep: &Endpoint,
    group: &Value,
) -> Result<Value, String> {
    let live = live_version(client, ep, group).await?;
    let f = |p: &str| super::prefect1::json_field(live.pointer(p));
    Ok(json!({
        "storage": f("/storage"),
        "run_config": f("/run_config"),
        "flow_group_run_config": f("/flow_group/run_config"),
    }))
}

/// The newest unarchived version of a version group, as the server has it now.
async fn live_version(
    client: &reqwest::Client,
    ep: &Endpoint,
    group: &Value,
) -> Result<Value, String> {
    let data = graphql(
        client,
        ep,
        crate::flows::prefect1_api::FLOWS_QUERY,
        &json!({"where": {"archived": {"_eq": false}, "version_group_id": {"_eq": group}}, "limit": 10, "offset": 0}),
    )
    .await?;
    data.get("flow")
        .and_then(Value::as_array)
        .and_then(|rows| {
            rows.iter()
                .max_by_key(|r| r.get("version").and_then(Value::as_i64))
                .cloned()
        })
        .ok_or_else(|| format!("version group {group} has no live version"))
}

/// Register the stored flow again (a new version of the same group), then put back the
/// flow group override if the migration cleared it.
async fn restore_flow(
    client: &reqwest::Client,
    ep: &Endpoint,
    restore: &Value,
) -> Result<Value, String> {
    // compressed since the 50,000-flow work; a journal written before holds it as JSON
    let (flow, compressed) = match (
        restore["serialized_flow_compressed"].as_str(),
        &restore["serialized_flow"],
    ) {
        (Some(c), _) => (
            super::prefect1::expand(c)
                .map_err(|e| format!("the journal's earlier version of this flow: {e}"))?,
            c.to_string(),
        ),
        (None, f) if f.is_object() => (f.clone(), super::prefect1::compress(f)),
        _ => {
            return Err(
                "the journal holds no earlier version of this flow to register again".into(),
            );
        }
    };
    let flow = &flow;
    let input = json!({"input": {
        "serialized_flow": compressed,
        "project_id": restore["project_id"],
        "version_group_id": restore["version_group_id"],
        "set_schedule_active": restore["is_schedule_active"],
        "description": restore["description"],
        "idempotency_key": format!("unsprawl-rollback-{}", super::prefect1::idempotency_key(flow)),
    }});
    let write = json!({"create": input, "clear_group_run_config": false});
    let r = write_flow(client, ep, &write).await?;
    if !restore["flow_group_run_config"].is_null() {
        graphql(
            client,
            ep,
            SET_GROUP_RUN_CONFIG,
            &json!({"input": {"flow_group_id": restore["flow_group_id"], "run_config": restore["flow_group_run_config"]}}),
        )
        .await?;
    }
    Ok(r)
}
