//! The virtio-serial transport, with a pseudo-terminal standing in for
//! `/dev/vportNpM`: the aarch64 agent opens the pty's slave by path, the
//! test speaks the protocol on its master.

use dpu_hw::{reader, Region};
use dpu_wire::*;
use host_bridge::{AgentLink, Channel};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
use qemu_tests::{agent_bin, QEMU};
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn serial_port_carries_a_session() {
    let pty = nix::pty::openpty(None, None).expect("openpty");
    // A virtio-serial port is a clean byte pipe: make the pty one too.
    let mut t = tcgetattr(&pty.slave).expect("tcgetattr");
    cfmakeraw(&mut t);
    tcsetattr(&pty.slave, SetArg::TCSANOW, &t).expect("tcsetattr");
    let slave_path = nix::unistd::ttyname(&pty.slave).expect("ttyname");

    let dir = std::env::temp_dir().join(format!("qemu-tests-serial-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let hw = dir.join("hw.bin");
    let mut child = Command::new(QEMU)
        .arg(agent_bin())
        .arg("--listen")
        .arg(format!("serial:{}", slave_path.display()))
        .arg("--hw")
        .arg(&hw)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the agent");

    let mut link = AgentLink::new(Channel::from_fd(pty.master).expect("the pty master as a channel"));
    link.timeout = Duration::from_secs(30);
    let hello = link.hello("serial test").expect("hello over the serial port");
    assert_eq!(hello.board.as_str(), "qemu-virt");
    let nh = Op::Upsert(Object::Nexthop(Nexthop {
        id: 1,
        ifindex: 2,
        gateway: Some(Ip::V4([192, 0, 2, 1])),
        blackhole: false,
        onlink: false,
        fdb: false,
    }));
    let routes: Vec<Op> = std::iter::once(nh)
        .chain((0..300u32).map(|i| {
            Op::Upsert(Object::Route(Route {
                key: RouteKey {
                    table: 254,
                    dst: Prefix::new(Ip::V4([10, 1 + (i >> 8) as u8, i as u8, 0]), 24),
                    metric: 0,
                    ifindex: 0,
                },
                kind: RouteType::Unicast,
                protocol: 4,
                scope: 0,
                nexthops: RouteNexthops::Object(1),
            }))
        }))
        .collect();
    let (r, (_, written, _)) = link.snapshot(1, &routes).expect("snapshot over the serial port");
    assert_eq!((r.ok, r.failures.len()), (301, 0));
    assert_eq!(written, 301);
    let region = Region::open(&hw).expect("open the hardware region");
    let tables = reader::read(&region);
    assert_eq!(tables.routes.len(), 300);
    assert!(tables
        .routes
        .iter()
        .all(|r| tables.resolve(&r.entry)[0].gateway == Some(Ip::V4([192, 0, 2, 1]))));

    // The host goes away: the agent ends the session and waits quietly,
    // a line or two, not a line per retry.
    drop(link);
    std::thread::sleep(Duration::from_secs(3));
    let _ = child.kill();
    let out = child.wait_with_output().expect("agent output");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains(&format!("opened serial:{}", slave_path.display())), "log:\n{log}");
    let after = &log[log.find("snapshot 1 done").expect("snapshot logged")..];
    assert!(after.lines().count() <= 6, "the agent is not quiet without a host:\n{after}");
    drop(pty.slave);
    std::fs::remove_dir_all(&dir).ok();
}
