//! Every refusal — a connection, a request or a message the hub will not take — is one typed
//! event: one log line with its reason (rate-limited per reason under a flood, with a count of
//! what was suppressed) and one increment of `edgehub_refusals_total{protocol,reason}`.
//! Details name fields and sizes, never a key, a token or a signature.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Protocol {
    Mqtt,
    Https,
}

impl EncodeLabelValue for Protocol {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(match self {
            Protocol::Mqtt => "mqtt",
            Protocol::Https => "https",
        })
    }
}

/// Why the hub refused something. The label value is [`Reason::as_str`].
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Reason {
    // Before authentication.
    UnauthenticatedLimit,
    AuthDeadline,
    TlsHandshake,
    NotConnect,
    // CONNECT refused (CONNACK 4/5/3).
    NoCredentials,
    BadUsername,
    NotAModule,
    ClientIdMismatch,
    UnknownDevice,
    UnknownModule,
    BadToken,
    TokenExpired,
    BadSignature,
    ConnectionLimit,
    // An authenticated MQTT client closed for a violation.
    MalformedPacket,
    ProtocolViolation,
    MessageTooLarge,
    Undeliverable,
    BadPropertyBag,
    ForeignTopic,
    KeepAliveExpired,
    SlowReader,
    // HTTPS.
    HeaderTimeout,
    BodyTimeout,
    BodyTooLarge,
    BadRequest,
    BadCallerHeader,
    OtherDevice,
    NoSuchResource,
    MethodNotAllowed,
    TargetNotFound,
    /// Not a refusal: a connection that never sent a request, closed; counted, logged at debug.
    Idle,
}

impl Reason {
    /// A CONNECT refused because the client did not prove who it is: what edgeHub counts in
    /// `edgehub_client_connect_failed_total{reason="not_authenticated"}`.
    pub fn is_authentication(self) -> bool {
        use Reason::*;
        matches!(
            self,
            NoCredentials
                | BadUsername
                | NotAModule
                | ClientIdMismatch
                | UnknownDevice
                | UnknownModule
                | BadToken
                | TokenExpired
                | BadSignature
        )
    }

    pub fn as_str(self) -> &'static str {
        use Reason::*;
        match self {
            UnauthenticatedLimit => "unauthenticated_limit",
            AuthDeadline => "auth_deadline",
            TlsHandshake => "tls_handshake",
            NotConnect => "not_connect",
            NoCredentials => "no_credentials",
            BadUsername => "bad_username",
            NotAModule => "not_a_module",
            ClientIdMismatch => "client_id_mismatch",
            UnknownDevice => "unknown_device",
            UnknownModule => "unknown_module",
            BadToken => "bad_token",
            TokenExpired => "token_expired",
            BadSignature => "bad_signature",
            ConnectionLimit => "connection_limit",
            MalformedPacket => "malformed_packet",
            ProtocolViolation => "protocol_violation",
            MessageTooLarge => "message_too_large",
            Undeliverable => "undeliverable",
            BadPropertyBag => "bad_property_bag",
            ForeignTopic => "foreign_topic",
            KeepAliveExpired => "keep_alive_expired",
            SlowReader => "slow_reader",
            HeaderTimeout => "header_timeout",
            BodyTimeout => "body_timeout",
            BodyTooLarge => "body_too_large",
            BadRequest => "bad_request",
            BadCallerHeader => "bad_caller_header",
            OtherDevice => "other_device",
            NoSuchResource => "no_such_resource",
            MethodNotAllowed => "method_not_allowed",
            TargetNotFound => "target_not_found",
            Idle => "idle",
        }
    }
}

impl EncodeLabelValue for Reason {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    pub protocol: Protocol,
    pub reason: Reason,
}

/// Lines per reason per second before the rest are only counted.
const LINES_PER_SECOND: u32 = 5;

#[derive(Default)]
struct Window {
    started: Option<Instant>,
    lines: u32,
    suppressed: u64,
}

/// Logs and counts refusals.
pub struct Refusals {
    counter: Family<RefusalLabels, Counter>,
    windows: Mutex<std::collections::HashMap<Reason, Window>>,
}

impl Refusals {
    pub fn new(counter: Family<RefusalLabels, Counter>) -> Self {
        Self {
            counter,
            windows: Mutex::new(Default::default()),
        }
    }

    /// Counts the refusal and logs it (unless this reason is flooding; then the next line
    /// says how many were suppressed). `who` is the client or the peer address.
    pub fn refuse(
        &self,
        protocol: Protocol,
        reason: Reason,
        peer: Option<SocketAddr>,
        who: &str,
        detail: &dyn std::fmt::Display,
    ) {
        self.counter
            .get_or_create(&RefusalLabels { protocol, reason })
            .inc();
        let Some(suppressed) = self.admit_line(reason) else {
            return;
        };
        let peer = peer.map(|p| p.to_string()).unwrap_or_default();
        let protocol = match protocol {
            Protocol::Mqtt => "MQTT",
            Protocol::Https => "HTTPS",
        };
        if suppressed > 0 {
            tracing::warn!(reason = reason.as_str(), %peer, client = who, suppressed, "{protocol} refused: {detail} ({suppressed} more refusals for this reason were counted but not logged)");
        } else {
            tracing::warn!(reason = reason.as_str(), %peer, client = who, "{protocol} refused: {detail}");
        }
    }

    /// Counts without a log line (for what is not worth one, such as an idle close).
    pub fn count(&self, protocol: Protocol, reason: Reason) {
        self.counter
            .get_or_create(&RefusalLabels { protocol, reason })
            .inc();
    }

    /// `Some(suppressed since the last line)` when a line may be written now.
    fn admit_line(&self, reason: Reason) -> Option<u64> {
        let Ok(mut windows) = self.windows.lock() else {
            return Some(0);
        };
        let w = windows.entry(reason).or_default();
        let now = Instant::now();
        if w.started
            .is_none_or(|s| now.duration_since(s) >= Duration::from_secs(1))
        {
            w.started = Some(now);
            w.lines = 0;
        }
        if w.lines >= LINES_PER_SECOND {
            w.suppressed += 1;
            return None;
        }
        w.lines += 1;
        Some(std::mem::take(&mut w.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_counted_exactly_and_logged_sparingly() {
        let family = Family::<RefusalLabels, Counter>::default();
        let r = Refusals::new(family.clone());
        let mut lines = 0;
        for _ in 0..100 {
            if r.admit_line(Reason::AuthDeadline).is_some() {
                lines += 1;
            }
            family
                .get_or_create(&RefusalLabels {
                    protocol: Protocol::Mqtt,
                    reason: Reason::AuthDeadline,
                })
                .inc();
        }
        assert_eq!(lines, LINES_PER_SECOND);
        // Another reason has its own allowance.
        assert_eq!(r.admit_line(Reason::BadSignature), Some(0));
    }
}
