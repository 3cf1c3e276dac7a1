#!/usr/bin/env python3
"""The article's multiprocessing example, timed: sum(Pool(W).map(is_prime, range(N))).

    python3 bench/python/pool_map_primes.py [N] [WORKERS]     # N = 1000000, WORKERS = 2

Prints one line of JSON: the sum (crew_bench checks it) and two wall times in seconds, measured
with time.perf_counter() inside this script, so the interpreter's own start is not counted:
  seconds_with_start  the article's whole `with Pool(W) as p: answer = sum(p.map(...))` block:
                      the workers' start, the map, the sum and the pool's exit
  seconds_map         only `sum(p.map(is_prime, range(N)))`, on a pool whose workers already run
crew_bench (BM_Python_PoolMapPrimes) runs it and compares crew's figures of the same run.
"""

import json
import sys
import time
from multiprocessing import Pool


# The article's function, exactly.
def is_prime(x):
    if x <= 1:
        return 0
    elif x <= 3:
        return x
    elif x % 2 == 0 or x % 3 == 0:
        return 0
    i = 5
    while i * i <= x:
        if x % i == 0 or x % (i + 2) == 0:
            return 0
        i += 6
    return x


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    start = time.perf_counter()
    with Pool(workers) as p:
        # A trivial task first, so the workers are known to run before the map is timed; it is
        # inside seconds_with_start, like the workers' start it waits for.
        p.map(abs, range(workers))
        map_start = time.perf_counter()
        answer = sum(p.map(is_prime, range(n)))
        seconds_map = time.perf_counter() - map_start
    seconds_with_start = time.perf_counter() - start
    print(json.dumps({"n": n, "workers": workers, "sum": answer,
                      "seconds_with_start": seconds_with_start, "seconds_map": seconds_map}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
