//! `kiln server` processes: all-in-one or single roles, on loopback listeners with free ports.
//!
//! A [`KilnCommand`] says how to start one (binary, data dir, flags); [`KilnCommand::spawn`]
//! returns once the process has reported its listeners, [`KilnCommand::start`] once `/ready`
//! answers 200 as well. The process runs with `--log-format json`; its log goes to this
//! process's stderr when `KILN_TEST_LOGS` is set. A [`KilnServer`] is killed when dropped.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

/// How long a server may take to report its listeners, to become ready, or to exit after
/// SIGTERM.
pub const PROCESS_DEADLINE: Duration = Duration::from_secs(60);

/// How to start a `kiln server`: which binary, on which data dir, with which flags.
///
/// Every listener is on `127.0.0.1:0` (the gRPC one may be set with [`KilnCommand::grpc_addr`]);
/// the process reports the bound addresses in its log. Cloning a command keeps its data dir: a
/// clone starts a server on the same data (a restart).
#[derive(Clone, Debug)]
pub struct KilnCommand {
    binary: PathBuf,
    data_dir: PathBuf,
    /// The temporary folder the data dir is in, removed when the last command and server holding
    /// it are dropped.
    temp_dir: Option<Arc<tempfile::TempDir>>,
    grpc_addr: String,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    rust_log: String,
    /// Run `binary` with exactly `args` and `env` (see [`KilnCommand::exact`]).
    exact: bool,
}

impl KilnCommand {
    /// `binary server` on `data_dir`.
    pub fn new(binary: impl Into<PathBuf>, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            binary: binary.into(),
            data_dir: data_dir.into(),
            temp_dir: None,
            grpc_addr: "127.0.0.1:0".to_string(),
            args: Vec::new(),
            env: Vec::new(),
            rust_log: "info".to_string(),
            exact: false,
        }
    }

    /// `binary` run with exactly `args` (`server` and its flags, as a manifest gives them) and
    /// the environment [`KilnCommand::env`] sets, nothing inherited or added: no listener, data
    /// dir or log flags. Its log must be JSON (`--log-format json`, or the config file's
    /// `log-format: json`) for [`KilnCommand::spawn`] to see its listeners; `data_dir` is only
    /// what [`KilnServer::data_dir`] answers.
    pub fn exact<I, S>(binary: impl Into<PathBuf>, data_dir: impl Into<PathBuf>, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = Self::new(binary, data_dir).args(args);
        command.exact = true;
        command
    }

    /// `binary server` on a new temporary data dir, removed once this command, its clones and
    /// the servers started from them are dropped.
    pub fn in_tempdir(binary: impl Into<PathBuf>) -> std::io::Result<Self> {
        let temp_dir = tempfile::tempdir()?;
        let mut command = Self::new(binary, temp_dir.path());
        command.temp_dir = Some(Arc::new(temp_dir));
        Ok(command)
    }

    /// The same command on the data dir `name` inside this one's (for one process of a group).
    pub fn in_subdir(&self, name: &str) -> Self {
        let mut command = self.clone();
        command.data_dir = self.data_dir.join(name);
        command
    }

    /// Adds a flag (or a flag's value).
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Adds flags.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|arg| arg.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable of the process.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// The process's `RUST_LOG` (default `info`; it must keep kiln's `listener bound` events).
    pub fn rust_log(mut self, filter: &str) -> Self {
        self.rust_log = filter.to_string();
        self
    }

    /// The gRPC listener's address (default `127.0.0.1:0`).
    pub fn grpc_addr(mut self, addr: &str) -> Self {
        self.grpc_addr = addr.to_string();
        self
    }

    /// The kiln binary.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The data dir (`--data-dir`).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.binary);
        if self.exact {
            command
                .env_clear()
                .args(&self.args)
                .envs(self.env.iter().map(|(k, v)| (k, v)));
            return command;
        }
        command
            .arg("server")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--http-addr", "127.0.0.1:0", "--log-format", "json"])
            .args(["--grpc-addr", &self.grpc_addr])
            .args(["--otlp-grpc-addr", "127.0.0.1:0"])
            .args(["--otlp-http-addr", "127.0.0.1:0"])
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", &self.rust_log);
        command
    }

    /// Starts the server and waits for its listeners only (a metastore node of a group is ready
    /// only once a quorum runs).
    pub fn spawn(&self) -> anyhow::Result<KilnServer> {
        let mut child = self
            .command()
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", self.binary.display()))?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let (sender, receiver) = mpsc::channel();
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            let print = std::env::var_os("KILN_TEST_LOGS").is_some();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line)
                    && let Some(addr) = event["fields"]["addr"].as_str()
                    && let Some(listener) = event["fields"]["listener"].as_str()
                {
                    let _ = sender.send((listener.to_string(), addr.to_string()));
                }
                if print {
                    eprintln!("{line}");
                }
            }
        });
        let mut listeners = HashMap::new();
        // The HTTP listener is bound last, in every mode.
        while !listeners.contains_key("http") {
            match receiver.recv_timeout(PROCESS_DEADLINE) {
                Ok((listener, addr)) => {
                    listeners.insert(listener, addr);
                }
                Err(_) => {
                    let _ = child.kill();
                    bail!("kiln did not report its listeners: {:?}", child.wait()?);
                }
            }
        }
        Ok(KilnServer {
            child,
            command: self.clone(),
            listeners,
        })
    }

    /// Starts the server and waits until `/ready` answers 200.
    pub async fn start(&self) -> anyhow::Result<KilnServer> {
        let server = self.spawn()?;
        server.wait_ready().await?;
        Ok(server)
    }

    /// Runs the server to its exit and collects its output: for flags it refuses at startup.
    pub fn output(&self) -> anyhow::Result<Output> {
        self.command()
            .output()
            .with_context(|| format!("cannot run {}", self.binary.display()))
    }
}

