//! A process pool whose worker program is another executable: the `primepool` command, which
//! calls `run_worker_if_requested()` but is not this test's program image.

use std::time::Duration;

use primepool::{Error, ExecutorExt, ProcessPoolExecutor};

const WAIT: Option<Duration> = Some(Duration::from_secs(60));

fn whoami(_: ()) -> u32 {
    std::process::id()
}

#[test]
fn a_worker_running_a_different_program_is_refused_with_a_clear_error() {
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .worker_executable(env!("CARGO_BIN_EXE_primepool"))
        .build()
        .unwrap();
    match pool.submit(whoami, ()).and_then(|f| f.result(WAIT)) {
        Err(Error::Broken(why)) => {
            assert!(why.contains("not the program image of the pool"), "{why}");
            assert!(why.contains("identical executable"), "{why}");
        }
        other => panic!("expected the worker to refuse, got {other:?}"),
    }
    assert!(matches!(pool.submit(whoami, ()), Err(Error::Broken(_))));
}
