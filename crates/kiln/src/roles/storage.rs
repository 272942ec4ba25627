//! The object store of the roles that read or write blocks.

use anyhow::Context;
use kiln_config::ServerArgs;
use kiln_objstore::{AzureOptions, GcsOptions, S3Options, Storage, StorageOptions};

/// Opens the object store named by `--storage` (default: `<data-dir>/objects`).
pub(crate) fn open(args: &ServerArgs) -> anyhow::Result<Storage> {
    let storage_url = args
        .storage_url()
        .context("cannot resolve the data directory")?;
    let options = StorageOptions {
        s3: S3Options {
            endpoint: args.s3_endpoint.clone(),
            region: args.s3_region.clone(),
            force_path_style: args.s3_force_path_style,
            allow_http: args.s3_allow_http,
            access_key_id: args.s3_access_key_id.clone(),
            secret_access_key: args.s3_secret_access_key.clone(),
        },
        gcs: GcsOptions {
            endpoint: args.gcs_endpoint.clone(),
            service_account_path: args.gcs_service_account_path.clone(),
        },
        azure: AzureOptions {
            account: args.azure_account.clone(),
            access_key: args.azure_access_key.clone(),
            endpoint: args.azure_endpoint.clone(),
            use_emulator: args.azure_use_emulator,
        },
    };
    tracing::info!(storage = %storage_url, "object storage opened");
    Ok(kiln_objstore::open(&storage_url, &options)?)
}
