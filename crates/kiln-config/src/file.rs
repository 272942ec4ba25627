use std::ffi::OsString;
use std::path::Path;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches};

/// A config file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The file is not a YAML mapping of flag names to scalars.
    #[error("invalid config file {path}: {reason}")]
    Invalid { path: String, reason: String },
    /// Parsing the command line failed (also `--help` and `--version`).
    #[error(transparent)]
    Clap(#[from] clap::Error),
}

/// Parses `args` into `C`, filling the flags of `subcommand` that were given neither on the
/// command line nor in the environment from the YAML file named by its `--config` flag.
pub fn parse_with_file<C: CommandFactory + FromArgMatches>(
    args: Vec<OsString>,
    subcommand: &str,
) -> Result<C, ConfigError> {
    let command = C::command();
    let matches = command.clone().try_get_matches_from(&args)?;
    let Some(sub) = matches.subcommand_matches(subcommand) else {
        return Ok(C::from_arg_matches(&matches)?);
    };
    let Some(path) = sub.get_one::<std::path::PathBuf>("config") else {
        return Ok(C::from_arg_matches(&matches)?);
    };
    let entries = read_entries(path)?;
    let sub_command = command
        .find_subcommand(subcommand)
        .expect("the subcommand exists since it matched");
    let mut injected = Vec::new();
    for (key, value) in entries {
        let arg = sub_command
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()) && key != "config")
            .ok_or_else(|| ConfigError::Invalid {
                path: path.display().to_string(),
                reason: format!(
                    "unknown key {key:?}: keys are the flag names of kiln {subcommand}"
                ),
            })?;
        let explicit = matches!(
            sub.value_source(arg.get_id().as_str()),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        );
        if !explicit {
            injected.push(OsString::from(format!("--{key}={value}")));
        }
    }
    // The file's values go right after the subcommand, so anything later still wins.
    let position = args
        .iter()
        .position(|a| a == subcommand)
        .expect("the subcommand was matched from args");
    let mut merged = args[..=position].to_vec();
    merged.extend(injected);
    merged.extend_from_slice(&args[position + 1..]);
    let matches = command.try_get_matches_from(merged)?;
    Ok(C::from_arg_matches(&matches)?)
}

fn read_entries(path: &Path) -> Result<Vec<(String, String)>, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let value: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&text).map_err(|e| invalid(e.to_string()))?;
    let mapping = match value {
        serde_yaml_ng::Value::Mapping(mapping) => mapping,
        serde_yaml_ng::Value::Null => return Ok(Vec::new()),
        _ => return Err(invalid("the top level must be a mapping".to_string())),
    };
    let mut entries = Vec::new();
    for (key, value) in mapping {
        let key = key
            .as_str()
            .ok_or_else(|| invalid("keys must be strings".to_string()))?
            .to_string();
        let value = scalar(&value)
            .or_else(|| match &value {
                serde_yaml_ng::Value::Sequence(items) => items
                    .iter()
                    .map(scalar)
                    .collect::<Option<Vec<_>>>()
                    .map(|v| v.join(",")),
                _ => None,
            })
            .ok_or_else(|| invalid(format!("value of {key:?} must be a scalar or a list")))?;
        entries.push((key, value));
    }
    Ok(entries)
}

fn scalar(value: &serde_yaml_ng::Value) -> Option<String> {
    match value {
        serde_yaml_ng::Value::String(s) => Some(s.clone()),
        serde_yaml_ng::Value::Number(n) => Some(n.to_string()),
        serde_yaml_ng::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}
