//! Shared helpers of the end-to-end tests of the aarch64 DPU agent.
//!
//! * [`agent_bin`]: the static aarch64 agent, built once per test binary
//!   with `cross/build-agent.sh qemu-virt` (or `DPU_AGENT_BIN`).
//! * [`RunningAgent`]: one agent under `qemu-aarch64-static` with its own
//!   socket, hardware region file and log, killed on drop (the directory
//!   is kept after a failure, or always with `QEMU_TESTS_KEEP` set).
//! * [`topo`]: a realistic set of wire objects; [`Model`]: the objects the
//!   agent should hold and a comparison of them with what the independent
//!   hardware reader decodes from the region.
//! * Wire helpers for hostile input: [`cobs_encode`], [`raw_frame`],
//!   [`host_frame`], and a small deterministic [`Rng`].

pub mod dpu_vm;
pub mod kernel_view;

use dpu_hw::layout::{port_kind, route_action};
use dpu_hw::reader::{self, HwTables};
use dpu_hw::{Region, TableId};
use dpu_wire::*;
use host_bridge::AgentLink;
use std::collections::{BTreeSet, HashMap};
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The emulator the aarch64 agent runs under.
pub const QEMU: &str = "qemu-aarch64-static";

/// The workspace root (parent of this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("qemu-tests has a parent directory").to_path_buf()
}

/// The aarch64 agent binary: `DPU_AGENT_BIN` if set, else built once per
/// test binary with `cross/build-agent.sh qemu-virt`.
/// host-bridge's debug binary, built once per test process.
pub fn host_bridge_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let root = workspace_root();
        let st = Command::new("cargo")
            .args(["build", "--quiet", "-p", "host-bridge", "--bin", "host-bridge"])
            .current_dir(&root)
            .status()
            .expect("cargo build host-bridge");
        assert!(st.success(), "building host-bridge failed");
        root.join("target/debug/host-bridge")
    })
}

pub fn agent_bin() -> &'static Path {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BIN.get_or_init(|| build_agent("qemu-virt")) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

/// The aarch64 agent for the large `dpu-1m` board, built once per test
/// binary.
pub fn big_agent_bin() -> &'static Path {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BIN.get_or_init(|| build_agent("dpu-1m")) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

fn build_agent(board: &str) -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("DPU_AGENT_BIN").filter(|_| board == "qemu-virt") {
        let p = PathBuf::from(p);
        return if p.is_file() { Ok(p) } else { Err(format!("DPU_AGENT_BIN={} is not a file", p.display())) };
    }
    let root = workspace_root();
    let out = Command::new("bash")
        .arg(root.join("cross/build-agent.sh"))
        .arg(board)
        .current_dir(&root)
        .output()
        .map_err(|e| format!("cannot run cross/build-agent.sh: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cross/build-agent.sh {board} failed ({}); set DPU_AGENT_BIN to use a prebuilt agent:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let path = stdout.lines().rev().find(|l| !l.trim().is_empty()).ok_or("build-agent.sh printed no path")?;
    let p = PathBuf::from(path.trim());
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!("build-agent.sh printed {}, which is not a file", p.display()))
    }
}

/// Runs the agent binary under qemu with `args` to completion.
pub fn run_agent_cli(args: &[&str]) -> std::process::Output {
    Command::new(QEMU).arg(agent_bin()).args(args).output().expect("run qemu-aarch64-static")
}

// ------------------------------------------------------------ the agent --

/// One agent process under qemu-user, with its own temporary directory.
pub struct RunningAgent {
    pub dir: PathBuf,
    pub sock: PathBuf,
    pub hw_path: PathBuf,
    pub log_path: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    starts: usize,
}

impl RunningAgent {
    /// Starts an agent with periodic stats every 200 ms.
    pub fn start() -> Self {
        Self::start_with(&["--stats-interval", "200"])
    }

    /// Starts an agent with these extra options (after `--listen` and `--hw`).
    pub fn start_with(extra: &[&str]) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        let dir = std::env::temp_dir().join(format!(
            "qemu-tests-{}-{}-{nanos:x}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create the agent's temp dir");
        let mut a = RunningAgent {
            sock: dir.join("agent.sock"),
            hw_path: dir.join("hw.bin"),
            log_path: dir.join("agent.log"),
            dir,
            args: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
            starts: 0,
        };
        a.spawn();
        a
    }

