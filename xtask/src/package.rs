//! The library's release checks in `cargo xtask test`: the publishable crates' package
//! contents, `cargo publish --dry-run`, and type-checks of the library for other platforms.

use std::path::Path;

use serde::Deserialize;

use crate::install;
use crate::util::{cargo, output, run};

/// Targets the library is type-checked for (`cargo clippy`, so no linker is needed): the
/// serial, thread and rayon pools must build on Windows; macOS also gets the process pool.
pub const CROSS_TARGETS: [&str; 2] = ["x86_64-pc-windows-gnu", "aarch64-apple-darwin"];

/// Files every package must hold.
const REQUIRED: [&str; 4] = ["Cargo.toml", "README.md", "LICENSE-MIT", "LICENSE-APACHE"];

/// The largest file a package may hold: sources and small fixtures only.
const MAX_FILE_BYTES: u64 = 256 * 1024;

#[derive(Deserialize)]
struct Metadata {
    packages: Vec<Package>,
}

#[derive(Deserialize)]
struct Package {
    name: String,
    manifest_path: String,
    /// `None`: publishable anywhere; `Some([])`: `publish = false`.
    publish: Option<Vec<String>>,
}

/// The workspace's publishable packages: name and directory.
fn publishable() -> Result<Vec<(String, std::path::PathBuf)>, String> {
    let json = output(cargo().args(["metadata", "--no-deps", "--format-version", "1"]))
        .ok_or("`cargo metadata` failed")?;
    let metadata: Metadata =
        serde_json::from_str(&json).map_err(|e| format!("reading `cargo metadata`: {e}"))?;
    Ok(metadata
        .packages
        .into_iter()
        .filter(|p| {
            p.publish
                .as_ref()
                .is_none_or(|registries| !registries.is_empty())
        })
        .map(|p| {
            let dir = Path::new(&p.manifest_path)
                .parent()
                .unwrap_or(Path::new("."))
                .to_path_buf();
            (p.name, dir)
        })
        .collect())
}

/// Why `path` (as `cargo package --list` prints it) must not be in a package, if it must not.
pub fn forbidden(path: &str) -> Option<&'static str> {
    let first = path.split('/').next().unwrap_or(path);
    if matches!(first, "target" | "node_modules" | "pkg" | "www" | "docs") {
        return Some("build output or a repository folder the crate does not need");
    }
    let extension = path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    if let Some("png" | "jpg" | "jpeg" | "gif" | "svg" | "webp" | "wasm" | "crate") =
        extension.as_deref()
    {
        return Some("an image or a binary the crate does not need");
    }
    None
}

/// The problems with a package's file list (`cargo package --list`), whose sources are in
/// `dir`: forbidden files, files too large, required files missing.
pub fn problems(files: &[&str], dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for file in files {
        if let Some(why) = forbidden(file) {
            found.push(format!("{file}: {why}"));
        }
        // Files cargo generates (Cargo.toml.orig, .cargo_vcs_info.json...) are not on disk.
        if let Ok(meta) = std::fs::metadata(dir.join(file)) {
            if meta.len() > MAX_FILE_BYTES {
                found.push(format!(
                    "{file}: {} bytes, more than the {MAX_FILE_BYTES} a source file needs",
                    meta.len()
                ));
            }
        }
    }
    for required in REQUIRED {
        if !files.contains(&required) {
            found.push(format!("{required} is missing"));
        }
    }
    found
}

/// Checks every publishable package's contents, then `cargo publish --dry-run` of them all
/// (packaged together, so path dependencies not yet on crates.io resolve to each other).
pub fn check_packages() -> Result<(), String> {
    let packages = publishable()?;
    if packages.is_empty() {
        return Err("no publishable package found".into());
    }
    let mut all = Vec::new();
    for (name, dir) in &packages {
        let mut list = cargo();
        list.args(["package", "--list", "--allow-dirty", "-p", name]);
        eprintln!("$ cargo package --list --allow-dirty -p {name}");
        let listed = output(&mut list).ok_or(format!("`cargo package --list -p {name}` failed"))?;
        let files: Vec<&str> = listed
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        all.extend(
            problems(&files, dir)
                .into_iter()
                .map(|p| format!("{name}: {p}")),
        );
    }
    if !all.is_empty() {
        return Err(format!(
            "package contents (fix `include` in the manifests):\n  {}",
            all.join("\n  ")
        ));
    }
    forget_earlier_packaging(&packages)?;
    // --allow-dirty: the check runs on work in progress too; CI's checkout is clean anyway.
    run(cargo()
        .args(["publish", "--dry-run", "--workspace", "--allow-dirty"])
        .arg("--target-dir")
        .arg(verify_target_dir()))
}

