//! The contracts between the local run's processes, one type each: what the hub writes about
//! itself (`endpoints.json`), its identities file, the environment a module is started with (the
//! variable names in [`vars`]) and the connection string in that environment. The hub writes them,
//! and the launcher, the modules, the tests and the bench read them through these same types.

use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The file in the hub's state directory that says where it listens.
pub const ENDPOINTS_FILE: &str = "endpoints.json";
/// The hub's identities file, in its state directory unless `--identities` names another.
pub const IDENTITIES_FILE: &str = "identities.json";

/// The launcher's (`method-vs-message [run]`) port options, each 0: every port chosen freely, so
/// that runs (tests, the bench) need no fixed ports. The launcher prints the actual ones.
pub const LOCAL_RUN_FREE_PORTS: [&str; 10] = [
    "--mqtt-port",
    "0",
    "--https-port",
    "0",
    "--hub-metrics-port",
    "0",
    "--producer-metrics-port",
    "0",
    "--consumer-metrics-port",
    "0",
];

/// Names of the variables in a module's environment.
pub mod vars {
    /// The local-development identity: a [`ConnectionString`](super::ConnectionString).
    pub const CONNECTION_STRING: &str = "EdgeHubConnectionString";
    /// Accepted in place of [`CONNECTION_STRING`], as the Azure SDKs do.
    pub const IOTHUB_CONNECTION_STRING: &str = "IotHubConnectionString";
    /// The local-development CA (PEM) that the gateway's certificate chains to.
    pub const CA_CERTIFICATE_FILE: &str = "EdgeModuleCACertificateFile";
    /// Override of the gateway's MQTT port (default 8883).
    pub const MQTT_PORT: &str = "EDGEHUB_MQTT_PORT";
    /// Override of the gateway's HTTPS port (default 443, which an ordinary user cannot bind).
    pub const HTTPS_PORT: &str = "EDGEHUB_HTTPS_PORT";
    /// SAS token lifetime (a duration such as `1h`).
    pub const TOKEN_LIFETIME: &str = "SAS_TOKEN_LIFETIME";
    /// How long before expiry a SAS token is replaced.
    pub const TOKEN_RENEW_MARGIN: &str = "SAS_TOKEN_RENEW_MARGIN";
    /// Where a module serves /metrics.
    pub const METRICS_ADDR: &str = "METRICS_ADDR";
    /// A file the module writes its actual /metrics address to.
    pub const METRICS_ADDR_FILE: &str = "METRICS_ADDR_FILE";

    /// Every variable of the IoT Edge runtime starts so; launchers remove stray ones so that a
    /// module takes the local-development identity it is given.
    pub const IOTEDGE_PREFIX: &str = "IOTEDGE_";
    pub const IOTHUB_HOSTNAME: &str = "IOTEDGE_IOTHUBHOSTNAME";
    pub const GATEWAY_HOSTNAME: &str = "IOTEDGE_GATEWAYHOSTNAME";
    pub const DEVICE_ID: &str = "IOTEDGE_DEVICEID";
    pub const MODULE_ID: &str = "IOTEDGE_MODULEID";
    pub const MODULE_GENERATION_ID: &str = "IOTEDGE_MODULEGENERATIONID";
    pub const WORKLOAD_URI: &str = "IOTEDGE_WORKLOADURI";
    pub const API_VERSION: &str = "IOTEDGE_APIVERSION";
    pub const AUTH_SCHEME: &str = "IOTEDGE_AUTHSCHEME";
    /// The set with which a module runs in edge mode (the Python SDK requires the same).
    pub const EDGE_MODE: [&str; 6] = [
        IOTHUB_HOSTNAME,
        GATEWAY_HOSTNAME,
        DEVICE_ID,
        MODULE_ID,
        MODULE_GENERATION_ID,
        WORKLOAD_URI,
    ];
}

/// Reading or writing one of the contract files.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read {}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{} is not {what}: {error}", path.display())]
    Parse {
        path: PathBuf,
        what: &'static str,
        error: serde_json::Error,
    },
    #[error("cannot write {}: {error}", path.display())]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
}

fn read_json<T: for<'de> Deserialize<'de>>(
    path: &Path,
    what: &'static str,
) -> Result<T, FileError> {
    let text = std::fs::read_to_string(path).map_err(|error| FileError::Read {
        path: path.into(),
        error,
    })?;
    serde_json::from_str(&text).map_err(|error| FileError::Parse {
        path: path.into(),
        what,
        error,
    })
}

