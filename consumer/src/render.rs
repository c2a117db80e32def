//! The summaries as text, from the figures `stats` aggregates: the seed's plain-text table every
//! interval (`table`, docs/protocol.md#the-seeds-measurement-and-table, with its bugs fixed), the
//! verdict's line under it, one JSON line per summary for scripts (`json`) and the whole run's
//! table at exit (`run_table`).

mod json;
mod run_table;
mod table;

pub use json::{render_json, render_summary_json};
pub use run_table::render_run_table;
pub use table::{render_table, render_verdict};

use std::time::Duration;

/// What a summary covers (the JSON line's `scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SummaryScope {
    /// One summary interval.
    Interval,
    /// The whole run, printed once at exit.
    Run,
    /// One step of a sweep (`sweep`), after its warm-up.
    Step,
}

/// A summary's length as the seed's header says it: `1 minute`, `5 seconds`, `250 ms`.
pub(crate) fn interval_words(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        60 => "1 minute".to_owned(),
        s if s % 60 == 0 && s > 0 => format!("{} minutes", s / 60),
        1 => "1 second".to_owned(),
        s if s > 0 => format!("{s} seconds"),
        _ => format!("{} ms", d.as_millis()),
    }
}

/// Milliseconds at the tables' precision, or `-` without a value.
pub(crate) fn ms(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into())
}

#[cfg(test)]
mod tests;