/// Where the dry run builds: a folder of its own, so its builds of the packaged crates are
/// never mistaken for the workspace's.
fn verify_target_dir() -> std::path::PathBuf {
    crate::util::target_dir().join("publish-check")
}

/// Removes what earlier dry runs left that cargo would take for this run's packages.
///
/// The verification builds each package against the others' fresh tarballs, served from a
/// temporary local registry, and cargo takes a registry crate as unchanged once built or
/// unpacked (one version of a registry crate is assumed never to change): after a change to
/// core an earlier run's core would be linked into the library's verification and fail on an
/// API it lacks. So the dry run's own build of our packages is forgotten (its other
/// dependencies stay built), and so are our packages' unpacked copies under
/// `$CARGO_HOME/registry/src/-<hash>/` (local registries; crates.io's folder is left alone).
fn forget_earlier_packaging(packages: &[(String, std::path::PathBuf)]) -> Result<(), String> {
    let ours = |name: &str| {
        packages.iter().any(|(package, _)| {
            let stem = package.replace('-', "_");
            [package.as_str(), stem.as_str()].iter().any(|p| {
                name.strip_prefix(p)
                    .is_some_and(|rest| is_version_suffix(rest) || is_build_suffix(rest))
            })
        })
    };
    let mut folders = vec![crate::util::target_dir().join("package")];
    for dir in ["debug/.fingerprint", "debug/deps", "debug/build"] {
        folders.push(verify_target_dir().join(dir));
    }
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")));
    if let Some(home) = cargo_home {
        if let Ok(registries) = std::fs::read_dir(home.join("registry").join("src")) {
            folders.extend(
                registries
                    .flatten()
                    .filter(|r| r.file_name().to_string_lossy().starts_with('-'))
                    .map(|r| r.path()),
            );
        }
    }
    let remove = |path: &Path| {
        let gone = if path.is_dir() {
            std::fs::remove_dir_all(path)
        } else {
            std::fs::remove_file(path)
        };
        gone.map_err(|e| format!("cannot remove {}: {e}", path.display()))
    };
    let packaged = crate::util::target_dir().join("package");
    if packaged.exists() {
        remove(&packaged)?;
    }
    for folder in &folders[1..] {
        let Ok(entries) = std::fs::read_dir(folder) else {
            continue;
        };
        for entry in entries.flatten() {
            if ours(&entry.file_name().to_string_lossy()) {
                remove(&entry.path())?;
            }
        }
    }
    Ok(())
}

/// Whether `rest` is what follows a crate's name in a build folder's entry: `-<hash>...`.
fn is_build_suffix(rest: &str) -> bool {
    rest.strip_prefix('-')
        .is_some_and(|h| h.len() >= 16 && h.chars().take(16).all(|c| c.is_ascii_hexdigit()))
}

/// Whether `rest` is what follows a package's name in an unpacked crate's folder: `-<version>`.
fn is_version_suffix(rest: &str) -> bool {
    rest.strip_prefix('-')
        .is_some_and(|v| v.starts_with(|c: char| c.is_ascii_digit()))
}

/// Crates a library-only dependent must never compile: the command's, not the library's.
const NOT_IN_THE_LIBRARY: [&str; 8] = [
    "clap",
    "plotters",
    "tiny_http",
    "ctrlc",
    "indicatif",
    "env_logger",
    "serde_json",
    "assert_cmd",
];

/// The distinct packages in `cargo tree --prefix none` output (the ` (*)` repeats and
/// ` (proc-macro)` marks removed), as `name version`.
pub fn tree_packages(tree: &str) -> Vec<String> {
    let mut packages: Vec<String> = tree
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            Some(format!("{} {}", words.next()?, words.next()?))
        })
        .collect();
    packages.sort();
    packages.dedup();
    packages
}

