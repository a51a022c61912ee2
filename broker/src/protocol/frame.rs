//! Response frames in parts, so that a fetch's record bytes go to the socket from the buffer
//! the log read them into, instead of being copied into the encoded response first.
//!
//! `kafka-protocol` encodes into any [`ByteBufMut`] and writes a record set with one
//! `put_slice` of the `Bytes` it was given. [`SpliceBuf`] is told which `Bytes` those are
//! (large record sets, in encoding order); when `put_slice` is handed exactly one of them it
//! closes the part encoded so far and keeps a reference to the record bytes as the next part,
//! copying nothing. Everything else is copied as usual. The writer sends the parts with one
//! vectored write (`conn.rs`). Pure code: no sockets here.
//!
//! A record set may also be a file region (`log::region`): the response is encoded with a
//! stand-in of the region's length in its place ([`placeholder`]: static zeros, never read),
//! which [`SpliceBuf`] turns into a [`Piece::File`] the writer sends with `sendfile`.

use std::ops::Range;

use bytes::buf::UninitSlice;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::buf::ByteBufMut;

use crate::log::{FileRegion, REGION_MAX};

/// Record sets shorter than this are copied: an extra part costs an iovec and a reference
/// count, which only pays off for bytes that are expensive to copy.
pub const SPLICE_MIN: usize = 16 * 1024;

/// One response frame (length prefix included), in one or more parts written in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    One(Bytes),
    Parts(Vec<Bytes>),
    /// Parts in memory and file regions, in order.
    Files(Vec<Piece>),
}

/// A stretch of a [`Frame::Files`]: parts in memory (one vectored write) or a file region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Mem(Vec<Bytes>),
    File(FileRegion),
}

/// Zeros that stand in for a file region while a response is encoded. In the zero-initialised
/// data of the binary: no memory is used unless it is read, and nothing reads it.
static ZEROS: [u8; REGION_MAX] = [0; REGION_MAX];

/// A stand-in of `len` bytes for a file region in a response being encoded (`None` past
/// [`REGION_MAX`]). The encoder only measures it and hands it to [`SpliceBuf::put_slice`],
/// which recognises it by its place in the splice list, not by its (shared) address alone.
pub fn placeholder(len: usize) -> Option<Bytes> {
    ZEROS.get(..len).map(Bytes::from_static)
}

/// What a [`SpliceBuf`] keeps by reference instead of copying, in encoding order.
#[derive(Debug, Clone)]
pub enum Splice {
    /// Record bytes in memory, kept as a part of their own.
    Keep(Bytes),
    /// A file region and the [`placeholder`] the response carries in its place.
    File { stand_in: Bytes, region: FileRegion },
}

impl Splice {
    pub fn bytes(&self) -> &Bytes {
        match self {
            Splice::Keep(b) | Splice::File { stand_in: b, .. } => b,
        }
    }
}

impl From<Bytes> for Frame {
    fn from(b: Bytes) -> Self {
        Frame::One(b)
    }
}

