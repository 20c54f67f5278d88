//! Framing: resynchronisation after corrupt, truncated, garbage and
//! oversize input, `DeframeStats`, and independence from how the byte
//! stream is chunked.

use dpu_wire::crc32c::crc32c;
use dpu_wire::framing::{max_encoded_len, DeframeStats};
use dpu_wire::*;

// ------------------------------------------------------------ helpers --

/// Small deterministic PRNG (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn heartbeat(seq: u32) -> Vec<u8> {
    frame(&HostHeader { seq, msg: HostMsg::Heartbeat { uptime_ms: seq as u64 * 1000 } }, &[])
}

fn delete_op(i: u32) -> Op {
    Op::Delete(Key::Neighbour(NeighbourKey { ifindex: i, ip: Ip::V4([10, 0, (i >> 8) as u8, i as u8]) }))
}

/// A batch frame with `n` ops; payloads contain plenty of zero bytes.
fn batch(seq: u32, n: u32) -> Vec<u8> {
    let ops: Vec<Op> = (0..n).map(delete_op).collect();
    frame(&HostHeader { seq, msg: HostMsg::Batch }, &ops)
}

fn frame(h: &HostHeader, ops: &[Op]) -> Vec<u8> {
    let mut b = FrameBuilder::new(vec![0u8; MAX_FRAME]);
    b.start(h).expect("header");
    for op in ops {
        b.push(op).expect("op fits");
    }
    let mut out = vec![0u8; max_encoded_len(MAX_FRAME)];
    let n = b.finish(&mut out).expect("finish");
    out.truncate(n);
    out
}

/// What a Deframer reported: decoded seq numbers (for good frames) or the
/// error.
#[derive(Debug, PartialEq, Eq, Clone)]
enum Ev {
    Frame(u32, Vec<u8>),
    Err(FrameError),
}

fn ev(r: Result<&[u8], FrameError>) -> Ev {
    match r {
        Ok(p) => {
            let mut rd = FrameReader::new(p);
            let h: HostHeader = rd.header().expect("a good frame decodes");
            while let Some(it) = rd.next_item::<Op>() {
                it.expect("op decodes");
            }
            Ev::Frame(h.seq, p.to_vec())
        }
        Err(e) => Ev::Err(e),
    }
}

fn feed_chunks(buf_len: usize, stream: &[u8], chunks: &[usize]) -> (Vec<Ev>, DeframeStats) {
    let mut d = Deframer::new(vec![0u8; buf_len]);
    let mut out = Vec::new();
    let mut rest = stream;
    let mut i = 0;
    while !rest.is_empty() {
        let n = chunks[i % chunks.len()].clamp(1, rest.len());
        i += 1;
        d.push(&rest[..n], |r| out.push(ev(r)));
        rest = &rest[n..];
    }
    (out, d.stats)
}

fn feed(stream: &[u8]) -> (Vec<Ev>, DeframeStats) {
    feed_chunks(max_encoded_len(MAX_FRAME), stream, &[usize::MAX])
}

fn seqs(evs: &[Ev]) -> Vec<Result<u32, FrameError>> {
    evs.iter()
        .map(|e| match e {
            Ev::Frame(s, _) => Ok(*s),
            Ev::Err(e) => Err(*e),
        })
        .collect()
}

/// Offsets of the COBS code bytes of an encoded frame (without its zero).
fn code_positions(enc: &[u8]) -> Vec<usize> {
    let mut pos = Vec::new();
    let mut i = 0;
    while i < enc.len() {
        pos.push(i);
        i += enc[i] as usize;
    }
    pos
}

/// Independent COBS encoder (no delimiter).
fn cobs_encode(raw: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    let mut code_at = 0;
    for &b in raw {
        if b != 0 {
            out.push(b);
        }
        if b == 0 || out.len() - code_at == 0xff {
            out[code_at] = (out.len() - code_at) as u8;
            code_at = out.len();
            out.push(0);
        }
    }
    out[code_at] = (out.len() - code_at) as u8;
    out
}

