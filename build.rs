//! Marks the integration tests whose prerequisites this machine lacks as ignored, with the
//! reason, so that they are never counted as passed: for each prerequisite of
//! tests/common/prereq.rs it declares `cfg(missing_<name>)` and sets it when the
//! prerequisite is missing, except under `CI=true`, where every test runs and a missing
//! prerequisite fails it by name. Only file metadata is read: no process is started.
//!
//! Re-run when CI or PATH change, when a tool found goes away, or when a directory a
//! missing tool would be installed into changes.
//!
//! It also names the build: `AUTOPROV_BUILD_ID` is a digest of the sources, the manifest
//! and the lock file. A record this program keeps of what it derived (the last roster's
//! outcomes, `engine::resync`) is used only by the build that wrote it: another build may
//! read rows or match rules otherwise. The lock file counts only where the build uses it
//! (`cargo install` without `--locked` resolves dependencies anew).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

#[allow(dead_code)]
#[path = "tests/common/prereq.rs"]
mod prereq;

fn main() {
    build_id();
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=tests/common/prereq.rs");
    println!("cargo::rerun-if-env-changed=CI");
    println!("cargo::rerun-if-env-changed=PATH");
    let ci = prereq::in_ci();
    let mut watch = BTreeSet::new();
    for need in prereq::Need::ALL {
        let name = need.name();
        println!("cargo::rustc-check-cfg=cfg(missing_{name})");
        match need.probe() {
            Ok(found) => watch.extend(found),
            Err(dirs) => {
                if !ci {
                    println!("cargo::rustc-cfg=missing_{name}");
                }
                watch.extend(dirs);
            }
        }
    }
    for path in watch {
        println!("cargo::rerun-if-changed={}", path.display());
    }
}

/// Sets `AUTOPROV_BUILD_ID` to a digest of build.rs, Cargo.toml, Cargo.lock and every file
/// under src/ (paths and contents, in path order).
fn build_id() {
    use std::hash::{Hash, Hasher};
    let mut files = vec![
        PathBuf::from("build.rs"),
        PathBuf::from("Cargo.toml"),
        PathBuf::from("Cargo.lock"),
    ];
    under(Path::new("src"), &mut files);
    files.sort();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for file in &files {
        file.hash(&mut hasher);
        std::fs::read(file).unwrap_or_default().hash(&mut hasher);
    }
    for watched in ["src", "Cargo.toml", "Cargo.lock"] {
        println!("cargo::rerun-if-changed={watched}");
    }
    println!(
        "cargo::rustc-env=AUTOPROV_BUILD_ID={:016x}",
        hasher.finish()
    );
}

/// Every file under `dir`, into `files`.
fn under(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => under(&path, files),
            Ok(_) => files.push(path),
            Err(_) => {}
        }
    }
}
