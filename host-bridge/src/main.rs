//! `host-bridge`: mirrors the host's networking state into the DPU agent.

use host_bridge::dpu::{self, DpuState};
use host_bridge::kernel::{self, Listen, Shared};
use host_bridge::status;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

const HELP: &str = "\
host-bridge: mirrors the kernel's networking state (links, addresses, routes
in every table, nexthop objects and groups, neighbours, bridge FDB and VLANs)
into the DPU agent, and keeps both equal through netlink overflows, dump
races, agent restarts and its own restarts.

USAGE:
    host-bridge run [OPTIONS]       Mirror until killed
    host-bridge status [OPTIONS]    Print what is mirrored and what the DPU reports
    host-bridge notifiers [OPTIONS] Print the kernel's notifier chains as the
                                    taps decode them, live, like `ip monitor`
    host-bridge detach-firmware --firmware-pin DIR
                                    Unpin the firmware pinned under DIR: its
                                    struct_ops detach once no host-bridge runs
                                    with them (rules already in_hw stay in tc)

RUN OPTIONS:
    --agent ADDRESS    Where the agent is [default: unix:/run/dpu-agent.sock]
                         unix:PATH         a Unix socket (the agent's own, or
                                           QEMU's chardev socket of a DPU VM's
                                           virtio-serial port)
                         vsock:CID:PORT    AF_VSOCK
                         hvsock:PATH:PORT  vsock through a hybrid-vsock Unix
                                           socket (vhost-device-vsock uds-path)
                         serial:PATH       a virtio-serial port, /dev/vportNpM
                       A bare path is a Unix socket.
    --netns NAME       Mirror the network namespace NAME (/run/netns/NAME)
                       instead of the current one
    --status PATH      Where to serve the status [default: /run/host-bridge.sock]
    --rcvbuf BYTES     Netlink receive buffer [default: 33554432]
    --config FILE      Which links and tables are offloaded (TOML, see
                       host-bridge/host-bridge.toml); default: everything
    --firmware IDS     Load the BPF flow offload firmware and attach it to
                       these netdevsim devices (comma-separated ids, as in
                       /sys/bus/netdevsim/devices/netdevsimID): tc flower
                       skip_sw rules on their ports go to the DPU, and the
                       DPU's counters come back into tc -s
    --firmware-pin DIR Pin the firmware under DIR (on bpffs, e.g.
                       /sys/fs/bpf/host-bridge) so that it stays attached
                       while host-bridge is down, and adopt it on restart:
                       offloaded rules survive host-bridge restarts
    --tc-answer dpu|now
                       When tc hears that a skip_sw rule is in hardware
                       [default: dpu]: dpu waits (up to 2 s) for the DPU's
                       answer, so in_hw means the DPU holds the rule and its
                       refusal (ENOSPC, EOPNOTSUPP) is tc's error; now
                       answers once the rule is queued, and a later refusal
                       shows only in host-bridge status
    --fib-firmware IDS Load the BPF FIB offload firmware and attach it to
                       these netdevsim devices: the kernel's route offload
                       flags (ip route: rt_offload, rt_offload_failed)
                       follow what the DPU did with each route

    --taps on|off      Attach the notifier taps (bpf/notifier/) [default: on]:
                       routes the kernel flushes with a link go from the
                       mirror without a re-dump. Taps the kernel refuses are
                       named at start; netlink alone covers for them.
    --tap-ring SIZE    The taps' ring buffer, in bytes or with K or M
                       [default: 4M]; a power of two

NOTIFIERS OPTIONS:
    --netns NAME       Tap the network namespace NAME [default: the current one]
    --all-netns        Every network namespace
    --json             One JSON object per line instead of text
    --count N          Exit after N records
    --tap-ring SIZE    As for run

STATUS OPTIONS:
    --status PATH      The running host-bridge's status socket [default: /run/host-bridge.sock]
    --json             JSON instead of text, with every mirrored object; route
                       entries carry table, dst, metric, type, nexthops and
                       the DPU's answer (offload)
    --all              Text with every mirrored object too (without it, the
                       text is the summary: counters, counts, the DPU, the
                       firmware, what the DPU refused)
