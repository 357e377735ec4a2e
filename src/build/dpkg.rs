//! OS packages a runtime image needs and its base lacks (`git` for a `git_clone` pull
//! step), harvested from a scanned image of the same OS release that has them installed.
//! dpkg's own records say everything: `status` gives each package's `Depends` (the
//! closure is taken, minus what the base has), `info/P.list` the paths it installed and
//! `info/P.md5sums` their MD5, each checked. The new layer carries the files, those
//! records and a `status` that is the base's plus the added stanzas, so `dpkg -l`, `apt`
//! and our own scanner see the packages as installed.

use std::collections::{BTreeMap, BTreeSet, HashMap};

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

    /// `Pre-Depends` and `Depends` as clauses of alternatives, each as written.
    fn depends(&self) -> Vec<String> {
        ["Pre-Depends", "Depends"]
            .iter()
            .filter_map(|f| self.field(f))
            .flat_map(|d| d.split(','))
            .map(|c| c.trim().replace('\n', " "))
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
    let n = n.split('(').next().unwrap_or(n);
    (!n.is_empty()).then(|| n.to_string())
}

/// `(>= 2.34)` of a dependency, as an operator and a version.
fn dep_constraint(s: &str) -> Option<(String, String)> {
    let inner = s.split_once('(')?.1.split_once(')')?.0.trim();
    let op_len = inner
        .find(|c: char| !matches!(c, '<' | '>' | '='))
        .unwrap_or(0);
    let (op, v) = inner.split_at(op_len);
    Some((op.to_string(), v.trim().to_string()))
}

/// Whether `have` meets `op want` in dpkg's version order (unparseable: not met).
fn meets(have: &str, op: &str, want: &str) -> bool {
    let (Ok(h), Ok(w)) = (
        have.parse::<debversion::Version>(),
        want.parse::<debversion::Version>(),
    ) else {
        return false;
    };
    match op {
        ">=" => h >= w,
        "<=" | "<" => h <= w,
        ">>" | ">" => h > w,
        "<<" => h < w,
        "=" => h == w,
        _ => false,
    }
}

