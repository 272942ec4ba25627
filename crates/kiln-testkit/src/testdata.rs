//! The shared test data (`../shared/testdata` beside the repository, or `KILN_TESTDATA`).

use std::path::PathBuf;

/// The test data folder.
pub fn dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KILN_TESTDATA") {
        return PathBuf::from(dir);
    }
    crate::workspace_dir().join("../shared/testdata")
}

/// Decoded sizes of the Go CPU profiles that the small-profile workload pushes (`kiln-loadgen
/// --profiles go-small`, and the `small_profiles` kernel benchmark): from a quiet service's 10 s
/// of CPU (a few hundred samples) up to a moderately busy one's.
pub const SMALL_PROFILE_BYTES: std::ops::RangeInclusive<usize> = 8 * 1024..=32 * 1024;

/// A file of the test data, by its path inside the folder (`jfr/recording.jfr`).
pub fn path(relative: &str) -> PathBuf {
    dir().join(relative)
}

/// The Go pprof files (gzipped, as Go writes them), sorted by name: `(file name, bytes)`.
pub fn pprof_files() -> Vec<(String, Vec<u8>)> {
    let dir = path("pprof");
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("a directory entry").path();
            let name = path
                .file_name()
                .expect("a file name")
                .to_string_lossy()
                .to_string();
            let bytes = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            (name, bytes)
        })
        .collect();
    files.sort();
    files
}
