//! `system-ctl RUN_DIR IMAGE_DIR [--vsock BACKEND]`: the two-VM system
//! test's controller, outside both VMs (`qemu-tests/system-test.sh` starts
//! it). With `--vsock`, it also starts BACKEND (vhost-device-vsock) in its
//! sibling-VM mode: the host VM is CID 3 (`RUN_DIR/vhost-host.sock`), the
//! DPU VM CID 4, in one group, and the DPU's agent accepts CID 3.
//!
//! * Boots the DPU VM (`qemu-tests/dpu-vm.sh IMAGE_DIR RUN_DIR/dpu`) and
//!   keeps its board memory, `RUN_DIR/dpu/board.mem`, the DPU's hardware as
//!   read from outside both VMs.
//! * Is the channel's backend: relays bytes between the host VM's
//!   virtio-serial chardev (`RUN_DIR/host-serial.sock`) and the DPU VM's
//!   (`RUN_DIR/dpu/serial.sock`), the tmfifo between the host and the DPU's
//!   Arm side. Reconnects when either side goes (a reboot), unless cut.
//! * Answers the host VM's requests on its control port
//!   (`RUN_DIR/ctl.sock`, a second virtio-serial port in the host VM;
//!   `mirror-check --ctl` is the client), one line each, answered by
//!   `OK <json string>` or `FAIL <json string>`:
//!   - `CHECK NAME VIEW`: waits up to 30 s until the DPU's memory equals
//!     VIEW (the host kernel's state, `kernel_view` JSON);
//!   - `HW ARGS...`: runs `dpu-hw ARGS` with REGION standing for the
//!     board memory (dump, inject, usage), returns its output;
//!   - `MARK`: records the hardware's write registers and contents;
//!     `UNCHANGED`: OK if the registers have not moved since the mark;
//!     `DIFF`: what moved and what changed since the mark;
//!   - `REBOOT_DPU`: power-cycles the DPU VM (SIGKILL, boot), returns the
//!     boot time;
//!   - `CUT` / `RESTORE`: takes the channel down and up;
//!   - benchmarks: `PING` (the control channel's round trip), `ARM PREFIX`
//!     then `WAIT`: the time from the `ARM` answer until the DPU's memory
//!     holds a route to PREFIX; `COUNT START N`: waits until the DPU holds
//!     N routes whose destination starts with START and returns how long
//!     that took.
//!
//! Its log is stderr.

use dpu_hw::{reader, Region};
use qemu_tests::kernel_view::*;
use qemu_tests::{describe_delta, dpu_vm, Regs};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

macro_rules! log {
    ($($a:tt)*) => { eprintln!("system-ctl: {}", format!($($a)*)) };
}

struct Ctl {
    run: PathBuf,
    image: PathBuf,
    cut: Arc<AtomicBool>,
    /// The relay's current pair of sockets, shut down by CUT.
    live: Arc<Mutex<Vec<UnixStream>>>,
    mark: Option<Regs>,
    mark_view: Option<View>,
    armed: Option<(String, Instant)>,
    vsock: bool,
}

