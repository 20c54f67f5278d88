#!/usr/bin/env python3
"""The kernel's route and nexthop offload flags against the DPU's tables.

    fib_compare.py R4.json R6.json HW.txt [NH.json] [quiet]

R4/R6: `ip -j -4|-6 route show table all`; HW: `dpu-hw dump`; NH:
`ip -j nexthop show`. A route (table, destination, metric) must carry
rt_offload exactly when the DPU holds it, rt_offload_failed only when it
does not, and every test route (10.0.0.0/8, 2001:db8:2::/48) one of the
two: none waits. A nexthop object (single or group) must carry offload
exactly when the DPU holds it (nexthop objects have no failed flag; the
DPU's own nexthops for inline paths, id 0, are no kernel objects). Exit 1
with the differences otherwise.
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
    held, nhs = set(), set()
    pat = re.compile(r"^route\[\d+\] table (\d+) (\S+)/(\d+) metric (\d+)")
    nh_pat = re.compile(r"^(?:nexthop|group)\[\d+\] id (\d+)")
    for line in open(path):
        m = pat.match(line)
        if m:
            held.add((int(m[1]), f"{m[2]}/{m[3]}", int(m[4])))
        m = nh_pat.match(line)
        # id 0: a nexthop the agent made for routes with inline paths,
        # not a kernel object (the kernel's ids start at 1).
        if m and int(m[1]) != 0:
            nhs.add(int(m[1]))
    return held, nhs


def nexthops(path):
    text = open(path).read().strip()
    return {n["id"]: set(n.get("flags", [])) for n in (json.loads(text) if text else [])}


def main():
    args = sys.argv[1:]
    quiet = "quiet" in args
    args = [a for a in args if a != "quiet"]
    r4, r6, hw = args[:3]
    routes = kernel(r4, False)
    routes.update(kernel(r6, True))
    held, nh_held = hardware(hw)
    bad = []
    counts = {"offload": 0, "offload_failed": 0, "none": 0, "held": len(held)}
    for k, flags in sorted(routes.items()):
        off, failed = "rt_offload" in flags, "rt_offload_failed" in flags
        counts["offload" if off else "offload_failed" if failed else "none"] += 1
        if k[0] != 255 and re.match(r"fe[89ab][0-9a-f]:", k[1]) and not (off or failed):
            # An IPv6 link-local route (fe80::/64 per device): the mirror
            # keys it by its device too, which netdevsim's route event
            # does not carry, so the FIB firmware may leave it without a
            # flag (host-bridge fib_fw.rs held_route). A flag it does get
            # is checked as any other; the local table's link-local
            # addresses are flagged as before.
            continue
        if off != (k in held):
            bad.append(f"{k}: flags {sorted(flags)}, DPU {'holds' if k in held else 'lacks'} it")
        elif failed and k in held:
            bad.append(f"{k}: rt_offload_failed, but the DPU holds it")
        test = k[1].startswith("10.") or k[1].startswith("2001:db8:2:")
        if test and not (off or failed):
            bad.append(f"{k}: no flag yet")
    for k in sorted(held - set(routes)):
        bad.append(f"{k}: the DPU holds a route the kernel lacks")
    if len(args) > 3:
        nhs = nexthops(args[3])
        counts["nh_offload"] = sum("offload" in f for f in nhs.values())
        counts["nh_none"] = len(nhs) - counts["nh_offload"]
        counts["nh_held"] = len(nh_held)
        for i, flags in sorted(nhs.items()):
            if ("offload" in flags) != (i in nh_held):
                bad.append(f"nexthop {i}: flags {sorted(flags)}, DPU {'holds' if i in nh_held else 'lacks'} it")
        for i in sorted(nh_held - set(nhs)):
            bad.append(f"nexthop {i}: the DPU holds a nexthop the kernel lacks")
    print(" ".join(f"{n} {c}" for n, c in counts.items()))
    if bad:
        if not quiet:
            for b in bad[:20]:
                print("  " + b)
            print(f"  ({len(bad)} differences)")
        sys.exit(1)


main()
