//! `host-bridge`: mirrors the host's networking state into the DPU agent.

use clap::{Args, Parser, Subcommand, ValueEnum};
use host_bridge::dpu::{self, DpuState};
use host_bridge::kernel::{self, Listen, Shared};
use host_bridge::logfmt::Level;
use host_bridge::status;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

/// Mirrors the kernel's networking state (links, addresses, routes in every
/// table, nexthop objects and groups, neighbours, bridge FDB and VLANs, tc
/// flower filters) into the DPU agent, and keeps both equal through netlink
/// overflows, dump races, agent restarts and its own restarts.
#[derive(Parser)]
#[command(name = "host-bridge", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    /// The most detailed log lines written: error, warn, info or debug
    #[arg(long, global = true, default_value = "info", value_parser = parse_level)]
    log_level: Level,
}

#[derive(Subcommand)]
enum Cmd {
    /// Mirror until killed (SIGHUP reads --config again and applies the difference)
    Run(RunArgs),
    /// Print what is mirrored and what the DPU reports
    Status(StatusArgs),
    /// Print the kernel's notifier chains as the taps decode them, live, like `ip monitor`
    Notifiers(NotifierArgs),
    /// Unpin the firmware pinned under --firmware-pin DIR: its struct_ops
    /// detach once no host-bridge runs with them (rules already in_hw stay in tc)
    DetachFirmware {
        #[arg(long, value_name = "DIR")]
        firmware_pin: PathBuf,
    },
}

#[derive(Args)]
struct RunArgs {
    /// Where the agent is: unix:PATH (the agent's own socket, or QEMU's
    /// chardev socket of a DPU VM's virtio-serial port), vsock:CID:PORT,
    /// hvsock:PATH:PORT (vsock through a hybrid-vsock Unix socket, as
    /// vhost-device-vsock's uds-path), serial:PATH (a virtio-serial port,
    /// /dev/vportNpM); a bare path is a Unix socket
    #[arg(long, value_name = "ADDRESS", default_value = "unix:/run/dpu-agent.sock")]
    agent: host_bridge::Dial,
    /// Mirror the network namespace NAME (/run/netns/NAME) instead of the current one
    #[arg(long, value_name = "NAME")]
    netns: Option<String>,
    /// Where to serve the status
    #[arg(long, value_name = "PATH", default_value = "/run/host-bridge.sock")]
    status: PathBuf,
    /// Netlink receive buffer of the event socket, in bytes, when it is
    /// read itself (see --event-ring)
    #[arg(long, value_name = "BYTES", default_value_t = 32 << 20)]
    rcvbuf: usize,
    /// Read kernel events through a BPF ring buffer of this many bytes
    /// (rounded up to a power of two), filled by a socket filter on the
    /// event socket: no skb queued and no system call per event. 0 reads
    /// the socket itself, as does a kernel where the filter does not load
    #[arg(long, value_name = "BYTES", default_value_t = 16 << 20)]
    event_ring: usize,
    /// In a burst of kernel events, how long to let them gather before
    /// they are read and sent, in milliseconds: less CPU per event for
    /// more latency, in bursts only (a lone event goes at once)
    #[arg(long, value_name = "MS", default_value_t = 10)]
    burst_pause: u64,
    /// Which links and tables are offloaded (TOML, see host-bridge/host-bridge.toml);
    /// default: everything. Read again at SIGHUP
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Load the BPF flow offload firmware and attach it to these netdevsim
    /// devices (comma-separated ids, as in /sys/bus/netdevsim/devices/netdevsimID):
    /// tc flower skip_sw rules on their ports go to the DPU, and the DPU's
    /// counters come back into tc -s
    #[arg(long, value_name = "IDS", value_delimiter = ',')]
    firmware: Vec<u32>,
    /// Pin the firmware under DIR (on bpffs, e.g. /sys/fs/bpf/host-bridge) so
    /// that it stays attached while host-bridge is down, and adopt it on
    /// restart: offloaded rules survive host-bridge restarts
    #[arg(long, value_name = "DIR")]
    firmware_pin: Option<PathBuf>,
    /// When tc hears that a skip_sw rule is in hardware: dpu waits (up to
    /// 2 s) for the DPU's answer, so in_hw means the DPU holds the rule and
    /// its refusal (ENOSPC, EOPNOTSUPP) is tc's error; now answers once the
    /// rule is queued, and a later refusal shows only in host-bridge status
    #[arg(long, value_enum, default_value = "dpu")]
    tc_answer: TcAnswer,
    /// Load the BPF FIB offload firmware and attach it to these netdevsim
    /// devices: the kernel's route offload flags (ip route: rt_offload,
    /// rt_offload_failed) follow what the DPU did with each route
    #[arg(long, value_name = "IDS", value_delimiter = ',')]
    fib_firmware: Vec<u32>,
    /// Attach the notifier taps (bpf/notifier/): routes the kernel flushes
    /// with a link go from the mirror without a re-dump. Taps the kernel
    /// refuses are named at start; netlink alone covers for them
    #[arg(long, value_enum, default_value = "on")]
    taps: OnOff,
    /// The taps' ring buffer, in bytes or with K or M; a power of two
    #[arg(long, value_name = "SIZE", default_value = "4M", value_parser = parse_size)]
    tap_ring: usize,
    /// Serve metrics in the Prometheus/OpenMetrics text format on ADDR
    /// (host:port), at /metrics
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
}

