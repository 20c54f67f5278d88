//! The DPU image on the simulated board: qemu-system-aarch64 (TCG) boots
//! it, the agent runs on the ivshmem BAR, a host process speaks to it over
//! the virtio-serial port's chardev, and the hardware is read from the
//! board's memory file outside the VM.
//!
//! One test, in steps: VMs under TCG share two cores, so they run one at
//! a time.

use dpu_hw::TableId;
use dpu_wire::*;
use qemu_tests::dpu_vm::DpuVm;
use qemu_tests::topo::*;
use qemu_tests::{assert_all_ok, describe_delta, Model, Regs};
use std::time::{Duration, Instant};

#[test]
fn the_dpu_image_on_the_board() {
    let _one = DpuVm::exclusive();
    let mut vm = DpuVm::new("e2e");
    let secs = vm.boot(&[]);
    eprintln!("boot to the agent waiting on its port: {secs:.2} s (TCG)");
    let console = vm.console();
    assert!(console.contains("cold start"), "a blank board is formatted:\n{console}");
    assert!(console.contains("BAR 2 (1048576 bytes)"), "{console}");
    assert_eq!(
        std::fs::metadata(vm.run.join("board.mem")).expect("board.mem").len(),
        1 << 20,
        "never resized"
    );

    // The topology, checked from outside the VM.
    let ops = topology();
    let model = Model::new(&ops);
    let mut link = vm.session();
    let (r, _) = link.snapshot(1, &ops).expect("snapshot over virtio-serial");
    assert_all_ok(&r, ops.len());
    model.check(&vm.hw());

    // Mass refusal over virtio-serial: 100,000 routes into the 1,024-route
    // table; every refusal arrives.
    let cap = vm.hw().stats(TableId::Route4).capacity as usize;
    let present = vm.hw().stats(TableId::Route4).used as usize;
    let routes: Vec<Op> = (0..100_000u32)
        .map(|i| {
            Op::Upsert(route_nh(
                route_key(MAIN, ip4(100, (i >> 16) as u8, (i >> 8) as u8, i as u8), 32, 0),
                NH_P0,
            ))
        })
        .collect();
    let start = Instant::now();
    let r = link.apply(&routes).expect("100,000 routes over virtio-serial");
    let secs = start.elapsed().as_secs_f64();
    let fit = cap - present;
    eprintln!(
        "mass refusal over virtio-serial: {} updates in {secs:.2} s ({:.0}/s), {} ok, {} refused, {} wire bytes",
        routes.len(),
        routes.len() as f64 / secs,
        r.ok,
        r.failures.len(),
        link.tx_bytes
    );
    assert_eq!(r.ok, fit);
    assert_eq!(r.failures.len(), routes.len() - fit, "every refusal arrived");
    for (n, &(index, status, key)) in r.failures.iter().enumerate() {
        assert_eq!(index, fit + n);
        assert_eq!(status, Status::TableFull);
        assert_eq!(key, Some(routes[index].key()));
    }
    assert_eq!(vm.hw().stats(TableId::Route4).used as usize, cap);

    // Back to the topology: the snapshot removes exactly the routes added.
    let (r, (_, written, removed)) = link.snapshot(2, &ops).expect("snapshot back");
    assert_all_ok(&r, ops.len());
    assert_eq!((written, removed as usize), (0, fit));
    model.check(&vm.hw());

    // Link cut: the host goes away. The agent ends the session and waits
    // quietly; the next session's snapshot rewrites nothing.
    drop(link);
    assert!(vm.wait_console("the host left", 1, Duration::from_secs(20)), "{}", vm.console());
    let quiet_from = vm.console().len();
    std::thread::sleep(Duration::from_secs(3));
    let after = vm.console()[quiet_from..].to_string();
    assert!(after.lines().count() <= 3, "not quiet without a host:\n{after}");
    let before = Regs::of(&vm.hw());
    let mut link = vm.session();
    let (r, (_, written, removed)) = link.snapshot(3, &ops).expect("snapshot after the cut");
    assert_all_ok(&r, ops.len());
    assert_eq!((written, removed), (0, 0));
    let d = before.delta(&Regs::of(&vm.hw()));
    assert!(d.iter().all(|&x| x == (0, 0)), "registers moved: {}", describe_delta(&d));
    drop(link);

    // DPU reboot (power cut): the hardware memory belongs to the board and
    // survives; the agent starts warm and the resync rewrites nothing.
    vm.kill();
    let before = Regs::of(&vm.hw());
    let secs = vm.boot(&[]);
    eprintln!("reboot to the agent waiting: {secs:.2} s");
    assert!(vm.console().contains("warm start"), "{}", vm.console());
    assert_eq!(Regs::of(&vm.hw()), before, "the boot itself wrote to the hardware");
    let mut link = vm.session();
    let (r, (unchanged, written, removed)) = link.snapshot(4, &ops).expect("snapshot after the reboot");
    assert_all_ok(&r, ops.len());
    assert_eq!((written, removed), (0, 0), "SnapshotDone after the reboot");
    assert_eq!(unchanged as usize, model.object_entries());
    let d = before.delta(&Regs::of(&vm.hw()));
    assert!(d.iter().all(|&x| x == (0, 0)), "registers moved: {}", describe_delta(&d));
    model.check(&vm.hw());
    drop(link);
    vm.kill();

    // The init supervises the agent: an agent that exits is restarted,
    // with back-off.
    let mut bad = DpuVm::new("supervise");
    bad.boot(&["--append", "dpu.agent_args=--no-such-option", "--wait-for", "restarting in 1 s"]);
    assert!(bad.wait_console("restarting in 2 s", 1, Duration::from_secs(30)), "{}", bad.console());
    assert!(bad.console().contains("unknown option"), "{}", bad.console());
}

