//! A local stand-in for IoT Edge's edgeHub, so that modules written with the Azure IoT SDKs (and
//! ours) run unchanged on any machine: MQTT 3.1.1 over TLS, routes from a deployment manifest,
//! direct methods over HTTPS, SAS authentication, and edgeHub's Prometheus metrics.
#![forbid(unsafe_code)]

mod admission;
pub mod broker;
pub mod certs;
pub mod cli;
mod config;
pub mod faults;
pub mod identities;
mod listener;
pub mod methods;
pub mod metrics;
pub mod refusals;
pub mod routes;
pub mod state;
pub mod store;

use admission::Admission;
use anyhow::{bail, Context, Result};
use prometheus_client::registry::Registry;
use std::borrow::Cow;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

pub use cli::Args;
pub use config::HubConfig;
pub use state::{Hub, Settings};

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

/// Module names the manifest deploys (kept for callers holding parsed JSON; the hub itself reads
/// an [`edge::Deployment`]).
pub fn manifest_modules(manifest: &serde_json::Value) -> Vec<String> {
    edge::Deployment::from_json(manifest.clone(), std::path::Path::new("the manifest"))
        .map(|d| d.modules())
        .unwrap_or_default()
}

/// Starts every listener and returns once they are bound.
pub async fn start(config: &HubConfig) -> Result<RunningHub> {
    // Flattened: the error's text already names its cause, which `{:#}` would print again.
    let deployment =
        edge::Deployment::read(&config.deployment).map_err(|e| anyhow::anyhow!("{e}"))?;
    let routes = routes::RouteTable::from_manifest(deployment.json())
        .with_context(|| format!("in {}", config.deployment.display()))?;
    let identities = load_identities(config, &deployment)?;
    let hostnames = std::slice::from_ref(&config.hostname);
    let tls = certs::load_or_generate(&config.state_dir, config.tls.as_ref(), hostnames)?;
    let mut registry = metrics_registry(config);
    let metrics = metrics::HubMetrics::register(&mut registry);
    let settings = settings(config, &deployment);
    for fault in &config.faults {
        tracing::warn!(%fault, "fault injection on: {fault:?} (counted in edgehub_faults_injected_total{{fault=\"{fault}\"}})");
    }
    // Messages queued before a stop (or a kill) are delivered again; an unreadable store stops
    // the start here, naming the file to remove.
    let store = Arc::new(store::Store::open(&config.state_dir)?);
    let hub = Hub::with_store(settings, identities, routes, metrics, Some(store));
    let running = Listeners::bind(config, registry)
        .await?
        .serve(hub, config, tls)?;
    write_endpoints(&config.state_dir, &running)?;
    Ok(running)
}

/// The identities of the modules the deployment deploys and `--module` adds, from the
/// identities file; keys it lacks are generated and written back.
fn load_identities(
    config: &HubConfig,
    deployment: &edge::Deployment,
) -> Result<identities::Identities> {
    let mut names = deployment.modules();
    names.extend(config.modules.iter().cloned());
    if names.is_empty() {
        bail!(
            "{} deploys no modules and --module names none: nobody could connect",
            config.deployment.display()
        );
    }
    let (identities, _) = identities::Identities::load_or_create(
        &config.identities,
        &config.iothub_hostname,
        &config.hostname,
        &config.device_id,
        &names,
    )?;
    Ok(identities)
}

/// The registry `/metrics` serves: edgeHub's constant labels on every series, and the process
/// metrics.
fn metrics_registry(config: &HubConfig) -> Registry {
    let labels = [
        ("iothub", config.iothub_hostname.clone()),
        ("edge_device", config.device_id.clone()),
        // A new GUID per start, as edgeHub's `MetricsProvider`: a restart is a new series.
        ("instance_number", methods::new_guid()),
    ];
    let mut registry = Registry::with_labels(
        labels
            .into_iter()
            .map(|(name, value)| (Cow::Borrowed(name), Cow::Owned(value))),
    );
    telemetry::register_process_metrics(&mut registry, "hub");
    registry
}