#[derive(Args)]
struct StatusArgs {
    /// The running host-bridge's status socket
    #[arg(long, value_name = "PATH", default_value = "/run/host-bridge.sock")]
    status: PathBuf,
    /// JSON instead of text, with every mirrored object of every kind
    #[arg(long)]
    json: bool,
    /// Text with every mirrored object too (without it, the text is the
    /// summary: counters, counts, the DPU, the firmware, what the DPU
    /// refused, what is not offloaded)
    #[arg(long)]
    all: bool,
}

#[derive(Args)]
struct NotifierArgs {
    /// Tap the network namespace NAME [default: the current one]
    #[arg(long, value_name = "NAME")]
    netns: Option<String>,
    /// Every network namespace
    #[arg(long)]
    all_netns: bool,
    /// One JSON object per line instead of text
    #[arg(long)]
    json: bool,
    /// Exit after N records
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// The taps' ring buffer, as for run
    #[arg(long, value_name = "SIZE", default_value = "4M", value_parser = parse_size)]
    tap_ring: usize,
}

#[derive(Clone, Copy, ValueEnum)]
enum TcAnswer {
    Dpu,
    Now,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OnOff {
    On,
    Off,
}

fn parse_level(v: &str) -> Result<Level, String> {
    Level::parse(v).ok_or_else(|| format!("{v:?} is none of error, warn, info, debug"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    host_bridge::logfmt::set_level(cli.log_level);
    match cli.cmd {
        Cmd::Run(a) => run(a),
        Cmd::Status(a) => status_cmd(a),
        Cmd::Notifiers(a) => {
            if let Some(ns) = &a.netns {
                if let Err(e) = enter_netns(ns) {
                    eprintln!("host-bridge: netns {ns}: {e}");
                    return ExitCode::FAILURE;
                }
            }
            notifiers(a.all_netns, a.json, a.tap_ring, a.count)
        }
        Cmd::DetachFirmware { firmware_pin: dir } => match host_bridge::firmware::detach_pinned(&dir) {
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
        },
    }
}

fn run(a: RunArgs) -> ExitCode {
    let RunArgs {
        agent,
        netns,
        status: status_path,
        rcvbuf,
        event_ring,
        burst_pause,
        config: config_path,
        firmware,
        firmware_pin,
        tc_answer,
        fib_firmware,
        taps,
        tap_ring,
        metrics,
    } = a;
    let config = match &config_path {
        Some(p) => match host_bridge::config::Config::load(p) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("host-bridge: {e}");
                return ExitCode::from(2);
            }
        },
        None => host_bridge::config::Config::default(),
    };
    let tc_answer = match tc_answer {
        TcAnswer::Dpu => host_bridge::firmware::Answer::Dpu,
        TcAnswer::Now => host_bridge::firmware::Answer::Now,
    };
    let taps = taps == OnOff::On;
    // SIGHUP is taken by a thread of its own (blocked here, before any
    // other thread starts, so that every thread inherits the mask).
    let reload = match hup_channel() {
        Ok(rx) => rx,
        Err(e) => {
            eprintln!("host-bridge: SIGHUP: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Bound here, in the netns host-bridge was started in: with --netns
    // the scrapes come from the operator's side, not the mirrored one.
    let metrics = match metrics.map(|a| (a, std::net::TcpListener::bind(a))) {
        None => None,
        Some((_, Ok(l))) => Some(l),
        Some((a, Err(e))) => {
            eprintln!("host-bridge: metrics on {a}: {e}");
            return ExitCode::FAILURE;
        }
    };
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
    shared.burst_pause_ns.store(burst_pause.saturating_mul(1_000_000), std::sync::atomic::Ordering::Relaxed);
    let state = Arc::new(Mutex::new(DpuState::default()));
    if let Err(e) = status::serve(&status_path, shared.clone(), state.clone()) {
        eprintln!("host-bridge: status socket {}: {e}", status_path.display());
        return ExitCode::FAILURE;
    }
    if let Some(l) = metrics {
        match host_bridge::metrics::serve(l, shared.clone(), state.clone()) {
            Ok(a) => host_bridge::log!("metrics on http://{a}/metrics"),
            Err(e) => {
                eprintln!("host-bridge: metrics: {e}");
                return ExitCode::FAILURE;
            }
        }
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
        let spawned =
            std::thread::Builder::new().name("dpu".into()).spawn(move || dpu::run(shared, state, agent, fw));
        if let Err(e) = spawned {
            eprintln!("host-bridge: starting the DPU thread: {e}");
            return ExitCode::FAILURE;
        }
    }
    watchdog(&shared, &state);
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
    match kernel::run(shared, Listen { rcvbuf, event_ring, config, config_path, reload: Some(reload), taps })
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            host_bridge::error!("netlink: {e}");
            ExitCode::FAILURE
        }
    }
}

/// systemd's watchdog (WatchdogSec=): WATCHDOG=1 at half the interval,
/// as long as the mirror's and the DPU state's locks can be taken (a
/// thread stuck holding one stops the pings, and systemd restarts us).
fn watchdog(shared: &Arc<Shared>, state: &Arc<Mutex<DpuState>>) {
    let mut usec = 0;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return;
    }
    let (shared, state) = (shared.clone(), state.clone());
    let every = std::time::Duration::from_micros(usec / 2);
    host_bridge::log!("systemd watchdog: a ping every {} ms", every.as_millis());
    let _ = std::thread::Builder::new().name("watchdog".into()).spawn(move || loop {
        drop(shared.lock());
        drop(state.lock());
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
        std::thread::sleep(every);
    });
}

/// Blocks SIGHUP in this thread (and so in every thread it starts) and
/// takes it on a thread of its own: one message per signal on the channel.
fn hup_channel() -> nix::Result<host_bridge::kernel::Belled<()>> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGHUP);
    set.thread_block()?;
    let (tx, rx) = host_bridge::kernel::belled(1)
        .map_err(|e| nix::Error::from_raw(e.raw_os_error().unwrap_or(nix::libc::EIO)))?;
    let spawned = std::thread::Builder::new().name("sighup".into()).spawn(move || {
        while set.wait().is_ok() {
            // Full: a reload is already due, and reads the file then.
            tx.try_send(());
        }
    });
    spawned.map_err(|_| nix::Error::EAGAIN)?;
    Ok(rx)
}

