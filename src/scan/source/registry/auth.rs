//! Credentials for a registry and the challenges it answers with.
//!
//! Credentials come from `--username` + `--password-stdin`, else from a podman/skopeo auth
//! file (`--authfile` or `$REGISTRY_AUTH_FILE`, containers-auth.json(5): `auths` by host),
//! else from the Docker client's config (`~/.docker/config.json` or `$DOCKER_CONFIG`:
//! `auths`, `credsStore`, `credHelpers`, read by the `docker_credential` crate). They are
//! kept in memory only and never printed: `Debug` shows the username alone.

use base64::Engine;

#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, ****)", self.username)
    }
}

impl Credentials {
    pub fn new(username: String, password: String) -> Self {
        Credentials { username, password }
    }

    pub fn password(&self) -> &str {
        &self.password
    }

    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }

    /// What podman or skopeo would use for `host`: the auth file's entry for it (`host`,
    /// `https://host` or `http://host`), else the Docker config's.
    pub fn lookup(host: &str, auth_file: Option<&std::path::Path>) -> Result<Option<Self>, String> {
        if let Some(path) = auth_file
            && let Some(c) = Self::from_auth_file(path, host)?
        {
            return Ok(Some(c));
        }
        Self::from_docker_config(host)
    }

    /// The entry for `host` in a containers-auth.json file. Errors name the file and the
    /// host, never what the entry holds.
    pub fn from_auth_file(path: &std::path::Path, host: &str) -> Result<Option<Self>, String> {
        #[derive(serde::Deserialize)]
        struct File {
            #[serde(default)]
            auths: std::collections::BTreeMap<String, Entry>,
        }
        #[derive(serde::Deserialize)]
        struct Entry {
            #[serde(default)]
            auth: Option<String>,
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the auth file {}: {e}", path.display()))?;
        let file: File = serde_json::from_str(&text).map_err(|e| {
            format!(
                "the auth file {} is not a containers-auth.json document (line {})",
                path.display(),
                e.line()
            )
        })?;
        let entry = [
            host.to_string(),
            format!("https://{host}"),
            format!("http://{host}"),
        ]
        .iter()
        .find_map(|k| {
            file.auths
                .get(k.as_str())
                .or_else(|| file.auths.get(&format!("{k}/")))
        });
        let Some(auth) = entry.and_then(|e| e.auth.as_deref()) else {
            return Ok(None);
        };
        let bad = || {
            format!(
                "the auth file {} has an entry for {host} that is not base64 of USER:PASSWORD",
                path.display()
            )
        };
        let raw = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| bad())?;
        let raw = String::from_utf8(raw).map_err(|_| bad())?;
        let (user, password) = raw.split_once(':').ok_or_else(bad)?;
        Ok(Some(Credentials::new(
            user.to_string(),
            password.to_string(),
        )))
    }

    /// What the Docker client would use for `host`, if anything.
    pub fn from_docker_config(host: &str) -> Result<Option<Self>, String> {
        // Docker Hub's credentials are filed under its index URL
        let key = if matches!(
            host,
            "docker.io" | "registry-1.docker.io" | "index.docker.io"
        ) {
            "https://index.docker.io/v1/"
        } else {
            host
        };
        match docker_credential::get_credential(key) {
            Ok(docker_credential::DockerCredential::UsernamePassword(u, p)) => {
                Ok(Some(Credentials::new(u, p)))
            }
            Ok(docker_credential::DockerCredential::IdentityToken(_)) => Err(format!(
                "the Docker config holds an identity token for {host}, which unsprawl cannot use yet; \
                 pass --username and --password-stdin"
            )),
            Err(docker_credential::CredentialRetrievalError::NoCredentialConfigured)
            | Err(docker_credential::CredentialRetrievalError::ConfigNotFound)
            | Err(docker_credential::CredentialRetrievalError::ConfigReadError) => Ok(None),
            Err(e) => Err(format!("cannot read Docker credentials for {host}: {e}")),
        }
    }
}

/// A parsed `WWW-Authenticate` header.
#[derive(Debug, PartialEq)]
pub enum Challenge {
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
    Basic,
}

impl Challenge {
    pub fn parse(header: &str) -> Option<Self> {
        let (scheme, params) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return Some(Challenge::Basic);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let mut realm = None;
        let mut service = None;
        let mut scope = None;
        for (k, v) in split_params(params) {
            match k.to_ascii_lowercase().as_str() {
                "realm" => realm = Some(v),
                "service" => service = Some(v),
                "scope" => scope = Some(v),
                _ => {}
            }
        }
        Some(Challenge::Bearer {
            realm: realm?,
            service,
            scope,
        })
    }
}

/// `k="v",k2="v,2",k3=v3` with commas allowed inside quotes.
fn split_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq].trim().trim_start_matches(',').trim().to_string();
        rest = &rest[eq + 1..];
        let value;
        if let Some(r) = rest.strip_prefix('"') {
            let end = r.find('"').unwrap_or(r.len());
            value = r[..end].to_string();
            rest = r.get(end + 1..).unwrap_or("");
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_string();
            rest = &rest[end..];
        }
        rest = rest.trim_start_matches([',', ' ']);
        out.push((key, value));
    }
    out
}

#[cfg(test)]
mod tests {

    #[test]
    fn an_auth_file_entry_is_found_by_host_and_never_shown_in_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("auth.json");
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        std::fs::write(
            &p,
            format!(
                r#"{{"auths": {{"reg.example:5000": {{"auth": "{}"}}, "https://other.example": {{"auth": "{}"}}, "bad.example": {{"auth": "s3cret-not-b64!"}}}}}}"#,
                b64("ci:hunter2"),
                b64("bot:tok")
            ),
        )
        .unwrap();
        let c = Credentials::from_auth_file(&p, "reg.example:5000")
            .unwrap()
            .unwrap();
        assert_eq!((c.username.as_str(), c.password()), ("ci", "hunter2"));
        let c = Credentials::from_auth_file(&p, "other.example")
            .unwrap()
            .unwrap();
        assert_eq!(c.username, "bot");
        assert!(
            Credentials::from_auth_file(&p, "nowhere.example")
                .unwrap()
                .is_none()
        );
        let e = Credentials::from_auth_file(&p, "bad.example").unwrap_err();
        assert!(e.contains("bad.example") && !e.contains("s3cret"), "{e}");
        std::fs::write(&p, "{not json s3cret").unwrap();
        let e = Credentials::from_auth_file(&p, "reg.example:5000").unwrap_err();
        assert!(e.contains("auth.json") && !e.contains("s3cret"), "{e}");
    }

    use super::*;

    #[test]
    fn parses_challenges() {
        assert_eq!(
            Challenge::parse(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/ubuntu:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/ubuntu:pull,push".into()),
            })
        );
        assert_eq!(
            Challenge::parse(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(Challenge::parse("Negotiate x"), None);
    }

    #[test]
    fn debug_hides_the_password() {
        let c = Credentials::new("bot".into(), "s3cret".into());
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
