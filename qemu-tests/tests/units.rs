//! The systemd units in the repo (host-bridge/systemd, agent/systemd),
//! checked by systemd's own `systemd-analyze verify`, with their
//! `ExecStart=` pointed at the binaries this workspace builds; and the
//! options they pass are ones the binaries take.

use qemu_tests::{agent_bin, host_bridge_bin, workspace_root};
use std::path::Path;
use std::process::Command;

/// Copies `unit` into `dir` with `from` replaced by `to`, and returns
/// the copy's text.
fn rewrite(unit: &Path, dir: &Path, from: &str, to: &Path) -> String {
    let text = std::fs::read_to_string(unit).expect("unit");
    assert!(text.contains(from), "{} does not start {from}", unit.display());
    let out = text.replace(from, &to.display().to_string());
    std::fs::write(dir.join(unit.file_name().expect("name")), &out).expect("write unit");
    text
}

#[test]
fn systemd_units_verify() {
    let root = workspace_root();
    let dir = std::env::temp_dir().join(format!("units-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let hb = host_bridge_bin();
    let hb_unit =
        rewrite(&root.join("host-bridge/systemd/host-bridge.service"), &dir, "/usr/bin/host-bridge", hb);
    let ag_unit =
        rewrite(&root.join("agent/systemd/dpu-agent.service"), &dir, "/usr/sbin/dpu-agent", agent_bin());
    for want in ["Type=notify", "WatchdogSec=", "ExecReload=/bin/kill -HUP $MAINPID"] {
        assert!(hb_unit.contains(want), "host-bridge.service lacks {want}");
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.join("host-bridge.service"))
        .arg(dir.join("dpu-agent.service"))
        .output()
        .expect("systemd-analyze (cross/setup.sh installs systemd)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.trim().is_empty(), "systemd-analyze verify: {err}");
    // The options in ExecStart= are the binaries' own: host-bridge's clap
    // parser refuses unknown ones even with --help after them.
    let exec =
        hb_unit.lines().find_map(|l| l.strip_prefix("ExecStart=/usr/bin/host-bridge ")).expect("ExecStart");
    let args: Vec<&str> = exec.split_whitespace().filter(|a| !a.starts_with('$')).collect();
    let out = Command::new(hb).args(&args).arg("--help").output().expect("host-bridge");
    assert!(out.status.success(), "host-bridge {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    assert!(ag_unit.contains("ExecStart=/usr/sbin/dpu-agent $DPU_AGENT_ARGS"));
    let _ = std::fs::remove_dir_all(&dir);
}
