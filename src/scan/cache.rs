//! The on-disk layer cache: one JSON file of [`LayerFacts`] per diff_id.
//!
//! Trivy's model: the key is the diff_id (the same in every registry and engine) plus
//! everything that changes the result, i.e. the analyser version and the limits. A
//! periodic audit then reads only layers it has never seen. Entries are written to a
//! temporary file and renamed, so a killed scan never leaves a half-written entry, and
//! an unreadable entry is treated as a miss.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::ANALYSER_VERSION;
use super::layer::{LayerFacts, Limits};
use super::source::blob_key;

pub struct LayerCache {
    dir: PathBuf,
}

impl LayerCache {
    /// A cache under `root` for facts made with these limits.
    pub fn new(root: &Path, limits: &Limits) -> std::io::Result<Self> {
        let opts = serde_json::to_vec(limits).unwrap_or_default();
        let tag = &hex::encode(Sha256::digest(&opts))[..12];
        let dir = root
            .join("layers")
            .join(format!("v{ANALYSER_VERSION}-{tag}"));
        std::fs::create_dir_all(&dir)?;
        Ok(LayerCache { dir })
    }

    /// The default location: the user's cache directory, else a temp dir.
    pub fn default_root() -> PathBuf {
        dirs::cache_dir()
            .unwrap_or_else(std::env::temp_dir)
            .join("unsprawl")
    }

    fn path(&self, diff_id: &str) -> Option<PathBuf> {
        // blob_key refuses anything that is not a well-formed digest, so a hostile
        // config cannot name a path outside the cache.
        let key = blob_key(diff_id).ok()?;
        Some(self.dir.join(key.replace('/', "-") + ".json"))
    }

    pub fn get(&self, diff_id: &str) -> Option<LayerFacts> {
        let bytes = std::fs::read(self.path(diff_id)?).ok()?;
        let facts: LayerFacts = serde_json::from_slice(&bytes).ok()?;
        (facts.diff_id == diff_id).then_some(facts)
    }

    pub fn put(&self, facts: &LayerFacts) -> std::io::Result<()> {
        let Some(path) = self.path(&facts.diff_id) else {
            return Ok(());
        };
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        serde_json::to_writer(&mut tmp, facts)?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    }
}