impl Frame {
    /// Bytes on the wire.
    pub fn len(&self) -> usize {
        let mem = |p: &[Bytes]| p.iter().map(Bytes::len).sum::<usize>();
        match self {
            Frame::One(b) => b.len(),
            Frame::Parts(p) => mem(p),
            Frame::Files(pieces) => pieces
                .iter()
                .map(|piece| match piece {
                    Piece::Mem(p) => mem(p),
                    Piece::File(r) => r.len,
                })
                .sum(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of the frame in file regions.
    pub fn file_len(&self) -> usize {
        match self {
            Frame::Files(pieces) => pieces
                .iter()
                .map(|p| match p {
                    Piece::File(r) => r.len,
                    Piece::Mem(_) => 0,
                })
                .sum(),
            _ => 0,
        }
    }

    /// The frame's stretches in order: its parts in memory as one piece, or its pieces.
    pub fn pieces(&self) -> Vec<PieceRef<'_>> {
        match self {
            Frame::One(b) => vec![PieceRef::Mem(std::slice::from_ref(b))],
            Frame::Parts(p) => vec![PieceRef::Mem(p)],
            Frame::Files(pieces) => pieces
                .iter()
                .map(|piece| match piece {
                    Piece::Mem(p) => PieceRef::Mem(p),
                    Piece::File(r) => PieceRef::File(r),
                })
                .collect(),
        }
    }

    /// The frame as one buffer, file regions read (tests and the rare caller that needs it
    /// contiguous).
    pub fn to_bytes(&self) -> std::io::Result<Bytes> {
        if let Frame::One(b) = self {
            return Ok(b.clone());
        }
        let mut all = BytesMut::with_capacity(self.len());
        for piece in self.pieces() {
            match piece {
                PieceRef::Mem(p) => p.iter().for_each(|b| all.extend_from_slice(b)),
                PieceRef::File(r) => all.extend_from_slice(&r.read_all()?),
            }
        }
        Ok(all.freeze())
    }
}

/// A borrowed [`Piece`] (a plain frame is one stretch in memory).
pub enum PieceRef<'a> {
    Mem(&'a [Bytes]),
    File(&'a FileRegion),
}

/// A reader over parts in order (for a vectored write).
pub fn reader(parts: &[Bytes]) -> PartsReader<'_> {
    let mut r = PartsReader {
        parts,
        at: 0,
        off: 0,
    };
    // `Buf::chunk` may be empty only at the end: skip leading empty parts now.
    r.settle();
    r
}

/// A [`Buf`] over a frame's parts, without joining them.
pub struct PartsReader<'a> {
    parts: &'a [Bytes],
    /// The part being read and the position in it.
    at: usize,
    off: usize,
}

impl PartsReader<'_> {
    /// Skips finished (and empty) parts, so `chunk` is never empty before the end.
    fn settle(&mut self) {
        while self.at < self.parts.len() && self.off >= self.parts[self.at].len() {
            self.at += 1;
            self.off = 0;
        }
    }
}

impl Buf for PartsReader<'_> {
    fn remaining(&self) -> usize {
        let rest: usize = self.parts.iter().skip(self.at).map(Bytes::len).sum();
        rest - self.off.min(rest)
    }

    fn chunk(&self) -> &[u8] {
        self.parts
            .get(self.at)
            .and_then(|p| p.get(self.off..))
            .unwrap_or(&[])
    }

    fn advance(&mut self, mut cnt: usize) {
        while cnt > 0 && self.at < self.parts.len() {
            let left = self.parts[self.at].len() - self.off;
            let step = left.min(cnt);
            self.off += step;
            cnt -= step;
            self.settle();
        }
        self.settle();
    }

    fn chunks_vectored<'b>(&'b self, dst: &mut [std::io::IoSlice<'b>]) -> usize {
        let mut n = 0;
        let mut off = self.off;
        for part in self.parts.iter().skip(self.at) {
            if n == dst.len() {
                break;
            }
            if let Some(rest) = part.get(off..).filter(|r| !r.is_empty()) {
                dst[n] = std::io::IoSlice::new(rest);
                n += 1;
            }
            off = 0;
        }
        n
    }
}

/// An encoding buffer that keeps chosen `Bytes` by reference instead of copying them.
pub struct SpliceBuf {
    /// Pieces closed so far (only when a file region was met).
    pieces: Vec<Piece>,
    /// Parts closed so far since the last file region, and the length of everything closed.
    done: Vec<Bytes>,
    done_len: usize,
    /// The part being encoded.
    head: BytesMut,
    /// What to keep by reference, in the order the encoder writes it.
    splice: Vec<Splice>,
    next: usize,
    /// Set when the encoder sought or read back past a closed part (no message encoder does;
    /// batch encoders do): the result cannot be trusted, [`SpliceBuf::finish`] refuses it.
    broken: bool,
    scratch: Vec<u8>,
}

impl SpliceBuf {
    /// A buffer whose first part has room for `head_capacity` bytes, keeping `splice` (in
    /// encoding order) by reference.
    pub fn new(head_capacity: usize, splice: Vec<Splice>) -> Self {
        SpliceBuf {
            pieces: Vec::new(),
            done: Vec::with_capacity(2 * splice.len() + 1),
            done_len: 0,
            head: BytesMut::with_capacity(head_capacity),
            splice,
            next: 0,
            broken: false,
            scratch: Vec::new(),
        }
    }

