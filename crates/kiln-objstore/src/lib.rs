//! Object storage chosen by URL. Kiln writes every object once and never rewrites it in
//! place, so any store object_store supports will do.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::memory::InMemory;
use object_store::path::Path;

mod cloud;
mod durable;
mod metered;

pub use durable::DurableFileSystem;
pub use metered::{MeteredStore, StoreMetrics};

pub use object_store;

/// A configured object store and the prefix inside it under which Kiln keeps its objects.
#[derive(Clone, Debug)]
pub struct Storage {
    /// The store.
    pub store: Arc<dyn ObjectStore>,
    /// Prefix of every Kiln object (empty for the store's root).
    pub prefix: Path,
}

impl Storage {
    /// Joins `relative` onto the prefix.
    pub fn path(&self, relative: &str) -> Path {
        let mut path = self.prefix.clone();
        for part in relative.split('/').filter(|p| !p.is_empty()) {
            path = path.clone().join(part);
        }
        path
    }

    /// The same store with its requests counted and timed in `metrics`.
    pub fn metered(self, metrics: StoreMetrics) -> Self {
        Self {
            store: Arc::new(MeteredStore::new(self.store, metrics)),
            prefix: self.prefix,
        }
    }

    /// The in-memory store, for tests.
    pub fn in_memory() -> Self {
        Self {
            store: Arc::new(InMemory::new()),
            prefix: Path::default(),
        }
    }
}

/// S3 settings that do not fit in the URL.
#[derive(Clone, Debug, Default)]
pub struct S3Options {
    /// Endpoint of an S3-compatible server (http://host:port); AWS when absent.
    pub endpoint: Option<String>,
    /// Region; `us-east-1` when absent and not in the environment.
    pub region: Option<String>,
    /// Path-style requests (`endpoint/bucket/key`) instead of virtual-hosted style.
    pub force_path_style: bool,
    /// Allow plain HTTP endpoints.
    pub allow_http: bool,
    /// Access key id; otherwise from AWS_ACCESS_KEY_ID.
    pub access_key_id: Option<String>,
    /// Secret access key; otherwise from AWS_SECRET_ACCESS_KEY.
    pub secret_access_key: Option<String>,
}

/// Google Cloud Storage settings (`gs://bucket/prefix`); credentials otherwise from the usual
/// `GOOGLE_*` environment variables.
#[derive(Clone, Debug, Default)]
pub struct GcsOptions {
    /// Base URL of a GCS-compatible server (an emulator); Google's when absent.
    pub endpoint: Option<String>,
    /// Path of a service account JSON file (else GOOGLE_SERVICE_ACCOUNT or
    /// GOOGLE_APPLICATION_CREDENTIALS, else the metadata server); one with
    /// `"disable_oauth": true` sends no token (emulators).
    pub service_account_path: Option<String>,
}

/// Azure Blob Storage settings (`az://container/prefix`); credentials otherwise from the usual
/// `AZURE_STORAGE_*` environment variables.
#[derive(Clone, Debug, Default)]
pub struct AzureOptions {
    /// Storage account name.
    pub account: Option<String>,
    /// Storage account access key.
    pub access_key: Option<String>,
    /// Blob endpoint (e.g. a private endpoint); derived from the account when absent.
    pub endpoint: Option<String>,
    /// Use the Azurite emulator's well-known account (endpoint from AZURITE_BLOB_STORAGE_URL or
    /// `endpoint`, default http://127.0.0.1:10000).
    pub use_emulator: bool,
}

/// Settings of every kind of store; only the one the URL names is used.
#[derive(Clone, Debug, Default)]
pub struct StorageOptions {
    /// For `s3://`.
    pub s3: S3Options,
    /// For `gs://`.
    pub gcs: GcsOptions,
    /// For `az://`.
    pub azure: AzureOptions,
}

