//! A fixed-size log-linear latency histogram (nanoseconds), HdrHistogram-style: 128 linear
//! sub-buckets per power of two, so a reported percentile is within 0.8% of the true value,
//! whatever the range (microseconds to minutes) and however many samples. Recording is an
//! index computation and an increment, cheap enough for the delivery callback of every record.

/// Linear sub-buckets per power of two, as a bit count.
const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS;
/// Enough buckets for any u64.
const BUCKETS: usize = ((64 - SUB_BITS as usize) + 1) * SUB as usize;

#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    min: u64,
    max: u64,
    sum: u128,
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("total", &self.total)
            .field("min", &self.min)
            .field("max", &self.max)
            .finish()
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

fn index_of(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let e = 63 - v.leading_zeros(); // floor(log2 v) >= SUB_BITS
    let m = (v >> (e - SUB_BITS)) & (SUB - 1);
    ((e - SUB_BITS + 1) as u64 * SUB + m) as usize
}

/// The largest value that lands in bucket `i` (so percentiles never understate).
fn upper_of(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let q = i / SUB;
    let m = i % SUB;
    let lower = (SUB + m) << (q - 1);
    lower + ((1u64 << (q - 1)) - 1)
}

impl Histogram {
    pub fn new() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            total: 0,
            min: u64::MAX,
            max: 0,
            sum: 0,
        }
    }

    pub fn record(&mut self, v: u64) {
        self.counts[index_of(v)] += 1;
        self.total += 1;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.sum += u128::from(v);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum += other.sum;
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn max(&self) -> Option<u64> {
        (self.total > 0).then_some(self.max)
    }

    pub fn mean(&self) -> Option<f64> {
        (self.total > 0).then(|| self.sum as f64 / self.total as f64)
    }

    /// The value below or at which a fraction `q` (0..=1) of the samples lie; the exact
    /// maximum for q = 1.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        if q >= 1.0 {
            return Some(self.max);
        }
        let rank = ((q * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(upper_of(i).min(self.max));
            }
        }
        Some(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_values_are_exact() {
        let mut h = Histogram::new();
        for v in 0..100 {
            h.record(v);
        }
        assert_eq!(h.quantile(0.5), Some(49));
        assert_eq!(h.quantile(0.99), Some(98));
        assert_eq!(h.quantile(1.0), Some(99));
    }

    #[test]
    fn every_bucket_holds_its_own_values() {
        for v in [
            128u64,
            129,
            255,
            256,
            300,
            1_000_000,
            123_456_789,
            u64::MAX / 3,
        ] {
            let i = index_of(v);
            assert!(upper_of(i) >= v, "{v}: upper {} below", upper_of(i));
            assert!(
                i == 0 || upper_of(i - 1) < v,
                "{v}: previous bucket holds it"
            );
        }
        assert!(index_of(u64::MAX) < BUCKETS);
    }

    #[test]
    fn percentiles_are_within_one_percent() {
        let mut h = Histogram::new();
        for v in 1..=100_000u64 {
            h.record(v * 1000);
        }
        for (q, want) in [
            (0.5, 50_000_000.0),
            (0.99, 99_000_000.0),
            (0.999, 99_900_000.0),
        ] {
            let got = h.quantile(q).expect("samples") as f64;
            assert!(
                (got - want).abs() / want < 0.01,
                "q{q}: got {got}, want {want}"
            );
        }
        assert_eq!(h.max(), Some(100_000_000));
    }

    #[test]
    fn merge_adds_samples() {
        let mut a = Histogram::new();
        let mut b = Histogram::new();
        a.record(10);
        b.record(1_000_000);
        a.merge(&b);
        assert_eq!(a.count(), 2);
        assert_eq!(a.quantile(1.0), Some(1_000_000));
        assert_eq!(a.quantile(0.5), Some(10));
        assert!(Histogram::new().quantile(0.5).is_none());
    }
}
