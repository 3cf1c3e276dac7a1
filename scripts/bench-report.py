#!/usr/bin/env python3
"""Turns one crew_bench JSON run into the ratio tables of bench/README.md.

    build/release/crew_bench --benchmark_repetitions=3 --benchmark_report_aggregates_only=true \\
        --benchmark_format=json --benchmark_out=bench.json --benchmark_out_format=json
    scripts/bench-report.py bench.json [--machine "$(lscpu | sed -n 's/^Model name: *//p')"]

Every figure is taken from that one file: the median of the repetitions when the run has them
(the `median` aggregate, or the median of the repetitions' own entries), else the single run.
Ratios compare benchmarks of the same run only. Benchmarks missing from the file (a filtered run)
show as "n/a". Prints Markdown on stdout; exits 1 if the file holds no benchmark.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict

NS_PER_UNIT = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}

# Targets of issue 3 §5.
PRIMES_MIN_SPEEDUP = 1.95  # crew at 2 workers vs serial
PRIMES_MAX_BEHIND_PEER = 0.03  # crew within 3 % of the best peer
MAP_MAX_RATIO_TO_TBB = 2.0  # crew map per item within 2× of oneTBB
SUBMIT_MAX_NS = 300.0  # crew submit + its future, per task, in bulk


def load_medians(path: str) -> tuple[dict, dict[str, float]]:
    """Returns (context, {run name: median real time in ns per iteration})."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    medians: dict[str, float] = {}
    samples: dict[str, list[float]] = defaultdict(list)
    for b in data.get("benchmarks", []):
        if b.get("error_occurred"):
            continue
        name = b.get("run_name", b["name"])
        ns = b["real_time"] * NS_PER_UNIT[b.get("time_unit", "ns")]
        if b.get("run_type") == "aggregate":
            if b.get("aggregate_name") == "median":
                medians[name] = ns
        else:
            samples[name].append(ns)
    for name, values in samples.items():
        medians.setdefault(name, statistics.median(values))
    return data.get("context", {}), medians


class Report:
    def __init__(self, context: dict, medians: dict[str, float]):
        self.context = context
        self.medians = medians
        self.verdicts: list[str] = []

    def time(self, name: str) -> float | None:
        """Median real time per iteration (ns) of a benchmark, by name without '/real_time'."""
        return self.medians.get(name + "/real_time", self.medians.get(name))

    def verdict(self, what: str, met: bool | None, detail: str) -> None:
        mark = "n/a (not in this run)" if met is None else ("**met**" if met else "**missed**")
        self.verdicts.append(f"| {what} | {detail} | {mark} |")


def fmt_time(ns: float | None) -> str:
    if ns is None:
        return "n/a"
    if ns >= 1e9:
        return f"{ns / 1e9:.3f} s"
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.1f} ns"


def fmt_ratio(x: float | None, digits: int = 2, suffix: str = "×") -> str:
    return "n/a" if x is None else f"{x:.{digits}f}{suffix}"