/// Independent COBS decoder for checking the encoder.
fn cobs_decode(enc: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < enc.len() {
        let code = enc[i] as usize;
        assert!(code != 0 && i + code <= enc.len(), "bad COBS at {i}");
        out.extend_from_slice(&enc[i + 1..i + code]);
        i += code;
        if code != 0xff && i < enc.len() {
            out.push(0);
        }
    }
    out
}

// -------------------------------------------------------------- tests --

#[test]
fn frame_format_is_cobs_of_payload_and_crc() {
    for f in [heartbeat(1), batch(2, 1), batch(3, 300)] {
        let (body, zero) = f.split_at(f.len() - 1);
        assert_eq!(zero, [0]);
        assert!(!body.contains(&0));
        let raw = cobs_decode(body);
        assert_eq!(cobs_encode(&raw), body, "canonical COBS");
        let (payload, crc) = raw.split_at(raw.len() - 4);
        assert_eq!(crc, crc32c(payload).to_le_bytes());
        let (evs, _) = feed(&f);
        assert!(matches!(&evs[..], [Ev::Frame(_, p)] if p == payload), "{evs:?}");
    }
}

#[test]
fn good_frames_in_sequence() {
    let mut s = Vec::new();
    for i in 1..=50 {
        s.extend(if i & 1 == 0 { heartbeat(i) } else { batch(i, i * 7) });
    }
    let (evs, st) = feed(&s);
    assert_eq!(seqs(&evs), (1..=50).map(Ok).collect::<Vec<_>>());
    assert_eq!(st, DeframeStats { frames: 50, ..Default::default() });
}

#[test]
fn corrupted_data_byte_costs_one_frame() {
    let mut a = batch(1, 20);
    let codes = code_positions(&a[..a.len() - 1]);
    let data = (a.len() / 2..a.len() - 1).find(|i| !codes.contains(i)).expect("a data byte");
    a[data] = if a[data] == 0xff { 0xfe } else { a[data] + 1 };
    let mut s = a;
    s.extend(heartbeat(2));
    let (evs, st) = feed(&s);
    assert_eq!(seqs(&evs), vec![Err(FrameError::Crc), Ok(2)]);
    assert_eq!(st, DeframeStats { frames: 1, crc: 1, ..Default::default() });
}

#[test]
fn corrupted_code_byte_costs_one_frame() {
    let mut a = heartbeat(1);
    assert!(a.len() < 0xfe);
    a[0] = 0xfe; // points past the end of the frame
    let mut s = a;
    s.extend(heartbeat(2));
    let (evs, st) = feed(&s);
    assert_eq!(seqs(&evs), vec![Err(FrameError::Cobs), Ok(2)]);
    assert_eq!(st, DeframeStats { frames: 1, cobs: 1, ..Default::default() });
}

#[test]
fn every_single_byte_corruption_is_detected() {
    let good = batch(1, 30);
    let expected = feed(&heartbeat(2)).0.remove(0);
    let mut total = DeframeStats::default();
    for i in 0..good.len() - 1 {
        for delta in [1u8, 0x80, 0xff] {
            let mut bad = good.clone();
            bad[i] ^= delta;
            bad.extend(heartbeat(2));
            let (evs, st) = feed(&bad);
            // Whatever the corruption did (even splitting the frame at a new
            // zero), the corrupt frame is an error and the next one arrives.
            assert_eq!(evs.last(), Some(&expected));
            assert!(evs[..evs.len() - 1].iter().all(|e| matches!(e, Ev::Err(_))), "byte {i}: {evs:?}");
            assert_eq!(st.frames, 1);
            assert_eq!(st.errors(), evs.len() as u64 - 1);
            total.crc += st.crc;
            total.cobs += st.cobs;
            total.short += st.short;
        }
    }
    assert!(total.crc > 0 && total.cobs > 0, "{total:?}");
}

#[test]
fn truncated_frame_merges_with_the_next_and_the_one_after_arrives() {
    let a = batch(1, 40);
    let cut = &a[..a.len() / 2]; // tail and delimiter lost
    let mut s = cut.to_vec();
    s.extend(heartbeat(2)); // merges with the cut frame: lost as well
    s.extend(heartbeat(3));
    let (evs, st) = feed(&s);
    assert_eq!(evs.len(), 2);
    assert!(matches!(evs[0], Ev::Err(FrameError::Crc | FrameError::Cobs)), "{evs:?}");
    assert_eq!(seqs(&evs)[1], Ok(3));
    assert_eq!(st.frames, 1);
    assert_eq!(st.errors(), 1);
}

