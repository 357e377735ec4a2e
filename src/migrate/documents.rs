//! The documents `migrate` writes for review: `migration.json` (every item, what apply
//! and rollback read), `diff.md`, and the per-target folder of the ready flows'
//! documents (Prefect 1: serialized flows, GraphQL variables, source patches; Prefect 3:
//! PATCH bodies and a `prefect.yaml`). A refused flow is never written anywhere.

use std::path::Path;

use serde_json::json;

use super::{Item, Migration, Status};
use crate::output::OutputError;

#[derive(Debug, thiserror::Error)]
pub enum DocumentsError {
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error("cannot write prefect.yaml: {0}")]
    Yaml(#[from] serde_norway::Error),
    #[error("{flow}: the new serialized flow in the migration cannot be read back ({why})")]
    Flow { flow: String, why: String },
}

/// A file name for a flow: its name (data, not a path: every character but letters,
/// digits, `-` and `_` becomes `-`) and its whole id, so two flows of one name in two
/// projects never share a file.
fn slug(it: &Item) -> String {
    let base: String = it
        .title()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let id: String = it.id.chars().filter(char::is_ascii_alphanumeric).collect();
    format!("{base}-{id}")
}

pub fn write(m: &Migration, dir: &Path) -> Result<(), DocumentsError> {
    if dir == Path::new("-") {
        // the migration document alone; the per-flow documents need a folder
        return Ok(crate::output::write_json(dir, m)?);
    }
    // checked before anything is written: the per-flow folder is replaced whole, so
    // only when unsprawl wrote it (its marker says so)
    let sub = dir.join(m.target.as_str());
    crate::output::check_folder(&sub)?;
    crate::output::write_json(&dir.join("migration.json"), m)?;
    crate::output::write_file(&dir.join("diff.md"), super::diff::markdown(m).as_bytes())?;
    let ready: Vec<&Item> = m
        .items
        .iter()
        .filter(|i| i.status == Status::Ready)
        .collect();
    // only verified flows get documents: a refused flow is never written anywhere
    crate::output::replace_folder(
        &sub,
        "Written by `unsprawl migrate`; replaced by the next migration written here.",
        |staging| -> Result<bool, DocumentsError> {
            if ready.is_empty() {
                return Ok(false);
            }
            write_flow_documents(m, &ready, staging)?;
            Ok(true)
        },
    )
}

/// One document per ready flow (and the whole set), in the per-target folder.
fn write_flow_documents(m: &Migration, ready: &[&Item], sub: &Path) -> Result<(), DocumentsError> {
    // one file per flow, whatever the names: a repeated slug gets a counter
    let mut taken = std::collections::HashSet::new();
    let slugs: Vec<String> = ready
        .iter()
        .map(|it| {
            let base = slug(it);
            let mut s = base.clone();
            let mut n = 1;
            while !taken.insert(s.clone()) {
                n += 1;
                s = format!("{base}-{n}");
            }
            s
        })
        .collect();
    if m.target == crate::inventory::System::Prefect1 {
        // each flow is expanded from its one stored copy while it is written, and
        // dropped: the set is never held whole
        let flow_of = |it: &Item| {
            let compressed = it.write["create"]["input"]["serialized_flow"]
                .as_str()
                .unwrap_or_default();
            super::prefect1::expand(compressed).map_err(|why| DocumentsError::Flow {
                flow: it.title(),
                why,
            })
        };
        // a resumed flow whose new version is registered has only its group override
        // left to clear: no flow to register, so no flow documents
        let registers: Vec<(&&Item, &String)> = ready
            .iter()
            .zip(&slugs)
            .filter(|(it, _)| !it.write["create"].is_null())
            .collect();
        // one pass: each flow is expanded once, written to its own documents and
        // appended to `flows.json` (`prefect register --json` reads `prefect build`'s shape)
        let each = |it: &Item, slug: &str| -> Result<serde_json::Value, DocumentsError> {
            let flow = flow_of(it)?;
            crate::output::write_json(&sub.join("flows").join(format!("{slug}.json")), &flow)?;
            crate::output::write_json(
                &sub.join("graphql").join(format!("{slug}.variables.json")),
                &it.write["create"],
            )?;
            if let Some(patch) = &it.source_patch {
                let p = sub.join("source-patches").join(format!("{slug}.patch"));
                crate::output::write_file(&p, patch.as_bytes())?;
            }
            Ok(flow)
        };
        let mut failed = None;
        crate::output::write_with(&sub.join("flows.json"), |w| {
            w.write_all(b"{\"version\": 1, \"flows\": [")?;
            for (i, (it, slug)) in registers.iter().enumerate() {
                let flow = match each(it, slug) {
                    Ok(f) => f,
                    Err(e) => {
                        failed = Some(e);
                        return Err(std::io::Error::other(
                            "a flow's documents could not be written",
                        ));
                    }
                };
                w.write_all(if i == 0 { b"\n" } else { b",\n" })?;
                serde_json::to_writer(&mut *w, &flow)?;
            }
            w.write_all(b"\n]}\n")
        })
        .map_err(|e| failed.take().unwrap_or(e.into()))?;
    } else {
        let mut deployments = vec![];
        for (it, slug) in ready.iter().zip(&slugs) {
            crate::output::write_json(
                &sub.join("patches").join(format!("{}.json", slug)),
                &it.write,
            )?;
            deployments.push(super::prefect3::yaml_deployment(
                it.deployment.as_deref().unwrap_or(&it.name),
                &it.write,
            ));
        }
        let yaml = serde_norway::to_string(&json!({"deployments": deployments}))?;
        crate::output::write_file(
            &sub.join("prefect.yaml"),
            format!("# unsprawl migrate: the deployments' new pull steps and images\n{yaml}")
                .as_bytes(),
        )?;
    }
    Ok(())
}
