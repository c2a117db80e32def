//! The command line: clap's `Args` (flags and `HUB_*` variables), turned into a plain
//! [`HubConfig`] by [`Args::config`], and [`main`], what the `hub` binary and the launcher's
//! `hub` subcommand run.

use crate::certs::CertFiles;
use crate::config::HubConfig;
use crate::faults;
use clap::Parser;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Local edgeHub stand-in: serves IoT Edge modules over MQTT/TLS and HTTPS with routes from a
/// deployment manifest.
#[derive(Debug, Clone, Parser)]
#[command(name = "hub", version, about, long_about = None)]
pub struct Args {
    /// IoT Edge deployment manifest whose $edgeHub routes the hub applies; its modules get identities.
    #[arg(
        long,
        env = "HUB_DEPLOYMENT",
        default_value = "deployment.template.json"
    )]
    pub deployment: PathBuf,
    /// Address to listen on (0.0.0.0 for containers, 127.0.0.1 to stay local).
    #[arg(long, env = "HUB_BIND", default_value = "0.0.0.0")]
    pub bind: IpAddr,
    /// MQTT over TLS port (edgeHub: 8883). 0 picks a free port.
    #[arg(long, env = "HUB_MQTT_PORT", default_value_t = 8883)]
    pub mqtt_port: u16,
    /// HTTPS port for direct methods (edgeHub: 443). 0 picks a free port.
    #[arg(long, env = "HUB_HTTPS_PORT", default_value_t = 443)]
    pub https_port: u16,
    /// Also serve MQTT without TLS on this port (development only).
    #[arg(long, env = "HUB_PLAIN_MQTT_PORT")]
    pub plain_mqtt_port: Option<u16>,
    /// Prometheus /metrics port (edgeHub: 9600). 0 picks a free port.
    #[arg(long, env = "HUB_METRICS_PORT", default_value_t = 9600)]
    pub metrics_port: u16,
    /// Gateway hostname: what modules connect to and the server certificate names.
    #[arg(long, env = "HUB_HOSTNAME", default_value = "localhost")]
    pub hostname: String,
    /// IoT Hub hostname the SAS tokens name (`sr`), as on a real device.
    #[arg(
        long,
        env = "HUB_IOTHUB_HOSTNAME",
        default_value = "local-hub.azure-devices.net"
    )]
    pub iothub_hostname: String,
    /// Edge device id.
    #[arg(long, env = "HUB_DEVICE_ID", default_value = "local-edge-device")]
    pub device_id: String,
    /// Where the generated CA, server certificate, identities and endpoints.json live.
    #[arg(long, env = "HUB_STATE_DIR", default_value = ".state/hub")]
    pub state_dir: PathBuf,
    /// Module identities file (JSON: {"modules":{"name":{"primaryKey":"base64"}}}); missing keys are generated. Default: `<state-dir>/identities.json`.
    #[arg(long, env = "HUB_IDENTITIES")]
    pub identities: Option<PathBuf>,
    /// Extra module identities to create besides the deployment's modules (repeatable).
    #[arg(long = "module", value_name = "NAME")]
    pub modules: Vec<String>,
    /// Server certificate chain (PEM); with --tls-key and --tls-ca instead of the generated CA.
    #[arg(long, env = "HUB_TLS_CERT", requires_all = ["tls_key", "tls_ca"])]
    pub tls_cert: Option<PathBuf>,
    /// Server private key (PEM).
    #[arg(long, env = "HUB_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// CA certificate that clients trust (PEM), printed for them.
    #[arg(long, env = "HUB_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// How long to wait for a module's PUBACK of an input message before resending (edgeHub: 30s).
    #[arg(long, env = "HUB_ACK_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub ack_timeout: Duration,
    /// Messages kept per target module while it is offline; beyond this they are dropped and counted.
    #[arg(long, env = "HUB_QUEUE_SIZE", default_value_t = 10_000)]
    pub queue_size: usize,
    /// Sends of one input message (first send and resends) without a PUBACK before it is
    /// dropped and counted (edgehub_messages_dropped_total{reason="not_acknowledged"}), so one
    /// message can never hold a module's queue forever.
    #[arg(long, env = "HUB_MAX_DELIVERY_ATTEMPTS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_delivery_attempts: u32,
    /// How long a direct method call that waited for its target to subscribe to methods waits
    /// after the subscription before it is sent. edgeHub waits a fixed 3s; the hub sends at once
    /// by default, so the wait does not land in method latencies (docs/protocol.md).
    #[arg(long, env = "HUB_METHOD_SUBSCRIBE_DELAY", default_value = "0s", value_parser = humantime::parse_duration)]
    pub method_subscribe_delay: Duration,
    /// Most simultaneous authenticated MQTT connections; beyond it CONNECT gets CONNACK 3.
    #[arg(long, env = "HUB_MAX_CONNECTIONS", default_value_t = 1000)]
    pub max_connections: usize,
    /// Most simultaneous connections that have not authenticated yet, per protocol (MQTT,
    /// HTTPS). When full, a new connection closes the oldest unauthenticated one, so a flood
    /// cannot lock modules out.
    #[arg(long, env = "HUB_MAX_UNAUTHENTICATED", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_unauthenticated: u64,
    /// Time from accepting a connection to its authentication (TLS handshake and CONNECT, or
    /// TLS handshake and a request with a valid token); later, the connection is closed.
    #[arg(long, env = "HUB_AUTH_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub auth_timeout: Duration,
    /// Most simultaneous authenticated HTTPS connections (method callers); beyond it 503.
    #[arg(long, env = "HUB_MAX_HTTPS_CONNECTIONS", default_value_t = 512)]
    pub max_https_connections: usize,
    /// Time for an HTTPS request's headers to arrive, counted from when the connection starts
    /// waiting for them; also how long an idle keep-alive connection stays open.
    #[arg(long, env = "HUB_HTTP_HEADER_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub http_header_timeout: Duration,
    /// Inject a fault on purpose (repeatable; env: specs separated by `;`). Forms:
    /// delay:messages=8ms, delay:methods=10ms~2ms, drop:messages=0.1, drop:methods=0.1,
    /// lose-ack:MODULE=0.05, tls-fail:https=0.02, disconnect:MODULE=30s. Each injection is
    /// counted in edgehub_faults_injected_total{fault}.
    #[arg(long = "fault", env = "HUB_FAULTS", value_name = "SPEC", value_delimiter = ';', value_parser = parse_fault)]
    pub faults: Vec<faults::Fault>,
    /// Time for an HTTPS request's body to arrive once its headers are in.
    #[arg(long, env = "HUB_HTTP_BODY_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub http_body_timeout: Duration,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Besides running the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Subcommand)]
