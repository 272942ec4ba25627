//! How Kiln's roles run their background work, and the per-tenant settings they share.
//!
//! Heartbeats, membership refreshes, recovery sweeps and config reloads all tick on a period
//! until the process shuts down; [`spawn_every`] is the one loop they share.
//! [`TenantOverrides`] holds every tenant's limits from flags and the runtime config file;
//! [`BoundedTenants`] caps and expires the tenants named in metric labels, and [`Listed`] lists a
//! metric in `/metrics` before its first series. [`jump_hash`] places
//! keys on members stably.

mod listed;
mod overrides;
mod placement;
mod tenants;
mod ticker;

pub use listed::Listed;
pub use overrides::TenantOverrides;
pub use placement::{jump_hash, stable_hash};
pub use tenants::{BoundedTenants, OTHER_TENANTS};
pub use ticker::{FirstTick, spawn_every};
