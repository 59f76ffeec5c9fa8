# SPDX-License-Identifier: MIT
"""bench/report.py -- parse tool output and turn raw bench rows into markdown tables.

Used by bench/lb.sh and bench/lb-failover.sh (run with /usr/bin/python3, standard library only):

  report.py wrk FILE              one wrk --latency output -> "rps requests seconds p50_ms p99_ms errors"
  report.py lb-table RAW.tsv      lb.sh raw rows -> raw-runs table + summary table (medians)
  report.py load-row FILE FAULT_MS DURATION_MS  one `tandem load --json` object -> one TSV fragment
  report.py failover-table RAW.tsv  lb-failover.sh raw rows -> raw-runs table + summary table
  report.py drill-merge JSON ROW RUN [SENTINEL_LOG...]  one failover_drill.py result + the
                                  Sentinel event times after the kill -> one JSON line (failover.sh)
  report.py drill-table RAW.jsonl failover.sh raw rows -> raw-runs table + p50/p99 summary
  report.py repl-table RAW.tsv    repl.sh raw rows -> raw-runs table + medians and paired ratios
  report.py quantiles P... < NUMBERS  nearest-rank quantiles of the numbers on stdin

Medians: the middle value of the runs (mean of the middle two for an even count). Ratios in the
lb table are the median of per-round ratios: both runs of a pair ran back to back in one round,
so machine noise that drifts between rounds cancels.
"""
import csv
import json
import re
import statistics
import sys

UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def to_ms(text):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"bad latency {text!r}")
    return float(m.group(1)) * UNIT_MS[m.group(2)]


def parse_wrk(path):
    """Returns dict(rps, requests, seconds, p50_ms, p99_ms, errors) from wrk --latency output."""
    text = open(path, encoding="utf-8", errors="replace").read()
    out = {}
    m = re.search(r"^\s*(\d+) requests in ([0-9.]+)(us|ms|s|m),", text, re.M)
    if not m:
        raise SystemExit(f"{path}: no 'requests in' line (did wrk fail?)\n{text}")
    out["requests"] = int(m.group(1))
    out["seconds"] = to_ms(m.group(2) + m.group(3)) / 1000.0
    m = re.search(r"^Requests/sec:\s*([0-9.]+)", text, re.M)
    out["rps"] = float(m.group(1))
    for pct, key in (("50", "p50_ms"), ("99", "p99_ms")):
        m = re.search(rf"^\s*{pct}%\s+(\S+)", text, re.M)
        out[key] = to_ms(m.group(1)) if m else float("nan")
    errors = 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        errors += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        errors += sum(int(g) for g in m.groups())
    out["errors"] = errors
    return out