";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let cmd = args.next().unwrap_or_default();
    let (mut agent, mut netns, mut status_path, mut rcvbuf, mut json) = (
        host_bridge::Dial::Unix("/run/dpu-agent.sock".into()),
        None,
        PathBuf::from("/run/host-bridge.sock"),
        32usize << 20,
        false,
    );
    let mut config = host_bridge::config::Config::default();
    let mut firmware: Vec<u32> = Vec::new();
    let mut firmware_pin: Option<PathBuf> = None;
    let mut fib_firmware: Vec<u32> = Vec::new();
    let mut tc_answer = host_bridge::firmware::Answer::Dpu;
    let mut all = false;
    let mut taps = true;
    let mut tap_ring = host_bridge::notifier::DEFAULT_RING;
    let mut all_netns = false;
    let mut count: Option<u64> = None;
    while let Some(a) = args.next() {
        let mut val = |n: &str| match args.next() {
            Some(v) => Ok(v),
            None => Err(format!("{n} needs a value")),
        };
        let r: Result<(), String> = match a.as_str() {
            "--agent" => val("--agent").and_then(|v| v.parse().map(|v| agent = v)),
            "--netns" => val("--netns").map(|v| netns = Some(v)),
            "--status" => val("--status").map(|v| status_path = v.into()),
            "--rcvbuf" => val("--rcvbuf")
                .and_then(|v| v.parse().map(|v| rcvbuf = v).map_err(|_| "--rcvbuf: not a number".into())),
            "--config" => val("--config")
                .and_then(|v| host_bridge::config::Config::load(v.as_ref()).map(|c| config = c)),
            "--firmware" => val("--firmware").and_then(|v| {
                v.split(',')
                    .map(|d| {
                        d.trim().parse::<u32>().map_err(|_| format!("--firmware: {d:?} is not a device id"))
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(|v| firmware = v)
            }),
            "--firmware-pin" => val("--firmware-pin").map(|v| firmware_pin = Some(v.into())),
            "--tc-answer" => val("--tc-answer").and_then(|v| match v.as_str() {
                "dpu" => {
                    tc_answer = host_bridge::firmware::Answer::Dpu;
                    Ok(())
                }
                "now" => {
                    tc_answer = host_bridge::firmware::Answer::Now;
                    Ok(())
                }
                _ => Err(format!("--tc-answer: {v:?} is neither dpu nor now")),
            }),
            "--fib-firmware" => val("--fib-firmware").and_then(|v| {
                v.split(',')
                    .map(|d| {
                        d.trim()
                            .parse::<u32>()
                            .map_err(|_| format!("--fib-firmware: {d:?} is not a device id"))
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(|v| fib_firmware = v)
            }),
            "--json" => {
                json = true;
                Ok(())
            }
            "--taps" => val("--taps").and_then(|v| match v.as_str() {
                "on" | "off" => {
                    taps = v == "on";
                    Ok(())
                }
                o => Err(format!("--taps: {o:?} is neither on nor off")),
            }),
            "--tap-ring" => val("--tap-ring").and_then(|v| parse_size(&v).map(|n| tap_ring = n)),
            "--all-netns" => {
                all_netns = true;
                Ok(())
            }
            "--count" => val("--count")
                .and_then(|v| v.parse().map(|n| count = Some(n)).map_err(|_| "--count: not a number".into())),
            "--all" => {
                all = true;
                Ok(())
            }
            "-h" | "--help" => {
                print!("{HELP}");
                return ExitCode::SUCCESS;
            }
            o => Err(format!("unknown option {o:?} (see --help)")),
        };
        if let Err(e) = r {
            eprintln!("host-bridge: {e}");
            return ExitCode::from(2);
        }
    }
    match cmd.as_str() {
        "run" => {
            if let Some(ns) = &netns {
                if let Err(e) = enter_netns(ns) {
                    eprintln!("host-bridge: netns {ns}: {e}");
                    return ExitCode::FAILURE;
                }
            }
            let shared = match Shared::new() {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("host-bridge: eventfd: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let state = Arc::new(Mutex::new(DpuState::default()));
            if let Err(e) = status::serve(&status_path, shared.clone(), state.clone()) {
                eprintln!("host-bridge: status socket {}: {e}", status_path.display());
                return ExitCode::FAILURE;
            }
            let fw = if firmware.is_empty() {
                None
            } else {
                match host_bridge::firmware::start(shared.clone(), firmware, firmware_pin, tc_answer) {
                    Ok(fw) => Some(fw),
                    Err(e) => {
                        eprintln!("host-bridge: firmware: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            };
            // Before the agent session: the DPU's first answers are kept.
            if !fib_firmware.is_empty() {
                if let Err(e) = host_bridge::fib_fw::start(shared.clone(), fib_firmware) {
                    eprintln!("host-bridge: FIB firmware: {e}");
                    return ExitCode::FAILURE;
                }
            }
            {
                let (shared, state) = (shared.clone(), state.clone());
                std::thread::spawn(move || dpu::run(shared, state, agent, fw));
            }
            host_bridge::log!(
                "mirroring {}",
                netns.as_deref().map(|n| format!("netns {n}")).unwrap_or("the current netns".into())
            );
            let taps = if taps {
                match host_bridge::notifier::feed::start(shared.clone(), tap_ring) {
                    Ok(f) => {
                        if let Some(t) = shared.taps().as_ref() {
                            for s in &t.states {
                                host_bridge::log!("{}", s.describe());
                            }
                        }
                        if !f.routes_tapped {
                            host_bridge::log!(
                                "the fib and nexthop taps are not both attached: a link going down re-dumps routes"
                            );
                        }
                        Some(f)
                    }
                    Err(e) => {
                        host_bridge::log!("taps not loaded ({e}): mirroring from netlink alone");
                        None
                    }
                }
            } else {
                None
            };
            match kernel::run(shared, Listen { rcvbuf, config, taps }) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    host_bridge::log!("netlink: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        "status" => {
            let mut s = match std::os::unix::net::UnixStream::connect(&status_path) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("host-bridge: {}: {e} (is host-bridge running?)", status_path.display());
                    return ExitCode::FAILURE;
                }
            };
            let req = if json || all { status::FULL_REQUEST } else { status::SUMMARY_REQUEST };
            let mut body = String::new();
            if let Err(e) = s.write_all(req).and_then(|_| s.read_to_string(&mut body)) {
                eprintln!("host-bridge: {e}");
                return ExitCode::FAILURE;
            }
            if json {
                println!("{body}");
            } else {
                match serde_json::from_str(&body) {
                    Ok(v) => print!("{}", status::text(&v)),
                    Err(e) => {
                        eprintln!("host-bridge: bad status: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            ExitCode::SUCCESS
        }
        "notifiers" => {
            if let Some(ns) = &netns {
                if let Err(e) = enter_netns(ns) {
                    eprintln!("host-bridge: netns {ns}: {e}");
                    return ExitCode::FAILURE;
                }
            }
            notifiers(all_netns, json, tap_ring, count)
        }
        "detach-firmware" => {
            let Some(dir) = firmware_pin else {
                eprintln!("host-bridge: detach-firmware needs --firmware-pin DIR");
                return ExitCode::from(2);
            };
            match host_bridge::firmware::detach_pinned(&dir) {
                Ok(removed) => {
                    for p in &removed {
                        println!("unpinned {}", p.display());
                    }
                    if removed.is_empty() {
                        println!("nothing pinned under {}", dir.display());
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("host-bridge: detach-firmware: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        "" | "-h" | "--help" => {
            print!("{HELP}");
            if cmd.is_empty() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            }
        }
        o => {
            eprintln!("host-bridge: unknown command {o:?} (see --help)");
            ExitCode::from(2)
        }
    }
}

fn parse_size(v: &str) -> Result<usize, String> {
    let (num, mul) = match v.as_bytes().last() {
        Some(b'K' | b'k') => (&v[..v.len() - 1], 1 << 10),
        Some(b'M' | b'm') => (&v[..v.len() - 1], 1 << 20),
        _ => (v, 1),
    };
    match num.parse::<usize>() {
        Ok(n) if n > 0 && (n * mul).is_power_of_two() && n * mul >= 4096 => Ok(n * mul),
        Ok(_) => Err(format!("--tap-ring: {v} is not a power of two of at least 4K")),
        Err(_) => Err(format!("--tap-ring: {v:?} is not a size")),
    }
}

/// `host-bridge notifiers`: the taps' records on stdout until killed, a
/// reader goes away (EPIPE ends it quietly) or `count` records were printed.
fn notifiers(all_netns: bool, json: bool, ring: usize, count: Option<u64>) -> ExitCode {
    use host_bridge::notifier::{current_netns, Taps};
    let inum = if all_netns {
        0
    } else {
        match current_netns() {
            Ok(i) => i,
            Err(e) => {
                eprintln!("host-bridge: /proc/thread-self/ns/net: {e}");
                return ExitCode::FAILURE;
            }
        }
    };
    let taps = match Taps::load(inum, ring) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("host-bridge: taps: {e}");
            return ExitCode::FAILURE;
        }
    };
    for s in &taps.states {
        eprintln!("{}", s.describe());
    }
    if !taps.states.iter().any(|s| s.attached.is_some()) {
        eprintln!("host-bridge: no tap attached");
        return ExitCode::FAILURE;
    }
    let out = std::io::stdout();
    let (mut printed, mut failed, mut drops) = (0u64, false, 0u64);
    let r = taps.run(
        std::time::Duration::from_millis(200),
        |rec| {
            let mut o = out.lock();
            let w = match rec {
                Ok(r) if json => {
                    serde_json::to_string(&r).map_err(std::io::Error::other).and_then(|l| writeln!(o, "{l}"))
                }
                Ok(r) => writeln!(o, "{r}"),
                Err(e) => writeln!(o, "undecodable record: {e}"),
            };
            if w.and_then(|_| o.flush()).is_err() {
                failed = true;
                return false;
            }
            printed += 1;
            count.is_none_or(|c| printed < c)
        },
        |t| {
            let (_, all) = t.counts();
            if all.drops != drops {
                eprintln!("host-bridge: {} records lost (ring buffer full)", all.drops - drops);
                drops = all.drops;
            }
            true
        },
    );
    match r {
        Err(e) if !failed => {
            eprintln!("host-bridge: {e}");
            ExitCode::FAILURE
        }
        _ => ExitCode::SUCCESS,
    }
}

fn enter_netns(name: &str) -> std::io::Result<()> {
    let f = std::fs::File::open(format!("/run/netns/{name}"))?;
    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)?;
    Ok(())
}
