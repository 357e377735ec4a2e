//! System package databases: dpkg `status` (and distroless `status.d/`), apk `installed`.

use crate::inventory::SystemPackage;

/// Split an RFC 822-like control file into stanzas of `(field, value)` pairs, joining
/// continuation lines (those starting with white space) onto the previous field.
fn stanzas(text: &str) -> Vec<Vec<(&str, String)>> {
    let mut out = Vec::new();
    let mut cur: Vec<(&str, String)> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(last) = cur.last_mut() {
                last.1.push('\n');
                last.1.push_str(line.trim());
            }
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            cur.push((k.trim(), v.trim().to_string()));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn field<'a>(st: &'a [(&str, String)], name: &str) -> Option<&'a str> {
    st.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Installed packages of a dpkg `status` file. Stanzas without a `Status` field (the
/// distroless `status.d/` files) count as installed; others must say `installed`.
pub fn parse_dpkg(text: &str) -> Vec<SystemPackage> {
    let mut out: Vec<SystemPackage> = stanzas(text)
        .iter()
        .filter(|st| match field(st, "Status") {
            None => true,
            Some(s) => s.split_whitespace().last() == Some("installed"),
        })
        .filter_map(|st| {
            let name = field(st, "Package")?.to_string();
            let version = field(st, "Version")?.to_string();
            // `Source: foo (1.2-3)` names the source package and, sometimes, its version
            let source = field(st, "Source")
                .and_then(|s| s.split_whitespace().next())
                .filter(|s| *s != name)
                .map(str::to_string);
            Some(SystemPackage {
                name,
                version,
                architecture: field(st, "Architecture").map(str::to_string),
                source,
                installed_bytes: field(st, "Installed-Size")
                    .and_then(|s| s.parse::<u64>().ok())
                    .map(|kib| kib * 1024),
            })
        })
        .collect();
    out.sort();
    out
}

/// Packages of an apk `lib/apk/db/installed` database (`P:` name, `V:` version, …).
pub fn parse_apk(text: &str) -> Vec<SystemPackage> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let (mut name, mut version, mut arch, mut origin, mut size) =
            (None, None, None, None, None);
        for line in block.lines() {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            match k {
                "P" => name = Some(v.to_string()),
                "V" => version = Some(v.to_string()),
                "A" => arch = Some(v.to_string()),
                "o" => origin = Some(v.to_string()),
                "I" => size = v.parse::<u64>().ok(),
                _ => {}
            }
        }
        if let (Some(name), Some(version)) = (name, version) {
            let source = origin.filter(|o| *o != name);
            out.push(SystemPackage {
                name,
                version,
                architecture: arch,
                source,
                installed_bytes: size,
            });
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpkg_keeps_only_installed_and_reads_fields() {
        let text = "Package: libc6\nStatus: install ok installed\nVersion: 2.36-9\nArchitecture: amd64\nSource: glibc\nInstalled-Size: 10\nDescription: x\n more\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1\n\nPackage: bash\nStatus: install ok installed\nVersion: 5.2-1\n";
        let p = parse_dpkg(text);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].name, "bash");
        assert_eq!(p[1].source.as_deref(), Some("glibc"));
        assert_eq!(p[1].installed_bytes, Some(10240));
    }

    #[test]
    fn distroless_status_d_has_no_status_field() {
        let p = parse_dpkg("Package: tzdata\nVersion: 2024a-0+deb12u1\nArchitecture: all\n");
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn apk_records() {
        let text = "C:Q1abc\nP:musl\nV:1.2.4-r2\nA:x86_64\nI:638976\no:musl\n\nP:busybox\nV:1.36.1-r5\no:busybox-src\n\n";
        let p = parse_apk(text);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].name, "busybox");
        assert_eq!(p[0].source.as_deref(), Some("busybox-src"));
        assert_eq!(p[1].source, None);
        assert_eq!(p[1].installed_bytes, Some(638976));
    }
}