/// Checks that depending on `primepool` compiles none of the command's crates, on any
/// target, and says how many crates it does compile.
pub fn check_lean() -> Result<(), String> {
    let tree = output(cargo().args([
        "tree",
        "-p",
        "primepool",
        "-e",
        "normal",
        "--target",
        "all",
        "--prefix",
        "none",
    ]))
    .ok_or("`cargo tree -p primepool` failed")?;
    let packages = tree_packages(&tree);
    let heavy: Vec<&String> = packages
        .iter()
        .filter(|p| NOT_IN_THE_LIBRARY.contains(&p.split(' ').next().unwrap_or_default()))
        .collect();
    if !heavy.is_empty() {
        return Err(format!(
            "the library depends on the command's crates: {heavy:?} (they belong in cli/)"
        ));
    }
    let host = output(cargo().args([
        "tree",
        "-p",
        "primepool",
        "-e",
        "normal",
        "--prefix",
        "none",
    ]))
    .ok_or("`cargo tree -p primepool` failed")?;
    eprintln!(
        "xtask: a dependent of primepool compiles {} crates on this host (primepool and \
         primepool-core included); none of the command's on any target",
        tree_packages(&host).len()
    );
    Ok(())
}

/// Type-checks the library for the other platforms, with its lints as errors.
pub fn check_platforms() -> Result<(), String> {
    for target in CROSS_TARGETS {
        install::rustup_target(None, target)?;
        run(cargo().args([
            "clippy",
            "-p",
            "primepool",
            "--target",
            target,
            "--",
            "-D",
            "warnings",
        ]))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::root;

    #[test]
    fn only_a_packages_own_unpacked_folders_are_its_versions() {
        assert!(is_version_suffix("-0.1.0"));
        assert!(
            !is_version_suffix("-core-0.1.0"),
            "primepool-core is not a primepool version"
        );
        assert!(!is_version_suffix("0.1.0"));
        assert!(!is_version_suffix(""));
        assert!(is_build_suffix("-fba2aec693097094"));
        assert!(is_build_suffix("-fba2aec693097094.rmeta"));
        assert!(!is_build_suffix("_core-fba2aec693097094"));
        assert!(!is_build_suffix("-cli"));
    }

    #[test]
    fn tree_packages_counts_each_package_once() {
        let tree = "primepool v0.1.0 (/w/native)\nrayon v1.11.0\nrayon-core v1.13.0\n\
                    serde_derive v1.0.229 (proc-macro)\nrayon v1.11.0 (*)\n\n";
        assert_eq!(
            tree_packages(tree),
            [
                "primepool v0.1.0",
                "rayon v1.11.0",
                "rayon-core v1.13.0",
                "serde_derive v1.0.229"
            ]
        );
    }

    #[test]
    fn the_library_compiles_none_of_the_commands_crates() {
        check_lean().unwrap();
    }

    #[test]
    fn build_output_screenshots_and_repository_folders_are_refused() {
        for path in [
            "target/debug/libprimepool.rlib",
            "docs/screenshot.png",
            "www/index.html",
            "assets/logo.SVG",
            "pkg/plain/primepool_web_bg.wasm",
        ] {
            assert!(forbidden(path).is_some(), "{path} should be refused");
        }
    }

    #[test]
    fn sources_fixtures_and_licences_pass() {
        for path in [
            "src/lib.rs",
            "src/process/mod.rs",
            "tests/seed_9900_9999.txt",
            "tests/seed_reference.py",
            "LICENSE-MIT",
            "README.md",
            "Cargo.toml.orig",
        ] {
            assert_eq!(forbidden(path), None, "{path}");
        }
    }

    #[test]
    fn a_package_without_readme_or_licences_is_reported() {
        let found = problems(&["Cargo.toml", "src/lib.rs"], &root().join("core"));
        assert_eq!(
            found,
            [
                "README.md is missing",
                "LICENSE-MIT is missing",
                "LICENSE-APACHE is missing"
            ]
        );
    }

    #[test]
    fn a_file_too_large_for_a_package_is_reported() {
        let dir = std::env::temp_dir().join(format!("xtask-package-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("big.txt"), vec![b'x'; MAX_FILE_BYTES as usize + 1]).unwrap();
        std::fs::write(dir.join("small.txt"), b"fine").unwrap();
        let files = [
            "Cargo.toml",
            "README.md",
            "LICENSE-MIT",
            "LICENSE-APACHE",
            "big.txt",
            "small.txt",
        ];
        let found = problems(&files, &dir);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with("big.txt: 262145 bytes"), "{found:?}");
    }

    #[test]
    fn the_workspace_publishes_core_the_library_and_the_command_only() {
        let mut names: Vec<String> = publishable().unwrap().into_iter().map(|(n, _)| n).collect();
        names.sort();
        assert_eq!(names, ["primepool", "primepool-cli", "primepool-core"]);
    }
}
