//! The browser figures: the page's own benchmark (seed workload over 9900..=9999, 2 workers)
//! in headless Chromium, driven by `tests-e2e/figures.mjs`, read back from the reports it
//! writes (`primepool bench --json`'s schema with the browser's cold-run fields).

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use primepool_core::report::{Report, Stats};
use serde::Deserialize;

use super::render::{bound_target, secs, Target};
use super::Figures;
use crate::util::run;
use crate::{browser_test, install, web};

/// Fresh pages (each a cold start) and warm runs per page.
const PAGES: usize = 3;
const REPEAT: usize = 10;

/// What the page adds to each backend's result that this report reads (the rest is ignored).
#[derive(Debug, Clone, Deserialize)]
pub struct PageResult {
    /// The first run, start-up included.
    pub cold_s: f64,
    /// Serial's warm median over this cold run.
    pub cold_speedup_vs_serial: Option<f64>,
    /// Starting the pool alone, where the page times it apart (rayon).
    pub startup_s: Option<f64>,
}

/// One page's report.
pub type PageReport = Report<(), PageResult>;

/// One backend's figures over every page: each the median of the pages' figures, with the
/// best page's beside the warm speed-up.
#[derive(Debug, Clone, PartialEq)]
pub struct BrowserBackend {
    /// `serial`, `workers` or `rayon`.
    pub backend: String,
    /// The median page's warm median, seconds.
    pub warm_s: f64,
    /// Warm speed-up over serial: the median page's, and the best page's.
    pub speedup: Option<(f64, f64)>,
    /// The median page's cold run, seconds.
    pub cold_s: f64,
    /// The median page's cold speed-up over serial's warm median.
    pub cold_speedup: Option<f64>,
    /// The median page's start-up alone, where timed apart.
    pub startup_s: Option<f64>,
}

/// The browser's figures of one report.
#[derive(Debug, Clone, PartialEq)]
pub struct Browser {
    /// Pages loaded (each a cold start).
    pub pages: usize,
    /// Warm runs per backend per page.
    pub repeat: usize,
    /// Per backend, in the page's order.
    pub backends: Vec<BrowserBackend>,
}

impl Browser {
    /// The figures of `backend`, if it ran.
    pub fn get(&self, backend: &str) -> Option<&BrowserBackend> {
        self.backends.iter().find(|b| b.backend == backend)
    }

    /// Combines the pages' reports: per backend, the median over the pages of each figure.
    pub fn from_pages(pages: &[PageReport]) -> Result<Browser, String> {
        let first = pages.first().ok_or("the figures script reported no page")?;
        let mut backends = Vec::new();
        for result in &first.results {
            let name = &result.backend;
            let runs: Vec<_> = pages.iter().filter_map(|p| p.result(name)).collect();
            if runs.len() != pages.len() {
                return Err(format!("backend {name} is missing from some pages"));
            }
            let median = |values: Vec<f64>| Stats::of(&values).median;
            let speedups: Vec<f64> = runs.iter().filter_map(|r| r.speedup_vs_serial).collect();
            let cold_speedups: Vec<f64> = runs
                .iter()
                .filter_map(|r| r.extra.cold_speedup_vs_serial)
                .collect();
            let startups: Vec<f64> = runs.iter().filter_map(|r| r.extra.startup_s).collect();
            backends.push(BrowserBackend {
                backend: name.clone(),
                warm_s: median(runs.iter().map(|r| r.median_s).collect()),
                speedup: (!speedups.is_empty()).then(|| {
                    let best = speedups.iter().copied().fold(f64::MIN, f64::max);
                    (median(speedups), best)
                }),
                cold_s: median(runs.iter().map(|r| r.extra.cold_s).collect()),
                cold_speedup: (!cold_speedups.is_empty()).then(|| median(cold_speedups)),
                startup_s: (!startups.is_empty()).then(|| median(startups)),
            });
        }
        Ok(Browser {
            pages: pages.len(),
            repeat: first.repeat,
            backends,
        })
    }
}