/// The limits and names the hub's state runs with.
fn settings(config: &HubConfig, deployment: &edge::Deployment) -> Settings {
    Settings {
        device_id: config.device_id.clone(),
        iothub_hostname: config.iothub_hostname.clone(),
        gateway_hostname: config.hostname.clone(),
        ack_timeout: config.ack_timeout,
        queue_size: config.queue_size,
        // edgeHub's default when the manifest sets no timeToLiveSecs.
        default_ttl: Duration::from_secs(deployment.store_ttl_secs().unwrap_or(7200)),
        max_message_size: edge::topic::MAX_MESSAGE_SIZE,
        max_connections: config.max_connections,
        max_delivery_attempts: config.max_delivery_attempts,
        faults: config.faults.clone(),
        method_subscribe_delay: config.method_subscribe_delay,
    }
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

/// The hub's sockets. All are bound before anything is served on them, so a start that fails
/// on a taken port leaves no listener running.
struct Listeners {
    mqtt: TcpListener,
    https: TcpListener,
    plain_mqtt: Option<TcpListener>,
    metrics: telemetry::MetricsServer,
}

impl Listeners {
    async fn bind(config: &HubConfig, registry: Registry) -> Result<Self> {
        let ip = config.bind;
        let mqtt = bind(ip, config.mqtt_port, "MQTT/TLS").await?;
        let https = bind(ip, config.https_port, "HTTPS").await?;
        let plain_mqtt = match config.plain_mqtt_port {
            Some(port) => Some(bind(ip, port, "plain MQTT").await?),
            None => None,
        };
        let metrics_addr = SocketAddr::new(ip, config.metrics_port);
        let metrics = telemetry::serve_metrics(metrics_addr, Arc::new(registry))
            .await
            .with_context(|| format!("cannot serve /metrics on {ip}:{}", config.metrics_port))?;
        Ok(Self {
            mqtt,
            https,
            plain_mqtt,
            metrics,
        })
    }

    /// Serves MQTT (TLS, and plain if asked for) and HTTPS on the bound sockets; MQTT's two
    /// listeners share one admission, so their limits are the hub's, not per port.
    fn serve(self, hub: Arc<Hub>, config: &HubConfig, tls: certs::ServerTls) -> Result<RunningHub> {
        let mqtt = self.mqtt.local_addr()?;
        let https = self.https.local_addr()?;
        let plain_mqtt = (self.plain_mqtt.as_ref())
            .map(TcpListener::local_addr)
            .transpose()?;
        let unauthenticated = config.max_unauthenticated;
        let mqtt_admission =
            Admission::new(unauthenticated, config.max_connections, config.auth_timeout);
        let https_admission = Admission::new(
            unauthenticated,
            config.max_https_connections,
            config.auth_timeout,
        );
        let http_limits = methods::HttpLimits {
            header_timeout: config.http_header_timeout,
            body_timeout: config.http_body_timeout,
        };
        let mqtt_tls = Some(TlsAcceptor::from(tls.mqtt));
        hub.spawn(broker::serve(
            hub.clone(),
            self.mqtt,
            mqtt_tls,
            mqtt_admission.clone(),
        ));
        let https_tls = TlsAcceptor::from(tls.https);
        hub.spawn(methods::serve(
            hub.clone(),
            self.https,
            https_tls,
            https_admission,
            http_limits,
        ));
        if let Some(l) = self.plain_mqtt {
            hub.spawn(broker::serve(hub.clone(), l, None, mqtt_admission));
        }
        Ok(RunningHub {
            hub,
            mqtt,
            https,
            plain_mqtt,
            metrics: self.metrics.local_addr,
            ca_path: tls.ca_path,
            identities_path: config.identities.clone(),
            metrics_task: self.metrics.task,
        })
    }
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

/// Runs the hub until `shutdown` completes (the binary: SIGINT/SIGTERM), then stops it.
pub async fn run(config: HubConfig, shutdown: impl Future<Output = ()>) -> Result<()> {
    let running = start(&config).await?;
    let plain = running
        .plain_mqtt
        .map(|a| format!(" mqtt://{a} (plain, development)"))
        .unwrap_or_default();
    tracing::info!(
        "hub ready: mqtts://{} https://{} metrics http://{}/metrics{plain}; device {}; {} route(s); CA for clients: {}; identities: {}",
        running.mqtt,
        running.https,
        running.metrics,
        config.device_id,
        running.hub.routes().routes().len(),
        running.ca_path.display(),
        running.identities_path.display(),
    );
    shutdown.await;
    tracing::info!("hub stopping");
    running.stop().await;
    Ok(())
}
