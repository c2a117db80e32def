//! What travels between modules: messages (body + property bag) and direct-method requests.

use crate::bag::{PropertyBag, CORRELATION_ID, MESSAGE_ID};
use bytes::Bytes;

/// A message sent to an output or received on an input.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    pub body: Bytes,
    /// System (`$.cid`, `$.mid`, …) and application properties.
    pub properties: PropertyBag,
}

impl Message {
    pub fn new(body: impl Into<Bytes>) -> Self {
        Self {
            body: body.into(),
            properties: PropertyBag::new(),
        }
    }

    pub fn with_correlation_id(mut self, id: impl Into<String>) -> Self {
        self.properties.insert(CORRELATION_ID, id);
        self
    }

    pub fn with_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(key, value);
        self
    }

    pub fn correlation_id(&self) -> Option<&str> {
        self.properties.get(CORRELATION_ID)
    }

    pub fn message_id(&self) -> Option<&str> {
        self.properties.get(MESSAGE_ID)
    }
}

/// A direct-method call delivered to this module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodRequest {
    pub method: String,
    /// Request id to echo in the response.
    pub rid: String,
    /// Raw JSON payload (may be empty for a null payload).
    pub payload: Bytes,
}
