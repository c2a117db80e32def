//! The comparison table: each row's figures accumulated over rounds, printed as ratios to
//! mosquitto.

use super::*;

/// One row, accumulated over rounds.
pub(crate) struct Acc {
    pub(crate) name: String,
    pub(crate) what: String,
    pub(crate) inflight: usize,
    /// Broker rows: every exchange of every round.
    pub(crate) hist: Option<Histogram<u64>>,
    /// Module rows: count-weighted sums of the consumer's per-run quantiles (µs).
    pub(crate) weighted: [(f64, f64); 3],
    pub(crate) count: u64,
    pub(crate) seconds: f64,
    pub(crate) cpu_ns: Option<u64>,
    /// This process (both clients), broker rows only.
    pub(crate) client_cpu_ns: Option<u64>,
    pub(crate) rss: Option<u64>,
    pub(crate) round_p50_us: Vec<f64>,
    pub(crate) timeouts: u64,
    pub(crate) errors: u64,
    /// Broker rows: replies left over from an earlier segment, ignored.
    pub(crate) stale: u64,
    pub(crate) rounds: u32,
}

impl Acc {
    pub(crate) fn new(name: String, what: String, inflight: usize, broker_row: bool) -> Self {
        Self {
            name,
            what,
            inflight,
            hist: broker_row.then(exchange::new_histogram),
            weighted: [(0.0, 0.0); 3],
            count: 0,
            seconds: 0.0,
            cpu_ns: Some(0),
            client_cpu_ns: broker_row.then_some(0),
            rss: None,
            round_p50_us: Vec::new(),
            timeouts: 0,
            errors: 0,
            stale: 0,
            rounds: 0,
        }
    }

    pub(crate) fn add_cpu_rss(&mut self, cpu: Option<u64>, rss: Option<u64>) {
        self.cpu_ns = self.cpu_ns.zip(cpu).map(|(a, b)| a + b);
        self.rss = self.rss.max(rss);
        self.rounds += 1;
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct Row {
    pub(crate) name: String,
    pub(crate) what: String,
    pub(crate) inflight: usize,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) p999_us: Option<f64>,
    pub(crate) rate: f64,
    pub(crate) broker_cpu_us_per_exchange: Option<f64>,
    pub(crate) broker_rss_mb: Option<f64>,
    pub(crate) client_cpu_us_per_exchange: Option<f64>,
    pub(crate) ratio_p50: Option<f64>,
    pub(crate) ratio_p99: Option<f64>,
    pub(crate) ratio_rate: Option<f64>,
    pub(crate) exchanges: u64,
    pub(crate) seconds: f64,
    pub(crate) rounds: u32,
    pub(crate) round_p50_us: Vec<f64>,
    pub(crate) timeouts: u64,
    pub(crate) errors: u64,
    pub(crate) stale_replies: u64,
}

pub(crate) fn finish(acc: &Acc) -> Row {
    let (p50, p99, p999) = match &acc.hist {
        Some(h) if !h.is_empty() => (
            h.value_at_quantile(0.5) as f64 / 1e3,
            h.value_at_quantile(0.99) as f64 / 1e3,
            Some(h.value_at_quantile(0.999) as f64 / 1e3),
        ),
        Some(_) => (f64::NAN, f64::NAN, None),
        None => {
            let q = |i: usize| {
                let (sum, w) = acc.weighted[i];
                (w > 0.0).then(|| sum / w)
            };
            (q(0).unwrap_or(f64::NAN), q(1).unwrap_or(f64::NAN), q(2))
        }
    };
    Row {
        name: acc.name.clone(),
        what: acc.what.clone(),
        inflight: acc.inflight,
        p50_us: p50,
        p99_us: p99,
        p999_us: p999,
        rate: acc.count as f64 / acc.seconds.max(1e-9),
        broker_cpu_us_per_exchange: acc
            .cpu_ns
            .filter(|_| acc.count > 0)
            .map(|ns| ns as f64 / 1e3 / acc.count as f64),
        broker_rss_mb: acc.rss.map(|b| b as f64 / 1_048_576.0),
        client_cpu_us_per_exchange: acc
            .client_cpu_ns
            .filter(|_| acc.count > 0)
            .map(|ns| ns as f64 / 1e3 / acc.count as f64),
        ratio_p50: None,
        ratio_p99: None,
        ratio_rate: None,
        exchanges: acc.count,
        seconds: acc.seconds,
        rounds: acc.rounds,
        round_p50_us: acc.round_p50_us.clone(),
        timeouts: acc.timeouts,
        errors: acc.errors,
        stale_replies: acc.stale,
    }
}

pub(crate) fn broker_row(broker: Broker, inflight: usize) -> (String, String) {
    let (tag, what) = match broker {
        Broker::Mosquitto => ("a-mosquitto", "mosquitto, plain TCP"),
        Broker::HubPlain => ("b-hub-plain", "hub plain port, modules + routes, SAS"),
        Broker::HubTls => ("c-hub-tls", "hub over TLS, modules + routes, SAS"),
    };
    (format!("{tag}-{inflight}"), what.to_owned())
}

pub(crate) fn module_row(kind: launcher::Kind) -> (String, String) {
    match kind {
        launcher::Kind::Message => (
            "d-message-1".into(),
            "our consumer+producer, message over TLS, instrumented".into(),
        ),
        launcher::Kind::Method => (
            "d-method-1".into(),
            "our consumer+producer, method over HTTPS+MQTT, instrumented".into(),
        ),
    }
}

pub(crate) fn fmt_opt(v: Option<f64>, prec: usize) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.prec$}"),
        _ => "-".into(),
    }
}

pub(crate) fn print_table(rows: &[Row]) {
    println!(
        "{:<16} {:>9} {:>9} {:>9} {:>9} {:>10} {:>8} {:>7} {:>7} {:>7}",
        "row",
        "p50 µs",
        "p99 µs",
        "p99.9 µs",
        "rate/s",
        "CPU µs/ex",
        "RSS MB",
        "p50×a",
        "p99×a",
        "rate×a"
    );
    for r in rows {
        println!(
            "{:<16} {:>9} {:>9} {:>9} {:>9.0} {:>10} {:>8} {:>7} {:>7} {:>7}",
            r.name,
            fmt_opt(Some(r.p50_us), 1),
            fmt_opt(Some(r.p99_us), 1),
            fmt_opt(r.p999_us, 1),
            r.rate,
            fmt_opt(r.broker_cpu_us_per_exchange, 1),
            fmt_opt(r.broker_rss_mb, 1),
            fmt_opt(r.ratio_p50, 2),
            fmt_opt(r.ratio_p99, 2),
            fmt_opt(r.ratio_rate, 2),
        );
    }
    println!();
    for r in rows {
        let mut extra = String::new();
        if r.timeouts + r.errors > 0 {
            extra = format!("; {} timeouts, {} errors", r.timeouts, r.errors);
        }
        if r.stale_replies > 0 {
            extra.push_str(&format!(
                "; {} replies from an earlier segment ignored",
                r.stale_replies
            ));
        }
        if let Some(c) = r.client_cpu_us_per_exchange {
            extra.push_str(&format!("; client CPU {c:.1} µs/ex"));
        }
        let rounds: Vec<String> = r.round_p50_us.iter().map(|p| format!("{p:.0}")).collect();
        println!(
            "  {:<16} {} in flight: {}; {} exchanges in {:.1} s over {} round(s), p50 per round µs [{}]{extra}",
            r.name,
            r.inflight,
            r.what,
            r.exchanges,
            r.seconds,
            r.rounds,
            rounds.join(", ")
        );
    }
}
