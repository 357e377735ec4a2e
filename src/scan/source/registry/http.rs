//! The requests `oci-client` cannot make for us: catalog and tag listing that follow
//! `Link` headers, `HEAD` of manifests with the rate-limit headers, the bearer token flow
//! for any scope (`registry:catalog:*` included), and retries that honour `Retry-After`.
//!
//! Credentials are sent only to the registry host and to the token realm it names;
//! reqwest drops `Authorization` on redirects to other hosts. Nothing here logs a secret.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use tokio::sync::{Mutex, Semaphore};
use url::Url;

use super::auth::{Challenge, Credentials};

/// The four manifest types a scanner must accept (distribution 2.8 answers 404 for an OCI
/// manifest when the Accept header does not list the OCI type).
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.v1+prettyjws";

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot reach {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error("{host} refused the credentials{detail}")]
    Unauthorized { host: String, detail: String },
    #[error(
        "{host} asks for credentials and none were given (use --username/--password-stdin or docker login)"
    )]
    NeedsCredentials { host: String },
    #[error("{url}: HTTP {status}{detail}")]
    Status {
        url: String,
        status: u16,
        detail: String,
    },
    #[error("{url}: gave up after {tries} tries (last: HTTP {status})")]
    GaveUp {
        url: String,
        tries: u32,
        status: u16,
    },
    #[error("{url}: refusing to follow a pagination link to another host ({link})")]
    ForeignLink { url: String, link: String },
}

/// Retry policy for 429 and 5xx: honour `Retry-After`, else back off exponentially.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_tries: u32,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_tries: 6,
            first_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// What the registry said about its rate limit, last time it said anything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RateLimit {
    pub limit: Option<String>,
    pub remaining: Option<String>,
}

pub struct Http {
    client: reqwest::Client,
    pub base: Url,
    host: String,
    credentials: Option<Credentials>,
    tokens: Mutex<HashMap<String, String>>,
    /// Bounded concurrency per host (regclient uses 3; the default here is 4).
    permits: Semaphore,
    retry: RetryPolicy,
    pub rate_limit: std::sync::Mutex<RateLimit>,
    /// Requests sent, by method: the warm-scan test counts them.
    pub sent: std::sync::Mutex<HashMap<String, u64>>,
}

pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
    pub url: Url,
}

impl Http {
    pub fn new(
        base: Url,
        credentials: Option<Credentials>,
        concurrency: usize,
        retry: RetryPolicy,
        insecure: bool,
    ) -> Result<Self, HttpError> {
        let client = reqwest::Client::builder()
            .tls_danger_accept_invalid_certs(insecure)
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .user_agent(concat!("unsprawl/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| HttpError::Unreachable {
                url: base.to_string(),
                message: e.to_string(),
            })?;
        let host = base.host_str().unwrap_or_default().to_string()
            + &base.port().map(|p| format!(":{p}")).unwrap_or_default();
        Ok(Http {
            client,
            base,
            host,
            credentials,
            tokens: Mutex::new(HashMap::new()),
            permits: Semaphore::new(concurrency.max(1)),
            retry,
            rate_limit: Default::default(),
            sent: Default::default(),
        })
    }

    fn count(&self, method: &Method) {
        *self
            .sent
            .lock()
            .expect("counter lock")
            .entry(method.to_string())
            .or_default() += 1;
    }

