//! Plan: the fewest shared runtime images that still run every flow.
//!
//! inventory → [`demand`] (each flow's allowed versions under the rules) → dedupe →
//! conflict graph per partition (petgraph's union-find splits it into components) →
//! [`colouring`] (exact when small, DSATUR + iterated greedy with a clique bound when
//! large) → optional byte-aware moves ([`cost`]) → pins, Dockerfiles ([`render`]) →
//! an independent [`verify`] pass that refuses a plan that would break a flow.

pub mod additions;
pub mod colouring;
mod cost;
pub mod demand;
pub mod document;
mod explain;
mod render;
pub mod synthetic;
mod verify;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use petgraph::unionfind::UnionFind;
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::inventory::{DistPin, Inventory};
use crate::rules::Rules;
use colouring::{Effort, Graph};
use demand::{Catalogue, Demand, Need, Partition, highest, intersects};
pub use document::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Objective {
    /// Fewest runtime images.
    Images,
    /// Fewest images, then fewest bytes pulled for nothing; one more image is worth
    /// `image_weight` bytes.
    Bytes { image_weight: u64 },
}

#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub objective: Objective,
    pub effort: Effort,
    /// Record when the plan was made (`planned_at`); off for reproducible output.
    pub timestamp: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            objective: Objective::Images,
            effort: Effort::default(),
            timestamp: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(
        "the plan failed its own verification, so it was not written:\n  {}",
        .0.join("\n  ")
    )]
    Verification(Vec<String>),
    #[error("rendering {what}: {message}")]
    Render { what: String, message: String },
}

/// A planned set of flows: the document, the files it names, and what `--explain` needs.
pub struct Solved {
    pub plan: Plan,
    /// (path relative to the output directory, contents): Dockerfiles, requirements.
    pub files: Vec<(String, String)>,
    work: Work,
    /// Index in `plan.runtime_images` of each packed class (they are sorted for output).
    image_position: Vec<usize>,
}

/// The planner's working state, kept for explanations.
struct Work {
    cat: Catalogue,
    demands: Vec<Demand>,
    vertices: Vec<Vertex>,
    /// Conflicting vertices, by vertex.
    conflicts: Vec<Vec<u32>>,
    /// Runtime image index of each vertex.
    image_of: Vec<usize>,
}

/// Flows with identical requirements.
struct Vertex {
    partition: Partition,
    needs: Vec<Need>,
    /// Indices into `demands`.
    demands: Vec<usize>,
}

