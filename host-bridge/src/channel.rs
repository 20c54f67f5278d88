//! The host's end of the channel to the agent.
//!
//! * `unix:PATH`: a Unix stream socket: the agent's own socket in
//!   development, or QEMU's chardev socket of a DPU VM's virtio-serial
//!   port (the host side of the tmfifo model);
//! * `vsock:CID:PORT`: AF_VSOCK to the DPU;
//! * `hvsock:PATH:PORT`: vsock through a hybrid-vsock Unix socket, such as
//!   vhost-device-vsock's `uds-path` (a `CONNECT PORT` handshake first);
//! * `serial:PATH`: a virtio-serial port device, `/dev/vportNpM`, as the
//!   host sees the DPU's console FIFO.
//!
//! A bare path means `unix:PATH`. Every kind is an fd read and written
//! with read(2)/write(2), in non-blocking mode: [`crate::AgentLink`] waits
//! with `poll` and reads while it writes.

use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, VsockAddr};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Where the agent is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dial {
    Unix(PathBuf),
    Vsock { cid: u32, port: u32 },
    HybridVsock { path: PathBuf, port: u32 },
    Serial(PathBuf),
}

impl std::str::FromStr for Dial {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let num = |v: &str| v.parse::<u32>().map_err(|_| format!("{s:?}: bad number {v:?}"));
        match s.split_once(':') {
            Some(("unix", p)) if !p.is_empty() => Ok(Dial::Unix(p.into())),
            Some(("serial", p)) if !p.is_empty() => Ok(Dial::Serial(p.into())),
            Some(("vsock", rest)) => match rest.split_once(':') {
                Some((cid, port)) => Ok(Dial::Vsock { cid: num(cid)?, port: num(port)? }),
                None => Err(format!("{s:?}: expected vsock:CID:PORT")),
            },
            Some(("hvsock", rest)) => match rest.rsplit_once(':') {
                Some((path, port)) if !path.is_empty() => {
                    Ok(Dial::HybridVsock { path: path.into(), port: num(port)? })
                }
                _ => Err(format!("{s:?}: expected hvsock:PATH:PORT")),
            },
            Some((kind, _)) if !kind.contains('/') => Err(format!(
                "{s:?}: expected unix:PATH, vsock:CID:PORT, hvsock:PATH:PORT, serial:PATH or a socket path"
            )),
            _ if !s.is_empty() => Ok(Dial::Unix(s.into())),
            _ => Err("empty agent address".into()),
        }
    }
}

impl std::fmt::Display for Dial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dial::Unix(p) => write!(f, "unix:{}", p.display()),
            Dial::Vsock { cid, port } => write!(f, "vsock:{cid}:{port}"),
            Dial::HybridVsock { path, port } => write!(f, "hvsock:{}:{port}", path.display()),
            Dial::Serial(p) => write!(f, "serial:{}", p.display()),
        }
    }
}

/// A connected channel: a non-blocking fd.
pub struct Channel {
    f: File,
}

impl Channel {
    /// Connects (blocking, at most `timeout` for the hybrid-vsock
    /// handshake), then switches to non-blocking mode.
    pub fn dial(d: &Dial, timeout: Duration) -> io::Result<Channel> {
        let fd: OwnedFd = match d {
            Dial::Unix(p) => UnixStream::connect(p)?.into(),
            Dial::Vsock { cid, port } => {
                let fd =
                    socket::socket(AddressFamily::Vsock, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
                socket::connect(fd.as_raw_fd(), &VsockAddr::new(*cid, *port))?;
                fd
            }
            Dial::HybridVsock { path, port } => {
                let mut s = UnixStream::connect(path)?;
                s.set_read_timeout(Some(timeout))?;
                s.write_all(format!("CONNECT {port}\n").as_bytes())?;
                // The answer is one line, "OK <port>"; read it byte by
                // byte so nothing after it is consumed.
                let mut line = Vec::new();
                let deadline = Instant::now() + timeout;
                let mut b = [0u8; 1];
                while line.last() != Some(&b'\n') {
                    if line.len() > 64 || Instant::now() > deadline {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "hybrid vsock: no answer line",
                        ));
                    }
                    match s.read(&mut b)? {
                        0 => {
                            return Err(io::Error::new(
                                io::ErrorKind::ConnectionRefused,
                                format!("hybrid vsock: nothing listens on port {port}"),
                            ))
                        }
                        _ => line.push(b[0]),
                    }
                }
                if !line.starts_with(b"OK ") {
                    let text = String::from_utf8_lossy(&line).trim().to_string();
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionRefused,
                        format!("hybrid vsock: {text}"),
                    ));
                }
                s.set_read_timeout(None)?;
                s.into()
            }
            Dial::Serial(p) => std::fs::OpenOptions::new().read(true).write(true).open(p)?.into(),
        };
        Channel::from_fd(fd)
    }

    /// Wraps a connected fd (switched to non-blocking mode).
    pub fn from_fd(fd: OwnedFd) -> io::Result<Channel> {
        use nix::fcntl::{fcntl, FcntlArg, OFlag};
        let flags = OFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GETFL)?);
        fcntl(&fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        Ok(Channel { f: File::from(fd) })
    }

    /// Another handle on the same channel (tests write and read it from
    /// two places).
    pub fn try_clone(&self) -> io::Result<Channel> {
        Ok(Channel { f: self.f.try_clone()? })
    }
}

impl Read for Channel {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.f.read(buf)
    }
}

impl Write for Channel {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.f.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsFd for Channel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.f.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind() {
        let p = |s: &str| s.parse::<Dial>();
        assert_eq!(p("unix:/run/a.sock"), Ok(Dial::Unix("/run/a.sock".into())));
        assert_eq!(p("/run/a.sock"), Ok(Dial::Unix("/run/a.sock".into())));
        assert_eq!(p("vsock:3:5000"), Ok(Dial::Vsock { cid: 3, port: 5000 }));
        assert_eq!(p("serial:/dev/vport0p1"), Ok(Dial::Serial("/dev/vport0p1".into())));
        assert_eq!(
            p("hvsock:/tmp/v.sock:5000"),
            Ok(Dial::HybridVsock { path: "/tmp/v.sock".into(), port: 5000 })
        );
        assert!(p("vsock:5000").is_err());
        assert!(p("tcp:1.2.3.4:5").is_err());
        assert!(p("").is_err());
        for s in ["unix:/a", "vsock:3:5000", "hvsock:/v.sock:1", "serial:/dev/vport1p1"] {
            assert_eq!(p(s).map(|d| d.to_string()), Ok(s.to_string()));
        }
    }
}
