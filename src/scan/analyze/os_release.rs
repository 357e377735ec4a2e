//! `os-release` (freedesktop): which distribution an image is built on.

use std::collections::BTreeMap;

use crate::inventory::OsRelease;

/// Parse `KEY=value` lines, unquoting single or double quoted values and undoing
/// backslash escapes as the spec allows. Lines that are not assignments are ignored.
pub fn parse(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim();
        let v = if v.len() >= 2
            && (v.starts_with('"') && v.ends_with('"') || v.starts_with('\'') && v.ends_with('\''))
        {
            let inner = &v[1..v.len() - 1];
            let mut s = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    if let Some(n) = chars.next() {
                        s.push(n);
                    }
                } else {
                    s.push(c);
                }
            }
            s
        } else {
            v.to_string()
        };
        out.insert(k.trim().to_string(), v);
    }
    out
}

/// The package family of a distribution: what decides which system packages exist.
pub fn family(id: Option<&str>, id_like: Option<&str>) -> Option<String> {
    const KNOWN: [&str; 6] = ["debian", "alpine", "rhel", "fedora", "suse", "arch"];
    let mut names: Vec<&str> = id.into_iter().collect();
    names.extend(id_like.unwrap_or("").split_whitespace());
    for n in &names {
        match *n {
            "ubuntu" | "debian" => return Some("debian".into()),
            "centos" | "rocky" | "almalinux" | "rhel" | "ol" | "amzn" => {
                return Some("rhel".into());
            }
            _ => {}
        }
    }
    names
        .iter()
        .find(|n| KNOWN.contains(n))
        .or(names.first())
        .map(|s| s.to_string())
}

pub fn to_inventory(fields: &BTreeMap<String, String>, path: &str) -> OsRelease {
    let get = |k: &str| fields.get(k).cloned();
    OsRelease {
        family: family(
            fields.get("ID").map(String::as_str),
            fields.get("ID_LIKE").map(String::as_str),
        ),
        id: get("ID"),
        version_id: get("VERSION_ID"),
        version_codename: get("VERSION_CODENAME"),
        pretty_name: get("PRETTY_NAME"),
        path: path.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_debian_and_ubuntu() {
        let f = parse(
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\nID=debian\n",
        );
        let os = to_inventory(&f, "usr/lib/os-release");
        assert_eq!(os.id.as_deref(), Some("debian"));
        assert_eq!(os.version_id.as_deref(), Some("12"));
        assert_eq!(os.family.as_deref(), Some("debian"));
        assert_eq!(
            os.pretty_name.as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        let u = parse("ID=ubuntu\nID_LIKE=debian\nVERSION_ID='22.04'\n# c\ngarbage\n");
        assert_eq!(u["VERSION_ID"], "22.04");
        assert_eq!(
            family(Some("ubuntu"), Some("debian")).as_deref(),
            Some("debian")
        );
        assert_eq!(family(Some("alpine"), None).as_deref(), Some("alpine"));
        assert_eq!(
            family(Some("rocky"), Some("rhel centos fedora")).as_deref(),
            Some("rhel")
        );
    }

    #[test]
    fn unescapes_quoted_values() {
        let f = parse(r#"PRETTY_NAME="a \"quoted\" \\ name""#);
        assert_eq!(f["PRETTY_NAME"], r#"a "quoted" \ name"#);
    }
}
