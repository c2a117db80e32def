//! Who this module is and how it proves it: from the IoT Edge runtime's `IOTEDGE_*` variables
//! (keys held by the workload API), or from the local-development pair `EdgeHubConnectionString`
//! and `EdgeModuleCACertificateFile` that the Azure SDKs also accept
//! (docs/protocol.md#identity-and-environment).

use crate::contract::vars;
use crate::contract::{ConnectionString, ConnectionStringError};
use crate::sas;
use crate::workload::{WorkloadClient, WorkloadError};
use std::path::PathBuf;
use std::time::Duration;

pub const DEFAULT_MQTT_PORT: u16 = 8883;
pub const DEFAULT_HTTPS_PORT: u16 = 443;
const DEFAULT_WORKLOAD_API_VERSION: &str = "2019-01-30";

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(
        "no module identity in the environment: run under the IoT Edge runtime (IOTEDGE_* variables), \
         or set EdgeHubConnectionString=\"HostName=…;DeviceId=…;ModuleId=…;SharedAccessKey=…;GatewayHostName=…\" \
         and EdgeModuleCACertificateFile=/path/to/ca.pem{0}"
    )]
    Missing(String),
    #[error("EdgeHubConnectionString is invalid: {0}")]
    ConnectionString(#[from] ConnectionStringError),
    #[error("EdgeModuleCACertificateFile is not set: the gateway's CA is needed to verify its TLS certificate")]
    NoCaFile,
    #[error("cannot read the CA file {path}: {source}")]
    CaFile {
        path: String,
        source: std::io::Error,
    },
    #[error("IOTEDGE_AUTHSCHEME is {0:?}; only sasToken is supported")]
    AuthScheme(String),
    #[error("SAS token lifetime: {problem}")]
    TokenLifetime { problem: String },
    #[error("{var} is {value:?}, not a port number")]
    Port { var: &'static str, value: String },
    #[error(transparent)]
    Workload(#[from] WorkloadError),
}

/// How the module signs its SAS tokens.
#[derive(Clone)]
pub enum Credentials {
    SharedKey(Vec<u8>),
    Workload(WorkloadClient),
}

/// Where the CA for the gateway's certificate comes from.
#[derive(Debug, Clone)]
pub enum TrustSource {
    PemFile(PathBuf),
    Workload,
}

#[derive(Clone)]
pub struct ModuleIdentity {
    /// How long this module's SAS tokens live and when they are replaced.
    pub token_lifetime: TokenLifetime,
    pub iothub_hostname: String,
    pub gateway_hostname: String,
    pub device_id: String,
    pub module_id: String,
    pub mqtt_port: u16,
    pub https_port: u16,
    credentials: Credentials,
    trust: TrustSource,
}

/// Lifetime of the SAS tokens a module makes, and how long before expiry it replaces them
/// (reconnecting MQTT with a fresh token; fresh tokens for method calls). `SAS_TOKEN_LIFETIME`
/// and `SAS_TOKEN_RENEW_MARGIN` (durations such as `1h`, `60s`) override the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenLifetime {
    pub ttl: Duration,
    pub renew_margin: Duration,
}

impl Default for TokenLifetime {
    /// One hour, renewed five minutes before it ends.
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(3600),
            renew_margin: Duration::from_secs(300),
        }
    }
}

impl TokenLifetime {
    fn from_lookup(var: &impl Fn(&str) -> Option<String>) -> Result<Self, IdentityError> {
        let mut lifetime = Self::default();
        let parse = |name: &'static str| -> Result<Option<Duration>, IdentityError> {
            var(name)
                .map(|v| {
                    humantime::parse_duration(v.trim()).map_err(|e| IdentityError::TokenLifetime {
                        problem: format!(
                            "{name}={v:?} is not a duration ({e}); write e.g. 1h or 60s"
                        ),
                    })
                })
                .transpose()
        };
        if let Some(ttl) = parse(vars::TOKEN_LIFETIME)? {
            lifetime.ttl = ttl;
        }
        if let Some(margin) = parse(vars::TOKEN_RENEW_MARGIN)? {
            lifetime.renew_margin = margin;
        }
        if lifetime.ttl < Duration::from_secs(10) || lifetime.renew_margin >= lifetime.ttl {
            return Err(IdentityError::TokenLifetime {
                problem: format!(
                    "{} ({:?}) must be at least 10s and longer than {} ({:?})",
                    vars::TOKEN_LIFETIME,
                    lifetime.ttl,
                    vars::TOKEN_RENEW_MARGIN,
                    lifetime.renew_margin
                ),
            });
        }
        Ok(lifetime)
    }

    /// Whether a token expiring at `expiry` (unix seconds) is due for replacement at `now`.
    pub fn due(&self, expiry: u64, now: u64) -> bool {
        expiry.saturating_sub(now) <= self.renew_margin.as_secs()
    }
}

