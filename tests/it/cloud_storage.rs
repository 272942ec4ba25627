//! Azure Blob Storage through Azurite, Microsoft's emulator (tests/cloud/node_modules, installed
//! by .ci/test), on a free loopback port: an all-in-one server on `az://` stores exact totals
//! and keeps them across a restart, with nothing written to the local disk but the metastore.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::cluster::stored_total;
use crate::harness::{KilnServer, input_totals};
use crate::query::push_every_profile;

const CONTAINER: &str = "kiln";

/// A running Azurite blob service.
struct Azurite {
    child: Child,
    endpoint: String,
    _dir: tempfile::TempDir,
}

fn cloud_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/cloud")
}

impl Azurite {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = crate::harness::free_port();
        let binary = cloud_dir().join("node_modules/.bin/azurite-blob");
        let child = Command::new(&binary)
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .arg("--location")
            .arg(dir.path())
            .args(["--silent", "--skipApiVersionCheck"])
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
        let deadline = Instant::now() + Duration::from_secs(60);
        while reqwest::get(&endpoint).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "azurite never answered at {endpoint}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let azurite = Self {
            child,
            endpoint,
            _dir: dir,
        };
        azurite.blobs("create");
        azurite
    }

    /// Runs tests/cloud/azure_blobs.py (the Azure SDK) and returns its output lines.
    fn blobs(&self, command: &str) -> Vec<String> {
        let output = Command::new(cloud_dir().join(".venv/bin/python"))
            .arg(cloud_dir().join("azure_blobs.py"))
            .args([command, &self.endpoint, CONTAINER])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "azure_blobs.py {command}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .map(String::from)
            .collect()
    }

    async fn start_kiln(&self, data_dir: &std::path::Path) -> KilnServer {
        let storage = format!("--storage=az://{CONTAINER}/data");
        let server = KilnServer::spawn_with_env(
            data_dir,
            &[&storage, "--storage.azure.use-emulator"],
            &[("AZURITE_BLOB_STORAGE_URL", &self.endpoint)],
        )
        .unwrap();
        server.wait_ready().await.unwrap();
        server
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_azure_store_keeps_exact_totals_across_a_restart() {
    let azurite = Azurite::start().await;
    let data_dir = tempfile::tempdir().unwrap();
    let server = azurite.start_kiln(data_dir.path()).await;
    let profiles = push_every_profile(&server).await;

    let check = |server: KilnServer| {
        let profiles = &profiles;
        async move {
            let mut checked = 0;
            for (service, profile) in profiles {
                for (profile_type, expected) in input_totals(profile) {
                    let total = stored_total(&server, &profile_type, service).await;
                    assert_eq!(total, expected, "{service} {profile_type}");
                    checked += 1;
                }
            }
            assert_eq!(checked, 72);
            server
        }
    };
    let server = check(server).await;
    // Segments went to Azure, not to the local disk: every registered block is a blob.
    assert!(!data_dir.path().join("objects").exists());
    let blobs = azurite.blobs("list");
    let blocks = server.registered_blocks().await;
    assert!(!blocks.is_empty());
    for block in &blocks {
        let name = format!("data/{}", block.path);
        assert!(blobs.contains(&name), "{name} not in {blobs:?}");
    }

    server.stop().unwrap();
    let server = azurite.start_kiln(data_dir.path()).await;
    check(server).await.stop().unwrap();
}
