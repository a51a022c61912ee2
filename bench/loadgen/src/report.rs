//! One result per run: a JSON object on one stdout line (what bench/suite.sh collects) and the
//! same fields as `key=value` on stderr for a person watching.

use serde_json::{Map, Value};

use crate::hist::Histogram;
use crate::procfs::{CpuMark, Watched};

const MIB: f64 = 1024.0 * 1024.0;
const GIB: f64 = 1024.0 * MIB;

#[derive(Debug, Default)]
pub struct Report {
    fields: Map<String, Value>,
}

fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

impl Report {
    pub fn new(mode: &str) -> Self {
        let mut r = Self::default();
        r.set("mode", mode);
        r
    }

    pub fn set(&mut self, key: &str, v: impl Into<Value>) -> &mut Self {
        self.fields.insert(key.to_string(), v.into());
        self
    }

    pub fn num(&mut self, key: &str, v: f64, digits: i32) -> &mut Self {
        if v.is_finite() {
            self.set(key, round(v, digits))
        } else {
            self.set(key, Value::Null)
        }
    }

    /// `{prefix}_p50_ms`, `_p99_ms`, `_p999_ms`, `_max_ms`, `_mean_ms` and `_count` of a
    /// histogram of nanoseconds.
    pub fn latency(&mut self, prefix: &str, h: &Histogram) -> &mut Self {
        let ms = |v: Option<u64>| v.map(|ns| round(ns as f64 / 1e6, 3));
        self.set(&format!("{prefix}_count"), h.count());
        for (name, q) in [("p50", 0.5), ("p99", 0.99), ("p999", 0.999)] {
            self.set(&format!("{prefix}_{name}_ms"), ms(h.quantile(q)));
        }
        self.set(&format!("{prefix}_max_ms"), ms(h.max()));
        self.set(
            &format!("{prefix}_mean_ms"),
            h.mean().map(|m| round(m / 1e6, 3)),
        );
        self
    }

    /// Throughput of `bytes` payload in `secs`, and the CPU both sides spent on it: this
    /// process (`client_*`) and the watched ones (`broker_*`), in seconds, cores and seconds
    /// per GiB of payload.
    pub fn throughput(
        &mut self,
        records: u64,
        bytes: u64,
        secs: f64,
        cpu: (CpuMark, CpuMark),
        watched: &Watched,
    ) -> &mut Self {
        self.set("records", records).set("bytes", bytes);
        self.num("seconds", secs, 3);
        self.num("mib_s", bytes as f64 / MIB / secs, 2);
        self.num("records_s", records as f64 / secs, 0);
        let gib = bytes as f64 / GIB;
        let own = cpu.1.own - cpu.0.own;
        self.num("client_cpu_s", own, 2);
        self.num("client_cores", own / secs, 2);
        self.num("client_cpu_s_per_gib", own / gib, 2);
        if !watched.is_empty() {
            let b = cpu.1.watched - cpu.0.watched;
            self.num("broker_cpu_s", b, 2);
            self.num("broker_cores", b / secs, 2);
            self.num("broker_cpu_s_per_gib", b / gib, 2);
            if let Ok(peak) = watched.peak_mib() {
                self.num("broker_peak_rss_mib", peak, 1);
            }
            if let Ok(rss) = watched.rss_mib() {
                self.num("broker_rss_mib", rss, 1);
            }
        }
        self
    }

    /// Prints the JSON line on stdout and the summary on stderr.
    pub fn emit(&self) {
        let line = Value::Object(self.fields.clone()).to_string();
        let human: Vec<String> = self
            .fields
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect();
        eprintln!("[loadgen] {}", human.join(" "));
        println!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throughput_fields_are_per_second_and_per_gib() {
        let mut r = Report::new("t");
        let m0 = CpuMark {
            watched: 0.0,
            own: 1.0,
        };
        let m1 = CpuMark {
            watched: 0.0,
            own: 3.0,
        };
        r.throughput(1024, 1 << 30, 2.0, (m0, m1), &Watched::default());
        assert_eq!(r.fields["mib_s"], 512.0);
        assert_eq!(r.fields["client_cpu_s_per_gib"], 2.0);
        assert_eq!(r.fields["client_cores"], 1.0);
        assert!(!r.fields.contains_key("broker_cpu_s"));
    }

    #[test]
    fn latency_fields_are_milliseconds() {
        let mut h = Histogram::new();
        h.record(2_000_000);
        let mut r = Report::new("t");
        r.latency("lat", &h);
        assert_eq!(r.fields["lat_count"], 1);
        assert_eq!(r.fields["lat_max_ms"], 2.0);
        let p50 = r.fields["lat_p50_ms"].as_f64().expect("p50");
        assert!((p50 - 2.0).abs() < 0.02);
    }
}
