//! The browser test: `tests-e2e/e2e.mjs` drives Debian's Chromium with playwright-core against
//! the built page (see that file for what it checks). Run by `cargo xtask test` after
//! `web::build`.

use std::path::Path;
use std::process::Command;

use primepool_core::workload::Workload;

use crate::install;
use crate::util::{self, root};
use crate::web;

/// The native outputs the page's results must equal, as JSON for the test script:
/// `{"seed": {"start", "end", "outputs"}, "primes": {...}}`.
fn native_outputs() -> String {
    let entry = |workload: Workload, start: u32, end: u32| {
        let outputs: Vec<String> = (start..end)
            .map(|n| workload.function()(n).to_string())
            .collect();
        format!(
            "\"{workload}\": {{\"start\": {start}, \"end\": {end}, \"outputs\": [{}]}}",
            outputs.join(",")
        )
    };
    format!(
        "{{{}, {}}}\n",
        entry(Workload::Seed, 9900, 10_000),
        entry(Workload::Primes, 20_000, 20_400)
    )
}

/// The seed workload's outputs over the page benchmark's range (9900..10000), from native
/// code: what every browser run must return.
pub fn seed_outputs() -> Vec<u32> {
    (9900..10_000).map(Workload::Seed.function()).collect()
}

/// Installs Chromium and the npm packages if missing, then runs the browser test; the report of
/// its main run is left in `target/e2e/report.json`.
pub fn run() -> Result<(), String> {
    install::debian_package("/usr/bin/chromium", "chromium")?;
    web::npm_ci()?;
    let dir = root().join("target/e2e");
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let native = dir.join("native.json");
    write(&native, &native_outputs())?;
    util::run(
        Command::new("node")
            .arg(web::node_tools().join("e2e.mjs"))
            .current_dir(root())
            .env("PRIMEPOOL_NATIVE", &native)
            .env("PRIMEPOOL_FIGURES", dir.join("report.json")),
    )
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn native_outputs_hold_the_seed_reference_values() {
        let json = super::native_outputs();
        assert!(json.starts_with("{\"seed\": {\"start\": 9900, \"end\": 10000"));
        // seed_count_prime(9999) = 9991 is the last seed output.
        assert!(json.contains(",9991]}, \"primes\""), "{json}");
    }
}
