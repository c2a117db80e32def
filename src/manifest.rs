//! `method-vs-message manifest`: a deployable `deployment.json` from `deployment.template.json`.
//!
//! The template follows the IoT Edge tooling's convention (a `$schema-template` marker and
//! `${NAME}` placeholders); the manifest IoT Hub accepts has neither. Values come from `--set
//! NAME=VALUE` or the environment variable of the same name. A `registryCredentials` entry whose
//! address is empty is left out (images from a public registry or already on the device). The
//! output can hold a registry password, so it is written 0600 and the password is never printed.

use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// Generate a deployable deployment manifest from the template.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
Example (images in an Azure Container Registry):
  PRODUCER_IMAGE=myacr.azurecr.io/producer:1.0 CONSUMER_IMAGE=myacr.azurecr.io/consumer:1.0 \\
  CONTAINER_REGISTRY_ADDRESS=myacr.azurecr.io CONTAINER_REGISTRY_USERNAME=myacr \\
  CONTAINER_REGISTRY_PASSWORD=... method-vs-message manifest
then: az iot edge set-modules --hub-name <hub> --device-id <device> --content deployment.json

Placeholders in the template: PRODUCER_IMAGE, CONSUMER_IMAGE (required) and
CONTAINER_REGISTRY_ADDRESS, CONTAINER_REGISTRY_USERNAME, CONTAINER_REGISTRY_PASSWORD
(leave all three unset for images that need no credentials).")]
pub struct ManifestArgs {
    /// The template to read.
    #[arg(long, default_value = "deployment.template.json")]
    template: PathBuf,
    /// Where to write the deployable manifest ("-": standard output).
    #[arg(long, default_value = "deployment.json")]
    out: PathBuf,
    /// A placeholder's value, NAME=VALUE (repeatable); overrides the environment variable NAME.
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = parse_assignment)]
    set: Vec<(String, String)>,
}

fn parse_assignment(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, value)) if is_name(name) => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!(
            "expected NAME=VALUE with NAME in [A-Z0-9_], e.g. PRODUCER_IMAGE=myacr.azurecr.io/producer:1.0; got {s:?}"
        )),
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

pub fn run(args: &ManifestArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.template)
        .with_context(|| format!("reading the template {}", args.template.display()))?;
    let template: Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not JSON", args.template.display()))?;
    let set: BTreeMap<&str, &str> = args
        .set
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let lookup = |name: &str| match set.get(name) {
        Some(v) => Some((*v).to_owned()),
        None => std::env::var(name).ok(),
    };
    let manifest = generate(template, lookup)
        .with_context(|| format!("generating a manifest from {}", args.template.display()))?;
    let mut json = serde_json::to_string_pretty(&manifest)?;
    json.push('\n');
    if args.out.as_os_str() == "-" {
        print!("{json}");
        return Ok(());
    }
    write_private(&args.out, json.as_bytes())?;
    eprintln!("wrote {} ({})", args.out.display(), summary(&manifest));
    Ok(())
}

/// The template with every placeholder replaced, its tooling marker and empty registry entries
/// removed. Fails naming every placeholder that has no value, and where it is used.
pub fn generate(mut template: Value, lookup: impl Fn(&str) -> Option<String>) -> Result<Value> {
    let Some(root) = template.as_object_mut() else {
        bail!("the template must be a JSON object with modulesContent");
    };
    root.remove("$schema-template");
    let mut missing = BTreeMap::<String, BTreeSet<String>>::new();
    substitute(&mut template, "", &lookup, &mut missing);
    drop_empty_registries(&mut template);
    // Credentials of a registry that was dropped are not needed: forget their placeholders.
    missing.retain(|_, places| {
        places.retain(|p| !p.contains("/registryCredentials/") || still_there(&template, p));
        !places.is_empty()
    });
    if !missing.is_empty() {
        let list: Vec<String> = missing
            .iter()
            .map(|(name, places)| {
                let places: Vec<&str> = places.iter().map(String::as_str).collect();
                format!("  {name} (used at {})", places.join(", "))
            })
            .collect();
        bail!(
            "these placeholders have no value; set the environment variable or pass --set NAME=VALUE:\n{}",
            list.join("\n")
        );
    }
    Ok(template)
}

/// Replaces `${NAME}` in every string; records names without a value under their JSON pointer.
fn substitute(
    value: &mut Value,
    at: &str,
    lookup: &impl Fn(&str) -> Option<String>,
    missing: &mut BTreeMap<String, BTreeSet<String>>,
) {
    match value {
        Value::String(s) => {
            let mut out = String::with_capacity(s.len());
            let mut rest = s.as_str();
            while let Some(start) = rest.find("${") {
                out.push_str(&rest[..start]);
                let after = &rest[start + 2..];
                match after.find('}').filter(|&end| is_name(&after[..end])) {
                    Some(end) => {
                        let name = &after[..end];
                        match lookup(name) {
                            Some(v) => out.push_str(&v),
                            None => {
                                missing
                                    .entry(name.to_owned())
                                    .or_default()
                                    .insert(at.to_owned());
                            }
                        }
                        rest = &after[end + 1..];
                    }
                    None => {
                        out.push_str("${");
                        rest = after;
                    }
                }
            }
            out.push_str(rest);
            *s = out;
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                substitute(item, &format!("{at}/{i}"), lookup, missing);
            }
        }
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                let key = k.replace('~', "~0").replace('/', "~1");
                substitute(v, &format!("{at}/{key}"), lookup, missing);
            }
        }
        _ => {}
    }
}

