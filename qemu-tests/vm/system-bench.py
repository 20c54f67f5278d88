#!/usr/bin/env python3
"""Runs in the host VM of the two-VM system test (system.sh bench), with
host-bridge mirroring into the DPU VM over virtio-serial: measures, with
system-ctl reading the DPU's memory outside both VMs,

  * latency from `ip route add` (one `ip -batch -` process fed a line per
    route) to the route in the DPU hardware, over N adds: p50, p99, max;
    the control channel's own round trip (PING), which the latency
    includes once (the ARM answer's trip), is printed beside it;
  * update throughput: 1,000 routes added with one `ip -batch`, then
    deleted, until the DPU holds them / none of them, repeated.

    system-bench.py CTLPORT DEV N CHANNEL
"""
import os, subprocess, sys, time

port, dev, n, channel = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
fd = os.open(port, os.O_RDWR)
buf = b""


def ctl(req):
    global buf
    os.write(fd, (req + "\n").encode())
    while b"\n" not in buf:
        buf += os.read(fd, 4096)
    line, buf = buf.split(b"\n", 1)
    verdict, _, text = line.decode().partition(" ")
    import json
    text = json.loads(text) if text else ""
    if verdict != "OK":
        sys.exit(f"system-bench: {req[:40]}: {verdict} {text}")
    return text


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


rtt = []
for _ in range(100):
    t = time.monotonic()
    ctl("PING")
    rtt.append((time.monotonic() - t) * 1000)

ip = subprocess.Popen(["ip", "-batch", "-"], stdin=subprocess.PIPE, bufsize=0)
lat = []
for i in range(n):
    prefix = f"10.99.{i // 256}.{i % 256}/32"
    ctl(f"ARM {prefix}")
    ip.stdin.write(f"route add {prefix} dev {dev}\n".encode())
    lat.append(float(ctl("WAIT")))
for i in range(n):
    ip.stdin.write(f"route del 10.99.{i // 256}.{i % 256}/32 dev {dev}\n".encode())
ip.stdin.close()
ip.wait()
print(f"latency ip route add -> DPU hardware over {n} adds: p50 {pct(lat, 50):.1f} ms, "
      f"p99 {pct(lat, 99):.1f} ms, max {max(lat):.1f} ms "
      f"(control channel round trip p50 {pct(rtt, 50):.1f} ms, included once)")


rounds, per = 5, 1000
with open("/tmp/bench-add", "w") as f:
    for i in range(per):
        f.write(f"route add 10.98.{i // 256}.{i % 256}/32 dev {dev}\n")
with open("/tmp/bench-del", "w") as f:
    for i in range(per):
        f.write(f"route del 10.98.{i // 256}.{i % 256}/32 dev {dev}\n")
total = 0.0
kernel = 0.0
for _ in range(rounds):
    t = time.monotonic()
    subprocess.check_call(["ip", "-batch", "/tmp/bench-add"])
    kernel += time.monotonic() - t
    ctl(f"COUNT 10.98. {per}")
    t2 = time.monotonic()
    subprocess.check_call(["ip", "-batch", "/tmp/bench-del"])
    kernel += time.monotonic() - t2
    ctl("COUNT 10.98. 0")
    total += time.monotonic() - t
ups = rounds * 2 * per / total
print(f"throughput: {rounds} x ({per} adds + {per} deletes) through ip, host-bridge, {channel} "
      f"and the agent in {total:.2f} s: {ups:.0f} updates/s; the host VM's kernel alone "
      f"(ip -batch) {rounds * 2 * per / kernel:.0f} updates/s, ratio {total / kernel:.2f}")
