//! Where flow registrations are read from, read and linked into an inventory: the one
//! path `scan prefect1`, `scan prefect`, `audit` and `demo` take, whatever the source (a
//! Prefect 1 export or GraphQL API, a Prefect 2/3 REST API or `prefect.yaml` files).

use std::path::{Path, PathBuf};

use crate::inventory::Inventory;
use crate::prefect::ApiError;

/// Why registrations could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RegistrationsError {
    #[error(transparent)]
    Export(#[from] super::prefect1::ExportError),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("{0}")]
    PrefectYaml(String),
    #[error("{0}")]
    FlowsRepo(String),
}

/// Where flow registrations are read from.
pub enum RegistrationSource {
    Export(PathBuf),
    Api {
        api: String,
        key: Option<String>,
        project: Option<String>,
        page_size: usize,
    },
    Prefect3 {
        /// The API URL and its key.
        api: Option<(String, Option<String>)>,
        yaml: Vec<PathBuf>,
        page_size: usize,
    },
}

/// Read the registrations `from` says, add them and their source to `inv`, and link
/// each to its image (with the flows repository's files, when given).
pub fn add_flows(
    inv: &mut Inventory,
    from: &RegistrationSource,
    aliases: &[(String, String)],
    flows_repo: Option<&Path>,
) -> Result<(), RegistrationsError> {
    let (parsed, source) = match from {
        RegistrationSource::Export(export) => {
            let origin = export.display().to_string();
            let rows = super::prefect1::read_export(export)?;
            let parsed = super::prefect1::parse_rows(&origin, &rows);
            (parsed, ("prefect1-export", origin))
        }
        RegistrationSource::Api {
            api,
            key,
            project,
            page_size,
        } => {
            let listing = super::prefect1_api::list_flows(
                api,
                key.as_deref(),
                project.as_deref(),
                *page_size,
            )?;
            let doc = serde_json::json!({"data": {"flow": listing.rows}});
            let mut parsed = super::prefect1::parse_value(api, &doc)?;
            if let Some(why) = listing.incomplete {
                parsed.problems.push(crate::inventory::Problem {
                    layer: None,
                    path: Some(api.clone()),
                    message: format!("{why}; the flows after it are missing from this inventory"),
                });
            }
            (parsed, ("prefect1-api", api.clone()))
        }
        RegistrationSource::Prefect3 {
            api,
            yaml,
            page_size,
        } => {
            let mut parsed = super::prefect1::Parsed {
                flows: Vec::new(),
                problems: Vec::new(),
            };
            let mut origins = Vec::new();
            if let Some((url, key)) = api {
                let listing = super::prefect3::list(url, key.as_deref(), *page_size)?;
                parsed.flows.extend(listing.flows);
                parsed.problems.extend(listing.problems);
                origins.push(url.clone());
            }
            for file in yaml {
                let text = std::fs::read_to_string(file).map_err(|e| RegistrationsError::Read {
                    path: file.display().to_string(),
                    message: e.to_string(),
                })?;
                let origin = file.display().to_string();
                let listing = super::prefect3::from_yaml(&origin, &text)
                    .map_err(RegistrationsError::PrefectYaml)?;
                parsed.flows.extend(listing.flows);
                parsed.problems.extend(listing.problems);
                origins.push(origin);
            }
            let kind = if api.is_some() {
                "prefect3-api"
            } else {
                "prefect3-yaml"
            };
            (parsed, (kind, origins.join(", ")))
        }
    };
    inv.errors.extend(parsed.problems);
    inv.sources.push(crate::inventory::SourceRef {
        kind: source.0.into(),
        location: source.1,
    });
    let repo = match flows_repo {
        Some(dir) => Some(super::source::read_repo(dir).map_err(RegistrationsError::FlowsRepo)?),
        None => None,
    };
    super::link(inv, parsed.flows, aliases, repo.as_deref());
    Ok(())
}
