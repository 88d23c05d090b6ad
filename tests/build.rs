//! Builds the real filter as a release `wasm32-wasip1` module so the tests drive exactly what
//! Envoy would load, and hands its path to the crate as `FILTER_WASM`.
//!
//! The nested cargo gets its own target dir: sharing the outer one would deadlock on the build
//! directory lock. Setting `FILTER_WASM` beforehand skips the build (CI can reuse an artifact).

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=FILTER_WASM");
    if let Ok(path) = env::var("FILTER_WASM") {
        println!("cargo:rustc-env=FILTER_WASM={path}");
        return;
    }

    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let root = manifest_dir
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir.clone());
    for path in [
        "filter/src",
        "filter/Cargo.toml",
        "Cargo.lock",
        "Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }

    let target_dir = root.join("target").join("filter-wasm");
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root).args([
        "build",
        "--release",
        "--target",
        "wasm32-wasip1",
        "-p",
        "mcp-auth-filter",
    ]);
    // The outer build's settings describe the host test binary, not the wasm module; letting
    // them leak in would build the module with the wrong flags (or for the wrong target).
    for (key, _) in env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let leaks = key.starts_with("CARGO_ENCODED_")
            || key.starts_with("CARGO_BUILD_")
            || key.starts_with("CARGO_PROFILE_")
            || key.starts_with("CARGO_CFG_")
            || key.starts_with("CARGO_FEATURE_")
            || key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_MANIFEST_")
            || key.starts_with("DEP_")
            || matches!(
                key,
                "RUSTFLAGS"
                    | "RUSTC_WRAPPER"
                    | "RUSTC_WORKSPACE_WRAPPER"
                    | "RUSTDOCFLAGS"
                    | "CARGO_TARGET_DIR"
                    | "CARGO_MAKEFLAGS"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "TARGET"
                    | "HOST"
                    | "PROFILE"
                    | "OPT_LEVEL"
                    | "DEBUG"
                    | "NUM_JOBS"
                    | "OUT_DIR"
                    | "RUSTC_LINKER"
                    | "CARGO_CRATE_NAME"
            );
        if leaks {
            cmd.env_remove(key);
        }
    }

    cmd.env("CARGO_TARGET_DIR", &target_dir);
    let status = cmd.status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => {
            eprintln!(
                "error: building the filter module failed ({s}).\n\
                 Run `cargo build --release --target wasm32-wasip1 -p mcp-auth-filter` to see why, \
                 or set FILTER_WASM=/path/to/mcp_auth_filter.wasm to test a prebuilt module."
            );
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("error: could not run cargo to build the filter module: {e}");
            std::process::exit(1);
        }
    }
    let wasm = target_dir
        .join("wasm32-wasip1")
        .join("release")
        .join("mcp_auth_filter.wasm");
    if !wasm.exists() {
        eprintln!(
            "error: the filter build succeeded but {} is missing",
            wasm.display()
        );
        std::process::exit(1);
    }
    println!("cargo:rustc-env=FILTER_WASM={}", wasm.display());
}
