//! `dpu-hw`: reads the qemu-virt hardware region and sends test traffic
//! through it, independently of the agent.

use dpu_hw::hal::monotonic_ms;
use dpu_hw::lookup::{process, Packet};
use dpu_hw::{reader, Region, TableId};
use dpu_wire::types::{Ip, Mac};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;

const HELP: &str = "\
dpu-hw: inspect the DPU hardware region and send packets through it.

USAGE:
    dpu-hw dump REGION              Print every valid entry of every table, with
                                    counters and the write/invalidate registers
    dpu-hw usage REGION             Print entries in use per table, and the registers
    dpu-hw inject REGION [PACKET]   Run packets through the forwarding pipeline,
                                    incrementing the hardware counters, and print
                                    the decision
    dpu-hw bump REGION [BUMP]       Add packets to the counters of every valid
                                    flow entry, as traffic hitting each flow would
                                    (no lookup: a load generator for benchmarks)
PACKET options:
    --in IFINDEX       ingress port [required]
    --dst IP           destination address (omit for a non-IP frame)
    --src IP           source address [default: 192.0.2.1 or 2001:db8::1]
    --proto N          IP protocol [default: 17]
    --sport N          L4 source port [default: 1024]
    --dport N          L4 destination port [default: 80]
    --dmac MAC         destination MAC [default: ff:ff:ff:ff:ff:ff]
    --smac MAC         source MAC [default: 02:00:00:00:00:fe]
    --vlan VID         802.1Q tag
    --len BYTES        frame length for byte counters [default: 100]
    --table N          routing table of the ingress port [default: 254]
    --count N          packets to send [default: 1]
BUMP options:
    --packets N        packets added per entry and round [default: 1]
    --len BYTES        bytes per packet [default: 100]
    --every MS         repeat every MS milliseconds [default: once]
    --rounds R         stop after R rounds, 0 for never [default: 1; 0 with --every]
";

fn mac(s: &str) -> Result<Mac, String> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return Err(format!("bad MAC {s:?}"));
    }
    let mut m = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        m[i] = u8::from_str_radix(p, 16).map_err(|_| format!("bad MAC {s:?}"))?;
    }
    Ok(Mac(m))
}

fn num<T: std::str::FromStr>(name: &str, v: Option<String>) -> Result<T, String> {
    let v = v.ok_or_else(|| format!("{name} needs a value"))?;
    v.parse().map_err(|_| format!("{name}: bad value {v:?}"))
}