const RUNTIME_SETTINGS: &str = "/modulesContent/$edgeAgent/properties.desired/runtime/settings";

fn drop_empty_registries(manifest: &mut Value) {
    if let Some(Value::Object(registries)) = manifest
        .pointer_mut(RUNTIME_SETTINGS)
        .and_then(|s| s.get_mut("registryCredentials"))
    {
        registries.retain(|_, r| {
            r.get("address")
                .and_then(Value::as_str)
                .is_some_and(|a| !a.is_empty())
        });
    }
}

fn still_there(manifest: &Value, pointer: &str) -> bool {
    manifest.pointer(pointer).is_some()
}

/// `producer: <image>, consumer: <image>, registry: <address>`, without any password.
fn summary(manifest: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(Value::Object(modules)) =
        manifest.pointer("/modulesContent/$edgeAgent/properties.desired/modules")
    {
        for (name, module) in modules {
            let image = module
                .pointer("/settings/image")
                .and_then(Value::as_str)
                .unwrap_or("?");
            parts.push(format!("{name}: {image}"));
        }
    }
    let registries: Vec<&str> = manifest
        .pointer(RUNTIME_SETTINGS)
        .and_then(|s| s.get("registryCredentials"))
        .and_then(Value::as_object)
        .map(|r| {
            r.values()
                .filter_map(|c| c.get("address").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    if registries.is_empty() {
        parts.push("no registry credentials".to_owned());
    } else {
        parts.push(format!("registry: {}", registries.join(", ")));
    }
    parts.join(", ")
}

/// Writes `bytes` to `path` whole or not at all, readable by the owner only: it may hold a
/// registry password.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    edge::files::write_atomic(path, bytes, 0o600)
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn template() -> Value {
        json!({
            "$schema-template": "4.0.0",
            "modulesContent": {"$edgeAgent": {"properties.desired": {
                "runtime": {"type": "docker", "settings": {"registryCredentials": {"registry": {
                    "address": "${CONTAINER_REGISTRY_ADDRESS}",
                    "username": "${CONTAINER_REGISTRY_USERNAME}",
                    "password": "${CONTAINER_REGISTRY_PASSWORD}"}}}},
                "modules": {"producer": {"settings": {"image": "${PRODUCER_IMAGE}"}}}
            }}}
        })
    }

    fn from(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn placeholders_are_replaced_and_the_marker_removed() {
        let out = generate(
            template(),
            from(&[
                ("PRODUCER_IMAGE", "r.io/p:1"),
                ("CONTAINER_REGISTRY_ADDRESS", "r.io"),
                ("CONTAINER_REGISTRY_USERNAME", "u"),
                ("CONTAINER_REGISTRY_PASSWORD", "secret"),
            ]),
        )
        .unwrap();
        assert!(out.get("$schema-template").is_none());
        let s = out.to_string();
        assert!(!s.contains("${"), "{s}");
        assert!(s.contains("\"r.io/p:1\"") && s.contains("\"secret\""));
        assert!(!summary(&out).contains("secret"));
    }

    #[test]
    fn a_registry_without_an_address_is_left_out_with_its_credentials() {
        let out = generate(template(), from(&[("PRODUCER_IMAGE", "p:1")])).unwrap();
        let creds = out
            .pointer(&format!("{RUNTIME_SETTINGS}/registryCredentials"))
            .unwrap();
        assert_eq!(creds, &json!({}));
    }

    #[test]
    fn a_missing_image_is_named_with_where_it_is_used() {
        let err = generate(template(), from(&[])).unwrap_err().to_string();
        assert!(err.contains("PRODUCER_IMAGE (used at /modulesContent/$edgeAgent/properties.desired/modules/producer/settings/image)"), "{err}");
        assert!(!err.contains("CONTAINER_REGISTRY"), "{err}");
    }

    #[test]
    fn an_address_without_credentials_is_refused() {
        let err = generate(
            template(),
            from(&[
                ("PRODUCER_IMAGE", "p"),
                ("CONTAINER_REGISTRY_ADDRESS", "r.io"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("CONTAINER_REGISTRY_USERNAME")
                && err.contains("CONTAINER_REGISTRY_PASSWORD"),
            "{err}"
        );
    }

    #[test]
    fn set_values_must_be_name_equals_value() {
        assert!(parse_assignment("PRODUCER_IMAGE=a=b").is_ok());
        assert!(parse_assignment("producer_image=x").is_err());
        assert!(parse_assignment("NOEQUALS").is_err());
    }
}
