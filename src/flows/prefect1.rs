//! Prefect 1 flow registrations from a saved GraphQL response (`{"data": {"flow": […]}}`
//! of the query in the README) or a `prefect build` file (`{"version": 1, "flows": […]}`).
//!
//! Each flow keeps its storage and run config whole; what the migration needs is pulled
//! out beside them: the storage kind, the run config in effect (a flow group override
//! wins), and the image the agent would run (Docker storage wins over `run_config.image`,
//! as in `prefect.utilities.agent.get_flow_image`).

use serde_json::Value;

use crate::inventory::{Flow, FlowLink, FlowState, Problem};

const STORAGE_TYPES: &[&str] = &[
    "Docker",
    "Git",
    "GitHub",
    "GitLab",
    "Bitbucket",
    "CodeCommit",
    "S3",
    "GCS",
    "Azure",
    "Local",
    "Module",
    "Webhook",
];
const RUN_CONFIG_TYPES: &[&str] = &[
    "KubernetesRun",
    "DockerRun",
    "ECSRun",
    "LocalRun",
    "UniversalRun",
    "VertexRun",
];

/// Flows of an export, and problems with the file as a whole.
pub struct Parsed {
    pub flows: Vec<Flow>,
    pub problems: Vec<Problem>,
}

/// What is wrong with an export file as a whole.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin} is not JSON: {source}")]
    NotJson {
        origin: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{origin} holds a GraphQL error response: {messages}")]
    GraphqlErrors { origin: String, messages: String },
    #[error(
        "{origin}: expected a GraphQL response {{\"data\": {{\"flow\": [...]}}}} or a `prefect build` file {{\"version\": 1, \"flows\": [...]}}"
    )]
    Shape { origin: String },
}

/// One flow row of an export, kept as its JSON text: a 50,000-flow export is held as
/// its own bytes, and each row is parsed only while it is used.
pub type Row = Box<serde_json::value::RawValue>;

/// The three shapes an export comes in, read without an untyped copy of the whole file.
#[derive(serde::Deserialize)]
struct ExportObject {
    #[serde(default)]
    data: Option<ExportData>,
    #[serde(default)]
    flows: Option<Vec<Row>>,
    #[serde(default)]
    errors: Option<Vec<GraphqlError>>,
}

#[derive(serde::Deserialize)]
struct ExportData {
    #[serde(default)]
    flow: Option<Vec<Row>>,
}

#[derive(serde::Deserialize)]
struct GraphqlError {
    #[serde(default)]
    message: Option<String>,
}