impl std::fmt::Debug for ModuleIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModuleIdentity")
            .field("iothub_hostname", &self.iothub_hostname)
            .field(
                "gateway",
                &format_args!(
                    "{}:{}/{}",
                    self.gateway_hostname, self.mqtt_port, self.https_port
                ),
            )
            .field("id", &self.name())
            .field("trust", &self.trust)
            .finish_non_exhaustive()
    }
}

impl ModuleIdentity {
    pub fn from_env() -> Result<Self, IdentityError> {
        Self::from_lookup(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// Edge mode when every `IOTEDGE_*` variable is there, else the local-development pair.
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Self, IdentityError> {
        let port = |name: &'static str, default: u16| match var(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| IdentityError::Port {
                var: name,
                value: v,
            }),
        };
        let token_lifetime = TokenLifetime::from_lookup(&var)?;
        let mqtt_port = port(vars::MQTT_PORT, DEFAULT_MQTT_PORT)?;
        let https_port = port(vars::HTTPS_PORT, DEFAULT_HTTPS_PORT)?;
        let edge: Vec<Option<String>> = vars::EDGE_MODE.iter().map(|k| var(k)).collect();
        if let [Some(hub), Some(gw), Some(device), Some(module), Some(genid), Some(uri)] =
            edge.as_slice()
        {
            if let Some(scheme) = var(vars::AUTH_SCHEME) {
                if !scheme.eq_ignore_ascii_case("sasToken") {
                    return Err(IdentityError::AuthScheme(scheme));
                }
            }
            let api = var(vars::API_VERSION).unwrap_or_else(|| DEFAULT_WORKLOAD_API_VERSION.into());
            let workload = WorkloadClient::new(uri, &api, module, genid)?;
            return Ok(Self {
                token_lifetime,
                iothub_hostname: hub.clone(),
                gateway_hostname: gw.clone(),
                device_id: device.clone(),
                module_id: module.clone(),
                mqtt_port,
                https_port,
                credentials: Credentials::Workload(workload),
                trust: TrustSource::Workload,
            });
        }
        let Some(cs) = var(vars::CONNECTION_STRING).or_else(|| var(vars::IOTHUB_CONNECTION_STRING))
        else {
            let present: Vec<&str> = vars::EDGE_MODE
                .iter()
                .zip(&edge)
                .filter(|(_, v)| v.is_some())
                .map(|(k, _)| *k)
                .collect();
            let hint = if present.is_empty() {
                String::new()
            } else {
                let missing: Vec<&str> = vars::EDGE_MODE
                    .iter()
                    .zip(&edge)
                    .filter(|(_, v)| v.is_none())
                    .map(|(k, _)| *k)
                    .collect();
                format!(" (IOTEDGE_* is incomplete: missing {})", missing.join(", "))
            };
            return Err(IdentityError::Missing(hint));
        };
        let cs = ConnectionString::parse(&cs)?;
        let ca = var(vars::CA_CERTIFICATE_FILE).ok_or(IdentityError::NoCaFile)?;
        Ok(Self {
            token_lifetime,
            iothub_hostname: cs.host_name,
            gateway_hostname: cs.gateway_host_name,
            device_id: cs.device_id,
            module_id: cs.module_id,
            mqtt_port,
            https_port,
            credentials: Credentials::SharedKey(cs.shared_access_key),
            trust: TrustSource::PemFile(PathBuf::from(ca)),
        })
    }

    /// An identity with a key at hand (tests, tools).
    pub fn with_key(
        iothub_hostname: &str,
        gateway_hostname: &str,
        device_id: &str,
        module_id: &str,
        key: Vec<u8>,
        ca_file: PathBuf,
    ) -> Self {
        Self {
            token_lifetime: TokenLifetime::default(),
            iothub_hostname: iothub_hostname.into(),
            gateway_hostname: gateway_hostname.into(),
            device_id: device_id.into(),
            module_id: module_id.into(),
            mqtt_port: DEFAULT_MQTT_PORT,
            https_port: DEFAULT_HTTPS_PORT,
            credentials: Credentials::SharedKey(key),
            trust: TrustSource::PemFile(ca_file),
        }
    }

    /// `{device}/{module}`: MQTT client id and `x-ms-edge-moduleId`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.device_id, self.module_id)
    }

    pub fn uses_workload_api(&self) -> bool {
        matches!(self.credentials, Credentials::Workload(_))
    }

    /// A fresh SAS token valid for `ttl`, and its expiry (unix seconds).
    pub async fn token(&self, ttl: Duration) -> Result<(String, u64), IdentityError> {
        let expiry = sas::now_unix() + ttl.as_secs();
        let audience =
            sas::module_audience(&self.iothub_hostname, &self.device_id, &self.module_id);
        let data = sas::string_to_sign(&audience, expiry);
        let signature = match &self.credentials {
            Credentials::SharedKey(key) => sas::sign(key, &data),
            Credentials::Workload(w) => w.sign(&data).await?,
        };
        Ok((sas::format_token(&audience, &signature, expiry), expiry))
    }

    /// PEM certificates that the gateway's server certificate must chain to.
    pub async fn trust_bundle(&self) -> Result<String, IdentityError> {
        match (&self.trust, &self.credentials) {
            (TrustSource::Workload, Credentials::Workload(w)) => Ok(w.trust_bundle().await?),
            (TrustSource::Workload, Credentials::SharedKey(_)) => Err(IdentityError::NoCaFile),
            (TrustSource::PemFile(path), _) => {
                tokio::fs::read_to_string(path)
                    .await
                    .map_err(|source| IdentityError::CaFile {
                        path: path.display().to_string(),
                        source,
                    })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn reads_the_local_development_pair() {
        let id = ModuleIdentity::from_lookup(lookup(&[
            ("EdgeHubConnectionString", "HostName=h.example;DeviceId=d1;ModuleId=consumer;SharedAccessKey=a2V5;GatewayHostName=localhost"),
            ("EdgeModuleCACertificateFile", "/tmp/ca.pem"),
            ("EDGEHUB_HTTPS_PORT", "8443"),
        ]))
        .unwrap();
        assert_eq!(id.name(), "d1/consumer");
        assert_eq!((id.mqtt_port, id.https_port), (8883, 8443));
        assert!(!id.uses_workload_api());
        assert!(!format!("{id:?}").contains("a2V5"));
    }

    #[test]
    fn token_lifetime_is_configurable_and_checked() {
        let pair = [
            (
                "EdgeHubConnectionString",
                "HostName=h;DeviceId=d;ModuleId=m;SharedAccessKey=a2V5;GatewayHostName=g",
            ),
            ("EdgeModuleCACertificateFile", "/tmp/ca.pem"),
        ];
        let id = ModuleIdentity::from_lookup(lookup(&pair)).unwrap();
        assert_eq!(id.token_lifetime, TokenLifetime::default());
        let mut short = pair.to_vec();
        short.extend([
            (vars::TOKEN_LIFETIME, "60s"),
            (vars::TOKEN_RENEW_MARGIN, "20s"),
        ]);
        let id = ModuleIdentity::from_lookup(lookup(&short)).unwrap();
        assert_eq!(id.token_lifetime.ttl, Duration::from_secs(60));
        assert!(id.token_lifetime.due(1_020, 1_000));
        assert!(!id.token_lifetime.due(1_021, 1_000));
        for (ttl, margin) in [("5s", "1s"), ("60s", "60s"), ("soon", "1s"), ("60s", "x")] {
            let mut bad = pair.to_vec();
            bad.extend([
                (vars::TOKEN_LIFETIME, ttl),
                (vars::TOKEN_RENEW_MARGIN, margin),
            ]);
            let e = ModuleIdentity::from_lookup(lookup(&bad))
                .unwrap_err()
                .to_string();
            assert!(e.contains("SAS_TOKEN_"), "{e}");
        }
    }

    #[test]
    fn prefers_the_iotedge_set_when_complete() {
        let id = ModuleIdentity::from_lookup(lookup(&[
            ("IOTEDGE_IOTHUBHOSTNAME", "h"),
            ("IOTEDGE_GATEWAYHOSTNAME", "gw"),
            ("IOTEDGE_DEVICEID", "d"),
            ("IOTEDGE_MODULEID", "m"),
            ("IOTEDGE_MODULEGENERATIONID", "g"),
            ("IOTEDGE_WORKLOADURI", "unix:///tmp/w.sock"),
            ("IOTEDGE_AUTHSCHEME", "sasToken"),
        ]))
        .unwrap();
        assert!(id.uses_workload_api());
        assert_eq!(id.gateway_hostname, "gw");
    }

    #[test]
    fn explains_what_is_missing() {
        let e = ModuleIdentity::from_lookup(lookup(&[("IOTEDGE_DEVICEID", "d")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("EdgeHubConnectionString") && e.contains("missing IOTEDGE_IOTHUBHOSTNAME"),
            "{e}"
        );
        let e = ModuleIdentity::from_lookup(lookup(&[(
            "EdgeHubConnectionString",
            "HostName=h;DeviceId=d;ModuleId=m;SharedAccessKey=a2V5",
        )]))
        .unwrap_err()
        .to_string();
        assert!(e.contains("GatewayHostName"), "{e}");
        let e = ModuleIdentity::from_lookup(lookup(&[
            (
                "EdgeHubConnectionString",
                "HostName=h;DeviceId=d;ModuleId=m;SharedAccessKey=a2V5;GatewayHostName=g",
            ),
            ("EdgeModuleCACertificateFile", "x"),
            ("EDGEHUB_MQTT_PORT", "eighty"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(e.contains("EDGEHUB_MQTT_PORT"), "{e}");
    }
}
