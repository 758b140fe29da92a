//! Fixed-bucket histograms of atomic counters, for the decision metrics:
//! observing a value is two relaxed atomic additions, no lock.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use policy_proto::agent::Histogram;

/// Upper bounds of the duration buckets, in nanoseconds: 10 µs … 5 s.
pub(crate) const DURATION_BOUNDS_NS: &[u64] = &[
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
];

/// Upper bounds of the context size buckets, in bytes: 256 B … 16 MiB.
pub(crate) const SIZE_BOUNDS: &[u64] = &[
    256,
    1 << 10,
    4 << 10,
    16 << 10,
    64 << 10,
    256 << 10,
    1 << 20,
    4 << 20,
    16 << 20,
];

/// A histogram with fixed buckets of atomic counters, in integer units
/// (nanoseconds, bytes).
#[derive(Debug)]
pub(crate) struct AtomicHistogram {
    bounds: &'static [u64],
    /// One per bound, then +Inf; not cumulative.
    counts: Box<[AtomicU64]>,
    sum: AtomicU64,
}

impl AtomicHistogram {
    pub(crate) fn new(bounds: &'static [u64]) -> Self {
        Self {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
        }
    }

    pub(crate) fn observe(&self, v: u64) {
        let i = self.bounds.partition_point(|b| *b < v);
        if let Some(c) = self.counts.get(i) {
            c.fetch_add(1, Relaxed);
        }
        self.sum.fetch_add(v, Relaxed);
    }

    /// The histogram in base units: values are divided by `per_unit`.
    pub(crate) fn snapshot(&self, label: &str, per_unit: f64) -> Histogram {
        Histogram {
            label: label.to_string(),
            upper_bounds: self.bounds.iter().map(|b| *b as f64 / per_unit).collect(),
            counts: self.counts.iter().map(|c| c.load(Relaxed)).collect(),
            sum: self.sum.load(Relaxed) as f64 / per_unit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_hold_values_up_to_their_bound() {
        let h = AtomicHistogram::new(&[10, 100]);
        for v in [0, 10, 11, 100, 101, 5000] {
            h.observe(v);
        }
        let s = h.snapshot("x", 10.0);
        assert_eq!(s.upper_bounds, vec![1.0, 10.0]);
        assert_eq!(s.counts, vec![2, 2, 2]);
        assert_eq!(s.sum, 522.2);
    }
}
