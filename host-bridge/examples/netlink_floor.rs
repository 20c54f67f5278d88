//! The kernel's share of host-bridge's CPU per event: a listener on the
//! same netlink groups, with host-bridge's socket, receive buffer,
//! recvmmsg batches and burst pause, that throws every message away.
//! `qemu-tests/bench-mirror.sh V4 V6 floor` runs it beside the same
//! install and prints its CPU per route: what no change to host-bridge's
//! own code can save.
//!
//!     cargo run --release -p host-bridge --example netlink_floor -- [RCVBUF]

use host_bridge::kernel::{BURST_PAUSE, DRAIN};
use host_bridge::netlink::socket::{group, Datagrams, NlSocket};
use smol::Async;
use std::io;
use std::time::Instant;

fn main() -> io::Result<()> {
    let rcvbuf = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(256 << 20);
    if let Some(ring) = std::env::var("FLOOR_RING").ok().and_then(|r| r.parse().ok()) {
        return ring_floor(ring);
    }
    let events = Async::new(NlSocket::open(&group::ALL, rcvbuf)?)?;
    let mut d = Datagrams::default();
    let (mut last_wake, mut behind) = (None::<Instant>, false);
    let mut messages = 0u64;
    smol::block_on(async {
        loop {
            // As host-bridge waits (kernel::next_wake), or with
            // FLOOR_ASYNC=1 through smol's reactor, as it did before.
            let r = if std::env::var_os("FLOOR_ASYNC").is_none() {
                use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
                use std::os::fd::AsFd;
                let mut fds = [PollFd::new(events.get_ref().as_fd(), PollFlags::POLLIN)];
                let _ = poll(&mut fds, PollTimeout::NONE);
                events.get_ref().recv_many(&mut d)
            } else {
                events.read_with(|s| s.recv_many(&mut d)).await
            };
            if matches!(&r, Err(e) if e.kind() == io::ErrorKind::WouldBlock) {
                continue;
            }
            if let Err(e) = r {
                eprintln!("netlink_floor: {e} after {messages} messages");
                continue;
            }
            if !behind && last_wake.is_some_and(|l: Instant| l.elapsed() < BURST_PAUSE) {
                std::thread::sleep(BURST_PAUSE);
            }
            behind = true;
            let mut taken = 0;
            loop {
                // Counted, so that the datagrams are at least looked at.
                messages +=
                    d.iter().map(|dg| host_bridge::netlink::socket::messages(dg).count() as u64).sum::<u64>();
                taken += d.len();
                if taken >= DRAIN {
                    break;
                }
                match events.get_ref().recv_many(&mut d) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        behind = false;
                        break;
                    }
                    Err(e) => {
                        eprintln!("netlink_floor: {e} after {messages} messages");
                        break;
                    }
                }
            }
            last_wake = Some(Instant::now());
        }
    })
}

/// FLOOR_RING=BYTES: the same, read through the event ring
/// (netlink::ring) as host-bridge does by default.
fn ring_floor(bytes: usize) -> io::Result<()> {
    use host_bridge::netlink::ring::EventRing;
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let sock = NlSocket::open(&[], 0)?;
    let mut ring = EventRing::attach(&sock, bytes).map_err(io::Error::other)?;
    sock.join(&group::ALL)?;
    let (mut last_wake, mut messages, mut lost) = (None::<Instant>, 0u64, 0);
    loop {
        if !ring.ready() {
            let mut fds = [PollFd::new(ring.as_fd(), PollFlags::POLLIN)];
            let _ = poll(&mut fds, PollTimeout::NONE);
            continue;
        }
        if last_wake.is_some_and(|l: Instant| l.elapsed() < BURST_PAUSE) {
            std::thread::sleep(BURST_PAUSE);
        }
        while ring.drain(ring.produced(), DRAIN, |_, dg| {
            messages += host_bridge::netlink::socket::messages(dg).count() as u64
        }) > 0
        {}
        if ring.lost() != lost {
            lost = ring.lost();
            eprintln!("netlink_floor: {lost} events lost after {messages} messages");
        }
        last_wake = Some(Instant::now());
    }
}
