//! Invoking a direct method on another module: HTTPS POST to the gateway with the caller's SAS
//! token and `x-ms-edge-moduleId` (docs/protocol.md#invoking-a-direct-method-over-https), over
//! one pooled, kept-alive connection (the seed's "Address already in use" came from a connection
//! per call).
//!
//! A call builds as little as it can: the request URI once per target ([`MethodTarget`]), the
//! headers once per SAS token, and the body in one buffer sized from the previous one.

mod answer;
mod error;

pub use answer::MethodResult;
pub use error::{InvokeError, InvokeFailure};

use crate::identity::ModuleIdentity;
use crate::tls;
use answer::read_answer;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use percent_encoding::utf8_percent_encode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

const USER_AGENT: &str = concat!("iotedge-method-vs-message/", env!("CARGO_PKG_VERSION"));
const MODULE_ID: HeaderName = HeaderName::from_static("x-ms-edge-moduleid");

/// The most a request body reserves up front: a large call must not make every later one
/// reserve as much.
const MAX_BODY_RESERVE: usize = 1 << 20;
/// The first call's reservation, before any body has been measured.
const FIRST_BODY_RESERVE: usize = 256;

/// The invocation request's body.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct InvokeBody<'a, P: ?Sized> {
    method_name: &'a str,
    payload: &'a P,
    response_timeout_in_seconds: u64,
    connect_timeout_in_seconds: u64,
}

/// A module to call methods on, its request URI built once by [`MethodClient::target`]; a clone
/// shares the URI's buffer.
#[derive(Clone, Debug)]
pub struct MethodTarget {
    uri: Uri,
}

/// The headers of every call while a SAS token is valid, built when it is fetched.
struct SignedHeaders {
    headers: HeaderMap,
    /// The token's expiry, unix seconds.
    expiry: u64,
}

/// A module's client for direct methods on other modules, through its gateway.
pub struct MethodClient {
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    identity: Arc<ModuleIdentity>,
    base: String,
    module_header: String,
    signed: Mutex<Option<SignedHeaders>>,
    /// The last request body's length: the next one's reservation (same-shaped calls fit exactly).
    body_size: AtomicUsize,
}

