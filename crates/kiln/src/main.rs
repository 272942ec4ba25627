//! The `kiln` binary: parses the command line and wires the roles together.

mod admin;
mod cli;
mod client;
mod ops;
mod panics;
mod roles;
mod security;
mod server;
mod telemetry;

fn main() -> std::process::ExitCode {
    cli::run()
}
