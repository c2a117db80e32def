//! Invoking a direct method on another module: HTTPS POST to the gateway with the caller's SAS
//! token and `x-ms-edge-moduleId` (docs/protocol.md#invoking-a-direct-method-over-https), over
//! one pooled, kept-alive connection (the seed's "Address already in use" came from a connection
//! per call).

use crate::identity::{IdentityError, ModuleIdentity};
use crate::tls;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use percent_encoding::utf8_percent_encode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const USER_AGENT: &str = concat!("iotedge-method-vs-message/", env!("CARGO_PKG_VERSION"));

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
    fn from_request(e: hyper_util::client::legacy::Error) -> Self {
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

/// The target module's answer: its status and JSON payload (HTTP itself was 200).
#[derive(Debug, Clone, PartialEq)]
pub struct MethodResult {
    pub status: i64,
    /// The payload as the JSON text the gateway sent (`null` when it had none), a slice of the
    /// response: the caller parses it into its own type, once.
    pub payload: Bytes,
}

impl MethodResult {
    /// The payload as a JSON value (`null` if it does not parse), for checks and logs.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).unwrap_or(serde_json::Value::Null)
    }
}

/// The gateway's 200 answer, `{"status": …, "payload": …}`, each field kept as its JSON text.
#[derive(serde::Deserialize)]
struct Answer<'a> {
    #[serde(borrow)]
    status: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow)]
    payload: Option<&'a serde_json::value::RawValue>,
}

/// The invocation request's body.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct InvokeBody<'a, P: ?Sized> {
    method_name: &'a str,
    payload: &'a P,
    response_timeout_in_seconds: u64,
    connect_timeout_in_seconds: u64,
}

pub struct MethodClient {
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    identity: Arc<ModuleIdentity>,
    base: String,
    module_header: String,
    token: Mutex<Option<(Arc<str>, u64)>>,
}

impl MethodClient {
    pub async fn new(identity: Arc<ModuleIdentity>) -> Result<Self, InvokeError> {
        let ca = identity.trust_bundle().await?;
        let config = tls::client_config(&ca, &[])?;
        let mut tcp = HttpConnector::new();
        tcp.set_nodelay(true);
        tcp.enforce_http(false);
        tcp.set_connect_timeout(Some(Duration::from_secs(10)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_only()
            .enable_http1()
            .wrap_connector(tcp);
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(4)
            .build(https);
        let base = format!(
            "https://{}:{}",
            identity.gateway_hostname, identity.https_port
        );
        Ok(Self {
            http,
            module_header: identity.name(),
            identity,
            base,
            token: Mutex::new(None),
        })
    }

    async fn token(&self) -> Result<Arc<str>, InvokeError> {
        let now = crate::sas::now_unix();
        if let Ok(cached) = self.token.lock() {
            if let Some((token, expiry)) = cached.as_ref() {
                if !self.identity.token_lifetime.due(*expiry, now) {
                    return Ok(token.clone());
                }
            }
        }
        let (token, expiry) = self
            .identity
            .token(self.identity.token_lifetime.ttl)
            .await?;
        let token: Arc<str> = token.into();
        if let Ok(mut cached) = self.token.lock() {
            *cached = Some((token.clone(), expiry));
        }
        Ok(token)
    }

    /// Calls `method` on `device`/`module` with a JSON `payload` (any serializable value, so a
    /// large payload is written once into the request body, not copied into a `Value` first).
    pub async fn invoke<P: serde::Serialize + ?Sized>(
        &self,
        device: &str,
        module: &str,
        method: &str,
        payload: &P,
        response_timeout: Duration,
    ) -> Result<MethodResult, InvokeError> {
        let uri = format!(
            "{}/twins/{}/modules/{}/methods?api-version={}",
            self.base,
            utf8_percent_encode(device, crate::bag::COMPONENT),
            utf8_percent_encode(module, crate::bag::COMPONENT),
            crate::topic::API_VERSION
        );
        let timeout_secs = response_timeout.as_secs().clamp(5, 300);
        let body = serde_json::to_vec(&InvokeBody {
            method_name: method,
            payload,
            response_timeout_in_seconds: timeout_secs,
            connect_timeout_in_seconds: 0,
        })
        .map_err(|source| InvokeError::NotJson {
            body: "(the payload to send)".to_owned(),
            source,
        })?;
        let request = Request::post(uri)
            .header("authorization", &*self.token().await?)
            .header("x-ms-edge-moduleid", &self.module_header)
            .header("content-type", "application/json")
            .header("user-agent", USER_AGENT)
            .body(Full::new(Bytes::from(body)))
            .map_err(InvokeError::Request)?;
        // The hub answers 504 after the response timeout; allow it a little longer than that.
        let deadline = Duration::from_secs(timeout_secs) + Duration::from_secs(5);
        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(InvokeError::from_request)?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| InvokeError::Transport(Box::new(e)))?
                .to_bytes();
            Ok::<_, InvokeError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(deadline, exchange)
            .await
            .map_err(|_| {
                InvokeError::Timeout(format!("no answer from the gateway within {deadline:?}"))
            })??;
        let text = || {
            String::from_utf8_lossy(&bytes)
                .chars()
                .take(500)
                .collect::<String>()
        };
        match status {
            StatusCode::OK => {
                let answer: Answer<'_> =
                    serde_json::from_slice(&bytes).map_err(|source| InvokeError::NotJson {
                        body: text(),
                        source,
                    })?;
                let status = answer
                    .status
                    .and_then(|s| serde_json::from_str::<i64>(s.get()).ok())
                    .ok_or_else(|| InvokeError::NoStatus { body: text() })?;
                let payload = match answer.payload {
                    Some(raw) => bytes.slice_ref(raw.get().as_bytes()),
                    None => Bytes::from_static(b"null"),
                };
                Ok(MethodResult { status, payload })
            }
            StatusCode::NOT_FOUND => Err(InvokeError::NotFound(text())),
            StatusCode::GATEWAY_TIMEOUT => Err(InvokeError::Timeout(text())),
            s => Err(InvokeError::Refused {
                status: s.as_u16(),
                body: text(),
            }),
        }
    }
}