    fn spawn(&mut self) {
        let log =
            OpenOptions::new().create(true).append(true).open(&self.log_path).expect("open the agent log");
        let out = log.try_clone().expect("clone the agent log handle");
        let child = Command::new(QEMU)
            .arg(agent_bin())
            .arg("--listen")
            .arg(format!("unix:{}", self.sock.display()))
            .arg("--hw")
            .arg(&self.hw_path)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn qemu-aarch64-static");
        self.child = Some(child);
        self.starts += 1;
        // Ready once this run has logged that it listens.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.log().matches("listening on").count() >= self.starts && self.sock.exists() {
                return;
            }
            if let Some(st) = self.child.as_mut().and_then(|c| c.try_wait().expect("poll the agent process"))
            {
                panic!("agent exited early ({st}); log:\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "agent not listening after 60 s; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kills the agent and starts it again on the same hardware region
    /// (a warm start) and socket; the log is appended to.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Process id of the qemu process running the agent.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("agent is running").id()
    }

    /// A new connection (no hello yet).
    pub fn connect(&self) -> AgentLink<host_bridge::Channel> {
        let mut l = AgentLink::connect_unix(&self.sock).expect("connect to the agent socket");
        l.timeout = Duration::from_secs(60);
        l
    }

    /// A new connection after a successful hello.
    pub fn session(&self) -> AgentLink<host_bridge::Channel> {
        let mut l = self.connect();
        let h = l.hello("qemu-tests").expect("hello");
        assert_eq!(h.board.as_str(), "qemu-virt");
        l
    }

    /// The hardware region, mapped independently of the agent.
    pub fn region(&self) -> Region {
        Region::open(&self.hw_path).expect("open the hardware region file")
    }

    /// Everything the hardware holds, decoded by the independent reader.
    pub fn hw(&self) -> HwTables {
        reader::read(&self.region())
    }

    /// The agent's log (stderr) so far.
    pub fn log(&self) -> String {
        match std::fs::read(&self.log_path) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(_) => String::new(),
        }
    }

