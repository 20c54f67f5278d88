//! A NETLINK_ROUTE socket on nix: subscriptions, dump requests, and
//! splitting received datagrams into messages.

use nix::sys::socket::{
    bind, recv, send, setsockopt, socket, sockopt, AddressFamily, MsgFlags, NetlinkAddr, SockFlag,
    SockProtocol, SockType,
};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

pub const NLMSG_NOOP: u16 = 1;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const NLMSG_OVERRUN: u16 = 4;
pub const NLM_F_REQUEST: u16 = 1;
pub const NLM_F_MULTI: u16 = 2;
pub const NLM_F_DUMP: u16 = 0x300;
pub const NLM_F_DUMP_INTR: u16 = 16;
pub const NLM_F_REPLACE: u16 = 0x100;

pub const RTM_NEWLINK: u16 = 16;
pub const RTM_DELLINK: u16 = 17;
pub const RTM_GETLINK: u16 = 18;
pub const RTM_NEWADDR: u16 = 20;
pub const RTM_DELADDR: u16 = 21;
pub const RTM_GETADDR: u16 = 22;
pub const RTM_NEWROUTE: u16 = 24;
pub const RTM_DELROUTE: u16 = 25;
pub const RTM_GETROUTE: u16 = 26;
pub const RTM_NEWNEIGH: u16 = 28;
pub const RTM_DELNEIGH: u16 = 29;
pub const RTM_GETNEIGH: u16 = 30;
pub const RTM_DELQDISC: u16 = 37;
pub const RTM_NEWTFILTER: u16 = 44;
pub const RTM_DELTFILTER: u16 = 45;
pub const RTM_GETTFILTER: u16 = 46;
pub const RTM_NEWNEXTHOP: u16 = 104;
pub const RTM_DELNEXTHOP: u16 = 105;
pub const RTM_GETNEXTHOP: u16 = 106;
pub const RTM_NEWVLAN: u16 = 112;
pub const RTM_DELVLAN: u16 = 113;
pub const RTM_GETVLAN: u16 = 114;

pub const AF_UNSPEC: u8 = 0;
pub const AF_INET: u8 = 2;
pub const AF_BRIDGE: u8 = 7;
pub const AF_INET6: u8 = 10;

/// The multicast groups the mirror listens to.
pub mod group {
    pub const LINK: u32 = 1;
    pub const NEIGH: u32 = 3;
    pub const TC: u32 = 4;
    pub const IPV4_IFADDR: u32 = 5;
    pub const IPV4_ROUTE: u32 = 7;
    pub const IPV6_IFADDR: u32 = 9;
    pub const IPV6_ROUTE: u32 = 11;
    pub const NEXTHOP: u32 = 32;
    pub const BRVLAN: u32 = 33;
    pub const ALL: [u32; 9] =
        [LINK, NEIGH, TC, IPV4_IFADDR, IPV4_ROUTE, IPV6_IFADDR, IPV6_ROUTE, NEXTHOP, BRVLAN];
}

/// One received netlink message.
#[derive(Clone, Copy, Debug)]
pub struct Msg<'a> {
    pub kind: u16,
    pub flags: u16,
    pub seq: u32,
    pub payload: &'a [u8],
}

pub struct NlSocket {
    fd: OwnedFd,
    seq: u32,
}

impl AsFd for NlSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

const SOL_NETLINK: i32 = 270;
const NETLINK_ADD_MEMBERSHIP: i32 = 1;

