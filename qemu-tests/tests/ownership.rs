//! One host session owns the agent, and a channel that stalls neither
//! hangs nor loses anything: the aarch64 agent under qemu-aarch64-static
//! on a Unix socket, checked through its log and the hardware reader.

use dpu_hw::TableId;
use dpu_wire::*;
use host_bridge::{AgentLink, Channel, LinkError};
use qemu_tests::topo::{self, ip4, route_key, route_nh, MAIN};
use qemu_tests::RunningAgent;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

fn route(i: u32) -> Op {
    Op::Upsert(route_nh(route_key(MAIN, ip4(10, (i >> 16) as u8, (i >> 8) as u8, i as u8), 32, 0), 1))
}

fn nexthop() -> Op {
    Op::Upsert(topo::nexthop(1, 2, Some(ip4(192, 0, 2, 1))))
}

#[test]
fn a_second_host_is_refused_while_the_first_lives() {
    let agent = RunningAgent::start_with(&["--session-timeout", "1500", "--stats-interval", "0"]);
    let mut a = agent.session();
    a.timeout = Duration::from_secs(30);
    let mut b = agent.connect();
    b.timeout = Duration::from_secs(30);
    match b.hello("second host") {
        Err(LinkError::Agent { code: ErrorCode::Busy, text }) => {
            assert!(text.contains("owns this agent"), "{text}");
        }
        other => panic!("expected Busy for the second host, got {other:?}"),
    }
    assert!(agent.wait_log("refused a host connection", 1, Duration::from_secs(10)), "log:\n{}", agent.log());
    // The owner is not disturbed: no new session, its requests answered.
    a.heartbeat().expect("the first session goes on");
    let (r, _) = a.snapshot(1, &[nexthop(), route(1)]).expect("snapshot on the first session");
    assert_eq!((r.ok, r.failures.len()), (2, 0));
    assert_eq!(agent.log().matches("session starts").count(), 1, "log:\n{}", agent.log());

    // The owner goes silent past the session timeout: its session is over
    // and the next host gets the agent, with what it programmed kept.
    std::thread::sleep(Duration::from_millis(2500));
    assert!(agent.log().contains("the session is over"), "log:\n{}", agent.log());
    let mut c = agent.session();
    c.heartbeat().expect("the new owner");
    assert_eq!(agent.hw().stats(TableId::Route4).used, 1);
    assert!(a.heartbeat().is_err(), "the silent session was closed");
}

/// A relay between two sockets that moves at most `chunk` bytes per write
/// and stops for `stall` after every `every` bytes, in both directions: a
/// channel with tiny buffers that stalls.
fn stalling_relay(host: UnixStream, agent: UnixStream, chunk: usize, every: usize, stall: Duration) {
    for (mut from, mut to) in
        [(host.try_clone().expect("clone"), agent.try_clone().expect("clone")), (agent, host)]
    {
        std::thread::spawn(move || {
            let mut buf = vec![0u8; chunk];
            let mut since_stall = 0;
            loop {
                let n = match from.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        let _ = to.shutdown(std::net::Shutdown::Write);
                        return;
                    }
                    Ok(n) => n,
                };
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
                since_stall += n;
                if since_stall >= every {
                    since_stall = 0;
                    std::thread::sleep(stall);
                }
            }
        });
    }
}

fn set_small_buffers(s: &UnixStream) {
    use nix::sys::socket::{setsockopt, sockopt};
    // The kernel rounds these up to its minimum.
    let _ = setsockopt(s, sockopt::SndBuf, &1);
    let _ = setsockopt(s, sockopt::RcvBuf, &1);
}

