//! The on-disk layer cache: one JSON file of [`LayerFacts`] per diff_id.
//!
//! Trivy's model: the key is a layer digest plus everything that changes the result, i.e.
//! the analyser version and the limits. A periodic audit then reads only layers it has
//! never seen. Facts are filed under the stored blob's digest (always verified when read)
//! and, when the uncompressed content was hashed, under the diff_id too (the same in
//! every registry and engine). An unverified diff_id claim is never a key, so one image
//! with a lying config cannot change what another image is found to contain. Entries are written to a
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

    fn path(&self, digest: &str) -> Option<PathBuf> {
        // blob_key refuses anything that is not a well-formed digest, so a hostile
        // config cannot name a path outside the cache.
        let key = blob_key(digest).ok()?;
        Some(self.dir.join(key.replace('/', "-") + ".json"))
    }

    /// Facts filed under a verified diff_id.
    pub fn get_by_diff_id(&self, diff_id: &str) -> Option<LayerFacts> {
        self.read(diff_id)
            .filter(|f| f.diff_id_verified && f.diff_id == diff_id)
    }

    /// Facts filed under a stored blob's digest, for the layer whose config names
    /// `diff_id`: an entry for another layer (a misfiled or swapped file) is not used.
    pub fn get_by_digest(&self, digest: &str, diff_id: &str) -> Option<LayerFacts> {
        self.read(digest).filter(|f| f.diff_id == diff_id)
    }

    fn read(&self, key: &str) -> Option<LayerFacts> {
        let bytes = std::fs::read(self.path(key)?).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// File `facts` of a blob with this digest (if known) and, when verified, its diff_id.
    pub fn put(&self, digest: Option<&str>, facts: &LayerFacts) -> std::io::Result<()> {
        let mut keys: Vec<&str> = digest.into_iter().collect();
        if facts.diff_id_verified && digest != Some(facts.diff_id.as_str()) {
            keys.push(&facts.diff_id);
        }
        for key in keys {
            self.write(key, facts)?;
        }
        Ok(())
    }

    fn write(&self, key: &str, facts: &LayerFacts) -> std::io::Result<()> {
        let Some(path) = self.path(key) else {
            return Ok(());
        };
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        serde_json::to_writer(&mut tmp, facts)?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(diff_id: &str) -> LayerFacts {
        LayerFacts {
            diff_id: diff_id.into(),
            diff_id_verified: false,
            uncompressed_bytes: 1,
            entries: 1,
            files: Default::default(),
            whiteouts: vec![],
            opaque_dirs: vec![],
        }
    }

    #[test]
    fn an_entry_filed_for_another_layer_is_not_used() {
        let tmp = tempfile::tempdir().unwrap();
        let c = LayerCache::new(tmp.path(), &Limits::default()).unwrap();
        let (blob_a, diff_a) = (
            format!("sha256:{}", "a".repeat(64)),
            format!("sha256:{}", "1".repeat(64)),
        );
        let (blob_b, diff_b) = (
            format!("sha256:{}", "b".repeat(64)),
            format!("sha256:{}", "2".repeat(64)),
        );
        c.put(Some(&blob_a), &facts(&diff_a)).unwrap();
        c.put(Some(&blob_b), &facts(&diff_b)).unwrap();
        assert!(c.get_by_digest(&blob_a, &diff_a).is_some());
        // swap the two files on disk: each now holds the other layer's valid entry
        let (pa, pb) = (c.path(&blob_a).unwrap(), c.path(&blob_b).unwrap());
        let (ta, tb) = (std::fs::read(&pa).unwrap(), std::fs::read(&pb).unwrap());
        std::fs::write(&pa, tb).unwrap();
        std::fs::write(&pb, ta).unwrap();
        assert!(c.get_by_digest(&blob_a, &diff_a).is_none());
        assert!(c.get_by_digest(&blob_b, &diff_b).is_none());
    }
}
