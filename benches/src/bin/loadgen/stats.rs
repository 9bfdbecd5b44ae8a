//! Latency histograms (microsecond resolution, HdrHistogram) and their
//! summaries.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// A latency recorder: 1 us to 5 min, 3 significant digits.
#[derive(Debug, Clone)]
pub(crate) struct Latency(Histogram<u64>);

impl Default for Latency {
    fn default() -> Latency {
        Latency(Histogram::new_with_bounds(1, 300_000_000, 3).unwrap_or_else(|e| unreachable!("static bounds: {e}")))
    }
}

impl Latency {
    pub(crate) fn record_us(&mut self, us: u64) {
        self.0.saturating_record(us.max(1));
    }

    /// Adds every value `other` recorded.
    pub(crate) fn merge(&mut self, other: &Latency) {
        // Same bounds on both sides, and saturating: cannot fail.
        let _ = self.0.add(&other.0);
    }

    pub(crate) fn summary(&self) -> LatencySummary {
        let ms = |q: f64| if self.0.is_empty() { 0.0 } else { self.0.value_at_quantile(q) as f64 / 1000.0 };
        LatencySummary {
            count: self.0.len(),
            p50_ms: ms(0.5),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: if self.0.is_empty() { 0.0 } else { self.0.max() as f64 / 1000.0 },
        }
    }
}

/// Percentiles of a latency distribution, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(crate) struct LatencySummary {
    pub(crate) count: u64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) p999_ms: f64,
    pub(crate) max_ms: f64,
}

/// The median of some figures (the mean of the middle two for an even
/// count); `None` when there are none.
pub(crate) fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len().is_multiple_of(2) { (v[mid - 1] + v[mid]) / 2.0 } else { v[mid] })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_in_ms() {
        let mut l = Latency::default();
        for us in 1..=1000 {
            l.record_us(us * 100);
        }
        let s = l.summary();
        assert_eq!(s.count, 1000);
        assert!((s.p50_ms - 50.0).abs() < 0.1, "{s:?}");
        assert!((s.p99_ms - 99.0).abs() < 0.1, "{s:?}");
        assert!((s.max_ms - 100.0).abs() < 0.1, "{s:?}");
        assert_eq!(Latency::default().summary().p99_ms, 0.0);
    }

    #[test]
    fn merges() {
        let (mut a, mut b) = (Latency::default(), Latency::default());
        a.record_us(1000);
        b.record_us(3000);
        b.record_us(3000);
        a.merge(&b);
        let s = a.summary();
        assert_eq!(s.count, 3);
        assert!((s.p50_ms - 3.0).abs() < 0.01, "{s:?}");
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0]), Some(2.5));
        assert_eq!(median(&[f64::NAN, 1.0]), Some(1.0));
    }
}
