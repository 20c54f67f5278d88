//! `mirror-check`: compares the DPU hardware with the kernel's state.
//!
//! * `mirror-check NETNS REGION [SECONDS]`: waits until the DPU hardware
//!   in REGION (read with the independent reader) equals the kernel state
//!   of NETNS as `ip -j` and `bridge -j` dump it (routes, neighbours,
//!   bridge FDB, bridge VLANs, tc flower filters on clsact/ingress); prints
//!   the difference and exits 1 if it does not within SECONDS (default 30).
//! * `mirror-check --dump NETNS`: prints the kernel's view as one JSON line.
//! * `mirror-check --ctl PORT REQUEST...`: sends one request line to the
//!   system test's controller (`system-ctl`, outside both VMs) over the
//!   control port PORT (a virtio-serial port) and prints its answer; exit
//!   0 on `OK`. `--ctl PORT CHECK NAME NETNS` sends NETNS's view, which the
//!   controller compares with the DPU's memory.

use dpu_hw::{reader, Region};
use qemu_tests::kernel_view::*;
use std::io::{BufRead, BufReader, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn ctl(port: &str, request: &str) -> ExitCode {
    let f = match std::fs::OpenOptions::new().read(true).write(true).open(port) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("mirror-check: {port}: {e}");
            return ExitCode::from(2);
        }
    };
    let mut w = match f.try_clone() {
        Ok(w) => w,
        Err(e) => {
            eprintln!("mirror-check: {port}: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = w.write_all(format!("{request}\n").as_bytes()) {
        eprintln!("mirror-check: {port}: {e}");
        return ExitCode::from(2);
    }
    let mut line = String::new();
    if let Err(e) = BufReader::new(f).read_line(&mut line) {
        eprintln!("mirror-check: {port}: {e}");
        return ExitCode::from(2);
    }
    let (verdict, text) = line.trim_end().split_once(' ').unwrap_or((line.trim_end(), "\"\""));
    let text: String = serde_json::from_str(text).unwrap_or_else(|_| text.to_string());
    println!("{text}");
    if verdict == "OK" {
        ExitCode::SUCCESS
    } else {
        eprintln!("mirror-check: {request:.60}: {verdict}");
        ExitCode::FAILURE
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("--dump") if args.len() == 3 => {
            println!("{}", serde_json::to_string(&kernel_view(&args[2])).unwrap_or_default());
            return ExitCode::SUCCESS;
        }
        Some("--ctl") if args.len() >= 4 => {
            let port = &args[2];
            if args[3] == "CHECK" && args.len() == 6 {
                let view = serde_json::to_string(&kernel_view(&args[5])).unwrap_or_default();
                return ctl(port, &format!("CHECK {} {view}", args[4]));
            }
            return ctl(port, &args[3..].join(" "));
        }
        _ => {}
    }
    if args.len() < 3 {
        eprintln!("usage: mirror-check NETNS REGION [SECONDS] | --dump NETNS | --ctl PORT REQUEST...");
        return ExitCode::from(2);
    }
    let (ns, path) = (&args[1], std::path::Path::new(&args[2]));
    let secs: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(30);
    let t = Instant::now();
    loop {
        let out = match Region::open(path) {
            Ok(r) => {
                let hw = hw_view(&reader::read(&r));
                let out = diff_views(&kernel_view(ns), &hw);
                if out.is_empty() {
                    println!("mirror-check: DPU equals kernel: {}", view_summary(&hw));
                    return ExitCode::SUCCESS;
                }
                out
            }
            Err(e) => format!("region {}: {e}\n", path.display()),
        };
        if t.elapsed() > Duration::from_secs(secs) {
            eprint!("mirror-check: after {secs} s:\n{out}");
            return ExitCode::FAILURE;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
