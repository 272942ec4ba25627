//! Embeds every file under `assets/` in the binary: writes `$OUT_DIR/assets.rs`, a table of
//! (path, bytes) that `src/assets.rs` includes. The UI has no build step, so what is in the
//! folder is what the browser gets.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

fn main() {
    // Read when the script runs, not baked in when it is compiled: checkouts that share a
    // target directory reuse one compiled build script, which must read its own checkout.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let root = Path::new(&manifest_dir).join("assets");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    collect(&root, &mut files);
    files.sort();
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let mut table = fs::File::create(out.join("assets.rs")).expect("cannot create assets.rs");
    writeln!(table, "&[").unwrap();
    for file in files {
        println!("cargo:rerun-if-changed={}", file.display());
        let name = file
            .strip_prefix(&root)
            .expect("under assets/")
            .to_str()
            .expect("asset names are UTF-8")
            .replace('\\', "/");
        writeln!(
            table,
            "    ({name:?}, include_bytes!({:?}).as_slice()),",
            file.display()
        )
        .unwrap();
    }
    writeln!(table, "]").unwrap();
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("cannot read assets/") {
        let path = entry.expect("cannot read assets/").path();
        if path.is_dir() {
            println!("cargo:rerun-if-changed={}", path.display());
            collect(&path, files);
        } else {
            files.push(path);
        }
    }
}
