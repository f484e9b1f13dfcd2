"""CPython's concurrent.futures.ProcessPoolExecutor(2) on the figures of benches/process.rs.

Run: python3 native/benches/cpython_reference.py [--quick]
Prints one line per figure, pool creation and shutdown included, as in the Rust benchmark.
Each figure is the median of a few runs (fewer with --quick). Uses the platform's default
start method (fork on Linux with Python 3.11), plus the "spawn" start-up for comparison.
"""
import math
import multiprocessing
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, wait


def noop(n):
    return n


def count_prime(n):
    def is_prime(x):
        return bool([i for i in range(2, int(math.sqrt(x)) + 1) if not n % i])

    return len([i for i in range(2, n + 1) if is_prime(i)])


def timed(f, runs):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def startup(context=None):
    with ProcessPoolExecutor(2, mp_context=context) as pool:
        pool.submit(noop, 7).result()


def submit_noop(tasks=20_000):
    with ProcessPoolExecutor(2) as pool:
        futures = [pool.submit(noop, i) for i in range(tasks)]
        wait(futures)
        return sum(f.result() for f in futures)


def map_noop(items=200_000):
    with ProcessPoolExecutor(2) as pool:
        return sum(pool.map(noop, range(items), chunksize=500))


def seed_pool():
    with ProcessPoolExecutor(2) as pool:
        return sum(pool.map(count_prime, range(9900, 10000)))


def seed_serial():
    return sum(count_prime(v) for v in range(9900, 10000))


def main():
    runs = 2 if "--quick" in sys.argv else 5
    print(f"python {sys.version.split()[0]}, start method {multiprocessing.get_start_method()}")
    t = timed(startup, runs * 2)
    print(f"startup_to_first_result_2_workers: {t * 1e3:.2f} ms")
    t = timed(lambda: startup(multiprocessing.get_context("spawn")), runs)
    print(f"startup_to_first_result_2_workers (spawn): {t * 1e3:.2f} ms")
    t = timed(submit_noop, runs)
    print(f"submit_noop_20000: {t * 1e3:.1f} ms ({t / 20_000 * 1e6:.2f} us per task)")
    t = timed(map_noop, runs)
    print(f"map_noop_200000_chunksize_500: {t * 1e3:.1f} ms ({t / 200_000 * 1e6:.3f} us per item)")
    serial = timed(seed_serial, max(1, runs // 2))
    pool = timed(seed_pool, max(1, runs // 2))
    print(f"seed_9900_9999 serial: {serial:.3f} s, ProcessPoolExecutor(2): {pool:.3f} s "
          f"({serial / pool:.2f}x)")


if __name__ == "__main__":
    main()
