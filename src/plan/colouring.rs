//! Minimum colouring of a conflict graph: flows are vertices, an edge says "cannot share
//! a runtime image", a colour is a runtime image. Small components are solved exactly
//! (DSATUR branch and bound); larger ones get DSATUR plus iterated greedy. Every result
//! carries a lower bound (a clique: its vertices need pairwise different colours).

/// An undirected simple graph as sorted adjacency lists.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    pub adj: Vec<Vec<u32>>,
}

impl Graph {
    pub fn new(n: usize) -> Graph {
        Graph {
            adj: vec![vec![]; n],
        }
    }

    pub fn len(&self) -> usize {
        self.adj.len()
    }

    pub fn is_empty(&self) -> bool {
        self.adj.is_empty()
    }

    pub fn add_edge(&mut self, a: usize, b: usize) {
        if a != b {
            self.adj[a].push(b as u32);
            self.adj[b].push(a as u32);
        }
    }

    /// Sort and dedupe adjacency lists; call once after adding edges.
    pub fn finish(&mut self) {
        for a in &mut self.adj {
            a.sort_unstable();
            a.dedup();
        }
    }

    fn adjacent(&self, a: usize, b: usize) -> bool {
        self.adj[a].binary_search(&(b as u32)).is_ok()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Colouring {
    /// Colour of each vertex, `0..count`.
    pub colours: Vec<u32>,
    pub count: usize,
    /// No colouring uses fewer colours than this.
    pub lower_bound: usize,
    /// `count` is proven minimal (equal to the bound, or the exact search finished).
    pub optimal: bool,
    /// `exact` (branch and bound ran to the end), `bound` (the heuristic met the lower
    /// bound) or `heuristic`.
    pub method: &'static str,
}

/// Limits of the exact search.
#[derive(Debug, Clone, Copy)]
pub struct Effort {
    /// Components up to this many vertices get the exact search.
    pub exact_max_vertices: usize,
    /// Search nodes before the exact search gives up (and keeps its best colouring).
    pub exact_node_budget: u64,
    /// Rounds of iterated greedy on heuristic components.
    pub greedy_rounds: usize,
}

impl Default for Effort {
    fn default() -> Effort {
        Effort {
            exact_max_vertices: 128,
            exact_node_budget: 200_000,
            greedy_rounds: 60,
        }
    }
}

/// Colour one connected graph (or any graph) as well as `effort` allows.
pub fn colour(g: &Graph, effort: Effort) -> Colouring {
    let n = g.len();
    if n == 0 {
        return Colouring {
            colours: vec![],
            count: 0,
            lower_bound: 0,
            optimal: true,
            method: "bound",
        };
    }
    let clique = greedy_clique(g);
    let lower_bound = clique.len();
    let mut colours = dsatur(g);
    let mut count = count_colours(&colours);
    if count > lower_bound {
        colours = iterated_greedy(g, colours, effort.greedy_rounds, lower_bound);
        count = count_colours(&colours);
    }
    if count == lower_bound {
        return Colouring {
            colours,
            count,
            lower_bound,
            optimal: true,
            method: "bound",
        };
    }
    if n <= effort.exact_max_vertices {
        let mut search = Exact::new(g, &clique, colours, count, effort.exact_node_budget);
        search.run();
        let count = search.best_count;
        let finished = !search.gave_up;
        return Colouring {
            colours: search.best,
            count,
            // a finished search proves its result minimal
            lower_bound: if finished { count } else { lower_bound },
            optimal: finished || count == lower_bound,
            method: if finished { "exact" } else { "heuristic" },
        };
    }
    Colouring {
        colours,
        count,
        lower_bound,
        optimal: false,
        method: "heuristic",
    }
}

pub fn count_colours(colours: &[u32]) -> usize {
    colours.iter().map(|&c| c as usize + 1).max().unwrap_or(0)
}

/// Whether no edge joins two vertices of one colour.
pub fn is_proper(g: &Graph, colours: &[u32]) -> bool {
    g.adj
        .iter()
        .enumerate()
        .all(|(a, ns)| ns.iter().all(|&b| colours[a] != colours[b as usize]))
}

/// A large clique: grown greedily from many start vertices, each step adding the
/// candidate with the most neighbours among the remaining candidates (adjacency as
/// bitsets, so a step is a few word ANDs per candidate).
pub fn greedy_clique(g: &Graph) -> Vec<u32> {
    let n = g.len();
    if n == 0 {
        return vec![];
    }
    if n > 8192 {
        return greedy_clique_by_degree(g);
    }
    let words = n.div_ceil(64);
    let mut rows = vec![0u64; n * words];
    for (a, ns) in g.adj.iter().enumerate() {
        for &b in ns {
            rows[a * words + (b as usize) / 64] |= 1 << (b % 64);
        }
    }
    let row = |v: usize| &rows[v * words..(v + 1) * words];
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&v| std::cmp::Reverse(g.adj[v].len()));
    let mut best: Vec<u32> = vec![order[0] as u32];
    // the most promising starts get the careful rule; a budget keeps big graphs fast
    let mut budget: u64 = 40_000_000;
    for &start in &order {
        if g.adj[start].len() < best.len() || budget == 0 {
            break;
        }
        let mut clique = vec![start as u32];
        let mut cand: Vec<u64> = row(start).to_vec();
        loop {
            let mut pick: Option<(u32, usize)> = None;
            for (w, &word) in cand.iter().enumerate() {
                let mut bits = word;
                while bits != 0 {
                    let c = w * 64 + bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    let inside: u32 = row(c)
                        .iter()
                        .zip(&cand)
                        .map(|(a, b)| (a & b).count_ones())
                        .sum();
                    budget = budget.saturating_sub(words as u64);
                    if pick.is_none_or(|(best_inside, _)| inside > best_inside) {
                        pick = Some((inside, c));
                    }
                }
            }
            let Some((_, c)) = pick else { break };
            clique.push(c as u32);
            for (a, b) in cand.iter_mut().zip(row(c)) {
                *a &= b;
            }
        }
        if clique.len() > best.len() {
            best = clique;
        }
    }
    best
}

/// The fallback for very large graphs: grow from the highest-degree vertices.
fn greedy_clique_by_degree(g: &Graph) -> Vec<u32> {
    let n = g.len();
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.sort_by_key(|&v| std::cmp::Reverse(g.adj[v as usize].len()));
    let mut best: Vec<u32> = order.first().map(|&v| vec![v]).unwrap_or_default();
    for &start in order.iter().take(32) {
        if g.adj[start as usize].len() < best.len() {
            break;
        }
        let mut clique = vec![start];
        let mut candidates: Vec<u32> = g.adj[start as usize].clone();
        candidates.sort_by_key(|&v| std::cmp::Reverse(g.adj[v as usize].len()));
        for c in candidates {
            if clique.iter().all(|&m| g.adjacent(m as usize, c as usize)) {
                clique.push(c);
            }
        }
        if clique.len() > best.len() {
            best = clique;
        }
    }
    best
}

/// Brélaz's DSATUR: colour next the vertex whose neighbours use the most colours.
pub fn dsatur(g: &Graph) -> Vec<u32> {
    let n = g.len();
    const NONE: u32 = u32::MAX;
    let mut colours = vec![NONE; n];
    // the colours each vertex's neighbours use, as growable bitsets
    let mut seen: Vec<Vec<u64>> = vec![vec![]; n];
    let mut saturation = vec![0usize; n];
    for _ in 0..n {
        let v = (0..n)
            .filter(|&v| colours[v] == NONE)
            .max_by_key(|&v| (saturation[v], g.adj[v].len(), std::cmp::Reverse(v)))
            .expect("an uncoloured vertex is left");
        let c = first_free(&seen[v]);
        colours[v] = c;
        for &u in &g.adj[v] {
            let u = u as usize;
            if colours[u] == NONE && set_bit(&mut seen[u], c) {
                saturation[u] += 1;
            }
        }
    }
    colours
}

fn first_free(bits: &[u64]) -> u32 {
    for (i, w) in bits.iter().enumerate() {
        if *w != u64::MAX {
            return (i * 64) as u32 + w.trailing_ones();
        }
    }
    (bits.len() * 64) as u32
}

/// Sets bit `c`; true when it was not set.
fn set_bit(bits: &mut Vec<u64>, c: u32) -> bool {
    let (w, b) = ((c / 64) as usize, c % 64);
    if bits.len() <= w {
        bits.resize(w + 1, 0);
    }
    let was = bits[w] & (1 << b) != 0;
    bits[w] |= 1 << b;
    !was
}

/// Culberson's iterated greedy: re-run first-fit with the vertices ordered by colour
/// class; a class order never needs more colours than it started with.
pub fn iterated_greedy(g: &Graph, mut colours: Vec<u32>, rounds: usize, bound: usize) -> Vec<u32> {
    let n = g.len();
    let mut count = count_colours(&colours);
    for round in 0..rounds {
        if count <= bound {
            break;
        }
        let mut classes: Vec<Vec<u32>> = vec![vec![]; count];
        for v in 0..n {
            classes[colours[v] as usize].push(v as u32);
        }
        match round % 3 {
            0 => classes.reverse(),
            1 => classes.sort_by_key(|c| std::cmp::Reverse(c.len())),
            _ => classes.sort_by_key(|c| c.len()),
        }
        let mut next = vec![u32::MAX; n];
        let mut used: Vec<u64> = vec![];
        for v in classes.into_iter().flatten() {
            used.clear();
            for &u in &g.adj[v as usize] {
                let c = next[u as usize];
                if c != u32::MAX {
                    set_bit(&mut used, c);
                }
            }
            next[v as usize] = first_free(&used);
        }
        colours = next;
        count = count_colours(&colours);
    }
    colours
}

/// DSATUR branch and bound with the clique pre-coloured (symmetry breaking).
struct Exact<'g> {
    g: &'g Graph,
    colours: Vec<u32>,
    /// forbidden[v][c]: how many coloured neighbours of v have colour c.
    forbidden: Vec<Vec<u16>>,
    saturation: Vec<usize>,
    best: Vec<u32>,
    best_count: usize,
    lower_bound: usize,
    nodes: u64,
    budget: u64,
    gave_up: bool,
}

