//! Request frame buffers, reused across requests and connections.
//!
//! A produce request's frame is read into a fresh buffer, lives while its batches are appended
//! and freed when it is answered. glibc serves buffers of hundreds of KiB with `mmap` or from the
//! top of an arena that it trims again, so every such buffer was new memory: `perf` on a
//! 16-partition produce load (docs/benchmarks.md) showed a fifth of the broker's CPU in page
//! faults, zeroing and memory-cgroup charging under the socket read copying into it. Here a
//! frame of [`MIN_POOLED`] bytes or more is read into a buffer from a small free list; when the
//! last [`Bytes`] slice of the frame is dropped (the request answered, its batches written) the
//! buffer goes back to the list, its pages still mapped.
//!
//! The lists hold at most `keep` bytes in all (8 MiB in the broker): enough for the frames of a
//! busy connection's pipeline, so a steady load hardly allocates, while RSS stays bounded (idle
//! connections hold no buffer; a burst of huge frames is freed as before). Smaller frames come
//! from malloc's arenas, which already reuse their memory.

use std::sync::Mutex;

use bytes::Bytes;

/// Frames smaller than this are plain allocations: malloc keeps such sizes in its arenas.
pub(crate) const MIN_POOLED: usize = 64 * 1024;
/// Size classes are powers of two from [`MIN_POOLED`]: 64 KiB, 128 KiB, ... 8 MiB. Larger
/// frames are allocated and freed as before (rare, and keeping them would cost RSS).
const CLASSES: usize = 8;

/// The free buffers of one [`FramePool`], by size class.
struct Free {
    lists: [Vec<Vec<u8>>; CLASSES],
    bytes: usize,
}

/// Free frame buffers; see the module comment.
pub(crate) struct FramePool {
    free: Mutex<Free>,
    keep: usize,
}

/// The broker's frame buffers: at most 8 MiB of free buffers kept. Measured with librdkafka's
/// ~1 MB produce requests, 5 in flight: with 4 MiB kept 13-30% of frames still needed a new
/// buffer, with 8 MiB 0.2% (and the broker's peak RSS under that load fell, 26.8 to 19.7 MiB,
/// as pages are reused instead of faulted in anew).
pub(crate) static FRAMES: FramePool = FramePool::new(8 << 20);

/// The size class whose buffers all hold at least `len` bytes; `None` when `len` is outside
/// the pooled range.
fn class_for(len: usize) -> Option<usize> {
    if len < MIN_POOLED {
        return None;
    }
    let class = len.next_power_of_two().trailing_zeros() - MIN_POOLED.trailing_zeros();
    (class < CLASSES as u32).then_some(class as usize)
}

/// The class a buffer of `capacity` bytes goes back to: the largest whose size it holds.
fn class_of(capacity: usize) -> Option<usize> {
    if capacity < MIN_POOLED {
        return None;
    }
    let class = (usize::BITS - 1 - capacity.leading_zeros()) - MIN_POOLED.trailing_zeros();
    (class < CLASSES as u32).then_some(class as usize)
}

impl FramePool {
    /// An empty pool that keeps at most `keep` bytes of free buffers.
    pub(crate) const fn new(keep: usize) -> Self {
        FramePool {
            free: Mutex::new(Free {
                lists: [const { Vec::new() }; CLASSES],
                bytes: 0,
            }),
            keep,
        }
    }

    /// An empty buffer with room for at least `len` bytes: a kept one when there is one.
    pub(crate) fn take(&'static self, len: usize) -> FrameBuf {
        let Some(class) = class_for(len) else {
            return FrameBuf {
                buf: Vec::with_capacity(len),
                pool: None,
            };
        };
        let kept = {
            let mut free = self.lock();
            let buf = free.lists[class].pop();
            if let Some(b) = &buf {
                free.bytes -= b.capacity();
            }
            buf
        };
        let buf = kept.unwrap_or_else(|| Vec::with_capacity(MIN_POOLED << class));
        FrameBuf {
            buf,
            pool: Some(self),
        }
    }