    /// Waits until `needle` occurs at least `count` times in the log.
    pub fn wait_log(&self, needle: &str, count: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log().matches(needle).count() >= count {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Resident set size of the agent process in kB.
    pub fn rss_kb(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("read /proc/PID/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    /// True while the agent process runs.
    pub fn alive(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect();
            eprintln!("--- agent log tail ({}) ---\n{}", self.log_path.display(), tail.join("\n"));
        } else if std::env::var_os("QEMU_TESTS_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

// ------------------------------------------------------------ registers --

/// WRITES and INVALIDATES registers of every table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Regs(pub [(u64, u64); TableId::COUNT]);

impl Regs {
    pub fn of(hw: &HwTables) -> Self {
        let mut r = [(0, 0); TableId::COUNT];
        for t in &hw.tables {
            r[t.id as usize] = (t.writes, t.invalidates);
        }
        Regs(r)
    }

    /// (writes, invalidates) per table since `self`.
    pub fn delta(&self, later: &Regs) -> [(u64, u64); TableId::COUNT] {
        let mut d = [(0, 0); TableId::COUNT];
        for (i, v) in d.iter_mut().enumerate() {
            *v = (later.0[i].0 - self.0[i].0, later.0[i].1 - self.0[i].1);
        }
        d
    }
}

/// Names the non-zero entries of a register delta, for messages.
pub fn describe_delta(d: &[(u64, u64); TableId::COUNT]) -> String {
    let parts: Vec<String> = TableId::ALL
        .iter()
        .filter(|&&t| d[t as usize] != (0, 0))
        .map(|&t| format!("{} +{}w/+{}i", t.name(), d[t as usize].0, d[t as usize].1))
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

// ----------------------------------------------------------------- wire --

/// COBS-encodes `data` (no terminating zero).
pub fn cobs_encode(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 254 + 2);
    let mut code_at = 0;
    out.push(0);
    let mut code = 1u8;
    for &b in data {
        if b == 0 {
            out[code_at] = code;
            code_at = out.len();
            out.push(0);
            code = 1;
        } else {
            out.push(b);
            code += 1;
            if code == 0xff {
                out[code_at] = code;
                code_at = out.len();
                out.push(0);
                code = 1;
            }
        }
    }
    out[code_at] = code;
    out
}

/// A complete frame around an arbitrary payload: COBS(payload ‖ CRC-32C LE) ‖ 0.
pub fn raw_frame(payload: &[u8]) -> Vec<u8> {
    let mut p = payload.to_vec();
    p.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    let mut f = cobs_encode(&p);
    f.push(0);
    f
}

/// A well-formed host frame: header and items.
pub fn host_frame(seq: u32, msg: HostMsg, items: &[Op]) -> Vec<u8> {
    let mut b = FrameBuilder::new(vec![0u8; MAX_FRAME]);
    b.start(&HostHeader { seq, msg }).expect("header fits a frame");
    for i in items {
        b.push(i).expect("item fits the frame");
    }
    let mut out = vec![0u8; framing::max_encoded_len(MAX_FRAME)];
    let n = b.finish(&mut out).expect("frame encodes");
    out.truncate(n);
    out
}

/// A deterministic xorshift64* generator.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn fill(&mut self, b: &mut [u8]) {
        for c in b.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut b = vec![0u8; n];
        self.fill(&mut b);
        b
    }
}

// ------------------------------------------------------------- topology --

/// Builders of wire objects and a realistic topology.
pub mod topo {
    use dpu_wire::*;

    pub const LO: u32 = 1;
    pub const P0: u32 = 2;
    pub const P1: u32 = 3;
    pub const BR0: u32 = 4;
    pub const SWP1: u32 = 5;
    pub const SWP2: u32 = 6;
    pub const P0_100: u32 = 7;
    pub const VX0: u32 = 8;

    /// Nexthop objects: p0 via 10.0.0.254, p1 via 10.1.0.254, p0 via
    /// 2001:db8::fe, p1 via 10.1.0.253; group 20 = {10 x1, 11 x2}.
    pub const NH_P0: u32 = 10;
    pub const NH_P1: u32 = 11;
    pub const NH_P0_V6: u32 = 12;
    pub const NH_P1_B: u32 = 13;
    pub const GROUP: u32 = 20;

    /// Table 100, a VRF-style second table.
    pub const T100: u32 = 100;
    pub const MAIN: u32 = 254;
    pub const LOCAL: u32 = 255;

    /// The flow rule dropping UDP/53 arriving on p0.
    pub const FLOW_DNS_DROP: u64 = 0x1001;

    pub fn ip4(a: u8, b: u8, c: u8, d: u8) -> Ip {
        Ip::V4([a, b, c, d])
    }

    pub fn ip6(s: &str) -> Ip {
        Ip::from(s.parse::<core::net::Ipv6Addr>().expect("IPv6 literal"))
    }

    pub fn pfx(addr: Ip, len: u8) -> Prefix {
        Prefix::new(addr, len)
    }

    /// A locally administered MAC: 02:00:00:00:hi:lo.
    pub fn mac(hi: u8, lo: u8) -> Mac {
        Mac([0x02, 0, 0, 0, hi, lo])
    }

    /// Port MACs: 02:00:00:00:00:<ifindex>.
    pub fn port_mac(ifindex: u32) -> Mac {
        mac(0, ifindex as u8)
    }

    pub fn name(s: &str) -> IfName {
        s.parse().expect("interface name fits IFNAMSIZ")
    }

    pub fn link(ifindex: u32, n: &str, kind: LinkKind) -> Link {
        Link {
            ifindex,
            name: name(n),
            kind,
            mtu: 1500,
            mac: Some(port_mac(ifindex)),
            oper: OperState::Up,
            admin_up: true,
            master: 0,
            parent: 0,
            vlan_id: None,
            vni: None,
        }
    }

    pub fn address(ifindex: u32, addr: Ip, len: u8) -> Object {
        Object::Address(Address { ifindex, prefix: pfx(addr, len), scope: 0 })
    }

    pub fn nexthop(id: u32, ifindex: u32, gateway: Option<Ip>) -> Object {
        Object::Nexthop(Nexthop { id, ifindex, gateway, blackhole: false, onlink: false, fdb: false })
    }

    pub fn group(id: u32, members: &[(u32, u16)]) -> Object {
        Object::NexthopGroup(NexthopGroup {
            id,
            members: members.iter().map(|&(id, weight)| GroupMember { id, weight }).collect(),
            resilient_buckets: None,
        })
    }

    pub fn route_key(table: u32, dst: Ip, len: u8, metric: u32) -> RouteKey {
        RouteKey { table, dst: pfx(dst, len), metric, ifindex: 0 }
    }

    /// A unicast route through a nexthop object or group.
    pub fn route_nh(key: RouteKey, id: u32) -> Object {
        Object::Route(Route {
            key,
            kind: RouteType::Unicast,
            protocol: 4,
            scope: 0,
            nexthops: RouteNexthops::Object(id),
        })
    }

    /// A unicast route with inline paths (ifindex, gateway, weight).
    pub fn route_paths(key: RouteKey, paths: &[(u32, Option<Ip>, u16)]) -> Object {
        let scope = if paths.iter().all(|p| p.1.is_none()) { 253 } else { 0 };
        Object::Route(Route {
            key,
            kind: RouteType::Unicast,
            protocol: if scope == 253 { 2 } else { 3 },
            scope,
            nexthops: RouteNexthops::Paths(
                paths
                    .iter()
                    .map(|&(ifindex, gateway, weight)| Path { ifindex, gateway, weight, onlink: false })
                    .collect(),
            ),
        })
    }

    /// A route without nexthops: blackhole, unreachable, prohibit, local.
    pub fn route_kind(key: RouteKey, kind: RouteType) -> Object {
        let scope = if kind == RouteType::Local { 254 } else { 0 };
        Object::Route(Route { key, kind, protocol: 4, scope, nexthops: RouteNexthops::None })
    }

    pub const NUD_INCOMPLETE: u16 = 0x01;
    pub const NUD_REACHABLE: u16 = 0x02;
    pub const NUD_STALE: u16 = 0x04;
    pub const NUD_PERMANENT: u16 = 0x80;

    pub fn neigh(ifindex: u32, ip: Ip, mac: Option<Mac>, state: u16) -> Object {
        Object::Neighbour(Neighbour { ifindex, ip, mac, state, router: mac.is_some() })
    }

    pub fn fdb(ifindex: u32, mac: Mac, vid: u16, master: u32, is_static: bool) -> Object {
        Object::Fdb(FdbEntry { ifindex, mac, vid, master, is_static, remote: None, vni: None })
    }

    pub fn vlan(ifindex: u32, vid_start: u16, vid_end: u16, pvid: bool, untagged: bool) -> Object {
        Object::Vlan(VlanRange { ifindex, vid_start, vid_end, pvid, untagged })
    }

    /// Drops UDP to `dport` arriving on `ifindex`.
    pub fn flow_drop_udp(cookie: u64, ifindex: u32, prio: u16, dport: u16) -> Object {
        Object::Flow(FlowRule {
            cookie,
            ifindex,
            chain: 0,
            prio,
            matches: FlowMatch {
                eth_type: Some(0x0800),
                ip_proto: Some(17),
                dst_port: Some(Masked { value: dport, mask: 0xffff }),
                ..Default::default()
            },
            actions: [FlowAction::Drop].into_iter().collect(),
        })
    }

    /// Neighbour MACs: 02:00:00:00:aa:<n>.
    pub fn nmac(n: u8) -> Mac {
        mac(0xaa, n)
    }

    /// Bridge host MACs: 02:00:00:00:bb:<n>.
    pub fn hmac(n: u8) -> Mac {
        mac(0xbb, n)
    }

    /// The route keys the topology installs, by role.
    pub fn default_v4() -> RouteKey {
        route_key(MAIN, ip4(0, 0, 0, 0), 0, 0)
    }
    pub fn via_group_v4() -> RouteKey {
        route_key(MAIN, ip4(198, 51, 100, 0), 24, 0)
    }
    pub fn inline_v4() -> RouteKey {
        route_key(MAIN, ip4(203, 0, 113, 0), 24, 0)
    }
    pub fn multipath_v4() -> RouteKey {
        route_key(MAIN, ip4(192, 0, 2, 0), 24, 0)
    }
    pub fn connected_v4() -> RouteKey {
        route_key(MAIN, ip4(10, 0, 0, 0), 24, 0)
    }
    pub fn unreachable_v4() -> RouteKey {
        route_key(MAIN, ip4(10, 98, 0, 0), 16, 0)
    }
    pub fn t100_default_v4() -> RouteKey {
        route_key(T100, ip4(0, 0, 0, 0), 0, 0)
    }

    /// Links: loopback, two front-panel ports, a bridge with two ports,
    /// a VLAN device on p0 and a VXLAN device.
    pub fn links() -> Vec<Object> {
        let mut lo = link(LO, "lo", LinkKind::Loopback);
        lo.mtu = 65536;
        lo.mac = None;
        lo.oper = OperState::Unknown;
        let p0 = link(P0, "p0", LinkKind::Device);
        let mut p1 = link(P1, "p1", LinkKind::Device);
        p1.mtu = 9000;
        let br0 = link(BR0, "br0", LinkKind::Bridge);
        let mut swp1 = link(SWP1, "swp1", LinkKind::Device);
        swp1.master = BR0;
        let mut swp2 = link(SWP2, "swp2", LinkKind::Device);
        swp2.master = BR0;
        let mut vl = link(P0_100, "p0.100", LinkKind::Vlan);
        vl.parent = P0;
        vl.vlan_id = Some(100);
        vl.mac = Some(port_mac(P0));
        let mut vx = link(VX0, "vx0", LinkKind::Vxlan);
        vx.vni = Some(5000);
        vx.mtu = 1450;
        [lo, p0, p1, br0, swp1, swp2, vl, vx].into_iter().map(Object::Link).collect()
    }

    /// The whole topology as upserts, dependencies first.
    pub fn topology() -> Vec<Op> {
        let mut o = links();
        o.extend([
            address(LO, ip4(127, 0, 0, 1), 8),
            address(P0, ip4(10, 0, 0, 1), 24),
            address(P1, ip4(10, 1, 0, 1), 24),
            address(P0, ip6("2001:db8::1"), 64),
            address(P0_100, ip4(192, 168, 100, 1), 24),
            nexthop(NH_P0, P0, Some(ip4(10, 0, 0, 254))),
            nexthop(NH_P1, P1, Some(ip4(10, 1, 0, 254))),
            nexthop(NH_P0_V6, P0, Some(ip6("2001:db8::fe"))),
            nexthop(NH_P1_B, P1, Some(ip4(10, 1, 0, 253))),
            group(GROUP, &[(NH_P0, 1), (NH_P1, 2)]),
            // IPv4, main table.
            route_nh(default_v4(), NH_P0),
            route_nh(via_group_v4(), GROUP),
            route_paths(inline_v4(), &[(P1, Some(ip4(10, 1, 0, 254)), 1)]),
            route_kind(route_key(MAIN, ip4(203, 0, 113, 0), 24, 200), RouteType::Blackhole),
            route_paths(
                multipath_v4(),
                &[(P0, Some(ip4(10, 0, 0, 254)), 1), (P1, Some(ip4(10, 1, 0, 254)), 3)],
            ),
            route_paths(connected_v4(), &[(P0, None, 1)]),
            route_kind(route_key(MAIN, ip4(10, 99, 0, 0), 16, 0), RouteType::Blackhole),
            route_kind(unreachable_v4(), RouteType::Unreachable),
            route_kind(route_key(MAIN, ip4(10, 97, 0, 0), 16, 0), RouteType::Prohibit),
            route_kind(route_key(LOCAL, ip4(10, 0, 0, 1), 32, 0), RouteType::Local),
            // IPv4, table 100.
            route_nh(t100_default_v4(), NH_P1),
            route_nh(route_key(T100, ip4(172, 16, 0, 0), 12, 100), GROUP),
            // IPv6.
            route_nh(route_key(MAIN, ip6("::"), 0, 1024), NH_P0_V6),
            route_paths(route_key(MAIN, ip6("2001:db8:1::"), 48, 1024), &[(P1, Some(ip6("fe80::1")), 1)]),
            route_paths(
                route_key(MAIN, ip6("2001:db8:2::"), 48, 1024),
                &[(P0, Some(ip6("2001:db8::fe")), 2), (P1, Some(ip6("fe80::1")), 1)],
            ),
            route_kind(route_key(MAIN, ip6("2001:db8:dead::"), 48, 1024), RouteType::Blackhole),
            route_kind(route_key(LOCAL, ip6("2001:db8::1"), 128, 0), RouteType::Local),
            route_nh(route_key(T100, ip6("2001:db8:3::"), 48, 1024), NH_P0_V6),
            // Neighbours.
            neigh(P0, ip4(10, 0, 0, 254), Some(nmac(1)), NUD_REACHABLE),
            neigh(P1, ip4(10, 1, 0, 254), Some(nmac(2)), NUD_REACHABLE),
            neigh(P1, ip4(10, 1, 0, 253), Some(nmac(3)), NUD_STALE),
            neigh(P0, ip6("2001:db8::fe"), Some(nmac(4)), NUD_REACHABLE),
            neigh(P1, ip6("fe80::1"), Some(nmac(5)), NUD_PERMANENT),
            neigh(P0, ip4(10, 0, 0, 99), None, NUD_INCOMPLETE),
            // Bridge FDB, static and dynamic, with VIDs; a VXLAN entry.
            fdb(SWP1, hmac(1), 10, BR0, true),
            fdb(SWP2, hmac(2), 10, BR0, false),
            fdb(SWP2, hmac(3), 20, BR0, true),
            fdb(SWP1, hmac(4), 21, BR0, false),
            Object::Fdb(FdbEntry {
                ifindex: VX0,
                mac: hmac(5),
                vid: 0,
                master: 0,
                is_static: true,
                remote: Some(ip4(192, 0, 2, 10)),
                vni: Some(5000),
            }),
            // Bridge VLANs.
            vlan(BR0, 1, 1, true, true),
            vlan(SWP1, 10, 10, true, true),
            vlan(SWP1, 20, 22, false, false),
            vlan(SWP2, 10, 10, true, true),
            vlan(SWP2, 20, 20, false, false),
            // Flow rule.
            flow_drop_udp(FLOW_DNS_DROP, P0, 10, 53),
        ]);
        o.into_iter().map(Op::Upsert).collect()
    }
}

// ---------------------------------------------------------------- model --

/// The objects the agent should hold, in the order they were first sent.
#[derive(Clone, Debug, Default)]
pub struct Model {
    objs: Vec<Object>,
}

/// One route as the hardware should hold it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RouteRow {
    pub table: u32,
    pub dst: Ip,
    pub plen: u8,
    pub metric: u32,
    pub proto: u8,
    pub scope: u8,
    pub action: u8,
    /// Group id for a group action (0 for a multipath route's own group).
    pub group: Option<u32>,
    /// (gateway, ifindex, weight, nexthop id), sorted.
    pub via: Vec<(Option<Ip>, u32, u16, u32)>,
}

/// The hardware contents, per table, in comparable form.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Contents {
    /// (ifindex, name, kind, mtu, mac, master, parent, vlan id, vni)
    #[allow(clippy::type_complexity)]
    pub ports: Vec<(u32, String, u8, u32, Option<Mac>, u32, u32, Option<u16>, Option<u32>)>,
    /// (ifindex, addr, plen, scope)
    pub addrs: Vec<(u32, Ip, u8, u8)>,
    pub routes: Vec<RouteRow>,
    /// (id, ifindex, gateway, blackhole); id 0: the agent's own for inline paths.
    pub nexthops: Vec<(u32, u32, Option<Ip>, bool)>,
    /// (id, members (nexthop id, ifindex, gateway, weight) sorted).
    #[allow(clippy::type_complexity)]
    pub groups: Vec<(u32, Vec<(u32, u32, Option<Ip>, u16)>)>,
    /// (ifindex, ip, mac, state, router)
    pub neighs: Vec<(u32, Ip, Option<Mac>, u16, bool)>,
    /// (ifindex, mac, vid, master, static, remote, vni)
    #[allow(clippy::type_complexity)]
    pub fdb: Vec<(u32, Mac, u16, u32, bool, Option<Ip>, Option<u32>)>,
    /// (ifindex, vid, pvid, untagged)
    pub vlans: Vec<(u32, u16, bool, bool)>,
    /// (cookie, ifindex, chain, prio, action count)
    pub flows: Vec<(u64, u32, u32, u16, usize)>,
}

fn port_kind_of(k: LinkKind) -> Option<u8> {
    Some(match k {
        LinkKind::Device => port_kind::DEVICE,
        LinkKind::Loopback => port_kind::LOOPBACK,
        LinkKind::Bridge => port_kind::BRIDGE,
        LinkKind::Vlan => port_kind::VLAN,
        LinkKind::Vxlan => port_kind::VXLAN,
        _ => return None,
    })
}

impl Model {
    /// A model of the upserts in `ops` (deletes applied too).
    pub fn new(ops: &[Op]) -> Self {
        let mut m = Model::default();
        m.apply(ops);
        m
    }

    /// Applies updates as the agent should (the caller checks they were
    /// accepted).
    pub fn apply(&mut self, ops: &[Op]) {
        for op in ops {
            match op {
                Op::Upsert(o) => match self.objs.iter_mut().find(|x| x.key() == o.key()) {
                    Some(x) => *x = o.clone(),
                    None => self.objs.push(o.clone()),
                },
                Op::Delete(k) => self.objs.retain(|x| x.key() != *k),
            }
        }
    }

    pub fn objects(&self) -> &[Object] {
        &self.objs
    }

    /// Every object as an upsert, in order: what a snapshot sends.
    pub fn ops(&self) -> Vec<Op> {
        self.objs.iter().cloned().map(Op::Upsert).collect()
    }

    pub fn route(&self, k: &RouteKey) -> Option<&Route> {
        self.objs.iter().find_map(|o| match o {
            Object::Route(r) if r.key == *k => Some(r),
            _ => None,
        })
    }

    fn nexthop(&self, id: u32) -> Option<&Nexthop> {
        self.objs.iter().find_map(|o| match o {
            Object::Nexthop(n) if n.id == id => Some(n),
            _ => None,
        })
    }

    fn group(&self, id: u32) -> Option<&NexthopGroup> {
        self.objs.iter().find_map(|o| match o {
            Object::NexthopGroup(g) if g.id == id => Some(g),
            _ => None,
        })
    }

    /// Objects the agent keeps in hardware: every object, plus the agent's
    /// own nexthops (one per distinct inline path) and groups (one per
    /// distinct multipath list).
    pub fn expected(&self) -> Contents {
        let mut c = Contents::default();
        let mut inline_nh = BTreeSet::new();
        let mut inline_groups = BTreeSet::new();
        for o in &self.objs {
            match o {
                Object::Link(l) => c.ports.push((
                    l.ifindex,
                    l.name.as_str().to_string(),
                    port_kind_of(l.kind).unwrap_or(u8::MAX),
                    l.mtu,
                    l.mac,
                    l.master,
                    l.parent,
                    l.vlan_id,
                    l.vni,
                )),
                // Switch settings are compared by kernel_view's settings.
                Object::EcmpHash(_) | Object::BridgeAgeing(_) | Object::PortStp(_) => {}
                Object::Address(a) => c.addrs.push((a.ifindex, a.prefix.addr, a.prefix.len, a.scope)),
                Object::Nexthop(n) => c.nexthops.push((n.id, n.ifindex, n.gateway, n.blackhole)),
                Object::NexthopGroup(g) => {
                    let mut m: Vec<_> = g
                        .members
                        .iter()
                        .map(|m| {
                            let n =
                                self.nexthop(m.id).expect("group member is a nexthop object of the model");
                            (m.id, n.ifindex, n.gateway, m.weight)
                        })
                        .collect();
                    m.sort();
                    c.groups.push((g.id, m));
                }
                Object::Route(r) => {
                    let (action, group, mut via) = match (&r.kind, &r.nexthops) {
                        (RouteType::Blackhole, _) => (route_action::DROP, None, vec![]),
                        (RouteType::Unreachable, _) => (route_action::UNREACHABLE, None, vec![]),
                        (RouteType::Prohibit, _) => (route_action::PROHIBIT, None, vec![]),
                        (RouteType::Local, _) => (route_action::TRAP, None, vec![]),
                        (RouteType::Unicast, RouteNexthops::Object(id)) => {
                            match (self.nexthop(*id), self.group(*id)) {
                                (Some(n), _) => {
                                    (route_action::NEXTHOP, None, vec![(n.gateway, n.ifindex, 1, n.id)])
                                }
                                (None, Some(g)) => {
                                    let via = g
                                        .members
                                        .iter()
                                        .map(|m| {
                                            let n = self.nexthop(m.id).expect("group member in the model");
                                            (n.gateway, n.ifindex, m.weight, m.id)
                                        })
                                        .collect();
                                    (route_action::GROUP, Some(g.id), via)
                                }
                                (None, None) => {
                                    panic!("model route {:?} references unknown id {id}", r.key)
                                }
                            }
                        }
                        (RouteType::Unicast, RouteNexthops::Paths(p)) if p.len() == 1 => {
                            inline_nh.insert((p[0].ifindex, p[0].gateway));
                            (route_action::NEXTHOP, None, vec![(p[0].gateway, p[0].ifindex, 1, 0)])
                        }
                        (RouteType::Unicast, RouteNexthops::Paths(p)) => {
                            let mut members: Vec<_> =
                                p.iter().map(|p| (0, p.ifindex, p.gateway, p.weight)).collect();
                            members.sort();
                            inline_groups.insert(members);
                            for p in p {
                                inline_nh.insert((p.ifindex, p.gateway));
                            }
                            (
                                route_action::GROUP,
                                Some(0),
                                p.iter().map(|p| (p.gateway, p.ifindex, p.weight, 0)).collect(),
                            )
                        }
                        (RouteType::Unicast, RouteNexthops::None) => {
                            panic!("unicast route without nexthops in the model")
                        }
                    };
                    via.sort();
                    c.routes.push(RouteRow {
                        table: r.key.table,
                        dst: r.key.dst.addr,
                        plen: r.key.dst.len,
                        metric: r.key.metric,
                        proto: r.protocol,
                        scope: r.scope,
                        action,
                        group,
                        via,
                    });
                }
                Object::Neighbour(n) => c.neighs.push((n.ifindex, n.ip, n.mac, n.state, n.router)),
                Object::Fdb(f) => {
                    c.fdb.push((f.ifindex, f.mac, f.vid, f.master, f.is_static, f.remote, f.vni))
                }
                Object::Vlan(v) => {
                    for vid in v.vid_start..=v.vid_end {
                        c.vlans.push((v.ifindex, vid, v.pvid, v.untagged));
                    }
                }
                Object::Flow(f) => c.flows.push((f.cookie, f.ifindex, f.chain, f.prio, f.actions.len())),
            }
        }
        for (ifindex, gw) in inline_nh {
            c.nexthops.push((0, ifindex, gw, false));
        }
        for m in inline_groups {
            c.groups.push((0, m));
        }
        c.sort();
        c
    }

    /// Panics, naming the table, unless the hardware holds exactly what
    /// the model expects.
    pub fn check(&self, hw: &HwTables) {
        let exp = self.expected();
        let got = Contents::of(hw);
        same("port", &got.ports, &exp.ports);
        same("address", &got.addrs, &exp.addrs);
        same("nexthop", &got.nexthops, &exp.nexthops);
        same("group", &got.groups, &exp.groups);
        same("route", &got.routes, &exp.routes);
        same("neighbour", &got.neighs, &exp.neighs);
        same("fdb", &got.fdb, &exp.fdb);
        same("vlan", &got.vlans, &exp.vlans);
        same("flow", &got.flows, &exp.flows);
        for (t, n) in [
            (TableId::Port, exp.ports.len()),
            (TableId::Addr, exp.addrs.len()),
            (TableId::Nexthop, exp.nexthops.len()),
            (TableId::Group, exp.groups.len()),
            (TableId::Neigh, exp.neighs.len()),
            (TableId::Fdb, exp.fdb.len()),
            (TableId::Vlan, exp.vlans.len()),
            (TableId::Flow, exp.flows.len()),
        ] {
            assert_eq!(hw.stats(t).used as usize, n, "used entries of {}", t.name());
        }
        let routes = hw.stats(TableId::Route4).used + hw.stats(TableId::Route6).used;
        assert_eq!(routes as usize, exp.routes.len(), "used route entries");
    }

    /// Hardware entries that stand for an object of the model (all but
    /// the agent's own nexthops and groups).
    pub fn object_entries(&self) -> usize {
        let e = self.expected();
        e.ports.len()
            + e.addrs.len()
            + e.routes.len()
            + e.nexthops.iter().filter(|n| n.0 != 0).count()
            + e.groups.iter().filter(|g| g.0 != 0).count()
            + e.neighs.len()
            + e.fdb.len()
            + e.vlans.len()
            + e.flows.len()
    }
}

impl Contents {
    fn sort(&mut self) {
        self.ports.sort();
        self.addrs.sort();
        self.routes.sort();
        self.nexthops.sort();
        self.groups.sort();
        self.neighs.sort();
        self.fdb.sort();
        self.vlans.sort();
        self.flows.sort();
    }

    /// What the independent reader decoded, in the model's terms.
    pub fn of(hw: &HwTables) -> Contents {
        let nh_at: HashMap<u32, &dpu_hw::layout::NexthopEntry> =
            hw.nexthops.iter().map(|r| (r.slot, &r.entry)).collect();
        let mut c = Contents {
            ports: hw
                .ports
                .iter()
                .map(|r| {
                    let e = &r.entry;
                    (
                        e.ifindex,
                        e.name_str().to_string(),
                        e.kind,
                        e.mtu,
                        e.mac,
                        e.master,
                        e.parent,
                        e.vlan_id,
                        e.vni,
                    )
                })
                .collect(),
            addrs: hw
                .addrs
                .iter()
                .map(|r| (r.entry.ifindex, r.entry.addr, r.entry.plen, r.entry.scope))
                .collect(),
            routes: hw
                .routes
                .iter()
                .map(|r| {
                    let e = &r.entry;
                    let mut via: Vec<_> =
                        hw.resolve(e).into_iter().map(|n| (n.gateway, n.ifindex, n.weight, n.id)).collect();
                    via.sort();
                    let group =
                        (e.action == route_action::GROUP).then(|| hw.group_id_of(e).unwrap_or(u32::MAX));
                    RouteRow {
                        table: e.table,
                        dst: e.dst,
                        plen: e.plen,
                        metric: e.metric,
                        proto: e.proto,
                        scope: e.scope,
                        action: e.action,
                        group,
                        via,
                    }
                })
                .collect(),
            nexthops: hw
                .nexthops
                .iter()
                .map(|r| (r.entry.id, r.entry.ifindex, r.entry.gateway, r.entry.blackhole))
                .collect(),
            groups: hw
                .groups
                .iter()
                .map(|g| {
                    let mut m: Vec<_> = g
                        .entry
                        .members
                        .iter()
                        .map(|&(slot, w)| match nh_at.get(&slot) {
                            Some(n) => (n.id, n.ifindex, n.gateway, w),
                            None => (u32::MAX, u32::MAX, None, w),
                        })
                        .collect();
                    m.sort();
                    (g.entry.id, m)
                })
                .collect(),
            neighs: hw
                .neighs
                .iter()
                .map(|r| (r.entry.ifindex, r.entry.ip, r.entry.mac, r.entry.state, r.entry.router))
                .collect(),
            fdb: hw
                .fdb
                .iter()
                .map(|r| {
                    let e = &r.entry;
                    (e.ifindex, e.mac, e.vid, e.master, e.is_static, e.remote, e.vni)
                })
                .collect(),
            vlans: hw
                .vlans
                .iter()
                .map(|r| (r.entry.ifindex, r.entry.vid, r.entry.pvid, r.entry.untagged))
                .collect(),
            flows: hw
                .flows
                .iter()
                .map(|r| {
                    (r.entry.cookie, r.entry.ifindex, r.entry.chain, r.entry.prio, r.entry.actions.len())
                })
                .collect(),
        };
        c.sort();
        c
    }
}

/// Panics with the rows only one side has unless `got == exp`.
#[track_caller]
fn same<T: std::fmt::Debug + PartialEq>(table: &str, got: &[T], exp: &[T]) {
    if got == exp {
        return;
    }
    let missing: Vec<&T> = exp.iter().filter(|e| !got.contains(e)).collect();
    let extra: Vec<&T> = got.iter().filter(|g| !exp.contains(g)).collect();
    panic!(
        "{table} table differs from the model ({} rows in hardware, {} expected)\n  missing from hardware: {missing:#?}\n  unexpected in hardware: {extra:#?}",
        got.len(),
        exp.len()
    );
}

/// Asserts a batch was accepted entirely.
#[track_caller]
pub fn assert_all_ok(r: &host_bridge::BatchResult, n: usize) {
    assert!(r.failures.is_empty(), "refused updates: {:?}", r.failures);
    assert_eq!(r.ok, n, "accepted updates");
}