const UNCOLOURED: u32 = u32::MAX;

impl<'g> Exact<'g> {
    fn new(g: &'g Graph, clique: &[u32], best: Vec<u32>, best_count: usize, budget: u64) -> Self {
        let n = g.len();
        let mut s = Exact {
            g,
            colours: vec![UNCOLOURED; n],
            forbidden: vec![vec![0; best_count + 1]; n],
            saturation: vec![0; n],
            best,
            best_count,
            lower_bound: clique.len(),
            nodes: 0,
            budget,
            gave_up: false,
        };
        for (c, &v) in clique.iter().enumerate() {
            s.assign(v as usize, c as u32);
        }
        s
    }

    fn assign(&mut self, v: usize, c: u32) {
        self.colours[v] = c;
        for &u in &self.g.adj[v] {
            let f = &mut self.forbidden[u as usize][c as usize];
            if *f == 0 {
                self.saturation[u as usize] += 1;
            }
            *f += 1;
        }
    }

    fn unassign(&mut self, v: usize) {
        let c = self.colours[v];
        self.colours[v] = UNCOLOURED;
        for &u in &self.g.adj[v] {
            let f = &mut self.forbidden[u as usize][c as usize];
            *f -= 1;
            if *f == 0 {
                self.saturation[u as usize] -= 1;
            }
        }
    }

