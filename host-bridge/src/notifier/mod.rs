//! The notifier taps (bpf/notifier/notifier.bpf.c): loading, choosing an
//! attach mechanism per chain, the ring buffer, the drop counters.
//!
//! ```text
//!  kernel notifier chains ─fexit/fentry│kprobe│tp_btf─▶ ring buffer ─▶ Taps::poll ─▶ Record ─▶ sink
//!                                                        counters (per CPU: events, drops, filtered)
//! ```
//!
//! Every chain is a [`Tap`] with candidate mechanisms in order of
//! preference. Each candidate is loaded as its own copy of the object with
//! only its programs enabled, sharing the first copy's maps, so that one
//! refused program (fentry on a kernel that forbids it, a function that
//! the running kernel's BTF lacks, a kprobe on a kernel without kprobes)
//! only moves its own tap to the next candidate. What libbpf says about a
//! refusal is kept as the reason.

pub mod feed;
pub mod record;

use libbpf_rs::{Link, MapCore, MapFlags, MapHandle, Object, ObjectBuilder, PrintLevel, RingBufferBuilder};
use record::{RawConfig, RawCounter, Record, NTF_KIND_MAX};
use std::mem::size_of;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::sync::Mutex;
use std::time::Duration;

/// The compiled taps (host-bridge's build script runs clang).
pub static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/notifier.bpf.o"));

/// The default ring buffer: 4 MiB, about 15,000 of the largest records.
pub const DEFAULT_RING: usize = 4 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mechanism {
    Fexit,
    Fentry,
    Kprobe,
    TpBtf,
}

impl Mechanism {
    pub fn as_str(self) -> &'static str {
        match self {
            Mechanism::Fexit => "fexit",
            Mechanism::Fentry => "fentry",
            Mechanism::Kprobe => "kprobe",
            Mechanism::TpBtf => "tp_btf",
        }
    }
}

/// One chain and the ways to tap it.
pub struct Tap {
    pub name: &'static str,
    pub chain: &'static str,
    pub tries: &'static [(Mechanism, &'static [&'static str])],
}

use Mechanism::*;

/// Every tap, in the order host-bridge reports them.
pub const TAPS: &[Tap] = &[
    Tap {
        name: "fib",
        chain: "call_fib_notifiers",
        tries: &[(Fexit, &["fib_fexit"]), (Kprobe, &["fib_kprobe", "fib_kretprobe"])],
    },
    Tap {
        name: "nexthop",
        chain: "call_nexthop_notifiers",
        tries: &[(Fexit, &["nh_fexit"]), (Kprobe, &["nh_kprobe", "nh_kretprobe"])],
    },
    Tap {
        name: "nexthop-bucket",
        chain: "__call_nexthop_res_bucket_notifiers",
        tries: &[(Fexit, &["nh_bucket_fexit"]), (Kprobe, &["nh_bucket_kprobe", "nh_bucket_kretprobe"])],
    },
    Tap {
        name: "switchdev",
        chain: "call_switchdev_notifiers",
        tries: &[
            (Fentry, &["sd_fentry"]),
            (Kprobe, &["sd_kprobe"]),
            (TpBtf, &["tp_fdb_add", "tp_fdb_learn", "tp_fdb_delete"]),
        ],
    },
    Tap {
        name: "switchdev-blocking",
        chain: "call_switchdev_blocking_notifiers",
        tries: &[(Fexit, &["sdb_fexit"]), (Kprobe, &["sdb_kprobe", "sdb_kretprobe"])],
    },
    Tap {
        name: "netdevice",
        chain: "call_netdevice_notifiers_info",
        tries: &[(Fexit, &["netdev_fexit"]), (Kprobe, &["netdev_kprobe", "netdev_kretprobe"])],
    },
    Tap {
        name: "netevent",
        chain: "call_netevent_notifiers",
        tries: &[
            (Fentry, &["netevent_fentry"]),
            (Kprobe, &["netevent_kprobe"]),
            (TpBtf, &["tp_neigh_update"]),
        ],
    },
];

/// How one tap ended up.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TapState {
    pub name: &'static str,
    pub chain: &'static str,
    /// The mechanism attached, if any.
    pub attached: Option<Mechanism>,
    /// Why each mechanism tried before (or instead of) it was refused.
    pub refused: Vec<(Mechanism, String)>,
}

impl TapState {
    pub fn describe(&self) -> String {
        let why =
            self.refused.iter().map(|(m, e)| format!("{}: {e}", m.as_str())).collect::<Vec<_>>().join("; ");
        match self.attached {
            Some(m) if why.is_empty() => format!("tap {} ({}): {}", self.name, self.chain, m.as_str()),
            Some(m) => format!("tap {} ({}): {} (refused: {why})", self.name, self.chain, m.as_str()),
            None => format!("tap {} ({}): unavailable ({why})", self.name, self.chain),
        }
    }
}

/// Totals of the per-CPU counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub events: u64,
    pub drops: u64,
    pub filtered: u64,
}

