//! Is a module part of the Python standard library (for a given minor version)?
//!
//! The list is CPython 3.11's `sys.stdlib_module_names` (`stdlib-3.11.txt`, written by
//! that interpreter), adjusted by the modules added and removed since 3.8.

use std::collections::HashSet;
use std::sync::OnceLock;

const LIST_3_11: &str = include_str!("stdlib-3.11.txt");

/// `(module, first minor that has it)`: newer than 3.8.
const ADDED: &[(&str, u32)] = &[("zoneinfo", 9), ("graphlib", 9), ("tomllib", 11)];

/// `(module, first minor without it)`: PEP 594 and distutils removals.
const REMOVED: &[(&str, u32)] = &[
    ("distutils", 12),
    ("imp", 12),
    ("asynchat", 12),
    ("asyncore", 12),
    ("smtpd", 12),
    ("aifc", 13),
    ("audioop", 13),
    ("cgi", 13),
    ("cgitb", 13),
    ("chunk", 13),
    ("crypt", 13),
    ("imghdr", 13),
    ("mailcap", 13),
    ("msilib", 13),
    ("nis", 13),
    ("nntplib", 13),
    ("ossaudiodev", 13),
    ("pipes", 13),
    ("sndhdr", 13),
    ("spwd", 13),
    ("sunau", 13),
    ("telnetlib", 13),
    ("uu", 13),
    ("xdrlib", 13),
    ("lib2to3", 13),
];

fn base() -> &'static HashSet<&'static str> {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| {
        LIST_3_11
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect()
    })
}

/// Whether top-level module `name` ships with CPython `3.minor` (`minor` e.g. `"3.11"`;
/// unknown → the 3.11 list).
pub fn is_stdlib(name: &str, python: Option<&str>) -> bool {
    let minor: u32 = python
        .and_then(|p| p.split('.').nth(1))
        .and_then(|m| m.parse().ok())
        .unwrap_or(11);
    if let Some((_, since)) = ADDED.iter().find(|(m, _)| *m == name) {
        return minor >= *since;
    }
    if let Some((_, gone)) = REMOVED.iter().find(|(m, _)| *m == name) {
        return minor < *gone;
    }
    base().contains(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_versions() {
        assert!(is_stdlib("json", Some("3.11")));
        assert!(is_stdlib("_operator", Some("3.10")));
        assert!(!is_stdlib("yaml", Some("3.11")));
        assert!(is_stdlib("distutils", Some("3.10")));
        assert!(!is_stdlib("distutils", Some("3.12")));
        assert!(!is_stdlib("tomllib", Some("3.10")));
        assert!(is_stdlib("tomllib", Some("3.12")));
    }
}
