#!/usr/bin/env python3
"""The article's CPU job three ways, timed: its for loop, ThreadPoolExecutor(W) and Pool(W).

    python3 bench/python/article_primes.py [N] [WORKERS]      # N = 1000000, WORKERS = 2

Prints one line of JSON: {"sum": …, "serial_s": …, "threads_s": …, "pool_s": …}. Each time is the
article's whole block, measured with time.perf_counter() inside this script (the interpreter's
own start is not counted): the loop; `with ThreadPoolExecutor(W) as e: sum(e.map(is_prime, …))`;
`with Pool(W) as p: sum(p.map(is_prime, …))`. crew bench cpu --compare-python runs it.
"""

import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from multiprocessing import Pool

# The article's is_prime, exactly, shared with the benchmark's Pool script beside this one.
from pool_map_primes import is_prime


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else 2

    start = time.perf_counter()
    answer = 0
    for i in range(n):
        answer += is_prime(i)
    serial_s = time.perf_counter() - start

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as executor:
        threads_answer = sum(executor.map(is_prime, range(n)))
    threads_s = time.perf_counter() - start

    start = time.perf_counter()
    with Pool(workers) as p:
        pool_answer = sum(p.map(is_prime, range(n)))
    pool_s = time.perf_counter() - start

    if not answer == threads_answer == pool_answer:
        print(f"answers differ: {answer} {threads_answer} {pool_answer}", file=sys.stderr)
        return 1
    print(json.dumps({"sum": answer, "serial_s": serial_s, "threads_s": threads_s,
                      "pool_s": pool_s}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
