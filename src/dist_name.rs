//! Distribution names as PEP 503 compares them: runs of `-`, `_` and `.` are one `-`,
//! letters are lower case (`Typing_Extensions` → `typing-extensions`). One function for
//! every stage: the scan names what it found, the rules name what they pin, the flows
//! name what they require, and all of them must meet.

/// The PEP 503 form of `name` (surrounding whitespace dropped).
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_separator = false;
    for c in name.trim().chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_separator {
                out.push('-');
            }
            in_separator = true;
        } else {
            in_separator = false;
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// A `Requires-Dist` or rules requirement that is not PEP 508.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RequirementError(String);

/// A PEP 508 requirement (`numpy>=1.21; python_version >= "3.10"`), parsed by pep508_rs
/// without its panic: 0.9.2 panics ("`PackageName` validation should match PEP 508
/// parsing") on a name ending in `.`, `-` or `_` before more text (`urllib3_ >=1`), which
/// a scanned image's METADATA or a rules file may hold. Refused here first.
pub fn requirement(
    line: &str,
) -> Result<pep508_rs::Requirement<pep508_rs::VerbatimUrl>, RequirementError> {
    let t = line.trim_start();
    let end = t
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
        .unwrap_or(t.len());
    let name = &t[..end];
    if name.ends_with(['.', '-', '_']) {
        return Err(RequirementError(format!(
            "package name {name:?} must end with a letter or digit"
        )));
    }
    line.parse()
        .map_err(|e: pep508_rs::Pep508Error<pep508_rs::VerbatimUrl>| {
            RequirementError(e.to_string())
        })
}

#[cfg(test)]
mod tests {
    use super::{normalize, requirement};

    #[test]
    fn requirements_that_crash_pep508_are_refused_instead() {
        for bad in [
            "urllib3_ >=1",
            "urllib3_;python_version>'3'",
            "a.(1)",
            "x- [e]",
        ] {
            assert!(requirement(bad).is_err(), "{bad}");
        }
        let r = requirement("Typing_Extensions>=4; python_version >= \"3.8\"").unwrap();
        assert_eq!(normalize(r.name.as_ref()), "typing-extensions");
        assert!(requirement("urllib3_").is_err());
    }

    #[test]
    fn agrees_with_pep508_on_valid_names_and_with_pep503_on_any() {
        for name in [
            "Typing_Extensions",
            "zope.interface",
            "A-B__c",
            "prefect",
            "ruamel.yaml.clib",
        ] {
            let pep508 = pep508_rs::PackageName::new(name.to_string())
                .unwrap()
                .to_string();
            assert_eq!(normalize(name), pep508, "{name}");
        }
        // re.sub(r"[-_.]+", "-", name).lower(), as PEP 503 writes it
        assert_eq!(normalize("-Odd..Name_"), "-odd-name-");
        assert_eq!(normalize(" six "), "six");
    }
}