/// `mutex`'s value; a panic while it was held left nothing half-written (each critical section
/// only reads or replaces whole values).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl MethodClient {
    /// A client for `identity`'s gateway, trusting its CA; connects on the first call.
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
            signed: Mutex::new(None),
            body_size: AtomicUsize::new(FIRST_BODY_RESERVE),
        })
    }

    /// Calls `method` on `device`/`module` with a JSON `payload` (any serializable value, so a
    /// large payload is written once into the request body, not copied into a `Value` first).
    /// A caller that calls the same module again and again resolves it once with
    /// [`target`](Self::target) and uses [`call`](Self::call).
    pub async fn invoke<P: serde::Serialize + ?Sized>(
        &self,
        device: &str,
        module: &str,
        method: &str,
        payload: &P,
        response_timeout: Duration,
    ) -> Result<MethodResult, InvokeError> {
        let target = self.target(device, module)?;
        self.call(&target, method, payload, response_timeout).await
    }

    /// Calls `method` on a target resolved by [`target`](Self::target).
    pub async fn call<P: serde::Serialize + ?Sized>(
        &self,
        target: &MethodTarget,
        method: &str,
        payload: &P,
        response_timeout: Duration,
    ) -> Result<MethodResult, InvokeError> {
        let timeout_secs = response_timeout.as_secs().clamp(5, 300);
        let body = self.body(&InvokeBody {
            method_name: method,
            payload,
            response_timeout_in_seconds: timeout_secs,
            connect_timeout_in_seconds: 0,
        })?;
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = target.uri.clone();
        *request.headers_mut() = self.headers().await?;
        // The hub answers 504 after the response timeout; allow it a little longer than that.
        let deadline = Duration::from_secs(timeout_secs) + Duration::from_secs(5);
        let (status, bytes) = tokio::time::timeout(deadline, self.exchange(request))
            .await
            .map_err(|_| {
                InvokeError::Timeout(format!("no answer from the gateway within {deadline:?}"))
            })??;
        read_answer(status, &bytes)
    }

    /// The request body's JSON, in one buffer reserved for the size of the last one.
    fn body<P: serde::Serialize + ?Sized>(
        &self,
        body: &InvokeBody<'_, P>,
    ) -> Result<Bytes, InvokeError> {
        let reserve = self.body_size.load(Ordering::Relaxed).min(MAX_BODY_RESERVE);
        let mut buffer = Vec::with_capacity(reserve);
        serde_json::to_writer(&mut buffer, body).map_err(|source| InvokeError::NotJson {
            body: "(the payload to send)".to_owned(),
            source,
        })?;
        self.body_size.store(buffer.len(), Ordering::Relaxed);
        Ok(Bytes::from(buffer))
    }

    /// `device`/`module` as a target: its request URI,
    /// `…/twins/{device}/modules/{module}/methods?api-version=…`.
    pub fn target(&self, device: &str, module: &str) -> Result<MethodTarget, InvokeError> {
        let uri = Uri::try_from(format!(
            "{}/twins/{}/modules/{}/methods?api-version={}",
            self.base,
            utf8_percent_encode(device, crate::bag::COMPONENT),
            utf8_percent_encode(module, crate::bag::COMPONENT),
            crate::topic::API_VERSION
        ))
        .map_err(|e| InvokeError::Request(e.into()))?;
        Ok(MethodTarget { uri })
    }

    /// The call's headers; a new set with a fresh SAS token when the last one is due for renewal.
    async fn headers(&self) -> Result<HeaderMap, InvokeError> {
        let now = crate::sas::now_unix();
        if let Some(signed) = lock(&self.signed).as_ref() {
            if !self.identity.token_lifetime.due(signed.expiry, now) {
                return Ok(signed.headers.clone());
            }
        }
        let (token, expiry) = self
            .identity
            .token(self.identity.token_lifetime.ttl)
            .await?;
        let headers = signed_headers(&self.module_header, token)?;
        *lock(&self.signed) = Some(SignedHeaders {
            headers: headers.clone(),
            expiry,
        });
        Ok(headers)
    }

    /// Sends `request` on the pooled connection; the answer's status and whole body.
    async fn exchange(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<(StatusCode, Bytes), InvokeError> {
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
        Ok((status, bytes))
    }
}

/// Every call's headers with `token` as its authorization, from module `module_id`.
fn signed_headers(module_id: &str, token: String) -> Result<HeaderMap, InvokeError> {
    let invalid = |e: header::InvalidHeaderValue| InvokeError::Request(e.into());
    let mut authorization = HeaderValue::try_from(token).map_err(invalid)?;
    // Kept out of debug output (and out of HPACK tables, were this HTTP/2).
    authorization.set_sensitive(true);
    let mut headers = HeaderMap::with_capacity(4);
    headers.insert(header::AUTHORIZATION, authorization);
    headers.insert(
        MODULE_ID,
        HeaderValue::from_str(module_id).map_err(invalid)?,
    );
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_the_four_a_call_sends_and_the_token_is_sensitive() {
        let headers = signed_headers("dev/consumer", "SharedAccessSignature sr=x".into()).unwrap();
        let names: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(
            names,
            [
                "authorization",
                "x-ms-edge-moduleid",
                "content-type",
                "user-agent"
            ]
        );
        let token = &headers[header::AUTHORIZATION];
        assert!(token.is_sensitive());
        assert_eq!(format!("{token:?}"), "Sensitive");
        assert_eq!(headers[MODULE_ID], "dev/consumer");
        // A token that is no header value is refused, as the request it would have made.
        let e = signed_headers("dev/consumer", "bad\ntoken".into()).unwrap_err();
        assert_eq!(e.failure(), InvokeFailure::Malformed, "{e}");
    }
}
