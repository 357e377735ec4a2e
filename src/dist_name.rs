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

#[cfg(test)]
mod tests {
    use super::normalize;

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
