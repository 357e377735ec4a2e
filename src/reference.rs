//! Image references, read one way everywhere.
//!
//! Two readings of the same grammar (distribution/reference, as docker, crane and
//! oci-client read it):
//! - [`ImageRef`] *normalises*: Docker Hub's implicit `docker.io` and `library/` made
//!   explicit, `latest` when no tag or digest is given. Links between flows and images
//!   compare these, so `flow-a` and `docker.io/library/flow-a:latest` meet.
//! - [`Parts`] only *splits* the text as written (name, tag, digest), for display: a
//!   report shows `flow-a`, not a name the user never typed.
//!
//! [`RegistryTarget`] reads the `scan registry` argument (`HOST[:PORT][/REPO[:TAG|@DIGEST]]`,
//! with an optional `http://` or `https://`), refusing with a hint what docker users
//! commonly type by habit.

use std::fmt;

use oci_client::{ParseError, Reference};

/// A reference that could not be read, naming the text and what would fix it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    #[error(
        "{reference:?} is not an image reference: {reason}{}",
        hint_for(reason)
    )]
    Invalid {
        reference: String,
        reason: ParseError,
    },
    #[error(
        "the registry argument for {host} carries credentials (USER:PASSWORD@HOST): pass --username USER and the password on standard input with --password-stdin"
    )]
    Credentials { host: String },
    #[error(
        "{target} is not a registry host (HOST[:PORT]) or an image of one (HOST[:PORT]/REPO:TAG): for a Docker Hub image name its registry, e.g. index.docker.io/{}",
        docker_hub_form(target)
    )]
    NotAHost { target: String },
}

fn hint_for(reason: &ParseError) -> &'static str {
    match reason {
        ParseError::NameContainsUppercase => " (repository names are lowercase)",
        ParseError::DigestInvalidLength | ParseError::DigestInvalidFormat => {
            " (a digest is sha256: and 64 hex digits)"
        }
        _ => "",
    }
}

fn docker_hub_form(target: &str) -> String {
    if target.contains('/') {
        target.to_string()
    } else {
        format!("library/{target}")
    }
}

/// A normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef(Reference);

impl ImageRef {
    pub fn parse(text: &str) -> Result<ImageRef, ReferenceError> {
        text.parse::<Reference>().map(ImageRef).map_err(|reason| {
            // the grammar refuses capitals without saying so; say it (the host may have them)
            let parts = Parts::of(text);
            let path = parts.name.split_once('/').map_or("", |(_, p)| p);
            let reason = match reason {
                ParseError::ReferenceInvalidFormat
                    if path.bytes().any(|b| b.is_ascii_uppercase()) =>
                {
                    ParseError::NameContainsUppercase
                }
                ParseError::ReferenceInvalidFormat
                    if parts.digest.is_some_and(|d| !is_digest(d)) =>
                {
                    ParseError::DigestInvalidFormat
                }
                r => r,
            };
            ReferenceError::Invalid {
                reference: text.to_string(),
                reason,
            }
        })
    }

    /// The oci-client form, for pulls and pushes.
    pub fn into_oci(self) -> Reference {
        self.0
    }

    /// `docker.io` for Docker Hub (`index.docker.io` is read as `docker.io`).
    pub fn registry(&self) -> &str {
        self.0.registry()
    }

    /// `library/python`, `team/flow-a`.
    pub fn repository(&self) -> &str {
        self.0.repository()
    }

    pub fn tag(&self) -> Option<&str> {
        self.0.tag()
    }

    pub fn digest(&self) -> Option<&str> {
        self.0.digest()
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry(), self.repository())
    }

    /// The digest when there is one (it names the content), otherwise the tag.
    pub fn tag_or_digest(&self) -> &str {
        self.digest().or(self.tag()).unwrap_or("latest")
    }

    /// `registry/repository@digest` or `registry/repository:tag`: equal for references
    /// that name the same thing.
    pub fn canonical(&self) -> String {
        match self.digest() {
            Some(d) => format!("{}@{d}", self.name()),
            None => format!("{}:{}", self.name(), self.tag_or_digest()),
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical())
    }
}