pub fn solve(inv: &Inventory, rules: &Rules, opts: &Options) -> Result<Solved, PlanError> {
    let cat = Catalogue::from_images(&inv.images);
    let demand::Collected {
        demands,
        refusals,
        excluded,
    } = demand::collect(inv, rules, &cat);
    let vertices = dedupe(&demands);

    let mut by_partition: BTreeMap<&Partition, Vec<usize>> = BTreeMap::new();
    for (i, v) in vertices.iter().enumerate() {
        by_partition.entry(&v.partition).or_default().push(i);
    }

    let mut conflicts: Vec<Vec<u32>> = vec![vec![]; vertices.len()];
    let mut classes: Vec<Vec<usize>> = vec![];
    let mut reports = vec![];
    for (partition, members) in &by_partition {
        let graph = conflict_graph(&vertices, members);
        for (a, ns) in graph.adj.iter().enumerate() {
            conflicts[members[a]] = ns.iter().map(|&b| members[b as usize] as u32).collect();
        }
        let (local_classes, report) = colour_partition(partition, &graph, opts.effort);
        let mut report = report;
        report.flows = members
            .iter()
            .map(|&v| vertices[v].demands.len())
            .sum::<usize>();
        reports.push(report);
        classes.extend(
            local_classes
                .into_iter()
                .map(|c| c.into_iter().map(|l| members[l]).collect()),
        );
    }
    let weight = |v: usize| vertices[v].demands.len() as u64;
    // the fewest-images plan's cost, for comparison, only when another plan is chosen
    let mut fewest = None;
    if let Objective::Bytes { image_weight } = opts.objective {
        fewest = Some(cost::estimate(&classes, &vertices, &cat, weight));
        classes = cost::improve(classes, &vertices, &conflicts, &cat, image_weight, weight);
    }

    // pins, and splits where a class cannot share one version set or is too large
    let mut packed: Vec<Vec<usize>> = vec![];
    let mut splits = 0;
    for class in classes {
        let groups = pack(class, &vertices, &cat, rules.image.max_bytes);
        splits += groups.len().saturating_sub(1);
        packed.extend(groups);
    }

    let mut image_of = vec![0; vertices.len()];
    for (i, class) in packed.iter().enumerate() {
        for &v in class {
            image_of[v] = i;
        }
    }
    let work = Work {
        cat,
        demands,
        vertices,
        conflicts,
        image_of,
    };
    let class_pins: Vec<BTreeMap<u32, u32>> =
        packed.iter().map(|c| pins(c, &work.vertices)).collect();
    let (runtime_images, files, image_position) =
        build_images(inv, rules, &work, &packed, &class_pins)?;
    let flows = placements(inv, &work, &runtime_images, &class_pins, &image_position);
    let listed = |rs: &[demand::Refusal]| -> Vec<Unplanned> {
        rs.iter()
            .map(|r| Unplanned {
                flow: inv.flows[r.flow].key.clone(),
                name: inv.flows[r.flow].name.clone(),
                reason: r.reason.clone(),
            })
            .collect()
    };
    let unplanned = listed(&refusals);
    let excluded = listed(&excluded);

    let chosen = Cost {
        images: runtime_images.len(),
        image_bytes: runtime_images.iter().map(|i| i.estimated_bytes).sum(),
        unneeded_bytes: flows.iter().map(|f| f.unneeded_bytes).sum(),
    };
    let lower_bound: usize = reports.iter().map(|r| r.lower_bound).sum();
    let current: BTreeSet<&str> = flows
        .iter()
        .filter_map(|f| f.current_image.as_deref())
        .collect();
    let summary = Summary {
        flows: inv.flows.len() - excluded.len(),
        planned: flows.len(),
        unplanned: unplanned.len(),
        excluded: excluded.len(),
        current_images: current.len(),
        distinct_requirements: work.vertices.len(),
        conflicts: work.conflicts.iter().map(Vec::len).sum::<usize>() / 2,
        runtime_images: runtime_images.len(),
        lower_bound,
        optimal: runtime_images.len() == lower_bound
            || (splits == 0
                && opts.objective == Objective::Images
                && reports
                    .iter()
                    .all(|r| r.methods.keys().all(|m| m != "heuristic"))),
        splits,
        chosen,
        fewest_images: fewest.unwrap_or(chosen),
    };
    let plan = Plan {
        schema: SCHEMA.to_string(),
        generator: crate::provenance::Generator::this(),
        // the command line records the files (`cli/plan.rs`): the library reads none
        inputs: Vec::new(),
        planned_at: opts
            .timestamp
            .then(|| humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()),
        inventory: InventoryRef {
            schema: inv.schema.clone(),
            scanned_at: inv.scanned_at.clone(),
            images: inv.images.len(),
            flows: inv.flows.len(),
        },
        rules: serde_json::to_value(rules).unwrap_or_default(),
        objective: match opts.objective {
            Objective::Images => "images".into(),
            Objective::Bytes { .. } => "bytes".into(),
        },
        summary,
        runtime_images,
        flows,
        unplanned,
        excluded,
        partitions: reports,
    };
    let problems = verify::verify(inv, rules, &plan, &work.cat);
    if !problems.is_empty() {
        return Err(PlanError::Verification(problems));
    }
    Ok(Solved {
        plan,
        files,
        work,
        image_position,
    })
}

impl Solved {
    /// Why a flow (key, name, or `name/deployment`) is where it is; an error names
    /// what was not found or why the flow is not planned.
    pub fn explain(&self, inv: &Inventory, rules: &Rules, flow: &str) -> Result<String, String> {
        explain::explain(self, inv, rules, flow)
    }

    fn image_index(&self, packed: usize) -> usize {
        self.image_position[packed]
    }
}

/// The modules a flow imports that no distribution provides, and why each is accepted:
/// code of the flows repository travels with the flow's clone; anything else its old image
/// carried outside a distribution (`Docker(files=...)`) the runtime image will not have,
/// which `migrate` checks again against the image as built.
fn accepted_unprovided(flow: &crate::inventory::Flow) -> Vec<document::AcceptedModule> {
    let Some(req) = &flow.requirement else {
        return vec![];
    };
    let mut out: Vec<document::AcceptedModule> = req
        .local_modules
        .iter()
        .map(|m| document::AcceptedModule {
            module: m.clone(),
            reason: "code of the flows repository: it comes with the flow's clone (Prefect 2/3) or must be installed into the runtime image (Prefect 1 Git storage runs the file alone)".into(),
        })
        .collect();
    out.extend(
        req.unresolved_modules
            .iter()
            .filter(|m| !req.local_modules.contains(m))
            .map(|m| document::AcceptedModule {
                module: m.clone(),
                reason: "no scanned distribution provides it (copied into the old image?): the runtime image will not have it unless the flow brings it".into(),
            }),
    );
    out.sort_by(|a, b| a.module.cmp(&b.module));
    out.dedup_by(|a, b| a.module == b.module);
    out
}

