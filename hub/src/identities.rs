//! Module identities and their symmetric keys: read from a JSON file, with keys generated for
//! modules that have none yet (the local run's modules, the deployment's modules).

use anyhow::{Context, Result};
use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModuleKeys {
    pub primary_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary_key: Option<String>,
}

/// The file's shape; hostnames and device id are written for the clients' convenience.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentitiesFile {
    pub iothub_hostname: String,
    pub gateway_hostname: String,
    pub device_id: String,
    pub modules: BTreeMap<String, ModuleKeys>,
}

/// Decoded keys per module.
#[derive(Clone, Default)]
pub struct Identities {
    keys: BTreeMap<String, Vec<Vec<u8>>>,
}

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.keys.keys()).finish()
    }
}

pub fn new_key() -> String {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    BASE64.encode(key)
}

impl Identities {
    /// Loads `path` if it exists, adds a key for every name in `ensure` that has none, and writes
    /// the file back when it changed.
    pub fn load_or_create(
        path: &Path,
        iothub_hostname: &str,
        gateway_hostname: &str,
        device_id: &str,
        ensure: &[String],
    ) -> Result<(Self, IdentitiesFile)> {
        let mut file = if path.exists() {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading identities {}", path.display()))?;
            serde_json::from_str::<IdentitiesFile>(&text)
                .with_context(|| format!("{} is not an identities file ({{\"deviceId\":…,\"modules\":{{\"name\":{{\"primaryKey\":\"base64\"}}}}}})", path.display()))?
        } else {
            IdentitiesFile {
                iothub_hostname: iothub_hostname.into(),
                gateway_hostname: gateway_hostname.into(),
                device_id: device_id.into(),
                modules: BTreeMap::new(),
            }
        };
        let mut changed = !path.exists()
            || file.iothub_hostname != iothub_hostname
            || file.gateway_hostname != gateway_hostname
            || file.device_id != device_id;
        file.iothub_hostname = iothub_hostname.into();
        file.gateway_hostname = gateway_hostname.into();
        file.device_id = device_id.into();
        for name in ensure {
            if !file.modules.contains_key(name) {
                file.modules.insert(
                    name.clone(),
                    ModuleKeys {
                        primary_key: new_key(),
                        secondary_key: Some(new_key()),
                    },
                );
                changed = true;
            }
        }
        let mut keys = BTreeMap::new();
        for (name, k) in &file.modules {
            let mut decoded = vec![BASE64.decode(&k.primary_key).with_context(|| {
                format!("{}: primaryKey of {name} is not base64", path.display())
            })?];
            if let Some(s) = &k.secondary_key {
                decoded.push(BASE64.decode(s).with_context(|| {
                    format!("{}: secondaryKey of {name} is not base64", path.display())
                })?);
            }
            keys.insert(name.clone(), decoded);
        }
        if changed {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let text = serde_json::to_string_pretty(&file)?;
            std::fs::write(path, text + "\n")
                .with_context(|| format!("writing identities {}", path.display()))?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
            }
        }
        Ok((Self { keys }, file))
    }

    pub fn keys(&self, module: &str) -> Option<&[Vec<u8>]> {
        self.keys.get(module).map(Vec::as_slice)
    }

    /// Whether `client_id` is `{device}/{module}` for a module with an identity here.
    pub fn is_client_id(&self, device: &str, client_id: &str) -> bool {
        client_id
            .strip_prefix(device)
            .and_then(|r| r.strip_prefix('/'))
            .is_some_and(|m| self.keys(m).is_some())
    }

    pub fn modules(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }
}

impl IdentitiesFile {
    /// The local-development connection string for `module` (what `EdgeHubConnectionString` holds).
    pub fn connection_string(&self, module: &str) -> Option<String> {
        let k = self.modules.get(module)?;
        Some(format!(
            "HostName={};DeviceId={};ModuleId={module};SharedAccessKey={};GatewayHostName={}",
            self.iothub_hostname, self.device_id, k.primary_key, self.gateway_hostname
        ))
    }
}
