//! The percent-encoded property bag that IoT Hub MQTT topics carry (`k=v&k=v`, see PROTOCOL.md §2.3).

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use std::fmt::Write as _;

/// Everything but RFC 3986 unreserved characters is escaped, with upper-case hex, as the SDKs do.
pub const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Output name (module → hub only; the hub drops it on delivery).
pub const OUTPUT_NAME: &str = "$.on";
pub const CORRELATION_ID: &str = "$.cid";
pub const MESSAGE_ID: &str = "$.mid";
pub const CONTENT_TYPE: &str = "$.ct";
pub const CONTENT_ENCODING: &str = "$.ce";
/// Sender identity, added by the hub on delivery to an input.
pub const CONNECTION_DEVICE_ID: &str = "$.cdid";
pub const CONNECTION_MODULE_ID: &str = "$.cmid";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BagError {
    #[error("property bag is not UTF-8 after percent-decoding: {0:?}")]
    NotUtf8(String),
    #[error("property bag has an empty key in {0:?}")]
    EmptyKey(String),
}

/// Message properties in wire order: system properties (`$.x`) and application properties.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PropertyBag(Vec<(String, String)>);

impl PropertyBag {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key`, replacing an earlier value so a bag never holds a key twice.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let (key, value) = (key.into(), value.into());
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key, value)),
        }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn remove(&mut self, key: &str) -> Option<String> {
        let at = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.remove(at).1)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Application properties: every key that is not a `$.` system property.
    pub fn application(&self) -> impl Iterator<Item = (&str, &str)> {
        self.iter().filter(|(k, _)| !k.starts_with("$."))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Appends the encoded bag (no leading or trailing `/`) to `out`.
    pub fn encode_into(&self, out: &mut String) {
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push('&');
            }
            // Writing into a String cannot fail.
            let _ = write!(
                out,
                "{}={}",
                utf8_percent_encode(k, COMPONENT),
                utf8_percent_encode(v, COMPONENT)
            );
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        self.encode_into(&mut out);
        out
    }

    /// Decodes a bag as the SDKs send it: with or without a trailing `/`, keys and values
    /// percent-encoded, a key without `=` meaning an empty value.
    pub fn decode(encoded: &str) -> Result<Self, BagError> {
        let encoded = encoded.strip_suffix('/').unwrap_or(encoded);
        let mut bag = PropertyBag::new();
        for pair in encoded.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let key = decode_component(k)?;
            if key.is_empty() {
                return Err(BagError::EmptyKey(encoded.to_owned()));
            }
            bag.insert(key, decode_component(v)?);
        }
        Ok(bag)
    }
}

fn decode_component(s: &str) -> Result<String, BagError> {
    percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| BagError::NotUtf8(s.to_owned()))
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for PropertyBag {
    fn from_iter<T: IntoIterator<Item = (K, V)>>(iter: T) -> Self {
        let mut bag = PropertyBag::new();
        for (k, v) in iter {
            bag.insert(k, v);
        }
        bag
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_the_sdks() {
        let bag: PropertyBag = [
            (OUTPUT_NAME, "GetTimeMessage"),
            (CORRELATION_ID, "2019-06-19T19:32:16.4161739Z"),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            bag.encode(),
            "%24.on=GetTimeMessage&%24.cid=2019-06-19T19%3A32%3A16.4161739Z"
        );
    }

    #[test]
    fn round_trips_awkward_characters() {
        let bag: PropertyBag = [
            ("$.cid", "a&b=c/d e"),
            ("k&=/ é", "v=&/ é%"),
            ("ünï", "日本"),
            ("empty", ""),
        ]
        .into_iter()
        .collect();
        let encoded = bag.encode();
        assert!(!encoded.contains(' ') && !encoded.contains('/'));
        assert_eq!(PropertyBag::decode(&encoded).unwrap(), bag);
        // The C# SDK adds a trailing '/'.
        assert_eq!(PropertyBag::decode(&format!("{encoded}/")).unwrap(), bag);
    }

    #[test]
    fn decodes_edge_cases() {
        assert!(PropertyBag::decode("").unwrap().is_empty());
        assert!(PropertyBag::decode("/").unwrap().is_empty());
        let bag = PropertyBag::decode("flag&x=1").unwrap();
        assert_eq!(bag.get("flag"), Some(""));
        assert_eq!(bag.get("x"), Some("1"));
        assert!(PropertyBag::decode("%FF=1").is_err());
        assert!(PropertyBag::decode("=1").is_err());
    }

    #[test]
    fn application_properties_exclude_system_ones() {
        let bag: PropertyBag = [("$.cid", "1"), ("color", "blue")].into_iter().collect();
        assert_eq!(
            bag.application().collect::<Vec<_>>(),
            vec![("color", "blue")]
        );
    }
}
