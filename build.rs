//! Bakes the git revision into the binary for `--version` and
//! `pgvigil_build_info`. Packagers without a git checkout set
//! PGVIGIL_GIT_REVISION themselves.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=PGVIGIL_GIT_REVISION");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs");
    let revision = std::env::var("PGVIGIL_GIT_REVISION")
        .ok()
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| {
            Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .and_then(|o| String::from_utf8(o.stdout).ok())
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "unknown".to_string())
        });
    println!("cargo:rustc-env=PGVIGIL_GIT_REVISION={revision}");
}
