//! `primepool count N`: one workload value, for checking outputs by hand or from scripts (the
//! browser tests compare the page's results with it).

use primepool::workload::Workload;

/// The workload's output for `n`.
pub fn run(workload: Workload, n: u32) -> u32 {
    workload.function()(n)
}