fn dedupe(demands: &[Demand]) -> Vec<Vertex> {
    /// A requirement's identity: its partition and allowed sets (not the built versions).
    type Key<'a> = (&'a Partition, Vec<(u32, &'a [u64])>);
    let mut index: HashMap<Key, usize> = HashMap::new();
    let mut vertices: Vec<Vertex> = vec![];
    for (i, d) in demands.iter().enumerate() {
        let key = (
            &d.partition,
            d.needs
                .iter()
                .map(|n| (n.dist, &*n.allowed))
                .collect::<Vec<_>>(),
        );
        let v = *index.entry(key).or_insert_with(|| {
            vertices.push(Vertex {
                partition: d.partition.clone(),
                needs: d.needs.clone(),
                demands: vec![],
            });
            vertices.len() - 1
        });
        vertices[v].demands.push(i);
    }
    vertices
}

/// Whether two requirements cannot share an image: some distribution both need has no
/// seen version both allow.
fn conflict(a: &[Need], b: &[Need]) -> bool {
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].dist.cmp(&b[j].dist) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                if !intersects(&a[i].allowed, &b[j].allowed) {
                    return true;
                }
                i += 1;
                j += 1;
            }
        }
    }
    false
}

/// The conflict graph of one partition's vertices (local indices), built in parallel.
fn conflict_graph(vertices: &[Vertex], members: &[usize]) -> Graph {
    let n = members.len();
    let mut g = Graph::new(n);
    if vertices[members[0]].partition.alone {
        return g;
    }
    let rows: Vec<Vec<u32>> = (0..n)
        .into_par_iter()
        .map(|a| {
            let na = &vertices[members[a]].needs;
            (a + 1..n)
                .filter(|&b| conflict(na, &vertices[members[b]].needs))
                .map(|b| b as u32)
                .collect()
        })
        .collect();
    for (a, row) in rows.into_iter().enumerate() {
        for b in row {
            g.add_edge(a, b as usize);
        }
    }
    g.finish();
    g
}

/// Colour each connected component; classes in local vertex indices.
fn colour_partition(
    p: &Partition,
    g: &Graph,
    effort: Effort,
) -> (Vec<Vec<usize>>, PartitionReport) {
    let n = g.len();
    let mut report = PartitionReport {
        python: p.python.clone(),
        os_family: p.os_family.clone(),
        group: p.group.clone(),
        flows: 0,
        distinct_requirements: n,
        components: 0,
        runtime_images: 0,
        lower_bound: 0,
        methods: BTreeMap::new(),
    };
    if p.alone {
        report.components = n;
        report.runtime_images = n;
        report.lower_bound = n;
        report.methods.insert("alone".into(), n);
        return ((0..n).map(|v| vec![v]).collect(), report);
    }
    let mut uf = UnionFind::<usize>::new(n);
    for (a, ns) in g.adj.iter().enumerate() {
        for &b in ns {
            uf.union(a, b as usize);
        }
    }
    let mut components: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for v in 0..n {
        components.entry(uf.find(v)).or_default().push(v);
    }
    // Isolated vertices conflict with no one: they all fit one image together with any
    // one component's first class, but keeping components apart keeps the bound exact.
    let (isolated, connected): (Vec<_>, Vec<_>) =
        components.into_values().partition(|c| c.len() == 1);
    let solved: Vec<(Vec<usize>, colouring::Colouring)> = connected
        .into_par_iter()
        .map(|members| {
            let local: HashMap<usize, usize> =
                members.iter().enumerate().map(|(i, &v)| (v, i)).collect();
            let mut sub = Graph::new(members.len());
            for (i, &v) in members.iter().enumerate() {
                sub.adj[i] = g.adj[v]
                    .iter()
                    .map(|&u| local[&(u as usize)] as u32)
                    .collect();
            }
            let c = colouring::colour(&sub, effort);
            (members, c)
        })
        .collect();

    // Components are independent: colour k of every component can share one image.
    let colours = solved
        .iter()
        .map(|(_, c)| c.count)
        .max()
        .unwrap_or(0)
        .max(usize::from(!isolated.is_empty()));
    let mut classes: Vec<Vec<usize>> = vec![vec![]; colours];
    for (members, c) in &solved {
        for (i, &v) in members.iter().enumerate() {
            classes[c.colours[i] as usize].push(v);
        }
        *report.methods.entry(c.method.to_string()).or_default() += 1;
        report.lower_bound = report.lower_bound.max(c.lower_bound);
    }
    for iso in &isolated {
        classes[0].push(iso[0]);
    }
    if !isolated.is_empty() {
        *report.methods.entry("bound".into()).or_default() += isolated.len();
        report.lower_bound = report.lower_bound.max(1);
    }
    report.components = solved.len() + isolated.len();
    report.runtime_images = classes.len();
    (classes, report)
}

