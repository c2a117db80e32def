//! The percent-encoded property bag that IoT Hub MQTT topics carry (`k=v&k=v`, see docs/protocol.md#property-bags).

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use std::fmt::Write as _;

/// Everything but RFC 3986 unreserved characters is escaped, with upper-case hex, as the SDKs do.
pub const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Names with this prefix are system properties (`$.mid`, `$.on`, …), never application ones.
pub const SYSTEM_PREFIX: &str = "$.";
/// Output name (module → hub only; the hub drops it on delivery).
pub const OUTPUT_NAME: &str = "$.on";
pub const CORRELATION_ID: &str = "$.cid";
pub const MESSAGE_ID: &str = "$.mid";
pub const CONTENT_TYPE: &str = "$.ct";
pub const CONTENT_ENCODING: &str = "$.ce";
/// Sender identity, added by the hub on delivery to an input.
pub const CONNECTION_DEVICE_ID: &str = "$.cdid";
pub const CONNECTION_MODULE_ID: &str = "$.cmid";
pub const USER_ID: &str = "$.uid";
pub const TO: &str = "$.to";

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
        self.iter().filter(|(k, _)| !k.starts_with(SYSTEM_PREFIX))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Appends the encoded bag (no leading or trailing `/`) to `out`.
    pub fn encode_into(&self, out: &mut String) {
        encode_pairs(self.iter(), out);
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        self.encode_into(&mut out);
        out
    }

    /// Decodes a bag as the SDKs send it: with or without a trailing `/`, keys and values
    /// percent-encoded, a key without `=` meaning an empty value.
    pub fn decode(encoded: &str) -> Result<Self, BagError> {
        let mut bag = PropertyBag::new();
        for pair in encoded_pairs(encoded) {
            let (k, v) = pair?;
            bag.insert(decode_component(k)?, decode_component(v)?);
        }
        Ok(bag)
    }
}

/// The still-encoded `(key, value)` pairs of a bag, as [`PropertyBag::decode`] reads them: a
/// trailing `/` ignored, empty pairs skipped, a key without `=` meaning an empty value, an
/// empty key refused (percent-decoding never empties a non-empty component).
fn encoded_pairs(encoded: &str) -> impl Iterator<Item = Result<(&str, &str), BagError>> {
    let encoded = encoded.strip_suffix('/').unwrap_or(encoded);
    encoded
        .split('&')
        .filter(|p| !p.is_empty())
        .map(
            move |pair| match pair.split_once('=').unwrap_or((pair, "")) {
                ("", _) => Err(BagError::EmptyKey(encoded.to_owned())),
                kv => Ok(kv),
            },
        )
}

fn decode_component(s: &str) -> Result<String, BagError> {
    percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| BagError::NotUtf8(s.to_owned()))
}