fn status_cmd(a: StatusArgs) -> ExitCode {
    let (status_path, json, all) = (a.status, a.json, a.all);
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
    let out = if json {
        body + "\n"
    } else {
        match serde_json::from_str(&body) {
            Ok(v) => status::text(&v),
            Err(e) => {
                eprintln!("host-bridge: bad status: {e}");
                return ExitCode::FAILURE;
            }
        }
    };
    // A reader that goes away (`status | head`) ends the output
    // quietly; print! would panic on the broken pipe.
    let mut o = std::io::stdout().lock();
    match o.write_all(out.as_bytes()).and_then(|_| o.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("host-bridge: stdout: {e}");
            ExitCode::FAILURE
        }
        _ => ExitCode::SUCCESS,
    }
}

fn parse_size(v: &str) -> Result<usize, String> {
    let (num, mul) = match v.as_bytes().last() {
        Some(b'K' | b'k') => (&v[..v.len() - 1], 1 << 10),
        Some(b'M' | b'm') => (&v[..v.len() - 1], 1 << 20),
        _ => (v, 1),
    };
    match num.parse::<usize>().map(|n| n.checked_mul(mul)) {
        Ok(Some(n)) if n.is_power_of_two() && n >= 4096 => Ok(n),
        Ok(_) => Err(format!("{v} is not a power of two of at least 4K")),
        Err(_) => Err(format!("{v:?} is not a size")),
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
