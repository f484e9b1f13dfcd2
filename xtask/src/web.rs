//! `cargo xtask web [--dist DIR]`: builds both wasm variants of `primepool-web` into
//! `www/pkg/` (git-ignored), installing what is missing; with `--dist`, also writes a
//! self-contained folder ready to deploy as static files.
//!
//! - **plain** (stable): the Web Worker pool, serial, the JS API -> `www/pkg/plain/`.
//! - **atomics** (nightly, `+atomics,+bulk-memory`, `-Z build-std`, feature `rayon`): the same
//!   plus rayon -> `www/pkg/atomics/`. Its flags are set here, for this build only, so the rest
//!   of the workspace stays on stable with default flags.
//!
//! Each variant gets its own target directory, so switching between them never rebuilds.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::install;
use crate::util::{cargo, output, root, run};

/// The `wasm-bindgen` version, which must equal the crate's exactly. Every place that repeats
/// it is listed in the comment above `[dependencies]` in `web/Cargo.toml`.
pub const WASM_BINDGEN_VERSION: &str = "0.2.130";

const WASM: &str = "wasm32-unknown-unknown";

/// Link arguments that make the atomics build's memory shared, imported and thread-ready
/// (current nightlies no longer do it by themselves: without them `initThreadPool` fails
/// with `DataCloneError: #<Memory> could not be cloned`).
const ATOMICS_RUSTFLAGS: &str = "-C target-feature=+atomics,+bulk-memory \
    -C link-arg=--shared-memory -C link-arg=--max-memory=1073741824 -C link-arg=--import-memory \
    -C link-arg=--export=__wasm_init_tls -C link-arg=--export=__tls_size \
    -C link-arg=--export=__tls_align -C link-arg=--export=__tls_base";

/// The wasm features the stable toolchain emits by default (wasm-opt must be told).
const PLAIN_FEATURES: &[&str] = &[
    "--enable-bulk-memory",
    "--enable-nontrapping-float-to-int",
    "--enable-sign-ext",
    "--enable-mutable-globals",
    "--enable-reference-types",
    "--enable-multivalue",
];

/// The folder with the page's source files.
pub fn www() -> PathBuf {
    root().join("www")
}

/// The npm project holding wasm-opt (binaryen) and playwright-core.
pub fn node_tools() -> PathBuf {
    root().join("tests-e2e")
}

/// Makes sure Node.js and npm are there and the npm packages are installed from the lockfile.
pub fn npm_ci() -> Result<(), String> {
    install::debian_package("/usr/bin/node", "nodejs")?;
    install::debian_package("/usr/bin/npm", "npm")?;
    let dir = node_tools();
    let stamp = dir.join("node_modules/.package-lock.json");
    let lock = dir.join("package-lock.json");
    let fresh = match (modified(&stamp), modified(&lock)) {
        (Some(installed), Some(locked)) => installed >= locked,
        _ => false,
    };
    if fresh {
        return Ok(());
    }
    run(Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir))
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The `wasm-bindgen` CLI matching the crate, installed into `target/tools/` on first use
/// (about 3.5 minutes; without `--locked`: its lockfile pins a crate the registry lacks).
pub fn wasm_bindgen_cli() -> Result<PathBuf, String> {
    let prefix = root()
        .join("target/tools")
        .join(format!("wasm-bindgen-{WASM_BINDGEN_VERSION}"));
    let bin = prefix.join("bin/wasm-bindgen");
    let wanted = format!("wasm-bindgen {WASM_BINDGEN_VERSION}");
    let installed = output(Command::new(&bin).arg("--version"));
    if installed.is_some_and(|v| v.trim() == wanted) {
        return Ok(bin);
    }
    run(cargo().args([
        "install",
        "wasm-bindgen-cli",
        "--version",
        WASM_BINDGEN_VERSION,
        "--root",
        &prefix.to_string_lossy(),
    ]))?;
    Ok(bin)
}

