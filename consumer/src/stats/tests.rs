//! Recording, taking and merging an interval's figures.

use super::*;

fn sample(c2p: f64, p2c: f64) -> Sample {
    Sample {
        c2p_ms: c2p,
        p2c_ms: p2c,
        total_ms: c2p + p2c,
    }
}

#[test]
fn take_leaves_an_empty_interval() {
    let mut s = IntervalStats::default();
    s.method.record(&sample(1.0, 2.0));
    s.method.timeouts = 2;
    let taken = s.take();
    assert_eq!(taken.method.count(), 1);
    assert_eq!(taken.method.timeouts, 2);
    assert_eq!(
        taken
            .method
            .total_quantile_ms(0.5)
            .map(|v| (v * 10.0).round() / 10.0),
        Some(3.0)
    );
    assert_eq!(s.method.count(), 0);
    assert_eq!(s.method.timeouts, 0);
    assert_eq!(s.method.total_quantile_ms(0.5), None);
}

#[test]
fn percentiles_never_exceed_the_exact_maximum() {
    let mut s = IntervalStats::default();
    s.message.record(&sample(2.0, 2.4699));
    let k = &s.message;
    assert_eq!(k.total_max_ms(), Some(4.4699));
    for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
        let v = k.total_quantile_ms(q).unwrap();
        assert!(v <= 4.4699 && v > 4.46, "{q}: {v}");
    }
}
