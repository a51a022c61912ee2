//! CPU time and memory of processes from /proc: this process (the client's own cost) and the
//! brokers under test (`--watch-pid`), read at the edges of the measured window.

use std::fs;

use anyhow::{bail, Context, Result};

/// USER_HZ, the unit of utime/stime in /proc/<pid>/stat: fixed at 100 by the kernel's ABI on
/// every architecture Linux reports it for (`getconf CLK_TCK`), whatever CONFIG_HZ is.
const TICKS_PER_SECOND: f64 = 100.0;

/// utime + stime of `pid` ("self" for this process), in seconds, all threads included.
pub fn cpu_seconds(pid: &str) -> Result<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may hold spaces: split after it.
    let rest = stat
        .rsplit_once(") ")
        .map(|(_, r)| r)
        .with_context(|| format!("/proc/{pid}/stat has no ') '"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    if fields.len() < 13 {
        bail!("/proc/{pid}/stat: {} fields after the name", fields.len());
    }
    let utime: f64 = fields[11].parse().context("utime")?;
    let stime: f64 = fields[12].parse().context("stime")?;
    Ok((utime + stime) / TICKS_PER_SECOND)
}

/// A `Vm*` line of /proc/<pid>/status in KiB (VmRSS, VmHWM).
pub fn status_kib(pid: &str, key: &str) -> Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    for line in status.lines() {
        if let Some(v) = line.strip_prefix(key).and_then(|r| r.strip_prefix(':')) {
            let kib = v.trim().trim_end_matches("kB").trim();
            return kib
                .parse()
                .with_context(|| format!("{key} of {pid}: '{v}'"));
        }
    }
    bail!("/proc/{pid}/status has no {key}")
}

/// Resets VmHWM (the peak RSS) of `pid` to its current RSS, so that a later VmHWM is the peak
/// of the window that starts now (`5` in clear_refs, Linux 4.0+).
pub fn reset_peak(pid: &str) -> Result<()> {
    fs::write(format!("/proc/{pid}/clear_refs"), "5")
        .with_context(|| format!("resetting the peak RSS of {pid}"))
}

/// The processes whose CPU and memory a run reports beside its own (the brokers, the sink).
#[derive(Debug, Clone, Default)]
pub struct Watched {
    pids: Vec<String>,
}

/// CPU seconds summed over the watched processes.
#[derive(Debug, Clone, Copy)]
pub struct CpuMark {
    pub watched: f64,
    pub own: f64,
}

impl Watched {
    pub fn new(pids: &[u32]) -> Self {
        Self {
            pids: pids.iter().map(|p| p.to_string()).collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.pids.is_empty()
    }

    /// Starts a window: resets the peaks and reads the CPU counters.
    pub fn start(&self) -> Result<CpuMark> {
        for p in &self.pids {
            reset_peak(p)?;
        }
        self.mark()
    }

    pub fn mark(&self) -> Result<CpuMark> {
        let mut watched = 0.0;
        for p in &self.pids {
            watched += cpu_seconds(p)?;
        }
        Ok(CpuMark {
            watched,
            own: cpu_seconds("self")?,
        })
    }

    /// Sum of the watched processes' current RSS, MiB.
    pub fn rss_mib(&self) -> Result<f64> {
        self.sum_kib("VmRSS")
    }

    /// Sum of the watched processes' peak RSS since [`Self::start`], MiB.
    pub fn peak_mib(&self) -> Result<f64> {
        self.sum_kib("VmHWM")
    }

    fn sum_kib(&self, key: &str) -> Result<f64> {
        let mut kib = 0;
        for p in &self.pids {
            kib += status_kib(p, key)?;
        }
        Ok(kib as f64 / 1024.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cpu_and_memory_are_readable() {
        let c = cpu_seconds("self").expect("own stat");
        assert!(c >= 0.0);
        let rss = status_kib("self", "VmRSS").expect("own VmRSS");
        assert!(rss > 0);
        assert!(status_kib("self", "NoSuchKey").is_err());
    }

    #[test]
    fn peak_reset_and_window_work_on_own_process() {
        let me = std::process::id();
        let w = Watched::new(&[me]);
        let start = w.start().expect("start");
        assert!(w.peak_mib().expect("peak") > 0.0);
        let end = w.mark().expect("mark");
        assert!(end.watched >= start.watched && end.own >= start.own);
    }
}
