//! The Prefect clients, one for every stage that talks to a server: `scan` reads flows and
//! deployments, `migrate` reads them again and writes, `rollback` restores. Prefect 1
//! Server and Cloud speak GraphQL ([`graphql`]); Prefect 2 and 3 speak REST ([`rest`]).
//! Both retry what is transient ([`crate::net`]) and fail with a typed [`ApiError`]
//! that names the URL, never the key.

pub mod graphql;
pub mod rest;

/// Why a call to a Prefect server failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot start the I/O runtime: {0}")]
    Runtime(String),
    #[error("cannot reach {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error("{url} refused the API key (HTTP {status}): expired, revoked, or for another tenant?")]
    Refused { url: String, status: u16 },
    #[error("{url}: HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        /// The start of the answer (servers explain refusals there).
        body: String,
    },
    #[error("{url}: the answer is not JSON: {message}")]
    NotJson { url: String, message: String },
    #[error("{url}: GraphQL errors: {}", messages.join("; "))]
    GraphQl { url: String, messages: Vec<String> },
    #[error("{url}: {what}")]
    Shape { url: String, what: String },
}

impl ApiError {
    /// The server does not have it (a deployment deleted since the scan).
    pub fn is_not_found(&self) -> bool {
        matches!(self, ApiError::Status { status: 404, .. })
    }
}

/// A current-thread runtime and a client with the timeouts every Prefect call uses; idle
/// connections are dropped before the servers' own keep-alive ends (uvicorn closes after
/// 5 s), so a reused connection is never one the server just closed.
pub(crate) fn client() -> Result<(tokio::runtime::Runtime, reqwest::Client), ApiError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ApiError::Runtime(e.to_string()))?;
    let client = reqwest::Client::builder()
        .pool_idle_timeout(std::time::Duration::from_secs(2))
        .connect_timeout(std::time::Duration::from_secs(10))
        .timeout(std::time::Duration::from_secs(120))
        .build()
        .map_err(|e| ApiError::Runtime(e.to_string()))?;
    Ok((runtime, client))
}

/// Send `request` (built again for each try) with the default retry policy, and sort the
/// answer: a refused key, another failure status, or the text of a success.
pub(crate) async fn send(
    url: &str,
    request: impl Fn() -> reqwest::RequestBuilder,
) -> Result<String, ApiError> {
    let (status, text) = crate::net::call(&crate::net::Policy::default(), request)
        .await
        .map_err(|e| ApiError::Unreachable {
            url: url.to_string(),
            message: e.to_string(),
        })?;
    match status.as_u16() {
        s @ (401 | 403) => Err(ApiError::Refused {
            url: url.to_string(),
            status: s,
        }),
        s if !status.is_success() => Err(ApiError::Status {
            url: url.to_string(),
            status: s,
            body: text.chars().take(200).collect(),
        }),
        _ => Ok(text),
    }
}

/// The answer as JSON, `null` when empty (a PATCH's 204).
pub(crate) fn json(url: &str, text: &str) -> Result<serde_json::Value, ApiError> {
    if text.trim().is_empty() {
        return Ok(serde_json::Value::Null);
    }
    serde_json::from_str(text).map_err(|e| ApiError::NotJson {
        url: url.to_string(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::ApiError;

    #[test]
    fn errors_name_the_url_and_only_a_404_is_not_found() {
        let e = ApiError::Status {
            url: "http://h/api/deployments/1".into(),
            status: 404,
            body: "Not Found".into(),
        };
        assert!(e.is_not_found());
        assert_eq!(
            e.to_string(),
            "http://h/api/deployments/1: HTTP 404: Not Found"
        );
        let refused = ApiError::Refused {
            url: "http://h/graphql".into(),
            status: 401,
        };
        assert!(!refused.is_not_found());
        assert!(
            refused
                .to_string()
                .contains("refused the API key (HTTP 401)")
        );
    }
}
