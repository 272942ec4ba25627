//! Who may do what: credentials, their tenant and their rights.
//!
//! Without a tokens file, Kiln trusts its network, as Pyroscope does: the tenant comes from
//! `X-Scope-OrgID` (or is `anonymous`). With one, every API call needs a credential, sent as
//! `Authorization: Bearer <token>` or as HTTP basic auth with the tenant as user name and the
//! token as password (on HTTP and as gRPC metadata). The credential's tenant is the request's
//! tenant; a request naming another tenant is refused. The file holds SHA-256 digests of the
//! tokens, never the tokens, and presented tokens are compared in constant time and never logged.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use http::HeaderMap;
use kiln_model::TenantId;
use kiln_runtime::{FirstTick, spawn_every};
use parking_lot::RwLock;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

use crate::RequestError;

/// The header (and gRPC metadata key) that names the tenant.
pub const TENANT_HEADER: &str = "x-scope-orgid";

/// What a credential allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Right {
    /// Queries of the credential's tenant.
    Read,
    /// Pushes of the credential's tenant.
    Write,
    /// The admin API (`/runtime_config`, `kiln admin`): every tenant's blocks, deletion.
    Admin,
}

impl Right {
    /// The right's name in the tokens file and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Right::Read => "read",
            Right::Write => "write",
            Right::Admin => "admin",
        }
    }
}

/// One entry of the tokens file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    token_sha256: String,
    tenant: String,
    rights: Vec<Right>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    tokens: Vec<TokenEntry>,
}

/// A credential: the digest of its token, its tenant and its rights.
#[derive(Clone, Debug)]
struct Credential {
    digest: [u8; 32],
    tenant: TenantId,
    rights: Vec<Right>,
}

/// The credentials of a tokens file.
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    credentials: Vec<Credential>,
}

impl Tokens {
    /// Parses the YAML of a tokens file; every entry must name a valid tenant, a SHA-256 hex
    /// digest and known rights.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: TokensFile = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
        let mut credentials = Vec::with_capacity(file.tokens.len());
        for (index, entry) in file.tokens.into_iter().enumerate() {
            let digest = hex_digest(&entry.token_sha256).ok_or_else(|| {
                format!(
                    "token {index}: token_sha256 must be 64 hex digits (sha256sum of the token)"
                )
            })?;
            let tenant = TenantId::new(&entry.tenant)
                .map_err(|e| format!("token {index}: tenant {:?}: {e}", entry.tenant))?;
            if entry.rights.is_empty() {
                return Err(format!("token {index}: rights is empty"));
            }
            credentials.push(Credential {
                digest,
                tenant,
                rights: entry.rights,
            });
        }
        Ok(Self { credentials })
    }

    /// The credential whose token is `token`, comparing every digest in constant time.
    fn find(&self, token: &str) -> Option<&Credential> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for credential in &self.credentials {
            if bool::from(credential.digest.ct_eq(&digest)) {
                found = Some(credential);
            }
        }
        found
    }
}

fn hex_digest(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 {
        return None;
    }
    let mut digest = [0u8; 32];
    for (i, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(digest)
}

/// What a request presented.
struct Presented {
    token: String,
    /// The user name of basic auth: the tenant the client means.
    user: Option<String>,
}

/// The token a request presents (a bearer token, or the password of basic auth), if its
/// Authorization header is well formed: what a protocol that trades basic auth for a bearer
/// token (Flight SQL's handshake) hands back.
pub fn presented_token(headers: &HeaderMap) -> Option<String> {
    presented(headers).ok().flatten().map(|p| p.token)
}

fn presented(headers: &HeaderMap) -> Result<Option<Presented>, RequestError> {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let invalid = || RequestError::Unauthenticated("malformed Authorization header".to_string());
    let value = value.to_str().map_err(|_| invalid())?;
    let (scheme, rest) = value.split_once(' ').ok_or_else(invalid)?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Ok(Some(Presented {
            token: rest.trim().to_string(),
            user: None,
        }));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        // Padded, or not: Go's Flight client (ADBC, Grafana's Flight SQL data source) encodes
        // basic credentials without padding.
        let encoded = rest.trim().trim_end_matches('=');
        let decoded = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(encoded)
            .map_err(|_| invalid())?;
        let decoded = String::from_utf8(decoded).map_err(|_| invalid())?;
        let (user, token) = decoded.split_once(':').ok_or_else(invalid)?;
        return Ok(Some(Presented {
            token: token.to_string(),
            user: (!user.is_empty()).then(|| user.to_string()),
        }));
    }
    Err(RequestError::Unauthenticated(format!(
        "unsupported authorization scheme {scheme:?}: use Bearer or Basic"
    )))
}

