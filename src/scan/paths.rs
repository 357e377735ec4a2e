//! Paths inside an image, resolved as the kernel resolves them: a module of its own so
//! the layer reader and the analysers that follow links share it without importing
//! each other.

/// Resolve a symlink target against the directory holding the link.
pub fn resolve_link(link_path: &str, target: &str) -> Option<String> {
    let mut parts: Vec<&str> = if target.starts_with('/') {
        Vec::new()
    } else {
        let parent = link_path.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
        parent.split('/').filter(|p| !p.is_empty()).collect()
    };
    for p in target.split('/') {
        match p {
            "" | "." => {}
            // `..` at the root stays at the root, as the kernel does
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/")).filter(|p| !p.is_empty())
}
