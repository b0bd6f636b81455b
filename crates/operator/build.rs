//! Stamps the git revision the operator is built from into `datajob_build_info`
//! (`DATAJOB_GIT_REVISION`): set by hand to override, else `git rev-parse`, else
//! `unknown` (a build outside a checkout, e.g. from a source archive).
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=DATAJOB_GIT_REVISION");
    // A new commit or checkout changes HEAD or the ref it names.
    for path in [
        "../../.git/HEAD",
        "../../.git/refs/heads",
        "../../.git/packed-refs",
    ] {
        println!("cargo:rerun-if-changed={path}");
    }
    let revision = std::env::var("DATAJOB_GIT_REVISION")
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
                .filter(|r| !r.is_empty())
        })
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=DATAJOB_GIT_REVISION={revision}");
}
