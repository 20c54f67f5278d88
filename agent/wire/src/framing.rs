//! Framing: `COBS(payload ‖ CRC-32C(payload) as little-endian u32) ‖ 0x00`.
//!
//! COBS removes every zero byte from the encoded frame, so the single zero
//! that ends a frame is also the point where a receiver resynchronises: a
//! corrupt, truncated or oversized frame costs that frame and no other. The
//! CRC catches corruption that COBS alone would let through.
//!
//! [`FrameBuilder`] writes a header and items into a caller-owned buffer and
//! encodes them; [`Deframer`] accumulates received bytes into a
//! caller-owned buffer and yields checked payloads; [`FrameReader`] decodes
//! a payload's header and then its items one at a time.

use crate::crc32c::crc32c;
use serde::{Deserialize, Serialize};

/// Why a frame was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// Longer than the receiver's buffer: skipped up to the next zero.
    Oversize,
    /// Not valid COBS.
    Cobs,
    /// Shorter than its CRC.
    Short,
    /// CRC mismatch: corrupted in transit.
    Crc,
    /// The CRC matched but postcard could not decode the content.
    Decode,
    /// The item does not fit the frame being built.
    Full,
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            FrameError::Oversize => "frame larger than the maximum frame size",
            FrameError::Cobs => "frame is not valid COBS",
            FrameError::Short => "frame shorter than its CRC",
            FrameError::Crc => "frame CRC mismatch",
            FrameError::Decode => "frame content does not decode",
            FrameError::Full => "item does not fit the frame",
        })
    }
}

const CRC_LEN: usize = 4;

/// Builds one frame's payload in a caller-owned buffer.
///
/// The buffer's length is the maximum payload (including the CRC).
pub struct FrameBuilder<B> {
    buf: B,
    len: usize,
    items: usize,
}

impl<B: AsMut<[u8]> + AsRef<[u8]>> FrameBuilder<B> {
    pub fn new(buf: B) -> Self {
        Self { buf, len: 0, items: 0 }
    }

    fn limit(&mut self) -> usize {
        self.buf.as_mut().len().saturating_sub(CRC_LEN)
    }

    /// Starts a new frame with `header`, discarding anything unfinished.
    pub fn start<H: Serialize>(&mut self, header: &H) -> Result<(), FrameError> {
        self.len = 0;
        self.items = 0;
        self.append(header)
    }

    /// Appends one item. On [`FrameError::Full`] the frame is unchanged, so
    /// the caller can finish it and put the item in the next one.
    pub fn push<T: Serialize>(&mut self, item: &T) -> Result<(), FrameError> {
        self.append(item)?;
        self.items += 1;
        Ok(())
    }

    /// Appends one item already in its postcard encoding, given in parts
    /// (an enum's variant index, then its value's bytes): what a sender
    /// that keeps objects encoded pushes without decoding and encoding
    /// them again. The receiver checks it like any other item.
    pub fn push_encoded(&mut self, parts: &[&[u8]]) -> Result<(), FrameError> {
        let limit = self.limit();
        let n: usize = parts.iter().map(|p| p.len()).sum();
        if self.len + n > limit {
            return Err(FrameError::Full);
        }
        for p in parts {
            self.buf.as_mut()[self.len..self.len + p.len()].copy_from_slice(p);
            self.len += p.len();
        }
        self.items += 1;
        Ok(())
    }

    fn append<T: Serialize>(&mut self, v: &T) -> Result<(), FrameError> {
        let limit = self.limit();
        let start = self.len;
        let room = &mut self.buf.as_mut()[start..limit];
        let used = postcard::to_slice(v, room).map_err(|_| FrameError::Full)?.len();
        self.len += used;
        Ok(())
    }

    /// Items pushed since [`FrameBuilder::start`].
    pub fn items(&self) -> usize {
        self.items
    }

    /// Payload bytes so far (without CRC).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The payload so far, without CRC.
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[..self.len]
    }

    /// Appends the CRC and COBS-encodes the frame into `out`, terminating
    /// zero included; returns the encoded length. `out` must hold
    /// [`max_encoded_len`] of the payload buffer's length.
    pub fn finish(&mut self, out: &mut [u8]) -> Result<usize, FrameError> {
        let len = self.len;
        if self.buf.as_ref().len() < len + CRC_LEN {
            return Err(FrameError::Full);
        }
        let crc = crc32c(&self.buf.as_ref()[..len]);
        let buf = self.buf.as_mut();
        buf[len..len + CRC_LEN].copy_from_slice(&crc.to_le_bytes());
        let n = cobs::try_encode(&buf[..len + CRC_LEN], out).map_err(|_| FrameError::Full)?;
        if n >= out.len() {
            return Err(FrameError::Full);
        }
        out[n] = 0;
        Ok(n + 1)
    }
}

