//! A real S3-compatible server for the tests: moto's server from tests/s3/.venv (installed by
//! .ci/test), on a free loopback port, with one bucket.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running moto server.
pub(crate) struct S3Server {
    child: Child,
    pub(crate) endpoint: String,
}

pub(crate) const BUCKET: &str = "kiln";

impl S3Server {
    pub(crate) async fn start() -> Self {
        let port = crate::harness::free_port();
        let binary = std::env::var_os("KILN_MOTO_SERVER")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("../../tests/s3/.venv/bin/moto_server")
            });
        let child = Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {} (run .ci/test to install it): {e}",
                    binary.display()
                )
            });
        let endpoint = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(response) = client.put(format!("{endpoint}/{BUCKET}")).send().await
                && response.status().is_success()
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "moto_server never answered at {endpoint}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self { child, endpoint }
    }

    /// The `kiln server` flags that put the object store on this server.
    pub(crate) fn flags(&self) -> Vec<String> {
        vec![
            format!("--storage=s3://{BUCKET}/data"),
            format!("--storage.s3.endpoint={}", self.endpoint),
            "--storage.s3.region=us-east-1".to_string(),
            "--storage.s3.force-path-style".to_string(),
            "--storage.s3.allow-http".to_string(),
            "--storage.s3.access-key-id=test".to_string(),
            "--storage.s3.secret-access-key=test".to_string(),
        ]
    }

    /// Freezes the server (SIGSTOP): connections hang, as in an outage.
    pub(crate) fn pause(&self) {
        signal(self.child.id(), "-STOP");
    }

    /// Lets it run again (SIGCONT).
    pub(crate) fn resume(&self) {
        signal(self.child.id(), "-CONT");
    }
}

pub(crate) fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal} {pid}");
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