    fn note_rate_limit(&self, headers: &HeaderMap) {
        let get = |k: &str| {
            headers
                .get(k)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        if let Some(limit) = get("ratelimit-limit") {
            *self.rate_limit.lock().expect("rate limit lock") = RateLimit {
                limit: Some(limit),
                remaining: get("ratelimit-remaining"),
            };
        }
    }

    /// A request with auth and retries. `scope` is the token scope it needs.
    pub async fn request(
        &self,
        method: Method,
        url: Url,
        scope: &str,
        accept: Option<&str>,
    ) -> Result<Response, HttpError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .expect("semaphore never closes");
        let mut authorized_once = false;
        let mut tries = 0;
        loop {
            tries += 1;
            let mut req = self.client.request(method.clone(), url.clone());
            if let Some(a) = accept {
                req = req.header(reqwest::header::ACCEPT, a);
            }
            if let Some(h) = self.auth_header(scope).await {
                req = req.header(reqwest::header::AUTHORIZATION, h);
            }
            self.count(&method);
            let res = req.send().await.map_err(|e| HttpError::Unreachable {
                url: url.to_string(),
                message: without_url(&e),
            })?;
            let status = res.status();
            let headers = res.headers().clone();
            self.note_rate_limit(&headers);
            if status == StatusCode::UNAUTHORIZED {
                if authorized_once {
                    let body = res.text().await.unwrap_or_default();
                    return Err(HttpError::Unauthorized {
                        host: self.host.clone(),
                        detail: short_detail(&body),
                    });
                }
                authorized_once = true;
                self.authorize(&headers, scope).await?;
                continue;
            }
            if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                if tries >= self.retry.max_tries {
                    return Err(HttpError::GaveUp {
                        url: url.to_string(),
                        tries,
                        status: status.as_u16(),
                    });
                }
                let wait = retry_after(&headers).unwrap_or_else(|| {
                    let exp = self.retry.first_backoff * 2u32.saturating_pow(tries - 1);
                    exp.min(self.retry.max_backoff)
                });
                tokio::time::sleep(wait.min(self.retry.max_backoff)).await;
                continue;
            }
            let final_url = res.url().clone();
            let body = res.bytes().await.map_err(|e| HttpError::Unreachable {
                url: url.to_string(),
                message: without_url(&e),
            })?;
            return Ok(Response {
                status,
                headers,
                body,
                url: final_url,
            });
        }
    }

    async fn auth_header(&self, scope: &str) -> Option<String> {
        let tokens = self.tokens.lock().await;
        // a bearer token is per scope; basic credentials (key "*") serve every scope
        tokens.get(scope).or_else(|| tokens.get("*")).cloned()
    }

    /// Answer a 401: fetch a bearer token for `scope`, or use basic credentials.
    async fn authorize(&self, headers: &HeaderMap, scope: &str) -> Result<(), HttpError> {
        let challenge = headers
            .get_all(reqwest::header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(Challenge::parse);
        let (key, header) = match challenge {
            Some(Challenge::Bearer {
                realm,
                service,
                scope: asked,
            }) => {
                let scope_to_ask = asked.unwrap_or_else(|| scope.to_string());
                let token = self
                    .fetch_token(&realm, service.as_deref(), &scope_to_ask)
                    .await?;
                (scope.to_string(), format!("Bearer {token}"))
            }
            Some(Challenge::Basic) | None => match &self.credentials {
                Some(c) => ("*".to_string(), c.basic_header()),
                None => {
                    return Err(HttpError::NeedsCredentials {
                        host: self.host.clone(),
                    });
                }
            },
        };
        self.tokens.lock().await.insert(key, header);
        Ok(())
    }

    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<String, HttpError> {
        let mut url = Url::parse(realm).map_err(|e| HttpError::Unreachable {
            url: realm.to_string(),
            message: format!("the token realm is not a URL: {e}"),
        })?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            if !scope.is_empty() {
                q.append_pair("scope", scope);
            }
        }
        let mut req = self.client.get(url.clone());
        if let Some(c) = &self.credentials {
            req = req.header(reqwest::header::AUTHORIZATION, c.basic_header());
        }
        self.count(&Method::GET);
        let res = req.send().await.map_err(|e| HttpError::Unreachable {
            url: url.to_string(),
            message: without_url(&e),
        })?;
        if res.status() == StatusCode::UNAUTHORIZED || res.status() == StatusCode::FORBIDDEN {
            return Err(HttpError::Unauthorized {
                host: self.host.clone(),
                detail: " (the token service said no)".into(),
            });
        }
        if !res.status().is_success() {
            return Err(HttpError::Status {
                url: realm.to_string(),
                status: res.status().as_u16(),
                detail: " from the token service".into(),
            });
        }
        #[derive(serde::Deserialize)]
        struct Token {
            token: Option<String>,
            access_token: Option<String>,
        }
        let t: Token = res.json().await.map_err(|e| HttpError::Status {
            url: realm.to_string(),
            status: 200,
            detail: format!(": the token response is not JSON ({})", without_url(&e)),
        })?;
        t.token.or(t.access_token).ok_or_else(|| HttpError::Status {
            url: realm.to_string(),
            status: 200,
            detail: ": the token response has no token".into(),
        })
    }

    /// GET a listing and follow its `Link: <…>; rel="next"` pages (relative links are
    /// resolved against the request; links to another host are refused).
    pub async fn paged<T, F>(
        &self,
        first: Url,
        scope: &str,
        mut take: F,
    ) -> Result<Vec<T>, HttpError>
    where
        F: FnMut(&[u8]) -> Result<Vec<T>, String>,
    {
        let mut out = Vec::new();
        let mut next = Some(first);
        let mut pages = 0;
        while let Some(url) = next.take() {
            pages += 1;
            if pages > 100_000 {
                break; // a registry that links in a circle
            }
            let res = self.request(Method::GET, url.clone(), scope, None).await?;
            if !res.status.is_success() {
                return Err(HttpError::Status {
                    url: url.to_string(),
                    status: res.status.as_u16(),
                    detail: short_detail(&String::from_utf8_lossy(&res.body)),
                });
            }
            let items = take(&res.body).map_err(|e| HttpError::Status {
                url: url.to_string(),
                status: res.status.as_u16(),
                detail: format!(": {e}"),
            })?;
            out.extend(items);
            if let Some(link) = next_link(&res.headers) {
                let resolved = res.url.join(&link).map_err(|_| HttpError::ForeignLink {
                    url: url.to_string(),
                    link: link.clone(),
                })?;
                if resolved.host_str() != url.host_str()
                    || resolved.port_or_known_default() != url.port_or_known_default()
                {
                    return Err(HttpError::ForeignLink {
                        url: url.to_string(),
                        link,
                    });
                }
                next = Some(resolved);
            }
        }
        Ok(out)
    }
}