/// Writes `k=v&k=v`, each key and value percent-encoded with [`COMPONENT`].
fn encode_pairs<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>, out: &mut String) {
    for (i, (k, v)) in pairs.enumerate() {
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

/// A decoded bag that keeps its buffers between messages: [`BagBuffer::decode`] reads the same
/// pairs as [`PropertyBag::decode`] (same errors, a repeated key keeps its first place and its
/// last value), but into text storage it reuses, so decoding, looking up, editing and
/// re-encoding a message's properties allocates nothing once the buffers have grown. The hub
/// holds one per connection for the messages that connection sends.
#[derive(Debug, Default)]
pub struct BagBuffer {
    /// Every decoded key and value, back to back; `pairs` index into it.
    text: String,
    pairs: Vec<(Span, Span)>,
    /// One component's percent-decoded bytes, checked as UTF-8 before they join `text`.
    scratch: Vec<u8>,
}

type Span = (usize, usize);

impl BagBuffer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the contents with the decoded `encoded` bag. On an error the buffer is empty.
    pub fn decode(&mut self, encoded: &str) -> Result<(), BagError> {
        self.clear();
        let result = self.decode_pairs(encoded);
        if result.is_err() {
            self.clear();
        }
        result
    }

    fn decode_pairs(&mut self, encoded: &str) -> Result<(), BagError> {
        for pair in encoded_pairs(encoded) {
            let (k, v) = pair?;
            let key = self.push_decoded(k)?;
            let value = self.push_decoded(v)?;
            self.set(key, value);
        }
        Ok(())
    }

    pub fn clear(&mut self) {
        self.text.clear();
        self.pairs.clear();
    }

    /// Percent-decodes `s` onto the end of `text`.
    fn push_decoded(&mut self, s: &str) -> Result<Span, BagError> {
        self.scratch.clear();
        self.scratch.extend(percent_decode_str(s));
        let decoded =
            std::str::from_utf8(&self.scratch).map_err(|_| BagError::NotUtf8(s.to_owned()))?;
        Ok(push(&mut self.text, decoded))
    }

    fn str(&self, (start, end): Span) -> &str {
        &self.text[start..end]
    }

    fn position(&self, key: &str) -> Option<usize> {
        self.pairs.iter().position(|&(k, _)| self.str(k) == key)
    }

    /// Sets the pair whose key is at `key`, replacing the value of an earlier equal key.
    fn set(&mut self, key: Span, value: Span) {
        match self.position(self.str(key)) {
            Some(at) => self.pairs[at].1 = value,
            None => self.pairs.push((key, value)),
        }
    }

    /// Sets `key`, replacing an earlier value so the bag never holds a key twice.
    pub fn insert(&mut self, key: &str, value: &str) {
        let key = push(&mut self.text, key);
        let value = push(&mut self.text, value);
        self.set(key, value);
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.position(key).map(|at| self.str(self.pairs[at].1))
    }

    /// Removes `key`; whether it was there.
    pub fn remove(&mut self, key: &str) -> bool {
        match self.position(key) {
            Some(at) => {
                self.pairs.remove(at);
                true
            }
            None => false,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|&(k, v)| (self.str(k), self.str(v)))
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Appends the encoded bag (no leading or trailing `/`) to `out`, as [`PropertyBag`] does.
    pub fn encode_into(&self, out: &mut String) {
        encode_pairs(self.iter(), out);
    }

    pub fn to_bag(&self) -> PropertyBag {
        self.iter().collect()
    }
}

/// Appends `s` to `text`; where it landed.
fn push(text: &mut String, s: &str) -> Span {
    let start = text.len();
    text.push_str(s);
    (start, text.len())
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
    fn the_reused_buffer_reads_what_the_bag_reads() {
        let mut buf = BagBuffer::new();
        for encoded in [
            "",
            "/",
            "flag&x=1",
            "%24.on=out&%24.cid=2019-06-19T19%3A32%3A16.4161739Z/",
            "a=1&b=2&a=3",
            "k%26%3D%2F%20%C3%A9=v%3D%26%2F%20%C3%A9%25&%C3%BCn%C3%AF=%E6%97%A5%E6%9C%AC",
            "%FF=1",
            "a=1&=2",
            "a=%C3",
        ] {
            let got = buf.decode(encoded).map(|()| buf.to_bag());
            assert_eq!(got, PropertyBag::decode(encoded), "{encoded:?}");
            if let Ok(bag) = got {
                let mut out = String::new();
                buf.encode_into(&mut out);
                assert_eq!(out, bag.encode(), "{encoded:?}");
            } else {
                assert!(buf.is_empty());
            }
        }
        // Editing in place: a removed key is gone, an inserted one replaces in place or appends.
        buf.decode("%24.on=out&%24.cdid=spoofed&color=blue")
            .unwrap();
        assert_eq!(buf.get(OUTPUT_NAME), Some("out"));
        assert!(buf.remove(OUTPUT_NAME));
        assert!(!buf.remove(OUTPUT_NAME));
        buf.insert(CONNECTION_DEVICE_ID, "d");
        buf.insert(CONNECTION_MODULE_ID, "m");
        let mut bag = PropertyBag::decode("%24.on=out&%24.cdid=spoofed&color=blue").unwrap();
        bag.remove(OUTPUT_NAME);
        bag.insert(CONNECTION_DEVICE_ID, "d");
        bag.insert(CONNECTION_MODULE_ID, "m");
        assert_eq!(buf.to_bag(), bag);
        assert_eq!(buf.len(), 3);
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
