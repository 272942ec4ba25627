//! What the `metastore` and `cluster` benchmarks share: the kiln binary they start, and their
//! list of figures, printed as measured and written as JSON at the end.

use std::path::{Path, PathBuf};

use serde::Serialize;

/// The kiln binary to start: `--kiln-bin`, or `kiln` beside this program; it must exist.
pub(crate) fn kiln_binary(flag: Option<&PathBuf>) -> anyhow::Result<PathBuf> {
    let binary = match flag {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("kiln"),
    };
    anyhow::ensure!(
        binary.exists(),
        "kiln binary not found at {} (build it or pass --kiln-bin)",
        binary.display()
    );
    Ok(binary)
}

/// One measured figure.
#[derive(Debug, Serialize)]
struct Figure {
    name: String,
    value: f64,
    unit: &'static str,
}

/// The figures of one run, in the order measured.
#[derive(Debug, Default)]
pub(crate) struct Figures {
    list: Vec<Figure>,
}

impl Figures {
    /// Prints a figure and keeps it for the JSON report.
    pub(crate) fn add(&mut self, name: impl Into<String>, value: f64, unit: &'static str) {
        let name = name.into();
        println!("{name:<64} {value:>12.1} {unit}");
        self.list.push(Figure { name, value, unit });
    }

    /// Writes every figure as JSON to `path`, when given.
    pub(crate) fn write_json(&self, path: Option<&Path>) -> anyhow::Result<()> {
        if let Some(path) = path {
            std::fs::write(path, serde_json::to_string_pretty(&self.list)?)?;
        }
        Ok(())
    }
}
