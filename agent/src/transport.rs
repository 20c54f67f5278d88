//! Transports: how host frames reach the agent.
//!
//! * `unix:PATH`: a Unix stream socket, for development and tests;
//! * `vsock:PORT` (or `vsock:CID:PORT`): AF_VSOCK, the host-to-DPU socket
//!   of virtio-vsock; only the board's host CID may connect;
//! * `serial:PATH`: a virtio-serial port device such as `/dev/vport0p1`
//!   (the BlueField tmfifo console model).
//!
//! The agent may listen on several at once. **One host session owns the
//! agent**: a connection that arrives while a session is live is refused
//! with an [`ErrorCode::Busy`](dpu_wire::ErrorCode::Busy) error that both
//! sides log, and the live session goes on. A session is over when its
//! stream ends (EOF, error) or when no frame has come from the host for
//! the session timeout (host-bridge sends a heartbeat every second when
//! idle); a connection that arrives after that replaces it. An `accept`
//! error is logged and retried; it never ends a live session. On
//! disconnect the hardware stays as it is and the agent waits for the next
//! session.
//!
//! **Flow control.** Output is never dropped and the agent keeps reading
//! while it writes. Input is fed to the session one frame at a time, and
//! only while the output queue has room for the most one frame can produce
//! ([`MAX_OUT_PER_FRAME`]); stats steps likewise ([`MAX_OUT_PER_PUMP`]).
//! When the host does not read, the queue fills, the agent stops taking
//! input, the channel's buffers fill and the host's writes wait: nothing
//! is lost and nothing grows, whatever the buffer sizes. The host must
//! read while it writes (host-bridge's `AgentLink` does).

use crate::session::{busy_frame, Agent, Control, MAX_OUT_PER_FRAME, MAX_OUT_PER_PUMP};
use crate::{error, info, warn};
use dpu_hw::Hal;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{self, AddressFamily, Backlog, SockFlag, SockType, VsockAddr};
use smol::channel::{Receiver, Sender};
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::stream::StreamExt;
use smol::{future, Async, LocalExecutor, Timer};
use std::cell::Cell;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Where the agent listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Unix(PathBuf),
    Vsock { cid: u32, port: u32 },
    Serial(PathBuf),
}

impl std::str::FromStr for Endpoint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (kind, rest) = s.split_once(':').ok_or_else(|| format!("{s:?}: expected KIND:ADDRESS"))?;
        match kind {
            "unix" if !rest.is_empty() => Ok(Endpoint::Unix(rest.into())),
            "serial" if !rest.is_empty() => Ok(Endpoint::Serial(rest.into())),
            "vsock" => {
                let num = |v: &str| v.parse::<u32>().map_err(|_| format!("{s:?}: bad vsock number {v:?}"));
                match rest.split_once(':') {
                    Some((cid, port)) => Ok(Endpoint::Vsock { cid: num(cid)?, port: num(port)? }),
                    None => Ok(Endpoint::Vsock { cid: VMADDR_CID_ANY, port: num(rest)? }),
                }
            }
            _ => Err(format!("{s:?}: expected unix:PATH, vsock:[CID:]PORT or serial:PATH")),
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
            Endpoint::Vsock { cid, port } if *cid == VMADDR_CID_ANY => write!(f, "vsock:{port}"),
            Endpoint::Vsock { cid, port } => write!(f, "vsock:{cid}:{port}"),
            Endpoint::Serial(p) => write!(f, "serial:{}", p.display()),
        }
    }
}

const VMADDR_CID_ANY: u32 = u32::MAX;

/// How the agent serves its endpoints.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Housekeeping period (stats due-checks, session timeout).
    pub tick: Duration,
    /// A session with no frame from the host for this long is over.
    pub session_timeout: Duration,
    /// The only vsock CID a session may come from.
    pub vsock_host_cid: u32,
}

/// Output queue capacity, allocated once. Input is admitted only while
/// the most it can produce fits (see the module docs).
const OUT_CAP: usize = 512 * 1024;
const READ_CHUNK: usize = 4096;
/// How long a refused serial port is drained before it is offered again.
const REFUSED_HOLD: Duration = Duration::from_secs(2);
const _: () = assert!(MAX_OUT_PER_FRAME <= OUT_CAP && MAX_OUT_PER_PUMP <= OUT_CAP);

