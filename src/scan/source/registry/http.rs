//! The requests `oci-client` cannot make for us: catalog and tag listing that follow
//! `Link` headers, `HEAD` of manifests with the rate-limit headers, the bearer token flow
//! for any scope (`registry:catalog:*` included), each request tried again as
//! [`crate::net`] says (`Retry-After` honoured, the host's breaker consulted).
//!
//! Credentials are sent only to the registry host and to the token realm it names;
//! reqwest drops `Authorization` on redirects to other hosts. Nothing here logs a secret.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use tokio::sync::{Mutex, Semaphore};
use url::Url;

use super::auth::{Challenge, Credentials};
use crate::net::{Breaker, Policy, Transient, retry_after};

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
    #[error("{url}: gave up after {tries} tries (last: {last})")]
    GaveUp {
        url: String,
        tries: u32,
        last: String,
    },
    #[error(transparent)]
    HostDown(#[from] crate::net::HostDown),
    #[error(
        "{url}: the answer is larger than {limit} bytes (a manifest, config or page that big is not one)"
    )]
    TooLarge { url: String, limit: u64 },
    #[error("{url}: refusing to follow a pagination link to another host ({link})")]
    ForeignLink { url: String, link: String },
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
    retry: Policy,
    /// Shared with the blob store: one verdict on whether the host is up.
    pub breaker: Arc<Breaker>,
    pub rate_limit: std::sync::Mutex<RateLimit>,
    /// Requests sent, by method: the warm-scan test counts them.
    pub sent: std::sync::Mutex<HashMap<String, u64>>,
}