/// The canonical form of `text`, or `text` itself when it is not a valid reference
/// (a registration may name an image by something no registry could serve; it then
/// links to nothing rather than failing the scan).
pub fn canonical(text: &str) -> String {
    ImageRef::parse(text)
        .map(|r| r.canonical())
        .unwrap_or_else(|_| text.to_string())
}

/// A reference split as written, nothing added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parts<'a> {
    /// Everything before the tag or digest: `host:5000/team/app`.
    pub name: &'a str,
    pub tag: Option<&'a str>,
    pub digest: Option<&'a str>,
}

impl<'a> Parts<'a> {
    /// A tag is the text after the last `:` that follows the last `/` (so a port is
    /// never read as a tag); a digest follows `@`.
    pub fn of(text: &'a str) -> Parts<'a> {
        let (rest, digest) = match text.split_once('@') {
            Some((n, d)) => (n, Some(d)),
            None => (text, None),
        };
        let slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        match rest[slash..].rfind(':') {
            Some(i) => Parts {
                name: &rest[..slash + i],
                tag: Some(&rest[slash + i + 1..]),
                digest,
            },
            None => Parts {
                name: rest,
                tag: None,
                digest,
            },
        }
    }
}

/// `sha256:` and 64 hex digits (or the other algorithms' lengths), as a digest is written.
fn is_digest(d: &str) -> bool {
    match d.split_once(':') {
        Some(("sha256", h)) => h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()),
        Some(("sha384", h)) => h.len() == 96 && h.bytes().all(|b| b.is_ascii_hexdigit()),
        Some(("sha512", h)) => h.len() == 128 && h.bytes().all(|b| b.is_ascii_hexdigit()),
        _ => false,
    }
}