/// A serial port's state, shared between its watcher and the session.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PortState {
    /// No session on it: the watcher offers it when the host sends.
    Free,
    InUse,
    /// Refused while another session owns the agent (at this instant):
    /// the watcher drains it until the host leaves the port, or for
    /// [`REFUSED_HOLD`], then offers it again (a host behind a channel that
    /// stays up, as between two VMs, never "leaves").
    Refused(Instant),
}

/// A connected byte stream. Every transport is an fd read and written
/// with read(2)/write(2), so one type serves them all.
struct Conn {
    io: Rc<Async<File>>,
    label: String,
    port: Option<Rc<Cell<PortState>>>,
}

impl Conn {
    fn release(&self, state: PortState) {
        if let Some(p) = &self.port {
            p.set(state);
        }
    }
}

fn socket_listener(ep: &Endpoint) -> io::Result<Async<UnixListener>> {
    match ep {
        Endpoint::Unix(path) => {
            // A socket file left by a previous run would make bind fail.
            if std::fs::symlink_metadata(path).is_ok_and(|m| {
                use std::os::unix::fs::FileTypeExt;
                m.file_type().is_socket()
            }) {
                std::fs::remove_file(path)?;
            }
            Async::<UnixListener>::bind(path)
        }
        Endpoint::Vsock { cid, port } => {
            let fd = socket::socket(AddressFamily::Vsock, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
            socket::bind(fd.as_raw_fd(), &VsockAddr::new(*cid, *port))?;
            socket::listen(&fd, Backlog::new(4).map_err(io::Error::from)?)?;
            // Only for readiness; accepted with nix below, since std's
            // accept understands Unix socket addresses only.
            Async::new(UnixListener::from(fd))
        }
        Endpoint::Serial(_) => Err(io::Error::new(io::ErrorKind::InvalidInput, "serial ports do not listen")),
    }
}

/// True the first time `e` follows a different error (or none): a retry
/// loop logs each distinct error once, not once per retry.
fn first_time(last: &mut Option<String>, e: &io::Error) -> bool {
    let text = e.to_string();
    let first = last.as_deref() != Some(text.as_str());
    *last = Some(text);
    first
}

/// Accepts connections on a socket endpoint forever; a vsock peer other
/// than the board's host CID is refused here.
async fn accept_loop(ep: Endpoint, l: Async<UnixListener>, host_cid: u32, tx: Sender<Conn>) {
    let mut last_error: Option<String> = None;
    loop {
        let fd =
            l.read_with(|s| socket::accept4(s.as_raw_fd(), SockFlag::SOCK_CLOEXEC).map_err(io::Error::from));
        let fd = match fd.await {
            Ok(fd) => {
                last_error = None;
                // SAFETY: accept returned a new descriptor that we own.
                unsafe { OwnedFd::from_raw_fd(fd) }
            }
            Err(e) => {
                // Retried; a live session is not affected.
                if first_time(&mut last_error, &e) {
                    warn!("accept on {ep}: {e}; retrying");
                }
                Timer::after(Duration::from_millis(100)).await;
                continue;
            }
        };
        let label = match &ep {
            Endpoint::Vsock { .. } => match socket::getpeername::<VsockAddr>(fd.as_raw_fd()) {
                Ok(peer) if peer.cid() == host_cid => {
                    format!("vsock from CID {} port {}", peer.cid(), peer.port())
                }
                Ok(peer) => {
                    warn!(
                        "refused a vsock connection from CID {}: only CID {host_cid} (this board's host) may connect",
                        peer.cid()
                    );
                    continue;
                }
                Err(e) => {
                    warn!("vsock peer address: {e}; connection closed");
                    continue;
                }
            },
            other => other.to_string(),
        };
        let io = match Async::new(File::from(fd)) {
            Ok(io) => Rc::new(io),
            Err(e) => {
                warn!("{label}: {e}");
                continue;
            }
        };
        if tx.send(Conn { io, label, port: None }).await.is_err() {
            return;
        }
    }
}

/// What a port's poll says: (data from a host, no host). A virtio-serial
/// port with no host reports POLLIN and POLLHUP together (a read would
/// not block: it returns 0), so data means POLLIN without POLLHUP.
fn port_poll(f: &File) -> (bool, bool) {
    let mut fds = [PollFd::new(f.as_fd(), PollFlags::POLLIN)];
    match poll(&mut fds, PollTimeout::ZERO) {
        Ok(_) => {
            let r = fds[0].revents().unwrap_or(PollFlags::empty());
            let hup = r.contains(PollFlags::POLLHUP);
            (r.contains(PollFlags::POLLIN) && !hup, hup)
        }
        Err(_) => (false, false),
    }
}

/// Watches a virtio-serial port: offers it as a connection when the host
/// sends on it. With no host on the port the read side reports hang-up;
/// the watcher then checks every 200 ms and says so once, not per check.
async fn serial_watch(path: PathBuf, tx: Sender<Conn>) {
    let label = format!("serial:{}", path.display());
    let state = Rc::new(Cell::new(PortState::Free));
    let mut open_error: Option<String> = None;
    let io = loop {
        match std::fs::OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => match Async::new(f) {
                Ok(io) => break Rc::new(io),
                Err(e) => error!("{label}: {e}"),
            },
            Err(e) => {
                if first_time(&mut open_error, &e) {
                    warn!("{label}: {e}; retrying every second");
                }
            }
        }
        Timer::after(Duration::from_secs(1)).await;
    };
    info!("opened {label}");
    let mut waiting_said = false;
    loop {
        match state.get() {
            PortState::InUse => {}
            PortState::Free => {
                let (data, hup) = port_poll(io.get_ref());
                if data {
                    state.set(PortState::InUse);
                    waiting_said = false;
                    let c = Conn { io: io.clone(), label: label.clone(), port: Some(state.clone()) };
                    if tx.send(c).await.is_err() {
                        return;
                    }
                    continue;
                }
                if hup && !waiting_said {
                    info!("{label}: no host on the port; waiting");
                    waiting_said = true;
                }
            }
            PortState::Refused(at) => {
                let (data, hup) = port_poll(io.get_ref());
                if hup || at.elapsed() >= REFUSED_HOLD {
                    state.set(PortState::Free);
                } else if data {
                    let mut sink = [0u8; READ_CHUNK];
                    let _ = io.get_ref().read(&mut sink);
                    // Yield to the live session between reads.
                    Timer::after(Duration::from_millis(5)).await;
                    continue;
                }
            }
        }
        Timer::after(Duration::from_millis(200)).await;
    }
}

