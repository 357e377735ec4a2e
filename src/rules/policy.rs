//! Version policy: how far a runtime image may move a distribution from the version a
//! flow was built with, as a PEP 440 specifier set (`pep440_rs` semantics).

use std::fmt;
use std::str::FromStr;

use pep440_rs::{Operator, Version, VersionSpecifier, VersionSpecifiers};
use serde::{Serialize, Serializer};

#[derive(Debug, Clone, PartialEq)]
pub enum Policy {
    /// `==V`.
    Exact,
    /// `>=V, ==X.Y.*`.
    Patch,
    /// `>=V, ==X.*` (`>=V, ==0.Y.*` below 1.0, as Cargo reads 0.x).
    Minor,
    /// `~=V` (PEP 440 compatible release).
    Compatible,
    /// A fixed specifier set, the text as written beside it.
    Specifier(String, VersionSpecifiers),
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    #[error(
        "`{0}` is not a version policy: expected \"exact\", \"patch\", \"minor\", \"compatible\" or a PEP 440 specifier such as \">=1.5,<3\" ({1})"
    )]
    Invalid(String, String),
    #[error("`{0}` allows no version at all (its bounds exclude each other)")]
    Empty(String),
    #[error(
        "`{0}` uses `{1}`: allowed sets must be intervals (a hole would let two flows that each fit an image conflict with each other), so use <, <=, >, >=, ==, ==X.* or ~="
    )]
    NotInterval(String, String),
}

impl Policy {
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        match text.trim() {
            "exact" => return Ok(Policy::Exact),
            "patch" => return Ok(Policy::Patch),
            "minor" => return Ok(Policy::Minor),
            "compatible" => return Ok(Policy::Compatible),
            _ => {}
        }
        let specs = VersionSpecifiers::from_str(text).map_err(|e| {
            let first = e.to_string().lines().next().unwrap_or_default().to_string();
            PolicyError::Invalid(text.to_string(), first)
        })?;
        for s in specs.iter() {
            let op = match s.operator() {
                Operator::NotEqual => "!=",
                Operator::NotEqualStar => "!=X.*",
                Operator::ExactEqual => "===",
                _ => continue,
            };
            return Err(PolicyError::NotInterval(text.to_string(), op.to_string()));
        }
        if !satisfiable(&specs) {
            return Err(PolicyError::Empty(text.trim().to_string()));
        }
        Ok(Policy::Specifier(text.trim().to_string(), specs))
    }

    /// The versions a flow built with `v` may run with.
    pub fn allowed(&self, v: &Version) -> VersionSpecifiers {
        // A local build (`2.1.0+cu118`) is a different binary from `2.1.0+cpu`: keep it.
        if v.is_local() && !matches!(self, Policy::Specifier(..)) {
            return exact(v);
        }
        let release = v.release();
        let major = release.first().copied().unwrap_or(0);
        let minor = release.get(1).copied().unwrap_or(0);
        let spec = |op, version: Version| VersionSpecifier::from_version(op, version).ok();
        let at_least = spec(Operator::GreaterThanEqual, v.clone());
        let line = |parts: Vec<u64>| spec(Operator::EqualStar, Version::new(parts));
        let specs: Option<Vec<VersionSpecifier>> = match self {
            Policy::Exact => return exact(v),
            Policy::Patch => [at_least, line(vec![major, minor])].into_iter().collect(),
            Policy::Minor if major == 0 => [at_least, line(vec![0, minor])].into_iter().collect(),
            Policy::Minor => [at_least, line(vec![major])].into_iter().collect(),
            Policy::Compatible if release.len() >= 2 => {
                spec(Operator::TildeEqual, v.clone()).map(|s| vec![s])
            }
            Policy::Compatible => [at_least, line(vec![major])].into_iter().collect(),
            Policy::Specifier(_, s) => return s.clone(),
        };
        specs
            .map(VersionSpecifiers::from_iter)
            .unwrap_or_else(|| exact(v))
    }
}

