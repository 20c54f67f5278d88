//! host-bridge against the real kernel: a network namespace the test
//! builds, host-bridge mirroring it into the aarch64 agent under
//! qemu-aarch64-static, and the DPU hardware (read through the independent
//! reader) compared with what `ip -j` dumps after every change.
//!
//! This host's kernel has no bridge or VXLAN driver; those parts of the
//! topology run in the VM tests.

use dpu_hw::reader;
use dpu_hw::Region;
use qemu_tests::kernel_view::*;
use qemu_tests::{agent_bin, big_agent_bin, host_bridge_bin, QEMU};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Self {
        let name = format!("hbt-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let st = Command::new("ip").args(["netns", "add", &name]).status().expect("ip netns add");
        assert!(st.success());
        Netns(name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The agent (aarch64, qemu-user) and host-bridge in `ns`.
struct Setup {
    dir: PathBuf,
    ns: Netns,
    agent: Option<Proc>,
    bridge: Option<Proc>,
    rcvbuf: usize,
    extra: Vec<String>,
    env: Vec<(String, String)>,
    agent_bin: &'static Path,
}

impl Setup {
    fn new(tag: &str, rcvbuf: usize) -> Self {
        let dir = std::env::temp_dir().join(format!("hbt-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        Setup {
            dir,
            ns: Netns::new(tag),
            agent: None,
            bridge: None,
            rcvbuf,
            extra: vec![],
            env: vec![],
            agent_bin: agent_bin(),
        }
    }

    fn start_agent(&mut self) {
        self.agent = None;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("agent.log"))
            .expect("log");
        let _ = std::fs::remove_file(self.dir.join("agent.sock"));
        let c = Command::new(QEMU)
            .arg(self.agent_bin)
            .args(["--listen", &format!("unix:{}", self.dir.join("agent.sock").display())])
            .args(["--hw", &self.dir.join("hw").display().to_string()])
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn agent");
        self.agent = Some(Proc(c));
        let t = Instant::now();
        while !self.dir.join("agent.sock").exists() {
            assert!(t.elapsed() < Duration::from_secs(30), "agent did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn start_bridge(&mut self) {
        self.bridge = None;
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("hb.log")).expect("log");
        // Through sh when a watchdog is asked for: systemd sets
        // WATCHDOG_PID to the service's pid, which only the exec'd shell
        // knows here.
        let mut c = if self.env.iter().any(|(k, _)| k == "WATCHDOG_USEC") {
            let mut c = Command::new("sh");
            c.args(["-c", "WATCHDOG_PID=$$ exec \"$0\" \"$@\""]).arg(host_bridge_bin());
            c
        } else {
            Command::new(host_bridge_bin())
        };
        let c = c
            .args(["run", "--netns", &self.ns.0])
            .args(["--agent", &self.dir.join("agent.sock").display().to_string()])
            .args(["--status", &self.dir.join("status.sock").display().to_string()])
            .args(["--rcvbuf", &self.rcvbuf.to_string()])
            .args(&self.extra)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn host-bridge");
        self.bridge = Some(Proc(c));
    }

    fn sh(&self, cmd: &str) {
        sh(&self.ns.0, cmd)
    }

    fn log(&self, f: &str) -> String {
        std::fs::read_to_string(self.dir.join(f)).unwrap_or_default()
    }

    fn hw(&self) -> reader::HwTables {
        reader::read(&Region::open(&self.dir.join("hw")).expect("open region"))
    }

    /// Waits until the hardware equals the kernel; panics with the
    /// difference after `secs`.
    fn converge(&self, secs: u64) {
        let t = Instant::now();
        loop {
            let want = kernel_routes(&self.ns.0);
            let got = hw_routes(&self.hw());
            let (wn, gn) = (kernel_neighbours(&self.ns.0), hw_neighbours(&self.hw()));
            if want == got && wn == gn {
                return;
            }
            if t.elapsed() > Duration::from_secs(secs) {
                let missing: Vec<_> = want.difference(&got).take(10).collect();
                let extra: Vec<_> = got.difference(&want).take(10).collect();
                panic!(
                    "hardware != kernel after {secs} s\nroutes missing from hw ({}): {missing:#?}\nextra in hw ({}): {extra:#?}\nneighbours kernel {wn:?} hw {gn:?}\nhost-bridge log:\n{}\nagent log:\n{}",
                    want.difference(&got).count(),
                    got.difference(&want).count(),
                    self.log("hb.log"),
                    self.log("agent.log")
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// (table, dst, metric, type, sorted nexthops (gateway, ifindex, weight))
const TOPOLOGY: &str = "
ip link set lo up
ip link add v0 type veth peer name v1
ip link add w0 type veth peer name w1
ip link set v0 up; ip link set v1 up; ip link set w0 up; ip link set w1 up
ip addr add 192.0.2.1/24 dev v0
ip addr add 198.51.100.1/24 dev w0
ip -6 addr add 2001:db8:1::1/64 dev v0 nodad
ip -6 addr add 2001:db8:2::1/64 dev w0 nodad
ip neigh add 192.0.2.254 lladdr 02:00:00:00:00:aa dev v0
ip neigh add 198.51.100.254 lladdr 02:00:00:00:00:bb dev w0
ip -6 neigh add 2001:db8:1::fe lladdr 02:00:00:00:00:cc dev v0
ip nexthop add id 10 via 192.0.2.254 dev v0
ip nexthop add id 11 via 198.51.100.254 dev w0
ip nexthop add id 20 group 10,1/11,3
ip nexthop add id 30 via 2001:db8:1::fe dev v0
ip route add 10.10.0.0/16 nhid 10
ip route add 10.20.0.0/16 nhid 20
ip route add 10.30.0.0/16 nexthop via 192.0.2.254 dev v0 weight 2 nexthop via 198.51.100.254 dev w0 weight 1
ip route add 10.40.0.0/16 via 198.51.100.254 dev w0 table 100
ip route add 10.50.0.0/16 nhid 20 table 100 metric 20
ip route add blackhole 10.60.0.0/16
ip route add unreachable 10.61.0.0/16 table 100
ip -6 route add 2001:db8:10::/48 nhid 30
ip -6 route add 2001:db8:20::/48 via 2001:db8:2::fe dev w0 metric 50
";

#[test]
fn mirror_follows_the_kernel() {
    let mut s = Setup::new("follow", 32 << 20);
    s.sh(TOPOLOGY);
    s.start_agent();
    s.start_bridge();
    s.converge(30);

    // The taps: each one named at start, attached or unavailable with the
    // kernel's reason. On a kernel that refuses the FIB and nexthop taps
    // (this build host's: fentry EPERM, no kprobes) host-bridge says it
    // falls back to netlink alone, and the link-down below is mirrored by
    // the re-dump.
    let log = s.log("hb.log");
    for t in host_bridge::notifier::TAPS {
        let line = log.lines().find(|l| l.contains(&format!("tap {} ({})", t.name, t.chain)));
        let line = line.unwrap_or_else(|| panic!("tap {} not reported:\n{log}", t.name));
        assert!(
            ["fexit", "fentry", "kprobe", "tp_btf", "unavailable ("].iter().any(|m| line.contains(m)),
            "{line}"
        );
    }
    let fib_off = log.lines().any(|l| l.contains("tap fib (") && l.contains("unavailable"));
    if fib_off {
        assert!(log.contains("a link going down re-dumps routes"), "{log}");
    }

    // Changes as a user makes them.
    s.sh("ip route add 10.70.0.0/16 via 192.0.2.254 dev v0; ip route replace 10.10.0.0/16 nhid 11; ip route del 10.60.0.0/16");
    s.sh("ip neigh replace 192.0.2.254 lladdr 02:00:00:00:00:ab dev v0");
    s.converge(20);

    // IPv6 multipath is a set of sibling routes: appended one by one, and
    // deleted one by one, each delete naming only the sibling it removes.
    s.sh("ip -6 route add 2001:db8:30::/48 via 2001:db8:1::fe dev v0; \
          ip -6 route append 2001:db8:30::/48 via 2001:db8:2::fe dev w0; \
          ip -6 route append 2001:db8:30::/48 via 2001:db8:2::fd dev w0");
    s.converge(20);
    s.sh("ip -6 route del 2001:db8:30::/48 via 2001:db8:1::fe dev v0");
    s.converge(20);
    s.sh("ip -6 route del 2001:db8:30::/48 via 2001:db8:2::fd dev w0");
    s.converge(20);
    s.sh("ip -6 route del 2001:db8:30::/48");
    s.converge(20);

    // A nexthop object goes: its routes go silently in the kernel.
    s.sh("ip nexthop del id 20");
    s.converge(20);
    s.sh("ip nexthop add id 40 blackhole; ip route add 10.90.0.0/16 nhid 40");
    s.converge(20);
    s.sh("ip nexthop del id 40");
    s.converge(20);

    // A link goes down: IPv4 routes through it are flushed without a word.
    s.sh("ip link set w0 down");
    s.converge(20);
    s.sh("ip link set w0 up; ip route add 10.80.0.0/16 via 198.51.100.254 dev w0");
    s.converge(20);

    // A port goes away with its neighbours and addresses.
    s.sh("ip link del w0");
    s.converge(20);

    // The status output mirrors the routes as JSON.
    let out = Command::new(host_bridge_bin())
        .args(["status", "--json", "--status", &s.dir.join("status.sock").display().to_string()])
        .output()
        .expect("status");
    let v: Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    let routes = v["routes"].as_array().expect("routes");
    let r = routes.iter().find(|r| r["dst"] == "10.70.0.0/16").expect("10.70.0.0/16 in status");
    assert_eq!(r["table"], 254);
    assert_eq!(r["nexthops"][0]["gateway"], "192.0.2.254");
    assert_eq!(v["dpu"]["connected"], true);
    // Everything above came through the event ring (netlink::ring), the
    // default, not the socket it falls back to.
    assert_eq!(v["host_bridge"]["events_via"], "ring", "{}", s.log("hb.log"));
    // The text is the summary; --all adds every object.
    let text = |all: bool| {
        let sock = s.dir.join("status.sock").display().to_string();
        let mut args = vec!["status", "--status", &sock];
        if all {
            args.push("--all");
        }
        let out = Command::new(host_bridge_bin()).args(&args).output().expect("status");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let summary = text(false);
    assert!(summary.contains("mirror: {") && !summary.contains("route table"), "{summary}");
    assert!(text(true).contains("route table 254 10.70.0.0/16"), "--all lists the routes");
    let _ = std::fs::remove_dir_all(&s.dir);
}

#[test]
fn restarts_rewrite_nothing() {
    let mut s = Setup::new("restart", 32 << 20);
    s.sh(TOPOLOGY);
    s.start_agent();
    s.start_bridge();
    s.converge(30);
    let regs =
        |hw: &reader::HwTables| hw.tables.iter().map(|t| (t.writes, t.invalidates)).collect::<Vec<_>>();
    // Late kernel events (IPv6 addresses coming up) settle first.
    let mut before = regs(&s.hw());
    loop {
        std::thread::sleep(Duration::from_secs(2));
        let now = regs(&s.hw());
        if now == before {
            break;
        }
        before = now;
    }

    // host-bridge restarts: same state, nothing rewritten.
    s.start_bridge();
    let t = Instant::now();
    while s.log("hb.log").matches("snapshot 1:").count() < 2 {
        assert!(t.elapsed() < Duration::from_secs(30), "no second snapshot:\n{}", s.log("hb.log"));
        std::thread::sleep(Duration::from_millis(100));
    }
    s.converge(10);
    assert_eq!(regs(&s.hw()), before, "a host-bridge restart rewrote hardware entries");

    // The agent restarts (warm): same.
    s.start_agent();
    let t = Instant::now();
    while s.log("hb.log").matches("snapshot").count() < 3 {
        assert!(t.elapsed() < Duration::from_secs(30), "no resync after agent restart:\n{}", s.log("hb.log"));
        std::thread::sleep(Duration::from_millis(100));
    }
    s.converge(10);
    assert_eq!(regs(&s.hw()), before, "an agent restart rewrote hardware entries");
    let _ = std::fs::remove_dir_all(&s.dir);
}

/// A burst of 100k routes into a tiny event buffer: events are lost for
/// certain, and the resync makes the DPU identical to the kernel again.
/// The dpu-1m board holds them all.
fn overflow_case(tag: &str, rcvbuf: usize, extra: &[&str], logged: &str) {
    let mut s = Setup::new(tag, rcvbuf);
    s.agent_bin = big_agent_bin();
    s.extra = extra.iter().map(|a| a.to_string()).collect();
    s.sh("ip link set lo up; ip link add v0 type veth peer name v1; ip link set v0 up; ip link set v1 up; ip addr add 192.0.2.1/24 dev v0; ip nexthop add id 1 via 192.0.2.254 dev v0");
    s.start_agent();
    s.start_bridge();
    s.converge(30);
    let n = 100_000;
    let batch: String = (0..n)
        .map(|i| format!("route add {}.{}.{}.0/24 nhid 1\n", 11 + i / 65536, (i / 256) % 256, i % 256))
        .collect();
    std::fs::write(s.dir.join("batch"), batch).expect("batch");
    s.sh(&format!("ip -batch {}", s.dir.join("batch").display()));
    s.converge(120);
    let log = s.log("hb.log");
    assert!(log.contains(logged), "no loss was provoked (no \"{logged}\" in the log):\n{log}");
    let _ = std::fs::remove_dir_all(&s.dir);
}

#[test]
fn overflow_recovers_to_identical() {
    // The event socket read itself, with a 4 KiB receive buffer: ENOBUFS.
    overflow_case("enobufs", 4096, &["--event-ring", "0"], "receive buffer overflowed");
}

#[test]
fn ring_loss_recovers_to_identical() {
    // The event ring at its smallest (128 KiB, some 900 route events),
    // read every 300 ms in a burst: the filter counts what it has no
    // room for.
    overflow_case(
        "ringloss",
        32 << 20,
        &["--event-ring", "8192", "--burst-pause", "300"],
        "netlink event ring full",
    );
}

#[test]
fn config_limits_what_is_offloaded() {
    let mut s = Setup::new("config", 32 << 20);
    s.sh(TOPOLOGY);
    let cfg = s.dir.join("hb.toml");
    std::fs::write(&cfg, "[offload]\nlinks = [\"v*\", \"lo\"]\ntables = [254]\n").expect("config");
    s.extra = vec!["--config".into(), cfg.display().to_string()];
    s.start_agent();
    s.start_bridge();
    let t = Instant::now();
    loop {
        let want: BTreeSet<RouteRow> = kernel_routes(&s.ns.0).into_iter().filter(|r| r.0 == 254).collect();
        let hw = s.hw();
        let got = hw_routes(&hw);
        let neigh: BTreeSet<_> = hw.neighs.iter().map(|n| n.entry.ip.to_string()).collect();
        let ports: BTreeSet<_> = hw.ports.iter().map(|p| p.entry.name_str().to_string()).collect();
        let want_ports: BTreeSet<String> = ["lo", "v0", "v1"].iter().map(|s| s.to_string()).collect();
        let want_neigh: BTreeSet<String> =
            ["192.0.2.254", "2001:db8:1::fe"].iter().map(|s| s.to_string()).collect();
        if got == want && ports == want_ports && neigh == want_neigh {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "config not applied:\nroutes want {want:#?}\ngot {got:#?}\nports {ports:?}\nneighbours {neigh:?}\n{}",
            s.log("hb.log")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = std::fs::remove_dir_all(&s.dir);
}

/// What the DPU cannot represent exactly is not offloaded, and never
/// approximated: each case against the real kernel, the DPU hardware
/// compared with `ip -j route` by the oracle's rules (kernel_view.rs).
#[test]
fn nothing_is_approximated() {
    let mut s = Setup::new("fidelity", 32 << 20);
    s.sh(TOPOLOGY);
    s.start_agent();
    s.start_bridge();
    s.converge(30);

    // An IPv4 route through an IPv6 gateway (RTA_VIA): exact, the DPU
    // resolves the IPv6 neighbour.
    s.sh("ip route add 10.100.0.0/16 via inet6 2001:db8:1::fe dev v0");
    s.converge(20);
    let hw = s.hw();
    let via = hw_routes(&hw).into_iter().find(|r| r.1 == "10.100.0.0/16").expect("10.100.0.0/16 on the DPU");
    assert_eq!(via.4, vec![(Some("2001:db8:1::fe".to_string()), via.4[0].1, 1)], "{via:?}");

    // Lightweight-tunnel encaps: not offloaded (a route, a path, IPv6).
    s.sh("ip route add 10.101.0.0/16 encap seg6 mode encap segs 2001:db8::9 dev v0; \
          ip route add 10.102.0.0/16 encap ip id 5 dst 192.0.2.9 dev v0; \
          ip -6 route add 2001:db8:40::/48 encap seg6 mode encap segs 2001:db8::9 dev v0; \
          ip route add 10.103.0.0/16 nexthop via 192.0.2.254 dev v0 encap ip id 6 dst 192.0.2.8 \
              nexthop via 198.51.100.254 dev w0");
    // More paths than the wire carries: not offloaded, not truncated.
    let hops: String = (10..43).map(|i| format!(" nexthop via 192.0.2.{i} dev v0")).collect();
    s.sh(&format!("ip route add 10.106.0.0/16{hops}"));
    // A route that was offloaded and gains an encap leaves the DPU.
    s.sh("ip route replace 10.70.0.0/16 via 192.0.2.254 dev v0; sleep 0.5; \
          ip route replace 10.70.0.0/16 encap ip id 7 dst 192.0.2.7 via 192.0.2.254 dev v0");
    s.converge(20);
    let status = || {
        let out = Command::new(host_bridge_bin())
            .args(["status", "--json", "--status", &s.dir.join("status.sock").display().to_string()])
            .output()
            .expect("status");
        serde_json::from_slice::<Value>(&out.stdout).expect("status JSON")
    };
    let v = status();
    let listed = |dst: &str| {
        v["not_offloaded"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| r["key"].as_str().is_some_and(|k| k.contains(dst)))
    };
    for dst in [
        "10.101.0.0/16",
        "10.102.0.0/16",
        "2001:db8:40::/48",
        "10.103.0.0/16",
        "10.106.0.0/16",
        "10.70.0.0/16",
    ] {
        assert!(listed(dst), "{dst} not listed as not offloaded: {}", v["not_offloaded"]);
    }
    assert!(v["mirror"]["not_offloaded"].as_u64().unwrap_or(0) >= 6, "{}", v["mirror"]);
    let log = s.log("hb.log");
    assert_eq!(log.matches("10.106.0.0/16").count(), 1, "logged once:\n{log}");

    // TOS and source-prefix routes: the DPU matches on the destination
    // only, so the prefix is trapped to the host while one exists; the
    // plain route of the same prefix comes back once it goes.
    s.sh("ip route add 10.10.0.0/16 tos 0x10 via 198.51.100.254 dev w0; \
          ip route add 10.104.0.0/16 tos 0x08 via 198.51.100.254 dev w0; \
          ip -6 route add 2001:db8:20::/48 from 2001:db8:9::/64 via 2001:db8:1::fe dev v0");
    s.converge(20);
    let hw = s.hw();
    let trapped: Vec<_> = hw_routes(&hw).into_iter().filter(|r| r.3 == "local" && r.0 == 254).collect();
    for dst in ["10.10.0.0/16", "10.104.0.0/16", "2001:db8:20::/48"] {
        assert!(trapped.iter().any(|r| r.1 == dst), "{dst} not trapped: {trapped:?}");
    }
    let v = status();
    assert_eq!(v["mirror"]["qualified_routes"], 3, "{}", v["mirror"]);
    // A change to the plain route while its prefix is trapped is kept.
    s.sh("ip route replace 10.10.0.0/16 via 192.0.2.254 dev v0");
    s.converge(20);
    s.sh("ip route del 10.10.0.0/16 tos 0x10; ip route del 10.104.0.0/16 tos 0x08; \
          ip -6 route del 2001:db8:20::/48 from 2001:db8:9::/64");
    s.converge(20);
    let back = hw_routes(&s.hw()).into_iter().find(|r| r.1 == "10.10.0.0/16").expect("10.10.0.0/16 back");
    assert_eq!(back.3, "unicast", "{back:?}");

    // Dead paths: a link going admin-down flags its paths dead without a
    // message; the DPU keeps only the live ones, and gets them all back
    // at the link's up.
    s.sh("ip route add 10.105.0.0/16 nexthop via 192.0.2.254 dev v0 nexthop via 198.51.100.254 dev w0; \
          ip -6 route add 2001:db8:50::/48 nexthop via 2001:db8:1::fe dev v0 nexthop via 2001:db8:2::fe dev w0");
    s.converge(20);
    s.sh("ip link set w0 down");
    s.converge(20);
    let one = hw_routes(&s.hw()).into_iter().find(|r| r.1 == "10.105.0.0/16").expect("10.105.0.0/16");
    assert_eq!(one.4.len(), 1, "the dead path is left out: {one:?}");
    s.sh("ip link set w0 up; ip neigh replace 198.51.100.254 lladdr 02:00:00:00:00:bb dev w0; \
          ip -6 neigh replace 2001:db8:2::fe lladdr 02:00:00:00:00:dd dev w0");
    s.converge(20);
    let two = hw_routes(&s.hw()).into_iter().find(|r| r.1 == "10.105.0.0/16").expect("10.105.0.0/16");
    assert_eq!(two.4.len(), 2, "both paths again: {two:?}");
    let _ = std::fs::remove_dir_all(&s.dir);
}

/// Routes that share a key: an address in one subnet on two links gives
/// two prefix routes of one (table, dst, metric), and `ip route append`
/// adds more. The kernel chooses among them per lookup, so the prefix is
/// trapped to the host while two share it, listed as not offloaded; when
/// one goes, the other is on the DPU, exactly. Found by a dump as well as
/// by events.
#[test]
fn shared_keys_trap_their_prefix() {
    let mut s = Setup::new("shared", 32 << 20);
    s.sh(TOPOLOGY);
    // Found by the first dump: 2001:db8:9::/64 on v0 and w0.
    s.sh("ip -6 addr add 2001:db8:9::1/64 dev v0 nodad; ip -6 addr add 2001:db8:9::2/64 dev w0 nodad");
    s.start_agent();
    s.start_bridge();
    s.converge(30);
    let dir = s.dir.clone();
    let kind_of = |dst: &str| -> Vec<(u32, String)> {
        let hw = reader::read(&Region::open(&dir.join("hw")).expect("open region"));
        hw_routes(&hw).into_iter().filter(|r| r.1 == dst).map(|r| (r.2, r.3)).collect()
    };
    assert_eq!(kind_of("2001:db8:9::/64"), vec![(0, "local".to_string())], "dumped: trapped");
    // By events: one IPv4 subnet on both links, and appended device and
    // gateway routes.
    s.sh("ip addr add 203.0.113.1/24 dev v0; ip addr add 203.0.113.2/24 dev w0; \
          ip route append 10.200.0.0/16 dev v0; ip route append 10.200.0.0/16 dev w0; \
          ip -6 route append 2001:db8:70::/64 dev v0; ip -6 route append 2001:db8:70::/64 dev w0; \
          ip route add 10.201.0.0/16 via 192.0.2.254 dev v0 metric 5; \
          ip route append 10.201.0.0/16 via 198.51.100.254 dev w0 metric 5");
    s.converge(20);
    for dst in ["203.0.113.0/24", "10.200.0.0/16", "2001:db8:70::/64", "10.201.0.0/16"] {
        assert_eq!(kind_of(dst), vec![(0, "local".to_string())], "{dst} trapped");
    }
    // Shared keys counted and listed in status, once both are five (a
    // restarted host-bridge answers after its first dump).
    let shared_listed = |what: &str| {
        let t = Instant::now();
        loop {
            let out = Command::new(host_bridge_bin())
                .args(["status", "--json", "--status", &dir.join("status.sock").display().to_string()])
                .output()
                .expect("status");
            let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            let listed = v["not_offloaded"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| {
                    r["why"].as_str().is_some_and(|w| w.contains("share its table, prefix and metric"))
                })
                .count();
            if v["mirror"]["shared_keys"] == 5 && listed == 5 {
                return;
            }
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "{what}: {listed} listed, status {}\n{}",
                v["mirror"],
                v["not_offloaded"]
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    shared_listed("by events");
    // A restart's dump finds the same five, IPv4 keys at metric 0 (the
    // trap's own key) listed too.
    s.start_bridge();
    shared_listed("after a restart");
    s.converge(20);
    // One of each goes: the other is the DPU's route again.
    s.sh("ip -6 addr del 2001:db8:9::1/64 dev v0; ip addr del 203.0.113.1/24 dev v0; \
          ip route del 10.200.0.0/16 dev w0; ip -6 route del 2001:db8:70::/64 dev v0; \
          ip route del 10.201.0.0/16 via 192.0.2.254 dev v0 metric 5");
    s.converge(20);
    for dst in ["2001:db8:9::/64", "203.0.113.0/24", "10.200.0.0/16", "2001:db8:70::/64", "10.201.0.0/16"] {
        let k = kind_of(dst);
        assert!(k.len() == 1 && k[0].1 == "unicast", "{dst} back as a plain route: {k:?}");
    }
    // A restart finds none shared any more, and the same hardware.
    s.start_bridge();
    s.converge(20);
    let _ = std::fs::remove_dir_all(&s.dir);
}

/// IPv6 link-local routes: the kernel holds `fe80::/64` once per device,
/// with one prefix and metric. Each is mirrored under its own key, and the
/// DPU's entry names its device as the only ingress port it matches (the
/// kernel looks link-local destinations up among the ingress device's
/// routes only). A link's routes come and go with it; the others stay.
#[test]
fn link_local_routes_per_device() {
    let mut s = Setup::new("linklocal", 32 << 20);
    s.sh(TOPOLOGY);
    s.sh("ip link add x0 type veth peer name x1; ip link set x0 up; ip link set x1 up");
    s.start_agent();
    s.start_bridge();
    let ns = s.ns.0.clone();
    let kernel_ll = || -> BTreeSet<u32> {
        let links: std::collections::HashMap<String, u32> = json(&ns, &["link"])
            .as_array()
            .into_iter()
            .flatten()
            .map(|l| {
                (l["ifname"].as_str().unwrap_or("").to_string(), l["ifindex"].as_u64().unwrap_or(0) as u32)
            })
            .collect();
        json(&ns, &["-6", "route", "show", "table", "main", "fe80::/64"])
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| links.get(r["dev"].as_str().unwrap_or("")).copied())
            .collect()
    };
    let hw_ll = |hw: &reader::HwTables| -> Vec<(u32, Vec<u32>)> {
        let mut v: Vec<(u32, Vec<u32>)> = hw
            .routes
            .iter()
            .filter(|r| r.entry.table == 254 && r.entry.plen == 64 && r.entry.dst.to_string() == "fe80::")
            .map(|r| (r.entry.in_ifindex, hw.resolve(&r.entry).iter().map(|n| n.ifindex).collect()))
            .collect();
        v.sort();
        v
    };
    let check = |what: &str| {
        let t = Instant::now();
        loop {
            let (want, got) = (kernel_ll(), hw_ll(&s.hw()));
            let same = got.len() == want.len()
                && got.iter().zip(&want).all(|((iif, nhs), dev)| iif == dev && nhs == &vec![*dev]);
            if same && want.len() >= 2 {
                return want;
            }
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "{what}: kernel fe80::/64 on {want:?}, DPU (ingress port, nexthop devices) {got:?}\n{}",
                s.log("hb.log")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let all = check("at start");
    assert_eq!(all.len(), 6, "v0 v1 w0 w1 x0 x1: {all:?}");
    s.converge(30);
    s.sh("ip link del x0");
    let left = check("after x0's delete");
    assert_eq!(left.len(), 4, "{left:?}");
    s.converge(20);
    // Down and up again: the kernel drops the link's routes silently at
    // down, and adds them back at up.
    s.sh("ip link set w0 down");
    assert_eq!(check("w0 down").len(), 3);
    s.sh("ip link set w0 up");
    assert_eq!(check("w0 up again").len(), 4);
    s.converge(20);
    let _ = std::fs::remove_dir_all(&s.dir);
}

/// What an operator runs it with: systemd's notify protocol (ready after
/// the first snapshot, watchdog pings), metrics scraped from the netns
/// host-bridge was started in while it mirrors another, the status socket
/// with a client that never reads, every kind in `status --json`,
/// `status | head`, SIGHUP reloading the config (and keeping it when the
/// new one is bad), and one log format on both sides.
#[test]
fn operations() {
    use std::io::{Read, Write};
    use std::os::unix::net::{UnixDatagram, UnixStream};
    let mut s = Setup::new("ops", 32 << 20);
    s.sh(TOPOLOGY);
    let notify = s.dir.join("notify.sock");
    let sd = UnixDatagram::bind(&notify).expect("notify socket");
    sd.set_read_timeout(Some(Duration::from_secs(1))).expect("timeout");
    let cfg = s.dir.join("hb.toml");
    std::fs::write(&cfg, "[offload]\nlinks = [\"*\"]\n").expect("config");
    s.env = vec![
        ("NOTIFY_SOCKET".into(), notify.display().to_string()),
        ("WATCHDOG_USEC".into(), "1000000".into()),
    ];
    s.extra = vec![
        "--config".into(),
        cfg.display().to_string(),
        "--metrics".into(),
        "127.0.0.1:0".into(),
        "--log-level".into(),
        "debug".into(),
    ];
    s.start_agent();
    s.start_bridge();
    // READY=1 once the DPU holds the first snapshot, then WATCHDOG=1.
    let (mut ready, mut pings) = (false, 0);
    let t = Instant::now();
    while !ready || pings < 2 {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "no READY=1 and two WATCHDOG=1 (ready {ready}, pings {pings})\n{}",
            s.log("hb.log")
        );
        let mut b = [0u8; 4096];
        if let Ok(n) = sd.recv(&mut b) {
            let msg = String::from_utf8_lossy(&b[..n]).to_string();
            if msg.lines().any(|l| l == "READY=1") {
                assert!(s.log("hb.log").contains("snapshot 1:"), "READY before the first snapshot: {msg}");
                ready = true;
            }
            if msg.lines().any(|l| l == "WATCHDOG=1") {
                pings += 1;
            }
        }
    }
    s.converge(60);
    // Metrics, from this netns: the listener was bound before host-bridge
    // entered the mirrored one.
    let addr = s
        .log("hb.log")
        .lines()
        .find_map(|l| {
            l.split("metrics on http://").nth(1).map(|a| a.trim_end_matches("/metrics").to_string())
        })
        .expect("metrics address in the log");
    let scrape = || {
        let mut c = std::net::TcpStream::connect(&addr).expect("connect metrics");
        c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").expect("request");
        let mut r = String::new();
        c.read_to_string(&mut r).expect("response");
        r
    };
    let value = |text: &str, name: &str| -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next().and_then(|v| v.parse().ok()))
    };
    // One kernel event after the snapshot: counted, and its latency to
    // the DPU's answer in the histogram.
    s.sh("ip route add 10.70.0.0/16 via 192.0.2.254");
    let t = Instant::now();
    loop {
        // Read each time: link-local addresses (and their local routes)
        // may still be arriving.
        let hw = s.hw();
        let m = scrape();
        assert!(m.starts_with("HTTP/1.1 200"), "metrics answer: {m}");
        assert!(m.trim_end().ends_with("# EOF"), "OpenMetrics text ends with # EOF: {m}");
        let held = value(&m, "host_bridge_objects_held{kind=\"route\"}");
        let r4 = value(&m, "dpu_table_entries{table=\"route4\"}");
        let r6 = value(&m, "dpu_table_entries{table=\"route6\"}");
        let want = hw.routes.len() as f64;
        let connected = value(&m, "host_bridge_dpu_connected");
        let hist = value(&m, "host_bridge_event_to_ack_seconds_count");
        let events = value(&m, "host_bridge_events_total");
        if held.is_some()
            && r4.zip(r6).map(|(a, b)| a + b) == Some(want)
            && connected == Some(1.0)
            && hist.unwrap_or(0.0) >= 1.0
            && events.unwrap_or(0.0) >= 1.0
        {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "metrics do not show the DPU's {want} routes and the event (held {held:?}, route4 {r4:?}, route6 {r6:?}, connected {connected:?}, histogram {hist:?}, events {events:?}):\n{m}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // One status client that connects and never reads: others are served.
    let status = s.dir.join("status.sock");
    let mut stuck = UnixStream::connect(&status).expect("stuck client");
    let _ = stuck.write_all(b"full\n");
    let run = |args: &[&str]| {
        let mut c = Command::new(host_bridge_bin())
            .arg("status")
            .args(["--status", &status.display().to_string()])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("status");
        let t = Instant::now();
        while c.try_wait().expect("wait").is_none() {
            assert!(t.elapsed() < Duration::from_secs(20), "status {args:?} blocked by a stuck client");
            std::thread::sleep(Duration::from_millis(50));
        }
        c.wait_with_output().expect("status output")
    };
    let out = run(&["--json"]);
    assert!(out.status.success(), "status --json: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("status json");
    for kind in
        ["links", "addresses", "routes", "nexthops", "neighbours", "fdb", "vlans", "flows", "settings"]
    {
        assert!(v[kind].is_array(), "status --json has no {kind:?} list: {}", v);
    }
    let addrs: BTreeSet<String> = v["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["local"].as_str().map(String::from))
        .collect();
    assert!(addrs.contains("192.0.2.1/24") && addrs.contains("2001:db8:2::1/64"), "addresses: {addrs:?}");
    drop(stuck);
    // `status --all | head -n 1`: the reader goes away, nothing panics.
    let status_path = status.display().to_string();
    let head = Command::new("sh")
        .arg("-c")
        .arg(format!("\"$0\" status --all --status {status_path} 2>{}/head.err | head -n 1", s.dir.display()))
        .arg(host_bridge_bin())
        .output()
        .expect("status | head");
    assert_eq!(String::from_utf8_lossy(&head.stdout).lines().count(), 1);
    let err = s.log("head.err");
    assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "status | head: {err}");
    // SIGHUP: table 100 is no longer offloaded; only the difference goes.
    std::fs::write(&cfg, "[offload]\ntables = [254]\n").expect("config");
    let pid = s.bridge.as_ref().map(|p| p.0.id()).expect("host-bridge running");
    let hup = || {
        let st = Command::new("kill").args(["-HUP", &pid.to_string()]).status().expect("kill");
        assert!(st.success());
    };
    hup();
    let t = Instant::now();
    loop {
        let want: BTreeSet<RouteRow> = kernel_routes(&s.ns.0).into_iter().filter(|r| r.0 == 254).collect();
        let got = hw_routes(&s.hw());
        if got == want && s.log("hb.log").contains("reloaded:") {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "SIGHUP did not apply tables = [254]:\nwant {want:#?}\ngot {got:#?}\n{}",
            s.log("hb.log")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let before = hw_routes(&s.hw());
    std::fs::write(&cfg, "[offload]\ntables = [\"x\"\n").expect("config");
    hup();
    let t = Instant::now();
    while !s.log("hb.log").contains("not reloaded") {
        assert!(t.elapsed() < Duration::from_secs(20), "a bad config is not reported:\n{}", s.log("hb.log"));
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(hw_routes(&s.hw()), before, "a bad config changed the DPU");
    assert!(
        s.bridge.as_mut().map(|p| p.0.try_wait().ok().flatten().is_none()) == Some(true),
        "host-bridge exited"
    );
    // One log format: ISO UTC time with milliseconds, the level, the text.
    for f in ["hb.log", "agent.log"] {
        let log = s.log(f);
        let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!(!lines.is_empty(), "{f} is empty");
        for l in &lines {
            let b = l.as_bytes();
            let iso = b.len() > 25
                && b[4] == b'-'
                && b[10] == b'T'
                && b[19] == b'.'
                && b[23] == b'Z'
                && b[..4].iter().all(u8::is_ascii_digit);
            let level =
                l.get(25..).map(|r| ["ERROR ", "WARN ", "INFO ", "DEBUG "].iter().any(|p| r.starts_with(p)));
            assert!(iso && level == Some(true), "{f}: not the shared log format: {l:?}");
        }
    }
    assert!(s.log("hb.log").contains(" DEBUG "), "--log-level debug shows debug lines");
    let _ = std::fs::remove_dir_all(&s.dir);
}
