//! The inventory document (`unsprawl/inventory/v1`): what `scan` learned about each image.
//!
//! Every later stage (plan, migrate, report) reads this file, so its shape is a contract:
//! fields are only ever added, and a change of meaning is a new schema version. Maps are
//! `BTreeMap` and lists are sorted so two scans of the same input give byte-identical
//! documents (only `scanned_at` differs), which keeps the file diffable and reviewable.
//! The README documents each field.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The layer analyser's version, recorded in every inventory it made. Bump when any
/// analyser changes what it extracts: it invalidates every cache entry.
pub const ANALYSER_VERSION: u32 = 4;

pub use crate::provenance::{Generator, Input};

/// The `schema` value this version writes and reads.
pub const SCHEMA: &str = "unsprawl/inventory/v1";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Inventory {
    pub schema: String,
    pub generator: Generator,
    /// Files this inventory was made from (an `--images` inventory, an export), by path
    /// and SHA-256; registries and servers are in `sources`.
    #[serde(default)]
    pub inputs: Vec<Input>,
    /// RFC 3339 time the scan finished; `null` with `--no-timestamp` (reproducible output).
    pub scanned_at: Option<String>,
    /// The inputs that were scanned, as given on the command line.
    pub sources: Vec<SourceRef>,
    pub images: Vec<Image>,
    /// Problems that are not tied to one image (an unreadable archive, say).
    #[serde(default)]
    pub errors: Vec<Problem>,
    /// Flow registrations, linked to the images they run on (`scan prefect1`).
    #[serde(default)]
    pub flows: Vec<Flow>,
    /// What the links say about the whole set; present once flows were scanned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_links: Option<FlowLinks>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct SourceRef {
    /// `oci-dir`, `archive`, `registry`, `engine`.
    pub kind: String,
    /// Path or address of the source.
    pub location: String,
}