#[test]
fn vsock_and_one_owner_across_channels() {
    let _one = DpuVm::exclusive();
    let mut vm = DpuVm::new("vsock");
    let secs = vm.boot(&["--vsock", "--wait-for", "listening on vsock"]);
    eprintln!("boot with vsock to the agent listening: {secs:.2} s (TCG)");
    let mut link = vm.vsock_session(5000).expect("a session over vsock");
    let ops = topology();
    let model = Model::new(&ops);
    let (r, _) = link.snapshot(1, &ops).expect("snapshot over vsock");
    assert_all_ok(&r, ops.len());
    model.check(&vm.hw());
    assert!(vm.console().contains("session starts on vsock from CID 2"), "{}", vm.console());

    // Update throughput over vsock: 20,000 route installs and deletes.
    let routes: Vec<Op> = (0..1000u32)
        .map(|i| Op::Upsert(route_nh(route_key(MAIN, ip4(100, 0, (i >> 8) as u8, i as u8), 32, 0), NH_P0)))
        .collect();
    let dels: Vec<Op> = routes.iter().map(|o| Op::Delete(o.key())).collect();
    let start = Instant::now();
    let mut n = 0;
    for _ in 0..10 {
        let present = vm.hw().stats(TableId::Route4).used as usize;
        let fit = (1024 - present).min(routes.len());
        assert_all_ok(&link.apply(&routes[..fit]).expect("installs over vsock"), fit);
        assert_all_ok(&link.apply(&dels[..fit]).expect("deletes over vsock"), fit);
        n += 2 * fit;
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!("vsock: {n} updates in {secs:.2} s: {:.0} updates/s (TCG)", n as f64 / secs);
    model.check(&vm.hw());

    // One owner across channels: with the vsock session live, a host on
    // the serial port is refused, and the vsock session goes on.
    let mut other =
        host_bridge::AgentLink::dial(&host_bridge::Dial::Unix(vm.serial_sock())).expect("dial serial");
    other.timeout = Duration::from_secs(20);
    match other.hello("second host") {
        Err(host_bridge::LinkError::Agent { code: ErrorCode::Busy, text }) => {
            assert!(text.contains("vsock"), "{text}")
        }
        r => panic!("expected Busy on the serial port, got {r:?}"),
    }
    assert!(vm.console().contains("refused a host connection on serial"), "{}", vm.console());
    link.heartbeat().expect("the vsock session goes on");
    drop(other);
    drop(link);
    vm.kill();

    // Only the board's host CID may connect: with the agent told the host
    // is CID 7, the host (CID 2) is refused.
    vm.boot(&[
        "--vsock",
        "--wait-for",
        "listening on vsock",
        "--append",
        "dpu.agent_args=--vsock-host-cid,7",
    ]);
    assert!(vm.vsock_session(5000).is_err(), "a session from CID 2 with host CID 7");
    assert!(
        vm.wait_console("refused a vsock connection from CID 2", 1, Duration::from_secs(10)),
        "{}",
        vm.console()
    );
}
