//! `file://` storage that survives a power loss: an object is on disk, and so is its name,
//! before `put` returns.
//!
//! object_store's `LocalFileSystem` writes to a staging file and renames it into place but
//! never calls fsync, so after a power loss a segment the metastore already registered could
//! be missing or empty. [`DurableFileSystem`] wraps it and, after every successful write,
//! fsyncs the object's file and every directory from the object's up to the store's root (a
//! rename and a newly created directory are durable only once their parent directory is).

use std::fmt;
use std::path::{Path as FsPath, PathBuf};

use async_trait::async_trait;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

/// A `LocalFileSystem` whose writes are fsynced (file and directories) before they return.
#[derive(Debug)]
pub struct DurableFileSystem {
    inner: LocalFileSystem,
    root: PathBuf,
}

impl DurableFileSystem {
    /// The store rooted at `root`, which must exist.
    pub fn new(root: &FsPath) -> Result<Self> {
        Ok(Self {
            inner: LocalFileSystem::new_with_prefix(root)?,
            root: root.to_path_buf(),
        })
    }

    /// Flushes the object at `location` and the directories leading to it to disk.
    async fn sync(&self, location: &Path) -> Result<()> {
        let file = self.inner.path_to_filesystem(location)?;
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || sync_path(&root, &file))
            .await
            .map_err(|e| generic(format!("fsync task failed: {e}")))?
            .map_err(|e| generic(format!("cannot fsync {location}: {e}")))
    }
}

/// fsyncs `file`, then each directory from its parent up to and including `root`.
fn sync_path(root: &FsPath, file: &FsPath) -> std::io::Result<()> {
    std::fs::File::open(file)?.sync_all()?;
    let mut dir = file.parent();
    while let Some(current) = dir {
        std::fs::File::open(current)?.sync_all()?;
        if current == root || !current.starts_with(root) {
            break;
        }
        dir = current.parent();
    }
    Ok(())
}

fn generic(message: String) -> object_store::Error {
    object_store::Error::Generic {
        store: "DurableFileSystem",
        source: message.into(),
    }
}

impl fmt::Display for DurableFileSystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DurableFileSystem({})", self.root.display())
    }
}

#[async_trait]
impl ObjectStore for DurableFileSystem {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let result = self.inner.put_opts(location, payload, opts).await?;
        self.sync(location).await?;
        Ok(result)
    }

    /// Kiln writes every object with one `put`; multipart uploads are refused rather than
    /// left unsynced.
    async fn put_multipart_opts(
        &self,
        location: &Path,
        _opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        Err(object_store::Error::NotImplemented {
            operation: format!("multipart upload of {location} to a durable file store"),
            implementer: "DurableFileSystem".to_string(),
        })
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[std::ops::Range<u64>],
    ) -> Result<Vec<bytes::Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await?;
        self.sync(to).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await?;
        self.sync(to).await
    }
}

#[cfg(test)]
mod tests {
    use object_store::ObjectStoreExt;

    use super::*;

    #[tokio::test]
    async fn writes_land_in_nested_directories_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = DurableFileSystem::new(dir.path()).unwrap();
        let path = Path::from("segments/0/a/b.parquet");
        store
            .put(&path, PutPayload::from_static(b"abc"))
            .await
            .unwrap();
        let bytes = store.get(&path).await.unwrap().bytes().await.unwrap();
        assert_eq!(&bytes[..], b"abc");
        assert!(dir.path().join("segments/0/a/b.parquet").is_file());
        let error = store.put_multipart(&path).await.err().unwrap();
        assert!(error.to_string().contains("multipart"), "{error}");
    }
}
