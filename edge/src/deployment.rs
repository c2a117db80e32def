//! A deployment manifest (or the template it is made from), read once: the modules edgeAgent
//! deploys with their `env`, and `$edgeHub`'s desired properties (routes, store and forward).
//! Every reader of `deployment.template.json` — the hub, the local run, the bench — goes through
//! this type rather than its own JSON pointers.

use crate::contract::vars;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where edgeAgent's modules are.
const MODULES: &str = "/modulesContent/$edgeAgent/properties.desired/modules";
/// `$edgeHub`'s desired properties.
const EDGE_HUB: &str = "/modulesContent/$edgeHub/properties.desired";

#[derive(Debug, thiserror::Error)]
pub enum DeploymentError {
    // The cause is in the message and not chained (`error`, not `source`), so that a chained
    // display (`{:#}`, `error_chain`) does not print it twice.
    #[error("cannot read the deployment manifest {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("the deployment manifest {path} is not valid JSON: {error}")]
    Json {
        path: PathBuf,
        error: serde_json::Error,
    },
    #[error("the deployment manifest {path} is not a JSON object with modulesContent (expected {{\"modulesContent\": {{\"$edgeAgent\": …, \"$edgeHub\": …}}}})")]
    Shape { path: PathBuf },
}

/// A parsed deployment manifest.
#[derive(Clone, Debug)]
pub struct Deployment {
    manifest: Value,
}

impl Deployment {
    /// Reads and parses `path`.
    pub fn read(path: &Path) -> Result<Self, DeploymentError> {
        let text = std::fs::read_to_string(path).map_err(|error| DeploymentError::Read {
            path: path.to_owned(),
            error,
        })?;
        Self::parse(&text, path)
    }

    /// Parses `text`; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, DeploymentError> {
        let manifest: Value =
            serde_json::from_str(text).map_err(|error| DeploymentError::Json {
                path: path.to_owned(),
                error,
            })?;
        Self::from_json(manifest, path)
    }

    /// Takes an already parsed manifest; `path` only names it in errors.
    pub fn from_json(manifest: Value, path: &Path) -> Result<Self, DeploymentError> {
        if manifest
            .get("modulesContent")
            .is_none_or(|m| !m.is_object())
        {
            return Err(DeploymentError::Shape {
                path: path.to_owned(),
            });
        }
        Ok(Self { manifest })
    }

    /// The whole manifest, for what has its own typed reader (the hub's route table).
    pub fn json(&self) -> &Value {
        &self.manifest
    }

    /// The names of the modules edgeAgent deploys, sorted.
    pub fn modules(&self) -> Vec<String> {
        self.modules_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The `env` the manifest gives `module`, each value as a string (a non-string JSON value as
    /// its JSON text, as edgeAgent passes it).
    pub fn module_env(&self, module: &str) -> BTreeMap<String, String> {
        let declared = self
            .modules_object()
            .and_then(|m| m.get(module))
            .and_then(|m| m.get("env"))
            .and_then(Value::as_object);
        let mut env = BTreeMap::new();
        for (name, entry) in declared.into_iter().flatten() {
            if let Some(value) = entry.get("value") {
                let value = value
                    .as_str()
                    .map_or_else(|| value.to_string(), str::to_owned);
                env.insert(name.clone(), value);
            }
        }
        env
    }

    /// [`module_env`](Self::module_env) without the addresses that are meant for containers
    /// (`METRICS_ADDR` on 0.0.0.0, `OTEL_EXPORTER_OTLP_*` collector host names): what a local run
    /// on one host passes on, setting those itself.
    pub fn local_module_env(&self, module: &str) -> BTreeMap<String, String> {
        let mut env = self.module_env(module);
        env.retain(|name, _| name != vars::METRICS_ADDR && !name.starts_with("OTEL_EXPORTER_OTLP"));
        env
    }

    /// `$edgeHub`'s `storeAndForwardConfiguration.timeToLiveSecs`, if set.
    pub fn store_ttl_secs(&self) -> Option<u64> {
        self.manifest
            .pointer(&format!(
                "{EDGE_HUB}/storeAndForwardConfiguration/timeToLiveSecs"
            ))
            .and_then(Value::as_u64)
    }

    fn modules_object(&self) -> Option<&Map<String, Value>> {
        self.manifest.pointer(MODULES).and_then(Value::as_object)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(text: &str) -> Result<Deployment, DeploymentError> {
        Deployment::parse(text, Path::new("deployment.json"))
    }

    #[test]
    fn reads_modules_env_and_ttl() {
        let d = deployment(
            r#"{"modulesContent": {
                "$edgeAgent": {"properties.desired": {"modules": {
                    "producer": {"env": {"A": {"value": "1"}, "METRICS_ADDR": {"value": "0.0.0.0:9600"}}},
                    "consumer": {"env": {"N": {"value": 5}, "OTEL_EXPORTER_OTLP_ENDPOINT": {"value": "http://jaeger:4317"}}}
                }}},
                "$edgeHub": {"properties.desired": {"storeAndForwardConfiguration": {"timeToLiveSecs": 60}}}
            }}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(d.modules(), ["consumer", "producer"]);
        assert_eq!(d.module_env("producer").len(), 2);
        assert_eq!(
            d.local_module_env("producer")
                .into_iter()
                .collect::<Vec<_>>(),
            [("A".to_owned(), "1".to_owned())]
        );
        assert_eq!(
            d.local_module_env("consumer")
                .into_iter()
                .collect::<Vec<_>>(),
            [("N".to_owned(), "5".to_owned())]
        );
        assert!(d.module_env("nobody").is_empty());
        assert_eq!(d.store_ttl_secs(), Some(60));
    }

    #[test]
    fn refuses_what_is_not_a_manifest_naming_the_file() {
        let e = deployment("[1]")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("deployment.json is not a JSON object with modulesContent"),
            "{e}"
        );
        let e = deployment("{")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("deployment.json is not valid JSON"), "{e}");
        let e = Deployment::from_json(Value::Null, Path::new("given.json"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("given.json is not a JSON object"), "{e}");
        let e = Deployment::read(Path::new("/nonexistent/deployment.json"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("cannot read the deployment manifest /nonexistent/deployment.json"),
            "{e}"
        );
    }

    #[test]
    fn the_repositorys_template_deploys_both_modules() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deployment.template.json");
        let d = Deployment::read(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(d.modules(), ["consumer", "producer"]);
        assert!(!d
            .local_module_env("consumer")
            .contains_key(vars::METRICS_ADDR));
    }
}