impl NlSocket {
    /// A socket subscribed to `groups`, with a receive buffer of
    /// `rcvbuf` bytes (0: the system default).
    pub fn open(groups: &[u32], rcvbuf: usize) -> io::Result<Self> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0))?;
        if rcvbuf > 0 {
            // RcvBufForce needs CAP_NET_ADMIN; fall back to the capped one.
            if setsockopt(&fd, sockopt::RcvBufForce, &rcvbuf).is_err() {
                setsockopt(&fd, sockopt::RcvBuf, &rcvbuf)?;
            }
        }
        let sock = NlSocket { fd, seq: 0 };
        sock.join(groups)?;
        Ok(sock)
    }

    /// Joins multicast `groups`.
    pub fn join(&self, groups: &[u32]) -> io::Result<()> {
        for &g in groups {
            // nix has no NETLINK_ADD_MEMBERSHIP option; groups above 31
            // cannot go through bind's bitmask.
            self.set_int(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, g as i32)?;
        }
        Ok(())
    }

    /// Sets an int-valued socket option nix has no typed option for.
    pub fn set_int(&self, level: i32, name: i32, value: i32) -> io::Result<()> {
        // SAFETY: a valid fd and an int option value of the right size.
        let r = unsafe {
            nix::libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                (&value as *const i32).cast(),
                std::mem::size_of::<i32>() as u32,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Sends a dump request for `kind` with the given family header.
    pub fn request_dump(&mut self, kind: u16, header: &[u8]) -> io::Result<u32> {
        self.seq = self.seq.wrapping_add(1);
        let len = 16 + header.len();
        let mut b = Vec::with_capacity(len);
        b.extend_from_slice(&(len as u32).to_ne_bytes());
        b.extend_from_slice(&kind.to_ne_bytes());
        b.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
        b.extend_from_slice(&self.seq.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(header);
        send(self.fd.as_raw_fd(), &b, MsgFlags::empty())?;
        Ok(self.seq)
    }

    /// Receives one datagram.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(recv(self.fd.as_raw_fd(), buf, MsgFlags::empty())?)
    }
}

/// Event datagrams taken by one [`NlSocket::recv_many`]. A system call
/// costs several microseconds on a host with the usual mitigations: at 16
/// a plain recvmmsg loop spent 1.47 us per route event of a burst, at 64
/// 1.09 us (C listener beside `ip -batch` of 1.2M routes, 4 ms pauses).
/// The buffer is virtual until used: 64 slots touch 64 pages.
pub const MANY: usize = 64;
/// Room for one event datagram there. A kernel notification carries one
/// object (a link's without its VF list); one that does not fit is
/// reported as truncated, never cut silently.
pub const SLOT: usize = 64 << 10;

/// Buffers for [`NlSocket::recv_many`].
pub struct Datagrams {
    buf: Vec<u8>,
    lens: [usize; MANY],
    n: usize,
    /// Datagrams of the last call that did not fit their slot: they are
    /// left empty in [`Datagrams::iter`], never parsed from cut bytes.
    pub truncated: usize,
}

impl Default for Datagrams {
    fn default() -> Self {
        Datagrams { buf: vec![0; MANY * SLOT], lens: [0; MANY], n: 0, truncated: 0 }
    }
}

impl Datagrams {
    /// The datagrams of the last call, in the order they came.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        (0..self.n).map(|i| &self.buf[i * SLOT..i * SLOT + self.lens[i]])
    }

    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }
}

