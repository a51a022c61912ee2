"""Turns bench/suite.sh's results.jsonl into markdown: for every section and kind of run, one table
with a row per (run, target) and a column per figure, each cell the median over rounds with min
and max in parentheses.

Usage: python3 bench/report.py results.jsonl [run.txt] > report.md
"""

import json
import statistics
import sys
from collections import OrderedDict, defaultdict

# figure key -> heading; which of them a row shows depends on its mode
FIGURES = {
    "disk": ["mib_s", "write_p50_ms", "write_p99_ms"],
    "dd": ["mib_s"],
    "loopback": ["mib_s", "client_cores"],
    "iperf3": ["mib_s"],
    "produce": ["rate_sent", "mib_s", "records_s", "lat_p50_ms", "lat_p99_ms", "lat_p999_ms",
                "send_lag_p99_ms", "client_cores",
                "client_cpu_s_per_gib", "broker_cores", "broker_cpu_s_per_gib",
                "broker_peak_rss_mib"],
    "raw-produce": ["mib_s", "records_s", "request_p50_ms", "request_p99_ms", "client_cores",
                    "client_cpu_s_per_gib", "broker_cores", "broker_cpu_s_per_gib",
                    "broker_peak_rss_mib", "failed_requests"],
    "java-produce": ["mib_s", "lat_p50_ms", "lat_p99_ms", "lat_p999_ms", "client_cpu_s_per_gib",
                     "broker_cpu_s_per_gib", "broker_peak_rss_mib"],
    "e2e": ["rate_sent", "lat_p50_ms", "lat_p99_ms", "lat_p999_ms", "lat_max_ms", "e2e_p50_ms",
            "e2e_p99_ms", "e2e_p999_ms", "e2e_max_ms", "e2e_missing", "send_lag_p99_ms",
            "client_cores", "broker_cores", "broker_peak_rss_mib"],
    "consume": ["mib_s", "records_s", "client_cores", "client_cpu_s_per_gib", "broker_cores",
                "broker_cpu_s_per_gib", "broker_peak_rss_mib"],
    "raw-consume": ["mib_s", "records_s", "client_cores", "client_cpu_s_per_gib", "broker_cores",
                    "broker_cpu_s_per_gib", "broker_peak_rss_mib"],
    "java-consume": ["mib_s", "mib_s_incl_join", "client_cpu_s_per_gib", "broker_cpu_s_per_gib"],
    "java-share": ["mib_s", "records_s", "client_cpu_s_per_gib", "broker_cpu_s_per_gib"],
    "ready": ["ready_ms"],
    "rss": ["broker_rss_mib"],
    "create-topic": ["seconds"],
    "conns": ["open_seconds", "broker_rss_before_mib", "broker_rss_idle_conns_mib", "mib_s",
              "records_s", "request_p50_ms", "request_p99_ms", "broker_peak_rss_mib",
              "broker_cores", "broker_cpu_s_per_gib", "client_cores", "failed_requests"],
    "du": ["data_mib"],
    "op-latency": ["count", "p50_ms", "p99_ms", "max_ms"],
    "op-available": ["seconds_from_first", "seconds_from_last", "operator_cpu_s"],
    "op-idle": ["mqs", "rss_mib", "peak_rss_mib", "idle_cores"],
}

NAMES = {
    "mib_s": "MiB/s",
    "mib_s_incl_join": "MiB/s incl. group join",
    "records_s": "records/s",
    "rate_sent": "records/s sent",
    "lat_p50_ms": "produce p50 ms",
    "lat_p99_ms": "produce p99 ms",
    "lat_p999_ms": "produce p99.9 ms",
    "lat_max_ms": "produce max ms",
    "e2e_p50_ms": "end-to-end p50 ms",
    "e2e_p99_ms": "end-to-end p99 ms",
    "e2e_p999_ms": "end-to-end p99.9 ms",
    "e2e_max_ms": "end-to-end max ms",
    "e2e_missing": "records not received",
    "send_lag_p99_ms": "client send lag p99 ms",
    "client_cores": "client cores",
    "client_cpu_s_per_gib": "client CPU-s/GiB",
    "broker_cores": "broker cores",
    "broker_cpu_s_per_gib": "broker CPU-s/GiB",
    "broker_peak_rss_mib": "broker peak RSS MiB",
    "broker_rss_mib": "broker RSS MiB",
    "broker_rss_before_mib": "broker RSS before connecting MiB",
    "broker_rss_idle_conns_mib": "broker RSS, connections open and idle, MiB",
    "request_p50_ms": "request p50 ms",
    "request_p99_ms": "request p99 ms",
    "open_seconds": "seconds to open all connections",
    "ready_ms": "start to ready ms",
    "seconds": "seconds",
    "write_p50_ms": "write p50 ms",
    "write_p99_ms": "write p99 ms",
    "data_mib": "data dir MiB",
    "errors": "errors",
    "failed_requests": "failed requests",
    "count": "count",
    "p50_ms": "p50 ms",
    "p99_ms": "p99 ms",
    "max_ms": "max ms",
    "seconds_from_first": "seconds from the first create",
    "seconds_from_last": "seconds from the last create",
    "operator_cpu_s": "operator CPU-s meanwhile",
    "mqs": "MessageQueues",
    "rss_mib": "operator RSS MiB",
    "peak_rss_mib": "operator peak RSS MiB (window)",
    "idle_cores": "operator idle cores",
}

