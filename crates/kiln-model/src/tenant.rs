use std::fmt;

use crate::{ModelError, Result};

/// The tenant every request belongs to when multitenancy is disabled.
pub const ANONYMOUS_TENANT: &str = "anonymous";

const MAX_TENANT_LEN: usize = 150;

/// A validated tenant id: at most 150 characters of letters, digits and `!-_.*'()`, not `.` or `..`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(String);

impl TenantId {
    /// Validates `id` and wraps it.
    pub fn new(id: &str) -> Result<Self> {
        let invalid = |reason: &str| ModelError::InvalidTenant {
            id: id.to_string(),
            reason: reason.to_string(),
        };
        if id.is_empty() {
            return Err(invalid("must not be empty"));
        }
        if id.len() > MAX_TENANT_LEN {
            return Err(invalid("longer than 150 characters"));
        }
        if id == "." || id == ".." {
            return Err(invalid("'.' and '..' are reserved"));
        }
        if let Some(c) = id
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "!-_.*'()".contains(*c)))
        {
            return Err(invalid(&format!("character {c:?} is not allowed")));
        }
        Ok(Self(id.to_string()))
    }

    /// The tenant of single-tenant deployments.
    pub fn anonymous() -> Self {
        Self(ANONYMOUS_TENANT.to_string())
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_ids() {
        for id in ["anonymous", "team-a", "a.b_c!*'()", &"x".repeat(150)] {
            assert_eq!(TenantId::new(id).unwrap().as_str(), id);
        }
    }

    #[test]
    fn rejects_invalid_ids() {
        for id in ["", ".", "..", "a/b", "a b", "é", &"x".repeat(151)] {
            let err = TenantId::new(id).unwrap_err().to_string();
            assert!(err.starts_with("invalid tenant id"), "{id}: {err}");
        }
    }
}