    fn run(&mut self) {
        let used = self.lower_bound;
        let left = self.colours.iter().filter(|&&c| c == UNCOLOURED).count();
        self.search(left, used);
    }

    fn search(&mut self, left: usize, used: usize) {
        if self.gave_up || self.best_count == self.lower_bound {
            return;
        }
        self.nodes += 1;
        if self.nodes > self.budget {
            self.gave_up = true;
            return;
        }
        if left == 0 {
            if used < self.best_count {
                self.best_count = used;
                self.best = self.colours.clone();
            }
            return;
        }
        let v = (0..self.g.len())
            .filter(|&v| self.colours[v] == UNCOLOURED)
            .max_by_key(|&v| (self.saturation[v], self.g.adj[v].len()))
            .expect("left > 0");
        if self.saturation[v] >= self.best_count - 1 {
            return; // v would need a colour the best colouring does without
        }
        for c in 0..used {
            if self.forbidden[v][c] == 0 {
                self.assign(v, c as u32);
                self.search(left - 1, used);
                self.unassign(v);
                if self.gave_up || self.best_count == self.lower_bound {
                    return;
                }
            }
        }
        if used + 1 < self.best_count {
            self.assign(v, used as u32);
            self.search(left - 1, used + 1);
            self.unassign(v);
        }
    }
}

