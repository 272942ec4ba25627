//! The commands a person runs against a Kiln server's HTTP API: `kiln upload` and
//! `kiln query`. They speak the same public API as every other client (Pyroscope's `/ingest`,
//! `/pyroscope/render` and `/api/v1/pprof`), so they work against any role that serves it.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use reqwest::StatusCode;

mod display;
mod profile;
pub(crate) mod query;
pub(crate) mod upload;

/// Where the server is and who is asking: shared by `kiln upload` and `kiln query`.
#[derive(Clone, Debug, Args)]
pub(crate) struct ServerAddr {
    /// The server's HTTP address (a distributor for uploads, a querier for queries, or an
    /// all-in-one server for both).
    #[arg(
        long,
        env = "KILN_URL",
        default_value = "http://localhost:4040",
        global = true
    )]
    url: String,
    /// The tenant (sent as X-Scope-OrgID), for servers with multi-tenancy on.
    #[arg(long, env = "KILN_TENANT", global = true)]
    tenant: Option<String>,
    /// A token, sent as a Bearer credential, for servers that check credentials.
    #[arg(long, env = "KILN_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
}

/// An HTTP client bound to one server, turning failures into messages a person can act on.
#[derive(Debug)]
pub(crate) struct ApiClient {
    http: reqwest::Client,
    base: String,
    addr: ServerAddr,
}

impl ApiClient {
    pub(crate) fn new(addr: &ServerAddr) -> anyhow::Result<Self> {
        let base = addr.url.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            bail!(
                "invalid --url {:?}: expected http://host:port or https://host:port",
                addr.url
            );
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("kiln-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self {
            http,
            base,
            addr: addr.clone(),
        })
    }

    /// The server's URL, as given.
    pub(crate) fn url(&self) -> &str {
        &self.base
    }

    fn with_credentials(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let request = match &self.addr.tenant {
            Some(tenant) => request.header("X-Scope-OrgID", tenant),
            None => request,
        };
        match &self.addr.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// `GET path?query`, the body of a 2xx answer.
    pub(crate) async fn get(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<bytes::Bytes, ApiError> {
        let request = self.http.get(format!("{}{path}", self.base)).query(query);
        self.send(self.with_credentials(request)).await
    }

    /// `POST path?query` with `body`, the body of a 2xx answer.
    pub(crate) async fn post(
        &self,
        path: &str,
        query: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<bytes::Bytes, ApiError> {
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .query(query)
            .body(body);
        self.send(self.with_credentials(request)).await
    }

    /// `POST path` with a JSON body, asking for `accept`; the body of a 2xx answer.
    pub(crate) async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
        accept: &str,
    ) -> Result<bytes::Bytes, ApiError> {
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .header(reqwest::header::ACCEPT, accept)
            .json(body);
        self.send(self.with_credentials(request)).await
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<bytes::Bytes, ApiError> {
        let response = request.send().await.map_err(|e| {
            if e.is_connect() || e.is_timeout() {
                ApiError::Unreachable {
                    url: self.base.clone(),
                    cause: root_cause(&e),
                }
            } else {
                ApiError::Transport(root_cause(&e))
            }
        })?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| ApiError::Transport(root_cause(&e)))?;
        if status.is_success() {
            return Ok(body);
        }
        let message = String::from_utf8_lossy(&body).trim().to_string();
        Err(match status {
            StatusCode::UNAUTHORIZED => ApiError::Unauthenticated(message),
            StatusCode::FORBIDDEN => ApiError::Forbidden(message),
            _ => ApiError::Refused { status, message },
        })
    }
}

/// Why a call to the server failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error(
        "cannot reach the Kiln server at {url} ({cause}): is it running? Point --url (or KILN_URL) at its HTTP address"
    )]
    Unreachable { url: String, cause: String },
    #[error("the request to the server failed: {0}")]
    Transport(String),
    #[error("the server needs credentials (401: {0}): pass --token (or KILN_TOKEN)")]
    Unauthenticated(String),
    #[error(
        "the server refused these credentials (403: {0}): check --token and --tenant (or KILN_TOKEN and KILN_TENANT)"
    )]
    Forbidden(String),
    #[error("the server refused the request ({status}): {message}")]
    Refused { status: StatusCode, message: String },
}

impl ApiError {
    /// Whether trying another request makes sense (it does not when the server is away or the
    /// credentials are wrong: every other file would fail the same way).
    pub(crate) fn is_per_request(&self) -> bool {
        matches!(self, Self::Refused { .. })
    }
}

/// The innermost cause of a transport error: reqwest's own message is only "error sending
/// request", the reason (connection refused, DNS) is further down.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// A current-thread runtime for one CLI command.
pub(crate) fn block_on<F: std::future::Future<Output = anyhow::Result<()>>>(
    future: F,
) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(future)
}
