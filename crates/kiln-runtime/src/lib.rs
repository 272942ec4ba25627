//! How Kiln's roles run their background work.
//!
//! Heartbeats, membership refreshes, recovery sweeps and config reloads all tick on a period
//! until the process shuts down; [`spawn_every`] is the one loop they share.

mod ticker;

pub use ticker::{FirstTick, spawn_every};
