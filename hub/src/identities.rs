//! Module identities and their symmetric keys: read from a JSON file, with keys generated for
//! modules that have none yet (the local run's modules, the deployment's modules).

use crate::refusals::Reason;
use anyhow::{Context, Result};
use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};
use edge::sas::{SasError, SasToken};
use rand::RngCore;
use std::collections::BTreeMap;
use std::path::Path;

/// The file's shape, shared with its readers (launcher, tests, bench).
pub use edge::contract::{IdentitiesFile, ModuleKeys};

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

/// Why a SAS token does not prove a module's identity.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AuthRefusal {
    #[error("module {0:?} has no identity on this hub")]
    UnknownModule(String),
    /// The token does not parse, or is not this module's, current and signed with its key.
    #[error(transparent)]
    Token(#[from] SasError),
}

impl AuthRefusal {
    /// The refusal's reason, the same for MQTT CONNECT and HTTPS method calls.
    pub(crate) fn reason(&self) -> Reason {
        match self {
            AuthRefusal::UnknownModule(_) => Reason::UnknownModule,
            AuthRefusal::Token(SasError::Expired(_)) => Reason::TokenExpired,
            AuthRefusal::Token(SasError::BadSignature) => Reason::BadSignature,
            AuthRefusal::Token(_) => Reason::BadToken,
        }
    }
}

pub(crate) fn new_key() -> String {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    BASE64.encode(key)
}

impl Identities {
    /// Loads `path` if it exists, adds a key for every name in `ensure` that has none, and writes
    /// the file back when it changed.
    pub(crate) fn load_or_create(
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

    /// Checks a SAS token as edgeHub does for MQTT CONNECT and HTTPS alike: `module` has an
    /// identity here, and the token is for one of `hosts`, this device and module, unexpired,
    /// and signed with one of the module's keys.
    pub(crate) fn verify(
        &self,
        token: &str,
        hosts: &[&str],
        device: &str,
        module: &str,
    ) -> Result<u64, AuthRefusal> {
        let keys = self
            .keys(module)
            .ok_or_else(|| AuthRefusal::UnknownModule(module.to_owned()))?;
        let token = SasToken::parse(token)?;
        let keys: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        token.verify(hosts, device, Some(module), &keys, edge::sas::now_unix())?;
        Ok(token.expiry)
    }

    /// Whether `client_id` is `{device}/{module}` for a module with an identity here.
    pub(crate) fn is_client_id(&self, device: &str, client_id: &str) -> bool {
        client_id
            .strip_prefix(device)
            .and_then(|r| r.strip_prefix('/'))
            .is_some_and(|m| self.keys(m).is_some())
    }

    pub fn modules(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }
}
