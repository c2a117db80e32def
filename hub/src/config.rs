//! What a hub starts with, as plain data: built from the command line by
//! [`Args::config`](crate::cli::Args::config), or by hand by an embedding program (the benchmark,
//! the tests). The flags' documentation (`hub --help`) says what each value means.

use crate::certs::CertFiles;
use crate::faults::Fault;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A hub's configuration: where it listens, who it is, its files and its limits.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// The deployment manifest whose `$edgeHub` routes the hub applies.
    pub deployment: PathBuf,
    /// The address every listener binds.
    pub bind: IpAddr,
    /// MQTT over TLS; 0 picks a free port (as do the other ports).
    pub mqtt_port: u16,
    /// HTTPS for direct methods.
    pub https_port: u16,
    /// MQTT without TLS (development only); `None`: not served.
    pub plain_mqtt_port: Option<u16>,
    /// Prometheus `/metrics` and `/healthz`.
    pub metrics_port: u16,
    /// The gateway hostname: what modules connect to and the server certificate names.
    pub hostname: String,
    /// The IoT Hub hostname SAS tokens name.
    pub iothub_hostname: String,
    /// The edge device id.
    pub device_id: String,
    /// Where the CA, certificates, identities, store and `endpoints.json` live.
    pub state_dir: PathBuf,
    /// The module identities file.
    pub identities: PathBuf,
    /// Module identities to create besides the deployment's modules.
    pub modules: Vec<String>,
    /// The server certificate, key and CA; `None`: the hub's own CA under `state_dir`.
    pub tls: Option<CertFiles>,
    /// How long a delivery waits for a PUBACK before resending.
    pub ack_timeout: Duration,
    /// Messages kept per target module.
    pub queue_size: usize,
    /// Sends of one input message before it is dropped.
    pub max_delivery_attempts: u32,
    /// How long a method call that waited for its target waits after the subscription.
    pub method_subscribe_delay: Duration,
    /// Most authenticated MQTT connections.
    pub max_connections: usize,
    /// Most connections not authenticated yet, per protocol.
    pub max_unauthenticated: usize,
    /// Time from accepting a connection to its authentication.
    pub auth_timeout: Duration,
    /// Most authenticated HTTPS connections.
    pub max_https_connections: usize,
    /// Time for an HTTPS request's headers (and an idle keep-alive connection).
    pub http_header_timeout: Duration,
    /// Time for an HTTPS request's body once its headers are in.
    pub http_body_timeout: Duration,
    /// Faults to inject on purpose.
    pub faults: Vec<Fault>,
}