fn inject(region: &Region, mut args: impl Iterator<Item = String>) -> Result<(), String> {
    let mut in_if: Option<u32> = None;
    let (mut dst, mut src): (Option<Ip>, Option<Ip>) = (None, None);
    let mut pkt = Packet::l2(0, Mac([2, 0, 0, 0, 0, 0xfe]), Mac::BROADCAST, None);
    pkt.ip_proto = 17;
    pkt.src_port = 1024;
    pkt.dst_port = 80;
    pkt.len = 100;
    let mut count = 1u64;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--in" => in_if = Some(num("--in", args.next())?),
            "--dst" => dst = Some(Ip::from(num::<IpAddr>("--dst", args.next())?)),
            "--src" => src = Some(Ip::from(num::<IpAddr>("--src", args.next())?)),
            "--proto" => pkt.ip_proto = num("--proto", args.next())?,
            "--sport" => pkt.src_port = num("--sport", args.next())?,
            "--dport" => pkt.dst_port = num("--dport", args.next())?,
            "--dmac" => pkt.dst_mac = mac(&args.next().ok_or("--dmac needs a value")?)?,
            "--smac" => pkt.src_mac = mac(&args.next().ok_or("--smac needs a value")?)?,
            "--vlan" => pkt.vlan = Some(num("--vlan", args.next())?),
            "--len" => pkt.len = num("--len", args.next())?,
            "--table" => pkt.table = num("--table", args.next())?,
            "--count" => count = num("--count", args.next())?,
            o => return Err(format!("unknown option {o:?}")),
        }
    }
    pkt.in_ifindex = in_if.ok_or("--in is required")?;
    if let Some(d) = dst {
        let s = src.unwrap_or(match d {
            Ip::V4(_) => Ip::V4([192, 0, 2, 1]),
            Ip::V6(_) => Ip::V6([0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
        });
        if s.family() != d.family() {
            return Err("--src and --dst of different families".into());
        }
        pkt.eth_type = if matches!(d, Ip::V4(_)) { 0x0800 } else { 0x86dd };
        pkt.src_ip = Some(s);
        pkt.dst_ip = Some(d);
    } else {
        pkt.ip_proto = 0;
    }
    for i in 0..count {
        let o = process(region, &pkt);
        if i + 1 == count {
            println!("{count} packet(s): {:?}", o.verdict);
            if let Some((t, s)) = o.route {
                println!("  route {}[{s}]", t.name());
            }
            if let Some(n) = o.nexthop {
                println!("  nexthop[{n}]");
            }
            for c in &o.flows {
                println!("  flow cookie {c:#x}");
            }
        }
    }
    Ok(())
}

fn bump(region: &Region, mut args: impl Iterator<Item = String>) -> Result<(), String> {
    let (mut packets, mut len, mut every, mut rounds) = (1u64, 100u64, None::<u64>, None::<u64>);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--packets" => packets = num("--packets", args.next())?,
            "--len" => len = num("--len", args.next())?,
            "--every" => every = Some(num("--every", args.next())?),
            "--rounds" => rounds = Some(num("--rounds", args.next())?),
            o => return Err(format!("unknown option {o:?}")),
        }
    }
    let rounds = rounds.unwrap_or(if every.is_some() { 0 } else { 1 });
    let capacity = region.desc(TableId::Flow).capacity;
    let mut done = 0u64;
    loop {
        let start = std::time::Instant::now();
        let now = monotonic_ms().max(1);
        let mut hit = 0u32;
        for slot in (0..capacity).filter(|&s| region.is_valid(TableId::Flow, s)) {
            let add = |i: usize, v: u64| {
                if let Some(c) = region.counter(TableId::Flow, slot, i) {
                    c.fetch_add(v, Ordering::Relaxed);
                }
            };
            add(0, packets);
            add(1, packets.saturating_mul(len));
            if let Some(c) = region.counter(TableId::Flow, slot, 2) {
                c.store(now, Ordering::Relaxed);
            }
            hit += 1;
        }
        done += 1;
        if rounds != 0 && done >= rounds {
            println!("{done} round(s), last over {hit} flow entries");
            return Ok(());
        }
        let period = std::time::Duration::from_millis(every.unwrap_or(0));
        std::thread::sleep(period.saturating_sub(start.elapsed()));
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let cmd = args.next().unwrap_or_default();
    if matches!(cmd.as_str(), "" | "-h" | "--help") {
        print!("{HELP}");
        return if cmd.is_empty() { ExitCode::from(2) } else { ExitCode::SUCCESS };
    }
    let Some(path) = args.next().map(PathBuf::from) else {
        eprintln!("dpu-hw: {cmd} needs a REGION file (see --help)");
        return ExitCode::from(2);
    };
    let region = match Region::open(&path) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("dpu-hw: {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    };
    let r = match cmd.as_str() {
        "dump" => {
            use std::io::Write;
            // A closed pipe (dump | head) is not an error worth a panic.
            let _ = write!(std::io::stdout().lock(), "{}", reader::read(&region));
            Ok(())
        }
        "inject" => inject(&region, args),
        "bump" => bump(&region, args),
        "usage" => {
            for t in reader::table_stats(&region) {
                println!("{} {} {} {} {}", t.id.name(), t.used, t.capacity, t.writes, t.invalidates);
            }
            Ok(())
        }
        other => Err(format!("unknown command {other:?} (see --help)")),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dpu-hw: {e}");
            ExitCode::from(2)
        }
    }
}