TARGET_ORDER = ["operator", "machine", "sink", "sluice-interval", "sluice-always", "kafka", "kafka-always"]
TARGET_NAMES = {
    "machine": "this machine",
    "sink": "no-op sink",
    "sluice-interval": "Sluice fsync interval",
    "sluice-always": "Sluice fsync always",
    "kafka": "Kafka 4.2",
    "kafka-always": "Kafka 4.2 flush.messages=1",
}


def fmt(v):
    if abs(v) >= 100:
        return "%.0f" % v
    if abs(v) >= 10:
        return "%.1f" % v
    return "%.2f" % v


def cell(values):
    if not values:
        return ""
    if len(values) == 1:
        return fmt(values[0])
    return "%s (%s–%s)" % (fmt(statistics.median(values)), fmt(min(values)), fmt(max(values)))


def main():
    rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    if len(sys.argv) > 2:
        for line in open(sys.argv[2]):
            print("- " + line.rstrip())
        print()
    sections = OrderedDict()
    for r in rows:
        sections.setdefault(r["section"], []).append(r)

    # Every broker start of the whole run, whatever section it belongs to.
    starts = [r for r in rows if r.get("label") in ("start (empty dir)", "idle")]
    for name, rs in sections.items():
        print("### %s\n" % name)
        uptimes = [r for r in rs if r.get("mode") == "uptime"]
        for u in uptimes:
            print("- round %s, %s: `%s`" % (u["round"], u["label"], u["uptime"].strip()))
        loads = [r["load1"] for r in rs if "load1" in r]
        if loads:
            print("- load1 at the start of its runs: %s to %s" % (min(loads), max(loads)))
        print()
        table([r for r in rs if shown(r)])
    if starts:
        print("### every broker start of this run (empty data dir)\n")
        table(starts)
    failed = [r for r in rows if "failed" in r]
    if failed:
        print("### failed runs\n")
        for r in failed:
            print("- %s / %s / round %s / %s: %s" % (r["section"], r["target"], r["round"], r["label"], r["failed"]))
        print()


def shown(r):
    if r.get("mode") == "uptime" or r.get("label") in ("start (empty dir)", "idle"):
        return False
    # Topic creation is timed everywhere but worth a row only where it is the point.
    return r.get("mode") != "create-topic" or r["section"] == "partitions"


def table(rs):
    """One table per mode: a row per (run, target), a column per figure."""
    by_mode = OrderedDict()
    for r in rs:
        if r.get("mode") in FIGURES:
            by_mode.setdefault(r["mode"], []).append(r)
    for mode, mrs in by_mode.items():
        cells = OrderedDict()  # (label, target) -> figure -> values
        for r in mrs:
            per = cells.setdefault((r["label"], r["target"]), defaultdict(list))
            for k in FIGURES[mode]:
                v = r.get(k)
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    per[k].append(float(v))
        keys = [k for k in FIGURES[mode] if any(k in per for per in cells.values())]
        if not keys:
            continue
        labels = list(OrderedDict.fromkeys(lbl for lbl, _ in cells))
        rank = {t: i for i, t in enumerate(TARGET_ORDER)}
        print("| run | target | " + " | ".join(NAMES.get(k, k) for k in keys) + " |")
        print("|---|---|" + "---:|" * len(keys))
        for lbl in labels:
            ts = sorted((t for l2, t in cells if l2 == lbl), key=lambda t: (rank.get(t, 99), t))
            for i, t in enumerate(ts):
                per = cells[(lbl, t)]
                print("| %s | %s | %s |" % (lbl if i == 0 else "", TARGET_NAMES.get(t, t),
                                            " | ".join(cell(per.get(k, [])) for k in keys)))
        print()


if __name__ == "__main__":
    main()
