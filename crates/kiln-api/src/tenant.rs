use http::HeaderMap;
use kiln_model::TenantId;

use crate::RequestError;

/// The header (and gRPC metadata key) that names the tenant.
pub const TENANT_HEADER: &str = "x-scope-orgid";

/// Picks the tenant of a request.
#[derive(Clone, Copy, Debug)]
pub struct TenantResolver {
    multitenancy_enabled: bool,
}

impl TenantResolver {
    /// With multitenancy off every request belongs to `anonymous`.
    pub fn new(multitenancy_enabled: bool) -> Self {
        Self {
            multitenancy_enabled,
        }
    }

    /// The tenant named by `headers`.
    pub fn resolve(&self, headers: &HeaderMap) -> Result<TenantId, RequestError> {
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