#[test]
fn truncated_frame_then_garbage_then_delimiter() {
    let a = batch(1, 40);
    let mut rng = Rng(7);
    for cut in [1, 2, 5, a.len() / 3, a.len() - 2] {
        let mut s = a[..cut].to_vec();
        s.extend(rng.bytes(37).into_iter().map(|b| b | 1)); // no zeros
        s.push(0);
        s.extend(heartbeat(2));
        let (evs, st) = feed(&s);
        assert_eq!(evs.len(), 2, "cut {cut}: {evs:?}");
        assert!(matches!(evs[0], Ev::Err(_)));
        assert_eq!(seqs(&evs)[1], Ok(2));
        assert_eq!((st.frames, st.errors()), (1, 1));
    }
}

#[test]
fn sender_leading_zero_saves_the_frame_after_a_truncation() {
    // A sender that starts every frame with an extra zero loses only the
    // truncated frame: back-to-back zeros are ignored otherwise.
    let a = batch(1, 40);
    let mut s = vec![0];
    s.extend_from_slice(&a[..a.len() - 10]);
    s.push(0);
    s.extend(heartbeat(2));
    s.push(0);
    s.extend(heartbeat(3));
    let (evs, st) = feed(&s);
    assert_eq!(seqs(&evs)[1..], [Ok(2), Ok(3)]);
    assert!(matches!(evs[0], Ev::Err(_)));
    assert_eq!((st.frames, st.errors()), (2, 1));
}

#[test]
fn short_frames_are_reported() {
    // Decode to 0, 2 and 3 bytes: shorter than the CRC.
    let s = [&[0x01u8, 0][..], &[0x03, b'a', b'b', 0], &[0x02, 0x07, 0x02, 0x09, 0]].concat();
    let (evs, st) = feed(&s);
    assert_eq!(seqs(&evs), vec![Err(FrameError::Short); 3]);
    assert_eq!(st, DeframeStats { short: 3, ..Default::default() });
    // Exactly a CRC of an empty payload: a frame with an empty payload.
    let s = [cobs_encode(&crc32c(&[]).to_le_bytes()), vec![0]].concat();
    let mut d = Deframer::new([0u8; 16]);
    let mut got = Vec::new();
    d.push(&s, |r| got.push(r.map(<[u8]>::to_vec)));
    assert_eq!(got, vec![Ok(vec![])]);
    // An empty payload is not a header.
    assert_eq!(FrameReader::new(&[]).header::<HostHeader>(), Err(FrameError::Decode));
}

#[test]
fn random_garbage_then_good_frames() {
    let mut rng = Rng(0x1234_5678);
    for round in 0..50 {
        let len = rng.below(3000) + 1;
        let mut s = rng.bytes(len);
        // Some rounds with many zeros, some with none.
        if round % 3 == 0 {
            for b in s.iter_mut() {
                if *b < 64 {
                    *b = 0;
                }
            }
        }
        s.push(0);
        s.extend(batch(1, 3));
        s.extend(heartbeat(2));
        let (evs, st) = feed(&s);
        let n = evs.len();
        assert!(n >= 2);
        assert_eq!(seqs(&evs)[n - 2..], [Ok(1), Ok(2)], "round {round}");
        // Garbage only ever produces errors (a CRC match by chance is
        // possible in theory, but not with this seed).
        assert!(evs[..n - 2].iter().all(|e| matches!(e, Ev::Err(_))));
        assert_eq!(st.frames, 2);
        assert_eq!(st.errors(), n as u64 - 2);
    }
}

