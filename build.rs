//! Marks the integration tests whose prerequisites this machine lacks as ignored, with the
//! reason, so that they are never counted as passed: for each prerequisite of
//! tests/common/prereq.rs it declares `cfg(missing_<name>)` and sets it when the
//! prerequisite is missing, except under `CI=true`, where every test runs and a missing
//! prerequisite fails it by name. Only file metadata is read: no process is started.
//!
//! Re-run when CI or PATH change, when a tool found goes away, or when a directory a
//! missing tool would be installed into changes.

use std::collections::BTreeSet;

#[allow(dead_code)]
#[path = "tests/common/prereq.rs"]
mod prereq;

fn main() {
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