/// The rows of an export file (`{"data": {"flow": [...]}}`, `{"version": 1, "flows":
/// [...]}` or a bare list), streamed from the file.
pub fn read_export(path: &std::path::Path) -> Result<Vec<Row>, ExportError> {
    use std::io::BufRead;
    let origin = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| ExportError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let first = loop {
        let buf = reader.fill_buf().map_err(|source| ExportError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        match buf.iter().position(|b| !b.is_ascii_whitespace()) {
            Some(i) => {
                let b = buf[i];
                reader.consume(i);
                break Some(b);
            }
            None if buf.is_empty() => break None,
            None => {
                let n = buf.len();
                reader.consume(n);
            }
        }
    };
    let not_json = |source| ExportError::NotJson {
        origin: origin.clone(),
        source,
    };
    match first {
        Some(b'[') => serde_json::from_reader(reader).map_err(not_json),
        Some(b'{') => {
            let doc: ExportObject = serde_json::from_reader(reader).map_err(not_json)?;
            rows_of(&origin, doc)
        }
        // not JSON at all, or JSON of another kind: serde says which, at which line
        _ => match serde_json::from_reader::<_, serde::de::IgnoredAny>(reader) {
            Err(e) => Err(not_json(e)),
            Ok(_) => Err(ExportError::Shape { origin }),
        },
    }
}

fn rows_of(origin: &str, doc: ExportObject) -> Result<Vec<Row>, ExportError> {
    if let Some(errors) = doc.errors.filter(|e| !e.is_empty()) {
        let messages: Vec<String> = errors
            .into_iter()
            .map(|e| e.message.unwrap_or_else(|| "?".into()))
            .collect();
        return Err(ExportError::GraphqlErrors {
            origin: origin.into(),
            messages: messages.join("; "),
        });
    }
    doc.data
        .and_then(|d| d.flow)
        .or(doc.flows)
        .ok_or_else(|| ExportError::Shape {
            origin: origin.into(),
        })
}

/// Parse an export's text. `origin` names the file in messages.
pub fn parse(origin: &str, text: &str) -> Result<Parsed, ExportError> {
    Ok(parse_rows(origin, &parse_export_rows(origin, text)?))
}

/// The rows of an export's text, as [`read_export`] reads them from a file.
pub fn parse_export_rows(origin: &str, text: &str) -> Result<Vec<Row>, ExportError> {
    let not_json = |source| ExportError::NotJson {
        origin: origin.into(),
        source,
    };
    let rows: Vec<Row> = match text.trim_start().as_bytes().first() {
        Some(b'[') => serde_json::from_str(text).map_err(not_json)?,
        Some(b'{') => rows_of(origin, serde_json::from_str(text).map_err(not_json)?)?,
        _ => match serde_json::from_str::<serde::de::IgnoredAny>(text) {
            Err(e) => return Err(not_json(e)),
            Ok(_) => {
                return Err(ExportError::Shape {
                    origin: origin.into(),
                });
            }
        },
    };
    Ok(rows)
}

/// The flows of an export's rows, each row parsed, linked to nothing yet, and dropped.
pub fn parse_rows(origin: &str, rows: &[Row]) -> Parsed {
    collect(
        origin,
        rows.iter().map(|row| {
            serde_json::from_str::<Value>(row.get())
                .map_err(|e| e.to_string())
                .and_then(|item| flow(&item))
        }),
    )
}

/// Parse API rows already read as JSON (wrapped as `{"data": {"flow": …}}`), in place.
pub fn parse_value(origin: &str, doc: &Value) -> Result<Parsed, ExportError> {
    if let Some(errors) = doc
        .get("errors")
        .and_then(Value::as_array)
        .filter(|e| !e.is_empty())
    {
        let messages: Vec<&str> = errors
            .iter()
            .map(|e| e.get("message").and_then(Value::as_str).unwrap_or("?"))
            .collect();
        return Err(ExportError::GraphqlErrors {
            origin: origin.into(),
            messages: messages.join("; "),
        });
    }
    let items = doc
        .pointer("/data/flow")
        .or_else(|| doc.get("flows"))
        .and_then(Value::as_array)
        .or_else(|| doc.as_array())
        .ok_or_else(|| ExportError::Shape {
            origin: origin.into(),
        })?;
    Ok(collect(origin, items.iter().map(flow)))
}

/// The flows, and a problem naming `origin` and the row for each row that is not one.
fn collect(origin: &str, rows: impl Iterator<Item = Result<Flow, String>>) -> Parsed {
    let mut flows = Vec::new();
    let mut problems = Vec::new();
    for (i, parsed) in rows.enumerate() {
        match parsed {
            Ok(f) => flows.push(f),
            Err(message) => problems.push(Problem {
                layer: None,
                path: Some(format!("{origin}: flow #{i}")),
                message,
            }),
        }
    }
    Parsed { flows, problems }
}

/// A JSON field that the server may return either as an object or as encoded text.
pub fn json_field(v: Option<&Value>) -> Value {
    match v {
        Some(Value::String(s)) => serde_json::from_str(s).unwrap_or(Value::String(s.clone())),
        Some(v) => v.clone(),
        None => Value::Null,
    }
}

fn str_field(v: &Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::to_string)
        .filter(|s| !s.is_empty())
}

/// `registry_url/image_name:image_tag`, as Docker storage names the image it pushed.
pub fn docker_storage_image(storage: &Value) -> Result<String, String> {
    let name = str_field(storage, "image_name").ok_or("Docker storage without image_name")?;
    let mut reference = match str_field(storage, "registry_url") {
        Some(r) => format!(
            "{}/{}",
            r.trim_end_matches('/'),
            name.trim_start_matches('/')
        ),
        None => name,
    };
    if let Some(tag) = str_field(storage, "image_tag") {
        reference.push(':');
        reference.push_str(&tag);
    }
    Ok(reference)
}

