//! The one integration test binary: a module per stage or concern, each running the real
//! `unsprawl` binary against real services (a registry, dockerd, Prefect servers, git)
//! started by `common/`. One binary links the crate graph once (it was 15).
//!
//! Run one module with `cargo test --test it report::`, one test by its name.

mod common;

mod bad_input;
mod build;
mod cli_snapshots;
mod engine;
mod flows;
mod fuzz;
mod migrate_gitref;
mod migrate_prefect1;
mod migrate_prefect3;
mod pickle_prototype;
mod plan;
mod prefect3;
mod report;
mod scan_fixtures;
mod scan_registry;
