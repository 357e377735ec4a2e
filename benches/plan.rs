//! Planning 10,000 synthetic flows (5 Python versions, 300 distributions, 40 teams that
//! standardise on a stack and drift from it), against a baseline measured in the same
//! run: reading the same inventory from JSON, which every `plan` run pays anyway.
//!
//! Prints the ratio plan / read, the absolute time beside the 2 s target, and
//! the plan's quality: runtime images against the clique lower bound, under a strict
//! and the default policy, and what the bytes objective costs on top.
//!
//! Run with `cargo bench --bench plan` (about 20 s).

mod common;
use common::time;

use unsprawl::inventory::Inventory;
use unsprawl::plan::{self, Objective, Options, synthetic};
use unsprawl::rules::Rules;

const ROUNDS: usize = 3;

fn main() {
    let flows: usize = std::env::var("UNSPRAWL_BENCH_FLOWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let inv = synthetic::inventory(&synthetic::Spec::realistic(flows, 1));
    let json = serde_json::to_string(&inv).expect("serializable");
    println!(
        "plan bench: {flows} flows on {} images, {:.0} MB of inventory JSON, median of {ROUNDS}",
        inv.images.len(),
        json.len() as f64 / 1e6
    );
    let (read, _) = time(ROUNDS, || {
        serde_json::from_str::<Inventory>(&json).expect("parses")
    });

    let mut strict = Rules::default_rules();
    strict
        .merge_text("bench", "[versions]\ndefault = \"patch\"\n")
        .expect("valid");
    for (label, rules) in [
        ("default (minor)", Rules::default_rules()),
        ("strict (patch)", strict),
    ] {
        let (t, solved) = time(ROUNDS, || {
            plan::solve(&inv, &rules, &Options::default()).expect("plans")
        });
        let s = &solved.plan.summary;
        println!(
            "  {label:<16} plan/read {:>5.2}x  ({:.2} s; target ≤ 2 s)  {} distinct requirements, {} conflicts → {} runtime images, lower bound {} (gap {}), {}",
            t.as_secs_f64() / read.as_secs_f64(),
            t.as_secs_f64(),
            s.distinct_requirements,
            s.conflicts,
            s.runtime_images,
            s.lower_bound,
            s.runtime_images - s.lower_bound,
            if s.optimal {
                "proven optimal"
            } else {
                "not proven optimal"
            },
        );
        let methods: std::collections::BTreeMap<&str, usize> = solved
            .plan
            .partitions
            .iter()
            .flat_map(|p| p.methods.iter())
            .fold(Default::default(), |mut m, (k, v)| {
                *m.entry(k.as_str()).or_default() += v;
                m
            });
        println!("  {:<16} components by method: {methods:?}", "");
        if label.starts_with("default") {
            let (tb, bytes) = time(ROUNDS, || {
                let opts = Options {
                    objective: Objective::Bytes {
                        image_weight: 500_000_000,
                    },
                    ..Options::default()
                };
                plan::solve(&inv, &rules, &opts).expect("plans")
            });
            let (c, f) = (bytes.plan.summary.chosen, bytes.plan.summary.fewest_images);
            println!(
                "  {:<16} plan/read {:>5.2}x  ({:.2} s)  {} images, {:.1} GB pulled unneeded (fewest-images plan: {} images, {:.1} GB)",
                "bytes objective",
                tb.as_secs_f64() / read.as_secs_f64(),
                tb.as_secs_f64(),
                c.images,
                c.unneeded_bytes as f64 / 1e9,
                f.images,
                f.unneeded_bytes as f64 / 1e9,
            );
        }
    }
    println!(
        "  baseline: reading the inventory JSON took {:.2} s",
        read.as_secs_f64()
    );
}
