//! The plan document (`unsprawl/plan/v1`): the runtime images, which flow runs on which,
//! what moves for each flow, and how close to optimal the image count is. Documented
//! field by field in the README.

use serde::{Deserialize, Serialize};

use crate::inventory::DistPin;
pub use crate::provenance::{Generator, Input};

pub const SCHEMA: &str = "unsprawl/plan/v2";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Plan {
    pub schema: String,
    pub generator: Generator,
    /// The inventory and rules files it was planned from, by path and SHA-256: `migrate`
    /// finds the inventory here and refuses it if it changed since.
    pub inputs: Vec<Input>,
    /// RFC 3339; `null` for reproducible output (the demo).
    pub planned_at: Option<String>,
    /// The inventory it was planned from.
    pub inventory: InventoryRef,
    /// The policy in force (built-in default merged with `--rules` files).
    pub rules: serde_json::Value,
    /// `images` (fewest runtime images) or `bytes` (also what flows pull but do not need).
    pub objective: String,
    pub summary: Summary,
    pub runtime_images: Vec<RuntimeImage>,
    pub flows: Vec<Placement>,
    pub unplanned: Vec<Unplanned>,
    /// Registrations left out by design, and why: not live (archived or superseded
    /// versions, deployments of deleted flows) or already migrated.
    #[serde(default)]
    pub excluded: Vec<Unplanned>,
    /// One entry per set of flows that may share images (Python, OS family, group).
    pub partitions: Vec<PartitionReport>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InventoryRef {
    pub schema: String,
    pub scanned_at: Option<String>,
    pub images: usize,
    pub flows: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    /// Flows to plan: the inventory's flows less `excluded`.
    pub flows: usize,
    pub planned: usize,
    pub unplanned: usize,
    /// Registrations left out by design (see `Plan::excluded`).
    #[serde(default)]
    pub excluded: usize,
    /// Distinct images the planned flows run on today.
    pub current_images: usize,
    /// Distinct requirements after deduplication (the conflict graph's vertices).
    pub distinct_requirements: usize,
    pub conflicts: usize,
    pub runtime_images: usize,
    /// No plan under these rules has fewer runtime images.
    pub lower_bound: usize,
    /// `runtime_images == lower_bound`, or the exact search proved it.
    pub optimal: bool,
    /// Images added after colouring to respect `[image] max_bytes` (or a pre-release
    /// corner where pairwise compatible flows share no version).
    pub splits: usize,
    /// The plan chosen, by cost.
    pub chosen: Cost,
    /// The fewest-images plan, for comparison (the same as `chosen` for `--objective images`).
    pub fewest_images: Cost,
}

/// What a plan costs: images, and bytes flows pull.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Default)]
pub struct Cost {
    pub images: usize,
    /// Σ over runtime images of their distributions' installed bytes.
    pub image_bytes: u64,
    /// Σ over flows of the bytes of distributions in its image that it does not need.
    pub unneeded_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RuntimeImage {
    /// The full reference to build and push (`registry/runtime:3.11-ab12cd34ef56`).
    pub name: String,
    /// 12 hex digits of SHA-256 over base and pins: same content, same name.
    pub content_hash: String,
    pub python: String,
    pub os_family: String,
    pub group: Option<String>,
    pub base_image: String,
    /// Pinned versions: for each distribution, the newest seen version every member allows.
    pub requirements: Vec<DistPin>,
    /// What no member had but the image needs to fetch their code from git (dulwich for
    /// Prefect 1 Git storage, `git` for `git_clone`), from the rules' `[fetch.*]`.
    #[serde(default)]
    pub additions: Vec<super::additions::Addition>,
    /// Σ installed bytes of the pinned distributions (the base not included).
    pub estimated_bytes: u64,
    /// Pinned distributions whose installed size is unknown (no RECORD sizes).
    pub unknown_size: Vec<String>,
    /// Flow keys.
    pub members: Vec<String>,
    /// Images (ids) the members run on today.
    pub replaces: Vec<String>,
    /// Relative to the plan's output directory.
    pub dockerfile: String,
    pub requirements_file: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Placement {
    pub flow: String,
    pub name: String,
    pub runtime_image: String,
    pub current_image: Option<String>,
    /// Distributions whose version changes for this flow.
    pub moves: Vec<VersionMove>,
    /// Distributions its runtime image has that it does not need.
    pub unneeded: usize,
    pub unneeded_bytes: u64,
    /// Modules it imports that no pinned distribution provides, each accepted for a
    /// stated reason (plan verification refuses any other unprovided import).
    #[serde(default)]
    pub accepted_unprovided: Vec<AcceptedModule>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AcceptedModule {
    pub module: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VersionMove {
    pub name: String,
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Unplanned {
    pub flow: String,
    pub name: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PartitionReport {
    pub python: String,
    pub os_family: String,
    pub group: Option<String>,
    pub flows: usize,
    pub distinct_requirements: usize,
    pub components: usize,
    pub runtime_images: usize,
    pub lower_bound: usize,
    /// Components solved by `exact` search, met the `bound`, or `heuristic`.
    pub methods: std::collections::BTreeMap<String, usize>,
}