impl NlSocket {
    /// Takes up to [`MANY`] datagrams that are queued, in one system call
    /// (`recvmmsg`), without waiting: `WouldBlock` when none is. Events
    /// come one per datagram, so this is a system call per [`MANY`]
    /// events instead of one each.
    pub fn recv_many(&self, d: &mut Datagrams) -> io::Result<usize> {
        use nix::libc;
        d.n = 0;
        d.truncated = 0;
        let base = d.buf.as_mut_ptr();
        let mut iov: [libc::iovec; MANY] = std::array::from_fn(|i| libc::iovec {
            // SAFETY: i * SLOT is inside buf (MANY * SLOT bytes).
            iov_base: unsafe { base.add(i * SLOT) }.cast(),
            iov_len: SLOT,
        });
        // SAFETY: all-zero is a valid mmsghdr (null name and control).
        let mut hdrs: [libc::mmsghdr; MANY] = unsafe { std::mem::zeroed() };
        for (h, v) in hdrs.iter_mut().zip(iov.iter_mut()) {
            h.msg_hdr.msg_iov = v;
            h.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: MANY headers, each with one iovec into a live buffer of
        // SLOT bytes; the kernel writes only there.
        let r = unsafe {
            libc::recvmmsg(
                self.fd.as_raw_fd(),
                hdrs.as_mut_ptr(),
                MANY as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = r as usize;
        for (i, h) in hdrs.iter().take(n).enumerate() {
            d.lens[i] = if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                d.truncated += 1;
                0
            } else {
                h.msg_len as usize
            };
        }
        d.n = n;
        Ok(n)
    }
}

/// Splits a datagram into messages; stops at the first malformed header.
pub fn messages(mut buf: &[u8]) -> impl Iterator<Item = Msg<'_>> {
    std::iter::from_fn(move || {
        if buf.len() < 16 {
            return None;
        }
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len < 16 || len > buf.len() {
            return None;
        }
        let m = Msg {
            kind: u16::from_ne_bytes([buf[4], buf[5]]),
            flags: u16::from_ne_bytes([buf[6], buf[7]]),
            seq: u32::from_ne_bytes([buf[8], buf[9], buf[10], buf[11]]),
            payload: &buf[16..len],
        };
        buf = &buf[((len + 3) & !3).min(buf.len())..];
        Some(m)
    })
}

/// Netlink attributes: (type without flags, value); stops at the first
/// malformed one.
pub fn attrs(buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    attrs_checked(buf).map_while(Result::ok)
}

/// Netlink attributes, each checked: a length that runs past the buffer,
/// or bytes left over after the last attribute, end the walk with an
/// error (never an attribute read from cut bytes).
pub fn attrs_checked(mut buf: &[u8]) -> impl Iterator<Item = Result<(u16, &[u8]), String>> {
    std::iter::from_fn(move || {
        if buf.is_empty() {
            return None;
        }
        let len = match buf {
            [a, b, _, _, ..] => u16::from_ne_bytes([*a, *b]) as usize,
            _ => 0,
        };
        if len < 4 || len > buf.len() {
            let left = std::mem::take(&mut buf).len();
            return Some(Err(format!("attribute of length {len} in {left} bytes")));
        }
        let kind = u16::from_ne_bytes([buf[2], buf[3]]) & 0x3fff;
        let v = &buf[4..len];
        buf = &buf[((len + 3) & !3).min(buf.len())..];
        Some(Ok((kind, v)))
    })
}

/// The error code of an NLMSG_ERROR message (0 is an ack).
pub fn error_code(payload: &[u8]) -> i32 {
    if payload.len() < 4 {
        return -nix::libc::EINVAL;
    }
    i32::from_ne_bytes([payload[0], payload[1], payload[2], payload[3]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{socketpair, SockFlag, SockType};

    #[test]
    fn recv_many_takes_what_is_queued_and_empties_a_cut_datagram() {
        let (a, b) = socketpair(AddressFamily::Unix, SockType::Datagram, None, SockFlag::SOCK_CLOEXEC)
            .expect("socketpair");
        let sock = NlSocket { fd: b, seq: 0 };
        let mut d = Datagrams::default();
        let e = sock.recv_many(&mut d).expect_err("nothing queued");
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        let big = vec![7u8; SLOT + 1];
        for m in [&b"one"[..], &big[..], &b"three"[..]] {
            send(a.as_raw_fd(), m, MsgFlags::empty()).expect("send");
        }
        assert_eq!(sock.recv_many(&mut d).expect("three queued"), 3);
        assert_eq!(d.truncated, 1);
        let got: Vec<&[u8]> = d.iter().collect();
        assert_eq!(got, vec![&b"one"[..], &b""[..], &b"three"[..]]);
        // More than MANY queued: MANY now, the rest next time.
        for i in 0..MANY + 2 {
            send(a.as_raw_fd(), &[i as u8], MsgFlags::empty()).expect("send");
        }
        assert_eq!(sock.recv_many(&mut d).expect("a full batch"), MANY);
        assert_eq!((d.truncated, d.iter().next()), (0, Some(&[0u8][..])));
        assert_eq!(sock.recv_many(&mut d).expect("the rest"), 2);
        assert_eq!(d.iter().last(), Some(&[MANY as u8 + 1][..]));
    }
}
