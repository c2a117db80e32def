//! How exchanges are started, in one place: the seed's closed loop (the next exchange of a kind
//! starts when the previous one ends — a benchmark) or, with `--rate`, the open loop
//! (`open_loop`: exchanges start on a fixed schedule whatever the replies — a canary). [`Loops`]
//! starts either for every measured kind and, once the run's token is cancelled, joins them.

mod open_loop;

pub use open_loop::{Lane, OpenLoop, Starter};

/// How exchanges are started.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Schedule {
    /// The seed's loop: the next exchange starts when the previous one ends.
    Closed,
    /// `rate` exchanges per second per kind on a fixed schedule, at most `max_in_flight` at once.
    Open { rate: f64, max_in_flight: usize },
}

impl Schedule {
    pub fn label(self) -> &'static str {
        match self {
            Schedule::Closed => "closed",
            Schedule::Open { .. } => "open",
        }
    }

    /// The configured rate; 0 for the closed loop (as `--rate 0`).
    pub fn rate(self) -> f64 {
        match self {
            Schedule::Closed => 0.0,
            Schedule::Open { rate, .. } => rate,
        }
    }
}
