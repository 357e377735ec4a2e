//! Which registrations run. A Prefect 1 export holds every version of every flow, and
//! only the newest unarchived version of a version group is the one the server runs;
//! planning or migrating the others would re-register old code as the newest version.
//! Prefect 2/3 deployments are live unless their flow was deleted (paused ones are live,
//! and reported as paused). A flow whose code already comes from git has nothing to
//! migrate.

use std::collections::HashMap;

use crate::inventory::{Flow, FlowState, System};

/// Prefect 1 storage classes that clone the flow's code from a git host at run time.
const GIT_STORAGES: &[&str] = &["Git", "GitHub", "GitLab", "Bitbucket", "CodeCommit"];

/// The flow's code already comes from git: Git storage (Prefect 1) or a `git_clone` pull
/// step (Prefect 2/3). Such a flow is `already-migrated`, never dangling or planned.
pub fn code_from_git(f: &Flow) -> bool {
    let kind = f.storage_kind.as_deref().unwrap_or("");
    match f.system {
        System::Prefect1 => GIT_STORAGES.contains(&kind),
        System::Prefect3 => kind == "git_clone",
    }
}

/// Decide `state` (and `state_reason`, `live_version`) of every Prefect 1 version: in each
/// version group (its `version_group_id`, else project and name) the newest unarchived
/// version is live; older unarchived ones are superseded; archived ones stay archived.
/// Prefect 2/3 states were set when the deployments were read.
pub fn classify(flows: &mut [Flow]) {
    let group_of = |f: &Flow| -> String {
        f.version_group_id
            .clone()
            .unwrap_or_else(|| format!("{}/{}", f.project.as_deref().unwrap_or("-"), f.name))
    };
    // group → index of its live version (newest unarchived; ties: the later key)
    let mut live: HashMap<String, usize> = HashMap::new();
    for (i, f) in flows.iter().enumerate() {
        if f.system != System::Prefect1 || f.archived {
            continue;
        }
        let g = group_of(f);
        let newer = live.get(&g).is_none_or(|&j| {
            let o = &flows[j];
            (f.version, &f.key) > (o.version, &o.key)
        });
        if newer {
            live.insert(g, i);
        }
    }
    let described: HashMap<String, (String, String)> = live
        .iter()
        .map(|(g, &i)| {
            let f = &flows[i];
            let v = f
                .version
                .map(|v| format!("version {v}"))
                .unwrap_or_else(|| "a version".into());
            (g.clone(), (f.key.clone(), v))
        })
        .collect();
    for (i, f) in flows.iter_mut().enumerate() {
        if f.system != System::Prefect1 {
            continue;
        }
        let g = group_of(f);
        let this = f
            .version
            .map(|v| format!("version {v}"))
            .unwrap_or_else(|| "this version".into());
        match (live.get(&g), described.get(&g)) {
            (Some(&j), _) if j == i => {
                f.state = FlowState::Live;
                f.state_reason = None;
                f.live_version = None;
            }
            (Some(_), Some((key, v))) => {
                f.live_version = Some(key.clone());
                if f.archived {
                    f.state = FlowState::Archived;
                    f.state_reason = Some(format!(
                        "{this} is archived; {v} of its group ({key}) is live"
                    ));
                } else {
                    f.state = FlowState::Superseded;
                    f.state_reason = Some(format!(
                        "{this} is not the newest of its group: {v} ({key}) is live"
                    ));
                }
            }
            _ => {
                f.state = FlowState::Archived;
                f.live_version = None;
                f.state_reason = Some(format!(
                    "{this} is archived, and no version of its group is live"
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::FlowLink;

    fn version(key: &str, group: &str, v: i64, archived: bool) -> Flow {
        Flow {
            key: key.into(),
            system: System::Prefect1,
            name: "orders-etl".into(),
            deployment: None,
            project: Some("team".into()),
            flow_id: Some(key.into()),
            version: Some(v),
            version_group_id: Some(group.into()),
            storage_kind: Some("Docker".into()),
            run_config_kind: None,
            image_reference: None,
            image_from: None,
            labels: vec![],
            has_schedule: false,
            archived,
            state: FlowState::Live,
            state_reason: None,
            live_version: None,
            group_overrides_run_config: false,
            storage: serde_json::Value::Null,
            run_config: serde_json::Value::Null,
            flow_group_run_config: serde_json::Value::Null,
            environment: serde_json::Value::Null,
            link: FlowLink::none(),
            source: None,
            requirement: None,
            problems: vec![],
        }
    }

    #[test]
    fn only_the_newest_unarchived_version_of_a_group_is_live() {
        let mut flows = vec![
            version("v1", "g", 1, true),
            version("v3", "g", 3, false),
            version("v2", "g", 2, false),
            version("w1", "h", 1, true),
            version("x4", "x", 4, false),
            version("x5", "x", 5, true),
        ];
        classify(&mut flows);
        let state = |k: &str| flows.iter().find(|f| f.key == k).unwrap();
        assert_eq!(state("v3").state, FlowState::Live);
        assert_eq!(state("v1").state, FlowState::Archived);
        assert_eq!(state("v1").live_version.as_deref(), Some("v3"));
        assert!(
            state("v1")
                .state_reason
                .as_deref()
                .unwrap()
                .contains("version 3 of its group (v3) is live"),
            "{:?}",
            state("v1").state_reason
        );
        assert_eq!(state("v2").state, FlowState::Superseded);
        assert_eq!(state("w1").state, FlowState::Archived);
        assert!(
            state("w1")
                .state_reason
                .as_deref()
                .unwrap()
                .contains("no version")
        );
        // a newer archived version does not make an older unarchived one dead
        assert_eq!(state("x4").state, FlowState::Live);
        assert_eq!(state("x5").state, FlowState::Archived);
    }

    #[test]
    fn git_storage_and_git_clone_are_already_migrated() {
        let mut f = version("a", "g", 1, false);
        assert!(!code_from_git(&f));
        f.storage_kind = Some("GitHub".into());
        assert!(code_from_git(&f));
        f.system = System::Prefect3;
        assert!(!code_from_git(&f));
        f.storage_kind = Some("git_clone".into());
        assert!(code_from_git(&f));
    }
}
