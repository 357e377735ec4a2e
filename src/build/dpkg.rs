//! OS packages a runtime image needs and its base lacks (`git` for a `git_clone` pull
//! step), harvested from a scanned image of the same OS release that has them installed.
//! dpkg's own records say everything: `status` gives each package's `Depends` (the
//! closure is taken, minus what the base has), `info/P.list` the paths it installed and
//! `info/P.md5sums` their MD5, each checked. The new layer carries the files, those
//! records and a `status` that is the base's plus the added stanzas, so `dpkg -l`, `apt`
//! and our own scanner see the packages as installed.

use std::collections::{BTreeMap, BTreeSet};

use md5::{Digest, Md5};

use super::harvest::{Content, stream};
use crate::scan::layer::LayerFacts;
use crate::scan::source::FoundImage;

pub const STATUS: &str = "var/lib/dpkg/status";
const INFO: &str = "var/lib/dpkg/info/";

/// One installed package's stanza in a `status` file, kept as written.
#[derive(Debug, Clone, PartialEq)]
pub struct Stanza {
    pub name: String,
    pub version: String,
    pub architecture: String,
    text: String,
    fields: Vec<(String, String)>,
}

impl Stanza {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Names it provides besides its own (`Provides: awk, perl-base (= 5.36)`).
    fn provides(&self) -> Vec<String> {
        self.field("Provides")
            .map(|p| p.split(',').filter_map(dep_name).collect())
            .unwrap_or_default()
    }

    /// `Pre-Depends` and `Depends` as clauses of alternatives.
    fn depends(&self) -> Vec<Vec<String>> {
        ["Pre-Depends", "Depends"]
            .iter()
            .filter_map(|f| self.field(f))
            .flat_map(|d| d.split(','))
            .map(|clause| clause.split('|').filter_map(dep_name).collect::<Vec<_>>())
            .filter(|c| !c.is_empty())
            .collect()
    }