/// `lib/…`, `bin/…`, `sbin/…`: paths a merged-/usr image keeps under `usr/`.
fn is_merged_alias(p: &str) -> bool {
    ["bin/", "sbin/", "lib/", "lib32/", "lib64/", "libx32/"]
        .iter()
        .any(|a| p.starts_with(a))
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
    #[error(
        "{package} needs {clause}, but the base has {name} {version}: use a newer base ([image.base] in the rules)"
    )]
    BaseTooOld {
        package: String,
        clause: String,
        name: String,
        version: String,
    },
    #[error(
        "{package} needs {clause}, which neither the base nor {source_image} has installed: scan an image of that release that has it, or use a base that has it ([image.base])"
    )]
    Unresolvable {
        package: String,
        clause: String,
        source_image: String,
    },
    #[error(
        "{package} in {image}: {path} is in its md5sums but missing from the image: scan an image where {package} is installed intact"
    )]
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
    #[error("{package} in {image} has no {INFO}{package}.md5sums: its files cannot be checked")]
    NoSums { package: String, image: String },
    #[error(
        "{package} in {image}: {path} is a file dpkg recorded no md5sum for: it cannot be checked"
    )]
    Unchecked {
        package: String,
        image: String,
        path: String,
    },
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
/// order they were reached. A dependency the base has at too old a version is refused
/// (the base would have to change), never replaced.
pub fn closure<'a>(
    wanted: &[String],
    base: &[Stanza],
    source: &'a [Stanza],
    source_image: &str,
) -> Result<Vec<&'a Stanza>, DpkgError> {
    // name → versions it is there at (a Provides without a version: `None`)
    let mut have: BTreeMap<String, Vec<Option<String>>> = BTreeMap::new();
    let add = |s: &Stanza, have: &mut BTreeMap<String, Vec<Option<String>>>| {
        have.entry(s.name.clone())
            .or_default()
            .push(Some(s.version.clone()));
        if let Some(p) = s.field("Provides") {
            for item in p.split(',') {
                if let Some(n) = dep_name(item) {
                    let v = dep_constraint(item).map(|(_, v)| v);
                    have.entry(n).or_default().push(v);
                }
            }
        }
    };
    let arch = base
        .iter()
        .find(|s| s.name == "libc6" || s.name == "base-files")
        .map(|s| s.architecture.clone())
        .unwrap_or_default();
    for s in base {
        add(s, &mut have);
    }
    let from_base: BTreeSet<String> = have.keys().cloned().collect();
    let satisfied = |have: &BTreeMap<String, Vec<Option<String>>>, alt: &str| {
        let Some(n) = dep_name(alt) else { return false };
        have.get(&n).is_some_and(|vs| match dep_constraint(alt) {
            None => true,
            Some((op, want)) => vs.iter().flatten().any(|v| meets(v, &op, &want)),
        })
    };
    let provider = |alt: &str| -> Option<&'a Stanza> {
        let n = dep_name(alt)?;
        let c = dep_constraint(alt);
        let ok = |s: &&Stanza| c.as_ref().is_none_or(|(op, w)| meets(&s.version, op, w));
        let same_arch = |s: &&Stanza| {
            s.architecture == arch
                || s.architecture == "all"
                || s.architecture.is_empty()
                || arch.is_empty()
        };
        source
            .iter()
            .filter(|s| s.name == n)
            .filter(ok)
            .find(same_arch)
            .or_else(|| {
                source
                    .iter()
                    .find(|s| s.provides().contains(&n) && same_arch(s))
            })
    };
    let mut out: Vec<&Stanza> = vec![];
    let mut todo: Vec<(String, String)> = wanted
        .iter()
        .rev()
        .map(|w| ("(the rules)".to_string(), w.clone()))
        .collect();
    while let Some((by, clause)) = todo.pop() {
        let alts: Vec<&str> = clause.split('|').map(str::trim).collect();
        if alts.iter().any(|a| satisfied(&have, a)) {
            continue;
        }
        // the base has it, too old: changing the base is not ours to do
        if let Some(a) = alts
            .iter()
            .find(|a| dep_name(a).is_some_and(|n| from_base.contains(&n)))
        {
            let n = dep_name(a).unwrap_or_default();
            let at = base
                .iter()
                .find(|s| s.name == n)
                .map(|s| s.version.clone())
                .unwrap_or_default();
            return Err(DpkgError::BaseTooOld {
                package: by,
                clause: clause.clone(),
                name: n,
                version: at,
            });
        }
        let Some(s) = alts.iter().find_map(|a| provider(a)) else {
            return Err(DpkgError::Unresolvable {
                package: by,
                clause,
                source_image: source_image.to_string(),
            });
        };
        add(s, &mut have);
        out.push(s);
        for c in s.depends().into_iter().rev() {
            todo.push((s.name.clone(), c));
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
        let Some(sum_text) = text(&format!("{stem}.md5sums")) else {
            return Err(DpkgError::NoSums {
                package: s.name.clone(),
                image: image.into(),
            });
        };
        let mut sums: Vec<(String, String)> = sum_text
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
    // a merged-/usr image stores `lib/x` (as dpkg lists it) at `usr/lib/x`: ask for both
    let wanted_paths: BTreeSet<String> = lists
        .iter()
        .flat_map(|(_, _, p, _)| p.iter())
        .flat_map(|p| [p.clone(), format!("usr/{p}")])
        .collect();
    let mut got =
        stream(image, found, facts, &|p: &str| wanted_paths.contains(p)).map_err(read_err)?;
    let physical = |p: &str, got: &HashMap<String, Content>| -> String {
        let merged = format!("usr/{p}");
        if !got.contains_key(p) && got.contains_key(&merged) && is_merged_alias(p) {
            merged
        } else {
            p.to_string()
        }
    };
    for (s, _, paths, sums) in &lists {
        // a listed path that is a prefix of another is a directory in dpkg's view (in a
        // merged-/usr image `lib` is a symlink): never written, the base's stays
        let dirs: BTreeSet<&str> = paths
            .iter()
            .filter_map(|p| p.rsplit_once('/').map(|(d, _)| d))
            .flat_map(|d| {
                let mut v = vec![];
                let mut cur = d;
                loop {
                    v.push(cur);
                    match cur.rsplit_once('/') {
                        Some((parent, _)) => cur = parent,
                        None => break,
                    }
                }
                v
            })
            .collect();
        let summed: BTreeSet<&str> = sums.iter().map(|(p, _)| p.as_str()).collect();
        for p in paths {
            if !dirs.contains(p.as_str())
                && !summed.contains(p.as_str())
                && matches!(got.get(&physical(p, &got)), Some(Content::File { .. }))
            {
                return Err(DpkgError::Unchecked {
                    package: s.name.clone(),
                    image: image.into(),
                    path: p.clone(),
                });
            }
        }
        for (path, expected) in sums {
            let Some(Content::File { data, .. }) = got.get(&physical(path, &got)) else {
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
        for p in paths.iter().filter(|p| !dirs.contains(p.as_str())) {
            let at = physical(p, &got);
            if let Some(c) = got.remove(&at) {
                out.files.insert(at, c);
            }
        }
        out.packages.push((s.name.clone(), s.version.clone()));
    }
    // the base's status as written, less any stanza of a package added here (one left
    // in `config-files` state, say), then the added stanzas
    let added: BTreeSet<&str> = add.iter().map(|s| s.name.as_str()).collect();
    let mut status = String::new();
    for block in base_status.split("\n\n") {
        let block = block.trim_matches('\n');
        if block.is_empty() {
            continue;
        }
        let name = block
            .lines()
            .find_map(|l| l.strip_prefix("Package:"))
            .map(str::trim);
        if name.is_some_and(|n| added.contains(n)) {
            continue;
        }
        if !status.is_empty() {
            status.push_str("\n\n");
        }
        status.push_str(block);
    }
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
    fn a_base_too_old_for_a_dependency_is_refused_not_replaced() {
        let base = parse_status("Package: libc6\nVersion: 2.31-13\nArchitecture: amd64\n");
        let src = parse_status(
            "Package: git\nVersion: 1\nArchitecture: amd64\nDepends: libc6 (>= 2.34)\n\nPackage: libc6\nVersion: 2.36-9\nArchitecture: amd64\n",
        );
        let e = closure(&["git".into()], &base, &src, "img").unwrap_err();
        assert_eq!(
            e.to_string(),
            "git needs libc6 (>= 2.34), but the base has libc6 2.31-13: use a newer base ([image.base] in the rules)"
        );
        assert!(meets("1:2.39.5-0+deb12u1", ">>", "1:2.39.5"));
        assert!(meets("1:2.39.5-0+deb12u1", "<<", "1:2.39.5-."));
        assert!(!meets("2.31-13", ">=", "2.34"));
    }

    #[test]
    fn the_architecture_of_the_base_is_preferred() {
        let base = parse_status("Package: libc6\nVersion: 2.36-9\nArchitecture: amd64\n");
        let src = parse_status(
            "Package: libfoo\nVersion: 1\nArchitecture: i386\n\nPackage: libfoo\nVersion: 1\nArchitecture: amd64\n",
        );
        let got = closure(&["libfoo".into()], &base, &src, "img").unwrap();
        assert_eq!(got[0].architecture, "amd64");
    }

    #[test]
    fn a_dependency_nobody_has_is_named() {
        let src = parse_status("Package: git\nVersion: 1\nDepends: libpcre2-8-0\n");
        let e = closure(&["git".into()], &[], &src, "img").unwrap_err();
        assert!(
            e.to_string().starts_with(
                "git needs libpcre2-8-0, which neither the base nor img has installed"
            ),
            "{e}"
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