/// `endpoints.json`: where a running hub listens (the actual ports when 0 was asked for), its
/// CA and identities files, and its pid. Written once the hub listens, atomically.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoints {
    // In the order of the JSON object's keys (sorted), as the hub has always written them.
    /// The CA (PEM) the hub's certificates chain to.
    pub ca: PathBuf,
    pub https: u16,
    pub identities: PathBuf,
    pub metrics: u16,
    /// MQTT over TLS.
    pub mqtt: u16,
    pub pid: u32,
    /// MQTT without TLS (development only); `null` when not enabled.
    pub plain_mqtt: Option<u16>,
}

impl Endpoints {
    /// `endpoints.json` in the hub state directory `state_dir`.
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join(ENDPOINTS_FILE)
    }

    /// Reads `endpoints.json` from the hub state directory `state_dir`.
    pub fn read(state_dir: &Path) -> Result<Self, FileError> {
        read_json(&Self::path(state_dir), "a hub's endpoints file")
    }

    /// Parses the file's text.
    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Writes `endpoints.json` into `state_dir` whole or not at all, so that a reader never sees
    /// half of it.
    pub fn write(&self, state_dir: &Path) -> Result<(), FileError> {
        let path = Self::path(state_dir);
        let err = |error| FileError::Write {
            path: path.clone(),
            error,
        };
        let text = serde_json::to_string(self).map_err(|e| err(std::io::Error::other(e)))?;
        std::fs::create_dir_all(state_dir).map_err(err)?;
        crate::files::write_atomic(&path, text.as_bytes(), 0o644).map_err(err)
    }
}

/// A module's keys in the identities file (base64).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModuleKeys {
    pub primary_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary_key: Option<String>,
}

/// The identities file: the device, the hostnames its SAS tokens and connections name, and a key
/// pair per module. The hub creates missing keys; hostnames and device id are written for the
/// clients' convenience.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentitiesFile {
    pub iothub_hostname: String,
    pub gateway_hostname: String,
    pub device_id: String,
    pub modules: BTreeMap<String, ModuleKeys>,
}

/// Why the identities file cannot give a module's key or connection string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityLookupError {
    #[error("no identity for module {0:?}")]
    NoModule(String),
    #[error("primaryKey of module {0:?} is not base64")]
    KeyNotBase64(String),
}

impl IdentitiesFile {
    /// Reads an identities file.
    pub fn read(path: &Path) -> Result<Self, FileError> {
        read_json(path, "an identities file")
    }

    /// The decoded primary key of `module`.
    pub fn primary_key(&self, module: &str) -> Result<Vec<u8>, IdentityLookupError> {
        let keys = self
            .modules
            .get(module)
            .ok_or_else(|| IdentityLookupError::NoModule(module.into()))?;
        BASE64
            .decode(&keys.primary_key)
            .map_err(|_| IdentityLookupError::KeyNotBase64(module.into()))
    }

    /// The local-development connection string for `module` (what [`vars::CONNECTION_STRING`]
    /// holds), with its primary key.
    pub fn connection_string(&self, module: &str) -> Result<ConnectionString, IdentityLookupError> {
        Ok(ConnectionString {
            host_name: self.iothub_hostname.clone(),
            device_id: self.device_id.clone(),
            module_id: module.into(),
            shared_access_key: self.primary_key(module)?,
            gateway_host_name: self.gateway_hostname.clone(),
        })
    }
}

/// What is wrong with a connection string (never quoting it: it holds a key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionStringError {
    #[error("{0} is missing")]
    Missing(&'static str),
    #[error("SharedAccessKey is not base64")]
    KeyNotBase64,
    #[error("GatewayHostName is missing: a module talks to its edge hub, not to IoT Hub")]
    NoGateway,
}

/// `HostName=…;DeviceId=…;ModuleId=…;SharedAccessKey=…;GatewayHostName=…`: a module's
/// local-development identity. Keys are matched without regard to case and other keys are
/// ignored, as the Azure SDKs do. `Display` writes the string back, key included (it is what the
/// environment variable holds); `Debug` leaves the key out.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionString {
    pub host_name: String,
    pub device_id: String,
    pub module_id: String,
    pub shared_access_key: Vec<u8>,
    pub gateway_host_name: String,
}

// The key never reaches a log line.
impl fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionString")
            .field("host_name", &self.host_name)
            .field("device_id", &self.device_id)
            .field("module_id", &self.module_id)
            .field("gateway_host_name", &self.gateway_host_name)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "HostName={};DeviceId={};ModuleId={};SharedAccessKey={};GatewayHostName={}",
            self.host_name,
            self.device_id,
            self.module_id,
            BASE64.encode(&self.shared_access_key),
            self.gateway_host_name
        )
    }
}

