#!/usr/bin/env python3
"""Summarises compare.sh's per-round rows: medians per target and per-round ratios to nginx.

Usage: summarize.py ROWS.tsv   (columns: round target rps p50 p99 rss_kb cpu_us errors)
Prints a Markdown table. Latencies are wrk's strings (850.00us, 2.63ms, 1.02s).
"""
import csv
import statistics
import sys


def ms(text):
    for unit, scale in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * scale
    return float(text)


def main(path):
    rows = list(csv.DictReader(open(path), delimiter="\t"))
    targets = list(dict.fromkeys(r["target"] for r in rows))
    by = {(r["round"], r["target"]): r for r in rows}
    rounds = list(dict.fromkeys(r["round"] for r in rows))

    def ratios(target, field, conv):
        out = []
        for rd in rounds:
            a, b = by.get((rd, target)), by.get((rd, "nginx"))
            if a and b and conv(b[field]) > 0:
                out.append(conv(a[field]) / conv(b[field]))
        return out

    print("| target | req/s | p50 | p99 | peak RSS | CPU µs/req | CPU × nginx (per round → median) | p99 × nginx (per round → median) | errors |")
    print("|---|---|---|---|---|---|---|---|---|")
    for t in targets:
        mine = [r for r in rows if r["target"] == t]
        med = lambda f, conv=float: statistics.median(conv(r[f]) for r in mine)
        served = t != "direct"
        cpu = f"{med('cpu_us'):.1f}" if served else "—"
        rss = f"{med('rss_kb') / 1024:.1f} MB" if served else "—"
        if served and t != "nginx" and "nginx" in targets:
            c = ratios(t, "cpu_us", float)
            p = ratios(t, "p99", ms)
            cr = ", ".join(f"{x:.2f}" for x in c) + f" → **{statistics.median(c):.2f}**"
            pr = ", ".join(f"{x:.2f}" for x in p) + f" → **{statistics.median(p):.2f}**"
        else:
            cr = pr = "—"
        errors = sorted({r["errors"] for r in mine})
        print(
            f"| {t} | {med('rps'):.0f} | {med('p50', ms):.2f} ms | {med('p99', ms):.2f} ms | {rss} | {cpu} | {cr} | {pr} | {'; '.join(errors)} |"
        )


if __name__ == "__main__":
    main(sys.argv[1])
