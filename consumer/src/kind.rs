//! Which exchange: a direct method or a message round trip.

use serde::Serialize;

/// Which exchange: a direct method or a message round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Method,
    Message,
}

impl Kind {
    pub const ALL: [Kind; 2] = [Kind::Message, Kind::Method];

    pub fn label(self) -> &'static str {
        match self {
            Kind::Method => "method",
            Kind::Message => "message",
        }
    }

    /// The seed's section titles.
    pub(crate) fn title(self) -> &'static str {
        match self {
            Kind::Method => "Method",
            Kind::Message => "Messages",
        }
    }
}
