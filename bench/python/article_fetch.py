#!/usr/bin/env python3
"""The article's IO job two ways, timed: its urlopen loop and ThreadPoolExecutor(W).map.

    python3 bench/python/article_fetch.py URLS_FILE [WORKERS]     # WORKERS = 4

URLS_FILE holds one URL a line (crew bench io writes it, for its own loopback `crew serve`).
Prints one line of JSON: {"urls": …, "bytes": …, "serial_s": …, "threads_s": …}, each time the
article's whole block measured with time.perf_counter() inside this script. Every body is read
to its end, as crew's engines do; a failed URL fails the script (exit 1).
"""

import json
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor


def fetch(url):
    with urllib.request.urlopen(url, timeout=30) as src:
        return len(src.read())


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as f:
        urls = [line.strip() for line in f if line.strip()]
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else 4

    start = time.perf_counter()
    serial_bytes = 0
    for url in urls:
        serial_bytes += fetch(url)
    serial_s = time.perf_counter() - start

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as executor:
        threads_bytes = sum(executor.map(fetch, urls))
    threads_s = time.perf_counter() - start

    if serial_bytes != threads_bytes:
        print(f"bodies differ: {serial_bytes} {threads_bytes}", file=sys.stderr)
        return 1
    print(json.dumps({"urls": len(urls), "bytes": serial_bytes, "serial_s": serial_s,
                      "threads_s": threads_s}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