/// A storage URL that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The URL does not parse.
    #[error("invalid storage url {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// The scheme is not one Kiln supports.
    #[error("unsupported storage scheme {0:?}: use file://, s3://, gs://, az:// or memory://")]
    UnsupportedScheme(String),
    /// The store could not be set up.
    #[error("cannot open storage {url:?}: {source}")]
    Open {
        url: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Each request is bounded, and failed ones are retried with backoff (object_store retries 5xx,
/// timeouts and connection errors) within 30 s before the caller sees the error.
pub(crate) fn client_options() -> (object_store::ClientOptions, object_store::RetryConfig) {
    let client = object_store::ClientOptions::new()
        .with_timeout(std::time::Duration::from_secs(10))
        .with_connect_timeout(std::time::Duration::from_secs(2));
    let retry = object_store::RetryConfig {
        max_retries: 6,
        retry_timeout: std::time::Duration::from_secs(30),
        ..object_store::RetryConfig::default()
    };
    (client, retry)
}

/// Opens the store named by `url`: `file:///abs/dir`, `memory://`, `s3://bucket/prefix`,
/// `gs://bucket/prefix` (also `gcs://`) or `az://container/prefix` (also `azure://`).
pub fn open(url: &str, options: &StorageOptions) -> Result<Storage, StorageError> {
    let s3 = &options.s3;
    let parsed = url::Url::parse(url).map_err(|e| StorageError::InvalidUrl {
        url: url.to_string(),
        reason: e.to_string(),
    })?;
    let open_err = |source: Box<dyn std::error::Error + Send + Sync>| StorageError::Open {
        url: url.to_string(),
        source,
    };
    match parsed.scheme() {
        "file" => {
            let dir = parsed
                .to_file_path()
                .map_err(|()| StorageError::InvalidUrl {
                    url: url.to_string(),
                    reason: "not an absolute file path".to_string(),
                })?;
            std::fs::create_dir_all(&dir).map_err(|e| open_err(Box::new(e)))?;
            let store = DurableFileSystem::new(&dir).map_err(|e| open_err(Box::new(e)))?;
            Ok(Storage {
                store: Arc::new(store),
                prefix: Path::default(),
            })
        }
        "memory" => Ok(Storage::in_memory()),
        "s3" => {
            let bucket = bucket_of(&parsed, url)?;
            let (client, retry) = client_options();
            let mut builder = AmazonS3Builder::from_env()
                .with_client_options(client)
                .with_retry(retry)
                .with_bucket_name(bucket)
                .with_virtual_hosted_style_request(!s3.force_path_style)
                .with_allow_http(s3.allow_http);
            if let Some(endpoint) = &s3.endpoint {
                builder = builder.with_endpoint(endpoint);
            }
            builder = builder.with_region(
                s3.region
                    .clone()
                    .or_else(|| std::env::var("AWS_REGION").ok())
                    .unwrap_or_else(|| "us-east-1".to_string()),
            );
            if let Some(key) = &s3.access_key_id {
                builder = builder.with_access_key_id(key);
            }
            if let Some(secret) = &s3.secret_access_key {
                builder = builder.with_secret_access_key(secret);
            }
            let store = builder.build().map_err(|e| open_err(Box::new(e)))?;
            Ok(Storage {
                store: Arc::new(store),
                prefix: Path::from(parsed.path().trim_matches('/')),
            })
        }
        "gs" | "gcs" => {
            let bucket = bucket_of(&parsed, url)?;
            let store = cloud::open_gcs(bucket, &options.gcs).map_err(open_err)?;
            Ok(Storage {
                store,
                prefix: Path::from(parsed.path().trim_matches('/')),
            })
        }
        "az" | "azure" => {
            let container = bucket_of(&parsed, url)?;
            let store = cloud::open_azure(container, &options.azure).map_err(open_err)?;
            Ok(Storage {
                store,
                prefix: Path::from(parsed.path().trim_matches('/')),
            })
        }
        other => Err(StorageError::UnsupportedScheme(other.to_string())),
    }
}

/// The bucket (or container) of `scheme://bucket/prefix`.
fn bucket_of<'a>(parsed: &'a url::Url, url: &str) -> Result<&'a str, StorageError> {
    parsed
        .host_str()
        .filter(|b| !b.is_empty())
        .ok_or_else(|| StorageError::InvalidUrl {
            url: url.to_string(),
            reason: "missing bucket".to_string(),
        })
}

#[cfg(test)]
mod tests {
    use object_store::{ObjectStoreExt, PutPayload};

    use super::*;

    #[tokio::test]
    async fn file_store_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}/objects", dir.path().display());
        let storage = open(&url, &StorageOptions::default()).unwrap();
        let path = storage.path("segments/0/a.bin");
        storage
            .store
            .put(&path, PutPayload::from_static(b"hello"))
            .await
            .unwrap();
        let got = storage
            .store
            .get(&path)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(got, bytes::Bytes::from_static(b"hello"));
        assert!(dir.path().join("objects/segments/0/a.bin").exists());
    }

    #[test]
    fn rejects_unknown_schemes() {
        let err = open("ftp://x/y", &StorageOptions::default()).unwrap_err();
        assert!(
            err.to_string().contains("unsupported storage scheme"),
            "{err}"
        );
        assert!(open("not a url", &StorageOptions::default()).is_err());
    }
}
