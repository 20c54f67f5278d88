//! Turns the selected board config into compile-time constants.
//!
//! The board is chosen with `DPU_BOARD=<name>` (default `qemu-virt`), which
//! names `board-configs/<name>.toml`, or with `DPU_BOARD_FILE=<path>`.

use serde::Deserialize;
use std::fmt::Write as _;
use std::path::PathBuf;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Board {
    board: Meta,
    #[serde(default)]
    port: Vec<Port>,
    capacity: Capacity,
    #[serde(default)]
    channel: Channel,
    /// How `cross/build-image.sh` builds this board's DPU image; the
    /// agent itself does not use it.
    #[serde(default, rename = "image")]
    _image: Option<serde::de::IgnoredAny>,
}

/// The host channels of the board.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Channel {
    /// The only vsock CID a host session may come from.
    #[serde(default = "default_host_cid")]
    vsock_host_cid: u32,
    /// The name of the virtio-serial port the host side opens.
    #[serde(default = "default_port_name")]
    serial_port_name: String,
    #[serde(default = "default_vsock_port")]
    vsock_port: u32,
}

impl Default for Channel {
    fn default() -> Self {
        Channel {
            vsock_host_cid: default_host_cid(),
            serial_port_name: default_port_name(),
            vsock_port: default_vsock_port(),
        }
    }
}

/// VMADDR_CID_HOST.
fn default_host_cid() -> u32 {
    2
}

fn default_port_name() -> String {
    "org.dpu.agent.0".into()
}

fn default_vsock_port() -> u32 {
    5000
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Meta {
    name: String,
    #[serde(default)]
    description: String,
    driver: String,
    #[serde(default = "default_interval")]
    stats_interval_ms: u32,
}

fn default_interval() -> u32 {
    1000
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Port {
    name: String,
    speed_mbps: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Capacity {
    links: u32,
    addresses: u32,
    routes_v4: u32,
    routes_v6: u32,
    nexthops: u32,
    nexthop_groups: u32,
    ecmp_members: u32,
    neighbours: u32,
    fdb: u32,
    vlans: u32,
    flows: u32,
}

fn main() {
    println!("cargo:rerun-if-env-changed=DPU_BOARD");
    println!("cargo:rerun-if-env-changed=DPU_BOARD_FILE");
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let path = match std::env::var("DPU_BOARD_FILE") {
        Ok(p) => PathBuf::from(p),
        Err(_) => {
            let name = std::env::var("DPU_BOARD").unwrap_or_else(|_| "qemu-virt".into());
            manifest.join("../board-configs").join(format!("{name}.toml"))
        }
    };
    println!("cargo:rerun-if-changed={}", path.display());
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("board config {}: {e}", path.display()));
    let b: Board = toml::from_str(&text).unwrap_or_else(|e| panic!("board config {}: {e}", path.display()));
    let c = &b.capacity;
    if b.board.driver != "qemu-virt" {
        panic!("board {}: unknown hardware driver {:?} (known: qemu-virt)", b.board.name, b.board.driver);
    }
    if !(1..=32).contains(&c.ecmp_members) {
        panic!("board {}: ecmp_members must be 1..=32 (the wire's group bound)", b.board.name);
    }
    if b.board.name.len() > 31 {
        panic!("board name longer than 31 bytes");
    }
    for (what, v) in [("links", c.links), ("nexthops", c.nexthops), ("neighbours", c.neighbours)] {
        if v == 0 {
            panic!("board {}: capacity.{what} must be at least 1", b.board.name);
        }
    }
    let mut out = String::new();
    let _ = writeln!(out, "/// Board name from its config.\npub const NAME: &str = {:?};", b.board.name);
    let _ = writeln!(out, "/// Board description.\npub const DESCRIPTION: &str = {:?};", b.board.description);
    let _ = writeln!(out, "/// Hardware driver.\npub const DRIVER: &str = {:?};", b.board.driver);
    let _ = writeln!(
        out,
        "/// Default stats period (ms).\npub const STATS_INTERVAL_MS: u32 = {};",
        b.board.stats_interval_ms
    );
    let ports: Vec<String> = b.port.iter().map(|p| format!("({:?}, {})", p.name, p.speed_mbps)).collect();
    let _ = writeln!(
        out,
        "/// Front-panel ports: (name, speed in Mb/s).\npub const PORTS: &[(&str, u32)] = &[{}];",
        ports.join(", ")
    );
    for (n, v) in [
        ("LINKS", c.links),
        ("ADDRESSES", c.addresses),
        ("ROUTES_V4", c.routes_v4),
        ("ROUTES_V6", c.routes_v6),
        ("NEXTHOPS", c.nexthops),
        ("NEXTHOP_GROUPS", c.nexthop_groups),
        ("ECMP_MEMBERS", c.ecmp_members),
        ("NEIGHBOURS", c.neighbours),
        ("FDB", c.fdb),
        ("VLANS", c.vlans),
        ("FLOWS", c.flows),
    ] {
        let _ = writeln!(out, "pub const {n}: u32 = {v};");
    }
    let ch = &b.channel;
    let _ = writeln!(
        out,
        "/// The only vsock CID a host session may come from.\npub const VSOCK_HOST_CID: u32 = {};",
        ch.vsock_host_cid
    );
    let _ = writeln!(out, "/// The agent's vsock port.\npub const VSOCK_PORT: u32 = {};", ch.vsock_port);
    let _ = writeln!(
        out,
        "/// The virtio-serial port's name.\npub const SERIAL_PORT_NAME: &str = {:?};",
        ch.serial_port_name
    );
    let dest = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("board.rs");
    std::fs::write(&dest, out).expect("write board.rs");
}