/// Builds the page (both wasm variants), then runs its benchmark in Chromium and reads the
/// reports. An error says why there are no browser figures.
pub fn build() -> Result<(), String> {
    install::debian_package("/usr/bin/chromium", "chromium")?;
    web::npm_ci()?;
    web::build()
}

/// Runs the figures script (fewer pages and runs with `quick`) and reads its reports.
pub fn measure(out_dir: &Path, quick: bool) -> Result<Browser, String> {
    std::fs::create_dir_all(out_dir)
        .map_err(|e| format!("cannot create {}: {e}", out_dir.display()))?;
    let json = out_dir.join("browser.json");
    let _ = std::fs::remove_file(&json);
    let (pages, repeat) = if quick { (1, 3) } else { (PAGES, REPEAT) };
    run(Command::new("node")
        .arg(web::node_tools().join("figures.mjs"))
        .args([pages.to_string(), repeat.to_string()])
        .current_dir(crate::util::root())
        .env("PRIMEPOOL_FIGURES_JSON", &json))?;
    let text = std::fs::read_to_string(&json)
        .map_err(|e| format!("the figures script left no {}: {e}", json.display()))?;
    let reports: Vec<PageReport> = serde_json::from_str(&text)
        .map_err(|e| format!("{} is unreadable: {e}", json.display()))?;
    let expected = browser_test::seed_outputs();
    if let Some(bad) = reports.iter().find(|r| {
        r.results
            .first()
            .is_none_or(|first| first.outputs != expected)
    }) {
        return Err(format!(
            "the page computed other seed counts than native code ({} outputs)",
            bad.results.first().map_or(0, |r| r.outputs.len())
        ));
    }
    Browser::from_pages(&reports)
}

/// A target met when `value > floor` (strictly: "faster than serial" means above 1).
fn above_target(name: &str, value: Option<f64>, floor: f64, measured: String) -> Target {
    Target {
        name: name.to_owned(),
        requirement: format!("> {floor:.2}x"),
        measured: if value.is_some() {
            measured
        } else {
            "not measured".to_owned()
        },
        pass: value.map(|v| v > floor),
    }
}

/// The browser's targets of issue 15, beside the native serial run of the same report.
pub fn targets(figures: &Figures) -> Vec<Target> {
    let browser = figures.browser.as_ref().ok();
    let backend = |name: &str| browser.and_then(|b| b.get(name));
    let pages = browser.map_or(0, |b| b.pages);
    let runs = browser.map_or(0, |b| b.repeat);
    let native_serial = figures
        .seed
        .iter()
        .find(|r| r.values.start == 9900)
        .and_then(|r| r.result("serial"))
        .map(|r| r.median_s);
    let wasm_serial = backend("serial").map(|b| b.warm_s);
    let workers = backend("workers");
    let cold = workers.and_then(|w| w.cold_speedup);
    vec![
        bound_target(
            "browser: Web Workers (2) warm vs wasm serial, seed 9900..=9999",
            ">= 1.85x",
            workers.and_then(|w| w.speedup).map(|(median, _)| median),
            1.85,
            false,
            |m| {
                let best = workers.and_then(|w| w.speedup).map_or(m, |(_, best)| best);
                format!(
                    "{m:.3}x median page of {pages}, {runs} warm runs each (best page {best:.2}x)"
                )
            },
        ),
        above_target(
            "browser: Web Workers (2) cold, start-up included, vs wasm serial",
            cold,
            1.0,
            format!(
                "{:.2}x median page of {pages} ({} cold vs serial {})",
                cold.unwrap_or(0.0),
                secs(workers.map_or(0.0, |w| w.cold_s)),
                secs(wasm_serial.unwrap_or(0.0))
            ),
        ),
        bound_target(
            "browser: wasm serial vs native serial, seed 9900..=9999",
            "<= 1.20x native",
            match (wasm_serial, native_serial) {
                (Some(w), Some(n)) if n > 0.0 => Some(w / n),
                _ => None,
            },
            1.2,
            true,
            |r| {
                format!(
                    "{r:.2}x ({} vs {})",
                    secs(wasm_serial.unwrap_or(0.0)),
                    secs(native_serial.unwrap_or(0.0))
                )
            },
        ),
    ]
}