impl ConnectionString {
    pub fn parse(s: &str) -> Result<Self, ConnectionStringError> {
        let field = |name: &'static str| {
            s.split(';')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .ok_or(ConnectionStringError::Missing(name))
        };
        let host_name = field("HostName")?;
        let device_id = field("DeviceId")?;
        let module_id = field("ModuleId")?;
        let shared_access_key = BASE64
            .decode(field("SharedAccessKey")?.as_bytes())
            .map_err(|_| ConnectionStringError::KeyNotBase64)?;
        let gateway_host_name =
            field("GatewayHostName").map_err(|_| ConnectionStringError::NoGateway)?;
        Ok(Self {
            host_name,
            device_id,
            module_id,
            shared_access_key,
            gateway_host_name,
        })
    }
}

impl FromStr for ConnectionString {
    type Err = ConnectionStringError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The local-development environment a launcher gives a module: its identity, the CA to trust
/// and the gateway's ports. [`crate::ModuleIdentity::from_env`] reads it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleEnv {
    pub connection_string: ConnectionString,
    pub ca_file: PathBuf,
    pub mqtt_port: u16,
    pub https_port: u16,
}

impl ModuleEnv {
    /// `module`'s environment for the hub that wrote `endpoints` and `identities`.
    pub fn for_module(
        module: &str,
        endpoints: &Endpoints,
        identities: &IdentitiesFile,
    ) -> Result<Self, IdentityLookupError> {
        Ok(Self {
            connection_string: identities.connection_string(module)?,
            ca_file: endpoints.ca.clone(),
            mqtt_port: endpoints.mqtt,
            https_port: endpoints.https,
        })
    }

    /// The variables, by name.
    pub fn vars(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (
                vars::CONNECTION_STRING.into(),
                self.connection_string.to_string(),
            ),
            (
                vars::CA_CERTIFICATE_FILE.into(),
                self.ca_file.display().to_string(),
            ),
            (vars::MQTT_PORT.into(), self.mqtt_port.to_string()),
            (vars::HTTPS_PORT.into(), self.https_port.to_string()),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ModuleIdentity;

    const CS: &str = "HostName=h.example;DeviceId=d1;ModuleId=consumer;SharedAccessKey=a2V5;GatewayHostName=localhost";

    fn endpoints() -> Endpoints {
        Endpoints {
            ca: "/tmp/hub/ca.pem".into(),
            https: 33635,
            identities: "/tmp/hub/identities.json".into(),
            metrics: 45259,
            mqtt: 46319,
            pid: 29898,
            plain_mqtt: None,
        }
    }

    fn identities() -> IdentitiesFile {
        serde_json::from_str(
            r#"{"iothubHostname":"h.example","gatewayHostname":"localhost","deviceId":"d1",
                "modules":{"consumer":{"primaryKey":"a2V5","secondaryKey":"b3RoZXI="},
                           "bad":{"primaryKey":"not base64!"}}}"#,
        )
        .unwrap()
    }