    /// `Conffiles:` rows (`/etc/x md5`), which `md5sums` leaves out.
    fn conffiles(&self) -> Vec<(String, String)> {
        self.field("Conffiles")
            .map(|c| {
                c.lines()
                    .filter_map(|l| {
                        let mut it = l.split_whitespace();
                        let (p, m) = (it.next()?, it.next()?);
                        (it.next() != Some("obsolete"))
                            .then(|| (p.trim_start_matches('/').to_string(), m.to_string()))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// `libc6 (>= 2.34)` or `perl:any` → `libc6`, `perl`.
fn dep_name(s: &str) -> Option<String> {
    let n = s.split_whitespace().next()?;
    let n = n.split(':').next().unwrap_or(n);
    (!n.is_empty()).then(|| n.to_string())
}

/// The installed packages of a `status` file (`Status: … installed`).
pub fn parse_status(text: &str) -> Vec<Stanza> {
    let mut out = vec![];
    for block in text.split("\n\n") {
        let block = block.trim_matches('\n');
        if block.trim().is_empty() {
            continue;
        }
        let mut fields: Vec<(String, String)> = vec![];
        for line in block.lines() {
            if line.starts_with([' ', '\t']) {
                if let Some(last) = fields.last_mut() {
                    last.1.push('\n');
                    last.1.push_str(line.trim());
                }
            } else if let Some((k, v)) = line.split_once(':') {
                fields.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let get = |k: &str| {
            fields
                .iter()
                .find(|(f, _)| f.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.clone())
        };
        let installed = get("Status").is_none_or(|s| s.ends_with(" installed"));
        if let (Some(name), Some(version), true) = (get("Package"), get("Version"), installed) {
            out.push(Stanza {
                name,
                version,
                architecture: get("Architecture").unwrap_or_default(),
                text: block.to_string(),
                fields,
            });
        }
    }
    out
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DpkgError {
    #[error(
        "{image} has no dpkg database ({STATUS}): OS packages can only be added to a Debian or Ubuntu base; use a base that already has {wanted} ([image.base])"
    )]
    NoDatabase { image: String, wanted: String },
    #[error("{package} needs {clause}, which neither the base nor {source_image} has installed")]
    Unresolvable {
        package: String,
        clause: String,
        source_image: String,
    },
    #[error("{package} in {image}: {path} is in its md5sums but missing from the image")]
    Missing {
        package: String,
        image: String,
        path: String,
    },
    #[error(
        "{package} in {image}: {path} does not match its dpkg md5sum ({expected}, the file hashes to {actual})"
    )]
    Md5 {
        package: String,
        image: String,
        path: String,
        expected: String,
        actual: String,
    },
    #[error("{package} in {image} has no {INFO}{package}.list: its files are unknown")]
    NoList { package: String, image: String },
    #[error("{package} in {image}: listed path {path:?} leaves the image root")]
    UnsafePath {
        package: String,
        image: String,
        path: String,
    },
    #[error("reading {image}: {message}")]
    Read { image: String, message: String },
}

/// One package to harvest: its stanza, the stem of its `info/` files, the paths it
/// listed, and `(path, md5)` for every file dpkg recorded a sum of.
type Records<'a> = (&'a Stanza, String, Vec<String>, Vec<(String, String)>);

/// What the OS additions put into the new layer.
#[derive(Debug, Default)]
pub struct Added {
    /// Root-relative paths: the packages' files, their dpkg records and the new `status`.
    pub files: BTreeMap<String, Content>,
    /// `(name, version)` of every package added, the closure included.
    pub packages: Vec<(String, String)>,
}

/// The packages `wanted` lacks in the base, closed over their dependencies, in the
/// order they were reached.
pub fn closure<'a>(
    wanted: &[String],
    base: &[Stanza],
    source: &'a [Stanza],
    source_image: &str,
) -> Result<Vec<&'a Stanza>, DpkgError> {
    let mut have: BTreeSet<String> = BTreeSet::new();
    for s in base {
        have.insert(s.name.clone());
        have.extend(s.provides());
    }
    let by_name: BTreeMap<&str, &Stanza> = source.iter().map(|s| (s.name.as_str(), s)).collect();
    let provider = |n: &str| -> Option<&'a Stanza> {
        by_name
            .get(n)
            .copied()
            .or_else(|| source.iter().find(|s| s.provides().iter().any(|p| p == n)))
    };
    let mut out: Vec<&Stanza> = vec![];
    let mut todo: Vec<(String, String)> = wanted
        .iter()
        .rev()
        .map(|w| ("(the rules)".to_string(), w.clone()))
        .collect();
    while let Some((by, clause)) = todo.pop() {
        let alts: Vec<&str> = clause.split('|').map(str::trim).collect();
        if alts.iter().any(|a| have.contains(*a)) {
            continue;
        }
        let Some(s) = alts.iter().find_map(|a| provider(a)) else {
            return Err(DpkgError::Unresolvable {
                package: by,
                clause,
                source_image: source_image.to_string(),
            });
        };
        have.insert(s.name.clone());
        have.extend(s.provides());
        out.push(s);
        for c in s.depends().into_iter().rev() {
            todo.push((s.name.clone(), c.join(" | ")));
        }
    }
    Ok(out)
}

/// The base's `status` text, when it has one.
pub fn read_status(
    image: &str,
    found: &FoundImage,
    facts: &[LayerFacts],
) -> Result<Option<String>, DpkgError> {
    let got = stream(image, found, facts, &|p: &str| p == STATUS).map_err(|e| DpkgError::Read {
        image: image.into(),
        message: e.to_string(),
    })?;
    Ok(match got.get(STATUS) {
        Some(Content::File { data, .. }) => Some(String::from_utf8_lossy(data).into_owned()),
        _ => None,
    })
}

/// Harvest `wanted` (and what they depend on that the base lacks) from `image`.
pub fn harvest(
    wanted: &[String],
    base_status: &str,
    image: &str,
    found: &FoundImage,
    facts: &[LayerFacts],
) -> Result<Added, DpkgError> {
    let read_err = |e: super::harvest::HarvestError| DpkgError::Read {
        image: image.into(),
        message: e.to_string(),
    };
    let base = parse_status(base_status);
    let records = stream(image, found, facts, &|p: &str| {
        p == STATUS
            || (p.starts_with(INFO)
                && (p.ends_with(".list") || p.ends_with(".md5sums") || p.ends_with(".conffiles")))
    })
    .map_err(read_err)?;
    let text = |p: &str| match records.get(p) {
        Some(Content::File { data, .. }) => Some(String::from_utf8_lossy(data).into_owned()),
        _ => None,
    };
    let source_text = text(STATUS).ok_or_else(|| DpkgError::NoDatabase {
        image: image.into(),
        wanted: wanted.join(", "),
    })?;
    let source = parse_status(&source_text);
    let add = closure(wanted, &base, &source, image)?;
    let mut out = Added::default();
    // each package's records (multi-arch ones are `name:arch.*`)
    let mut lists: Vec<Records<'_>> = vec![];
    for s in &add {
        let stem = [
            format!("{INFO}{}", s.name),
            format!("{INFO}{}:{}", s.name, s.architecture),
        ]
        .into_iter()
        .find(|stem| records.contains_key(&format!("{stem}.list")))
        .ok_or_else(|| DpkgError::NoList {
            package: s.name.clone(),
            image: image.into(),
        })?;
        let mut paths = vec![];
        for l in text(&format!("{stem}.list")).unwrap_or_default().lines() {
            let p = l.trim().trim_start_matches('/');
            if p.is_empty() || p == "." {
                continue;
            }
            if p.split('/').any(|c| c == "..") {
                return Err(DpkgError::UnsafePath {
                    package: s.name.clone(),
                    image: image.into(),
                    path: l.to_string(),
                });
            }
            paths.push(p.to_string());
        }
        let mut sums: Vec<(String, String)> = text(&format!("{stem}.md5sums"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (m, p) = l.split_once(char::is_whitespace)?;
                Some((p.trim().trim_start_matches('/').to_string(), m.to_string()))
            })
            .collect();
        sums.extend(s.conffiles());
        for ext in ["list", "md5sums", "conffiles"] {
            let p = format!("{stem}.{ext}");
            if let Some(c) = records.get(&p) {
                out.files.insert(p, c.clone());
            }
        }
        lists.push((s, stem, paths, sums));
    }
    let wanted_paths: BTreeSet<&str> = lists
        .iter()
        .flat_map(|(_, _, p, _)| p.iter().map(String::as_str))
        .collect();
    let mut got =
        stream(image, found, facts, &|p: &str| wanted_paths.contains(p)).map_err(read_err)?;
    for (s, _, paths, sums) in &lists {
        for (path, expected) in sums {
            let Some(Content::File { data, .. }) = got.get(path) else {
                return Err(DpkgError::Missing {
                    package: s.name.clone(),
                    image: image.into(),
                    path: path.clone(),
                });
            };
            let actual = hex::encode(Md5::digest(data));
            if !actual.eq_ignore_ascii_case(expected) {
                return Err(DpkgError::Md5 {
                    package: s.name.clone(),
                    image: image.into(),
                    path: path.clone(),
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        for p in paths {
            if let Some(c) = got.remove(p) {
                out.files.insert(p.clone(), c);
            }
        }
        out.packages.push((s.name.clone(), s.version.clone()));
    }
    let mut status = base_status.trim_end_matches('\n').to_string();
    for s in &add {
        status.push_str("\n\n");
        status.push_str(&s.text);
    }
    status.push('\n');
    out.files.insert(
        STATUS.to_string(),
        Content::File {
            data: status.into_bytes(),
            mode: 0o644,
        },
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "Package: libc6\nStatus: install ok installed\nVersion: 2.36-9\nArchitecture: amd64\nProvides: libc6-x\n\nPackage: perl-base\nStatus: install ok installed\nVersion: 5.36.0-7\nProvides: perl5\n";
    const SOURCE: &str = "Package: git\nStatus: install ok installed\nVersion: 1:2.39.5-0+deb12u1\nArchitecture: amd64\nDepends: libc6 (>= 2.34), libcurl3-gnutls (>= 7.56.1), perl:any | perl5, git-man (>> 1:2.39.5), liberror-perl\n\nPackage: git-man\nStatus: install ok installed\nVersion: 1:2.39.5-0+deb12u1\n\nPackage: libcurl3-gnutls\nStatus: install ok installed\nVersion: 7.88.1-10\nDepends: libc6\n\nPackage: liberror-perl\nStatus: install ok installed\nVersion: 0.17029-2\nPre-Depends: perl-base\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1\n";

    #[test]
    fn the_closure_takes_what_the_base_lacks_in_dependency_order() {
        let base = parse_status(BASE);
        let src = parse_status(SOURCE);
        assert_eq!(src.len(), 4, "the deinstalled one is not installed");
        let got = closure(&["git".into()], &base, &src, "img").unwrap();
        let names: Vec<&str> = got.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            ["git", "libcurl3-gnutls", "git-man", "liberror-perl"]
        );
        // already in the base: nothing to add
        assert!(
            closure(&["libc6".into()], &base, &src, "img")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_dependency_nobody_has_is_named() {
        let src = parse_status("Package: git\nVersion: 1\nDepends: libpcre2-8-0\n");
        let e = closure(&["git".into()], &[], &src, "img").unwrap_err();
        assert_eq!(
            e.to_string(),
            "git needs libpcre2-8-0, which neither the base nor img has installed"
        );
        let e = closure(&["curl".into()], &[], &src, "img").unwrap_err();
        assert!(e.to_string().starts_with("(the rules) needs curl"), "{e}");
    }

    #[test]
    fn conffiles_are_checked_too_unless_obsolete() {
        let s = parse_status(
            "Package: x\nVersion: 1\nConffiles:\n /etc/x.conf 0123\n /etc/old 4567 obsolete\n",
        );
        assert_eq!(s[0].conffiles(), vec![("etc/x.conf".into(), "0123".into())]);
    }
}
