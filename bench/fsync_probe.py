#!/usr/bin/env python3
"""How long one durable 1 KiB append takes on this disk, by the way it is made durable.

Usage: bench/fsync_probe.py [--dir DIR] [--records N] [--gap-ms MS] [--rounds R]

Each mode writes N records of 1,100 bytes (a 1 KiB record and its batch overhead) to a new
file in DIR, one at a time, GAP-MS apart (a fixed-rate producer's spacing), and times what
makes each one durable:

  append        write at the end, then fdatasync (the file grows: a journal commit too)
  fallocate     the file preallocated with posix_fallocate first (unwritten extents)
  zeroed        the file written with zeros and fsynced first (an overwrite changes no
                metadata: what a preallocated, pre-zeroed segment would cost)
  dsync         the file opened O_DSYNC: the write itself is durable
  direct-dsync  O_DIRECT | O_DSYNC, 4 KiB aligned writes

Prints p50 / p99 / p99.9 / max in ms per mode and round. It answers whether a segment
preallocated so that an append changes no metadata would make `fsync: always` cheaper on this
disk (docs/benchmarks.md, 2026-12-05 12:00). Needs only Python 3 on Linux.
"""
import argparse
import mmap
import os
import time

RECORD = b"x" * 1100


def percentiles(xs):
    xs = sorted(xs)
    n = len(xs)
    return "p50 %.3f  p99 %.3f  p99.9 %.3f  max %.3f ms" % tuple(
        x * 1000 for x in (xs[n // 2], xs[int(n * 0.99)], xs[int(n * 0.999)], xs[-1])
    )


def run(mode, path, records, gap):
    if os.path.exists(path):
        os.unlink(path)
    flags = os.O_RDWR | os.O_CREAT
    if mode == "dsync":
        flags |= os.O_DSYNC
    if mode == "direct-dsync":
        flags |= os.O_DSYNC | os.O_DIRECT
    fd = os.open(path, flags)
    try:
        size = records * 4096
        if mode == "zeroed":
            os.write(fd, b"\0" * size)
            os.fsync(fd)
            os.lseek(fd, 0, os.SEEK_SET)
        elif mode == "fallocate":
            os.posix_fallocate(fd, 0, size)
            os.fsync(fd)
        aligned = mmap.mmap(-1, 4096)  # page-aligned, as O_DIRECT needs
        aligned.write(b"y" * 4096)
        took = []
        for i in range(records):
            t = time.perf_counter()
            if mode == "direct-dsync":
                os.pwrite(fd, aligned, i * 4096)
            else:
                os.write(fd, RECORD)
                if mode != "dsync":
                    os.fdatasync(fd)
            took.append(time.perf_counter() - t)
            time.sleep(gap)
        return took
    finally:
        os.close(fd)
        os.unlink(path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", default="/tmp")
    ap.add_argument("--records", type=int, default=3000)
    ap.add_argument("--gap-ms", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    path = os.path.join(a.dir, "sluice-fsync-probe.%d" % os.getpid())
    for r in range(1, a.rounds + 1):
        for mode in ("append", "fallocate", "zeroed", "dsync", "direct-dsync"):
            took = run(mode, path, a.records, a.gap_ms / 1000)
            print("round %d  %-12s %s" % (r, mode, percentiles(took)), flush=True)


if __name__ == "__main__":
    main()
