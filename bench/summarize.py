#!/usr/bin/env python3
"""Turns one benchmark run folder (bench/failover.sh --out DIR) into Markdown tables:
failover/failback min/median/max per system and fault, the false-failover counts, daemon
CPU/RSS over the run, the DNS change latency from the coordinators' history, and the scale
results (scale.json) when present. Usage: summarize.py DIR
   or: summarize.py --medians DIR... (failover medians per run and pooled, one table)"""
import json
import os
import statistics
import sys

SYSTEMS = ["quorate-rfc2136", "quorate-builtin", "powerdns", "gdnsd"]


def load_jsonl(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip().startswith("{")]


def mmm(vals):
    if not vals:
        return "–"
    return "%.2f / %.2f / %.2f" % (min(vals), statistics.median(vals), max(vals))


def pct(vals, p):
    s = sorted(vals)
    if not s:
        return None
    k = min(len(s) - 1, max(0, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def medians(dirs):
    """Failover medians per run folder and over all of them."""
    runs = [(os.path.basename(d.rstrip("/")), load_jsonl(os.path.join(d, "failover.jsonl"))) for d in dirs]
    pooled = [r for _, rows in runs for r in rows]
    print("| fault | system | " + " | ".join("%s (n)" % name for name, _ in runs) + " | pooled (n) |")
    print("|---|---|" + "---|" * (len(runs) + 1))
    for v in ("kill", "linkdown"):
        for s in SYSTEMS:
            cells = []
            for rows in [rows for _, rows in runs] + [pooled]:
                vals = [r["stable_s"] for r in rows if r["system"] == s and r["variant"] == v
                        and r["phase"] == "failover" and r.get("stable_s") is not None]
                cells.append("%.2f (%d)" % (statistics.median(vals), len(vals)) if vals else "–")
            print("| %s | %s | %s |" % (v, s, " | ".join(cells)))


def main():
    if sys.argv[1:2] == ["--medians"]:
        return medians(sys.argv[2:])
    d = sys.argv[1]
    out = []
    settings = os.path.join(d, "settings.txt")
    if os.path.exists(settings):
        out.append("```\n" + open(settings).read().strip() + "\n```\n")

    rows = load_jsonl(os.path.join(d, "failover.jsonl"))
    if rows:
        variants = sorted({r["variant"] for r in rows}, key=lambda v: ["kill", "linkdown"].index(v))
        head = "| system | " + " | ".join("%s: %s" % (v, ph) for v in variants for ph in ("failover", "failback")) + " |"
        out.append("Seconds from the fault (or repair) to a stable new answer; min / median / max (n).\n")
        out.append(head)
        out.append("|---" * (1 + 2 * len(variants)) + "|")
        for s in SYSTEMS:
            cells = []
            for v in variants:
                for ph in ("failover", "failback"):
                    sel = [r for r in rows if r["system"] == s and r["variant"] == v and r["phase"] == ph]
                    vals = [r["stable_s"] for r in sel if r.get("stable_s") is not None]
                    miss = len(sel) - len(vals)
                    cells.append("%s (%d%s)" % (mmm(vals), len(vals), ", %d not reached" % miss if miss else ""))
            out.append("| %s | %s |" % (s, " | ".join(cells)))
        flaps = [r for r in rows if r.get("first_s") is not None and r.get("stable_s") is not None
                 and r["first_s"] != r["stable_s"]]
        out.append("\nSwitches where the answer flapped before settling (first_s != stable_s): %d of %d."
                   % (len(flaps), len(rows)))
        for s in SYSTEMS:
            for v in variants:
                fo = [r["stable_s"] for r in rows if r["system"] == s and r["variant"] == v
                      and r["phase"] == "failover" and r.get("stable_s") is not None]
                if fo:
                    out.append("- %s %s failover values: %s" % (s, v, ", ".join("%.2f" % x for x in sorted(fo))))
        out.append("\nFailover: mean ± standard error of the mean (n), and each Quorate median against PowerDNS's.\n")
        out.append("| system | " + " | ".join("%s: mean ± s.e." % v for v in variants) + " | "
                   + " | ".join("%s: median / PowerDNS median" % v for v in variants) + " |")
        out.append("|---" * (1 + 2 * len(variants)) + "|")

        def fo_vals(s, v):
            return [r["stable_s"] for r in rows if r["system"] == s and r["variant"] == v
                    and r["phase"] == "failover" and r.get("stable_s") is not None]
        for s in SYSTEMS:
            cells, ratios = [], []
            for v in variants:
                vals = fo_vals(s, v)
                if len(vals) >= 2:
                    se = statistics.stdev(vals) / len(vals) ** 0.5
                    cells.append("%.3f ± %.3f (%d)" % (statistics.mean(vals), se, len(vals)))
                else:
                    cells.append("–")
                ref = fo_vals("powerdns", v)
                if vals and ref:
                    ratios.append("%.2f" % (statistics.median(vals) / statistics.median(ref)))
                else:
                    ratios.append("–")
            out.append("| %s | %s | %s |" % (s, " | ".join(cells), " | ".join(ratios)))
        out.append("")

    false_rows = load_jsonl(os.path.join(d, "false-failover.jsonl"))
    if false_rows:
        n = len({r["trial"] for r in false_rows})
        cut = false_rows[0].get("cut_s")
        out.append("False-failover test: the backup host's path to the primary cut for %s s, %d times." % (cut, n))
        out.append("| system | trials where the answer changed | samples not the primary (total) | answer changes (total) |")
        out.append("|---|---|---|---|")
        for s in SYSTEMS:
            sel = [r for r in false_rows if r["system"] == s]
            out.append("| %s | %d of %d | %d of %d | %d |" % (
                s, sum(1 for r in sel if r["changed"]), len(sel),
                sum(r["not_expected"] for r in sel), sum(r["samples"] for r in sel),
                sum(r["changes"] for r in sel)))
        out.append("")

    start, end = os.path.join(d, "resources.start"), os.path.join(d, "resources.end")
    if os.path.exists(start) and os.path.exists(end):
        a = {l.split()[0]: l.split()[1:] for l in open(start) if l.strip()}
        b = {l.split()[0]: l.split()[1:] for l in open(end) if l.strip()}
        wall = float(b.get("wall_s", ["0"])[0] or 0)
        out.append("Daemon resources over the failover and false-failover runs (%.0f s wall):" % wall)
        out.append("| daemon | CPU s | average CPU (share of one core) | RSS at end |")
        out.append("|---|---|---|---|")
        for k in a:
            try:
                cpu = float(b[k][0]) - float(a[k][0])
                out.append("| %s | %.2f | %.2f %% | %.1f MB |" % (k, cpu, 100 * cpu / wall if wall else 0,
                                                                  int(b[k][1]) / 1024.0))
            except (KeyError, ValueError, IndexError):
                out.append("| %s | NA | NA | NA |" % k)
        out.append("")

    for label in ("rfc2136", "builtin"):
        p = os.path.join(d, "dns-changes-%s.json" % label)
        if not os.path.exists(p) or os.path.getsize(p) == 0:
            continue
        try:
            changes = json.load(open(p))
        except ValueError:
            continue
        apply_ms, verify_ms, total_ms = [], [], []
        for c in changes:
            if c.get("status") != "applied":
                continue
            ap = c["updated_ms"] - c["created_ms"]
            ver = 0
            if c.get("verification_json"):
                ver = max((v.get("elapsed_ms", 0) for v in json.loads(c["verification_json"])), default=0)
            apply_ms.append(ap)
            verify_ms.append(ver)
            total_ms.append(ap + ver)
        if total_ms:
            out.append("DNS change latency, coordinator %s (%d changes; ms; p50 / p99 / max):" % (label, len(total_ms)))
            out.append("| part | p50 | p99 | max |")
            out.append("|---|---|---|---|")
            for name, vals in (("apply (history write to applied)", apply_ms),
                               ("verification on every authoritative server", verify_ms),
                               ("apply + verification", total_ms)):
                out.append("| %s | %d | %d | %d |" % (name, pct(vals, 50), pct(vals, 99), max(vals)))
            out.append("")

    p = os.path.join(d, "scale.json")
    if os.path.exists(p):
        sc = json.load(open(p))
        out.append("Scale (%s):" % sc.get("description", ""))
        out.append("```\n" + json.dumps(sc, indent=1) + "\n```")
    p = os.path.join(d, "witness-load.json")
    if os.path.exists(p):
        out.append("Witness throughput:")
        out.append("```\n" + open(p).read().strip() + "\n```")
    print("\n".join(out))


if __name__ == "__main__":
    main()
