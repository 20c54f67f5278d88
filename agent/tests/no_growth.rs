//! No byte sequence makes the agent panic or allocate.
//!
//! A counting global allocator records every allocation made on the test's
//! own thread while the agent handles input. After start-up the agent must
//! make none: not for valid frames, not for corrupt, truncated, oversized
//! or random ones, not while its tables fill up.

mod common;
use common::*;
use dpu_agent::{Agent, Control};
use dpu_wire::framing::max_encoded_len;
use dpu_wire::*;
use proptest::prelude::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static MEASURING: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: forwards to the system allocator, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if MEASURING.with(|m| m.get()) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        if MEASURING.with(|m| m.get()) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` and returns how many allocations it made on this thread.
fn allocations(f: impl FnOnce()) -> u64 {
    let before = ALLOCS.load(Ordering::Relaxed);
    MEASURING.with(|m| m.set(true));
    f();
    MEASURING.with(|m| m.set(false));
    ALLOCS.load(Ordering::Relaxed) - before
}

/// xorshift64*: deterministic and allocation-free.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn random_ip(r: &mut Rng) -> Ip {
    if r.below(4) == 0 {
        let mut a = [0u8; 16];
        a[0] = 0x20;
        a[1] = 1;
        a[15] = r.below(8) as u8;
        a[7] = r.below(256) as u8;
        Ip::V6(a)
    } else {
        Ip::V4([10, r.below(4) as u8, r.below(256) as u8, r.below(4) as u8])
    }
}

/// A random update over small key spaces, so that replaces, deletes of
/// present keys, dangling references and full tables all happen.
fn random_op(r: &mut Rng) -> Op {
    let ifindex = 1 + r.below(8) as u32;
    let id = 1 + r.below(40) as u32;
    let obj = match r.below(10) {
        0 => {
            let mut name = IfName::new();
            let _ = name.push_str("p");
            Object::Link(Link {
                ifindex,
                name,
                kind: LinkKind::Device,
                mtu: 1500 + r.below(3) as u32,
                mac: Some(Mac([2, 0, 0, 0, 0, ifindex as u8])),
                oper: OperState::Up,
                admin_up: true,
                master: r.below(3) as u32,
                parent: 0,
                vlan_id: None,
                vni: None,
            })
        }
        1 => Object::Address(Address { ifindex, prefix: Prefix::new(random_ip(r), 24), scope: 0 }),
        2 | 3 => {
            let dst = random_ip(r);
            let len = if dst.family() == Family::V4 { 8 + r.below(25) as u8 } else { 32 + r.below(97) as u8 };
            let nexthops = match r.below(3) {
                0 => RouteNexthops::Object(id),
                1 => {
                    let mut v = heapless::Vec::new();
                    for i in 0..1 + r.below(20) {
                        let _ = v.push(Path {
                            ifindex,
                            gateway: Some(Ip::V4([10, 9, 0, i as u8])),
                            weight: 1 + r.below(3) as u16,
                            onlink: false,
                        });
                    }
                    RouteNexthops::Paths(v)
                }
                _ => RouteNexthops::None,
            };
            let kind = if matches!(nexthops, RouteNexthops::None) {
                RouteType::Blackhole
            } else {
                RouteType::Unicast
            };
            Object::Route(Route {
                key: RouteKey {
                    table: 254 + r.below(2) as u32,
                    dst: Prefix::new(dst.masked(len), len),
                    metric: r.below(2) as u32,
                    ifindex: 0,
                },
                kind,
                protocol: 4,
                scope: 0,
                nexthops,
            })
        }
        4 => Object::Nexthop(Nexthop {
            id,
            ifindex,
            gateway: Some(random_ip(r)),
            blackhole: false,
            onlink: false,
            fdb: false,
        }),
        5 => {
            let mut members = heapless::Vec::new();
            for _ in 0..1 + r.below(4) {
                let _ = members.push(GroupMember { id: 1 + r.below(40) as u32, weight: 1 });
            }
            Object::NexthopGroup(NexthopGroup { id, members, resilient_buckets: None })
        }
        6 => Object::Neighbour(Neighbour {
            ifindex,
            ip: random_ip(r),
            mac: Some(Mac([2, 1, 0, 0, 0, id as u8])),
            state: 2,
            router: false,
        }),
        7 => Object::Fdb(FdbEntry {
            ifindex,
            mac: Mac([2, 2, 0, 0, r.below(256) as u8, r.below(8) as u8]),
            vid: r.below(5) as u16,
            master: 1,
            is_static: false,
            remote: None,
            vni: None,
        }),
        8 => {
            let s = 1 + r.below(600) as u16;
            Object::Vlan(VlanRange {
                ifindex,
                vid_start: s,
                vid_end: s + r.below(40) as u16,
                pvid: false,
                untagged: true,
            })
        }
        _ => {
            let mut actions = heapless::Vec::new();
            let _ = actions.push(FlowAction::Drop);
            Object::Flow(FlowRule {
                cookie: r.below(200),
                ifindex,
                chain: 0,
                prio: 1,
                matches: FlowMatch { ip_proto: Some(6), ..Default::default() },
                actions,
            })
        }
    };
    if r.below(3) == 0 {
        Op::Delete(obj.key())
    } else {
        Op::Upsert(obj)
    }
}

struct Feeder {
    builder: FrameBuilder<Vec<u8>>,
    enc: Vec<u8>,
    seq: u32,
}

impl Feeder {
    fn new() -> Self {
        Feeder {
            builder: FrameBuilder::new(vec![0; MAX_FRAME]),
            enc: vec![0; max_encoded_len(MAX_FRAME) + 64],
            seq: 0,
        }
    }

    /// Encodes one random frame (valid, corrupted, truncated or garbage)
    /// into `self.enc`; returns its length.
    fn frame(&mut self, r: &mut Rng) -> usize {
        self.seq += 1;
        let msg = match r.below(20) {
            0 => HostMsg::SnapshotBegin { generation: r.below(3) as u32 },
            1 => HostMsg::SnapshotEnd { generation: r.below(3) as u32 },
            2 => HostMsg::Heartbeat { uptime_ms: 1 },
            3 => HostMsg::StatsRequest,
            4 => HostMsg::Hello(HostHello {
                version: Version { major: 1 + r.below(2) as u16, minor: 0 },
                name: heapless::String::new(),
            }),
            _ => HostMsg::Batch,
        };
        let seq = if r.below(10) == 0 { r.next() as u32 } else { self.seq };
        let _ = self.builder.start(&HostHeader { seq, msg: msg.clone() });
        if msg == HostMsg::Batch {
            for _ in 0..1 + r.below(200) {
                if self.builder.push(&random_op(r)).is_err() {
                    break;
                }
            }
        }
        let mut n = self.builder.finish(&mut self.enc).unwrap_or(0);
        match r.below(10) {
            0 => {
                // Flip a byte (possibly into a zero: a split frame).
                let i = r.below(n as u64) as usize;
                self.enc[i] ^= 1 << r.below(8);
            }
            1 => n = 1 + r.below(n as u64) as usize, // truncated
            2 => {
                n = 1 + r.below(self.enc.len() as u64) as usize;
                for b in &mut self.enc[..n] {
                    *b = r.next() as u8;
                }
            }
            _ => {}
        }
        n
    }
}

fn agent() -> Agent<dpu_hw::MmioHal> {
    Agent::new(engine(), 1)
}

fn hello(a: &mut Agent<dpu_hw::MmioHal>, f: &mut Feeder) {
    let _ = f.builder.start(&HostHeader {
        seq: 0,
        msg: HostMsg::Hello(HostHello { version: VERSION, name: heapless::String::new() }),
    });
    let n = f.builder.finish(&mut f.enc).expect("hello fits");
    f.seq = 0;
    a.on_connect();
    assert_eq!(a.on_bytes(&f.enc[..n], &mut |_| {}), Control::Continue);
}

#[test]
fn random_frames_make_no_allocation() {
    let mut a = agent();
    let mut f = Feeder::new();
    let mut r = Rng(0x9E37_79B9_7F4A_7C15);
    hello(&mut a, &mut f);
    let mut out_bytes = 0usize;
    let mut total = 0u64;
    for i in 0..20_000 {
        let n = f.frame(&mut r);
        // Feed in random chunk sizes.
        let bytes = f.enc[..n].to_vec();
        total += allocations(|| {
            let mut sink = |b: &[u8]| out_bytes += b.len();
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                let k = 1 + (r.below(rest.len() as u64) as usize);
                if a.on_bytes(&rest[..k], &mut sink) == Control::Close {
                    a.on_disconnect();
                    a.on_connect();
                }
                rest = &rest[k..];
            }
            a.on_tick();
            while a.pump(&mut sink) {}
        });
        if i % 97 == 0 {
            hello(&mut a, &mut f);
        }
    }
    assert!(out_bytes > 0);
    assert!(a.counters.ops > 100_000, "{:?}", a.counters);
    assert!(a.counters.refused > 0 && a.counters.ok > 0 && a.counters.frame_errors > 0, "{:?}", a.counters);
    assert_eq!(total, 0, "the agent allocated while handling input");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// Arbitrary bytes, before and after a hello: no panic, no allocation.
    #[test]
    fn arbitrary_bytes_make_no_allocation(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..4096), 1..8), hello_first in any::<bool>()) {
        let mut a = agent();
        let mut f = Feeder::new();
        if hello_first {
            hello(&mut a, &mut f);
        }
        let n = allocations(|| {
            for c in &chunks {
                let _ = a.on_bytes(c, &mut |_| {});
                while a.pump(&mut |_| {}) {}
            }
        });
        prop_assert_eq!(n, 0);
    }
}
