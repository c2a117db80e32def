//! The seed's wire contract between producer and consumer, so ours interoperate with the original
//! C# modules in either pairing. Trace context travels in addition.
//! See docs/protocol.md#the-seeds-wire-contract.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const METHOD_NAME: &str = "GetTimeMethod";
/// Both the consumer's output/input and the producer's input/output are named this.
pub const MESSAGE_ENDPOINT: &str = "GetTimeMessage";
pub const PRODUCER_MODULE: &str = "producer";

/// `{"UtcTime":"2019-06-19T19:32:16.4161739Z"}`, plus our optional W3C trace context.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TimeReply {
    #[serde(rename = "UtcTime")]
    pub utc_time: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub trace: BTreeMap<String, String>,
}

/// The consumer's method payload: only trace context (the seed sent none).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TimeRequest {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub trace: BTreeMap<String, String>,
}

/// The seed's flag parsing: `y|yes|true|on|1` (any case) is true, anything else false; unset is true.
pub fn parse_flag(value: Option<&str>) -> bool {
    match value {
        None => true,
        Some(v) => matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "y" | "yes" | "true" | "on" | "1"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_like_the_seed() {
        for t in [
            None,
            Some("y"),
            Some("YES"),
            Some("True"),
            Some("on"),
            Some("1"),
            Some(" true "),
        ] {
            assert!(parse_flag(t), "{t:?}");
        }
        for f in [
            Some("false"),
            Some("0"),
            Some("no"),
            Some(""),
            Some("enabled"),
        ] {
            assert!(!parse_flag(f), "{f:?}");
        }
    }

    #[test]
    fn reply_is_the_seed_json() {
        let r = TimeReply {
            utc_time: "2019-06-19T19:32:16.4161739Z".into(),
            trace: BTreeMap::new(),
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"UtcTime":"2019-06-19T19:32:16.4161739Z"}"#
        );
        let parsed: TimeReply =
            serde_json::from_str(r#"{"UtcTime":"x","trace":{"traceparent":"00-a-b-01"}}"#).unwrap();
        assert_eq!(
            parsed.trace.get("traceparent").map(String::as_str),
            Some("00-a-b-01")
        );
    }
}
