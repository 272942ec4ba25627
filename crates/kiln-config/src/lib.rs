//! Kiln's configuration.
//!
//! Every setting is a flag (`--ingester.flush-interval`), an environment variable (`KILN_` and
//! the flag name upper-cased with `.` and `-` as `_`) and a key of the optional YAML file given
//! by `--config` (the flag name). Precedence: flag > environment > file > default.

mod compaction;
mod file;
mod limits;
mod security;
mod server;
mod units;

pub use compaction::CompactionArgs;
pub use file::{ConfigError, parse_with_file};
pub use limits::{Limits, RuntimeConfig};
pub use security::SecurityArgs;
pub use server::{LogFormat, ServerArgs, Target};
pub use units::{parse_bytes, parse_duration};
