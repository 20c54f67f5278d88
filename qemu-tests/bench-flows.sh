#!/usr/bin/env bash
# Benchmark of the firmware stats path (a command, not a test): in the test
# VM, 10,000 tc flower skip_sw rules on a netdevsim port are offloaded
# through host-bridge's BPF firmware into a native dpu-1m agent (65,536
# flows); then it reports
#  - the time of `tc -s filter show` over the 10,000 rules (every rule's
#    counters come from the firmware's flow_stats);
#  - host-bridge's CPU share at a 1 Hz stats refresh (the agent's stats
#    interval is 1 s), twice: with no traffic (the agent sends only the
#    counters that moved, so this is the cost of the loop itself) and with
#    every flow's counters moving (`dpu-hw bump` adds a packet to every flow
#    entry each second, so every stats frame carries all N flows and
#    host-bridge writes N entries into the firmware's counters map);
#  - with the counters moving, how many rules tc -s shows with hardware
#    counters, and the time of tc -s filter show again.
#
#   bash qemu-tests/bench-flows.sh [N]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
n=${1:-10000}
kernel=$(bash bpf/kernel/build.sh | tail -n 1)
DPU_BOARD=dpu-1m CARGO_TARGET_DIR=target/boards/dpu-1m cargo build --quiet --release -p dpu-agent --bins
cargo build --quiet --release -p host-bridge -p dpu-hw --bins
script=$(mktemp /tmp/bench-flows.XXXXXX.sh)
cat >"$script" <<'INNER'
#!/usr/bin/env bash
set -euo pipefail
n=$1
agent=$PWD/target/boards/dpu-1m/release/dpu-agent
bin=$PWD/target/release
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
echo "30 2" >/sys/bus/netdevsim/new_device
sleep 1
p=$(ls /sys/bus/netdevsim/devices/netdevsim30/net | head -n 1)
ip link set $p up; ethtool -K $p hw-tc-offload on; tc qdisc add dev $p clsact
ifx=$(cat /sys/class/net/$p/ifindex)
$agent --listen unix:$work/a.sock --hw $work/hw --stats-interval 1000 >/dev/null 2>$work/agent.log &
ag=$!
for _ in $(seq 100); do [ -S $work/a.sock ] && break; sleep 0.1; done
$bin/host-bridge run --firmware 30 --agent $work/a.sock --status $work/s.sock >/dev/null 2>$work/hb.log &
hb=$!
for _ in $(seq 100); do $bin/host-bridge status --status $work/s.sock --json 2>/dev/null | grep -q '"capacity": *[1-9]' && break; sleep 0.2; done
python3 - "$p" "$n" >$work/batch <<'PY'
import sys
p, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    print(f"filter add dev {p} ingress protocol ip prio 1 handle {i + 1} flower skip_sw "
          f"dst_ip 10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255} ip_proto udp action drop")
PY
t0=$(date +%s.%N)
tc -batch $work/batch
t1=$(date +%s.%N)
for _ in $(seq 300); do [ "$($bin/dpu-hw usage $work/hw | awk '$1=="flow"{print $2}' | cut -d/ -f1)" = "$n" ] && break; sleep 0.2; done
t2=$(date +%s.%N)
echo "installed $n skip_sw rules: tc -batch $(echo "$t1 - $t0" | bc) s; in the DPU after $(echo "$t2 - $t0" | bc) s"
sleep 3
for r in 1 2 3; do
  s=$(date +%s.%N); tc -s filter show dev $p ingress >$work/show; e=$(date +%s.%N)
  echo "tc -s filter show, $n rules, run $r: $(echo "$e - $s" | bc) s ($(grep -c 'Sent hardware' $work/show) with hardware counters)"
done
ticks() { awk '{print $14 + $15}' /proc/$1/stat; }
hz=$(getconf CLK_TCK)
cpu() { # cpu WHAT: host-bridge's and the agent's CPU share over 20 s
  local h0 a0 h1 a1 w0 w1
  h0=$(ticks $hb); a0=$(ticks $ag); w0=$(date +%s.%N)
  sleep 20
  h1=$(ticks $hb); a1=$(ticks $ag); w1=$(date +%s.%N)
  echo "host-bridge CPU at 1 Hz stats, $n flows, $1: $(echo "scale=2; 100 * ($h1 - $h0) / $hz / ($w1 - $w0)" | bc) % of one CPU over $(echo "$w1 - $w0" | bc | cut -c1-5) s (agent: $(echo "scale=2; 100 * ($a1 - $a0) / $hz / ($w1 - $w0)" | bc) %)"
}
cpu "no counters moving"
$bin/dpu-hw bump $work/hw --every 1000 >/dev/null &
sleep 3
cpu "all $n flows' counters moving"
s=$(date +%s.%N); tc -s filter show dev $p ingress >$work/show; e=$(date +%s.%N)
echo "tc -s filter show, $n rules, counters moving: $(echo "$e - $s" | bc) s ($(grep -c 'Sent hardware [1-9]' $work/show) rules with hardware packets)"
INNER
chmod +x "$script"
bash bpf/vm/run.sh --kernel "$kernel" --memory 2G "$script" "$n"
