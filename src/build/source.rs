//! The blobs of a scanned image, opened again where the scan found them (an OCI layout,
//! a `docker save` archive, a registry), and the facts of its layers (from the layer
//! cache, else read once more).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::inventory::Image;
use crate::scan::cache::LayerCache;
use crate::scan::layer::{self, Expected, LayerFacts, Limits};
use crate::scan::source::registry::RegistryInput;
use crate::scan::source::registry::auth::Credentials;
use crate::scan::source::{self, BlobStore, FoundImage};

/// How to reach the registries images were scanned from.
#[derive(Clone, Default)]
pub struct Access {
    pub plain_http: bool,
    pub insecure: bool,
    pub credentials: Option<Credentials>,
    pub temp_dir: PathBuf,
    pub cache_root: Option<PathBuf>,
}

/// Why an image's blobs cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("image {image} is in no source unsprawl can read again ({tried})")]
    Unreachable { image: String, tried: String },
    #[error("layer {diff_id} of {image}: {message}")]
    Layer {
        image: String,
        diff_id: String,
        message: String,
    },
}

/// Sources opened so far (a layout or archive is walked once for all its images); the
/// registry walks' runtimes are kept here as long as their stores are used.
#[derive(Default)]
pub struct Sources {
    found: HashMap<String, Vec<FoundImage>>,
    /// Layer facts by image id: an image that is both a base and a source (or serves
    /// several runtime images) is read once.
    facts: HashMap<String, Vec<LayerFacts>>,
    _keep: Vec<Box<dyn std::any::Any + Send + Sync>>,
}

impl Sources {
    /// The image, found again in the first of its locations that still holds it.
    pub fn open(&mut self, img: &Image, access: &Access) -> Result<FoundImage, SourceError> {
        let mut tried = vec![];
        for loc in &img.locations {
            let key = format!(
                "{}\u{0}{}\u{0}{}",
                loc.source.kind,
                loc.source.location,
                loc.reference.as_deref().unwrap_or("")
            );
            if !self.found.contains_key(&key) {
                let images = match self.walk(
                    &loc.source.kind,
                    &loc.source.location,
                    loc.reference.as_deref(),
                    access,
                ) {
                    Ok(v) => v,
                    Err(e) => {
                        tried.push(format!("{} {}: {e}", loc.source.kind, loc.source.location));
                        continue;
                    }
                };
                self.found.insert(key.clone(), images);
            }
            if let Some(f) = self.found[&key]
                .iter()
                .find(|f| f.config_digest.as_deref() == Some(img.id.as_str()))
            {
                return Ok(f.clone());
            }
            tried.push(format!(
                "{} {}: the image is not there any more",
                loc.source.kind, loc.source.location
            ));
        }
        Err(SourceError::Unreachable {
            image: label(img),
            tried: if tried.is_empty() {
                "it has no locations".into()
            } else {
                tried.join("; ")
            },
        })
    }

    /// The facts of every layer of `img` (found as `f`), read once per build.
    pub fn facts(
        &mut self,
        img: &Image,
        f: &FoundImage,
        access: &Access,
    ) -> Result<Vec<LayerFacts>, SourceError> {
        if let Some(x) = self.facts.get(&img.id) {
            return Ok(x.clone());
        }
        let x = layer_facts(img, f, access)?;
        self.facts.insert(img.id.clone(), x.clone());
        Ok(x)
    }

    fn walk(
        &mut self,
        kind: &str,
        location: &str,
        reference: Option<&str>,
        access: &Access,
    ) -> Result<Vec<FoundImage>, String> {
        let src = crate::inventory::SourceRef {
            kind: kind.into(),
            location: location.into(),
        };
        match kind {
            "oci-dir" => {
                let store: Arc<dyn BlobStore> = Arc::new(source::DirStore {
                    root: PathBuf::from(location),
                });
                Ok(source::oci_layout::walk(store, &src).images)
            }
            "archive" => {
                let o = source::archive::open(Path::new(location), &access.temp_dir)?;
                Ok(o.images)
            }
            "registry" => {
                let mut input = RegistryInput::new(location);
                input.plain_http = access.plain_http;
                input.insecure = access.insecure;
                input.credentials = access.credentials.clone();
                if let Some(r) = reference {
                    let r = r.strip_prefix(&format!("{location}/")).unwrap_or(r);
                    let target =
                        crate::reference::RegistryTarget::parse(&format!("{location}/{r}"))
                            .map_err(|e| e.to_string())?;
                    input.references = target.image.into_iter().collect();
                }
                let w = source::registry::walk(input, access.cache_root.as_deref())?;
                self._keep.push(Box::new(w.runtime));
                Ok(w.images)
            }
            other => Err(format!(
                "images scanned from a {other} cannot be read again: push them to a registry or save them to an archive and scan that"
            )),
        }
    }
}

/// `repository:tag`, or the id when the image has no name.
pub fn label(img: &Image) -> String {
    img.references
        .first()
        .cloned()
        .unwrap_or_else(|| img.id.clone())
}

/// The facts of every layer of `f`, in order: from the layer cache, else read again.
pub fn layer_facts(
    img: &Image,
    f: &FoundImage,
    access: &Access,
) -> Result<Vec<LayerFacts>, SourceError> {
    let cache = access
        .cache_root
        .as_ref()
        .and_then(|root| LayerCache::new(root, &Limits::default()).ok());
    let mut out = vec![];
    for (l, layer) in f.layers.iter().zip(&img.layers) {
        let cached = cache.as_ref().and_then(|c| {
            c.get_by_diff_id(&layer.diff_id)
                .or_else(|| c.get_by_digest(&layer.digest, &layer.diff_id))
        });
        let facts = match cached {
            Some(x) => x,
            None => {
                let err = |message: String| SourceError::Layer {
                    image: label(img),
                    diff_id: layer.diff_id.clone(),
                    message,
                };
                let blob = f.store.open(&l.key).map_err(|e| err(e.to_string()))?;
                let expected = Expected {
                    digest: l.digest.clone(),
                    diff_id: layer.diff_id.clone(),
                    stored_bytes: layer.stored_bytes,
                    verify_diff_id: false,
                    digest_checked_by_source: f.digest_checked_by_store,
                };
                let facts = layer::analyse(blob, &expected, &Limits::default())
                    .map_err(|e| err(e.to_string()))?;
                if let Some(c) = &cache {
                    let _ = c.put(l.digest.as_deref(), &facts);
                }
                facts
            }
        };
        out.push(facts);
    }
    Ok(out)
}