/// Whether some version meets every specifier of an interval set (no `!=`/`===`). The
/// set is an interval, so if it holds any version it holds its lowest point: `0`, a
/// bound itself, or just above one (the bound with `.0.0.0.0.1` appended, or its `.post`).
fn satisfiable(specs: &VersionSpecifiers) -> bool {
    let mut candidates: Vec<Version> = vec![Version::new([0u64])];
    for s in specs.iter() {
        let v = s.version().clone();
        let mut release = v.release().to_vec();
        release.extend([0, 0, 0, 0, 1]);
        candidates.push(Version::new(release));
        candidates.push(v.clone().with_post(Some(u64::MAX / 2)));
        candidates.push(v);
    }
    candidates.iter().any(|c| specs.contains(c))
}

fn exact(v: &Version) -> VersionSpecifiers {
    VersionSpecifiers::from(VersionSpecifier::equals_version(v.clone()))
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Policy::Exact => f.write_str("exact"),
            Policy::Patch => f.write_str("patch"),
            Policy::Minor => f.write_str("minor"),
            Policy::Compatible => f.write_str("compatible"),
            Policy::Specifier(s, _) => f.write_str(s),
        }
    }
}

impl Serialize for Policy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_specifier_that_allows_nothing_is_refused() {
        for empty in [">=1,<0", ">2,<=2", "==1.*,>=2", "<0"] {
            assert_eq!(
                Policy::parse(empty),
                Err(PolicyError::Empty(empty.to_string())),
                "{empty}"
            );
        }
        for fine in [">1,<1.0.1", ">=1.5,<3", "~=2.1", "==2.*", ">=0", "<1"] {
            assert!(Policy::parse(fine).is_ok(), "{fine}");
        }
    }

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }
    fn allows(p: &str, built: &str, other: &str) -> bool {
        Policy::parse(p)
            .unwrap()
            .allowed(&v(built))
            .contains(&v(other))
    }

    #[test]
    fn named_policies() {
        assert!(allows("exact", "1.4.1", "1.4.1"));
        assert!(!allows("exact", "1.4.1", "1.4.2"));
        assert!(allows("patch", "1.4.1", "1.4.9"));
        assert!(!allows("patch", "1.4.1", "1.4.0"), "never older than built");
        assert!(!allows("patch", "1.4.1", "1.5.0"));
        assert!(allows("minor", "1.4.1", "1.9"));
        assert!(!allows("minor", "1.4.1", "2.0"));
        assert!(allows("minor", "0.4.1", "0.4.7"));
        assert!(
            !allows("minor", "0.4.1", "0.5.0"),
            "0.x minors are breaking"
        );
        assert!(allows("compatible", "1.4.1", "1.4.5"));
        assert!(!allows("compatible", "1.4.1", "1.5"));
        assert!(allows("compatible", "1.4", "1.9"));
        assert!(allows("compatible", "2", "2.5"), "one segment: same major");
    }

    #[test]
    fn pre_releases_and_locals() {
        // PEP 440: `==1.*` matches no pre-release of the next line; `>=` a pre-release of
        // the version it names only when that version is itself a pre-release.
        assert!(!allows("minor", "1.4.1", "2.0rc1"));
        assert!(allows("minor", "2.0rc1", "2.0"));
        assert!(allows("minor", "2.0rc1", "2.0rc2"));
        assert!(allows("exact", "2.1.0+cu118", "2.1.0+cu118"));
        assert!(!allows("minor", "2.1.0+cu118", "2.1.0+cpu"));
        assert!(!allows("minor", "2.1.0+cu118", "2.2.0"));
    }

    #[test]
    fn specifiers() {
        assert!(allows(">=1.5,<3", "1.0", "2.2"));
        assert!(!allows(">=1.5,<3", "2.0", "3.0"));
        assert!(matches!(
            Policy::parse(">=1,!=1.3"),
            Err(PolicyError::NotInterval(..))
        ));
        assert!(matches!(
            Policy::parse("newest"),
            Err(PolicyError::Invalid(..))
        ));
        assert_eq!(Policy::parse(" >=1.5 ").unwrap().to_string(), ">=1.5");
    }
}