pub enum Command {
    /// Ask this hub's GET /healthz (127.0.0.1 or --bind, --metrics-port) and exit 0 if it answers
    /// 200, 1 otherwise with the reason on stderr (the image's HEALTHCHECK). Starts nothing.
    Healthcheck,
}

impl Args {
    /// The hub's configuration as these flags and variables give it, defaults resolved.
    pub fn config(&self) -> HubConfig {
        // clap makes --tls-cert require the key and the CA; a key or CA alone is ignored.
        let tls = match (&self.tls_cert, &self.tls_key, &self.tls_ca) {
            (Some(cert), Some(key), Some(ca)) => Some(CertFiles {
                cert: cert.clone(),
                key: key.clone(),
                ca: ca.clone(),
            }),
            _ => None,
        };
        HubConfig {
            deployment: self.deployment.clone(),
            bind: self.bind,
            mqtt_port: self.mqtt_port,
            https_port: self.https_port,
            plain_mqtt_port: self.plain_mqtt_port,
            metrics_port: self.metrics_port,
            hostname: self.hostname.clone(),
            iothub_hostname: self.iothub_hostname.clone(),
            device_id: self.device_id.clone(),
            state_dir: self.state_dir.clone(),
            identities: (self.identities.clone())
                .unwrap_or_else(|| self.state_dir.join(edge::contract::IDENTITIES_FILE)),
            modules: self.modules.clone(),
            tls,
            ack_timeout: self.ack_timeout,
            queue_size: self.queue_size,
            max_delivery_attempts: self.max_delivery_attempts,
            method_subscribe_delay: self.method_subscribe_delay,
            max_connections: self.max_connections,
            max_unauthenticated: usize::try_from(self.max_unauthenticated).unwrap_or(usize::MAX),
            auth_timeout: self.auth_timeout,
            max_https_connections: self.max_https_connections,
            http_header_timeout: self.http_header_timeout,
            http_body_timeout: self.http_body_timeout,
            faults: self.faults.clone(),
        }
    }
}

fn parse_fault(spec: &str) -> Result<faults::Fault, faults::FaultError> {
    spec.parse()
}

/// Runs what `args` ask for: the healthcheck, or the hub until SIGINT/SIGTERM. Sets up logging
/// first (the caller has not).
pub async fn main(args: Args) -> anyhow::Result<()> {
    let _tracing = telemetry::init_tracing(&telemetry::TraceOptions::disabled("hub"));
    if let Some(Command::Healthcheck) = args.command {
        return telemetry::healthcheck(SocketAddr::new(args.bind, args.metrics_port))
            .map_err(anyhow::Error::msg);
    }
    crate::run(args.config(), edge::signal::shutdown()).await
}
