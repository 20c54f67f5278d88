//! `mirror-check NETNS REGION [SECONDS]`: waits until the DPU hardware in
//! REGION (read with the independent reader) equals the kernel state of
//! NETNS as `ip -j` and `bridge -j` dump it (routes, neighbours, bridge FDB,
//! bridge VLANs, tc flower filters on clsact/ingress); prints the difference and exits 1 if it does not within
//! SECONDS (default 30). Used by the VM tests, where bridges and VXLAN exist.

use dpu_hw::{reader, Region};
use qemu_tests::kernel_view::*;
use std::collections::BTreeSet;
use std::fmt::Debug;
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn diff<T: Ord + Debug>(what: &str, want: &BTreeSet<T>, got: &BTreeSet<T>, out: &mut String) {
    for x in want.difference(got) {
        out.push_str(&format!("{what} missing from the DPU: {x:?}\n"));
    }
    for x in got.difference(want) {
        out.push_str(&format!("{what} on the DPU only: {x:?}\n"));
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: mirror-check NETNS REGION [SECONDS]");
        return ExitCode::from(2);
    }
    let (ns, path) = (&args[1], std::path::Path::new(&args[2]));
    let secs: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(30);
    let t = Instant::now();
    loop {
        let mut out = String::new();
        match Region::open(path) {
            Ok(r) => {
                let hw = reader::read(&r);
                diff("route", &kernel_routes(ns), &hw_routes(&hw), &mut out);
                diff("neighbour", &kernel_neighbours(ns), &hw_neighbours(&hw), &mut out);
                diff("fdb", &kernel_fdb(ns), &hw_fdb(&hw), &mut out);
                diff("vlan", &kernel_vlans(ns), &hw_vlans(&hw), &mut out);
                diff("flow", &kernel_flows(ns), &hw_flows(&hw), &mut out);
                if out.is_empty() {
                    println!(
                        "mirror-check: DPU equals kernel: {} routes, {} neighbours, {} fdb, {} vlans, {} flows",
                        hw.routes.len(),
                        hw.neighs.len(),
                        hw.fdb.len(),
                        hw.vlans.len(),
                        hw.flows.len()
                    );
                    return ExitCode::SUCCESS;
                }
            }
            Err(e) => out = format!("region {}: {e}\n", path.display()),
        }
        if t.elapsed() > Duration::from_secs(secs) {
            eprint!("mirror-check: after {secs} s:\n{out}");
            return ExitCode::FAILURE;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
