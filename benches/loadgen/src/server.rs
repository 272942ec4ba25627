//! Starts a `kiln server` for the benchmark and measures what it costs.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A running server.
pub(crate) struct Server {
    child: Child,
    pub(crate) base: String,
    pub(crate) data_dir: PathBuf,
}

impl Server {
    /// Starts `binary server` on `data_dir` with loopback listeners on free ports.
    pub(crate) fn start(binary: &Path, data_dir: &Path) -> anyhow::Result<Self> {
        Self::start_with(
            binary,
            data_dir,
            &[
                "--grpc-addr",
                "127.0.0.1:0",
                "--otlp-grpc-addr",
                "127.0.0.1:0",
                "--otlp-http-addr",
                "127.0.0.1:0",
            ],
        )
    }

    /// Starts `binary server` on `data_dir` with a free HTTP port and `args`.
    pub(crate) fn start_with(
        binary: &Path,
        data_dir: &Path,
        args: &[&str],
    ) -> anyhow::Result<Self> {
        let mut child = Command::new(binary)
            .arg("server")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--http-addr", "127.0.0.1:0"])
            .args(args)
            .args(["--log-format", "json"])
            .env("RUST_LOG", "warn,kiln=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let stderr = child.stderr.take().expect("piped");
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line)
                    && event["fields"]["listener"] == "http"
                    && let Some(addr) = event["fields"]["addr"].as_str()
                {
                    let _ = sender.send(addr.to_string());
                }
            }
        });
        let addr = receiver
            .recv_timeout(Duration::from_secs(60))
            .context("kiln did not report its listener")?;
        let server = Self {
            child,
            base: format!("http://{addr}"),
            data_dir: data_dir.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(addr.as_str()).is_err() {
            if Instant::now() > deadline {
                bail!("kiln never accepted connections");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    /// CPU seconds (user + system) the server has used so far.
    pub(crate) fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
            + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        ticks / 100.0 // USER_HZ is 100 on Linux
    }

    /// Peak resident memory in MiB.
    pub(crate) fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    }

    /// Bytes under the data directory's object store and metastore.
    pub(crate) fn stored_bytes(&self) -> (u64, u64) {
        (
            dir_size(&self.data_dir.join("objects")),
            dir_size(&self.data_dir.join("metastore")),
        )
    }

    /// Stops the server with SIGTERM.
    pub(crate) fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| {
            let path = e.path();
            if path.is_dir() {
                dir_size(&path)
            } else {
                e.metadata().map(|m| m.len()).unwrap_or(0)
            }
        })
        .sum()
}
