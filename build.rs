//! Build script: compiles `pause/pause.rs` (no crates, no std) into a static
//! executable `$OUT_DIR/pause`, which `agent::images` embeds with
//! `include_bytes!` as the built-in pause image.
//!
//! It uses the same compiler cargo uses (`$RUSTC`) for the crate's target
//! (`$TARGET`), and reruns only when `pause/pause.rs` changes. A failed
//! static build fails the whole build with the compiler's output.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=pause/pause.rs");

    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let target = std::env::var("TARGET").unwrap_or_else(|_| "x86_64-unknown-linux-gnu".into());
    let Some(out_dir) = std::env::var_os("OUT_DIR").map(PathBuf::from) else {
        fail("OUT_DIR is not set (build.rs must run under cargo)");
    };
    let out = out_dir.join("pause");

    let result = Command::new(&rustc)
        .args([
            "--edition",
            "2021",
            "--crate-type",
            "bin",
            "--crate-name",
            "pause",
        ])
        .args(["-C", "opt-level=z", "-C", "panic=abort", "-C", "lto"])
        .args(["-C", "strip=symbols", "-C", "target-feature=+crt-static"])
        .args(["-C", "debuginfo=0", "--target", &target])
        .arg("-o")
        .arg(&out)
        .arg("pause/pause.rs")
        // Flags meant for the skiff crate (instrumentation, other linkers)
        // must not leak into this standalone program.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .output();
    match result {
        Ok(o) if o.status.success() => {}
        Ok(o) => fail(&format!(
            "compiling pause/pause.rs statically for {target} failed ({}); the static C \
             library is needed (Debian: apt-get install libc6-dev):\n{}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )),
        Err(e) => fail(&format!(
            "cannot run {}: {e}",
            PathBuf::from(&rustc).display()
        )),
    }

    let size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    if size == 0 {
        fail(&format!(
            "{} is missing or empty after compiling pause/pause.rs",
            out.display()
        ));
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("error: skiff build script: {msg}");
    std::process::exit(1);
}
