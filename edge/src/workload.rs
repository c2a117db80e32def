//! The IoT Edge workload API (aziot-edged) over its unix socket: sign a SAS string-to-sign with
//! the module's key, and fetch the trust bundle (docs/protocol.md#the-workload-api).

use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use percent_encoding::utf8_percent_encode;
use std::path::PathBuf;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("IOTEDGE_WORKLOADURI {0:?} is not a unix:// URI")]
    Uri(String),
    #[error("cannot reach the workload API at {path}: {source}")]
    Connect {
        path: String,
        source: std::io::Error,
    },
    #[error("workload API request failed: {0}")]
    Http(String),
    #[error("workload API answered {status} to {what}: {body}")]
    Status {
        what: &'static str,
        status: StatusCode,
        body: String,
    },
    #[error("workload API answer to {0} is not the expected JSON")]
    Body(&'static str),
    #[error("workload API did not answer {0} within 10 s")]
    Timeout(&'static str),
}

#[derive(Debug, Clone)]
pub struct WorkloadClient {
    socket: PathBuf,
    api_version: String,
    module: String,
    generation_id: String,
}

impl WorkloadClient {
    pub fn new(
        uri: &str,
        api_version: &str,
        module: &str,
        generation_id: &str,
    ) -> Result<Self, WorkloadError> {
        let path = uri
            .strip_prefix("unix://")
            .ok_or_else(|| WorkloadError::Uri(uri.to_owned()))?;
        Ok(Self {
            socket: PathBuf::from(path),
            api_version: api_version.to_owned(),
            module: module.to_owned(),
            generation_id: generation_id.to_owned(),
        })
    }

    /// base64(HMAC-SHA256(module key, data)) computed by the security daemon.
    pub async fn sign(&self, data: &str) -> Result<String, WorkloadError> {
        let path = format!(
            "/modules/{}/genid/{}/sign?api-version={}",
            utf8_percent_encode(&self.module, crate::bag::COMPONENT),
            utf8_percent_encode(&self.generation_id, crate::bag::COMPONENT),
            self.api_version
        );
        let body = serde_json::json!({"keyId": "primary", "algo": "HMACSHA256", "data": BASE64.encode(data)});
        let reply = self
            .request("sign", Method::POST, &path, Some(body.to_string()))
            .await?;
        reply
            .get("digest")
            .and_then(|d| d.as_str())
            .map(str::to_owned)
            .ok_or(WorkloadError::Body("sign"))
    }

    /// PEM certificates to trust for the gateway.
    pub async fn trust_bundle(&self) -> Result<String, WorkloadError> {
        let path = format!("/trust-bundle?api-version={}", self.api_version);
        let reply = self
            .request("trust-bundle", Method::GET, &path, None)
            .await?;
        reply
            .get("certificate")
            .and_then(|c| c.as_str())
            .map(str::to_owned)
            .ok_or(WorkloadError::Body("trust-bundle"))
    }

    async fn request(
        &self,
        what: &'static str,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<serde_json::Value, WorkloadError> {
        tokio::time::timeout(TIMEOUT, self.request_inner(what, method, path, body))
            .await
            .map_err(|_| WorkloadError::Timeout(what))?
    }

    async fn request_inner(
        &self,
        what: &'static str,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<serde_json::Value, WorkloadError> {
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|source| WorkloadError::Connect {
                path: self.socket.display().to_string(),
                source,
            })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| WorkloadError::Http(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "workload")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| WorkloadError::Http(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| WorkloadError::Http(e.to_string()))?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| WorkloadError::Http(e.to_string()))?
            .to_bytes();
        if !status.is_success() {
            return Err(WorkloadError::Status {
                what,
                status,
                body: String::from_utf8_lossy(&bytes).chars().take(300).collect(),
            });
        }
        serde_json::from_slice(&bytes).map_err(|_| WorkloadError::Body(what))
    }
}