/// Decides the tenant of every request, and whether it may do what it asks.
#[derive(Debug)]
pub struct Auth {
    multitenancy_enabled: bool,
    tokens: Option<RwLock<Tokens>>,
}

impl Auth {
    /// No credentials: the tenant from `X-Scope-OrgID` with multitenancy on, else `anonymous`.
    pub fn open(multitenancy_enabled: bool) -> Arc<Self> {
        Arc::new(Self {
            multitenancy_enabled,
            tokens: None,
        })
    }

    /// Credentials from the tokens file at `path`, read now (an invalid file is an error) and
    /// again every `reload` until `stop` (an invalid file is logged and ignored then).
    pub fn from_file(
        path: &Path,
        reload: Duration,
        stop: CancellationToken,
    ) -> Result<Arc<Self>, String> {
        let tokens = load(path)?;
        let auth = Arc::new(Self {
            multitenancy_enabled: true,
            tokens: Some(RwLock::new(tokens)),
        });
        let (watched, path) = (Arc::clone(&auth), path.to_path_buf());
        spawn_every(reload, FirstTick::AfterPeriod, stop, move || {
            watched.reload(&path);
            std::future::ready(())
        });
        Ok(auth)
    }

    fn reload(&self, path: &Path) {
        let Some(tokens) = &self.tokens else {
            return;
        };
        match load(path) {
            Ok(loaded) => *tokens.write() = loaded,
            Err(e) => tracing::error!(error = %e, "keeping the previous credentials"),
        }
    }

    /// True when requests need credentials.
    pub fn is_enabled(&self) -> bool {
        self.tokens.is_some()
    }

    /// The tenant of a request that needs `right`, from its headers (or gRPC metadata).
    ///
    /// With credentials on: 401 without a valid credential, 403 when it lacks `right` or when
    /// `X-Scope-OrgID` (or the basic-auth user) names another tenant. Without: the tenant header
    /// as before.
    pub fn authorize(&self, headers: &HeaderMap, right: Right) -> Result<TenantId, RequestError> {
        let Some(tokens) = &self.tokens else {
            return self.tenant_header(headers);
        };
        let presented = presented(headers)?.ok_or_else(|| {
            RequestError::Unauthenticated(
                "missing credentials: send Authorization: Bearer <token> (or basic auth with the tenant as user and the token as password)"
                    .to_string(),
            )
        })?;
        let tokens = tokens.read();
        let credential = tokens
            .find(&presented.token)
            .ok_or_else(|| RequestError::Unauthenticated("invalid credentials".to_string()))?;
        if !credential.rights.contains(&right) {
            return Err(RequestError::PermissionDenied(format!(
                "the credential of tenant {} lacks the {} right",
                credential.tenant.as_str(),
                right.as_str()
            )));
        }
        let named = match headers.get(TENANT_HEADER) {
            Some(value) => Some(value.to_str().map_err(|_| {
                RequestError::BadRequest("X-Scope-OrgID is not valid ASCII".to_string())
            })?),
            None => presented.user.as_deref(),
        };
        if let Some(named) = named
            && named != credential.tenant.as_str()
        {
            return Err(RequestError::PermissionDenied(format!(
                "the credential is for tenant {}, not {named:?}",
                credential.tenant.as_str()
            )));
        }
        Ok(credential.tenant.clone())
    }

    fn tenant_header(&self, headers: &HeaderMap) -> Result<TenantId, RequestError> {
        if !self.multitenancy_enabled {
            return Ok(TenantId::anonymous());
        }
        let value = headers
            .get(TENANT_HEADER)
            .ok_or(RequestError::MissingTenant)?;
        let id = value.to_str().map_err(|_| {
            RequestError::BadRequest("X-Scope-OrgID is not valid ASCII".to_string())
        })?;
        Ok(TenantId::new(id)?)
    }
}

fn load(path: &Path) -> Result<Tokens, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the tokens file {}: {e}", path.display()))?;
    Tokens::parse(&text).map_err(|e| format!("invalid tokens file {}: {e}", path.display()))
}

/// With credentials on, refuses a request that lacks `right` before its body is read: 401 or
/// 403 as a gRPC status for gRPC calls, as a Connect error (JSON) otherwise. Apply it to every
/// route of a role but the health endpoints; handlers still ask [`Auth::authorize`] for the
/// tenant.
pub fn require(
    auth: Arc<Auth>,
    right: Right,
) -> axum::middleware::FromFnLayer<
    impl Fn(axum::extract::Request, axum::middleware::Next) -> AuthFuture + Clone,
    (),
    (axum::extract::Request,),
> {
    axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            let auth = Arc::clone(&auth);
            Box::pin(async move {
                // Without credentials the handlers resolve the tenant header as they always did
                // (and count what they refuse); the admin API is then open, as the network is.
                if !auth.is_enabled() {
                    return next.run(request).await;
                }
                match auth.authorize(request.headers(), right) {
                    Ok(_) => next.run(request).await,
                    Err(e) => refusal(request.headers(), &e),
                }
            }) as AuthFuture
        },
    )
}

