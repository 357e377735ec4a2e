//! `plan --explain FLOW`: why a flow runs where the plan put it, and which flows it cannot
//! share an image with, naming the distribution and both allowed ranges.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::Solved;
use super::demand::{Demand, Need};
use crate::inventory::Inventory;
use crate::rules::Rules;

/// Find the demand a user named: a flow key, a flow name, or `name/deployment`.
fn find(solved: &Solved, inv: &Inventory, wanted: &str) -> Result<usize, String> {
    let hits: Vec<usize> = (0..solved.work.demands.len())
        .filter(|&d| {
            let f = &inv.flows[solved.work.demands[d].flow];
            f.key == wanted
                || f.name == wanted
                || f.deployment
                    .as_ref()
                    .is_some_and(|dep| format!("{}/{dep}", f.name) == wanted)
        })
        .collect();
    match hits.as_slice() {
        [d] => Ok(*d),
        [] => Err(
            match inv
                .flows
                .iter()
                .find(|f| f.key == wanted || f.name == wanted)
            {
                Some(f) => {
                    let why = solved
                        .plan
                        .unplanned
                        .iter()
                        .chain(&solved.plan.excluded)
                        .find(|u| u.flow == f.key)
                        .map(|u| u.reason.as_str())
                        .unwrap_or("unknown");
                    format!("flow {} is not planned: {why}", f.key)
                }
                None => format!("no flow is called or keyed `{wanted}`"),
            },
        ),
        many => Err(format!(
            "`{wanted}` names {} flows; use a key: {}",
            many.len(),
            many.iter()
                .map(|&d| inv.flows[solved.work.demands[d].flow].key.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

fn describe(solved: &Solved, rules: &Rules, n: &Need) -> String {
    let e = solved.work.cat.get(n.dist);
    let built = &e.versions[n.built as usize];
    let range = built
        .parsed
        .as_ref()
        .map(|v| rules.policy_for(&e.name).allowed(v).to_string())
        .unwrap_or_else(|| format!("=={}", built.text));
    format!(
        "{} {} ({} → {range})",
        e.name,
        built.text,
        rules.policy_for(&e.name)
    )
}

/// The first distribution two demands cannot agree on.
fn clash<'d>(a: &'d Demand, b: &'d Demand) -> Option<(&'d Need, &'d Need)> {
    a.needs.iter().find_map(|x| {
        let y = b.needs.iter().find(|y| y.dist == x.dist)?;
        (!super::demand::intersects(&x.allowed, &y.allowed)).then_some((x, y))
    })
}

pub(super) fn explain(
    solved: &Solved,
    inv: &Inventory,
    rules: &Rules,
    wanted: &str,
) -> Result<String, String> {
    let w = &solved.work;
    let d = find(solved, inv, wanted)?;
    let demand = &w.demands[d];
    let flow = &inv.flows[demand.flow];
    let v = w
        .vertices
        .iter()
        .position(|v| v.demands.contains(&d))
        .expect("every demand has a vertex");
    let image = &solved.plan.runtime_images[solved.image_index(w.image_of[v])];
    let placement = solved.plan.flows.iter().find(|p| p.flow == flow.key);
    let p = &demand.partition;
    let mut out = String::new();
    let _ = writeln!(out, "flow {} ({})", flow.key, flow.name);
    let _ = writeln!(
        out,
        "  runs on   {} with {} other flow(s); {} pinned distributions",
        image.name,
        image.members.len() - 1,
        image.requirements.len()
    );
    let _ = writeln!(
        out,
        "  because   it needs Python {} on {}{}, and {} distributions ({} under the rules); flows of another Python, OS family or group never share its image",
        p.python,
        p.os_family,
        p.group
            .as_ref()
            .map(|g| format!(" in the separate group `{g}`"))
            .unwrap_or_default(),
        demand.needs.len(),
        match rules.needs {
            crate::rules::Needs::Installed => "all installed",
            crate::rules::Needs::Imports => "for its imports",
        },
    );
    if let Some(pl) = placement {
        if pl.moves.is_empty() {
            let _ = writeln!(out, "  versions  none change");
        } else {
            let _ = writeln!(out, "  versions  {} change:", pl.moves.len());
            for m in &pl.moves {
                let _ = writeln!(out, "            {} {} → {}", m.name, m.from, m.to);
            }
        }
        let _ = writeln!(
            out,
            "  unneeded  {} distribution(s), {} bytes it does not need",
            pl.unneeded, pl.unneeded_bytes
        );
    }
    // conflicts, grouped by the image the other flow went to
    let mut by_image: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for &u in &w.conflicts[v] {
        by_image
            .entry(w.image_of[u as usize])
            .or_default()
            .push(u as usize);
    }
    if by_image.is_empty() {
        let _ = writeln!(
            out,
            "  conflicts none: it could share an image with any flow of its partition"
        );
    } else {
        let total: usize = by_image
            .values()
            .flatten()
            .map(|&u| w.vertices[u].demands.len())
            .sum();
        let _ = writeln!(
            out,
            "  conflicts {total} flow(s) in {} other image(s):",
            by_image.len()
        );
        for (img, vs) in &by_image {
            let name = &solved.plan.runtime_images[solved.image_index(*img)].name;
            let _ = writeln!(out, "    {name}:");
            for &u in vs.iter().take(3) {
                let other = &w.demands[w.vertices[u].demands[0]];
                let Some((mine, theirs)) = clash(demand, other) else {
                    continue;
                };
                let _ = writeln!(
                    out,
                    "      {}: {} vs {}",
                    inv.flows[other.flow].key,
                    describe(solved, rules, mine),
                    describe(solved, rules, theirs),
                );
            }
            if vs.len() > 3 {
                let _ = writeln!(out, "      … and {} more", vs.len() - 3);
            }
        }
    }
    Ok(out)
}