/// "In the browser": every backend of the page, warm and cold, or why there are no figures.
pub fn section(md: &mut String, figures: &Figures) {
    let _ = writeln!(md, "## In the browser\n");
    let browser = match &figures.browser {
        Ok(browser) => browser,
        Err(why) => {
            let _ = writeln!(md, "Not measured: {why}.\n");
            return;
        }
    };
    let _ = writeln!(
        md,
        "The page's own benchmark (`tests-e2e/figures.mjs`: the built page in headless \
         Chromium, seed workload over 9900..=9999, 2 workers), loaded {} times, each a fresh \
         tab: one cold run (pool start-up, worker and module start included) and {} warm runs \
         per backend. Each figure is the median page's; speed-ups are over the page's wasm \
         serial (warm median).\n",
        browser.pages, browser.repeat
    );
    let _ = writeln!(
        md,
        "| backend | warm median | warm speed-up (best page) | cold | cold speed-up | start-up alone |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    for b in &browser.backends {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} |",
            b.backend,
            secs(b.warm_s),
            b.speedup.map_or_else(
                || "—".to_owned(),
                |(median, best)| format!("{median:.2}x ({best:.2}x)")
            ),
            secs(b.cold_s),
            b.cold_speedup
                .map_or_else(|| "—".to_owned(), |s| format!("{s:.2}x")),
            b.startup_s.map_or_else(|| "—".to_owned(), secs),
        );
    }
    let _ = writeln!(md);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(workers_warm: f64, workers_cold: f64) -> PageReport {
        let result = |backend: &str, median: f64, cold: f64, startup: Option<f64>| {
            format!(
                r#"{{"backend":"{backend}","workers":2,"min_s":{median},"median_s":{median},
                "max_s":{median},"speedup_vs_serial":{},"outputs":[1],"efficiency":null,
                "cold_s":{cold},"cold_speedup_vs_serial":{},"startup_s":{},"tasks":[],
                "cold_tasks":[]}}"#,
                0.2 / median,
                0.2 / cold,
                startup.map_or("null".to_owned(), |s| s.to_string())
            )
        };
        serde_json::from_str(&format!(
            r#"{{"workload":"seed","mode":"map","values":{{"start":9900,"end":10000}},
            "workers":2,"repeat":10,"machine":{{"cpus":2,"os":"browser","user_agent":"x",
            "cross_origin_isolated":true}},"outputs_agree":true,"results":[{},{},{}]}}"#,
            result("serial", 0.2, 0.21, None),
            result("workers", workers_warm, workers_cold, None),
            result("rayon", 0.104, 0.12, Some(0.01)),
        ))
        .unwrap()
    }

    #[test]
    fn pages_combine_into_the_median_page_with_the_best_speedup_beside_it() {
        let browser =
            Browser::from_pages(&[page(0.100, 0.150), page(0.125, 0.400), page(0.105, 0.180)])
                .unwrap();
        let workers = browser.get("workers").unwrap();
        assert_eq!(workers.warm_s, 0.105);
        let (median, best) = workers.speedup.unwrap();
        assert!((median - 0.2 / 0.105).abs() < 1e-12, "{median}");
        assert!((best - 2.0).abs() < 1e-12, "{best}");
        assert_eq!(workers.cold_s, 0.180);
        assert_eq!(browser.get("rayon").unwrap().startup_s, Some(0.01));
        assert_eq!(browser.pages, 3);
        assert!(Browser::from_pages(&[]).is_err());
    }
}
