//! What the measurement adds: recording one exchange (table figures + histograms + counter) and
//! one /metrics scrape of the consumer's registry, in both formats. `cargo bench -p consumer`.

use consumer::recorder::{Outcome, Recorder};
use consumer::stats::{Kind, Sample};
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
}

criterion_group!(benches, bench);
criterion_main!(benches);
