"""Dask distributed's LocalCluster on the cluster figures of `cargo xtask bench-report`.

Run (with `distributed` installed; the report makes a private virtual environment for it):
    python bench/dask_bench.py [--quick]

Prints one JSON document on stdout (progress on stderr). The cluster is
`LocalCluster(n_workers=2, threads_per_worker=1, processes=True)` on 127.0.0.1; its creation is
not timed, as the ClusterExecutor figures beside it leave out connecting and starting workers:
- 20,000 no-op `submit`s, then waiting for all (the time per task; --quick: 2,000);
- one no-op `submit().result()` at a time (median of many);
- the seed workload over 9900..=9999 (`client.map`, then `gather`), checked against serial;
- a worker SIGKILLed while it runs a 1 s task: the time from the kill until that future has
  resolved (with the right value) on the other worker; the nanny restarts the killed one.
"""
import json
import logging
import os
import platform
import signal
import statistics
import sys
import tempfile
import time

import cloudpickle

import cpython_bench
from cpython_bench import count_prime, log, noop

# The workers need not import the script beside this one: its functions travel by value.
cloudpickle.register_pickle_by_value(cpython_bench)

WORKERS = 2


def slow_double(pid_dir, n):
    """Says which process runs it (a file named by its pid), sleeps 1 s, returns 2n."""
    with open(os.path.join(pid_dir, str(os.getpid())), "w"):
        pass
    time.sleep(1.0)
    return 2 * n


def summary(times):
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "runs": len(times)}


def submit_noop(client, wait, tasks):
    start = time.perf_counter()
    futures = [client.submit(noop, i, pure=False) for i in range(tasks)]
    wait(futures)
    elapsed = time.perf_counter() - start
    if sum(client.gather(futures)) != tasks * (tasks - 1) // 2:
        raise SystemExit("dask returned wrong no-op results")
    return elapsed


def round_trips(client, runs):
    client.submit(noop, -1, pure=False).result()  # the workers are up and warm
    times = []
    for i in range(runs):
        start = time.perf_counter()
        if client.submit(noop, i, pure=False).result() != i:
            raise SystemExit("dask returned a wrong no-op result")
        times.append(time.perf_counter() - start)
    return summary(times)


def seed(client, values, expected, runs):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        got = client.gather(client.map(count_prime, values, pure=False))
        times.append(time.perf_counter() - start)
        if got != expected:
            raise SystemExit("dask's seed outputs differ from serial's")
    return summary(times)


def kill_recovery(client, runs):
    """Time from SIGKILL of the worker running a 1 s task until its future resolves."""
    times = []
    for run in range(runs):
        client.wait_for_workers(WORKERS, timeout=120)
        with tempfile.TemporaryDirectory(prefix="dask-kill-") as pid_dir:
            future = client.submit(slow_double, pid_dir, run + 21, pure=False)
            deadline = time.monotonic() + 60
            while not os.listdir(pid_dir):
                if time.monotonic() > deadline:
                    raise SystemExit("the 1 s task never started on a dask worker")
                time.sleep(0.005)
            victim = int(os.listdir(pid_dir)[0])
            killed = time.perf_counter()
            os.kill(victim, signal.SIGKILL)
            value = future.result(timeout=120)
            times.append(time.perf_counter() - killed)
            if value != 2 * (run + 21):
                raise SystemExit(f"the re-run task returned {value}")
    return summary(times)


def main():
    quick = "--quick" in sys.argv
    import dask
    import distributed
    from distributed import Client, LocalCluster, wait

    tasks = 2_000 if quick else 20_000
    out = {
        "dask": dask.__version__,
        "distributed": distributed.__version__,
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "cpus": os.cpu_count(),
        "workers": WORKERS,
    }
    values = list(range(9900, 10000))
    log("dask: serial seed baseline")
    start = time.perf_counter()
    expected = [count_prime(v) for v in values]
    out["seed_serial"] = summary([time.perf_counter() - start])

    log("dask: starting LocalCluster(n_workers=2, threads_per_worker=1, processes=True)")
    with LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True,
                      host="127.0.0.1", dashboard_address=None,
                      silence_logs=logging.CRITICAL) as cluster, Client(cluster) as client:
        client.wait_for_workers(WORKERS, timeout=120)
        log(f"dask: {tasks} no-op submits")
        submit_noop(client, wait, min(tasks, 500))  # warm
        runs = [submit_noop(client, wait, tasks) for _ in range(1 if quick else 3)]
        out["submit_noop"] = {"tasks": tasks, **summary(runs)}
        log("dask: lone round trips")
        out["round_trip_noop"] = round_trips(client, 30 if quick else 200)
        log("dask: seed workload over 9900..=9999")
        out["seed_9900_9999"] = seed(client, values, expected, 1 if quick else 3)
        log("dask: a worker SIGKILLed during a 1 s task")
        out["kill_recovery"] = kill_recovery(client, 1 if quick else 3)

    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
