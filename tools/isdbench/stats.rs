//! Medians and percentiles.

/// The `p` quantile (0..=1) of `v` (sorted here), nearest rank.
pub fn quantile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

/// Median and p99 of `v`, in the unit given.
pub fn summary(v: &[f64]) -> (f64, f64) {
    let mut a = v.to_vec();
    (quantile(&mut a, 0.5), quantile(&mut a, 0.99))
}