/// The loaded taps: their objects and links live as long as this.
pub struct Taps {
    pub states: Vec<TapState>,
    pub ring_bytes: usize,
    events: MapHandle,
    counters: MapHandle,
    _objects: Vec<Object>,
    _links: Vec<Link>,
}

static LIBBPF_LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn capture(level: PrintLevel, msg: String) {
    if level == PrintLevel::Debug {
        return;
    }
    let mut l = LIBBPF_LOG.lock().unwrap_or_else(|p| p.into_inner());
    if l.len() < 64 {
        l.push(msg.trim_end().to_string());
    }
}

/// What libbpf said during `f`, and `f`'s result; libbpf's printing is
/// restored afterwards.
fn quietly<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    let prev = libbpf_rs::set_print(Some((PrintLevel::Info, capture)));
    LIBBPF_LOG.lock().unwrap_or_else(|p| p.into_inner()).clear();
    let r = f();
    libbpf_rs::set_print(prev);
    let log = std::mem::take(&mut *LIBBPF_LOG.lock().unwrap_or_else(|p| p.into_inner()));
    (r, log)
}

/// The most telling line of libbpf's output: the first one naming an error
/// (not libbpf's closing "failed to load object"), or for a verifier
/// refusal, the verifier's last words.
fn reason(err: &str, log: &[String]) -> String {
    let tell = |l: &&String| {
        let l = l.to_ascii_lowercase();
        (l.contains("fail") || l.contains("error") || l.contains("invalid") || l.contains("denied"))
            && !l.contains("failed to load object")
            && !l.contains("-- end prog load log --")
    };
    let verifier = log.iter().position(|l| l.contains("-- BEGIN PROG LOAD LOG --"));
    let line = match verifier {
        // The line before the verifier's statistics ("processed N insns").
        Some(i) => {
            let lines: Vec<&str> = log[i..]
                .iter()
                .flat_map(|l| l.lines())
                .skip(1)
                .take_while(|l| !l.contains("END PROG LOAD LOG"))
                .filter(|l| !l.trim().is_empty() && !l.starts_with("processed "))
                .collect();
            lines
                .iter()
                .find(|l| l.contains("CO-RE relocation") && l.contains("failed"))
                .or(lines.last())
                .map(|l| format!("verifier: {}", l.trim()))
        }
        None => log.iter().find(tell).map(|l| l.trim_start_matches("libbpf: ").to_string()),
    };
    let err = err.split(": failed to load object").next().unwrap_or(err);
    match line {
        Some(l) => format!("{err}: {l}"),
        None => err.to_string(),
    }
}

/// The inode number of the calling thread's network namespace.
pub fn current_netns() -> std::io::Result<u32> {
    Ok(std::fs::metadata("/proc/thread-self/ns/net")?.ino() as u32)
}

/// The ring buffer size: a power of two of at least one page.
pub fn ring_size(bytes: usize) -> usize {
    bytes.max(4096).next_power_of_two()
}

const SHARED: &[&str] = &["events", "counters", "config", "stash", "depth"];

/// Mechanisms not to try, comma-separated (`fexit,fentry`): how the tests
/// exercise the kprobe fallbacks on a kernel where fexit works.
pub const SKIP_ENV: &str = "HOST_BRIDGE_TAPS_SKIP";