    /// The encoded frame, or `None` when the encoder wrote something this buffer cannot keep
    /// in parts (the caller encodes into one buffer instead).
    pub fn finish(mut self) -> Option<Frame> {
        if self.broken {
            return None;
        }
        if self.done.is_empty() && self.pieces.is_empty() {
            return Some(Frame::One(self.head.freeze()));
        }
        if !self.head.is_empty() {
            self.done.push(self.head.freeze());
        }
        if self.pieces.is_empty() {
            return Some(Frame::Parts(self.done));
        }
        if !self.done.is_empty() {
            self.pieces.push(Piece::Mem(self.done));
        }
        Some(Frame::Files(self.pieces))
    }

    fn close_head(&mut self) {
        if !self.head.is_empty() {
            let rest = self.head.capacity() - self.head.len();
            let part = self.head.split().freeze();
            self.done_len += part.len();
            self.done.push(part);
            // What is left after the last record set is small: fields and tagged fields.
            self.head.reserve(rest.min(4096));
        }
    }
}

// `BufMut` is an unsafe trait (its `advance_mut` trusts the caller about initialised bytes);
// `kafka-protocol` encodes only into a `BufMut`, so keeping record sets by reference needs this
// impl. It is measured in docs/benchmarks.md (consume, zero-copy fetch).
// SAFETY: `remaining_mut`, `chunk_mut` and `advance_mut` are the head `BytesMut`'s own, so the
// head's `BufMut` contract is the one upheld: `advance_mut(cnt)` is only ever called by a caller
// that initialised `cnt` bytes of the `chunk_mut` it got, which is the head's. `put_slice` adds
// a spliced part only between two calls, never inside a `chunk_mut`/`advance_mut` pair.
#[allow(unsafe_code)]
unsafe impl BufMut for SpliceBuf {
    fn remaining_mut(&self) -> usize {
        self.head.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller initialised `cnt` bytes of `chunk_mut`, which is the head's (see
        // the impl's comment); the head's contract is the caller's.
        unsafe { self.head.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.head.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        if let Some(next) = self.splice.get(self.next) {
            let b = next.bytes();
            if b.len() == src.len() && std::ptr::eq(b.as_ptr(), src.as_ptr()) {
                let next = next.clone();
                self.next += 1;
                self.close_head();
                self.done_len += src.len();
                match next {
                    Splice::Keep(part) => self.done.push(part),
                    Splice::File { region, .. } => {
                        if !self.done.is_empty() {
                            self.pieces.push(Piece::Mem(std::mem::take(&mut self.done)));
                        }
                        self.pieces.push(Piece::File(region));
                    }
                }
                return;
            }
        }
        if !src.is_empty() && ZEROS.as_ptr_range().contains(&src.as_ptr()) {
            // A stand-in written out of its turn would go out as zeros.
            self.broken = true;
        }
        self.head.put_slice(src);
    }
}

impl ByteBufMut for SpliceBuf {
    fn offset(&self) -> usize {
        self.done_len + self.head.len()
    }

    fn seek(&mut self, offset: usize) {
        match offset.checked_sub(self.done_len) {
            Some(o) => self.head.resize(o, 0),
            None => self.broken = true,
        }
    }

