#!/usr/bin/env python3
"""The kernel's route offload flags against the DPU's route table.

    fib_compare.py R4.json R6.json HW.txt [quiet]

R4/R6: `ip -j -4|-6 route show table all`; HW: `dpu-hw dump`. A route
(table, destination, metric) must carry rt_offload exactly when the DPU
holds it, rt_offload_failed only when it does not, and every test route
(10.0.0.0/8, 2001:db8:2::/48) one of the two: none waits. Exit 1 with the
differences otherwise.
"""
import json
import re
import sys

TABLES = {"main": 254, "local": 255, "default": 253}


def kernel(path, v6):
    out = {}
    for r in json.load(open(path)):
        if r.get("type", "unicast") not in ("unicast", "blackhole", "unreachable", "prohibit", "local"):
            continue
        dst = r["dst"]
        if dst == "default":
            dst = "::/0" if v6 else "0.0.0.0/0"
        elif "/" not in dst:
            dst += "/128" if v6 else "/32"
        t = r.get("table", "main")
        table = TABLES.get(t, None)
        if table is None:
            table = int(t)
        key = (table, dst, int(r.get("metric", 0)))
        out[key] = set(f for f in r.get("flags", []) if f.startswith("rt_"))
    return out


def hardware(path):
    held = set()
    pat = re.compile(r"^route\[\d+\] table (\d+) (\S+)/(\d+) metric (\d+)")
    for line in open(path):
        m = pat.match(line)
        if m:
            held.add((int(m[1]), f"{m[2]}/{m[3]}", int(m[4])))
    return held


def main():
    r4, r6, hw = sys.argv[1:4]
    quiet = len(sys.argv) > 4 and sys.argv[4] == "quiet"
    routes = kernel(r4, False)
    routes.update(kernel(r6, True))
    held = hardware(hw)
    bad = []
    counts = {"offload": 0, "offload_failed": 0, "none": 0, "held": len(held)}
    for k, flags in sorted(routes.items()):
        off, failed = "rt_offload" in flags, "rt_offload_failed" in flags
        counts["offload" if off else "offload_failed" if failed else "none"] += 1
        if off != (k in held):
            bad.append(f"{k}: flags {sorted(flags)}, DPU {'holds' if k in held else 'lacks'} it")
        elif failed and k in held:
            bad.append(f"{k}: rt_offload_failed, but the DPU holds it")
        test = k[1].startswith("10.") or k[1].startswith("2001:db8:2:")
        if test and not (off or failed):
            bad.append(f"{k}: no flag yet")
    for k in sorted(held - set(routes)):
        bad.append(f"{k}: the DPU holds a route the kernel lacks")
    print(" ".join(f"{n} {c}" for n, c in counts.items()))
    if bad:
        if not quiet:
            for b in bad[:20]:
                print("  " + b)
            print(f"  ({len(bad)} differences)")
        sys.exit(1)


main()