#[test]
fn oversize_frame_is_skipped() {
    let buf = 64;
    let big = batch(1, 30);
    assert!(big.len() - 1 > buf);
    let small = heartbeat(2);
    assert!(small.len() - 1 <= buf);
    let s = [small.clone(), big.clone(), small.clone(), big.clone(), big, small].concat();
    for chunks in [&[usize::MAX][..], &[1], &[3, 17, 64, 65, 1]] {
        let (evs, st) = feed_chunks(buf, &s, chunks);
        assert_eq!(
            seqs(&evs),
            vec![
                Ok(2),
                Err(FrameError::Oversize),
                Ok(2),
                Err(FrameError::Oversize),
                Err(FrameError::Oversize),
                Ok(2)
            ]
        );
        assert_eq!(st, DeframeStats { frames: 3, oversize: 3, ..Default::default() });
    }
}

#[test]
fn oversize_boundary() {
    let f = batch(1, 5);
    let body = f.len() - 1;
    // A frame exactly the buffer's size fits; one byte less does not.
    let (evs, st) = feed_chunks(body, &f, &[usize::MAX]);
    assert_eq!(seqs(&evs), vec![Ok(1)]);
    assert_eq!(st.frames, 1);
    let (evs, st) = feed_chunks(body - 1, &f, &[1]);
    assert_eq!(seqs(&evs), vec![Err(FrameError::Oversize)]);
    assert_eq!(st.oversize, 1);
    // A zero-sized buffer rejects every frame, ignores lone zeros.
    let (evs, st) = feed_chunks(0, &[&[0u8, 0][..], &f, &f].concat(), &[2]);
    assert_eq!(seqs(&evs), vec![Err(FrameError::Oversize); 2]);
    assert_eq!(st.errors(), 2);
}

#[test]
fn stats_count_each_case() {
    let mut crc_bad = heartbeat(10);
    let codes = code_positions(&crc_bad[..crc_bad.len() - 1]);
    let i = (1..crc_bad.len() - 1).find(|i| !codes.contains(i)).expect("data byte");
    crc_bad[i] = crc_bad[i].wrapping_add(1).max(1);
    let s = [
        heartbeat(1),
        crc_bad,
        vec![0x05, 1, 0],    // cobs
        vec![0x03, 9, 9, 0], // short
        batch(2, 200),       // oversize with a 256-byte buffer
        vec![0, 0, 0],       // ignored
        heartbeat(3),
    ]
    .concat();
    let (evs, st) = feed_chunks(256, &s, &[5, 1, 300, 2]);
    assert_eq!(
        seqs(&evs),
        vec![
            Ok(1),
            Err(FrameError::Crc),
            Err(FrameError::Cobs),
            Err(FrameError::Short),
            Err(FrameError::Oversize),
            Ok(3)
        ]
    );
    assert_eq!(st, DeframeStats { frames: 2, oversize: 1, cobs: 1, short: 1, crc: 1 });
    assert_eq!(st.errors(), 4);
}

#[test]
fn chunking_does_not_change_the_result() {
    let mut rng = Rng(99);
    let mut s = vec![0, 0];
    for i in 1..=40u32 {
        match i % 4 {
            0 => s.extend(heartbeat(i)),
            1 => s.extend(batch(i, rng.below(400) as u32)), // long frames: 0xff COBS groups
            2 => {
                let mut f = batch(i, 5);
                let k = rng.below(f.len() - 1);
                f[k] = f[k].wrapping_add(1).max(1); // corrupt
                s.extend(f);
            }
            _ => {
                let n = rng.below(50);
                s.extend(rng.bytes(n));
                s.push(0);
            }
        }
    }
    let whole = feed(&s);
    assert!(whole.0.iter().filter(|e| matches!(e, Ev::Frame(..))).count() >= 20);
    assert_eq!(feed_chunks(max_encoded_len(MAX_FRAME), &s, &[1]), whole, "one byte at a time");
    for seed in 1..30 {
        let mut r = Rng(seed);
        let chunks: Vec<usize> = (0..64).map(|_| 1 + r.below(if seed & 1 == 0 { 8 } else { 700 })).collect();
        assert_eq!(feed_chunks(max_encoded_len(MAX_FRAME), &s, &chunks), whole, "seed {seed}");
    }
    // Two byte chunks that split a frame right before its delimiter.
    assert_eq!(feed_chunks(max_encoded_len(MAX_FRAME), &s, &[2]), whole);
}

