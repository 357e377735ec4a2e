//! The plan checks itself from the documents alone, not from the solver's bitsets: a
//! colouring bug must not become a broken flow. Every planned flow is in exactly one
//! runtime image of its Python and OS family; every distribution it needs is pinned at a
//! version its policy allows; every module it imports is provided by a pinned
//! distribution (or by the base image's packaging tools, which the rules ignore).

use std::collections::{BTreeSet, HashMap};
use std::str::FromStr;

use pep440_rs::Version;

use super::demand::Catalogue;
use super::document::Plan;
use crate::inventory::Inventory;
use crate::rules::{Needs, Rules, normalize};

pub(super) fn verify(inv: &Inventory, rules: &Rules, plan: &Plan, cat: &Catalogue) -> Vec<String> {
    let mut problems = vec![];
    let mut image_of: HashMap<&str, usize> = HashMap::new();
    for (i, img) in plan.runtime_images.iter().enumerate() {
        for m in &img.members {
            if image_of.insert(m, i).is_some() {
                problems.push(format!("flow {m} is in two runtime images"));
            }
        }
    }
    let flows: HashMap<&str, &crate::inventory::Flow> =
        inv.flows.iter().map(|f| (f.key.as_str(), f)).collect();
    let images: HashMap<&str, &crate::inventory::Image> =
        inv.images.iter().map(|i| (i.id.as_str(), i)).collect();
    // per runtime image: its pins, and the modules its distributions provide
    let pinned: Vec<HashMap<&str, &str>> = plan
        .runtime_images
        .iter()
        .map(|img| {
            img.requirements
                .iter()
                .map(|r| (r.name.as_str(), r.version.as_str()))
                .collect()
        })
        .collect();
    let provided: Vec<BTreeSet<&str>> = plan
        .runtime_images
        .iter()
        .map(|img| {
            img.requirements
                .iter()
                .filter_map(|r| cat.id(&r.name))
                .chain(rules.ignore.iter().filter_map(|n| cat.id(n)))
                .flat_map(|d| cat.get(d).import_names.iter().map(String::as_str))
                .collect()
        })
        .collect();
    for p in &plan.flows {
        let Some(&i) = image_of.get(p.flow.as_str()) else {
            problems.push(format!("flow {} has no runtime image", p.flow));
            continue;
        };
        let img = &plan.runtime_images[i];
        let Some(flow) = flows.get(p.flow.as_str()) else {
            problems.push(format!("flow {} is not in the inventory", p.flow));
            continue;
        };
        // only the registration that runs may be planned (and so migrated)
        if let Some(why) = super::demand::excluded(flow) {
            problems.push(format!("flow {} is planned but {why}", p.flow));
            continue;
        }
        let Some(req) = &flow.requirement else {
            problems.push(format!("flow {} was planned without a requirement", p.flow));
            continue;
        };
        if req.python.as_deref() != Some(img.python.as_str())
            || req.os_family.as_deref() != Some(img.os_family.as_str())
        {
            problems.push(format!(
                "flow {} (Python {:?}, {:?}) is in {} (Python {}, {})",
                p.flow, req.python, req.os_family, img.name, img.python, img.os_family
            ));
        }
        let (pinned, provided) = (&pinned[i], &provided[i]);
        let needs: Vec<(String, String)> = match rules.needs {
            Needs::Imports => req
                .imports
                .iter()
                .map(|d| (normalize(&d.name), d.version.clone()))
                .collect(),
            Needs::Installed => flow
                .link
                .image_id
                .as_deref()
                .and_then(|id| images.get(id))
                .and_then(|i| i.contents.as_ref())
                .map(|c| {
                    c.python
                        .distributions
                        .iter()
                        .filter(|d| d.python.is_none() || d.python == req.python)
                        .map(|d| (normalize(&d.name), d.version.clone()))
                        .collect()
                })
                .unwrap_or_default(),
        };
        for (name, built) in &needs {
            if rules.ignore.contains(name) {
                continue;
            }
            let Some(to) = pinned.get(name.as_str()) else {
                problems.push(format!(
                    "flow {} needs {name}, which {} lacks",
                    p.flow, img.name
                ));
                continue;
            };
            // the built version too is checked: a rule may exclude it (`prefect = "<1.3"`
            // for a flow built with 1.4.1), and the planner refuses that; so must this
            let ok = match (Version::from_str(built), Version::from_str(to)) {
                (Ok(b), Ok(t)) => {
                    let spec = rules.policy_for(name).allowed(&b);
                    let pre_ok = spec.iter().any(|s| s.version().any_prerelease());
                    spec.contains(&t) && (pre_ok || !t.any_prerelease())
                }
                // a version PEP 440 cannot read is only ever pinned as built
                _ => to == built,
            };
            if !ok {
                problems.push(format!(
                    "flow {} was built with {name} {built}; its policy `{}` does not allow {to} in {}",
                    p.flow,
                    rules.policy_for(name),
                    img.name
                ));
            }
        }
        // modules: what the flow imports comes from a pinned distribution, or the plan
        // says why it is accepted without one
        for m in &req.imported_modules {
            if provided.contains(m.as_str()) {
                continue;
            }
            match p.accepted_unprovided.iter().find(|a| &a.module == m) {
                Some(a) if !a.reason.is_empty() => {}
                _ => problems.push(format!(
                    "flow {} imports {m}, which no distribution in {} provides, and the plan gives no reason to accept that",
                    p.flow, img.name
                )),
            }
        }
    }
    problems
}
