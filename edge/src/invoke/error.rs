//! How a method call fails, and the closed set of failure kinds it is counted by.

use crate::identity::IdentityError;
use crate::tls;

#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// 404: the target is not connected or not subscribed to methods.
    #[error("target not found: {0}")]
    NotFound(String),
    /// 504 from the hub, or no HTTP answer in time.
    #[error("method timed out: {0}")]
    Timeout(String),
    #[error("hub refused the call with HTTP {status}: {body}")]
    Refused { status: u16, body: String },
    #[error("cannot reach the gateway")]
    Transport(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The TCP connection was made but its TLS handshake failed.
    #[error("TLS handshake with the gateway failed")]
    Handshake(#[source] hyper_util::client::legacy::Error),
    #[error("cannot build the request")]
    Request(#[source] hyper::http::Error),
    #[error("the gateway's answer is not JSON: {body}")]
    NotJson {
        body: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("the gateway's answer has no status: {body}")]
    NoStatus { body: String },
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("gateway CA: {0}")]
    Tls(#[from] tls::TlsError),
}

/// What kind of failure an [`InvokeError`] is: a closed set, for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InvokeFailure {
    /// No answer in time (the hub's 504 or our own deadline).
    Timeout,
    /// The hub answered with an error status (404 target not found, 401, 429, 503, …).
    Refused,
    /// No TCP connection, or it broke (also: no SAS token from the workload API).
    Transport,
    /// The TLS handshake failed (or the gateway CA is unusable).
    Tls,
    /// HTTP 200 with a body that is not `{"status":…,"payload":…}`.
    Malformed,
}

impl InvokeError {
    pub fn is_timeout(&self) -> bool {
        matches!(self, InvokeError::Timeout(_))
    }

    /// Which kind of failure this is.
    pub fn failure(&self) -> InvokeFailure {
        match self {
            InvokeError::Timeout(_) => InvokeFailure::Timeout,
            InvokeError::NotFound(_) | InvokeError::Refused { .. } => InvokeFailure::Refused,
            InvokeError::Transport(_) | InvokeError::Identity(_) => InvokeFailure::Transport,
            InvokeError::Handshake(_) | InvokeError::Tls(_) => InvokeFailure::Tls,
            InvokeError::Request(_)
            | InvokeError::NotJson { .. }
            | InvokeError::NoStatus { .. } => InvokeFailure::Malformed,
        }
    }

    /// Classifies the HTTP client's error: a connect error from the TLS stage (hyper-rustls
    /// reports those as `io::Error`; the TCP stage's are hyper-util's own `ConnectError`) is a
    /// handshake failure, anything else a transport one.
    pub(super) fn from_request(e: hyper_util::client::legacy::Error) -> Self {
        let from_tls_stage = e.is_connect()
            && std::error::Error::source(&e)
                .is_some_and(|s| s.downcast_ref::<std::io::Error>().is_some());
        if from_tls_stage {
            InvokeError::Handshake(e)
        } else {
            InvokeError::Transport(Box::new(e))
        }
    }
}
