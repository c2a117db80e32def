//! What the measurement adds: recording one exchange (table figures + histograms + counter), one
//! /metrics scrape of the consumer's registry in both formats, and the verdict computed at each
//! interval's end. `cargo bench -p consumer`.

use consumer::kind::Kind;
use consumer::recorder::{Outcome, Recorder};
use consumer::stats::Sample;
use criterion::{black_box, criterion_group, criterion_main, Criterion};

fn bench(c: &mut Criterion) {
    let mut registry = telemetry::new_registry("consumer");
    let recorder = Recorder::register(&mut registry);
    let sample = Sample {
        c2p_ms: 0.42,
        p2c_ms: 0.37,
        total_ms: 0.91,
    };
    c.bench_function("record one exchange", |b| {
        b.iter(|| recorder.record(black_box(Kind::Message), black_box(Outcome::Ok(sample))))
    });
    c.bench_function("record one timeout", |b| {
        b.iter(|| recorder.record(black_box(Kind::Method), Outcome::Timeout))
    });
    for kind in [Kind::Method, Kind::Message] {
        for _ in 0..1000 {
            recorder.record(kind, Outcome::Ok(sample));
        }
    }
    c.bench_function("scrape (OpenMetrics)", |b| {
        b.iter(|| {
            telemetry::metrics_server::render(&registry, "application/openmetrics-text")
                .map(|(s, _)| s.len())
        })
    });
    c.bench_function("scrape (text 0.0.4)", |b| {
        b.iter(|| telemetry::metrics_server::render(&registry, "text/plain").map(|(s, _)| s.len()))
    });
    c.bench_function("take interval (minute table)", |b| {
        b.iter(|| recorder.take_interval().method.count())
    });
    // The verdict's bootstrap at its largest: two full reservoirs (what every interval of the
    // closed loop, and of a busy open loop, compares).
    let mut rng = consumer::verdict::SplitMix64::new(1);
    let mut latencies = |floor: f64| -> Vec<f64> {
        (0..consumer::verdict::RESERVOIR)
            .map(|_| floor - 0.1 * (1.0 - rng.unit()).ln())
            .collect()
    };
    let (method, message) = (latencies(0.45), latencies(0.46));
    c.bench_function("verdict (bootstrap of two full reservoirs)", |b| {
        b.iter(|| {
            consumer::verdict::compare(
                black_box(&method),
                black_box(&message),
                consumer::verdict::SEED,
            )
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
