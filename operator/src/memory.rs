//! Giving freed heap memory back to the system.
//!
//! glibc's malloc keeps what a burst of reconciles freed (500 MessageQueues created at once:
//! request bodies, decoded watch events, connection buffers) mapped in its arenas, and returns
//! it only from the top of each heap. The operator's RSS then stays at the burst's peak while
//! the live heap is far smaller: 80.7 MiB before `malloc_trim(0)`, 34.6 MiB after, in the probe
//! of docs/benchmarks.md. So a running operator trims now and then. musl (the static image)
//! unmaps freed memory by itself and has no `malloc_trim`; there this does nothing.

use std::time::Duration;

/// Returns the free memory at the top of, and the free pages inside, every malloc arena to the
/// system. True when some was returned; false when none was, or on allocators without it.
#[allow(unsafe_code)]
pub fn trim() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim takes the allocator's own locks and only releases free memory;
        // it has no preconditions on the caller.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Trims every `every` until the task is dropped.
pub async fn trim_every(every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        // A few milliseconds for a heap of tens of MiB, with the arenas locked one at a time:
        // off the runtime's worker threads.
        let returned = tokio::task::spawn_blocking(trim).await.unwrap_or(false);
        tracing::trace!(returned, "malloc_trim");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn trim_returns_memory_a_large_free_left_in_the_heap() {
        // Many small blocks (below the mmap threshold, so they live in the heap), then all but
        // the last freed: the last one pins the top of the heap, so only a trim inside the heap
        // can give the freed pages back.
        let blocks: Vec<Vec<u8>> = (0..4096).map(|i| vec![i as u8; 16 * 1024]).collect();
        let mut blocks = blocks;
        let last = blocks.pop();
        drop(blocks);
        assert!(trim(), "64 MiB freed inside the heap, nothing returned");
        drop(last);
    }
}
