//! Object storage emulators on free loopback ports, as `.ci/test` installs them: moto's
//! S3-compatible server (`tests/s3/.venv`) and Azurite, Microsoft's Azure Blob Storage emulator
//! (`tests/cloud`, with the Azure SDK in `tests/cloud/.venv`); and an OTLP trace receiver built
//! on the official `opentelemetry-proto` package (`tests/otlp/.venv`). Each is killed when
//! dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};

use crate::process::KilnCommand;

/// How long an emulator may take to answer.
const EMULATOR_DEADLINE: Duration = Duration::from_secs(60);

fn spawn(binary: &Path, command: &mut Command) -> anyhow::Result<Child> {
    command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| {
            format!(
                "cannot run {} (run .ci/test to install it)",
                binary.display()
            )
        })
}

/// A running moto S3 server with one bucket.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    endpoint: String,
    bucket: String,
}

impl Moto {
    /// `KILN_MOTO_SERVER`, else the repository's `tests/s3/.venv/bin/moto_server`.
    pub fn default_binary() -> PathBuf {
        std::env::var_os("KILN_MOTO_SERVER")
            .map(PathBuf::from)
            .unwrap_or_else(|| crate::workspace_dir().join("tests/s3/.venv/bin/moto_server"))
    }

    /// Starts [`Moto::default_binary`] and creates `bucket`.
    pub async fn start(bucket: &str) -> anyhow::Result<Self> {
        Self::start_with(&Self::default_binary(), bucket).await
    }