/// First-fit a colour class into groups that share a version of every distribution and
/// stay under the size limit. For classes of pairwise compatible intervals this is one
/// group (Helly); the split handles pre-release holes and `max_bytes`.
fn pack(
    class: Vec<usize>,
    vertices: &[Vertex],
    cat: &Catalogue,
    max_bytes: Option<u64>,
) -> Vec<Vec<usize>> {
    struct Group {
        members: Vec<usize>,
        masks: HashMap<u32, Box<[u64]>>,
        bytes: u64,
    }
    let mut class = class;
    // biggest requirements first: they decide the size
    class.sort_by_key(|&v| std::cmp::Reverse(vertices[v].needs.len()));
    let mut groups: Vec<Group> = vec![];
    for v in class {
        let needs = &vertices[v].needs;
        let fits = |g: &Group| {
            let compatible = needs.iter().all(|n| {
                g.masks
                    .get(&n.dist)
                    .is_none_or(|m| intersects(m, &n.allowed))
            });
            let added: u64 = needs
                .iter()
                .filter(|n| !g.masks.contains_key(&n.dist))
                .map(|n| cat.get(n.dist).max_bytes.unwrap_or(0))
                .sum();
            compatible && max_bytes.is_none_or(|m| g.bytes + added <= m)
        };
        let slot = groups.iter().position(fits);
        let g = match slot {
            Some(i) => &mut groups[i],
            None => {
                groups.push(Group {
                    members: vec![],
                    masks: HashMap::new(),
                    bytes: 0,
                });
                groups.last_mut().expect("just pushed")
            }
        };
        g.members.push(v);
        for n in needs {
            match g.masks.get_mut(&n.dist) {
                Some(m) => m
                    .iter_mut()
                    .zip(n.allowed.iter())
                    .for_each(|(a, b)| *a &= b),
                None => {
                    g.bytes += cat.get(n.dist).max_bytes.unwrap_or(0);
                    g.masks.insert(n.dist, n.allowed.clone());
                }
            }
        }
    }
    groups
        .into_iter()
        .map(|mut g| {
            g.members.sort_unstable();
            g.members
        })
        .collect()
}

/// The newest version each distribution of a class may have: the highest seen version
/// every member that needs it allows.
fn pins(class: &[usize], vertices: &[Vertex]) -> BTreeMap<u32, u32> {
    let mut masks: BTreeMap<u32, Box<[u64]>> = BTreeMap::new();
    for &v in class {
        for n in &vertices[v].needs {
            match masks.get_mut(&n.dist) {
                Some(m) => m
                    .iter_mut()
                    .zip(n.allowed.iter())
                    .for_each(|(a, b)| *a &= b),
                None => {
                    masks.insert(n.dist, n.allowed.clone());
                }
            }
        }
    }
    masks
        .into_iter()
        .map(|(d, m)| {
            (
                d,
                highest(&m).expect("pack() keeps every class satisfiable"),
            )
        })
        .collect()
}

/// Runtime images (sorted for output), their files, and each class's output position.
type BuiltImages = (Vec<RuntimeImage>, Vec<(String, String)>, Vec<usize>);