/// The chromatic number by trying every colouring (tests only: n ≤ 9 or so).
pub fn brute_force_chromatic(g: &Graph) -> usize {
    let n = g.len();
    if n == 0 {
        return 0;
    }
    for k in 1..=n {
        let mut colours = vec![0u32; n];
        if try_k(g, &mut colours, 0, k as u32) {
            return k;
        }
    }
    n
}

fn try_k(g: &Graph, colours: &mut Vec<u32>, v: usize, k: u32) -> bool {
    if v == g.len() {
        return true;
    }
    for c in 0..k {
        if g.adj[v]
            .iter()
            .all(|&u| (u as usize) >= v || colours[u as usize] != c)
        {
            colours[v] = c;
            if try_k(g, colours, v + 1, k) {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn graph(n: usize, edges: &[(usize, usize)]) -> Graph {
        let mut g = Graph::new(n);
        for &(a, b) in edges {
            g.add_edge(a, b);
        }
        g.finish();
        g
    }

    #[test]
    fn known_graphs() {
        // odd cycle: 3 colours, clique bound 2, so the exact search must prove it
        let c5 = graph(5, &[(0, 1), (1, 2), (2, 3), (3, 4), (4, 0)]);
        let r = colour(&c5, Effort::default());
        assert_eq!((r.count, r.optimal, r.method), (3, true, "exact"));
        assert!(is_proper(&c5, &r.colours));
        // no edges: one image
        let r = colour(&graph(4, &[]), Effort::default());
        assert_eq!((r.count, r.lower_bound), (1, 1));
        // K4
        let k4 = graph(4, &[(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]);
        assert_eq!(colour(&k4, Effort::default()).count, 4);
    }

    #[test]
    fn mycielski_graph_needs_the_exact_search() {
        // Grötzsch graph: triangle-free (clique 2), chromatic number 4
        let edges = [
            (0, 1),
            (1, 2),
            (2, 3),
            (3, 4),
            (4, 0),
            (5, 1),
            (5, 4),
            (6, 0),
            (6, 2),
            (7, 1),
            (7, 3),
            (8, 2),
            (8, 4),
            (9, 3),
            (9, 0),
            (10, 5),
            (10, 6),
            (10, 7),
            (10, 8),
            (10, 9),
        ];
        let g = graph(11, &edges);
        let r = colour(&g, Effort::default());
        assert_eq!((r.count, r.lower_bound, r.method), (4, 4, "exact"));
        assert_eq!(brute_force_chromatic(&g), 4);
    }

    #[test]
    fn budget_exhaustion_keeps_a_proper_colouring() {
        let edges: Vec<(usize, usize)> = (0..40)
            .flat_map(|a| (a + 1..40).map(move |b| (a, b)))
            .filter(|(a, b)| (a * 7 + b * 13) % 5 < 2)
            .collect();
        let g = graph(40, &edges);
        let r = colour(
            &g,
            Effort {
                exact_node_budget: 10,
                ..Effort::default()
            },
        );
        assert!(is_proper(&g, &r.colours));
        assert!(r.count >= r.lower_bound);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn exact_equals_brute_force(n in 1usize..9, bits in proptest::collection::vec(any::<bool>(), 36)) {
            let mut edges = vec![];
            let mut k = 0;
            for a in 0..n {
                for b in a + 1..n {
                    if bits[k % bits.len()] { edges.push((a, b)); }
                    k += 1;
                }
            }
            let g = graph(n, &edges);
            let r = colour(&g, Effort::default());
            prop_assert!(is_proper(&g, &r.colours));
            prop_assert!(r.optimal);
            prop_assert_eq!(r.count, brute_force_chromatic(&g));
            prop_assert!(r.lower_bound <= r.count);
        }

        #[test]
        fn heuristics_are_proper(n in 1usize..60, seed in any::<u64>()) {
            let mut edges = vec![];
            let mut x = seed | 1;
            for a in 0..n {
                for b in a + 1..n {
                    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                    if x % 4 == 0 { edges.push((a, b)); }
                }
            }
            let g = graph(n, &edges);
            let d = dsatur(&g);
            prop_assert!(is_proper(&g, &d));
            let it = iterated_greedy(&g, d.clone(), 10, 0);
            prop_assert!(is_proper(&g, &it));
            prop_assert!(count_colours(&it) <= count_colours(&d));
            let clique = greedy_clique(&g);
            for (i, &a) in clique.iter().enumerate() {
                for &b in &clique[i + 1..] {
                    prop_assert!(g.adjacent(a as usize, b as usize));
                }
            }
        }
    }
}
