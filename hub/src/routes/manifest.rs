//! Routes from a deployment manifest: `$edgeHub`'s desired `routes`, as route strings or
//! objects with priority and time to live.

use super::{RouteError, RouteTable};
use serde_json::Value;

impl RouteTable {
    /// Reads `modulesContent.$edgeHub["properties.desired"].routes`: each entry a route string or
    /// `{"route": "...", "priority": 0-9, "timeToLiveSecs": n}`. Routes come in the order the JSON
    /// object holds them (sorted by name unless serde_json's `preserve_order` is enabled); order
    /// does not change routing, since every matching route delivers.
    pub fn from_manifest(manifest: &Value) -> Result<RouteTable, RouteError> {
        let mut desired = manifest;
        let mut path = String::new();
        for key in ["modulesContent", "$edgeHub", "properties.desired"] {
            path = match (path.is_empty(), key.contains('.')) {
                (true, _) => key.to_owned(),
                (false, true) => format!("{path}[\"{key}\"]"),
                (false, false) => format!("{path}.{key}"),
            };
            desired =
                desired
                    .get(key)
                    .filter(|v| v.is_object())
                    .ok_or_else(|| RouteError::NoRoutes {
                        missing: path.clone(),
                    })?;
        }
        let routes = desired
            .get("routes")
            .and_then(Value::as_object)
            .ok_or_else(|| RouteError::NoRoutes {
                missing: format!("{path}.routes object"),
            })?;
        // The object form arrived with schema 1.1; edgeHub reads 1.0 routes as strings only.
        let schema_1_0 = desired.get("schemaVersion").and_then(Value::as_str) == Some("1.0");

        let mut table = Vec::with_capacity(routes.len());
        for (name, spec) in routes {
            let spec_error = |problem: String| RouteError::Spec {
                name: name.clone(),
                problem,
            };
            if name.trim().is_empty() {
                return Err(spec_error("route names must not be empty".into()));
            }
            let (text, priority, ttl) = match spec {
                Value::String(text) => (text.as_str(), super::DEFAULT_PRIORITY, None),
                Value::Object(fields) => {
                    if schema_1_0 {
                        return Err(spec_error(
                            "the object form needs $edgeHub schemaVersion 1.1 or later, this manifest says 1.0".into(),
                        ));
                    }
                    let text = fields
                        .get("route")
                        .and_then(Value::as_str)
                        .ok_or_else(|| spec_error("\"route\" is missing or not a string".into()))?;
                    let priority = parse_priority(fields.get("priority")).map_err(spec_error)?;
                    let ttl = parse_ttl(fields.get("timeToLiveSecs")).map_err(spec_error)?;
                    (text, priority, ttl)
                }
                other => {
                    return Err(spec_error(format!(
                        "{other} is neither a route string nor an object"
                    )))
                }
            };
            let mut route = Self::parse(name, text)?;
            route.priority = priority;
            route.time_to_live_secs = ttl;
            table.push(route);
        }
        Ok(RouteTable { routes: table })
    }
}

fn parse_priority(value: Option<&Value>) -> Result<u32, String> {
    let Some(value) = value else {
        return Ok(super::DEFAULT_PRIORITY);
    };
    value
        .as_u64()
        .filter(|p| *p <= 9)
        .and_then(|p| u32::try_from(p).ok())
        .ok_or_else(|| {
            format!("priority {value} is not supported (supported: 0-9, 0 is the highest)")
        })
}

fn parse_ttl(value: Option<&Value>) -> Result<Option<u64>, String> {
    let Some(value) = value else { return Ok(None) };
    // edgeHub reads a uint; 0 means "not set": the storeAndForwardConfiguration TTL applies.
    match value.as_u64().filter(|t| *t <= u64::from(u32::MAX)) {
        Some(0) => Ok(None),
        Some(t) => Ok(Some(t)),
        None => Err(format!(
            "timeToLiveSecs {value} is not supported (supported: whole seconds 0-4294967295, 0 = the store-and-forward default)"
        )),
    }
}