    #[test]
    fn endpoints_are_written_as_the_hub_always_wrote_them_and_read_back() {
        // What the hub wrote before this type existed (serde_json's sorted object keys).
        let before = r#"{"ca":"/tmp/hub/ca.pem","https":33635,"identities":"/tmp/hub/identities.json","metrics":45259,"mqtt":46319,"pid":29898,"plainMqtt":null}"#;
        assert_eq!(serde_json::to_string(&endpoints()).unwrap(), before);
        assert_eq!(Endpoints::parse(before).unwrap(), endpoints());
        let with_plain = Endpoints {
            plain_mqtt: Some(41399),
            ..endpoints()
        };
        let text = serde_json::to_string(&with_plain).unwrap();
        assert!(text.ends_with(r#""plainMqtt":41399}"#), "{text}");
        assert_eq!(Endpoints::parse(&text).unwrap(), with_plain);

        let dir = std::env::temp_dir().join(format!("edge-contract-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        with_plain.write(&dir).unwrap();
        assert_eq!(Endpoints::read(&dir).unwrap(), with_plain);
        assert!(!dir.join("endpoints.json.tmp").exists());
        std::fs::write(Endpoints::path(&dir), r#"{"mqtt":1}"#).unwrap();
        let e = Endpoints::read(&dir).unwrap_err().to_string();
        assert!(
            e.contains("endpoints.json is not a hub's endpoints file")
                && e.contains("missing field"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
        let e = Endpoints::read(&dir).unwrap_err().to_string();
        assert!(
            e.starts_with("cannot read ") && e.contains("endpoints.json"),
            "{e}"
        );
    }

    #[test]
    fn connection_strings_parse_and_display_round_trip() {
        let cs = ConnectionString::parse(CS).unwrap();
        assert_eq!(
            (
                cs.host_name.as_str(),
                cs.device_id.as_str(),
                cs.module_id.as_str()
            ),
            ("h.example", "d1", "consumer")
        );
        assert_eq!(cs.shared_access_key, b"key");
        assert_eq!(cs.gateway_host_name, "localhost");
        assert_eq!(cs.to_string(), CS);
        assert_eq!(cs.to_string().parse::<ConnectionString>().unwrap(), cs);
        assert!(!format!("{cs:?}").contains("a2V5"));
        // Keys in any case and order, spaces around them, other keys: as the Azure SDKs accept.
        let loose = " gatewayhostname=localhost; SharedAccessKey=a2V5;ModuleId=consumer;x509=false;DeviceId=d1;HOSTNAME=h.example;";
        assert_eq!(ConnectionString::parse(loose).unwrap(), cs);
    }

    #[test]
    fn malformed_connection_strings_say_what_is_wrong_without_the_key() {
        let cases = [
            ("", "HostName is missing"),
            (
                "DeviceId=d;ModuleId=m;SharedAccessKey=a2V5;GatewayHostName=g",
                "HostName is missing",
            ),
            (
                "HostName=h;ModuleId=m;SharedAccessKey=a2V5;GatewayHostName=g",
                "DeviceId is missing",
            ),
            (
                "HostName=h;DeviceId=d;SharedAccessKey=a2V5;GatewayHostName=g",
                "ModuleId is missing",
            ),
            (
                "HostName=h;DeviceId=d;ModuleId=m;GatewayHostName=g",
                "SharedAccessKey is missing",
            ),
            (
                "HostName=h;DeviceId=d;ModuleId=;SharedAccessKey=a2V5;GatewayHostName=g",
                "ModuleId is missing",
            ),
            (
                "HostName=h;DeviceId=d;ModuleId=m;SharedAccessKey=sec!ret;GatewayHostName=g",
                "SharedAccessKey is not base64",
            ),
            (
                "HostName=h;DeviceId=d;ModuleId=m;SharedAccessKey=a2V5",
                "GatewayHostName is missing: a module talks to its edge hub",
            ),
        ];
        for (text, expected) in cases {
            let e = ConnectionString::parse(text).unwrap_err().to_string();
            assert!(e.starts_with(expected), "{text:?}: {e}");
            assert!(!e.contains("a2V5") && !e.contains("sec!ret"), "{e}");
        }
    }

    #[test]
    fn identities_give_keys_and_connection_strings() {
        let ids = identities();
        assert_eq!(ids.primary_key("consumer").unwrap(), b"key");
        assert_eq!(ids.connection_string("consumer").unwrap().to_string(), CS);
        assert_eq!(
            ids.connection_string("nobody").unwrap_err().to_string(),
            "no identity for module \"nobody\""
        );
        assert_eq!(
            ids.primary_key("bad").unwrap_err(),
            IdentityLookupError::KeyNotBase64("bad".into())
        );
        // Written back as read (the secondary key kept, an absent one not invented).
        let text = serde_json::to_string(&ids).unwrap();
        assert!(
            text.contains(r#""consumer":{"primaryKey":"a2V5","secondaryKey":"b3RoZXI="}"#)
                && text.contains(r#""bad":{"primaryKey":"not base64!"}"#),
            "{text}"
        );
    }

    #[test]
    fn a_module_reads_back_the_environment_a_launcher_gives_it() {
        let env = ModuleEnv::for_module("consumer", &endpoints(), &identities()).unwrap();
        let vars = env.vars();
        assert_eq!(
            vars.keys().map(String::as_str).collect::<Vec<_>>(),
            [
                vars::HTTPS_PORT,
                vars::MQTT_PORT,
                vars::CONNECTION_STRING,
                vars::CA_CERTIFICATE_FILE
            ]
        );
        assert_eq!(vars[vars::CONNECTION_STRING], CS);
        assert_eq!(vars[vars::CA_CERTIFICATE_FILE], "/tmp/hub/ca.pem");
        let id = ModuleIdentity::from_lookup(|k| vars.get(k).cloned()).unwrap();
        assert_eq!(id.name(), "d1/consumer");
        assert_eq!(
            (id.iothub_hostname.as_str(), id.gateway_hostname.as_str()),
            ("h.example", "localhost")
        );
        assert_eq!((id.mqtt_port, id.https_port), (46319, 33635));
        assert!(!id.uses_workload_api());
    }
}