impl Taps {
    /// Loads and attaches every tap it can. `netns_inum` 0 passes every
    /// netns. Fails only when the maps themselves cannot be created; a tap
    /// that cannot attach is reported in `states`.
    pub fn load(netns_inum: u32, ring_bytes: usize) -> Result<Taps, String> {
        let ring_bytes = ring_size(ring_bytes);
        let open_one = |progs: &[&str], maps: Option<&Vec<(String, MapHandle)>>| -> Result<Object, String> {
            let mut open = ObjectBuilder::default()
                .open_memory(OBJECT)
                .map_err(|e| format!("opening the taps object: {e}"))?;
            for mut p in open.progs_mut() {
                let name = p.name().to_string_lossy().to_string();
                p.set_autoload(progs.contains(&name.as_str()));
            }
            for mut m in open.maps_mut() {
                let name = m.name().to_string_lossy().to_string();
                if name == "events" {
                    m.set_max_entries(ring_bytes as u32).map_err(|e| format!("ring buffer size: {e}"))?;
                }
                if let Some((_, h)) = maps.and_then(|v| v.iter().find(|(n, _)| *n == name)) {
                    m.reuse_fd(h.as_fd()).map_err(|e| format!("sharing map {name}: {e}"))?;
                }
            }
            open.load().map_err(|e| e.to_string())
        };
        // The maps first: an object with no program enabled.
        let (base, log) = quietly(|| open_one(&[], None));
        let base = base.map_err(|e| format!("creating the taps' maps: {}", reason(&e, &log)))?;
        let mut maps = Vec::new();
        for m in base.maps() {
            let name = m.name().to_string_lossy().to_string();
            if SHARED.contains(&name.as_str()) {
                maps.push((name, MapHandle::try_from(&m).map_err(|e| e.to_string())?));
            }
        }
        let get = |n: &str| -> Result<MapHandle, String> {
            let (_, h) =
                maps.iter().find(|(m, _)| m == n).ok_or(format!("the taps object has no map {n}"))?;
            MapHandle::try_from(h).map_err(|e| e.to_string())
        };
        let (events, counters, config) = (get("events")?, get("counters")?, get("config")?);
        let cfg = RawConfig { netns_inum, pad: 0 };
        config
            .update(&0u32.to_ne_bytes(), bytes_of(&cfg), MapFlags::ANY)
            .map_err(|e| format!("writing the taps' config: {e}"))?;

        let skip_env = std::env::var(SKIP_ENV).unwrap_or_default();
        let skip: Vec<&str> = skip_env.split(',').map(str::trim).collect();
        let (mut objects, mut links, mut states) = (vec![base], Vec::new(), Vec::new());
        for tap in TAPS {
            let mut st = TapState { name: tap.name, chain: tap.chain, attached: None, refused: Vec::new() };
            for &(mech, progs) in tap.tries {
                if skip.contains(&mech.as_str()) {
                    st.refused.push((mech, format!("skipped ({SKIP_ENV})")));
                    continue;
                }
                let (r, log) = quietly(|| -> Result<(Object, Vec<Link>), String> {
                    let obj = open_one(progs, Some(&maps))?;
                    let mut l = Vec::new();
                    for p in obj.progs_mut() {
                        if progs.contains(&p.name().to_string_lossy().as_ref()) {
                            l.push(p.attach().map_err(|e| format!("attach: {e}"))?);
                        }
                    }
                    Ok((obj, l))
                });
                match r {
                    Ok((obj, l)) => {
                        objects.push(obj);
                        links.extend(l);
                        st.attached = Some(mech);
                        break;
                    }
                    Err(e) => {
                        // HOST_BRIDGE_TAPS_DEBUG=1: libbpf's whole output,
                        // the verifier's log included.
                        if std::env::var_os("HOST_BRIDGE_TAPS_DEBUG").is_some() {
                            for l in &log {
                                eprintln!("{l}");
                            }
                        }
                        st.refused.push((mech, reason(&e, &log)))
                    }
                }
            }
            states.push(st);
        }
        Ok(Taps { states, ring_bytes, events, counters, _objects: objects, _links: links })
    }

    /// Whether `name`'s tap is attached.
    pub fn attached(&self, name: &str) -> bool {
        self.states.iter().any(|s| s.name == name && s.attached.is_some())
    }

    /// The counters, summed over CPUs: per kind (index `NTF_*`) and in all.
    pub fn counts(&self) -> (Vec<Counts>, Counts) {
        let mut per = vec![Counts::default(); NTF_KIND_MAX as usize];
        let mut all = Counts::default();
        for (k, slot) in per.iter_mut().enumerate() {
            let Ok(Some(cpus)) = self.counters.lookup_percpu(&(k as u32).to_ne_bytes(), MapFlags::ANY) else {
                continue;
            };
            for c in cpus {
                if c.len() < size_of::<RawCounter>() {
                    continue;
                }
                // SAFETY: RawCounter is three u64s, valid for every bit
                // pattern; c holds at least its size.
                let c: RawCounter = unsafe { std::ptr::read_unaligned(c.as_ptr() as *const RawCounter) };
                slot.events += c.events;
                slot.drops += c.drops;
                slot.filtered += c.filtered;
            }
            all.events += slot.events;
            all.drops += slot.drops;
            all.filtered += slot.filtered;
        }
        (per, all)
    }

    /// Reads records until `sink` returns false; `tick` runs at least every
    /// `every` and may also stop the loop by returning false. A record that
    /// does not decode goes to `sink` as an error, and is skipped.
    pub fn run(
        &self,
        every: Duration,
        mut sink: impl FnMut(Result<Record, record::DecodeError>) -> bool,
        mut tick: impl FnMut(&Taps) -> bool,
    ) -> Result<(), String> {
        let go = std::cell::Cell::new(true);
        let mut b = RingBufferBuilder::new();
        b.add(&self.events, |data: &[u8]| {
            if !sink(Record::decode(data)) {
                go.set(false);
                return 1; // stops this consume
            }
            0
        })
        .map_err(|e| format!("taps ring buffer: {e}"))?;
        let rb = b.build().map_err(|e| format!("taps ring buffer: {e}"))?;
        while go.get() {
            match rb.poll(every) {
                Ok(()) => {}
                // poll returns the callback's nonzero value as an error.
                Err(_) if !go.get() => break,
                Err(e) => return Err(format!("taps ring buffer: {e}")),
            }
            if !tick(self) {
                break;
            }
        }
        Ok(())
    }
}

fn bytes_of<T: Copy>(v: &T) -> &[u8] {
    // SAFETY: T is a repr(C) struct of integers without padding.
    unsafe { std::slice::from_raw_parts(v as *const T as *const u8, size_of::<T>()) }
}