/// Encoded size of a frame whose payload buffer is `payload_buf` bytes.
pub const fn max_encoded_len(payload_buf: usize) -> usize {
    payload_buf + payload_buf / 254 + 2
}

/// Counters a [`Deframer`] keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeframeStats {
    pub frames: u64,
    pub oversize: u64,
    pub cobs: u64,
    pub short: u64,
    pub crc: u64,
}

impl DeframeStats {
    pub fn errors(&self) -> u64 {
        self.oversize + self.cobs + self.short + self.crc
    }
}

/// Splits a byte stream into checked frame payloads.
///
/// Memory is the caller's buffer and nothing else, whatever arrives.
pub struct Deframer<B> {
    buf: B,
    len: usize,
    discarding: bool,
    pub stats: DeframeStats,
}

impl<B: AsMut<[u8]>> Deframer<B> {
    /// `buf` bounds the encoded frame: use [`max_encoded_len`] of the
    /// maximum payload.
    pub fn new(buf: B) -> Self {
        Self { buf, len: 0, discarding: false, stats: DeframeStats::default() }
    }

    /// Forgets a partial frame, as after a reconnect.
    pub fn reset(&mut self) {
        self.len = 0;
        self.discarding = false;
    }

    /// Feeds received bytes; calls `f` once per completed frame with its
    /// payload (CRC stripped) or the reason it was dropped.
    pub fn push(&mut self, mut data: &[u8], mut f: impl FnMut(Result<&[u8], FrameError>)) {
        while !data.is_empty() {
            let (chunk, end) = match data.iter().position(|&b| b == 0) {
                Some(i) => (&data[..i], true),
                None => (data, false),
            };
            data = if end { &data[chunk.len() + 1..] } else { &[] };
            if !self.discarding {
                let buf = self.buf.as_mut();
                if self.len + chunk.len() > buf.len() {
                    self.discarding = true;
                } else {
                    buf[self.len..self.len + chunk.len()].copy_from_slice(chunk);
                    self.len += chunk.len();
                }
            }
            if end {
                self.complete(&mut f);
            }
        }
    }

    fn complete(&mut self, f: &mut impl FnMut(Result<&[u8], FrameError>)) {
        let len = core::mem::take(&mut self.len);
        if core::mem::take(&mut self.discarding) {
            self.stats.oversize += 1;
            return f(Err(FrameError::Oversize));
        }
        if len == 0 {
            // Back-to-back zeros: a sender may use them to resynchronise.
            return;
        }
        let buf = &mut self.buf.as_mut()[..len];
        let n = match cobs::decode_in_place(buf) {
            Ok(n) => n,
            Err(_) => {
                self.stats.cobs += 1;
                return f(Err(FrameError::Cobs));
            }
        };
        if n < CRC_LEN {
            self.stats.short += 1;
            return f(Err(FrameError::Short));
        }
        let (payload, crc) = buf[..n].split_at(n - CRC_LEN);
        if crc32c(payload).to_le_bytes() != crc {
            self.stats.crc += 1;
            return f(Err(FrameError::Crc));
        }
        self.stats.frames += 1;
        f(Ok(payload))
    }
}

/// Decodes a payload: first its header, then items until it is exhausted.
pub struct FrameReader<'a> {
    rest: &'a [u8],
}

impl<'a> FrameReader<'a> {
    pub fn new(payload: &'a [u8]) -> Self {
        Self { rest: payload }
    }

    /// Decodes the header; call once, first.
    pub fn header<H: Deserialize<'a>>(&mut self) -> Result<H, FrameError> {
        self.take()
    }

    /// Decodes the next item, `None` at the end of the frame. After an
    /// error the rest of the frame is dropped.
    pub fn next_item<T: Deserialize<'a>>(&mut self) -> Option<Result<T, FrameError>> {
        if self.rest.is_empty() {
            None
        } else {
            Some(self.take())
        }
    }

    fn take<T: Deserialize<'a>>(&mut self) -> Result<T, FrameError> {
        match postcard::take_from_bytes(self.rest) {
            Ok((v, rest)) => {
                self.rest = rest;
                Ok(v)
            }
            Err(_) => {
                self.rest = &[];
                Err(FrameError::Decode)
            }
        }
    }
}
