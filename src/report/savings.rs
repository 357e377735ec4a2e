//! What the plan saves, bytes compared like with like.
//!
//! Both sides are *stored* bytes (layer blobs as a registry keeps them, compressed), each
//! distinct layer once: today, the layers of the images the planned flows run on; after,
//! the layers of the runtime images. A runtime image's layers are measured when a build
//! document has it, and estimated otherwise: its base's layers (the scanned image of that
//! name, or else the layers every member's image shares) plus its distributions'
//! installed bytes at the compression ratio today's images show. Installed bytes are
//! never compared with stored ones (that read as the plan making things bigger).

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::build::BuiltImage;
use crate::inventory::{Image, Inventory};
use crate::plan::additions::DISTRIBUTION;
use crate::plan::{Plan, RuntimeImage};

/// What a GB of registry storage costs a month (decimal GB, as clouds bill it).
#[derive(Debug, Clone, PartialEq)]
pub struct Price {
    pub per_gb_month: f64,
    pub currency: String,
}

impl Default for Price {
    /// Object-storage-backed registries bill about a tenth of a dollar per GB-month.
    fn default() -> Self {
        Price {
            per_gb_month: 0.10,
            currency: "USD".into(),
        }
    }
}

/// When no scanned image says how well its layers compress.
const DEFAULT_RATIO: f64 = 0.4;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Savings {
    /// Σ stored bytes of the distinct layers of the images the planned flows use today.
    pub stored_bytes_before: u64,
    /// Σ stored bytes of the runtime images' distinct layers (a shared base once).
    pub stored_bytes_after: u64,
    /// `built` (every runtime image measured from the build document), `estimated`
    /// (none was), or `partly built`.
    pub basis: String,
    /// Runtime images whose bytes are estimated.
    pub estimated_images: usize,
    /// The compression ratio (stored / uncompressed) used for estimates.
    pub compression_ratio: f64,
    /// What estimates could not size, left out of `stored_bytes_after` (so the savings
    /// are an upper bound): a base image neither scanned nor shared by the members'
    /// images (`base NAME`), pinned distributions without RECORD sizes, a wheel from a
    /// package index that no scanned image has.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_sized: Vec<String>,
    /// `before − after`; negative when the runtime images would store more.
    pub saved_bytes: i64,
    pub price_per_gb_month: f64,
    pub currency: String,
    /// What the saved bytes cost a month (negative: what the extra bytes cost).
    pub saved_per_month: f64,
}

/// The savings of `plan` over the images `before` (their distinct layers, by digest).
pub fn compute(
    inv: &Inventory,
    plan: &Plan,
    built: &[BuiltImage],
    before: &HashMap<&str, u64>,
    price: &Price,
) -> Savings {
    let ratio = compression_ratio(&inv.images);
    let by_id: HashMap<&str, &Image> = inv.images.iter().map(|i| (i.id.as_str(), i)).collect();
    let by_ref: HashMap<String, &Image> = inv
        .images
        .iter()
        .flat_map(|i| {
            i.references
                .iter()
                .map(move |r| (crate::reference::canonical(r), i))
        })
        .collect();
    let measured: HashMap<&str, &BuiltImage> = built
        .iter()
        .filter(|b| !b.layer_sizes.is_empty())
        .map(|b| (b.name.as_str(), b))
        .collect();

    let installed: HashMap<(&str, &str), u64> = inv
        .images
        .iter()
        .filter_map(|i| i.contents.as_ref())
        .flat_map(|c| &c.python.distributions)
        .filter_map(|d| Some(((d.name.as_str(), d.version.as_str()), d.installed_bytes?)))
        .collect();
    let mut not_sized = BTreeSet::new();
    let mut shared: HashMap<String, u64> = HashMap::new();
    let mut own = 0u64;
    let mut estimated = 0usize;
    for rt in &plan.runtime_images {
        if let Some(b) = measured.get(rt.name.as_str()) {
            for l in &b.layer_sizes {
                shared.insert(l.digest.clone(), l.stored_bytes);
            }
            continue;
        }
        estimated += 1;
        let base = base_layers(rt, &by_ref, &by_id, &inv.images);
        if base.is_empty() {
            not_sized.insert(format!("base {}", rt.base_image));
        }
        for (digest, bytes) in base {
            shared.insert(digest, bytes);
        }
        // pinned distributions no RECORD sizes: not in `estimated_bytes`
        not_sized.extend(rt.unknown_size.iter().cloned());
        let mut raw = rt.estimated_bytes;
        for a in rt.additions.iter().filter(|a| a.kind == DISTRIBUTION) {
            let v = a.version.as_deref().unwrap_or("");
            match installed.get(&(crate::rules::normalize(&a.name).as_str(), v)) {
                Some(b) => raw += b,
                None => {
                    not_sized.insert(format!("{} {v}", a.name));
                }
            }
        }
        own += (raw as f64 * ratio).round() as u64;
    }
    let before_bytes: u64 = before.values().sum();
    let after = shared.values().sum::<u64>() + own;
    let saved = before_bytes as i64 - after as i64;
    Savings {
        stored_bytes_before: before_bytes,
        stored_bytes_after: after,
        basis: match (estimated, plan.runtime_images.len()) {
            (0, _) => "built",
            (e, n) if e == n => "estimated",
            _ => "partly built",
        }
        .into(),
        estimated_images: estimated,
        compression_ratio: (ratio * 1000.0).round() / 1000.0,
        not_sized: not_sized.into_iter().collect(),
        saved_bytes: saved,
        price_per_gb_month: price.per_gb_month,
        currency: price.currency.clone(),
        saved_per_month: saved as f64 / 1e9 * price.per_gb_month,
    }
}

/// Stored / uncompressed over the images that know both, bounded to what gzip does.
fn compression_ratio(images: &[Image]) -> f64 {
    let (stored, raw) = images
        .iter()
        .filter_map(|i| Some((i.size.stored_bytes, i.size.uncompressed_bytes?)))
        .filter(|&(s, u)| u > 0 && s > 0)
        .fold((0u64, 0u64), |(a, b), (s, u)| (a + s, b + u));
    if raw == 0 {
        DEFAULT_RATIO
    } else {
        (stored as f64 / raw as f64).clamp(0.05, 1.0)
    }
}

/// The layers a runtime image starts from: its base's, if that image was scanned, or
/// else the layers at the bottom of every member's image (their common base).
fn base_layers(
    rt: &RuntimeImage,
    by_ref: &HashMap<String, &Image>,
    by_id: &HashMap<&str, &Image>,
    all: &[Image],
) -> Vec<(String, u64)> {
    let layers = |i: &Image| -> Vec<(String, u64)> {
        i.layers
            .iter()
            .map(|l| (l.digest.clone(), l.stored_bytes))
            .collect()
    };
    if let Some(base) = by_ref.get(&crate::reference::canonical(&rt.base_image)) {
        return layers(base);
    }
    let members: BTreeSet<&str> = rt.replaces.iter().map(String::as_str).collect();
    let mut images = members.iter().filter_map(|id| by_id.get(id));
    let Some(first) = images.next() else {
        return Vec::new();
    };
    let mut common = layers(first);
    for img in images {
        let n = common
            .iter()
            .zip(&img.layers)
            .take_while(|((d, _), l)| *d == l.digest)
            .count();
        common.truncate(n);
    }
    // one member's whole image is not a base: where its base ends is a guess (history,
    // or the layers it shares with another image)
    if members.len() == 1 {
        common.truncate(crate::flows::guess_base(first, all).0);
    }
    common
}
