//! Records the git revision for `--version` and `healthimaging_exporter_build_info`.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=HEALTHIMAGING_EXPORTER_REVISION");
    println!("cargo:rerun-if-changed=.git/HEAD");
    let revision = std::env::var("HEALTHIMAGING_EXPORTER_REVISION")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(|| {
            let out = Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        })
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=HEALTHIMAGING_EXPORTER_REVISION={revision}");
}