fn flow(item: &Value) -> Result<Flow, String> {
    // a GraphQL row carries the serialized flow beside its columns; a build file is one
    let serialized = item
        .get("serialized_flow")
        .filter(|v| v.is_object())
        .unwrap_or(item);
    let name = str_field(item, "name")
        .or_else(|| str_field(serialized, "name"))
        .ok_or("a flow without a name")?;
    let storage = match item.get("storage") {
        Some(v) if !v.is_null() => json_field(Some(v)),
        _ => json_field(serialized.get("storage")),
    };
    let run_config = match item.get("run_config") {
        Some(v) if !v.is_null() => json_field(Some(v)),
        _ => json_field(serialized.get("run_config")),
    };
    let environment = json_field(item.get("environment"));
    let group = item.get("flow_group").cloned().unwrap_or(Value::Null);
    let group_run_config = json_field(group.get("run_config"));
    let project = item
        .pointer("/project/name")
        .and_then(Value::as_str)
        .map(str::to_string);
    let flow_id = str_field(item, "id");
    let key = match &flow_id {
        Some(id) => format!("prefect1:{id}"),
        None => format!("prefect1:{}/{name}", project.as_deref().unwrap_or("-")),
    };

    let mut problems = Vec::new();
    let problem = |message: String| Problem {
        layer: None,
        path: Some(key.clone()),
        message,
    };
    let storage_kind = match &storage {
        Value::Object(o) => match o.get("type").and_then(Value::as_str) {
            Some(t) if STORAGE_TYPES.contains(&t) => Some(t.to_string()),
            Some(t) => {
                problems.push(problem(format!("unknown storage type {t:?}")));
                Some(t.to_string())
            }
            None => {
                problems.push(problem("storage has no \"type\"".into()));
                None
            }
        },
        Value::Null => None,
        other => {
            problems.push(problem(format!(
                "storage is not a JSON object: {}",
                short(other)
            )));
            None
        }
    };
    let group_overrides = group_run_config.is_object();
    let effective = if group_overrides {
        &group_run_config
    } else {
        &run_config
    };
    let run_config_kind = effective
        .get("type")
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(k) = &run_config_kind
        && !RUN_CONFIG_TYPES.contains(&k.as_str())
    {
        problems.push(problem(format!("unknown run config type {k:?}")));
    }

    let (image_reference, image_from) = if storage_kind.as_deref() == Some("Docker") {
        match docker_storage_image(&storage) {
            Ok(r) => (Some(r), Some("storage".to_string())),
            Err(e) => {
                problems.push(problem(e));
                (None, None)
            }
        }
    } else if let Some(i) = str_field(effective, "image") {
        (
            Some(i),
            Some(
                if group_overrides {
                    "flow_group.run_config"
                } else {
                    "run_config"
                }
                .to_string(),
            ),
        )
    } else if let Some(i) = environment
        .pointer("/metadata/image")
        .and_then(Value::as_str)
    {
        // a 0.x flow registered with an environment and no run config
        (
            Some(i.to_string()),
            Some("environment.metadata".to_string()),
        )
    } else {
        (None, None)
    };
    // flow group labels override the run config's
    let labels = super::string_set(group.get("labels"))
        .or_else(|| super::string_set(effective.get("labels")))
        .unwrap_or_default();
    let has_schedule = [
        item.get("schedule"),
        serialized.get("schedule"),
        group.get("schedule"),
    ]
    .into_iter()
    .flatten()
    .any(|s| !s.is_null());

    Ok(Flow {
        key: key.clone(),
        system: crate::inventory::System::Prefect1,
        name,
        deployment: None,
        project,
        flow_id,
        version: item.get("version").and_then(Value::as_i64),
        version_group_id: str_field(item, "version_group_id"),
        storage_kind,
        run_config_kind,
        image_reference,
        image_from,
        labels,
        has_schedule,
        archived: item
            .get("archived")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        // decided once every version of the group is read (`flows::liveness`)
        state: FlowState::Live,
        state_reason: None,
        live_version: None,
        group_overrides_run_config: group_overrides,
        storage,
        run_config,
        flow_group_run_config: group_run_config,
        environment,
        link: FlowLink::none(),
        source: None,
        requirement: None,
        problems,
    })
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 80 {
        format!("{}…", &s[..s.floor_char_boundary(80)])
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_storage_names_its_image() {
        let s: Value = serde_json::json!({"type": "Docker", "registry_url": "registry.local:5000/team", "image_name": "flow-a", "image_tag": "2023-01-01"});
        assert_eq!(
            docker_storage_image(&s).unwrap(),
            "registry.local:5000/team/flow-a:2023-01-01"
        );
        let s: Value = serde_json::json!({"type": "Docker", "registry_url": null, "image_name": "flow-a", "image_tag": null});
        assert_eq!(docker_storage_image(&s).unwrap(), "flow-a");
    }

    #[test]
    fn reads_a_prefect_build_file_and_refuses_graphql_errors() {
        let text = include_str!("../../fixtures/prefect1/flows.prefect_build.json");
        let p = parse("build.json", text).unwrap();
        assert_eq!(p.flows.len(), 1);
        let f = &p.flows[0];
        assert_eq!(f.storage_kind.as_deref(), Some("Git"));
        assert_eq!(f.run_config_kind.as_deref(), Some("KubernetesRun"));
        assert_eq!(f.image_from.as_deref(), Some("run_config"));
        let err = parse("x", r#"{"errors":[{"message":"Unauthorized"}]}"#)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("Unauthorized"), "{err}");
    }
}
