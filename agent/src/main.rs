//! `dpu-agent`: the DPU firmware agent binary.

use dpu_agent::transport::{serve, Endpoint, ServeConfig};
use dpu_agent::{board, error, info, Agent, Engine};
use dpu_hw::{MmioHal, Region, TableId};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const HELP: &str = "\
dpu-agent: mirrors the host's networking state into the DPU's forwarding
hardware, firmware style. Built for one board; its table capacities are
compile-time constants.

USAGE:
    dpu-agent [OPTIONS]

OPTIONS:
    --listen ENDPOINT      Where the host-bridge connects; repeatable: one host session
                           owns the agent at a time, whichever endpoint it came from
                           [default: unix:/run/dpu-agent.sock]
                             unix:PATH          Unix stream socket (development, tests)
                             vsock:[CID:]PORT   AF_VSOCK; CID defaults to any; only
                                                the board's host CID may connect
                             serial:PATH        virtio-serial port, e.g. serial:/dev/vport0p1
    --hw PATH              Hardware region to map: a device (a PCI BAR's sysfs resource
                           file) or a file. Never resized. A blank one (zero header) is
                           formatted, one with this board's layout kept (warm start),
                           anything else refused. A missing file is created.
                           [default: /dev/shm/dpu-hw-<board>]
    --cold                 Format the hardware region in place whatever it holds.
                           Without it, the agent keeps the entries it finds (warm
                           start) and waits for the host's snapshot to reconcile.
    --stats-interval MS    Period of stats frames to the host; 0 sends stats only on
                           request [default: the board's stats_interval_ms]
    --tick MS              Housekeeping period: how often stats are due-checked [default: 100]
    --vsock-host-cid CID   The only vsock CID a host session may come from [default: the
                           board's channel.vsock_host_cid]
    --session-timeout MS   A session with no frame from the host for this long is over,
                           and another host may take the agent [default: 5000]
    --log-level LEVEL      The most detailed log lines written: error, warn, info or
                           debug [default: info]
    --board                Print the board this agent was built for and exit
    -V, --version          Print version and protocol version and exit
    -h, --help             Print this help and exit

On disconnect the hardware keeps forwarding as it is; the agent waits for the
next session and its snapshot. Logs are plain lines on stderr, in the format
host-bridge writes too: `2026-11-24T20:31:28.123Z LEVEL message`.

";

// The options are parsed here rather than by clap (which host-bridge
// uses): the agent is firmware, a 581 KiB static image (README), and ten
// options do not justify a parser that would be a good part of it.

struct Opts {
    listen: Vec<Endpoint>,
    session_timeout_ms: u64,
    vsock_host_cid: u32,
    hw: PathBuf,
    cold: bool,
    stats_interval_ms: u32,
    tick_ms: u64,
}

enum Parsed {
    Run(Opts),
    Exit(ExitCode),
}

fn parse() -> Result<Parsed, String> {
    let mut o = Opts {
        listen: Vec::new(),
        session_timeout_ms: 5000,
        vsock_host_cid: board::VSOCK_HOST_CID,
        hw: PathBuf::from(format!("/dev/shm/dpu-hw-{}", board::NAME)),
        cold: false,
        stats_interval_ms: board::STATS_INTERVAL_MS,
        tick_ms: 100,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "--listen" => o.listen.push(value("--listen")?.parse()?),
            "--vsock-host-cid" => {
                o.vsock_host_cid =
                    value("--vsock-host-cid")?.parse().map_err(|_| "--vsock-host-cid: not a number")?
            }
            "--session-timeout" => {
                o.session_timeout_ms =
                    value("--session-timeout")?.parse().map_err(|_| "--session-timeout: not a number")?;
                if o.session_timeout_ms == 0 {
                    return Err("--session-timeout must be at least 1".into());
                }
            }
            "--hw" => o.hw = value("--hw")?.into(),
            "--log-level" => {
                let v = value("--log-level")?;
                let l = dpu_agent::log::Level::parse(&v)
                    .ok_or_else(|| format!("--log-level: {v:?} is none of error, warn, info, debug"))?;
                dpu_agent::log::set_level(l);
            }
            "--cold" => o.cold = true,
            "--stats-interval" => {
                o.stats_interval_ms =
                    value("--stats-interval")?.parse().map_err(|_| "--stats-interval: not a number")?
            }
            "--tick" => {
                o.tick_ms = value("--tick")?.parse().map_err(|_| "--tick: not a number")?;
                if o.tick_ms == 0 {
                    return Err("--tick must be at least 1".into());
                }
            }
            "--board" => {
                print_board();
                return Ok(Parsed::Exit(ExitCode::SUCCESS));
            }
            "-V" | "--version" => {
                let v = dpu_wire::VERSION;
                println!(
                    "dpu-agent {} (protocol {}.{}, board {})",
                    env!("CARGO_PKG_VERSION"),
                    v.major,
                    v.minor,
                    board::NAME
                );
                return Ok(Parsed::Exit(ExitCode::SUCCESS));
            }
            "-h" | "--help" => {
                print!("{HELP}");
                return Ok(Parsed::Exit(ExitCode::SUCCESS));
            }
            other => return Err(format!("unknown option {other:?} (see --help)")),
        }
    }
    if o.listen.is_empty() {
        o.listen.push(Endpoint::Unix("/run/dpu-agent.sock".into()));
    }
    Ok(Parsed::Run(o))
}

fn print_board() {
    let layout = board::layout();
    let (descs, total) = layout.tables();
    println!("board {}: {}", board::NAME, board::DESCRIPTION);
    println!("driver {}, hardware region {} bytes", board::DRIVER, total);
    for (name, speed) in board::PORTS {
        println!("port {name} {speed} Mb/s");
    }
    for d in descs {
        println!("table {:<8} {:>9} entries x {:>3} bytes", d.id.name(), d.capacity, d.entry_size);
    }
    println!("ecmp members {}", board::ECMP_MEMBERS);
}

fn main() -> ExitCode {
    let o = match parse() {
        Ok(Parsed::Run(o)) => o,
        Ok(Parsed::Exit(c)) => return c,
        Err(e) => {
            eprintln!("dpu-agent: {e}");
            return ExitCode::from(2);
        }
    };
    let layout = board::layout();
    let (region, warm) = match Region::create(&o.hw, &layout, o.cold) {
        Ok(r) => r,
        Err(e) => {
            error!("hardware region {}: {e}", o.hw.display());
            return ExitCode::FAILURE;
        }
    };
    info!(
        "dpu-agent {} board {} driver {} region {} ({} bytes, {} start)",
        env!("CARGO_PKG_VERSION"),
        board::NAME,
        board::DRIVER,
        o.hw.display(),
        region.len(),
        if warm { "warm" } else { "cold" }
    );
    let engine = Engine::new(MmioHal::new(region), warm);
    if warm {
        let used: Vec<String> = TableId::ALL
            .iter()
            .filter(|&&t| engine.used(t) > 0)
            .map(|&t| format!("{} {}", t.name(), engine.used(t)))
            .collect();
        info!("kept hardware entries: {}", if used.is_empty() { "none".into() } else { used.join(", ") });
    }
    let mut agent = Agent::new(engine, o.stats_interval_ms);
    let cfg = ServeConfig {
        tick: Duration::from_millis(o.tick_ms),
        session_timeout: Duration::from_millis(o.session_timeout_ms),
        vsock_host_cid: o.vsock_host_cid,
    };
    if let Err(e) = serve(&mut agent, &o.listen, &cfg) {
        error!("{e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
