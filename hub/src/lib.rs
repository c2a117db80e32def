//! A local stand-in for IoT Edge's edgeHub, so that modules written with the Azure IoT SDKs (and
//! ours) run unchanged on any machine: MQTT 3.1.1 over TLS, routes from a deployment manifest,
//! direct methods over HTTPS, SAS authentication, and edgeHub's Prometheus metrics.
#![forbid(unsafe_code)]

mod admission;
pub mod broker;
pub mod certs;
pub mod faults;
pub mod identities;
mod listener;
pub mod methods;
pub mod metrics;
pub mod refusals;
pub mod routes;
pub mod state;
pub mod store;

use anyhow::{bail, Context, Result};
use clap::Parser;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

pub use state::{Hub, Settings};

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

/// A running hub: its actual addresses (ports chosen when 0 was asked for).
pub struct RunningHub {
    pub hub: Arc<Hub>,
    pub mqtt: SocketAddr,
    pub https: SocketAddr,
    pub plain_mqtt: Option<SocketAddr>,
    pub metrics: SocketAddr,
    pub ca_path: PathBuf,
    pub identities_path: PathBuf,
    metrics_task: tokio::task::JoinHandle<()>,
}

impl RunningHub {
    /// Stops every listener, connection and delivery, and returns once they have all ended
    /// and the ports are free.
    pub async fn stop(self) {
        self.metrics_task.abort();
        let _ = self.metrics_task.await;
        self.hub.shut_down().await;
    }
}

fn parse_fault(spec: &str) -> Result<faults::Fault, faults::FaultError> {
    spec.parse()
}

/// Module names the manifest deploys (kept for callers holding parsed JSON; the hub itself reads
/// an [`edge::Deployment`]).
pub fn manifest_modules(manifest: &serde_json::Value) -> Vec<String> {
    edge::Deployment::from_json(manifest.clone(), std::path::Path::new("the manifest"))
        .map(|d| d.modules())
        .unwrap_or_default()
}

async fn bind(ip: IpAddr, port: u16, what: &str) -> Result<TcpListener> {
    let addr = SocketAddr::new(ip, port);
    TcpListener::bind(addr).await.with_context(|| {
        if port < 1024 {
            format!("cannot listen for {what} on {addr}: ports below 1024 need root or CAP_NET_BIND_SERVICE; pick another with its flag")
        } else {
            format!("cannot listen for {what} on {addr} (is another hub or edgeHub running?)")
        }
    })
}

