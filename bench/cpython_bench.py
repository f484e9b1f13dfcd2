"""CPython's concurrent.futures on the figures of `cargo xtask bench-report`.

Run: python3 bench/cpython_bench.py [--quick] [--skip-large]

Prints one JSON document on stdout (progress on stderr). Every pool figure includes pool
creation and shutdown (a `with` block), as primepool's `bench` timings do, except the warm
round trips, which reuse one pool (and the pipe floor beside them: two processes ping-ponging
8 bytes). Each figure is the median of a few runs (fewer with
--quick); --skip-large leaves out the slow seed ranges 19900..=19999 and 39900..=39999.
The pools use the platform's default start method (fork on Linux before Python 3.14).
"""
import json
import math
import multiprocessing
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, wait

WORKERS = 2
MIB = 1 << 20


def noop(n):
    return n


def count_prime(n):
    """The source document's function, unchanged (its quirk divides n, not i)."""
    def is_prime(x):
        return bool([i for i in range(2, int(math.sqrt(x)) + 1) if not n % i])

    return len([i for i in range(2, n + 1) if is_prime(i)])


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def timed(f, runs):
    """Median, min and max wall-clock seconds of `runs` calls to f."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "runs": runs}


def startup(context=None):
    with ProcessPoolExecutor(WORKERS, mp_context=context) as pool:
        pool.submit(noop, 7).result()


def submit_noop(pool_class, tasks):
    with pool_class(WORKERS) as pool:
        futures = [pool.submit(noop, i) for i in range(tasks)]
        wait(futures)
        return sum(f.result() for f in futures)


def map_noop(items, chunksize):
    with ProcessPoolExecutor(WORKERS) as pool:
        return sum(pool.map(noop, range(items), chunksize=chunksize))


def seed_serial(values):
    return [count_prime(v) for v in values]


def seed_pool(pool_class, values):
    with pool_class(WORKERS) as pool:
        return list(pool.map(count_prime, values))


def round_trip(pool, argument, runs):
    pool.submit(noop, argument).result()  # the workers are up and warm
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        pool.submit(noop, argument).result()
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "runs": runs}


def pipe_floor(runs):
    """Two processes ping-ponging 8 bytes over a pair of pipes, as the suite's floor does, timed
    with the same clock and loop as `round_trip`: what the machine charges Python's side."""
    to_child, child_in = os.pipe()
    child_out, from_child = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(child_in)
        os.close(child_out)
        while True:
            message = os.read(to_child, 8)
            if not message:
                os._exit(0)
            os.write(from_child, message)
    os.close(to_child)
    os.close(from_child)
    message = b"primepoo"
    os.write(child_in, message)
    os.read(child_out, 8)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        os.write(child_in, message)
        os.read(child_out, 8)
        times.append(time.perf_counter() - start)
    os.close(child_in)
    os.close(child_out)
    os.waitpid(pid, 0)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "runs": runs}


def main():
    quick = "--quick" in sys.argv
    skip_large = "--skip-large" in sys.argv
    runs = 2 if quick else 5
    out = {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "start_method": multiprocessing.get_start_method(),
        "cpus": os.cpu_count(),
        "workers": WORKERS,
    }

    log("cpython: process pool start-up")
    out["startup_process"] = timed(startup, runs * 3)
    out["startup_process_spawn"] = timed(
        lambda: startup(multiprocessing.get_context("spawn")), max(2, runs // 2))

    log("cpython: no-op submit, by task count")
    out["submit_noop"] = []
    for tasks in (100, 1_000, 10_000, 20_000):
        entry = {"tasks": tasks}
        entry["processes"] = timed(lambda: submit_noop(ProcessPoolExecutor, tasks),
                                   runs if tasks < 20_000 else max(2, runs // 2 + 1))
        entry["threads"] = timed(lambda: submit_noop(ThreadPoolExecutor, tasks), runs)
        out["submit_noop"].append(entry)

    log("cpython: no-op map")
    out["map_noop_200000_chunksize_500"] = timed(lambda: map_noop(200_000, 500), runs)

    log("cpython: warm round trips")
    out["round_trip_pipe_floor"] = pipe_floor(2_000 if not quick else 200)
    with ProcessPoolExecutor(WORKERS) as pool:
        out["round_trip_noop_process"] = round_trip(pool, 1, 1_000 if not quick else 100)
        out["round_trip_1mib_process"] = round_trip(pool, bytes(MIB), 20 if not quick else 5)
    with ThreadPoolExecutor(WORKERS) as pool:
        out["round_trip_noop_thread"] = round_trip(pool, 1, 2_000 if not quick else 200)

    out["seed"] = []
    ranges = [(9900, 10000), (19900, 20000), (39900, 40000)]
    if skip_large:
        ranges = ranges[:1]
    for start, end in ranges:
        values = range(start, end)
        log(f"cpython: seed workload over {start}..{end}")
        small = start < 10000
        reps = (3 if not quick else 1) if small else 1
        entry = {"start": start, "end": end}
        expected = seed_serial(values)
        entry["serial"] = timed(lambda: seed_serial(values), reps)
        entry["processes"] = timed(lambda: seed_pool(ProcessPoolExecutor, values), reps)
        if seed_pool(ProcessPoolExecutor, range(start, start + 4)) != expected[:4]:
            raise SystemExit("the process pool returned different counts")
        if small:
            entry["threads"] = timed(lambda: seed_pool(ThreadPoolExecutor, values), reps)
        out["seed"].append(entry)

    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