/// One image (one platform manifest), identified by its config digest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Image {
    /// The image ID: the config digest (`sha256:…`), the same in a registry and an engine.
    pub id: String,
    /// Names it is known by (`team-a/etl:1.0`), sorted.
    pub references: Vec<String>,
    /// Where copies of this image were found.
    pub locations: Vec<Location>,
    /// Digest of the image manifest, when one exists (absent in a classic `docker save`).
    pub manifest_digest: Option<String>,
    pub platform: Platform,
    pub created: Option<String>,
    pub size: ImageSize,
    pub layers: Vec<Layer>,
    pub config: RuntimeConfig,
    /// `ok`, `partial` (some facts missing, see `errors`) or `failed` (contents unknown).
    pub status: Status,
    pub errors: Vec<Problem>,
    /// What the squashed filesystem contains. Absent when `status` is `failed`.
    pub contents: Option<Contents>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Partial,
    Failed,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Location {
    pub source: SourceRef,
    /// The reference inside that source (`team-a/etl:1.0`), if it has one.
    pub reference: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub variant: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageSize {
    /// Sum of the layer blobs as stored (compressed where the source compresses).
    pub stored_bytes: u64,
    /// Sum of the uncompressed layer tars; `null` until every layer was read once.
    pub uncompressed_bytes: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Layer {
    /// Digest of the blob as stored.
    pub digest: String,
    /// Digest of the uncompressed tar: the key that joins registries and engines.
    pub diff_id: String,
    /// Whether the content was hashed and matched `diff_id` (always for uncompressed
    /// layers; for compressed ones with `--verify-diff-ids`). The stored `digest` is
    /// always checked when a layer is read.
    pub diff_id_verified: bool,
    pub media_type: String,
    pub stored_bytes: u64,
    pub uncompressed_bytes: Option<u64>,
    /// The history line (`created_by`) that made this layer.
    pub created_by: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RuntimeConfig {
    pub env: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    /// Every history entry, including those that made no layer (ENV, CMD, …).
    pub history: Vec<HistoryEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HistoryEntry {
    pub created: Option<String>,
    pub created_by: Option<String>,
    pub empty_layer: bool,
}

/// A problem found while scanning, naming what is at fault.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    /// The layer at fault (its diff_id), when there is one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub layer: Option<String>,
    /// The path inside the layer or source at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub path: Option<String>,
    pub message: String,
}

/// What the squashed filesystem of an image contains.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Contents {
    pub os: Option<OsRelease>,
    /// dpkg or apk packages; `null` when the image has no package database.
    pub system_packages: Option<SystemPackages>,
    pub python: Python,
    pub prefect: Prefect,
    /// Watched executables (`git`) found in `PATH` directories, with an execute bit.
    #[serde(default)]
    pub executables: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct OsRelease {
    /// `ID` (`debian`, `alpine`, `ubuntu`…).
    pub id: Option<String>,
    /// `ID` plus `ID_LIKE`, reduced to the package family (`debian`, `alpine`, `rhel`…).
    pub family: Option<String>,
    pub version_id: Option<String>,
    pub version_codename: Option<String>,
    pub pretty_name: Option<String>,
    /// The file it was read from, after following symlinks.
    pub path: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SystemPackages {
    /// `dpkg` or `apk`.
    pub manager: String,
    pub packages: Vec<SystemPackage>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct SystemPackage {
    pub name: String,
    pub version: String,
    pub architecture: Option<String>,
    /// Source package (dpkg `Source`, apk origin) when it differs from the name.
    pub source: Option<String>,
    pub installed_bytes: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Python {
    pub interpreters: Vec<Interpreter>,
    pub distributions: Vec<Distribution>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Interpreter {
    /// `3.11`.
    pub minor: String,
    /// `3.11.7` when known (from `PYTHON_VERSION` or a flow written by it).
    pub version: Option<String>,
    /// Files that show it is there (`usr/local/bin/python3.11`, `libpython3.11.so.1.0`, …).
    pub evidence: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Distribution {
    /// PEP 503 normalized name (`typing-extensions`).
    pub name: String,
    /// The name as written in METADATA.
    pub display_name: String,
    pub version: String,
    /// Python minor version whose `site-packages` holds it; `null` for a shared dir.
    pub python: Option<String>,
    /// The `site-packages` (or `dist-packages`) directory.
    pub location: String,
    /// `dist-info` or `egg-info`.
    pub metadata_kind: String,
    pub requires_dist: Vec<String>,
    pub requires_python: Option<String>,
    /// Top-level import names it provides (`top_level.txt`, else derived from `RECORD`).
    pub import_names: Vec<String>,
    /// Installed size from `RECORD`; `null` when RECORD is missing or has no sizes.
    pub installed_bytes: Option<u64>,
    /// The diff_id of the layer its metadata comes from.
    pub layer: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Prefect {
    /// Version of the installed `prefect` distribution(s).
    pub versions: Vec<String>,
    /// Pickled flows (`/opt/prefect/flows/*.prefect`), read without unpickling.
    pub flows: Vec<PickledFlow>,
    /// Python files under `/opt/prefect/` (Prefect 2/3 images bake flow code in).
    pub flow_sources: Vec<FlowSource>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PickledFlow {
    pub path: String,
    /// `json-cloudpickle` (Prefect ≥ 0.14.3) or `pickle` (older bare pickles).
    pub format: String,
    /// The flow's name from the pickled `Flow` object.
    pub flow_name: Option<String>,
    /// Versions recorded by Prefect in the wrapper (`cloudpickle`, `prefect`, `python`).
    pub versions: BTreeMap<String, String>,
    pub imports: FlowImports,
    /// Docker storage state kept in the pickle: `python_dependencies`, `base_image`,
    /// `env_vars`, `files`, … (the server never stores these).
    pub storage: Option<PickledObject>,
    pub run_config: Option<PickledObject>,
    pub layer: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FlowImports {
    /// Modules of globals the pickle loads (`prefect.core.flow`, `mylib.transforms`).
    pub global_modules: Vec<String>,
    /// Modules by-value functions use (cloudpickle `subimport`).
    pub subimports: Vec<String>,
    /// Top-level names of both: what must be importable where the flow runs.
    pub top_level: Vec<String>,
    /// `__module__` of by-value code (`<flow>`, `__main__`).
    pub by_value_modules: Vec<String>,
    /// `__file__` of the flow script on the machine that registered it.
    pub source_files: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PickledObject {
    /// Dotted class (`prefect.storage.docker.Docker`).
    pub class: String,
    /// Its state as inert JSON.
    pub state: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FlowSource {
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
    pub layer: String,
}

impl Inventory {
    pub fn new(sources: Vec<SourceRef>, images: Vec<Image>, errors: Vec<Problem>) -> Self {
        Inventory {
            schema: SCHEMA.into(),
            generator: Generator {
                analyser_version: Some(ANALYSER_VERSION),
                ..Generator::this()
            },
            inputs: Vec::new(),
            scanned_at: None,
            sources,
            images,
            errors,
            flows: Vec::new(),
            flow_links: None,
        }
    }

    /// Read an inventory file, refusing other schemas with a message that names both.
    pub fn read(path: &std::path::Path) -> Result<Self, crate::document::DocumentError> {
        crate::document::read(path, &[SCHEMA])
    }
}

/// The Prefect generation a registration belongs to: what its storage, run config and
/// API look like. Prefect 2 and 3 servers share the REST API and are one system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum System {
    /// Prefect 1: flows with storage and run configs, over GraphQL.
    Prefect1,
    /// Prefect 2 and 3: deployments with pull steps and job variables, over REST.
    Prefect3,
}

impl System {
    /// The name documents use (`prefect1`, `prefect3`).
    pub fn as_str(self) -> &'static str {
        match self {
            System::Prefect1 => "prefect1",
            System::Prefect3 => "prefect3",
        }
    }
}

impl std::fmt::Display for System {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `flow.system == "prefect1"` reads as the document does.
impl PartialEq<&str> for System {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// One flow registration: a Prefect 1 flow version or a Prefect 2/3 deployment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Flow {
    /// Stable key within the inventory: `prefect1:<flow id>` (or `prefect1:<project>/<name>`).
    pub key: String,
    pub system: System,
    /// The flow's name.
    pub name: String,
    /// Prefect 2/3: the deployment's name (a flow may have several deployments).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
    pub project: Option<String>,
    pub flow_id: Option<String>,
    pub version: Option<i64>,
    pub version_group_id: Option<String>,
    /// Storage class (`Docker`, `Git`, `S3`, …).
    pub storage_kind: Option<String>,
    /// Run config class of the run config in effect (`KubernetesRun`, …); `null` = none.
    pub run_config_kind: Option<String>,
    /// The image the flow runs on, and where that came from: `storage` (Docker storage
    /// wins, as in Prefect's agent), `flow_group.run_config`, `run_config`.
    pub image_reference: Option<String>,
    pub image_from: Option<String>,
    pub labels: Vec<String>,
    pub has_schedule: bool,
    /// Prefect 1: the server's `archived` flag of this version.
    #[serde(default)]
    pub archived: bool,
    /// Whether this registration is the one that runs (see [`FlowState`]). Only `live`
    /// and `paused` registrations are planned and migrated.
    #[serde(default)]
    pub state: FlowState,
    /// Why a registration is not live (`archived; version 3 of its group is live`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_reason: Option<String>,
    /// Prefect 1: the key of its version group's live version, when that is another one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_version: Option<String>,
    /// The flow group's `run_config` override replaces every version's run config.
    pub group_overrides_run_config: bool,
    /// Kept whole, as the server returned them.
    pub storage: serde_json::Value,
    pub run_config: serde_json::Value,
    pub flow_group_run_config: serde_json::Value,
    pub environment: serde_json::Value,
    pub link: FlowLink,
    /// The file in the flows repository that defines it (`--flows-repo`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<FlowSourceFile>,
    /// What the flow needs from a runtime image; absent when its image is unknown.
    pub requirement: Option<Requirement>,
    pub problems: Vec<Problem>,
}

impl Flow {
    /// `flow` or `flow/deployment`, as people name it.
    pub fn title(&self) -> String {
        match &self.deployment {
            Some(d) => format!("{}/{d}", self.name),
            None => self.name.clone(),
        }
    }
}

/// How a flow met the scanned images.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum LinkStatus {
    /// Its image was scanned (`image_id`).
    Linked,
    /// Its image is in no scanned source.
    Dangling,
    /// It names no image (the agent's or work pool's default applies).
    NoImage,
    /// Its code already comes from git (Git storage or a `git_clone` pull step);
    /// `image_id` is set when its image was scanned.
    AlreadyMigrated,
}

impl LinkStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkStatus::Linked => "linked",
            LinkStatus::Dangling => "dangling",
            LinkStatus::NoImage => "no-image",
            LinkStatus::AlreadyMigrated => "already-migrated",
        }
    }
}

/// `link.status == "linked"` reads as the document does.
impl PartialEq<&str> for LinkStatus {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// Whether a registration is the one its system runs.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum FlowState {
    /// The version (or deployment) that runs.
    #[default]
    Live,
    /// A Prefect 2/3 deployment that is paused: migrated like a live one, reported as paused.
    Paused,
    /// A Prefect 1 version the server archived (replaced by a newer one, or by hand).
    Archived,
    /// An unarchived Prefect 1 version whose group has a newer unarchived version.
    Superseded,
    /// A Prefect 2/3 deployment whose flow no longer exists.
    FlowDeleted,
}

impl FlowState {
    /// Planned and migrated.
    pub fn is_live(self) -> bool {
        matches!(self, FlowState::Live | FlowState::Paused)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FlowState::Live => "live",
            FlowState::Paused => "paused",
            FlowState::Archived => "archived",
            FlowState::Superseded => "superseded",
            FlowState::FlowDeleted => "flow-deleted",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FlowLink {
    pub status: LinkStatus,
    pub image_id: Option<String>,
    /// `reference` (exact, after canonicalising Docker Hub names) or `alias` (after
    /// `--registry-alias`).
    pub matched_by: Option<String>,
    /// For a dangling flow: images with the same repository and tag on another registry
    /// host (a `--registry-alias` away from being linked). Never linked silently.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub same_name_elsewhere: Vec<String>,
}

/// What a flow needs, two ways (see README): the distributions its image installed
/// beyond the base, and the distributions providing what it imports.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Requirement {
    /// Python minor version (`3.11`).
    pub python: Option<String>,
    pub os_family: Option<String>,
    pub base: BaseGuess,
    pub installed: Vec<DistPin>,
    pub imports: Vec<DistPin>,
    /// Top-level modules the flow imports that are not in the standard library.
    pub imported_modules: Vec<String>,
    /// Imported modules that no installed distribution provides (e.g. copied-in code).
    pub unresolved_modules: Vec<String>,
    /// Imported modules that are code of the flows repository itself.
    #[serde(default)]
    pub local_modules: Vec<String>,
    /// What the old image gave the flow beyond distributions (see [`Parity`]).
    #[serde(default)]
    pub parity: Parity,
}

/// What a flow's old image gave it beyond Python distributions, which a shared runtime
/// image does not give by itself: `migrate` carries the env into the run config and
/// refuses a flow whose runtime image lacks the rest (its OS packages are read from the
/// flow's image itself, not repeated here).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Parity {
    /// Docker storage's `env_vars` and the image's `ENV`, less what a Python base and
    /// Prefect set (`PATH`, `LANG`, `PYTHON_*`, `GPG_KEY`, `PREFECT__USER_CONFIG_PATH`, …)
    /// and less the secret-looking ones.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Variables whose value looks like a credential (names only: the scan redacted the
    /// values).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_env: Vec<String>,
    /// Paths Docker storage's `files` copied into the image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
    /// The image's `User` / `WorkingDir`, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
}

/// Environment a Python base image or Prefect itself sets: not the flow's own.
pub const BASE_ENV: &[&str] = &[
    "PATH",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "HOME",
    "HOSTNAME",
    "TERM",
    "DEBIAN_FRONTEND",
    "GPG_KEY",
    "PYTHON_VERSION",
    "PYTHON_PIP_VERSION",
    "PYTHON_SETUPTOOLS_VERSION",
    "PYTHON_GET_PIP_URL",
    "PYTHON_GET_PIP_SHA256",
    "PYTHON_SHA256",
    "PYTHONUNBUFFERED",
    "PYTHONDONTWRITEBYTECODE",
    "PREFECT__USER_CONFIG_PATH",
];

/// Where a flow's code lives in the flows repository.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FlowSourceFile {
    /// Relative to the repository root.
    pub path: String,
    /// `entrypoint` (Prefect 3), `flow_path` (Git storage), `flow-name` (the only file
    /// defining a flow of that name), `flow-name+file` (several do; the pickle's
    /// `__file__` decided), `file-name` (the pickle's `__file__` names it).
    pub matched_by: String,
    /// Top-level modules its absolute imports name.
    pub imports: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct DistPin {
    pub name: String,
    pub version: String,
}

/// Where the image's base ends.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BaseGuess {
    /// How many of the image's layers belong to the base.
    pub layers: usize,
    /// `history` (the base's last CMD/ENTRYPOINT), `shared-layers` (the longest layer
    /// prefix shared with another scanned image) or `none`.
    pub method: String,
    /// The base image named when the flow was built (Docker storage's `base_image`).
    pub named: Option<String>,
}

/// The flow ↔ image picture as a whole.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FlowLinks {
    /// Live flows whose image is in no scanned source.
    pub dangling: Vec<String>,
    /// Live flows that name no image at all (the agent's default applies).
    pub no_image: Vec<String>,
    /// Images no registration uses, live or not.
    pub orphans: Vec<String>,
    /// Images several live flows share.
    pub shared: Vec<SharedImage>,
    /// Flows whose flow group overrides their run config.
    pub group_overrides: Vec<String>,
    /// Images that only registrations which are not live use (archived or superseded
    /// versions, deployments of deleted flows): neither orphans nor planned.
    #[serde(default)]
    pub archived_only: Vec<String>,
    /// Live flows whose code already comes from git (nothing to migrate).
    #[serde(default)]
    pub already_migrated: Vec<String>,
    /// Registrations that are not live (kept in `flows`, never planned or migrated).
    #[serde(default)]
    pub not_live: Vec<String>,
    /// Live deployments that are paused.
    #[serde(default)]
    pub paused: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SharedImage {
    pub image_id: String,
    pub flows: Vec<String>,
}