/// Starts every listener and returns once they are bound.
pub async fn start(args: &Args) -> Result<RunningHub> {
    // Flattened: the error's text already names its cause, which `{:#}` would print again.
    let deployment =
        edge::Deployment::read(&args.deployment).map_err(|e| anyhow::anyhow!("{e}"))?;
    let routes = routes::RouteTable::from_manifest(deployment.json())
        .with_context(|| format!("in {}", args.deployment.display()))?;
    let mut names = deployment.modules();
    names.extend(args.modules.iter().cloned());
    if names.is_empty() {
        bail!(
            "{} deploys no modules and --module names none: nobody could connect",
            args.deployment.display()
        );
    }
    let identities_path = args
        .identities
        .clone()
        .unwrap_or_else(|| args.state_dir.join(edge::contract::IDENTITIES_FILE));
    let (identities, _) = identities::Identities::load_or_create(
        &identities_path,
        &args.iothub_hostname,
        &args.hostname,
        &args.device_id,
        &names,
    )?;

    let cert_files = match (&args.tls_cert, &args.tls_key, &args.tls_ca) {
        (Some(cert), Some(key), Some(ca)) => Some(certs::CertFiles {
            cert: cert.clone(),
            key: key.clone(),
            ca: ca.clone(),
        }),
        _ => None,
    };
    let hostnames = vec![args.hostname.clone()];
    let tls = certs::load_or_generate(&args.state_dir, cert_files.as_ref(), &hostnames)?;

    let mut registry = prometheus_client::registry::Registry::with_labels(
        [
            (
                std::borrow::Cow::Borrowed("iothub"),
                std::borrow::Cow::Owned(args.iothub_hostname.clone()),
            ),
            (
                std::borrow::Cow::Borrowed("edge_device"),
                std::borrow::Cow::Owned(args.device_id.clone()),
            ),
            // A new GUID per start, as edgeHub's `MetricsProvider`: a restart is a new series.
            (
                std::borrow::Cow::Borrowed("instance_number"),
                std::borrow::Cow::Owned(methods::new_guid()),
            ),
        ]
        .into_iter(),
    );
    telemetry::register_process_metrics(&mut registry, "hub");
    let metrics = metrics::HubMetrics::register(&mut registry);
    let settings = Settings {
        device_id: args.device_id.clone(),
        iothub_hostname: args.iothub_hostname.clone(),
        gateway_hostname: args.hostname.clone(),
        ack_timeout: args.ack_timeout,
        queue_size: args.queue_size,
        // edgeHub's default when the manifest sets no timeToLiveSecs.
        default_ttl: Duration::from_secs(deployment.store_ttl_secs().unwrap_or(7200)),
        max_message_size: edge::topic::MAX_MESSAGE_SIZE,
        max_connections: args.max_connections,
        max_delivery_attempts: args.max_delivery_attempts,
        faults: args.faults.clone(),
        method_subscribe_delay: args.method_subscribe_delay,
    };
    for fault in &args.faults {
        tracing::warn!(%fault, "fault injection on: {fault:?} (counted in edgehub_faults_injected_total{{fault=\"{fault}\"}})");
    }
    // Messages queued before a stop (or a kill) are delivered again; an unreadable store stops
    // the start here, naming the file to remove.
    let store = Arc::new(store::Store::open(&args.state_dir)?);
    let hub = Hub::with_store(settings, identities, routes, metrics, Some(store));
    let unauthenticated = usize::try_from(args.max_unauthenticated).unwrap_or(usize::MAX);
    let mqtt_admission =
        admission::Admission::new(unauthenticated, args.max_connections, args.auth_timeout);
    let https_admission = admission::Admission::new(
        unauthenticated,
        args.max_https_connections,
        args.auth_timeout,
    );
    let http_limits = methods::HttpLimits {
        header_timeout: args.http_header_timeout,
        body_timeout: args.http_body_timeout,
    };

    let mqtt_listener = bind(args.bind, args.mqtt_port, "MQTT/TLS").await?;
    let https_listener = bind(args.bind, args.https_port, "HTTPS").await?;
    // Everything is bound before anything is spawned, so a failed start leaves nothing running.
    let plain_listener = match args.plain_mqtt_port {
        Some(port) => Some(bind(args.bind, port, "plain MQTT").await?),
        None => None,
    };
    let plain_mqtt = plain_listener
        .as_ref()
        .map(|l| l.local_addr())
        .transpose()?;
    let metrics_server = telemetry::serve_metrics(
        SocketAddr::new(args.bind, args.metrics_port),
        Arc::new(registry),
    )
    .await
    .with_context(|| {
        format!(
            "cannot serve /metrics on {}:{}",
            args.bind, args.metrics_port
        )
    })?;
    let mqtt = mqtt_listener.local_addr()?;
    let https = https_listener.local_addr()?;
    hub.spawn(broker::serve(
        hub.clone(),
        mqtt_listener,
        Some(tokio_rustls::TlsAcceptor::from(tls.mqtt)),
        mqtt_admission.clone(),
    ));
    hub.spawn(methods::serve(
        hub.clone(),
        https_listener,
        tokio_rustls::TlsAcceptor::from(tls.https),
        https_admission,
        http_limits,
    ));
    if let Some(l) = plain_listener {
        hub.spawn(broker::serve(hub.clone(), l, None, mqtt_admission));
    }
    let running = RunningHub {
        hub,
        mqtt,
        https,
        plain_mqtt,
        metrics: metrics_server.local_addr,
        ca_path: tls.ca_path,
        identities_path,
        metrics_task: metrics_server.task,
    };
    write_endpoints(&args.state_dir, &running)?;
    Ok(running)
}

/// `endpoints.json` in the state directory: the actual ports, for launchers and tests.
fn write_endpoints(state_dir: &std::path::Path, hub: &RunningHub) -> Result<()> {
    edge::Endpoints {
        ca: hub.ca_path.clone(),
        https: hub.https.port(),
        identities: hub.identities_path.clone(),
        metrics: hub.metrics.port(),
        mqtt: hub.mqtt.port(),
        pid: std::process::id(),
        plain_mqtt: hub.plain_mqtt.map(|a| a.port()),
    }
    .write(state_dir)?;
    Ok(())
}

/// Runs the hub until SIGINT/SIGTERM.
pub async fn run(args: Args) -> Result<()> {
    if let Some(Command::Healthcheck) = args.command {
        return telemetry::healthcheck(SocketAddr::new(args.bind, args.metrics_port))
            .map_err(anyhow::Error::msg);
    }
    let running = start(&args).await?;
    let plain = running
        .plain_mqtt
        .map(|a| format!(" mqtt://{a} (plain, development)"))
        .unwrap_or_default();
    tracing::info!(
        "hub ready: mqtts://{} https://{} metrics http://{}/metrics{plain}; device {}; {} route(s); CA for clients: {}; identities: {}",
        running.mqtt,
        running.https,
        running.metrics,
        args.device_id,
        running.hub.routes().routes().len(),
        running.ca_path.display(),
        running.identities_path.display(),
    );
    edge::signal::shutdown().await;
    tracing::info!("hub stopping");
    running.stop().await;
    Ok(())
}