    /// Starts the moto server `binary` and creates `bucket`, which also tells it answers.
    pub async fn start_with(binary: &Path, bucket: &str) -> anyhow::Result<Self> {
        let port = crate::ports::free_port()?;
        let child = spawn(
            binary,
            Command::new(binary).args(["-H", "127.0.0.1", "-p", &port.to_string()]),
        )?;
        let moto = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            bucket: bucket.to_string(),
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + EMULATOR_DEADLINE;
        loop {
            if let Ok(response) = client
                .put(format!("{}/{bucket}", moto.endpoint))
                .send()
                .await
                && response.status().is_success()
            {
                return Ok(moto);
            }
            ensure!(
                Instant::now() < deadline,
                "moto_server never answered at {}",
                moto.endpoint
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The server's URL.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The `kiln server` flags that put the object store under `prefix` in the bucket.
    pub fn kiln_flags(&self, prefix: &str) -> Vec<String> {
        vec![
            format!("--storage=s3://{}/{prefix}", self.bucket),
            format!("--storage.s3.endpoint={}", self.endpoint),
            "--storage.s3.region=us-east-1".to_string(),
            "--storage.s3.force-path-style".to_string(),
            "--storage.s3.allow-http".to_string(),
            "--storage.s3.access-key-id=test".to_string(),
            "--storage.s3.secret-access-key=test".to_string(),
        ]
    }

    /// Every key of the bucket under `prefix`, as S3's ListObjectsV2 lists them (page by page).
    pub async fn list_keys(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        let client = reqwest::Client::new();
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![
                ("list-type", "2".to_string()),
                ("prefix", prefix.to_string()),
            ];
            if let Some(token) = &token {
                query.push(("continuation-token", token.clone()));
            }
            let body = client
                .get(format!("{}/{}", self.endpoint, self.bucket))
                .query(&query)
                .send()
                .await?
                .error_for_status()?
                .text()
                .await?;
            keys.extend(xml_values(&body, "Key"));
            token = xml_values(&body, "NextContinuationToken")
                .into_iter()
                .next();
            if token.is_none() {
                return Ok(keys);
            }
        }
    }

    /// Freezes the server (SIGSTOP): connections hang, as in an outage.
    pub fn pause(&self) -> anyhow::Result<()> {
        crate::process::signal(self.child.id(), "STOP")
    }

    /// Lets it run again (SIGCONT).
    pub fn resume(&self) -> anyhow::Result<()> {
        crate::process::signal(self.child.id(), "CONT")
    }
}

/// The text of every `<tag>` element of an S3 XML answer (keys are plain paths here).
fn xml_values(body: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    body.split(&open)
        .skip(1)
        .filter_map(|rest| rest.split_once(&close).map(|(value, _)| value.to_string()))
        .collect()
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running Azurite blob service with one container, keeping its data in a temporary folder.
#[derive(Debug)]
pub struct Azurite {
    child: Child,
    endpoint: String,
    container: String,
    _dir: tempfile::TempDir,
}

fn cloud_dir() -> PathBuf {
    crate::workspace_dir().join("tests/cloud")
}

impl Azurite {
    /// Starts `tests/cloud/node_modules/.bin/azurite-blob` and creates `container`.
    pub async fn start(container: &str) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = crate::ports::free_port()?;
        let binary = cloud_dir().join("node_modules/.bin/azurite-blob");
        let child = spawn(
            &binary,
            Command::new(&binary)
                .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
                .arg("--location")
                .arg(dir.path())
                .args(["--silent", "--skipApiVersionCheck"]),
        )?;
        let azurite = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            container: container.to_string(),
            _dir: dir,
        };
        let deadline = Instant::now() + EMULATOR_DEADLINE;
        while reqwest::get(&azurite.endpoint).await.is_err() {
            ensure!(
                Instant::now() < deadline,
                "azurite never answered at {}",
                azurite.endpoint
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        azurite.blobs("create")?;
        Ok(azurite)
    }

    /// Runs `tests/cloud/azure_blobs.py` (the Azure SDK) and returns its output lines.
    fn blobs(&self, command: &str) -> anyhow::Result<Vec<String>> {
        let python = cloud_dir().join(".venv/bin/python");
        let output = Command::new(&python)
            .arg(cloud_dir().join("azure_blobs.py"))
            .args([command, &self.endpoint, &self.container])
            .output()
            .with_context(|| format!("cannot run {}", python.display()))?;
        ensure!(
            output.status.success(),
            "azure_blobs.py {command}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(String::from_utf8(output.stdout)?
            .lines()
            .map(String::from)
            .collect())
    }

    /// The names of the blobs in the container.
    pub fn list_blobs(&self) -> anyhow::Result<Vec<String>> {
        self.blobs("list")
    }

    /// The blob service's URL.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// `command` with its object store under `prefix` in the container (the flags, and the
    /// emulator's address in `AZURITE_BLOB_STORAGE_URL`).
    pub fn store(&self, command: KilnCommand, prefix: &str) -> KilnCommand {
        command
            .arg(format!("--storage=az://{}/{prefix}", self.container))
            .arg("--storage.azure.use-emulator")
            .env("AZURITE_BLOB_STORAGE_URL", &self.endpoint)
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running OTLP/gRPC trace receiver (`tests/otlp/trace_sink.py`) writing every span it
/// receives to a file, one JSON object per line.
#[derive(Debug)]
pub struct TraceSink {
    child: Child,
    endpoint: String,
    file: PathBuf,
}

impl TraceSink {
    /// Starts the receiver, appending spans to `file`, and waits until it accepts connections.
    pub async fn start(file: &Path) -> anyhow::Result<Self> {
        let dir = crate::workspace_dir().join("tests/otlp");
        let python = dir.join(".venv/bin/python");
        let port = crate::ports::free_port()?;
        let child = spawn(
            &python,
            Command::new(&python)
                .arg(dir.join("trace_sink.py"))
                .arg(port.to_string())
                .arg(file),
        )?;
        let sink = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            file: file.to_path_buf(),
        };
        let deadline = Instant::now() + EMULATOR_DEADLINE;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            ensure!(
                Instant::now() < deadline,
                "the trace sink never listened on port {port}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(sink)
    }

    /// The receiver's URL, for `--tracing.otlp-endpoint`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Every span received so far, one JSON object per line.
    pub fn spans(&self) -> Vec<String> {
        std::fs::read_to_string(&self.file)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for TraceSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
