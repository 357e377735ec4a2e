//! unsprawl: from hundreds of per-flow Prefect images to a few shared runtime images.
//!
//! The pipeline, one module per stage, each reading and writing a versioned JSON document:
//! [`scan`] and [`flows`] → [`inventory`] → [`plan`] → [`build`] → [`migrate`] and
//! [`report`].

pub mod build;
pub mod cli;
pub mod dist_name;
pub mod document;
pub mod fixture;
pub mod flows;
pub mod inventory;
pub mod migrate;
pub mod net;
pub mod output;
pub mod pickle;
pub mod plan;
pub mod prefect;
pub mod provenance;
pub mod reference;
pub mod report;
pub mod rules;
pub mod scan;
pub mod secrets;
pub mod time;
