//! The DPU image booted as the simulated board (`qemu-tests/dpu-vm.sh`):
//! qemu-system-aarch64 under TCG, the hardware an ivshmem BAR over the
//! board's memory file, which the tests read from outside the VM.

use crate::workspace_root;
use dpu_hw::reader::{self, HwTables};
use dpu_hw::Region;
use host_bridge::{AgentLink, Channel, Dial};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The qemu-virt DPU image: `DPU_IMAGE` if set, else built (or found in
/// its cache) once per test binary by `cross/build-image.sh`.
pub fn image() -> &'static Path {
    static IMG: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let r = IMG.get_or_init(|| {
        if let Some(p) = std::env::var_os("DPU_IMAGE") {
            return Ok(PathBuf::from(p));
        }
        let out = Command::new("bash")
            .arg(workspace_root().join("cross/build-image.sh"))
            .arg("qemu-virt")
            .output()
            .map_err(|e| format!("cross/build-image.sh: {e}"))?;
        if !out.status.success() {
            return Err(format!("cross/build-image.sh failed:\n{}", String::from_utf8_lossy(&out.stderr)));
        }
        let s = String::from_utf8_lossy(&out.stdout);
        s.lines().last().map(|l| PathBuf::from(l.trim())).ok_or_else(|| "no image path printed".into())
    });
    match r {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

/// Boots `image` on the board whose state is in `run`, with options for
/// `qemu-tests/dpu-vm.sh`; returns its `dpu-vm: up … s` line, or its
/// error output.
pub fn boot(image: &Path, run: &Path, opts: &[&str]) -> Result<String, String> {
    let out = Command::new("bash")
        .arg(workspace_root().join("qemu-tests/dpu-vm.sh"))
        .args(opts)
        .arg(image)
        .arg(run)
        .output()
        .map_err(|e| format!("dpu-vm.sh: {e}"))?;
    if !out.status.success() {
        return Err(format!("dpu-vm.sh failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Powers off the DPU VM of the board in `run` (SIGKILL, as a power cut)
/// and waits for its process to be gone.
pub fn power_off(run: &Path) {
    if let Ok(pid) = std::fs::read_to_string(run.join("qemu.pid")) {
        let pid = pid.trim().to_string();
        let _ = Command::new("kill").arg("-9").arg(&pid).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// One DPU VM, killed on drop. Its run directory (board memory, console
/// log, channel sockets) outlives reboots.
pub struct DpuVm {
    pub run: PathBuf,
    pub boots: usize,
    running: bool,
}

impl DpuVm {
    /// A new board with blank hardware memory, not booted yet.
    pub fn new(tag: &str) -> Self {
        let run = std::env::temp_dir().join(format!("dpu-vm-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&run);
        std::fs::create_dir_all(&run).expect("run dir");
        DpuVm { run, boots: 0, running: false }
    }

    /// Boots the image (options for dpu-vm.sh before the two paths);
    /// returns the seconds from QEMU's start to the agent waiting on its
    /// channel.
    pub fn boot(&mut self, opts: &[&str]) -> f64 {
        let up = boot(image(), &self.run, opts).unwrap_or_else(|e| panic!("{e}\n{}", self.console()));
        self.running = true;
        self.boots += 1;
        up.split_whitespace().rev().nth(1).and_then(|v| v.parse().ok()).unwrap_or(f64::NAN)
    }

    /// Powers the VM off (SIGKILL: no shutdown, as a power cut).
    pub fn kill(&mut self) {
        power_off(&self.run);
        self.running = false;
    }

    /// A session over vsock (the VM booted with `--vsock`), through the
    /// backend's hybrid-vsock Unix socket, after hello.
    pub fn vsock_session(&self, port: u32) -> Result<AgentLink<Channel>, host_bridge::LinkError> {
        let mut l = AgentLink::dial(&Dial::HybridVsock { path: self.run.join("vsock.uds"), port })?;
        l.timeout = Duration::from_secs(60);
        l.hello("qemu-tests vsock")?;
        Ok(l)
    }

    /// One VM at a time per test binary: under TCG they share two cores.
    pub fn exclusive() -> std::sync::MutexGuard<'static, ()> {
        static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
        ONE.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn serial_sock(&self) -> PathBuf {
        self.run.join("serial.sock")
    }

    /// A session over the virtio-serial port's chardev, after hello.
    pub fn session(&self) -> AgentLink<Channel> {
        let mut l =
            AgentLink::dial(&Dial::Unix(self.serial_sock())).expect("connect to the DPU's serial port");
        l.timeout = Duration::from_secs(60);
        let h = l.hello("qemu-tests").expect("hello over virtio-serial");
        assert_eq!(h.board.as_str(), "qemu-virt");
        l
    }

    /// The board's hardware memory, read from outside the VM.
    pub fn hw(&self) -> HwTables {
        reader::read(&Region::open(&self.run.join("board.mem")).expect("open the board memory"))
    }

    /// The console so far (the init's and the agent's lines).
    pub fn console(&self) -> String {
        std::fs::read_to_string(self.run.join("console.log")).unwrap_or_default()
    }

    /// Waits until the console shows `needle` `count` times.
    pub fn wait_console(&self, needle: &str, count: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.console().matches(needle).count() >= count {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for DpuVm {
    fn drop(&mut self) {
        if self.running {
            self.kill();
        }
        if let Ok(pid) = std::fs::read_to_string(self.run.join("vsock.pid")) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
        if !std::thread::panicking() && std::env::var_os("QEMU_TESTS_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.run);
        }
    }
}