/// The future of the [`require`] middleware.
pub type AuthFuture =
    std::pin::Pin<Box<dyn Future<Output = axum::response::Response> + Send + 'static>>;

/// An error answered in the caller's protocol: gRPC status for gRPC, Connect JSON otherwise.
pub fn refusal(headers: &HeaderMap, error: &RequestError) -> axum::response::Response {
    refusal_message(headers, error.http_status(), &error.to_string())
}

/// `message` with `status`, answered in the caller's protocol (gRPC or Connect JSON).
pub fn refusal_message(
    headers: &HeaderMap,
    status: http::StatusCode,
    message: &str,
) -> axum::response::Response {
    let is_grpc = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if is_grpc {
        let status = tonic::Status::new(crate::grpc_code(status), message);
        return status.into_http::<axum::body::Body>();
    }
    crate::error_response(status, crate::connect_code(status), message)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn sha256_hex(token: &str) -> String {
        Sha256::digest(token.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn auth() -> Auth {
        let text = format!(
            "tokens:\n  - token_sha256: {}\n    tenant: team-a\n    rights: [read, write]\n  - token_sha256: {}\n    tenant: team-b\n    rights: [read]\n",
            sha256_hex("secret-a"),
            sha256_hex("secret-b")
        );
        Auth {
            multitenancy_enabled: true,
            tokens: Some(RwLock::new(Tokens::parse(&text).unwrap())),
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn basic(user: &str, token: &str) -> String {
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{token}"));
        format!("Basic {encoded}")
    }

    #[test]
    fn credentials_decide_tenant_and_rights() {
        let auth = auth();
        let ok = |h: &HeaderMap, right| auth.authorize(h, right).map(|t| t.as_str().to_string());
        let bearer = headers(&[("authorization", "Bearer secret-a")]);
        assert_eq!(ok(&bearer, Right::Write).unwrap(), "team-a");
        assert_eq!(ok(&bearer, Right::Read).unwrap(), "team-a");
        assert!(matches!(
            auth.authorize(&bearer, Right::Admin),
            Err(RequestError::PermissionDenied(_))
        ));
        let read_only = headers(&[("authorization", "Bearer secret-b")]);
        assert!(matches!(
            auth.authorize(&read_only, Right::Write),
            Err(RequestError::PermissionDenied(_))
        ));
        let basic_auth = headers(&[("authorization", &basic("team-b", "secret-b"))]);
        // Go's Flight client leaves the padding out.
        let padded = basic("team-b", "secret-bb");
        assert!(padded.ends_with('='), "{padded}");
        for value in [padded.as_str(), padded.trim_end_matches('=')] {
            let presented = presented_token(&headers(&[("authorization", value)]));
            assert_eq!(presented.as_deref(), Some("secret-bb"), "{value}");
        }
        assert_eq!(ok(&basic_auth, Right::Read).unwrap(), "team-b");
        let wrong_user = headers(&[("authorization", &basic("team-a", "secret-b"))]);
        assert!(matches!(
            auth.authorize(&wrong_user, Right::Read),
            Err(RequestError::PermissionDenied(_))
        ));
        let other_tenant = headers(&[
            ("authorization", "Bearer secret-a"),
            ("x-scope-orgid", "team-b"),
        ]);
        assert!(matches!(
            auth.authorize(&other_tenant, Right::Read),
            Err(RequestError::PermissionDenied(_))
        ));
        let same_tenant = headers(&[
            ("authorization", "Bearer secret-a"),
            ("x-scope-orgid", "team-a"),
        ]);
        assert_eq!(ok(&same_tenant, Right::Read).unwrap(), "team-a");
        for missing in [
            headers(&[]),
            headers(&[("authorization", "Bearer wrong")]),
            headers(&[("authorization", "Token secret-a")]),
            headers(&[("x-scope-orgid", "team-a")]),
        ] {
            assert!(matches!(
                auth.authorize(&missing, Right::Read),
                Err(RequestError::Unauthenticated(_))
            ));
        }
    }

    #[test]
    fn bad_token_files_are_refused_with_the_reason() {
        let err =
            Tokens::parse("tokens:\n  - token_sha256: abc\n    tenant: t\n    rights: [read]\n")
                .unwrap_err();
        assert!(err.contains("64 hex digits"), "{err}");
        let err = Tokens::parse(&format!(
            "tokens:\n  - token_sha256: {}\n    tenant: t\n    rights: [root]\n",
            "0".repeat(64)
        ))
        .unwrap_err();
        assert!(err.contains("root"), "{err}");
    }
}
