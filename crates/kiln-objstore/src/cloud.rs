//! Google Cloud Storage and Azure Blob Storage, through object_store's clients with the same
//! request bounds and retries as S3.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;

use crate::{AzureOptions, GcsOptions, client_options};

type OpenError = Box<dyn std::error::Error + Send + Sync>;

pub(crate) fn open_gcs(bucket: &str, gcs: &GcsOptions) -> Result<Arc<dyn ObjectStore>, OpenError> {
    let (mut client, retry) = client_options();
    let mut builder = GoogleCloudStorageBuilder::from_env()
        .with_bucket_name(bucket)
        .with_retry(retry);
    if let Some(endpoint) = &gcs.endpoint {
        client = client.with_allow_http(endpoint.starts_with("http://"));
        builder = builder.with_base_url(endpoint);
    }
    if let Some(path) = &gcs.service_account_path {
        builder = builder.with_service_account_path(path);
    }
    Ok(Arc::new(builder.with_client_options(client).build()?))
}

pub(crate) fn open_azure(
    container: &str,
    azure: &AzureOptions,
) -> Result<Arc<dyn ObjectStore>, OpenError> {
    let (client, retry) = client_options();
    let mut builder = MicrosoftAzureBuilder::from_env()
        .with_container_name(container)
        .with_retry(retry)
        .with_client_options(client)
        .with_use_emulator(azure.use_emulator);
    if let Some(account) = &azure.account {
        builder = builder.with_account(account);
    }
    if let Some(key) = &azure.access_key {
        builder = builder.with_access_key(key);
    }
    if let Some(endpoint) = &azure.endpoint {
        builder = builder
            .with_allow_http(endpoint.starts_with("http://"))
            .with_endpoint(endpoint.clone());
    }
    Ok(Arc::new(builder.build()?))
}