/// The tries one request has had, and the waits it has left.
pub struct Attempt {
    pub tries: u32,
    backoff: Box<dyn Iterator<Item = Duration> + Send>,
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
        retry: Policy,
        insecure: bool,
        ca_certs: &[reqwest::Certificate],
    ) -> Result<Self, HttpError> {
        let client = reqwest::Client::builder()
            .tls_danger_accept_invalid_certs(insecure)
            .tls_certs_merge(ca_certs.iter().cloned())
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
            breaker: Arc::new(Breaker::new(&host, &retry)),
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

    /// A request with auth and retries, its body read whole. `scope` is the token scope
    /// it needs. A body that breaks off is asked for again.
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
        let mut attempt = self.attempt();
        loop {
            let res = self
                .send(&method, &url, scope, accept, None, &mut attempt)
                .await?;
            let status = res.status();
            let headers = res.headers().clone();
            let final_url = res.url().clone();
            if res.content_length().is_some_and(|n| n > MAX_BODY) {
                return Err(HttpError::TooLarge {
                    url: url.to_string(),
                    limit: MAX_BODY,
                });
            }
            match read_limited(res, MAX_BODY).await {
                Ok(None) => {
                    return Err(HttpError::TooLarge {
                        url: url.to_string(),
                        limit: MAX_BODY,
                    });
                }
                Ok(Some(body)) => {
                    return Ok(Response {
                        status,
                        headers,
                        body,
                        url: final_url,
                    });
                }
                Err(e) => {
                    self.again(
                        &mut attempt,
                        Transient::Connection,
                        None,
                        crate::net::without_url(&e),
                        &url,
                    )
                    .await?
                }
            }
        }
    }

    /// The tries of one request (or one blob, across its resumes).
    pub fn attempt(&self) -> Attempt {
        Attempt {
            tries: 0,
            backoff: Box::new(self.retry.backoff()),
        }
    }

    /// Send until the answer is one not worth another try (a success, or a final error
    /// status such as 404), with auth; its body is the caller's to read. `from` asks for
    /// the bytes from that offset on (`Range`).
    pub async fn send(
        &self,
        method: &Method,
        url: &Url,
        scope: &str,
        accept: Option<&str>,
        from: Option<u64>,
        attempt: &mut Attempt,
    ) -> Result<reqwest::Response, HttpError> {
        let mut authorized_once = false;
        loop {
            self.breaker.admit()?;
            attempt.tries += 1;
            let mut req = self.client.request(method.clone(), url.clone());
            if let Some(a) = accept {
                req = req.header(reqwest::header::ACCEPT, a);
            }
            if let Some(n) = from {
                req = req.header(reqwest::header::RANGE, format!("bytes={n}-"));
            }
            if let Some(h) = self.auth_header(scope).await {
                req = req.header(reqwest::header::AUTHORIZATION, h);
            }
            self.count(method);
            let res = match req.send().await {
                Ok(res) => res,
                Err(e) => match Transient::error(&e) {
                    Some(t) => {
                        self.again(attempt, t, None, crate::net::without_url(&e), url)
                            .await?;
                        continue;
                    }
                    None => {
                        return Err(HttpError::Unreachable {
                            url: url.to_string(),
                            message: crate::net::without_url(&e),
                        });
                    }
                },
            };
            let status = res.status();
            // the path only: a URL a registry redirects to may carry a signed query
            tracing::debug!(
                "{method} {}{} → HTTP {}",
                self.host,
                url.path(),
                status.as_u16()
            );
            self.note_rate_limit(res.headers());
            if status == StatusCode::UNAUTHORIZED {
                self.breaker.succeeded();
                if authorized_once {
                    let body = res.text().await.unwrap_or_default();
                    return Err(HttpError::Unauthorized {
                        host: self.host.clone(),
                        detail: short_detail(&body),
                    });
                }
                authorized_once = true;
                let headers = res.headers().clone();
                self.authorize(&headers, scope).await?;
                continue;
            }
            if let Some(t) = Transient::status(status) {
                let hint = retry_after(res.headers(), SystemTime::now());
                self.again(attempt, t, hint, format!("HTTP {}", status.as_u16()), url)
                    .await?;
                continue;
            }
            self.breaker.succeeded();
            return Ok(res);
        }
    }

    /// A try failed: tell the breaker, then wait for the next try (the server's hint or
    /// the backoff), or give up when the tries are used.
    pub async fn again(
        &self,
        attempt: &mut Attempt,
        transient: Transient,
        hint: Option<Duration>,
        last: String,
        url: &Url,
    ) -> Result<(), HttpError> {
        if transient.host_failing() {
            self.breaker.failed(&last);
        } else {
            self.breaker.succeeded();
        }
        match self.retry.next_wait(&mut attempt.backoff, hint) {
            Some(wait) => {
                tracing::info!(
                    "{}{}: {last}; try {} again in {:.1} s",
                    self.host,
                    url.path(),
                    attempt.tries + 1,
                    wait.as_secs_f64()
                );
                tokio::time::sleep(wait).await;
                Ok(())
            }
            None => Err(HttpError::GaveUp {
                url: url.to_string(),
                tries: attempt.tries,
                last,
            }),
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.retry
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
        // the token service is retried like every other request (it is a read)
        let (status, body) = crate::net::call(&self.retry, || {
            self.count(&Method::GET);
            let req = self.client.get(url.clone());
            match &self.credentials {
                Some(c) => req.header(reqwest::header::AUTHORIZATION, c.basic_header()),
                None => req,
            }
        })
        .await
        .map_err(|e| HttpError::Unreachable {
            url: realm.to_string(),
            message: e.to_string(),
        })?;
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(HttpError::Unauthorized {
                host: self.host.clone(),
                detail: " (the token service said no)".into(),
            });
        }
        if !status.is_success() {
            return Err(HttpError::Status {
                url: realm.to_string(),
                status: status.as_u16(),
                detail: " from the token service".into(),
            });
        }
        #[derive(serde::Deserialize)]
        struct Token {
            token: Option<String>,
            access_token: Option<String>,
        }
        let t: Token = serde_json::from_str(&body).map_err(|e| HttpError::Status {
            url: realm.to_string(),
            status: 200,
            detail: format!(": the token response is not JSON ({e})"),
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

/// The most any API answer read whole may hold (a manifest, an index, a listing page, a
/// token): as for OCI layouts, 16 MiB, four times what registries must accept.
pub const MAX_BODY: u64 = 16 << 20;

/// A body read to its end, or `None` past `limit` bytes (read no further).
async fn read_limited(
    mut res: reqwest::Response,
    limit: u64,
) -> Result<Option<bytes::Bytes>, reqwest::Error> {
    let mut buf = bytes::BytesMut::new();
    while let Some(chunk) = res.chunk().await? {
        if buf.len() as u64 + chunk.len() as u64 > limit {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Some(buf.freeze()))
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
    use reqwest::header::HeaderValue;

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
}
