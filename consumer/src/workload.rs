//! The workload the exchanges carry: the request's padding (`PAYLOAD_BYTES`, or a payload sweep's
//! sizes), built once per size at start-up so that an exchange only clones a reference, the
//! padding seen in the producer's replies, and the `iotedge_workload_info` gauge that names the
//! current step.
//!
//! The gauge has one series at a time: a new step sets its labels to 1 and removes the previous
//! step's series, so a sweep of any length adds no series to the registry.

use bytes::Bytes;
use edge::payload;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// One request size, ready to send.
struct Padded {
    bytes: usize,
    /// The message body: `{"padding":"…"}`, or empty (the seed's) for 0.
    body: Bytes,
    /// The method payload's `padding` field.
    padding: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkloadLabels {
    payload_bytes: String,
    reply_bytes: String,
    rate: String,
}

/// What the current step sends, and what the gauge says about it.
pub struct Workload {
    sizes: Vec<Padded>,
    current: AtomicUsize,
    /// The padding of the latest reply, in bytes.
    reply_bytes: AtomicUsize,
    rate: Mutex<f64>,
    info: Family<WorkloadLabels, Gauge>,
    published: Mutex<Option<WorkloadLabels>>,
}

/// The method payload as sent: our trace context and the workload's padding (the seed's producer
/// reads neither).
#[derive(serde::Serialize)]
pub(crate) struct MethodPayload<'a> {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub trace: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub padding: &'a str,
}

impl Workload {
    /// Builds every size's payload once and registers `iotedge_workload_info`.
    pub fn register(registry: &mut Registry, sizes: &[usize], rate: f64) -> Arc<Self> {
        let info = Family::<WorkloadLabels, Gauge>::default();
        registry.register(
            "iotedge_workload_info",
            "The workload being measured (payload and reply padding in bytes, exchanges per second per kind, 0 for the closed loop); one series, the current sweep step's, at 1",
            info.clone(),
        );
        let sizes = sizes
            .iter()
            .map(|&bytes| Padded {
                bytes,
                body: Bytes::from(payload::message_body(bytes)),
                padding: payload::padding(bytes).into(),
            })
            .collect();
        let workload = Arc::new(Self {
            sizes,
            current: AtomicUsize::new(0),
            reply_bytes: AtomicUsize::new(0),
            rate: Mutex::new(rate),
            info,
            published: Mutex::new(None),
        });
        workload.publish();
        workload
    }

    fn padded(&self) -> Option<&Padded> {
        self.sizes
            .get(self.current.load(Ordering::Relaxed))
            .or_else(|| self.sizes.first())
    }

    /// The message body to send now (a reference count, not a copy).
    pub(crate) fn message_body(&self) -> Bytes {
        self.padded().map(|p| p.body.clone()).unwrap_or_default()
    }

    /// The method payload's padding to send now.
    pub(crate) fn method_padding(&self) -> Arc<str> {
        self.padded()
            .map(|p| p.padding.clone())
            .unwrap_or_else(|| Arc::from(""))
    }

    /// The request padding being sent, in bytes.
    pub fn payload_bytes(&self) -> usize {
        self.padded().map_or(0, |p| p.bytes)
    }

    /// The padding of the latest reply, in bytes.
    pub fn reply_bytes(&self) -> usize {
        self.reply_bytes.load(Ordering::Relaxed)
    }

    /// Moves to size `index` (of those given at start-up) and rate `rate`.
    pub fn set_step(&self, index: usize, rate: f64) {
        self.current.store(
            index.min(self.sizes.len().saturating_sub(1)),
            Ordering::Relaxed,
        );
        if let Ok(mut r) = self.rate.lock() {
            *r = rate;
        }
        self.publish();
    }

    /// A reply's padding; the gauge follows when the producer's reply size changes.
    pub(crate) fn observe_reply(&self, bytes: usize) {
        if self.reply_bytes.swap(bytes, Ordering::Relaxed) != bytes {
            self.publish();
        }
    }

    /// Sets the current labels' series to 1 and removes the previous one.
    fn publish(&self) {
        let labels = WorkloadLabels {
            payload_bytes: self.payload_bytes().to_string(),
            reply_bytes: self.reply_bytes().to_string(),
            rate: self.rate.lock().map(|r| r.to_string()).unwrap_or_default(),
        };
        let Ok(mut published) = self.published.lock() else {
            return;
        };
        if published.as_ref() == Some(&labels) {
            return;
        }
        if let Some(old) = published.take() {
            self.info.remove(&old);
        }
        self.info.get_or_create(&labels).set(1);
        *published = Some(labels);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exposition(registry: &Registry) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
        text
    }

    #[test]
    fn the_info_gauge_holds_the_current_step_only() {
        let mut registry = Registry::default();
        let w = Workload::register(&mut registry, &[0, 1024], 50.0);
        assert!(w.message_body().is_empty());
        assert!(exposition(&registry).contains(
            "iotedge_workload_info{payload_bytes=\"0\",reply_bytes=\"0\",rate=\"50\"} 1"
        ));
        w.set_step(1, 50.0);
        w.observe_reply(2048);
        w.observe_reply(2048);
        let text = exposition(&registry);
        let series: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("iotedge_workload_info{"))
            .collect();
        assert_eq!(
            series,
            ["iotedge_workload_info{payload_bytes=\"1024\",reply_bytes=\"2048\",rate=\"50\"} 1"]
        );
        assert_eq!(w.method_padding().len(), 1024);
        let body: serde_json::Value = serde_json::from_slice(&w.message_body()).unwrap();
        assert_eq!(body["padding"].as_str().map(str::len), Some(1024));
    }
}
