//! Transports: how host frames reach the agent.
//!
//! * `unix:PATH`: a Unix stream socket, for development and tests;
//! * `vsock:PORT` (or `vsock:CID:PORT`): AF_VSOCK, the host-to-DPU socket
//!   of virtio-vsock;
//! * `serial:PATH`: a virtio-serial port device such as `/dev/vport0p1`.
//!
//! One host session at a time. On the socket transports a new connection
//! replaces the current one (a restarted host-bridge may connect before
//! the agent notices the old connection is gone). On disconnect the
//! hardware stays as it is and the agent waits for the next session.

use crate::session::{Agent, Control};
use crate::{info, warn};
use dpu_hw::Hal;
use nix::sys::socket::{self, AddressFamily, Backlog, SockFlag, SockType, VsockAddr};
use smol::future;
use smol::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use smol::stream::StreamExt;
use smol::{Async, Timer};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::Duration;

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
                    None => Ok(Endpoint::Vsock { cid: libc_vmaddr_cid_any(), port: num(rest)? }),
                }
            }
            _ => Err(format!("{s:?}: expected unix:PATH, vsock:[CID:]PORT or serial:PATH")),
        }
    }
}

/// `VMADDR_CID_ANY`.
fn libc_vmaddr_cid_any() -> u32 {
    u32::MAX
}

/// Any connected stream.
pub trait Stream: AsyncRead + AsyncWrite + Unpin {}
impl<T: AsyncRead + AsyncWrite + Unpin> Stream for T {}

enum Listener {
    Unix(Async<UnixListener>),
    /// A vsock listening socket; accepted with nix, since std's accept
    /// only understands Unix socket addresses.
    Vsock(Async<UnixListener>),
}

impl Listener {
    fn bind(ep: &Endpoint) -> io::Result<Listener> {
        match ep {
            Endpoint::Unix(path) => {
                // A socket file left by a previous run would make bind fail.
                if std::fs::symlink_metadata(path).is_ok_and(|m| {
                    use std::os::unix::fs::FileTypeExt;
                    m.file_type().is_socket()
                }) {
                    std::fs::remove_file(path)?;
                }
                Ok(Listener::Unix(Async::<UnixListener>::bind(path)?))
            }
            Endpoint::Vsock { cid, port } => {
                let fd =
                    socket::socket(AddressFamily::Vsock, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
                socket::bind(fd.as_raw_fd(), &VsockAddr::new(*cid, *port))?;
                socket::listen(&fd, Backlog::new(4).map_err(io::Error::from)?)?;
                Ok(Listener::Vsock(Async::new(UnixListener::from(fd))?))
            }
            Endpoint::Serial(_) => {
                Err(io::Error::new(io::ErrorKind::InvalidInput, "serial ports do not listen"))
            }
        }
    }

    async fn accept(&self) -> io::Result<Box<dyn Stream>> {
        match self {
            Listener::Unix(l) => {
                let (s, _) = l.accept().await?;
                Ok(Box::new(s))
            }
            Listener::Vsock(l) => {
                let fd = l.read_with(|s| socket::accept(s.as_raw_fd()).map_err(io::Error::from)).await?;
                // SAFETY: accept returned a new descriptor that we own.
                let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                // A connected stream socket of any family reads and writes
                // like a Unix one.
                Ok(Box::new(Async::new(UnixStream::from(fd))?))
            }
        }
    }
}

enum Event {
    Read(io::Result<usize>),
    Tick,
    Replaced(io::Result<Box<dyn Stream>>),
}

/// Runs the agent on `ep` forever.
pub fn serve<H: Hal>(agent: &mut Agent<H>, ep: &Endpoint, tick: Duration) -> io::Result<()> {
    smol::block_on(async {
        let mut out: Vec<u8> = Vec::with_capacity(OUT_CAP);
        match ep {
            Endpoint::Serial(path) => loop {
                match std::fs::OpenOptions::new().read(true).write(true).open(path) {
                    Ok(f) => {
                        info!("opened {}", path.display());
                        let mut s: Box<dyn Stream> = Box::new(Async::new(f)?);
                        session(agent, &mut s, None, tick, &mut out).await;
                    }
                    Err(e) => warn!("{}: {e}", path.display()),
                }
                Timer::after(Duration::from_millis(500)).await;
            },
            _ => {
                let listener = Listener::bind(ep)?;
                info!("listening on {ep:?}");
                let mut next = listener.accept().await;
                loop {
                    match next {
                        Ok(mut s) => {
                            let replacement = session(agent, &mut s, Some(&listener), tick, &mut out).await;
                            // Close this connection before waiting for the next.
                            drop(s);
                            next = match replacement {
                                Some(r) => r,
                                None => listener.accept().await,
                            };
                        }
                        Err(e) => {
                            warn!("accept: {e}");
                            Timer::after(Duration::from_millis(100)).await;
                            next = listener.accept().await;
                        }
                    }
                }
            }
        }
    })
}

/// Output buffer capacity: the most one read's worth of input (4 KiB)
/// can produce is far below this (see `Agent::pump` for stats).
const OUT_CAP: usize = 512 * 1024;
const READ_CHUNK: usize = 4096;

/// Queues an encoded frame for writing; never grows `out` past its
/// capacity (counts a dropped frame instead).
fn buffer(out: &mut Vec<u8>, dropped: &mut u64, f: &[u8]) {
    if out.len() + f.len() <= OUT_CAP {
        out.extend_from_slice(f);
    } else {
        *dropped += 1;
    }
}

/// Serves one connection until it ends (`None`) or a new connection
/// replaces it (`Some`).
async fn session<H: Hal>(
    agent: &mut Agent<H>,
    s: &mut Box<dyn Stream>,
    listener: Option<&Listener>,
    tick: Duration,
    out: &mut Vec<u8>,
) -> Option<io::Result<Box<dyn Stream>>> {
    info!("session starts");
    agent.on_connect();
    let mut buf = [0u8; READ_CHUNK];
    let mut timer = Timer::interval(tick);
    let mut dropped = 0u64;
    let result = loop {
        let ev = future::or(
            async { Event::Read(s.read(&mut buf).await) },
            future::or(
                async {
                    timer.next().await;
                    Event::Tick
                },
                async {
                    match listener {
                        Some(l) => Event::Replaced(l.accept().await),
                        None => future::pending().await,
                    }
                },
            ),
        )
        .await;
        let mut sink = |f: &[u8]| buffer(out, &mut dropped, f);
        let control = match ev {
            Event::Read(Ok(0)) => {
                info!("host closed the connection");
                break None;
            }
            Event::Read(Ok(n)) => agent.on_bytes(&buf[..n], &mut sink),
            Event::Read(Err(e)) => {
                warn!("read: {e}");
                break None;
            }
            Event::Tick => {
                agent.on_tick();
                Control::Continue
            }
            Event::Replaced(r) => {
                warn!("a new connection replaces the current session");
                break Some(r);
            }
        };
        // Write what the input produced, then any pending stats in bounded
        // steps.
        let mut more = true;
        while more {
            more = agent.pump(&mut |f: &[u8]| buffer(out, &mut dropped, f));
            if !out.is_empty() {
                if let Err(e) = s.write_all(out).await {
                    warn!("write: {e}");
                    out.clear();
                    agent.on_disconnect();
                    return None;
                }
                out.clear();
            }
        }
        if dropped > 0 {
            warn!("{dropped} output frames dropped: output buffer full");
            dropped = 0;
        }
        if control == Control::Close {
            info!("closing the session");
            break None;
        }
    };
    agent.on_disconnect();
    result
}
