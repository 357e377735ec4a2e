//! Prefect 1 Docker-storage flow files (`/opt/prefect/flows/*.prefect`), read without
//! unpickling: which modules the flow needs and the build settings kept in the pickle.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::inventory::{FlowImports, PickledObject};
use crate::pickle;

/// What one flow file says, before it is tied to a layer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FlowFile {
    pub format: String,
    pub flow_name: Option<String>,
    pub versions: BTreeMap<String, String>,
    pub imports: FlowImports,
    pub storage: Option<PickledObject>,
    pub run_config: Option<PickledObject>,
}

#[derive(Debug, thiserror::Error)]
pub enum FlowFileError {
    #[error("flow file is JSON but its \"flow\" field is not valid base64: {0}")]
    Base64(String),
    #[error("flow file is JSON without a \"flow\" string field")]
    NoFlowField,
    #[error("flow pickle cannot be read: {0}")]
    Pickle(#[from] pickle::PickleError),
}

/// The pickle inside a flow file, with what Prefect recorded beside it.
pub struct Unwrapped {
    pub pickle: Vec<u8>,
    pub versions: BTreeMap<String, String>,
    /// `json-cloudpickle` or `pickle`.
    pub format: &'static str,
}

/// Split a flow file into the pickle bytes and the versions Prefect recorded.
/// Prefect ≥ 0.14.3 writes `{"flow": base64, "versions": {…}}`; older ones a bare pickle.
pub fn unwrap(raw: &[u8]) -> Result<Unwrapped, FlowFileError> {
    let json = (raw.trim_ascii_start().first() == Some(&b'{'))
        .then(|| serde_json::from_slice::<serde_json::Value>(raw).ok())
        .flatten();
    let Some(v) = json else {
        return Ok(Unwrapped {
            pickle: raw.to_vec(),
            versions: BTreeMap::new(),
            format: "pickle",
        });
    };
    let flow = v
        .get("flow")
        .and_then(|f| f.as_str())
        .ok_or(FlowFileError::NoFlowField)?;
    let pickle = base64::engine::general_purpose::STANDARD
        .decode(flow.trim())
        .map_err(|e| FlowFileError::Base64(e.to_string()))?;
    let versions = v
        .get("versions")
        .and_then(|v| v.as_object())
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let s = v
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string());
                    (k.clone(), s)
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Unwrapped {
        pickle,
        versions,
        format: "json-cloudpickle",
    })
}

/// The top-level package of each module, e.g. `mylib.transforms` → `mylib`.
fn top_levels<'a>(mods: impl Iterator<Item = &'a String>) -> Vec<String> {
    let set: BTreeSet<String> = mods
        .map(|m| m.split('.').next().unwrap_or(m).to_string())
        .filter(|m| !m.is_empty())
        .collect();
    set.into_iter().collect()
}

/// Read a flow file completely: imports, flow name, pickled storage and run config.
pub fn read_flow_file(raw: &[u8]) -> Result<FlowFile, FlowFileError> {
    let Unwrapped {
        pickle,
        versions,
        format,
    } = unwrap(raw)?;
    let sk = pickle::walk(&pickle)?;
    let global_modules: Vec<String> = sk.global_modules().into_iter().collect();
    let subimports: Vec<String> = sk.subimports.iter().cloned().collect();
    let imports = FlowImports {
        top_level: top_levels(global_modules.iter().chain(subimports.iter())),
        global_modules,
        subimports,
        by_value_modules: sk.by_value_modules.iter().cloned().collect(),
        source_files: sk.source_files.iter().cloned().collect(),
    };
    let flow_name = match sk.root {
        Some(pickle::Value::Node(i)) => sk
            .state_get(i, "name")
            .and_then(|v| sk.str_of(v))
            .map(str::to_string),
        _ => None,
    };
    // the last object of each kind wins: the Flow's own storage/run config is built last
    let mut storage = None;
    let mut run_config = None;
    for &idx in &sk.objects {
        let Some(class) = sk.class_of(idx) else {
            continue;
        };
        let slot = if class.starts_with("prefect.storage.") {
            &mut storage
        } else if class.starts_with("prefect.run_configs.") {
            &mut run_config
        } else {
            continue;
        };
        // Docker storage keeps `env_vars` (and the commands that may repeat them)
        let mut state = sk.state_json(idx);
        crate::secrets::redact_json(&mut state);
        *slot = Some(PickledObject { class, state });
    }
    Ok(FlowFile {
        format: format.into(),
        flow_name,
        versions,
        imports,
        storage,
        run_config,
    })
}
