//! Byte-aware placement (`--objective bytes`): starting from the fewest-images colouring,
//! move requirements between images (or into a new one) while the total cost drops:
//! `image_weight` per image + Σ over flows of the bytes their image carries. A heavy ML
//! stack then stops landing under every small ETL flow once it costs more than an image.

use std::collections::HashMap;

use super::Vertex;
use super::demand::Catalogue;
use super::document::Cost;

fn need_bytes(v: &Vertex, cat: &Catalogue) -> u64 {
    v.needs
        .iter()
        .map(|n| cat.get(n.dist).max_bytes.unwrap_or(0))
        .sum()
}

struct Class {
    members: Vec<usize>,
    dists: HashMap<u32, usize>,
    bytes: u64,
    flows: u64,
}

impl Class {
    fn new() -> Class {
        Class {
            members: vec![],
            dists: HashMap::new(),
            bytes: 0,
            flows: 0,
        }
    }

    fn cost(&self, image_weight: u64) -> i128 {
        if self.members.is_empty() {
            0
        } else {
            image_weight as i128 + self.flows as i128 * self.bytes as i128
        }
    }

    fn add(&mut self, v: usize, vx: &Vertex, w: u64, cat: &Catalogue) {
        self.members.push(v);
        self.flows += w;
        for n in &vx.needs {
            let c = self.dists.entry(n.dist).or_insert(0);
            if *c == 0 {
                self.bytes += cat.get(n.dist).max_bytes.unwrap_or(0);
            }
            *c += 1;
        }
    }

    fn remove(&mut self, v: usize, vx: &Vertex, w: u64, cat: &Catalogue) {
        self.members.retain(|&m| m != v);
        self.flows -= w;
        for n in &vx.needs {
            let c = self.dists.get_mut(&n.dist).expect("member's distribution");
            *c -= 1;
            if *c == 0 {
                self.dists.remove(&n.dist);
                self.bytes -= cat.get(n.dist).max_bytes.unwrap_or(0);
            }
        }
    }

    /// Cost change if `v` joined.
    fn join_delta(&self, vx: &Vertex, w: u64, cat: &Catalogue, image_weight: u64) -> i128 {
        let added: u64 = vx
            .needs
            .iter()
            .filter(|n| !self.dists.contains_key(&n.dist))
            .map(|n| cat.get(n.dist).max_bytes.unwrap_or(0))
            .sum();
        let after = image_weight as i128 + (self.flows + w) as i128 * (self.bytes + added) as i128;
        after - self.cost(image_weight)
    }

    /// Cost change if `v` left.
    fn leave_delta(&self, vx: &Vertex, w: u64, cat: &Catalogue, image_weight: u64) -> i128 {
        if self.members.len() == 1 {
            return -self.cost(image_weight);
        }
        let freed: u64 = vx
            .needs
            .iter()
            .filter(|n| self.dists.get(&n.dist) == Some(&1))
            .map(|n| cat.get(n.dist).max_bytes.unwrap_or(0))
            .sum();
        let after = image_weight as i128 + (self.flows - w) as i128 * (self.bytes - freed) as i128;
        after - self.cost(image_weight)
    }
}

/// Images, bytes and unneeded bytes of a set of classes, by the per-distribution estimate.
pub(super) fn estimate(
    classes: &[Vec<usize>],
    vertices: &[Vertex],
    cat: &Catalogue,
    weight: impl Fn(usize) -> u64,
) -> Cost {
    let mut cost = Cost::default();
    for class in classes.iter().filter(|c| !c.is_empty()) {
        let mut c = Class::new();
        for &v in class {
            c.add(v, &vertices[v], weight(v), cat);
        }
        cost.images += 1;
        cost.image_bytes += c.bytes;
        cost.unneeded_bytes += class
            .iter()
            .map(|&v| weight(v) * (c.bytes - need_bytes(&vertices[v], cat)))
            .sum::<u64>();
    }
    cost
}

/// Move vertices between classes of their partition while the cost drops.
pub(super) fn improve(
    classes: Vec<Vec<usize>>,
    vertices: &[Vertex],
    conflicts: &[Vec<u32>],
    cat: &Catalogue,
    image_weight: u64,
    weight: impl Fn(usize) -> u64,
) -> Vec<Vec<usize>> {
    let mut state: Vec<Class> = vec![];
    let mut class_of = vec![usize::MAX; vertices.len()];
    for class in classes {
        let mut c = Class::new();
        for v in class {
            c.add(v, &vertices[v], weight(v), cat);
            class_of[v] = state.len();
        }
        state.push(c);
    }
    let mut order: Vec<usize> = (0..vertices.len())
        .filter(|&v| class_of[v] != usize::MAX)
        .collect();
    // the heaviest requirements move first: they decide what lands under whom
    order.sort_by_key(|&v| std::cmp::Reverse(need_bytes(&vertices[v], cat)));
    for _round in 0..20 {
        let mut moved = false;
        for &v in &order {
            let (vx, w) = (&vertices[v], weight(v));
            let from = class_of[v];
            let leave = state[from].leave_delta(vx, w, cat, image_weight);
            let blocked: Vec<usize> = conflicts[v].iter().map(|&u| class_of[u as usize]).collect();
            let mut best: Option<(i128, usize)> = None;
            for (to, c) in state.iter().enumerate() {
                if to == from
                    || c.members.is_empty()
                    || blocked.contains(&to)
                    || vertices[c.members[0]].partition != vx.partition
                {
                    continue;
                }
                let delta = leave + c.join_delta(vx, w, cat, image_weight);
                if delta < 0 && best.is_none_or(|(d, _)| delta < d) {
                    best = Some((delta, to));
                }
            }
            if state[from].members.len() > 1 {
                let delta = leave + Class::new().join_delta(vx, w, cat, image_weight);
                if delta < 0 && best.is_none_or(|(d, _)| delta < d) {
                    best = Some((delta, state.len()));
                }
            }
            if let Some((_, to)) = best {
                if to == state.len() {
                    state.push(Class::new());
                }
                state[from].remove(v, vx, w, cat);
                state[to].add(v, vx, w, cat);
                class_of[v] = to;
                moved = true;
            }
        }
        if !moved {
            break;
        }
    }
    state
        .into_iter()
        .map(|c| c.members)
        .filter(|m| !m.is_empty())
        .collect()
}
