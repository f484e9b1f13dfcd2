//! The cluster executor against a real `nats-server -js` with worker processes of this test
//! binary: the shared executor behaviour suite, and that tasks really run in the workers.

mod nats_support;

use std::time::Duration;

use nats_support::{Cluster, WithCluster};
use primepool::{Executor, ExecutorExt};

primepool_core::conformance_tests!(|workers: usize| -> Box<dyn Executor> {
    Box::new(WithCluster::start(workers))
});

const WAIT: Option<Duration> = Some(Duration::from_secs(60));

fn sleepy_whoami(ms: u64) -> u32 {
    std::thread::sleep(Duration::from_millis(ms));
    std::process::id()
}

#[test]
fn tasks_run_in_the_worker_processes_and_both_workers_take_some() {
    let cluster = Cluster::start(2, 1);
    let pool = cluster.executor(2);
    assert_eq!(pool.name(), "cluster");
    let futures: Vec<_> = (0..6)
        .map(|_| pool.submit(sleepy_whoami, 200).unwrap())
        .collect();
    let pids: Vec<u32> = futures.iter().map(|f| f.result(WAIT).unwrap()).collect();
    let workers: Vec<u32> = cluster.workers.iter().map(|w| w.pid()).collect();
    assert!(
        pids.iter().all(|p| workers.contains(p)),
        "{pids:?} vs {workers:?}"
    );
    assert!(
        workers.iter().all(|w| pids.contains(w)),
        "both single-slot workers run some of six 200 ms tasks: {pids:?}"
    );
    assert_eq!(pool.connected_workers(), Ok(2));
}
