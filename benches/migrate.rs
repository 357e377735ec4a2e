//! Preparing the migration of 2,000 synthetic Prefect 1 flows (every flow file read at
//! the reference from git and parsed, imports checked against its runtime image, the new
//! serialized flow built, gzip+base64 compressed and hashed for its idempotency key),
//! against a baseline measured in the same run: reading and parsing the same files from
//! the working tree once, which `scan --flows-repo` pays anyway.
//!
//! Prints the ratio prepare / read and the time per flow. Run with
//! `cargo bench --bench migrate` (about 10 s).

mod common;
use common::time;

use unsprawl::migrate::gitref::{Checkout, RefFrom, decide};
use unsprawl::migrate::{GitTarget, Inputs, Registrations, Status, prepare};
use unsprawl::plan::{self, Options};
use unsprawl::rules::Rules;

const ROUNDS: usize = 5;

fn main() {
    let n: usize = std::env::var("UNSPRAWL_BENCH_FLOWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let common::Prefect1Estate { inv, rows, files } = common::prefect1_estate(n, n, 3);
    let solved = plan::solve(&inv, &Rules::default_rules(), &Options::default()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("flows");
    let branch = unsprawl::fixture::flows_repo::commit_files(&dir, &files).unwrap();

    let (read, parsed) = time(ROUNDS, || unsprawl::flows::source::read_repo(&dir).unwrap());
    assert_eq!(parsed.len(), n);
    // the registrations are owned by the migration: their copies are made before timing
    // (as the export's text: each row is parsed while its flow is prepared)
    let rows: Vec<unsprawl::flows::prefect1::Row> = rows
        .iter()
        .map(|r| serde_json::value::to_raw_value(r).unwrap())
        .collect();
    let mut copies: Vec<_> = (0..ROUNDS).map(|_| rows.clone()).collect();
    // the bench times the preparation, not a registry
    let seen = common::every_runtime_image_seen(&inv, &solved.plan);
    let (migrate, m) = time(ROUNDS, || {
        let checkout = Checkout::open(&dir).unwrap();
        let git_ref = decide(&RefFrom::Branch(branch.clone()), &|_| None, &checkout).unwrap();
        let git = GitTarget::new(
            Some("https://git.example.com/platform/flows.git"),
            None,
            None,
            git_ref,
        )
        .unwrap();
        prepare(Inputs {
            inventory: &inv,
            plan: &solved.plan,
            git,
            checkout: &checkout,
            registrations: Registrations::Prefect1(copies.pop().expect("one per round")),
            registrations_from: "bench".into(),
            from_server: false,
            runtime_images: &seen,
            default_run_config: "KubernetesRun".into(),
            token_secret: None,
            carried_files: Default::default(),
        })
    });
    let ready = m.items.iter().filter(|i| i.status == Status::Ready).count();
    assert_eq!(
        ready,
        m.items.len(),
        "every synthetic flow verifies: {:?}",
        m.items
            .iter()
            .find(|i| i.status != Status::Ready)
            .map(|i| (&i.checks, &i.notes))
    );
    println!(
        "migrate prepare, {n} flows: {:.2}× reading and parsing the flow files from the working tree \
         ({:.0} µs per flow; read {:.0} µs per file); {ready} ready",
        migrate.as_secs_f64() / read.as_secs_f64(),
        migrate.as_secs_f64() * 1e6 / n as f64,
        read.as_secs_f64() * 1e6 / n as f64,
    );
}
