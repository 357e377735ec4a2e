//! Synthetic inventories for the planner's benchmark and property tests: many flows,
//! each on its own image, with the shape real teams have (a team standardises on a
//! stack and drifts from it; popular distributions are everywhere; most flows are on
//! the newest versions). Deterministic for a seed.

use std::collections::BTreeMap;

use crate::inventory::*;

#[derive(Debug, Clone)]
pub struct Spec {
    pub flows: usize,
    pub pythons: Vec<String>,
    pub distributions: usize,
    pub teams: usize,
    /// Distributions per flow, inclusive range.
    pub per_flow: (usize, usize),
    /// Most versions any distribution has.
    pub max_versions: usize,
    pub seed: u64,
}

impl Spec {
    /// The benchmark's shape: 5 Python versions, 300 distributions, 40 teams.
    pub fn realistic(flows: usize, seed: u64) -> Spec {
        Spec {
            flows,
            pythons: ["3.8", "3.9", "3.10", "3.11", "3.12"]
                .map(String::from)
                .to_vec(),
            distributions: 300,
            teams: 40,
            per_flow: (8, 40),
            max_versions: 8,
            seed,
        }
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    /// Skewed towards 0 (popular distributions, newest versions).
    fn skewed(&mut self, n: usize) -> usize {
        let a = self.below(n);
        let b = self.below(n);
        a.min(b)
    }
}

/// Each distribution's versions, oldest first, with a size.
fn catalogue(spec: &Spec, rng: &mut Rng) -> Vec<(String, Vec<String>, u64)> {
    (0..spec.distributions)
        .map(|d| {
            let count = 1 + rng.below(spec.max_versions);
            let mut major = 1 + rng.below(2) as u64;
            let mut minor = rng.below(5) as u64;
            let mut versions = vec![];
            for _ in 0..count {
                versions.push(format!("{major}.{minor}.{}", rng.below(4)));
                if rng.chance(15) {
                    major += 1;
                    minor = 0;
                } else {
                    minor += 1;
                }
            }
            let bytes = 20_000 + (rng.next() % 40_000_000) / (1 + d as u64 / 10);
            (format!("dist-{d:03}"), versions, bytes)
        })
        .collect()
}

pub fn inventory(spec: &Spec) -> Inventory {
    let mut rng = Rng(spec.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let cat = catalogue(spec, &mut rng);
    // A team's stack: its Python and a few generations of its requirements file (each
    // bumps some versions), as teams upgrade in steps rather than flow by flow.
    let teams: Vec<(usize, Vec<BTreeMap<usize, usize>>)> = (0..spec.teams)
        .map(|_| {
            let python = rng.skewed(spec.pythons.len().max(1));
            let size = spec.per_flow.0 + rng.below(spec.per_flow.1 - spec.per_flow.0 + 1);
            let mut stack: BTreeMap<usize, usize> = BTreeMap::new();
            for _ in 0..size {
                let d = rng.skewed(cat.len());
                let n = cat[d].1.len();
                stack.insert(d, n.saturating_sub(2 + rng.skewed(n)).min(n - 1));
            }
            let mut generations = vec![stack.clone()];
            for _ in 0..1 + rng.below(3) {
                for (d, v) in stack.iter_mut() {
                    if rng.chance(30) && *v + 1 < cat[*d].1.len() {
                        *v += 1;
                    }
                }
                generations.push(stack.clone());
            }
            (python, generations)
        })
        .collect();
    let mut images = vec![];
    let mut flows = vec![];
    for i in 0..spec.flows {
        let (team_python, generations) = &teams[rng.skewed(teams.len())];
        let python = if rng.chance(90) {
            *team_python
        } else {
            rng.below(spec.pythons.len())
        };
        let python = spec.pythons[python].clone();
        let newest_first = generations.len() - 1 - rng.skewed(generations.len());
        let mut chosen = generations[newest_first].clone();
        // most flows use their team's file as it is; some add or pin something
        if rng.chance(35) {
            for _ in 0..1 + rng.below(3) {
                let d = rng.skewed(cat.len());
                let n = cat[d].1.len();
                chosen.insert(d, n - 1 - rng.skewed(n));
            }
        }
        let layer = format!("sha256:{:064x}", i);
        let mut distributions: Vec<Distribution> = chosen
            .iter()
            .map(|(&d, &v)| dist(&cat[d].0, &cat[d].1[v], cat[d].2, &python, &layer))
            .collect();
        distributions.push(dist("pip", "24.0", 10_000_000, &python, &layer));
        let id = format!("sha256:{:064x}", (1u128 << 64) + i as u128);
        let reference = format!("registry.example.com/flows/flow-{i}:1");
        images.push(image(&id, &reference, &layer, &python, distributions));
        flows.push(flow(i, &id, &reference, &python));
    }
    let mut inv = Inventory::new(vec![], images, vec![]);
    inv.flows = flows;
    inv
}

fn dist(name: &str, version: &str, bytes: u64, python: &str, layer: &str) -> Distribution {
    Distribution {
        name: name.into(),
        display_name: name.into(),
        version: version.into(),
        python: Some(python.into()),
        location: format!("/usr/local/lib/python{python}/site-packages"),
        metadata_kind: "dist-info".into(),
        requires_dist: vec![],
        requires_python: None,
        import_names: vec![name.replace('-', "_")],
        installed_bytes: Some(bytes),
        layer: layer.into(),
    }
}

fn image(
    id: &str,
    reference: &str,
    layer: &str,
    python: &str,
    distributions: Vec<Distribution>,
) -> Image {
    Image {
        id: id.into(),
        references: vec![reference.into()],
        locations: vec![],
        manifest_digest: None,
        platform: Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        },
        created: None,
        size: ImageSize::default(),
        layers: vec![Layer {
            digest: layer.into(),
            diff_id: layer.into(),
            diff_id_verified: true,
            media_type: "application/vnd.oci.image.layer.v1.tar".into(),
            stored_bytes: 0,
            uncompressed_bytes: None,
            created_by: None,
        }],
        config: RuntimeConfig::default(),
        status: Status::Ok,
        errors: vec![],
        contents: Some(Contents {
            os: Some(OsRelease {
                id: Some("debian".into()),
                family: Some("debian".into()),
                path: "etc/os-release".into(),
                ..OsRelease::default()
            }),
            system_packages: None,
            python: Python {
                interpreters: vec![Interpreter {
                    minor: python.into(),
                    version: None,
                    evidence: vec![],
                }],
                distributions,
            },
            prefect: Prefect::default(),
            executables: vec![],
        }),
    }
}

fn flow(i: usize, image_id: &str, reference: &str, python: &str) -> Flow {
    Flow {
        key: format!("prefect1:flow-{i:05}"),
        system: crate::inventory::System::Prefect1,
        name: format!("flow-{i:05}"),
        deployment: None,
        project: Some("synthetic".into()),
        flow_id: None,
        version: Some(1),
        version_group_id: None,
        storage_kind: Some("Docker".into()),
        run_config_kind: Some("KubernetesRun".into()),
        image_reference: Some(reference.into()),
        image_from: Some("storage".into()),
        labels: vec![],
        has_schedule: false,
        archived: false,
        state: crate::inventory::FlowState::Live,
        state_reason: None,
        live_version: None,
        group_overrides_run_config: false,
        storage: serde_json::Value::Null,
        run_config: serde_json::Value::Null,
        flow_group_run_config: serde_json::Value::Null,
        environment: serde_json::Value::Null,
        link: FlowLink {
            status: crate::inventory::LinkStatus::Linked,
            image_id: Some(image_id.into()),
            matched_by: Some("reference".into()),
            same_name_elsewhere: vec![],
        },
        source: None,
        requirement: Some(Requirement {
            python: Some(python.into()),
            os_family: Some("debian".into()),
            base: BaseGuess {
                layers: 0,
                method: "none".into(),
                named: None,
            },
            installed: vec![],
            imports: vec![],
            imported_modules: vec![],
            unresolved_modules: vec![],
            local_modules: vec![],
            parity: Default::default(),
        }),
        problems: vec![],
    }
}
