//! A module message as a route's WHERE clause sees it: its connection's device and module, its
//! output, and the property bag it was sent with.

use super::MessageProperties;
use edge::bag::{BagBuffer, SYSTEM_PREFIX};

/// What a module message looks like to a route's WHERE clause.
pub(crate) struct RoutingView<'a> {
    pub device: &'a str,
    pub module: &'a str,
    pub output: Option<&'a str>,
    pub bag: &'a BagBuffer,
}

impl MessageProperties for RoutingView<'_> {
    fn system(&self, name: &str) -> Option<&str> {
        use edge::bag::{CONTENT_ENCODING, CONTENT_TYPE, CORRELATION_ID, MESSAGE_ID, TO, USER_ID};
        match name {
            "connectionDeviceId" => Some(self.device),
            "connectionModuleId" => Some(self.module),
            "outputName" => self.output,
            "messageId" => self.bag.get(MESSAGE_ID),
            "correlationId" => self.bag.get(CORRELATION_ID),
            "contentType" => self.bag.get(CONTENT_TYPE),
            "contentEncoding" => self.bag.get(CONTENT_ENCODING),
            "userId" => self.bag.get(USER_ID),
            "to" => self.bag.get(TO),
            _ => None,
        }
    }
    fn application(&self, name: &str) -> Option<&str> {
        if name.starts_with(SYSTEM_PREFIX) {
            return None;
        }
        self.bag.get(name)
    }
}