def read_tsv(path):
    with open(path, encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def fmt_int(x):
    return f"{x:,.0f}"


LB_NAMES = {
    "direct": "direct to backend",
    "tandem": "tandem lb",
    "haproxy": "HAProxy",
    "nginx": "nginx",
}


def lb_table(path):
    rows = read_tsv(path)
    targets = []
    for r in rows:
        if r["target"] not in targets:
            targets.append(r["target"])
    print("Raw runs (run order rotates each round):\n")
    print("| round | order | path | req/s | requests | p50 ms | p99 ms | errors | proxy CPU ticks | proxy CPU µs/req |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        cpu = "—" if r["cpu_ticks"] == "" else r["cpu_ticks"]
        us = "—" if r["cpu_us_req"] == "" else f'{float(r["cpu_us_req"]):.2f}'
        print(f'| {r["round"]} | {r["order"]} | {LB_NAMES.get(r["target"], r["target"])} | '
              f'{fmt_int(float(r["rps"]))} | {r["requests"]} | {float(r["p50_ms"]):.3f} | '
              f'{float(r["p99_ms"]):.3f} | {r["errors"]} | {cpu} | {us} |')

    by_round = {}
    for r in rows:
        by_round.setdefault(r["round"], {})[r["target"]] = r

    def ratio(target, ref):
        vals = [float(rr[target]["rps"]) / float(rr[ref]["rps"])
                for rr in by_round.values() if target in rr and ref in rr]
        return f"{statistics.median(vals):.2f}" if vals else "—"

    print("\nSummary (medians over rounds):\n")
    print("| path | median req/s | vs direct | vs HAProxy | p50 / p99 ms | proxy CPU (% of a core) | proxy CPU µs/request | errors |")
    print("|---|---|---|---|---|---|---|---|")
    for t in targets:
        rs = [r for r in rows if r["target"] == t]
        rps = statistics.median(float(r["rps"]) for r in rs)
        p50 = statistics.median(float(r["p50_ms"]) for r in rs)
        p99 = statistics.median(float(r["p99_ms"]) for r in rs)
        errs = sum(int(r["errors"]) for r in rs)
        if rs[0]["cpu_pct"] == "":
            cpu_pct = cpu_us = "—"
        else:
            cpu_pct = f'{statistics.median(float(r["cpu_pct"]) for r in rs):.0f}%'
            cpu_us = f'{statistics.median(float(r["cpu_us_req"]) for r in rs):.2f}'
        vs_direct = "1.00" if t == "direct" else ratio(t, "direct")
        vs_haproxy = "1.00" if t == "haproxy" else ratio(t, "haproxy")
        print(f"| {LB_NAMES.get(t, t)} | {fmt_int(rps)} | {vs_direct} | {vs_haproxy} | "
              f"{p50:.2f} / {p99:.2f} | {cpu_pct} | {cpu_us} | {errs} |")


def load_row(path, fault_ms, duration_ms):
    """One `tandem load --json` object -> TSV fields for lb-failover.sh's raw file.

    backup_share: share of the OK responses that server b served before the fault. The drill
    sends the client SIGUSR1 at the fault, so that is its first phase ("phases"[0]); without
    phases, the timeline buckets that start before fault_ms - 500 (the margin absorbs the
    client's start-up offset).
    a_share_end: share of OK responses served by a in the last 2 s (after the restore: failback).
    """
    end_ms = float(duration_ms) - 2000.0
    text = open(path, encoding="utf-8").read()
    start = text.find("{")
    if start < 0:
        raise SystemExit(f"{path}: no JSON object in the load client's output")
    j, _ = json.JSONDecoder().raw_decode(text[start:])
    errs = j.get("errors", {})
    tl = j.get("timeline") or []
    phases = j.get("phases") or []
    before = {}
    end = {}
    if len(phases) >= 2:
        before = dict(phases[0].get("servers") or {})
    for e in tl:
        servers = e.get("servers") or {}
        if len(phases) < 2 and e["t_ms"] < float(fault_ms) - 500.0:
            for k, v in servers.items():
                before[k] = before.get(k, 0) + v
        if e["t_ms"] >= end_ms:
            for k, v in servers.items():
                end[k] = end.get(k, 0) + v
    nb = sum(before.values())
    ne = sum(end.values())
    backup = f'{100.0 * before.get("b", 0) / nb:.1f}' if nb else ""
    a_end = f'{100.0 * end.get("a", 0) / ne:.1f}' if ne else ""
    fields = [j["requests"], j["ok"], j["failed"], errs.get("connect", 0), errs.get("reset", 0),
              errs.get("timeout", 0), errs.get("status_5xx", 0), errs.get("protocol", 0),
              j["longest_gap_ms"],
              backup, a_end]
    print("\t".join(str(x) for x in fields))


FAULT_NAMES = {"kill": "kill -9", "stop": "SIGSTOP (hung)"}


def failover_table(path):
    rows = read_tsv(path)
    print("Raw runs:\n")
    print("| proxy/config | mode | fault | run | requests | failed | connect/reset/timeout/5xx/protocol | longest gap ms | backup share before fault | a share, last 2 s | proxy after the run |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f'| {r["config"]} | {r["mode"]} | {FAULT_NAMES.get(r["fault"], r["fault"])} | '
              f'{r["run"]} | {r["requests"]} | {r["failed"]} | '
              f'{r["e_connect"]}/{r["e_reset"]}/{r["e_timeout"]}/{r["e_5xx"]}/{r["e_protocol"]} | '
              f'{float(r["gap_ms"]):.0f} | {pct(r["backup_share"])} | {pct(r["a_share_end"])} | '
              f'{r.get("proxy", "")} |')
    keys = []
    for r in rows:
        k = (r["config"], r["mode"], r["fault"])
        if k not in keys:
            keys.append(k)
    print("\nSummary (medians of the runs):\n")
    print("| proxy/config | mode | fault | failed | longest gap ms | backup share before fault | a share, last 2 s | requests | notes |")
    print("|---|---|---|---|---|---|---|---|---|")
    for k in keys:
        rs = [r for r in rows if (r["config"], r["mode"], r["fault"]) == k]
        failed = statistics.median(int(r["failed"]) for r in rs)
        gap = statistics.median(float(r["gap_ms"]) for r in rs)
        bs = [float(r["backup_share"]) for r in rs if r["backup_share"] != ""]
        ae = [float(r["a_share_end"]) for r in rs if r["a_share_end"] != ""]
        req = statistics.median(int(r["requests"]) for r in rs)
        dead = [r["proxy"] for r in rs if r.get("proxy", "alive") != "alive"]
        note = f"proxy {dead[0]} in {len(dead)}/{len(rs)} runs" if dead else ""
        print(f"| {k[0]} | {k[1]} | {FAULT_NAMES.get(k[2], k[2])} | {failed:g} | {gap:.0f} | "
              f"{pct(statistics.median(bs)) if bs else '—'} | "
              f"{pct(statistics.median(ae)) if ae else '—'} | {fmt_int(req)} | {note} |")


SENTINEL_EVENTS = ("+sdown master", "+odown", "+try-failover", "+elected-leader",
                   "+selected-slave", "+promoted-slave", "+switch-master")


def sentinel_events(kill_wall, logs):
    """Earliest time (ms after the kill, over all Sentinels) of each failover step in the
    Sentinels' logs. Redis log lines start `PID:X 26 Nov 2026 22:54:19.123 # +sdown ...` in the
    local time zone, so they compare with time.time() taken at the kill."""
    import datetime
    out = {}
    pat = re.compile(r"^\d+:X (\d+ \w+ \d+ \d+:\d+:\d+\.\d+) . (.*)$")
    for path in logs:
        try:
            lines = open(path, encoding="utf-8", errors="replace").read().splitlines()
        except OSError:
            continue
        for line in lines:
            m = pat.match(line)
            if not m:
                continue
            t = datetime.datetime.strptime(m.group(1), "%d %b %Y %H:%M:%S.%f").timestamp()
            if t < kill_wall - 0.5:
                continue
            for ev in SENTINEL_EVENTS:
                if m.group(2).startswith(ev):
                    ms = round((t - kill_wall) * 1000)
                    key = ev.split()[0].lstrip("+")
                    if key not in out or ms < out[key]:
                        out[key] = ms
    return out


def drill_merge(path, row, run, logs):
    j = json.loads(open(path, encoding="utf-8").read())
    j["row"] = row
    j["run"] = int(run)
    if logs:
        j["sentinel_ms"] = sentinel_events(j["kill_wall"], logs)
    print(json.dumps(j, sort_keys=True))


def quantile(vals, q):
    """Nearest-rank quantile: the smallest value with at least q of the values at or below it
    (with 10 runs, p50 is the 5th smallest and p99 the largest)."""
    v = sorted(vals)
    if not v:
        return None
    import math
    return v[max(0, math.ceil(q * len(v)) - 1)]


DRILL_NAMES = {
    "redis": "Redis 7 + 3 Sentinels, 1 replica, async",
    "redis-wait": "Redis 7 + 3 Sentinels, 2 replicas, min-replicas-to-write 1 + WAIT 1",
    "tandem-builtin": "tandem db --sync-replicas 1, builtin arbiter, via tandem lb",
    "tandem-etcd": "tandem db --sync-replicas 1, etcd, via tandem lb",
}


def fmt_ms(x):
    return "—" if x is None else f"{x:,.0f}"


def drill_table(path):
    rows = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
    names = []
    for r in rows:
        if r["row"] not in names:
            names.append(r["row"])
    print("Raw runs (ms after the kill; Sentinel columns: earliest log line of that step over the"
          " three Sentinels):\n")
    print("| row | run | kill→first ack | all threads back | failed req | refused connects | acked |"
          " lost | sdown | odown | elected | promoted | switch-master | errors |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        se = r.get("sentinel_ms") or {}
        errs = ", ".join(f"{k} {v}" for k, v in sorted(r["errors"].items()))
        print(f'| {r["row"]} | {r["run"]} | {fmt_ms(r["kill_to_first_ack_ms"])} | '
              f'{fmt_ms(r["all_threads_back_ms"])} | {r["failed_requests"]} | '
              f'{r["refused_connects"]} | {r["acked"]:,} | {r["lost_writes"]} | '
              f'{fmt_ms(se.get("sdown"))} | {fmt_ms(se.get("odown"))} | '
              f'{fmt_ms(se.get("elected-leader"))} | {fmt_ms(se.get("promoted-slave"))} | '
              f'{fmt_ms(se.get("switch-master"))} | {errs} |')
    print("\nSummary (nearest-rank p50/p99 over the runs; with 10 runs p99 is the worst run):\n")
    print("| row | runs | kill→first ack p50 / p99 ms | all threads back p50 / p99 ms |"
          " failed requests p50 / p99 | acked writes lost p50 / p99 (total) | runs with loss |"
          " writes/s before the kill (median) |")
    print("|---|---|---|---|---|---|---|---|")
    for n in names:
        rs = [r for r in rows if r["row"] == n]
        fa = [r["kill_to_first_ack_ms"] for r in rs if r["kill_to_first_ack_ms"] is not None]
        ab = [r["all_threads_back_ms"] for r in rs if r["all_threads_back_ms"] is not None]
        fr = [r["failed_requests"] for r in rs]
        lo = [r["lost_writes"] for r in rs if r["lost_writes"] is not None]
        never = len(rs) - len(fa)
        note = f" ({never} runs never resumed)" if never else ""
        print(f"| {DRILL_NAMES.get(n, n)} | {len(rs)} | {fmt_ms(quantile(fa, .5))} / "
              f"{fmt_ms(quantile(fa, .99))}{note} | {fmt_ms(quantile(ab, .5))} / {fmt_ms(quantile(ab, .99))} | "
              f"{quantile(fr, .5)} / {quantile(fr, .99)} | {quantile(lo, .5)} / {quantile(lo, .99)} "
              f"({sum(lo)}) | {sum(1 for x in lo if x)} | "
              f"{statistics.median(r['writes_per_s_before'] for r in rs):,.0f} |")


REPL_PARTS = {
    # part: (title, column names, index of the column the tandem/redis ratio is taken on)
    "async": ("Async writes, replica attached (redis-benchmark, ops/s)", ["ops/s"], 0),
    "sync": ("Synchronous writes (Redis SET + WAIT 1 0; tandem SET with --sync-replicas 1)",
             ["writes/s", "p50 µs", "p99 µs", "errors"], 0),
    "lag": ("Replication lag under load (ms from the primary's ack to the replica showing it)",
            ["p50 ms", "p99 ms", "max ms", "samples"], 1),
    "resync": ("Full resync of an empty replica (s from REPLICAOF)",
               ["link up s", "all keys s", "check"], 1),
}


def num(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def fmt_num(x):
    if x is None:
        return "—"
    if abs(x) >= 1000 or x == int(x):
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.3g}" if x else "0"


def repl_table(path):
    rows = read_tsv(path)
    kinds = [k for k in ("redis", "tandem") if any(r["kind"] == k for r in rows)]
    print("Raw runs:\n")
    print("| part | test | kind | round | v1 | v2 | v3 | v4 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f'| {r["part"]} | {r["test"]} | {r["kind"]} | {r["round"]} | {r["v1"]} | {r["v2"]} | '
              f'{r["v3"]} | {r["v4"]} |')
    for part, (title, cols, rcol) in REPL_PARTS.items():
        prs = [r for r in rows if r["part"] == part]
        if not prs:
            continue
        tests = []
        for r in prs:
            if r["test"] not in tests:
                tests.append(r["test"])
        print(f"\n{title}, medians over rounds:\n")
        head = "| test | " + " | ".join(f"{k} {c}" for k in kinds for c in cols)
        if len(kinds) == 2:
            head += f" | tandem/redis {cols[rcol]} (paired)"
        print(head + " |")
        print("|---" * (1 + len(kinds) * len(cols) + (len(kinds) == 2)) + "|")
        for t in tests:
            cells = []
            for k in kinds:
                rs = [r for r in prs if r["test"] == t and r["kind"] == k]
                for i, _ in enumerate(cols):
                    vals = [num(r[f"v{i + 1}"]) for r in rs]
                    vals = [v for v in vals if v is not None]
                    if vals:
                        cells.append(fmt_num(statistics.median(vals)))
                    else:
                        cells.append(", ".join(sorted({r[f"v{i + 1}"] for r in rs} - {""})) or "—")
            line = f"| {t} | " + " | ".join(cells)
            if len(kinds) == 2:
                by_round = {}
                for r in prs:
                    if r["test"] == t and num(r[f"v{rcol + 1}"]):
                        by_round.setdefault(r["round"], {})[r["kind"]] = num(r[f"v{rcol + 1}"])
                ratios = [v["tandem"] / v["redis"] for v in by_round.values()
                          if "tandem" in v and "redis" in v]
                line += f' | {statistics.median(ratios):.2f}' if ratios else " | —"
            print(line + " |")


def pct(x):
    if x == "" or x is None:
        return "—"
    return f"{float(x):.0f}%"


def main(argv):
    if len(argv) < 3:
        raise SystemExit(__doc__)
    cmd = argv[1]
    if cmd == "wrk":
        w = parse_wrk(argv[2])
        print(w["rps"], w["requests"], w["seconds"], w["p50_ms"], w["p99_ms"], w["errors"])
    elif cmd == "lb-table":
        lb_table(argv[2])
    elif cmd == "load-row":
        load_row(argv[2], argv[3], argv[4])
    elif cmd == "failover-table":
        failover_table(argv[2])
    elif cmd == "drill-merge":
        drill_merge(argv[2], argv[3], argv[4], argv[5:])
    elif cmd == "drill-table":
        drill_table(argv[2])
    elif cmd == "repl-table":
        repl_table(argv[2])
    elif cmd == "quantiles":
        vals = [float(x) for x in sys.stdin.read().split()]
        print(" ".join(str(quantile(vals, float(q))) for q in argv[2:]))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