def div(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def primes_section(r: Report, out: list[str]) -> None:
    sizes = sorted({int(k.split("/n:")[1].split("/")[0]) for k in r.medians
                    if k.startswith("BM_Serial_Primes/n:")})
    if not sizes:
        return
    threads = int(r.context.get("crew_threads", 2))
    rows = [
        ("serial loop", "BM_Serial_Primes/n:{n}", 1),
        ("crew map, pool running, 1 worker", "BM_CrewThreadPool_Primes/n:{n}/workers:1", 1),
        (f"crew map, pool running, {threads} workers",
         f"BM_CrewThreadPool_Primes/n:{{n}}/workers:{threads}", threads),
        ("crew imap, summed as results arrive, 1 worker",
         "BM_CrewThreadPool_PrimesImap/n:{n}/workers:1", 1),
        (f"crew imap, summed as results arrive, {threads} workers",
         f"BM_CrewThreadPool_PrimesImap/n:{{n}}/workers:{threads}", threads),
        ("crew map incl. pool start+join, 1 worker",
         "BM_CrewThreadPool_PrimesWithStart/n:{n}/workers:1", 1),
        (f"crew map incl. pool start+join, {threads} workers",
         f"BM_CrewThreadPool_PrimesWithStart/n:{{n}}/workers:{threads}", threads),
        ("OpenMP `schedule(dynamic,1000)` reduction", "BM_OpenMP_Primes/n:{n}", threads),
        ("oneTBB `parallel_reduce` (auto partitioner)", "BM_TBB_Primes/n:{n}", threads),
    ]
    out.append("### Primes: sum of `is_prime(i)` for i in [0, N)\n")
    header = "| engine | threads |"
    rule = "|---|---:|"
    for n in sizes:
        header += f" N={n:,}: time | speed-up | efficiency |"
        rule += "---:|---:|---:|"
    out += [header, rule]
    for label, pattern, t in rows:
        line = f"| {label} | {t} |"
        for n in sizes:
            serial = r.time(f"BM_Serial_Primes/n:{n}")
            ns = r.time(pattern.format(n=n))
            speedup = div(serial, ns)
            line += (f" {fmt_time(ns)} | {fmt_ratio(speedup)} |"
                     f" {fmt_ratio(None if speedup is None else 100 * speedup / t, 0, ' %')} |")
        out.append(line)
    out.append("")
    out.append("Speed-up = serial time / engine time; efficiency = speed-up / threads. "
               "crew vs best peer = best peer's time / crew's time (1.00× = as fast; "
               "< 1 = slower).\n")
    out += ["| N | crew speed-up (2 workers) | best peer | crew vs best peer |",
            "|---:|---:|---|---:|"]
    for n in sizes:
        serial = r.time(f"BM_Serial_Primes/n:{n}")
        crew = r.time(f"BM_CrewThreadPool_Primes/n:{n}/workers:{threads}")
        peers = {"OpenMP": r.time(f"BM_OpenMP_Primes/n:{n}"),
                 "oneTBB": r.time(f"BM_TBB_Primes/n:{n}")}
        peers = {k: v for k, v in peers.items() if v is not None}
        best = min(peers, key=peers.get) if peers else None
        vs_peer = div(peers.get(best), crew) if best else None
        speedup = div(serial, crew)
        out.append(f"| {n:,} | {fmt_ratio(speedup)} | {best or 'n/a'} | {fmt_ratio(vs_peer)} |")
        r.verdict(f"primes N={n:,}: crew `map` at {threads} workers ≥ {PRIMES_MIN_SPEEDUP}× serial",
                  None if speedup is None else speedup >= PRIMES_MIN_SPEEDUP,
                  fmt_ratio(speedup, 3))
        r.verdict(f"primes N={n:,}: crew `map` within 3 % of the best peer",
                  None if vs_peer is None else vs_peer >= 1 - PRIMES_MAX_BEHIND_PEER,
                  f"{fmt_ratio(vs_peer, 3)} of {best}'s speed" if best else "n/a")
    out.append("")


def per_item_section(r: Report, out: list[str]) -> None:
    items = int(r.context.get("crew_map_items", 0)) or None
    if items is None:
        return
    threads = int(r.context.get("crew_threads", 2))
    rows = [
        ("plain loop", "preallocated", "BM_PlainLoop_Map"),
        ("plain loop", "allocated per call", "BM_PlainLoop_MapAlloc"),
        ("crew `map`, 1 worker", "allocated per call (returned)", "BM_CrewThreadPool_Map/workers:1"),
        (f"crew `map`, {threads} workers", "allocated per call (returned)",
         f"BM_CrewThreadPool_Map/workers:{threads}"),
        ("crew `map` of a void writer, 1 worker", "preallocated",
         "BM_CrewThreadPool_MapVoid/workers:1"),
        (f"crew `map` of a void writer, {threads} workers", "preallocated",
         f"BM_CrewThreadPool_MapVoid/workers:{threads}"),
        (f"oneTBB `parallel_for`, {threads} threads", "preallocated", "BM_TBB_Map"),
        (f"oneTBB `parallel_for`, {threads} threads", "allocated per call", "BM_TBB_MapAlloc"),
        (f"OpenMP `parallel for`, {threads} threads", "preallocated", "BM_OpenMP_Map"),
        (f"OpenMP `parallel for`, {threads} threads", "allocated per call", "BM_OpenMP_MapAlloc"),
    ]
    out.append(f"### Per item: `x*3+1` over {items:,} ints\n")
    out += ["| engine | output vector | time | ns per item | vs plain loop (same output) |",
            "|---|---|---:|---:|---:|"]
    for label, output, name in rows:
        ns = r.time(name)
        baseline = r.time("BM_PlainLoop_Map" if output == "preallocated"
                          else "BM_PlainLoop_MapAlloc")
        out.append(f"| {label} | {output} | {fmt_time(ns)} | "
                   f"{'n/a' if ns is None else f'{ns / items:.2f}'} | "
                   f"{fmt_ratio(div(ns, baseline))} |")
    out.append("")
    crew = r.time(f"BM_CrewThreadPool_Map/workers:{threads}")
    crew_void = r.time(f"BM_CrewThreadPool_MapVoid/workers:{threads}")
    tbb = r.time("BM_TBB_Map")
    tbb_alloc = r.time("BM_TBB_MapAlloc")
    out += ["| ratio (time per item) | value |", "|---|---:|",
            f"| crew `map` / oneTBB preallocated (the issue's target) | "
            f"{fmt_ratio(div(crew, tbb))} |",
            f"| crew `map` / oneTBB allocating its output too (like for like) | "
            f"{fmt_ratio(div(crew, tbb_alloc))} |",
            f"| crew void `map` into preallocated / oneTBB preallocated | "
            f"{fmt_ratio(div(crew_void, tbb))} |",
            f"| crew `map` / OpenMP allocating its output too | "
            f"{fmt_ratio(div(crew, r.time('BM_OpenMP_MapAlloc')))} |",
            ""]
    ratio = div(crew, tbb)
    r.verdict("per item: crew `map` within 2× of oneTBB (preallocated)",
              None if ratio is None else ratio <= MAP_MAX_RATIO_TO_TBB, fmt_ratio(ratio))
    ratio = div(crew_void, tbb)
    r.verdict("per item, both writing a preallocated vector: crew void `map` within 2× of oneTBB",
              None if ratio is None else ratio <= MAP_MAX_RATIO_TO_TBB, fmt_ratio(ratio))
    ratio = div(crew, tbb_alloc)
    r.verdict("per item, like for like: crew `map` within 2× of oneTBB allocating too",
              None if ratio is None else ratio <= MAP_MAX_RATIO_TO_TBB, fmt_ratio(ratio))


def per_task_section(r: Report, out: list[str]) -> None:
    bulk = int(r.context.get("crew_bulk_tasks", 0)) or None
    spawned = int(r.context.get("crew_thread_tasks", 0)) or None
    if bulk is None or spawned is None:
        return
    threads = int(r.context.get("crew_threads", 2))
    rows = [
        (f"crew `submit` + `get`, {threads} workers", bulk, "BM_CrewThreadPool_SubmitBulk"),
        (f"oneTBB `task_group::run` + `wait`, {threads} threads", bulk, "BM_TBB_TaskGroupBulk"),
        (f"OpenMP `task` + barrier, {threads} threads", bulk, "BM_OpenMP_TaskBulk"),
        ("one `std::thread` per task, started then joined", spawned, "BM_StdThread_SpawnBulk"),
    ]
    crew_ns = div(r.time("BM_CrewThreadPool_SubmitBulk"), bulk)
    out.append("### Per task: trivial tasks submitted in bulk, then all awaited\n")
    out += ["| engine | tasks | ns per task | vs crew |", "|---|---:|---:|---:|"]
    for label, count, name in rows:
        ns = div(r.time(name), count)
        out.append(f"| {label} | {count:,} | {'n/a' if ns is None else f'{ns:.0f}'} | "
                   f"{fmt_ratio(div(ns, crew_ns))} |")
    out.append("")
    out.append("### One task at a time (round trip latency)\n")
    out += ["| engine | latency |", "|---|---:|"]
    for label, name in [
        ("crew `submit` → `get` (worker asleep or spinning between tasks)",
         "BM_CrewThreadPool_SubmitRoundTrip"),
        ("oneTBB `task_group` run → wait (the waiting thread may run it itself)",
         "BM_TBB_TaskGroupRoundTrip"),
        ("`std::thread` start → join", "BM_StdThread_RoundTrip"),
    ]:
        out.append(f"| {label} | {fmt_time(r.time(name))} |")
    out.append("")
    r.verdict(f"per task: crew `submit` + future ≤ {SUBMIT_MAX_NS:.0f} ns in bulk",
              None if crew_ns is None else crew_ns <= SUBMIT_MAX_NS,
              "n/a" if crew_ns is None else f"{crew_ns:.0f} ns")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("json", help="crew_bench --benchmark_format=json output (one run)")
    parser.add_argument("--machine", default="", help="CPU model, e.g. from lscpu")
    args = parser.parse_args()

    context, medians = load_medians(args.json)
    if not medians:
        print(f"bench-report: no benchmark results in {args.json}", file=sys.stderr)
        return 1
    r = Report(context, medians)
    out: list[str] = []
    machine = f"{args.machine}, " if args.machine else ""
    out.append(f"Run of {context.get('date', '?')} on {context.get('host_name', '?')}: "
               f"{machine}{context.get('num_cpus', '?')} CPUs at "
               f"{context.get('mhz_per_cpu', '?')} MHz"
               f"{' — SMOKE SIZES, not a measurement' if context.get('crew_smoke') == '1' else ''}."
               " Medians of the repetitions, real (wall) time.\n")
    primes_section(r, out)
    per_item_section(r, out)
    per_task_section(r, out)
    if r.verdicts:
        out += ["### Targets (issue 3 §5)\n", "| target | measured | verdict |", "|---|---:|---|"]
        out += r.verdicts
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