    fn range(&mut self, r: Range<usize>) -> &mut [u8] {
        let local = r.start.checked_sub(self.done_len).and_then(|s| {
            let e = r.end.checked_sub(self.done_len)?;
            (s <= e && e <= self.head.len()).then_some(s..e)
        });
        match local {
            Some(l) => &mut self.head[l],
            None => {
                self.broken = true;
                self.scratch.clear();
                self.scratch.resize(r.end.saturating_sub(r.start), 0);
                &mut self.scratch
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::{FetchResponse, TopicName};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn response(records: &[Bytes]) -> FetchResponse {
        let partitions = records
            .iter()
            .enumerate()
            .map(|(i, r)| {
                PartitionData::default()
                    .with_partition_index(i as i32)
                    .with_high_watermark(7)
                    .with_records(Some(r.clone()))
            })
            .collect();
        FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
            .with_topic(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(partitions)])
    }

    fn contiguous(r: &FetchResponse, v: i16) -> Bytes {
        let mut b = BytesMut::new();
        r.encode(&mut b, v).expect("encode");
        b.freeze()
    }

    #[test]
    fn chosen_record_sets_become_parts_and_the_bytes_are_the_same() {
        let big = Bytes::from(vec![1u8; 40_000]);
        let small = Bytes::from(vec![2u8; 100]);
        let other = Bytes::from(vec![3u8; 50_000]);
        let resp = response(&[big.clone(), small.clone(), other.clone()]);
        for v in [4, 11, 12, 16] {
            let mut buf = SpliceBuf::new(
                64,
                vec![Splice::Keep(big.clone()), Splice::Keep(other.clone())],
            );
            resp.encode(&mut buf, v).expect("encode");
            let frame = buf.finish().expect("kept in parts");
            let Frame::Parts(parts) = &frame else {
                panic!("v{v}: expected parts, got one buffer");
            };
            // fields, big, fields + small + fields, other, then the tagged fields of v12 and
            // later (before v12 the response ends with the last record set)
            assert_eq!(parts.len(), if v >= 12 { 5 } else { 4 }, "v{v}");
            assert!(
                std::ptr::eq(parts[1].as_ptr(), big.as_ptr()),
                "v{v}: copied"
            );
            assert!(
                std::ptr::eq(parts[3].as_ptr(), other.as_ptr()),
                "v{v}: copied"
            );
            assert_eq!(
                frame.to_bytes().expect("in memory"),
                contiguous(&resp, v),
                "v{v}"
            );
            assert_eq!(frame.len(), resp.compute_size(v).expect("size"), "v{v}");
        }
    }

    /// A file holding `bytes` and a region over all of it.
    fn region_of(bytes: &[u8]) -> FileRegion {
        use std::io::Write;
        let mut f = tempfile::tempfile().expect("tempfile");
        f.write_all(b"leading bytes not in the region")
            .expect("write");
        f.write_all(bytes).expect("write");
        FileRegion {
            file: std::sync::Arc::new(f),
            path: std::sync::Arc::new("00000000000000000000.log".into()),
            pos: 31,
            len: bytes.len(),
        }
    }

    #[test]
    fn file_regions_become_pieces_and_the_frame_is_the_response_with_their_bytes() {
        let on_disk = Bytes::from((0..70_000u32).map(|i| i as u8).collect::<Vec<_>>());
        let region = region_of(&on_disk);
        let stand_in = placeholder(on_disk.len()).expect("stand-in");
        let big = Bytes::from(vec![1u8; 40_000]);
        let small = Bytes::from(vec![2u8; 100]);
        let sent = response(&[stand_in.clone(), big.clone(), small.clone()]);
        let real = response(&[on_disk.clone(), big.clone(), small]);
        for v in [4, 11, 12, 16] {
            let splice = vec![
                Splice::File {
                    stand_in: stand_in.clone(),
                    region: region.clone(),
                },
                Splice::Keep(big.clone()),
            ];
            let mut buf = SpliceBuf::new(64, splice);
            sent.encode(&mut buf, v).expect("encode");
            let frame = buf.finish().expect("pieces");
            let Frame::Files(pieces) = &frame else {
                panic!("v{v}: expected pieces, got {frame:?}");
            };
            assert!(matches!(&pieces[0], Piece::Mem(p) if p.len() == 1), "v{v}");
            assert_eq!(pieces[1], Piece::File(region.clone()), "v{v}");
            assert!(matches!(&pieces[2], Piece::Mem(p) if p.len() >= 2), "v{v}");
            assert_eq!(
                frame.to_bytes().expect("read"),
                contiguous(&real, v),
                "v{v}"
            );
            assert_eq!(frame.len(), real.compute_size(v).expect("size"), "v{v}");
        }
    }

    #[test]
    fn a_stand_in_out_of_its_turn_is_refused_not_sent_as_zeros() {
        let region = region_of(&[5u8; 20_000]);
        let stand_in = placeholder(20_000).expect("stand-in");
        // The response carries the stand-in, but the splice list does not name it.
        let resp = response(std::slice::from_ref(&stand_in));
        let mut buf = SpliceBuf::new(64, vec![Splice::Keep(Bytes::from(vec![1u8; 20_000]))]);
        resp.encode(&mut buf, 12).expect("encode");
        assert!(buf.finish().is_none());
        // Named, but a shorter one came first: the other is out of its turn.
        let resp = response(&[placeholder(100).expect("short"), stand_in.clone()]);
        let mut buf = SpliceBuf::new(64, vec![Splice::File { stand_in, region }]);
        resp.encode(&mut buf, 12).expect("encode");
        assert!(buf.finish().is_none());
        assert!(placeholder(REGION_MAX + 1).is_none());
    }

    #[test]
    fn bytes_equal_but_elsewhere_are_copied() {
        let big = Bytes::from(vec![1u8; 40_000]);
        let twin = Bytes::from(vec![1u8; 40_000]);
        let resp = response(&[twin]);
        let mut buf = SpliceBuf::new(64, vec![Splice::Keep(big)]);
        resp.encode(&mut buf, 12).expect("encode");
        let frame = buf.finish().expect("one buffer");
        assert!(matches!(frame, Frame::One(_)), "{frame:?}");
        assert_eq!(frame.to_bytes().expect("in memory"), contiguous(&resp, 12));
    }

    #[test]
    fn seeking_back_past_a_part_is_refused_not_misencoded() {
        let big = Bytes::from(vec![1u8; 40_000]);
        let mut buf = SpliceBuf::new(64, vec![Splice::Keep(big.clone())]);
        buf.put_slice(b"head");
        buf.put_slice(&big);
        assert_eq!(buf.offset(), 40_004);
        assert_eq!(
            buf.range(0..4).len(),
            4,
            "a slice of the asked length, not a panic"
        );
        assert!(buf.finish().is_none());

        let mut buf = SpliceBuf::new(64, vec![Splice::Keep(big.clone())]);
        buf.put_slice(&big);
        buf.seek(10);
        assert!(buf.finish().is_none());

        // Within the part being encoded, gaps work as in a BytesMut.
        let mut buf = SpliceBuf::new(64, vec![Splice::Keep(big.clone())]);
        buf.put_slice(&big);
        buf.put_slice(b"abcd");
        buf.range(40_001..40_003).copy_from_slice(b"XY");
        buf.seek(40_006);
        let frame = buf.finish().expect("parts");
        assert_eq!(&frame.to_bytes().expect("in memory")[40_000..], b"aXYd\0\0");
    }

    #[test]
    fn the_reader_walks_every_part_across_boundaries() {
        let frame = Frame::Parts(vec![
            Bytes::new(),
            Bytes::from_static(b"ab"),
            Bytes::new(),
            Bytes::from_static(b"cde"),
            Bytes::from_static(b"f"),
        ]);
        let Frame::Parts(parts) = &frame else {
            panic!("parts")
        };
        let mut r = reader(parts);
        assert_eq!(r.remaining(), 6);
        assert_eq!(r.chunk(), b"ab", "a leading empty part is skipped");
        let mut io = [std::io::IoSlice::new(&[]); 8];
        assert_eq!(
            r.chunks_vectored(&mut io),
            3,
            "empty parts are not handed out"
        );
        r.advance(3);
        assert_eq!(r.chunk(), b"de");
        assert_eq!(r.remaining(), 3);
        let mut io = [std::io::IoSlice::new(&[]); 1];
        assert_eq!(r.chunks_vectored(&mut io), 1);
        assert_eq!(&*io[0], b"de");
        let mut out = Vec::new();
        while r.has_remaining() {
            let c = r.chunk().to_vec();
            r.advance(c.len());
            out.extend(c);
        }
        assert_eq!(out, b"def");
        assert_eq!(r.remaining(), 0);
        assert_eq!(r.chunk(), b"");
    }
}