fn build_images(
    inv: &Inventory,
    rules: &Rules,
    work: &Work,
    classes: &[Vec<usize>],
    class_pins: &[BTreeMap<u32, u32>],
) -> Result<BuiltImages, PlanError> {
    let mut images = vec![];
    let mut files = vec![];
    let fetch = additions::Index::new(inv, rules);
    for (class, pinned) in classes.iter().zip(class_pins) {
        let p = &work.vertices[class[0]].partition;
        let requirements: Vec<DistPin> = pinned
            .iter()
            .map(|(&d, &v)| {
                let e = work.cat.get(d);
                DistPin {
                    name: e.name.clone(),
                    version: e.versions[v as usize].text.clone(),
                }
            })
            .collect();
        let estimated_bytes = pinned
            .iter()
            .filter_map(|(&d, &v)| work.cat.get(d).bytes_of(v))
            .sum();
        let unknown_size = pinned
            .iter()
            .filter(|(d, v)| work.cat.get(**d).bytes_of(**v).is_none())
            .map(|(&d, _)| work.cat.get(d).name.clone())
            .collect();
        let base_image = rules.image.base[&p.os_family].replace("{python}", &p.python);
        let mut members: Vec<String> = class
            .iter()
            .flat_map(|&v| &work.vertices[v].demands)
            .map(|&d| inv.flows[work.demands[d].flow].key.clone())
            .collect();
        members.sort();
        let additions = fetch.for_image(&p.python, &members, &requirements);
        let mut h = Sha256::new();
        h.update(format!("{base_image}\n"));
        for r in &requirements {
            h.update(format!("{}=={}\n", r.name, r.version));
        }
        // what fetches the code is content too: a different dulwich is a different image
        for a in &additions {
            h.update(format!(
                "+{} {} {} {}\n",
                a.kind,
                a.name,
                a.version.as_deref().unwrap_or(""),
                a.wheel.as_ref().map(|w| w.sha256.as_str()).unwrap_or("")
            ));
        }
        let content_hash = hex::encode(h.finalize())[..12].to_string();
        let name = rules
            .image
            .name
            .replace("{registry}", rules.image.registry.trim_end_matches('/'))
            .replace("{python}", &p.python)
            .replace("{os}", &p.os_family)
            .replace("{hash}", &content_hash);
        let replaces: BTreeSet<String> = class
            .iter()
            .flat_map(|&v| &work.vertices[v].demands)
            .filter_map(|&d| inv.flows[work.demands[d].flow].link.image_id.clone())
            .collect();
        let dir = format!("runtime-images/{}-{content_hash}", p.python);
        let mut img = RuntimeImage {
            name,
            content_hash,
            python: p.python.clone(),
            os_family: p.os_family.clone(),
            group: p.group.clone(),
            base_image,
            requirements,
            additions,
            estimated_bytes,
            unknown_size,
            members,
            replaces: replaces.into_iter().collect(),
            dockerfile: format!("{dir}/Dockerfile"),
            requirements_file: format!("{dir}/requirements.txt"),
        };
        files.push((img.requirements_file.clone(), render::requirements(&img)));
        files.push((img.dockerfile.clone(), render::dockerfile(&img)?));
        img.members.shrink_to_fit();
        images.push(img);
    }
    // stable order: by Python, then group, then size of the image's following
    let mut order: Vec<usize> = (0..images.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (&images[a], &images[b]);
        (
            &x.python,
            &x.os_family,
            &x.group,
            std::cmp::Reverse(x.members.len()),
            &x.name,
        )
            .cmp(&(
                &y.python,
                &y.os_family,
                &y.group,
                std::cmp::Reverse(y.members.len()),
                &y.name,
            ))
    });
    let mut position = vec![0; images.len()];
    for (sorted, &i) in order.iter().enumerate() {
        position[i] = sorted;
    }
    let images = order.iter().map(|&i| images[i].clone()).collect();
    Ok((images, files, position))
}

fn placements(
    inv: &Inventory,
    work: &Work,
    images: &[RuntimeImage],
    class_pins: &[BTreeMap<u32, u32>],
    image_position: &[usize],
) -> Vec<Placement> {
    let mut out: Vec<Placement> = vec![];
    for (v, vertex) in work.vertices.iter().enumerate() {
        let class = work.image_of[v];
        let pins = &class_pins[class];
        let image = &images[image_position[class]];
        // what the image carries beyond this requirement
        let unneeded: Vec<u32> = pins
            .keys()
            .filter(|d| vertex.needs.binary_search_by_key(*d, |n| n.dist).is_err())
            .copied()
            .collect();
        let unneeded_bytes: u64 = unneeded
            .iter()
            .filter_map(|&d| work.cat.get(d).bytes_of(pins[&d]))
            .sum();
        for &di in &vertex.demands {
            let d = &work.demands[di];
            let flow = &inv.flows[d.flow];
            let moves = d
                .needs
                .iter()
                .filter(|n| pins[&n.dist] != n.built)
                .map(|n| {
                    let e = work.cat.get(n.dist);
                    VersionMove {
                        name: e.name.clone(),
                        from: e.versions[n.built as usize].text.clone(),
                        to: e.versions[pins[&n.dist] as usize].text.clone(),
                    }
                })
                .collect();
            out.push(Placement {
                flow: flow.key.clone(),
                name: flow.name.clone(),
                runtime_image: image.name.clone(),
                current_image: flow.link.image_id.clone(),
                moves,
                unneeded: unneeded.len(),
                unneeded_bytes,
                accepted_unprovided: accepted_unprovided(flow),
            });
        }
    }
    out.sort_by(|a, b| a.flow.cmp(&b.flow));
    out
}

#[cfg(test)]
mod tests;