/// Installs the toolchains, targets and tools both variants need.
fn ensure_tools() -> Result<PathBuf, String> {
    install::rustup_target(None, WASM)?;
    if output(Command::new("rustup").args(["run", "nightly", "rustc", "--version"])).is_none() {
        run(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    install::rustup_target(Some("nightly"), WASM)?;
    install::rustup_component("nightly", "rust-src")?;
    npm_ci()?;
    wasm_bindgen_cli()
}

/// One build variant.
struct Variant {
    name: &'static str,
    nightly: bool,
}

impl Variant {
    fn target_dir(&self) -> PathBuf {
        root().join("target").join(format!("web-{}", self.name))
    }

    fn cargo_build(&self) -> Command {
        let mut cmd = if self.nightly {
            let mut c = Command::new("rustup");
            c.args(["run", "nightly", "cargo"]);
            // The outer (stable) cargo's variables would pin the stable compiler.
            for var in [
                "CARGO",
                "RUSTC",
                "RUSTDOC",
                "RUSTC_WRAPPER",
                "RUSTUP_TOOLCHAIN",
            ] {
                c.env_remove(var);
            }
            c
        } else {
            Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        };
        cmd.current_dir(root())
            .args(["build", "-p", "primepool-web", "--lib", "--release"])
            .args(["--target", WASM])
            .env("CARGO_TARGET_DIR", self.target_dir())
            // Debug info only bloats what the browser downloads.
            .env("CARGO_PROFILE_RELEASE_DEBUG", "false");
        if self.nightly {
            cmd.args(["--features", "rayon", "-Z", "build-std=panic_abort,std"])
                .env("RUSTFLAGS", ATOMICS_RUSTFLAGS);
        } else {
            cmd.env_remove("RUSTFLAGS");
        }
        cmd
    }

    fn build(&self, wasm_bindgen: &Path, out: &Path) -> Result<(), String> {
        run(&mut self.cargo_build())?;
        let wasm = self
            .target_dir()
            .join(WASM)
            .join("release/primepool_web.wasm");
        let out = out.join(self.name);
        let _ = std::fs::remove_dir_all(&out);
        run(Command::new(wasm_bindgen)
            .args([
                "--target",
                "web",
                "--out-name",
                "primepool_web",
                "--out-dir",
            ])
            .arg(&out)
            .arg(&wasm))?;
        let module = out.join("primepool_web_bg.wasm");
        let wasm_opt = node_tools().join("node_modules/.bin/wasm-opt");
        let mut opt = Command::new(wasm_opt);
        opt.arg(&module).arg("-o").arg(&module).arg("-O3");
        opt.args(PLAIN_FEATURES);
        if self.nightly {
            opt.arg("--enable-threads");
        }
        run(&mut opt)
    }
}

/// Builds both variants into `www/pkg/`.
pub fn build() -> Result<(), String> {
    let wasm_bindgen = ensure_tools()?;
    let out = www().join("pkg");
    for variant in [
        Variant {
            name: "plain",
            nightly: false,
        },
        Variant {
            name: "atomics",
            nightly: true,
        },
    ] {
        variant.build(&wasm_bindgen, &out)?;
    }
    Ok(())
}

/// Headers for static hosts that read a `_headers` file: with them the page is cross-origin
/// isolated and rayon is enabled; without them everything else still works.
const HEADERS: &str =
    "/*\n  Cross-Origin-Opener-Policy: same-origin\n  Cross-Origin-Embedder-Policy: require-corp\n";

/// Copies the page and its built assets into `dist`.
pub fn write_dist(dist: &Path) -> Result<(), String> {
    let www = www();
    copy_dir(&www, dist)
        .map_err(|e| format!("copying {} to {}: {e}", www.display(), dist.display()))?;
    std::fs::write(dist.join("_headers"), HEADERS).map_err(|e| e.to_string())?;
    eprintln!("xtask: the page is in {}", dist.display());
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            if entry.file_name() == "node_modules" {
                continue;
            }
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// Entry point with the arguments after `web`.
pub fn main(args: &[String]) -> Result<(), String> {
    let dist = match args {
        [] => None,
        [flag, dir] if flag == "--dist" => Some(PathBuf::from(dir)),
        _ => return Err("usage: cargo xtask web [--dist DIR]".into()),
    };
    build()?;
    match dist {
        Some(dir) => write_dist(&dir),
        None => {
            eprintln!("xtask: built www/pkg/; serve www/ with `cargo xtask serve`");
            Ok(())
        }
    }
}

/// `cargo xtask serve [--port N]`: builds, then serves `www/` with `primepool serve`.
pub fn serve(args: &[String]) -> Result<(), String> {
    let mut serve_args = vec!["--dir".to_owned(), www().to_string_lossy().into_owned()];
    match args {
        [] => {}
        [flag, port] if flag == "--port" => {
            serve_args.extend(["--port".to_owned(), port.clone()]);
        }
        _ => return Err("usage: cargo xtask serve [--port N]".into()),
    }
    build()?;
    run(cargo()
        .args(["run", "--release", "-p", "primepool-cli", "--", "serve"])
        .args(serve_args))
}
