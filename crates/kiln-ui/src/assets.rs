//! The embedded files and what they are.

/// One file of the UI compiled into the binary.
#[derive(Clone, Copy, Debug)]
pub struct Asset {
    /// Its path under `assets/`, with `/` separators.
    pub path: &'static str,
    /// Its contents.
    pub bytes: &'static [u8],
}

/// Every file under `assets/`, sorted by path (written by `build.rs`).
const FILES: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// The embedded file at `path`, if there is one.
pub fn embedded(path: &str) -> Option<Asset> {
    FILES
        .binary_search_by(|(name, _)| (*name).cmp(path))
        .ok()
        .map(|i| Asset {
            path: FILES[i].0,
            bytes: FILES[i].1,
        })
}

/// Whether `path` names a file below a folder without leaving it (no `..`, no absolute path,
/// no empty or hidden components).
pub(crate) fn is_plain_relative(path: &str) -> bool {
    !path.is_empty()
        && path
            .split('/')
            .all(|part| !part.is_empty() && !part.starts_with('.') && !part.contains('\\'))
}

/// The `Content-Type` of a file by its extension.
pub(crate) fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}
