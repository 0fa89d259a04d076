//! Medians, spreads and percentiles of small samples.

/// A sample summarised: median and the lowest and highest value.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Summary {
    pub fn of(values: &[f64]) -> Option<Summary> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        Some(Summary {
            median: median_sorted(&v)?,
            min: *v.first()?,
            max: *v.last()?,
            n: v.len(),
        })
    }
}

/// The `p`-th percentile (nearest rank) of `values`.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    percentile_sorted(&v, p)
}

/// The median of sorted values: the middle one, or the mean of the middle
/// two; `None` when there are none.
fn median_sorted(v: &[f64]) -> Option<f64> {
    let mid = v.len() / 2;
    if v.len().is_multiple_of(2) {
        match v.get(mid.checked_sub(1)?..=mid)? {
            [lo, hi] => Some((lo + hi) / 2.0),
            _ => None,
        }
    } else {
        v.get(mid).copied()
    }
}

/// The nearest-rank percentile of sorted values (rank 1 at the least);
/// `None` when there are none.
fn percentile_sorted(v: &[f64], p: f64) -> Option<f64> {
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v.get(rank.clamp(1, v.len().max(1)) - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_percentiles() {
        let s = Summary::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        assert_eq!(Summary::of(&[1.0, 2.0, 3.0, 4.0]).unwrap().median, 2.5);
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&[], 99.0), None);
        assert!(Summary::of(&[f64::NAN]).is_none());
    }
}