/// The target of `Link: <url>; rel="next"`.
pub fn next_link(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(reqwest::header::LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find(|part| part.contains("rel=\"next\"") || part.contains("rel=next"))
        .and_then(|part| {
            let start = part.find('<')? + 1;
            let end = part.find('>')?;
            (start <= end).then(|| part[start..end].to_string())
        })
}

/// `Retry-After` in seconds (HTTP dates are rare from registries; treated as absent).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v: &HeaderValue| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// A reqwest error's reason without the URL it prints (the caller names the URL once).
pub fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "the response broke off"
    } else {
        "request failed"
    };
    let mut msg = kind.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

fn short_detail(body: &str) -> String {
    let b = body.trim();
    if b.is_empty() {
        String::new()
    } else {
        format!(": {}", b.chars().take(200).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_link_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            reqwest::header::LINK,
            HeaderValue::from_static("</v2/_catalog?last=team-a%2Fworker&n=2>; rel=\"next\""),
        );
        assert_eq!(
            next_link(&h).as_deref(),
            Some("/v2/_catalog?last=team-a%2Fworker&n=2")
        );
        let base = Url::parse("http://127.0.0.1:5000/v2/_catalog?n=2").unwrap();
        assert_eq!(
            base.join(&next_link(&h).unwrap()).unwrap().as_str(),
            "http://127.0.0.1:5000/v2/_catalog?last=team-a%2Fworker&n=2"
        );
        assert_eq!(next_link(&HeaderMap::new()), None);
    }

    #[test]
    fn reads_retry_after_seconds() {
        let mut h = HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
    }
}