/// Runs the agent on `eps` forever.
pub fn serve<H: Hal>(agent: &mut Agent<H>, eps: &[Endpoint], cfg: &ServeConfig) -> io::Result<()> {
    let ex = LocalExecutor::new();
    let (tx, rx) = smol::channel::unbounded::<Conn>();
    for ep in eps {
        match ep {
            Endpoint::Serial(path) => ex.spawn(serial_watch(path.clone(), tx.clone())).detach(),
            _ => {
                let l = socket_listener(ep).map_err(|e| io::Error::new(e.kind(), format!("{ep}: {e}")))?;
                info!("listening on {ep}");
                ex.spawn(accept_loop(ep.clone(), l, cfg.vsock_host_cid, tx.clone())).detach();
            }
        }
    }
    drop(tx);
    smol::block_on(ex.run(async {
        let mut out: Vec<u8> = Vec::with_capacity(OUT_CAP);
        let mut next = rx.recv().await.ok();
        while let Some(conn) = next {
            let replacement = session(agent, &conn, &rx, cfg, &mut out).await;
            // Closed (sockets) before waiting for the next connection.
            drop(conn);
            next = match replacement {
                Some(r) => Some(r),
                None => rx.recv().await.ok(),
            };
        }
        Ok(())
    }))
}

enum Event {
    Read(io::Result<usize>),
    Wrote(io::Result<usize>),
    Tick,
    Incoming(Option<Conn>),
}

/// Refuses a connection while `owner` holds the session.
fn refuse(c: Conn, owner: &str) {
    warn!("refused a host connection on {}: the session on {owner} owns the agent", c.label);
    // Best effort, one write on a non-blocking fd: a short error frame.
    let _ = c.io.get_ref().write(&busy_frame(owner));
    c.release(PortState::Refused(Instant::now()));
}