#[test]
fn back_to_back_zeros_are_ignored() {
    let s = [vec![0; 5], heartbeat(1), vec![0, 0], heartbeat(2), vec![0; 100]].concat();
    for chunks in [&[usize::MAX][..], &[1], &[2, 3]] {
        let (evs, st) = feed_chunks(512, &s, chunks);
        assert_eq!(seqs(&evs), vec![Ok(1), Ok(2)]);
        assert_eq!(st, DeframeStats { frames: 2, ..Default::default() });
    }
}

#[test]
fn reset_forgets_a_partial_frame() {
    let a = batch(1, 10);
    let mut d = Deframer::new(vec![0u8; 1024]);
    let mut evs = Vec::new();
    d.push(&a[..a.len() / 2], |r| evs.push(ev(r)));
    d.reset();
    d.push(&heartbeat(2), |r| evs.push(ev(r)));
    assert_eq!(seqs(&evs), vec![Ok(2)]);
    // Reset also ends discarding an oversize frame.
    let mut d = Deframer::new(vec![0u8; 16]);
    let mut evs = Vec::new();
    d.push(&a[..a.len() - 1], |r| evs.push(ev(r)));
    d.reset();
    d.push(&heartbeat(3), |r| evs.push(ev(r)));
    assert_eq!(seqs(&evs), vec![Ok(3)]);
    assert_eq!(d.stats.errors(), 0);
}

#[test]
fn frame_builder_limits() {
    // A payload buffer too small for the header.
    let mut b = FrameBuilder::new([0u8; 6]);
    assert_eq!(
        b.start(&HostHeader { seq: u32::MAX, msg: HostMsg::Heartbeat { uptime_ms: u64::MAX } }),
        Err(FrameError::Full)
    );
    assert!(b.is_empty());
    // Exactly full: header + items + CRC == buffer.
    let h = HostHeader { seq: 1, msg: HostMsg::Batch };
    let hlen = postcard::to_allocvec(&h).expect("encode").len();
    let op = delete_op(1);
    let olen = postcard::to_allocvec(&op).expect("encode").len();
    let cap = hlen + 3 * olen + 4;
    let mut b = FrameBuilder::new(vec![0u8; cap]);
    b.start(&h).expect("header");
    for _ in 0..3 {
        b.push(&op).expect("fits");
    }
    assert_eq!(b.push(&op), Err(FrameError::Full));
    assert_eq!((b.items(), b.len()), (3, cap - 4));
    // The output buffer must hold the encoding.
    let mut small = vec![0u8; cap];
    assert_eq!(b.finish(&mut small), Err(FrameError::Full));
    let mut out = vec![0u8; max_encoded_len(cap)];
    let n = b.finish(&mut out).expect("finish");
    let (evs, _) = feed(&out[..n]);
    assert_eq!(seqs(&evs), vec![Ok(1)]);
    // start() discards an unfinished frame.
    b.start(&h).expect("header");
    assert_eq!((b.items(), b.len()), (0, hlen));
    // A maximum-size frame of non-zero bytes still fits max_encoded_len.
    let mut b = FrameBuilder::new(vec![0u8; MAX_FRAME]);
    b.start(&h).expect("header");
    let long = Op::Delete(Key::Flow(u64::MAX)); // no zero bytes
    while b.push(&long).is_ok() {}
    let mut out = vec![0u8; MAX_ENCODED_FRAME];
    let n = b.finish(&mut out).expect("finish");
    assert!(n <= MAX_ENCODED_FRAME);
    let (evs, _) = feed(&out[..n]);
    assert_eq!(seqs(&evs), vec![Ok(1)]);
}

/// `finish` slices `buf[len..len + 4]` without checking that the payload
/// buffer holds a CRC.
#[test]
fn finish_with_a_buffer_smaller_than_the_crc_fails_cleanly() {
    let mut b = FrameBuilder::new([0u8; 2]);
    assert_eq!(b.start(&HostHeader { seq: 1, msg: HostMsg::StatsRequest }), Err(FrameError::Full));
    let mut out = [0u8; 16];
    assert_eq!(b.finish(&mut out), Err(FrameError::Full));
}
