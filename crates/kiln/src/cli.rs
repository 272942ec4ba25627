use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kiln_config::{ConfigError, ServerArgs, parse_with_file};

/// Kiln, a distributed continuous-profiling database.
#[derive(Debug, Parser)]
#[command(name = "kiln", version, about, propagate_version = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a Kiln server; with no flags, every role in one process on local defaults.
    Server(Box<ServerArgs>),
    /// Operate a running cluster.
    #[command(subcommand)]
    Admin(crate::admin::AdminCommand),
    /// Upload profile files (pprof, JFR, folded stacks) to a server.
    Upload(crate::client::upload::UploadArgs),
    /// Query a server: top functions, flame graph, series, merged pprof, diff.
    Query(crate::client::query::QueryArgs),
}

pub(crate) fn run() -> ExitCode {
    let cli: Cli = match parse_with_file(std::env::args_os().collect(), "server") {
        Ok(cli) => cli,
        Err(ConfigError::Clap(e)) => e.exit(),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Server(args) => exit_code(crate::server::run(*args)),
        Command::Admin(command) => exit_code(crate::admin::run(command)),
        Command::Upload(args) => {
            exit_code(crate::client::block_on(crate::client::upload::run(args)))
        }
        Command::Query(args) => exit_code(crate::client::block_on(crate::client::query::run(args))),
    }
}

fn exit_code(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;
    use std::time::Duration;

    use super::*;

    fn parse(args: &[&str]) -> ServerArgs {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        let cli: Cli = parse_with_file(args, "server").unwrap();
        let Command::Server(args) = cli.command else {
            panic!("not a server command");
        };
        *args
    }

    // Environment variables are process-wide, so the precedence checks run in one test.
    #[test]
    fn flag_beats_env_beats_file_beats_default() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kiln.yaml");
        std::fs::write(
            &file,
            "ingester.flush-interval: 2s\nlimits.max-body-bytes: 1MiB\nauth.multitenancy-enabled: true\ntarget: [all]\n",
        )
        .unwrap();
        let config = file.to_str().unwrap();

        let defaults = parse(&["kiln", "server"]);
        assert_eq!(defaults.ingester_flush_interval, Duration::from_millis(250));
        assert_eq!(defaults.limits.max_body_bytes, 64 << 20);
        assert!(!defaults.multitenancy_enabled);

        let from_file = parse(&["kiln", "server", "--config", config]);
        assert_eq!(from_file.ingester_flush_interval, Duration::from_secs(2));
        assert_eq!(from_file.limits.max_body_bytes, 1 << 20);
        assert!(from_file.multitenancy_enabled);

        // SAFETY: no other test reads or writes these variables.
        unsafe { std::env::set_var("KILN_INGESTER_FLUSH_INTERVAL", "3s") };
        let from_env = parse(&["kiln", "server", "--config", config]);
        assert_eq!(from_env.ingester_flush_interval, Duration::from_secs(3));
        assert_eq!(from_env.limits.max_body_bytes, 1 << 20);

        let from_flag = parse(&[
            "kiln",
            "server",
            "--config",
            config,
            "--ingester.flush-interval=4s",
            "--auth.multitenancy-enabled=false",
        ]);
        unsafe { std::env::remove_var("KILN_INGESTER_FLUSH_INTERVAL") };
        assert_eq!(from_flag.ingester_flush_interval, Duration::from_secs(4));
        assert!(!from_flag.multitenancy_enabled);
    }

    #[test]
    fn unknown_config_keys_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kiln.yaml");
        std::fs::write(&file, "no-such-flag: 1\n").unwrap();
        let args = vec![
            "kiln".into(),
            "server".into(),
            "--config".into(),
            file.into_os_string(),
        ];
        let err = parse_with_file::<Cli>(args, "server").unwrap_err();
        assert!(
            err.to_string().contains("unknown key \"no-such-flag\""),
            "{err}"
        );
    }
}