/// Serves one connection until it ends (`None`) or a connection that
/// arrives after the session went silent replaces it (`Some`).
async fn session<H: Hal>(
    agent: &mut Agent<H>,
    conn: &Conn,
    rx: &Receiver<Conn>,
    cfg: &ServeConfig,
    out: &mut Vec<u8>,
) -> Option<Conn> {
    info!("session starts on {}", conn.label);
    agent.on_connect();
    let mut inbuf = [0u8; READ_CHUNK];
    let (mut in_pos, mut in_len) = (0usize, 0usize);
    out.clear();
    let mut out_pos = 0usize;
    // The last byte written ended a frame (frames end with their zero).
    let mut at_boundary = true;
    let mut last_rx = Instant::now();
    let mut timer = Timer::interval(cfg.tick);
    let mut closing = false;
    let io = &*conn.io;
    let result = 'session: loop {
        // Input, a frame at a time, while its worst output fits.
        loop {
            if out_pos > 0 && out.len() + MAX_OUT_PER_FRAME.max(MAX_OUT_PER_PUMP) > OUT_CAP {
                out.drain(..out_pos);
                out_pos = 0;
            }
            if closing || in_pos == in_len || out.len() + MAX_OUT_PER_FRAME > OUT_CAP {
                break;
            }
            let end = inbuf[in_pos..in_len].iter().position(|&b| b == 0).map_or(in_len, |i| in_pos + i + 1);
            let (before, sessions) = (out.len(), agent.counters.sessions);
            let control = agent.on_bytes(&inbuf[in_pos..end], &mut |f: &[u8]| out.extend_from_slice(f));
            in_pos = end;
            if agent.counters.sessions != sessions {
                // A hello restarted the session on this stream: what the
                // old session queued is not the new host's, except the
                // rest of a frame already partly written.
                let from = if at_boundary {
                    out_pos
                } else {
                    out[out_pos..before].iter().position(|&b| b == 0).map_or(before, |i| out_pos + i + 1)
                };
                out.drain(from..before);
            }
            if control == Control::Close {
                closing = true;
            }
        }
        // Pending work (a stats pass) in bounded steps, likewise.
        while !closing && out.len() + MAX_OUT_PER_PUMP <= OUT_CAP {
            if !agent.pump(&mut |f: &[u8]| out.extend_from_slice(f)) {
                break;
            }
        }
        debug_assert!(out.len() <= OUT_CAP);
        if closing && out_pos == out.len() {
            info!("closing the session");
            break None;
        }
        let can_read = !closing && in_pos == in_len;
        let can_write = out_pos < out.len();
        // The tick and new connections first (rarely ready, so cheap to
        // poll, and never starved by a host that keeps the stream busy);
        // then reads and writes, racing with no bias.
        let ev = future::or(
            future::or(
                async {
                    timer.next().await;
                    Event::Tick
                },
                async { Event::Incoming(rx.recv().await.ok()) },
            ),
            future::race(
                async {
                    if can_read {
                        Event::Read((&*io).read(&mut inbuf).await)
                    } else {
                        future::pending().await
                    }
                },
                async {
                    if can_write {
                        Event::Wrote((&*io).write(&out[out_pos..]).await)
                    } else {
                        future::pending().await
                    }
                },
            ),
        )
        .await;
        match ev {
            Event::Read(Ok(0)) => {
                if conn.port.is_some() {
                    info!("the host left {}", conn.label);
                } else {
                    info!("host closed the connection");
                }
                break None;
            }
            Event::Read(Ok(n)) => {
                (in_pos, in_len) = (0, n);
                last_rx = Instant::now();
            }
            Event::Read(Err(e)) => {
                warn!("read on {}: {e}", conn.label);
                break None;
            }
            Event::Wrote(Ok(n)) => {
                if n > 0 {
                    at_boundary = out[out_pos + n - 1] == 0;
                }
                out_pos += n;
                if out_pos == out.len() {
                    out.clear();
                    out_pos = 0;
                }
            }
            Event::Wrote(Err(e)) => {
                warn!("write on {}: {e}", conn.label);
                break None;
            }
            Event::Tick => {
                agent.on_tick();
                if in_pos < in_len {
                    // Input the agent holds back for room is not silence.
                    last_rx = Instant::now();
                }
                if conn.port.is_some() && port_poll(io.get_ref()).1 {
                    // Noticed here too: while the agent does not read
                    // (output backed up), no EOF would tell.
                    info!("the host left {}", conn.label);
                    break None;
                }
                if last_rx.elapsed() > cfg.session_timeout {
                    warn!(
                        "no frame from the host on {} for {} ms: the session is over",
                        conn.label,
                        last_rx.elapsed().as_millis()
                    );
                    break None;
                }
            }
            Event::Incoming(None) => break None,
            Event::Incoming(Some(c)) => {
                if last_rx.elapsed() > cfg.session_timeout {
                    warn!("the session on {} is silent: {} takes over", conn.label, c.label);
                    break 'session Some(c);
                }
                refuse(c, &conn.label);
            }
        }
    };
    agent.on_disconnect();
    conn.release(PortState::Free);
    out.clear();
    result
}