#[test]
fn mass_refusal_through_a_stalling_channel_loses_nothing() {
    const ROUTES: u32 = 100_000;
    let agent = RunningAgent::start_with(&["--stats-interval", "0"]);
    let to_agent = UnixStream::connect(&agent.sock).expect("connect to the agent");
    let (host_end, relay_end) = UnixStream::pair().expect("socketpair");
    for s in [&to_agent, &host_end, &relay_end] {
        set_small_buffers(s);
    }
    stalling_relay(relay_end, to_agent, 61, 64 * 1024, Duration::from_millis(100));
    let mut link = AgentLink::new(Channel::from_fd(host_end.into()).expect("channel"));
    link.timeout = Duration::from_secs(60);
    link.hello("stalling host").expect("hello through the relay");

    let ops: Vec<Op> = std::iter::once(nexthop()).chain((0..ROUTES).map(route)).collect();
    let start = Instant::now();
    let (r, (_, written, _)) = link.snapshot(1, &ops).expect("snapshot through the stalling relay");
    let secs = start.elapsed().as_secs_f64();
    let cap = agent.hw().stats(TableId::Route4).capacity as usize;
    eprintln!(
        "{} updates through the stalling relay in {secs:.1} s: {} ok, {} refused (route table {cap})",
        ops.len(),
        r.ok,
        r.failures.len()
    );
    // Every update is answered, every refusal is the table being full, and
    // each names its own update.
    assert_eq!(r.ok + r.failures.len(), ops.len());
    assert_eq!(r.ok, 1 + cap, "the nexthop and a full route table");
    assert!(r.failures.iter().all(|f| f.1 == Status::TableFull), "only TableFull refusals");
    let mut idx: Vec<usize> = r.failures.iter().map(|f| f.0).collect();
    idx.sort_unstable();
    idx.dedup();
    assert_eq!(idx.len(), r.failures.len(), "one refusal per refused update");
    assert_eq!(written as usize, 1 + cap);
    assert_eq!(agent.hw().stats(TableId::Route4).used as usize, cap);
    let log = agent.log();
    assert!(!log.contains("dropped"), "the agent dropped output; log:\n{log}");
    link.heartbeat().expect("the session is still fine");
}

#[test]
fn a_resync_request_ends_a_batch_at_once() {
    let agent = RunningAgent::start_with(&["--stats-interval", "0"]);
    let mut link = agent.session();
    link.timeout = Duration::from_secs(60);
    // A corrupt frame (bad CRC): the agent drops it and asks for a resync.
    link.send_raw(&[0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x00]).expect("send a corrupt frame");
    let ops: Vec<Op> = std::iter::once(nexthop()).chain((0..2000).map(route)).collect();
    let start = Instant::now();
    match link.apply(&ops) {
        Err(LinkError::Resync(_)) => {}
        other => panic!("expected the resync request to end the batch, got {other:?}"),
    }
    let waited = start.elapsed();
    assert!(waited < Duration::from_secs(10), "the host waited {waited:?} for results");
    // The snapshot that follows works.
    let (r, _) = link.snapshot(1, &ops[..10]).expect("snapshot after the resync request");
    assert_eq!((r.ok, r.failures.len()), (10, 0));
}

#[test]
fn an_accept_error_does_not_end_the_live_session() {
    let agent = RunningAgent::start_with(&["--stats-interval", "0"]);
    let mut link = agent.session();
    link.timeout = Duration::from_secs(30);
    // No descriptor left for the agent: its next accept fails (EMFILE).
    // The limit bounds descriptor numbers, so it goes to the lowest free
    // one.
    let pid = agent.pid();
    let used: std::collections::BTreeSet<usize> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fds")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    let open = (0..).find(|n| !used.contains(n)).expect("a free descriptor number");
    let limit = |n: usize| {
        let st = std::process::Command::new("prlimit")
            .arg(format!("--pid={pid}"))
            .arg(format!("--nofile={n}:"))
            .status()
            .expect("prlimit");
        assert!(st.success(), "prlimit");
    };
    limit(open);
    let waiting = UnixStream::connect(&agent.sock).expect("connect (queued in the backlog)");
    assert!(agent.wait_log("accept on unix:", 1, Duration::from_secs(10)), "log:\n{}", agent.log());
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(agent.log().matches("accept on unix:").count(), 1, "logged once, not per retry");
    link.heartbeat().expect("the live session goes on through accept errors");
    let (r, _) = link.snapshot(1, &[nexthop(), route(7)]).expect("snapshot during accept errors");
    assert_eq!((r.ok, r.failures.len()), (2, 0));
    // Descriptors again: the waiting connection is accepted and refused.
    limit(open + 64);
    assert!(agent.wait_log("refused a host connection", 1, Duration::from_secs(10)), "log:\n{}", agent.log());
    drop(waiting);
    link.heartbeat().expect("still the owner");
}
