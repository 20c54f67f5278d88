//! Compiles the BPF flow and FIB offload firmware (bpf/firmware/flow_fw.bpf.c,
//! fib_fw.bpf.c), the notifier taps (bpf/notifier/notifier.bpf.c) and the
//! netlink event filter (bpf/netlink/events.bpf.c) with clang into OUT_DIR;
//! src/firmware.rs, src/notifier/ and src/netlink/ring.rs embed the objects.
//! Needs clang and libbpf's headers (libbpf-dev); `cross/setup.sh`
//! installs both.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("manifest dir"));
    println!("cargo:rerun-if-env-changed=CLANG");
    compile(&root.join("../bpf/firmware"), "flow_fw", &["flow_fw.h", "vmlinux.h"]);
    compile(&root.join("../bpf/firmware"), "fib_fw", &["fib_fw.h", "vmlinux.h"]);
    compile(&root.join("../bpf/notifier"), "notifier", &["notifier.h", "vmlinux.h"]);
    compile(&root.join("../bpf/netlink"), "events", &["events.h", "vmlinux.h"]);
}

/// Compiles `dir/name.bpf.c` into OUT_DIR/name.bpf.o.
fn compile(src: &std::path::Path, name: &str, headers: &[&str]) {
    let c = format!("{name}.bpf.c");
    for f in std::iter::once(c.as_str()).chain(headers.iter().copied()) {
        println!("cargo:rerun-if-changed={}", src.join(f).display());
    }
    let arch = match std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("x86_64") => "x86",
        Ok("aarch64") => "arm64",
        Ok(other) => panic!("no BPF target arch for {other}"),
        Err(_) => "x86",
    };
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("out dir")).join(format!("{name}.bpf.o"));
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".into());
    let status = Command::new(&clang)
        .args(["-g", "-O2", "-Wall", "-Werror", "-target", "bpf", "-mcpu=v3"])
        .arg(format!("-D__TARGET_ARCH_{arch}"))
        .arg("-I")
        .arg(src)
        .arg("-c")
        .arg(src.join(&c))
        .arg("-o")
        .arg(&out)
        .status()
        .unwrap_or_else(|e| panic!("{clang}: {e} (install clang and libbpf-dev: bash cross/setup.sh)"));
    assert!(status.success(), "{clang} failed to compile {c}");
}