/// A running `kiln server`, killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct KilnServer {
    child: Child,
    command: KilnCommand,
    /// Bound address by listener name (`http`, `grpc`, `otlp-grpc`, `otlp-http`).
    listeners: HashMap<String, String>,
}

impl KilnServer {
    fn listener(&self, name: &str) -> &str {
        self.listeners.get(name).map(String::as_str).unwrap_or("")
    }

    /// The HTTP listener's address.
    pub fn http_addr(&self) -> &str {
        self.listener("http")
    }

    /// The gRPC listener's address (metastore and ingester roles; empty for the others).
    pub fn grpc_addr(&self) -> &str {
        self.listener("grpc")
    }

    /// The OTLP gRPC listener's address (distributor roles; empty for the others).
    pub fn otlp_grpc_addr(&self) -> &str {
        self.listener("otlp-grpc")
    }

    /// The OTLP/HTTP listener's address (distributor roles; empty for the others).
    pub fn otlp_http_addr(&self) -> &str {
        self.listener("otlp-http")
    }

    /// The URL of `path` on the HTTP listener (`url("")` is the base URL).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http_addr())
    }

    /// The command it was started with: starting it again restarts the server on the same data.
    pub fn command(&self) -> &KilnCommand {
        &self.command
    }

    /// The data dir.
    pub fn data_dir(&self) -> &Path {
        self.command.data_dir()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until `/ready` answers 200.
    pub async fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + PROCESS_DEADLINE;
        let client = reqwest::Client::new();
        loop {
            let ready = client
                .get(self.url("/ready"))
                .send()
                .await
                .is_ok_and(|r| r.status() == reqwest::StatusCode::OK);
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("kiln at {} never became ready", self.http_addr());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The whole of `/metrics`.
    pub async fn metrics_text(&self) -> anyhow::Result<String> {
        Ok(reqwest::get(self.url("/metrics")).await?.text().await?)
    }

    /// The value of a metric from `/metrics`, by its name with labels as printed
    /// (`kiln_x_total{tenant="a"}`); an error when it is not there.
    pub async fn metric(&self, name: &str) -> anyhow::Result<f64> {
        let text = self.metrics_text().await?;
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .with_context(|| format!("metric {name} not found in:\n{text}"))
    }

    /// Sends SIGTERM (a graceful shutdown).
    pub fn terminate(&self) -> anyhow::Result<()> {
        signal(self.pid(), "TERM")
    }

    /// Freezes the process (SIGSTOP): its connections hang, as in an outage.
    pub fn pause(&self) -> anyhow::Result<()> {
        signal(self.pid(), "STOP")
    }

    /// Lets a paused process run again (SIGCONT).
    pub fn resume(&self) -> anyhow::Result<()> {
        signal(self.pid(), "CONT")
    }

    /// Kills the process with SIGKILL and reaps it.
    pub fn kill(mut self) {
        self.child.kill().expect("kill -9 the server");
        self.child.wait().expect("reap the server");
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn stop(mut self) -> anyhow::Result<ExitStatus> {
        self.terminate()?;
        self.wait()
    }

    /// Waits for the process to exit; kills it past [`PROCESS_DEADLINE`].
    pub fn wait(&mut self) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + PROCESS_DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!("kiln did not exit within {PROCESS_DEADLINE:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for KilnServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends the signal `name` (`TERM`, `STOP`, `CONT`, ...) to process `pid`.
pub fn signal(pid: u32, name: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .args(["-s", name, &pid.to_string()])
        .status()
        .context("cannot run kill")?;
    ensure!(status.success(), "kill -s {name} {pid}: {status}");
    Ok(())
}
