//! The gateway's answer to a method call: its HTTP status and body read into a [`MethodResult`]
//! or an [`InvokeError`].

use super::InvokeError;
use bytes::Bytes;
use hyper::StatusCode;

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

/// The call's result from the gateway's HTTP `status` and `body`: 200 carries the module's
/// status and payload, 404 and 504 are the hub's own verdicts, anything else a refusal.
pub(super) fn read_answer(status: StatusCode, body: &Bytes) -> Result<MethodResult, InvokeError> {
    // At most 500 characters of the body, for an error's message.
    let text = || {
        String::from_utf8_lossy(body)
            .chars()
            .take(500)
            .collect::<String>()
    };
    match status {
        StatusCode::OK => {
            let answer: Answer<'_> =
                serde_json::from_slice(body).map_err(|source| InvokeError::NotJson {
                    body: text(),
                    source,
                })?;
            let status = answer
                .status
                .and_then(|s| serde_json::from_str::<i64>(s.get()).ok())
                .ok_or_else(|| InvokeError::NoStatus { body: text() })?;
            let payload = match answer.payload {
                Some(raw) => body.slice_ref(raw.get().as_bytes()),
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