    /// Bytes held in free buffers now.
    #[cfg(test)]
    fn free_bytes(&self) -> usize {
        self.lock().bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Free> {
        // The lists are consistent after any panic (a push or a pop), so poisoning is moot.
        self.free.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn give_back(&self, mut buf: Vec<u8>) {
        let Some(class) = class_of(buf.capacity()) else {
            return;
        };
        buf.clear();
        let mut free = self.lock();
        if free.bytes + buf.capacity() <= self.keep {
            free.bytes += buf.capacity();
            free.lists[class].push(buf);
        }
    }
}

/// A frame buffer being filled; [`FrameBuf::freeze`] makes it the request's [`Bytes`].
pub(crate) struct FrameBuf {
    buf: Vec<u8>,
    /// Where the buffer goes back when the frame is dropped (`None`: not pooled).
    pool: Option<&'static FramePool>,
}

impl FrameBuf {
    /// The buffer to read into (its capacity holds the requested length).
    pub(crate) fn vec(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// The frame as shared bytes; a pooled buffer returns to its pool when the last slice of
    /// them is dropped.
    pub(crate) fn freeze(mut self) -> Bytes {
        if self.pool.is_none() {
            return Bytes::from(std::mem::take(&mut self.buf));
        }
        Bytes::from_owner(self)
    }
}

impl AsRef<[u8]> for FrameBuf {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for FrameBuf {
    fn drop(&mut self) {
        if let Some(pool) = self.pool {
            pool.give_back(std::mem::take(&mut self.buf));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(keep: usize) -> &'static FramePool {
        Box::leak(Box::new(FramePool::new(keep)))
    }

    fn filled(pool: &'static FramePool, len: usize, byte: u8) -> Bytes {
        let mut b = pool.take(len);
        assert!(b.vec().capacity() >= len, "a buffer too small for {len}");
        assert!(b.vec().is_empty(), "a taken buffer still holds a frame");
        b.vec().resize(len, byte);
        b.freeze()
    }

    #[test]
    fn classes_hold_what_they_promise() {
        assert_eq!(class_for(MIN_POOLED - 1), None);
        assert_eq!(class_for(MIN_POOLED), Some(0));
        assert_eq!(class_for(MIN_POOLED + 1), Some(1));
        assert_eq!(class_for(8 << 20), Some(7));
        assert_eq!(class_for((8 << 20) + 1), None);
        assert_eq!(class_of(MIN_POOLED - 1), None);
        assert_eq!(class_of(MIN_POOLED), Some(0));
        assert_eq!(class_of(2 * MIN_POOLED - 1), Some(0));
        assert_eq!(class_of(2 * MIN_POOLED), Some(1));
        assert_eq!(class_of(16 << 20), None);
        // Every buffer a class hands out holds every length that maps to the class.
        for len in [MIN_POOLED, 100_000, 131_072, 131_073, 1 << 20, 5_000_000] {
            let class = class_for(len).expect("a pooled length");
            assert!(MIN_POOLED << class >= len);
            assert_eq!(class_of(MIN_POOLED << class), Some(class));
        }
    }

    #[test]
    fn a_dropped_frame_lends_its_memory_to_the_next() {
        let p = pool(4 << 20);
        let first = filled(p, 300_000, 1);
        assert_eq!(first.len(), 300_000);
        assert!(first.iter().all(|&b| b == 1));
        let addr = first.as_ptr();
        // A slice keeps the buffer out of the pool; dropping the last one gives it back.
        let slice = first.slice(10..20);
        drop(first);
        assert_eq!(p.free_bytes(), 0);
        drop(slice);
        assert_eq!(p.free_bytes(), 512 * 1024);
        let second = filled(p, 400_000, 2);
        assert_eq!(second.as_ptr(), addr, "the freed buffer was not reused");
        assert_eq!(second.len(), 400_000);
        assert_eq!(p.free_bytes(), 0);
    }

    #[test]
    fn the_pool_keeps_no_more_than_its_limit() {
        let p = pool(1 << 20);
        let frames: Vec<Bytes> = (0..5).map(|_| filled(p, 300_000, 0)).collect();
        drop(frames);
        // 512 KiB buffers: two fit under 1 MiB, the rest were freed.
        assert_eq!(p.free_bytes(), 1 << 20);
    }

    #[test]
    fn small_and_huge_frames_are_not_pooled() {
        let p = pool(64 << 20);
        drop(filled(p, 1_000, 0));
        drop(filled(p, 9 << 20, 0));
        assert_eq!(p.free_bytes(), 0);
        let empty = filled(p, 0, 0);
        assert!(empty.is_empty());
    }
}