fn connect_retry(p: &Path, stop: &AtomicBool) -> Option<UnixStream> {
    loop {
        if stop.load(Ordering::SeqCst) {
            return None;
        }
        if let Ok(s) = UnixStream::connect(p) {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn pump(mut from: UnixStream, mut to: UnixStream) {
    let mut buf = vec![0u8; 65536];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = from.shutdown(std::net::Shutdown::Both);
    let _ = to.shutdown(std::net::Shutdown::Both);
}

/// The channel: host VM port <-> DPU VM port, reconnected whenever it
/// drops, held down while cut.
fn relay(host: PathBuf, dpu: PathBuf, cut: Arc<AtomicBool>, live: Arc<Mutex<Vec<UnixStream>>>) {
    let never = AtomicBool::new(false);
    loop {
        while cut.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let (Some(h), Some(d)) = (connect_retry(&host, &never), connect_retry(&dpu, &never)) else {
            continue;
        };
        let pair = (h.try_clone(), d.try_clone(), h.try_clone(), d.try_clone());
        let (Ok(h2), Ok(d2), Ok(hk), Ok(dk)) = pair else {
            continue;
        };
        {
            // CUT sets the flag under this lock, so a cut cannot slip in
            // between this check and the sockets becoming visible to it.
            let mut l = live.lock().unwrap_or_else(|p| p.into_inner());
            if cut.load(Ordering::SeqCst) {
                continue;
            }
            *l = vec![hk, dk];
        }
        log!("channel up");
        let a = std::thread::spawn(move || pump(h, d));
        let b = std::thread::spawn(move || pump(d2, h2));
        let _ = a.join();
        let _ = b.join();
        live.lock().unwrap_or_else(|p| p.into_inner()).clear();
        log!("channel down");
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Ctl {
    fn mem(&self) -> PathBuf {
        self.run.join("dpu/board.mem")
    }

    fn hw(&self) -> Result<reader::HwTables, String> {
        Region::open(&self.mem()).map(|r| reader::read(&r)).map_err(|e| e.to_string())
    }

    fn boot_dpu(&self) -> Result<String, String> {
        let mut opts: Vec<String> = Vec::new();
        if self.vsock {
            opts.push("--vsock-sock".into());
            opts.push(self.run.join("vhost-dpu.sock").display().to_string());
            opts.extend(
                ["--append", "dpu.agent_args=--vsock-host-cid,3", "--wait-for", "listening on vsock"]
                    .map(String::from),
            );
        }
        let opts: Vec<&str> = opts.iter().map(String::as_str).collect();
        dpu_vm::boot(&self.image, &self.run.join("dpu"), &opts)
    }

    fn handle(&mut self, line: &str) -> Result<String, String> {
        let (cmd, rest) = line.split_once(' ').unwrap_or((line, ""));
        match cmd {
            "CHECK" => {
                let (name, json) = rest.split_once(' ').ok_or("CHECK NAME VIEW")?;
                let want: View = serde_json::from_str(json).map_err(|e| format!("bad view: {e}"))?;
                let t = Instant::now();
                loop {
                    let got = hw_view(&self.hw()?);
                    let d = diff_views(&want, &got);
                    if d.is_empty() {
                        let s = format!(
                            "{name}: the DPU (read outside both VMs) equals the host kernel: {} ({:.1} s)",
                            view_summary(&got),
                            t.elapsed().as_secs_f64()
                        );
                        log!("{s}");
                        return Ok(s);
                    }
                    if t.elapsed() > Duration::from_secs(30) {
                        return Err(format!("{name}: after 30 s:\n{d}"));
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            "HW" => {
                let mem = self.mem();
                let args: Vec<String> = rest
                    .split_whitespace()
                    .map(|a| if a == "REGION" { mem.display().to_string() } else { a.to_string() })
                    .collect();
                let bin = std::env::current_exe().map_err(|e| e.to_string())?.with_file_name("dpu-hw");
                let out = Command::new(bin).args(&args).output().map_err(|e| e.to_string())?;
                let text =
                    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
                if out.status.success() {
                    Ok(text)
                } else {
                    Err(text)
                }
            }
            "MARK" => {
                let hw = self.hw()?;
                self.mark = Some(Regs::of(&hw));
                self.mark_view = Some(hw_view(&hw));
                Ok("marked".into())
            }
            "DIFF" => {
                let before = self.mark_view.as_ref().ok_or("no MARK")?;
                let hw = self.hw()?;
                let mark = self.mark.as_ref().ok_or("no MARK")?;
                let d = diff_views(before, &hw_view(&hw));
                Ok(format!(
                    "since the mark: {}\n{}",
                    describe_delta(&mark.delta(&Regs::of(&hw))),
                    d.replace("missing from the DPU", "gone").replace("on the DPU only", "new")
                ))
            }
            "UNCHANGED" => {
                let mark = self.mark.as_ref().ok_or("no MARK")?;
                let d = mark.delta(&Regs::of(&self.hw()?));
                if d.iter().all(|&x| x == (0, 0)) {
                    Ok("no hardware entry written or invalidated since the mark".into())
                } else {
                    Err(format!("registers moved: {}", describe_delta(&d)))
                }
            }
            "REBOOT_DPU" => {
                dpu_vm::power_off(&self.run.join("dpu"));
                log!("DPU VM powered off");
                let r = self.boot_dpu()?;
                log!("DPU VM booted again: {r}");
                Ok(r)
            }
            "CUT" => {
                let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
                self.cut.store(true, Ordering::SeqCst);
                for s in live.iter() {
                    let _ = s.shutdown(std::net::Shutdown::Both);
                }
                drop(live);
                log!("channel cut");
                Ok("cut".into())
            }
            "RESTORE" => {
                self.cut.store(false, Ordering::SeqCst);
                log!("channel restored");
                Ok("restored".into())
            }
            "PING" => Ok("pong".into()),
            "ARM" => {
                self.armed = Some((rest.trim().to_string(), Instant::now()));
                Ok("armed".into())
            }
            "WAIT" => {
                let (prefix, t) = self.armed.take().ok_or("WAIT without ARM")?;
                let region = Region::open(&self.mem()).map_err(|e| e.to_string())?;
                loop {
                    let hw = reader::read(&region);
                    if hw_routes(&hw).iter().any(|r| r.1 == prefix) {
                        return Ok(format!("{:.3}", t.elapsed().as_secs_f64() * 1000.0));
                    }
                    if t.elapsed() > Duration::from_secs(30) {
                        return Err(format!("{prefix} not in the DPU after 30 s"));
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            "COUNT" => {
                let (start, n) = rest.trim().split_once(' ').ok_or("COUNT START N")?;
                let n: usize = n.parse().map_err(|_| "COUNT START N")?;
                let region = Region::open(&self.mem()).map_err(|e| e.to_string())?;
                let t = Instant::now();
                loop {
                    if hw_routes(&reader::read(&region)).iter().filter(|r| r.1.starts_with(start)).count()
                        == n
                    {
                        return Ok(format!("{:.3}", t.elapsed().as_secs_f64()));
                    }
                    if t.elapsed() > Duration::from_secs(120) {
                        return Err(format!("the DPU did not reach {n} routes in 120 s"));
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            other => Err(format!("unknown request {other:?}")),
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let backend = match args.len() {
        3 => None,
        5 if args[3] == "--vsock" => Some(PathBuf::from(&args[4])),
        _ => {
            eprintln!("usage: system-ctl RUN_DIR IMAGE_DIR [--vsock BACKEND]");
            return ExitCode::from(2);
        }
    };
    let mut ctl = Ctl {
        run: PathBuf::from(&args[1]),
        image: PathBuf::from(&args[2]),
        cut: Arc::new(AtomicBool::new(false)),
        live: Arc::new(Mutex::new(Vec::new())),
        mark: None,
        mark_view: None,
        armed: None,
        vsock: backend.is_some(),
    };
    if let Some(b) = backend {
        let r = &ctl.run;
        let vm = |cid: u32, name: &str| {
            format!(
                "guest-cid={cid},socket={},uds-path={},groups=dpu",
                r.join(format!("vhost-{name}.sock")).display(),
                r.join(format!("vsock-{name}.uds")).display()
            )
        };
        match Command::new(b).arg("--vm").arg(vm(3, "host")).arg("--vm").arg(vm(4, "dpu")).spawn() {
            Ok(child) => {
                let _ = std::fs::write(r.join("vsock.pid"), child.id().to_string());
                log!("vhost-device-vsock {} (sibling VMs: host CID 3, DPU CID 4)", child.id())
            }
            Err(e) => {
                log!("vhost-device-vsock: {e}");
                return ExitCode::FAILURE;
            }
        }
        for _ in 0..100 {
            if r.join("vhost-dpu.sock").exists() && r.join("vhost-host.sock").exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    match ctl.boot_dpu() {
        Ok(r) => log!("DPU VM: {r}"),
        Err(e) => {
            log!("DPU VM did not boot: {e}");
            return ExitCode::FAILURE;
        }
    }
    {
        let (h, d) = (ctl.run.join("host-serial.sock"), ctl.run.join("dpu/serial.sock"));
        let (cut, live) = (ctl.cut.clone(), ctl.live.clone());
        std::thread::spawn(move || relay(h, d, cut, live));
    }
    // Control sessions, one per host VM boot.
    let never = AtomicBool::new(false);
    loop {
        let Some(s) = connect_retry(&ctl.run.join("ctl.sock"), &never) else { continue };
        log!("host VM control port connected");
        let Ok(mut w) = s.try_clone() else { continue };
        for line in BufReader::new(s).lines() {
            let Ok(line) = line else { break };
            if line.is_empty() {
                continue;
            }
            let (verdict, text) = match ctl.handle(&line) {
                Ok(t) => ("OK", t),
                Err(t) => ("FAIL", t),
            };
            let short: String = line.chars().take(60).collect();
            log!("{short} -> {verdict}");
            let reply = format!("{verdict} {}\n", serde_json::to_string(&text).unwrap_or_default());
            if w.write_all(reply.as_bytes()).is_err() {
                break;
            }
        }
        log!("host VM control port closed");
        std::thread::sleep(Duration::from_millis(200));
    }
}