/// Whether the text after an `@` is written like a digest: `algorithm:` and at least 32
/// hex digits (the grammar's form), or a known algorithm with hex of the wrong length.
fn looks_like_digest(after: &str) -> bool {
    after.split_once(':').is_some_and(|(algo, hex)| {
        let known = matches!(algo, "sha256" | "sha384" | "sha512");
        !algo.is_empty()
            && algo.bytes().all(|b| b.is_ascii_alphanumeric())
            && (hex.len() >= 32 || (known && !hex.is_empty()))
            && hex.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// What one `scan registry` argument names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryTarget {
    /// `host[:port]` as written: where to connect.
    pub host: String,
    /// `Some(true)` for `http://…`, `Some(false)` for `https://…`, `None` when no scheme
    /// was written (the `--plain-http` flag decides).
    pub plain_http: Option<bool>,
    /// One image in that registry: `(repository, tag or digest)`.
    pub image: Option<(String, String)>,
}

impl RegistryTarget {
    pub fn parse(arg: &str) -> Result<RegistryTarget, ReferenceError> {
        // `http://host` as crane and curl users write it
        let (rest, plain_http) = match (arg.strip_prefix("http://"), arg.strip_prefix("https://")) {
            (Some(rest), _) => (rest, Some(true)),
            (_, Some(rest)) => (rest, Some(false)),
            _ => (arg, None),
        };
        let t = rest.trim_end_matches('/');
        // `user:password@host` would carry a secret into logs and documents: refuse it,
        // naming only the host. A password may hold `/`, so any `@` that does not start a
        // digest is taken for credentials, before anything echoes the argument.
        if let Some(at) = t.find('@').filter(|&i| !looks_like_digest(&t[i + 1..])) {
            let after = &t[at + 1..];
            let host = after.split('/').next().unwrap_or(after);
            return Err(ReferenceError::Credentials {
                host: host.to_string(),
            });
        }
        let (host, image) = match t.split_once('/') {
            Some((h, r)) => (h, Some(r)),
            None => (t, None),
        };
        // `python:3.11-slim` is an image of Docker Hub, not a registry host
        let (name, port) = host.split_once(':').unwrap_or((host, ""));
        let is_host = name == "localhost"
            || name.contains('.')
            || (!port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()));
        if !is_host {
            return Err(ReferenceError::NotAHost {
                target: t.to_string(),
            });
        }
        let image = match image {
            None => None,
            Some(_) => {
                let r = ImageRef::parse(t)?;
                Some((r.repository().to_string(), r.tag_or_digest().to_string()))
            }
        };
        Ok(RegistryTarget {
            host: host.to_string(),
            plain_http,
            image,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn references_meet_in_canonical_form() {
        assert_eq!(canonical("flow-a"), "docker.io/library/flow-a:latest");
        assert_eq!(canonical("team/flow-a:1"), "docker.io/team/flow-a:1");
        assert_eq!(
            canonical("registry.local:5000/team/flow-a:2023-01-01"),
            "registry.local:5000/team/flow-a:2023-01-01"
        );
        assert_eq!(canonical("localhost/x"), "localhost/x:latest");
        assert_eq!(
            canonical("index.docker.io/library/x:1"),
            "docker.io/library/x:1"
        );
        assert_eq!(canonical(&format!("h.io/x:1@{D}")), format!("h.io/x@{D}"));
        // not a reference: kept as written, so it links to nothing
        assert_eq!(canonical("Team/App"), "Team/App");
    }

    #[test]
    fn parts_never_read_a_port_as_a_tag() {
        let p = Parts::of("localhost:5000/x");
        assert_eq!((p.name, p.tag, p.digest), ("localhost:5000/x", None, None));
        let p = Parts::of("h:1/team/a:2@sha256:ab");
        assert_eq!(
            (p.name, p.tag, p.digest),
            ("h:1/team/a", Some("2"), Some("sha256:ab"))
        );
        assert_eq!(Parts::of("app").name, "app");
    }

    #[test]
    fn registry_targets_read_the_way_crane_reads_them() {
        let t = RegistryTarget::parse("http://127.0.0.1:5055/").unwrap();
        assert_eq!(
            (t.host.as_str(), t.plain_http, t.image),
            ("127.0.0.1:5055", Some(true), None)
        );
        let t = RegistryTarget::parse("registry.local/team/app").unwrap();
        assert_eq!(t.image, Some(("team/app".into(), "latest".into())));
        let t = RegistryTarget::parse(&format!("localhost:5000/app:1@{D}")).unwrap();
        assert_eq!(t.image, Some(("app".into(), D.into())));
        // Docker Hub's official images live under library/
        let t = RegistryTarget::parse("index.docker.io/python:3.11").unwrap();
        assert_eq!(t.image, Some(("library/python".into(), "3.11".into())));
    }

    #[test]
    fn registry_targets_refuse_with_the_fix() {
        let e = RegistryTarget::parse("python:3.11-slim")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("index.docker.io/library/python:3.11-slim"),
            "{e}"
        );
        for arg in [
            "u:hunter2@h.io/x",
            "ci:s3cr/et@registry.example.com/team/app",
            "u:12/34@h.io",
            "u:pw@localhost:5000",
        ] {
            let e = RegistryTarget::parse(arg).unwrap_err().to_string();
            assert!(e.contains("--password-stdin"), "{arg}: {e}");
            assert!(
                !["hunter2", "s3cr", "12/34", "pw@"]
                    .iter()
                    .any(|p| e.contains(p)),
                "{e}"
            );
        }
        let e = RegistryTarget::parse(&format!("h.io/Team/App@{D}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("lowercase") && !e.contains("64 hex"), "{e}");
        let e = RegistryTarget::parse("h.io/Team/App:1")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\"h.io/Team/App:1\"") && e.contains("lowercase"),
            "{e}"
        );
        let e = RegistryTarget::parse("h.io/x@sha256:ab")
            .unwrap_err()
            .to_string();
        assert!(e.contains("64 hex digits"), "{e}");
    }
}
