//! MQTT topic names and the CONNECT username of the IoT Hub / edgeHub module protocol
//! (docs/protocol.md#topics). Both the module side and the hub build and parse topics here.

use crate::bag::PropertyBag;
use percent_encoding::{percent_decode_str, utf8_percent_encode};

pub const METHODS_SUBSCRIBE: &str = "$iothub/methods/POST/#";
pub const TWIN_RESPONSES_SUBSCRIBE: &str = "$iothub/twin/res/#";
pub const TWIN_DESIRED_SUBSCRIBE: &str = "$iothub/twin/PATCH/properties/desired/#";
/// The api-version our modules announce (the one the Python SDK uses).
pub const API_VERSION: &str = "2019-10-01";

/// MQTT writes a topic's length in two bytes: a longer topic cannot be encoded at all.
pub const MAX_TOPIC_LEN: usize = u16::MAX as usize;
/// IoT Hub's and edgeHub's message size limit. The hub applies it to body plus delivered
/// topic (edgeHub counts body and properties), so every delivery fits a client that accepts
/// [`crate::session::MAX_PACKET_SIZE`].
pub const MAX_MESSAGE_SIZE: usize = 256 * 1024;

/// Why a topic (with its body) cannot be delivered over MQTT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    #[error("topic of {0} bytes is longer than MQTT's {MAX_TOPIC_LEN}-byte limit")]
    TopicTooLong(usize),
    #[error("message of {0} bytes (body and topic) exceeds the {MAX_MESSAGE_SIZE}-byte limit")]
    TooLarge(usize),
}

/// Checks that `topic` with a body of `body_len` bytes can be encoded and delivered.
pub fn check_deliverable(topic: &str, body_len: usize) -> Result<(), DeliveryError> {
    if topic.len() > MAX_TOPIC_LEN {
        return Err(DeliveryError::TopicTooLong(topic.len()));
    }
    let size = topic.len().saturating_add(body_len);
    if size > MAX_MESSAGE_SIZE {
        return Err(DeliveryError::TooLarge(size));
    }
    Ok(())
}

/// What a SUBSCRIBE filter asks for, classified in edgeHub's order (its `SessionStateParser`):
/// method prefix, desired-properties prefix, C2D suffix, twin responses, then any
/// `devices/{..}/modules/{..}/#` as module messages (inputs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscription {
    Methods,
    DesiredPropertyUpdates,
    C2D,
    TwinResponses,
    ModuleMessages,
    Unknown,
}

pub fn classify_subscription(filter: &str) -> Subscription {
    if filter.starts_with("$iothub/methods/POST/") {
        Subscription::Methods
    } else if filter.starts_with("$iothub/twin/PATCH/properties/desired/") {
        Subscription::DesiredPropertyUpdates
    } else if filter.ends_with("messages/devicebound/#") {
        Subscription::C2D
    } else if filter == TWIN_RESPONSES_SUBSCRIBE {
        Subscription::TwinResponses
    } else if is_module_messages_filter(filter) {
        Subscription::ModuleMessages
    } else {
        Subscription::Unknown
    }
}

/// edgeHub's `^devices/.+/modules/.+/#$`: `.` is any character but a newline, and may be `/`.
fn is_module_messages_filter(filter: &str) -> bool {
    let Some(middle) = filter
        .strip_prefix("devices/")
        .and_then(|r| r.strip_suffix("/#"))
    else {
        return false;
    };
    !middle.contains('\n')
        && middle
            .match_indices("/modules/")
            .any(|(i, m)| i > 0 && i + m.len() < middle.len())
}

/// `devices/{d}/modules/{m}/messages/events/{bag}`: a module sends to one of its outputs.
pub fn output(device: &str, module: &str, bag: &PropertyBag) -> String {
    let mut t = format!("devices/{device}/modules/{module}/messages/events/");
    bag.encode_into(&mut t);
    t
}

/// `devices/{d}/modules/{m}/inputs/#`: what a module subscribes to for its inputs.
pub fn inputs_filter(device: &str, module: &str) -> String {
    format!("devices/{device}/modules/{module}/inputs/#")
}

/// `devices/{d}/modules/{m}/inputs/{input}/{bag}` (no `/{bag}` when the bag is empty).
pub fn input(device: &str, module: &str, input: &str, bag: &PropertyBag) -> String {
    let mut t = input_prefix(device, module, input);
    if !bag.is_empty() {
        t.push('/');
        bag.encode_into(&mut t);
    }
    t
}

/// `devices/{d}/modules/{m}/inputs/{input}`: an input topic without its bag. The hub builds it
/// once per route target and joins each message's bag to it with [`input_with_bag`].
pub fn input_prefix(device: &str, module: &str, input: &str) -> String {
    format!("devices/{device}/modules/{module}/inputs/{input}")
}

/// The input topic of [`input_prefix`] carrying an already encoded bag (no `/{bag}` when the
/// bag is empty), built in one allocation of the exact size.
pub fn input_with_bag(prefix: &str, encoded_bag: &str) -> String {
    if encoded_bag.is_empty() {
        return prefix.to_owned();
    }
    let mut t = String::with_capacity(prefix.len() + 1 + encoded_bag.len());
    t.push_str(prefix);
    t.push('/');
    t.push_str(encoded_bag);
    t
}

pub fn method_request(method: &str, rid: &str) -> String {
    format!("$iothub/methods/POST/{method}/?$rid={rid}")
}

pub fn method_response(status: u16, rid: &str) -> String {
    format!("$iothub/methods/res/{status}/?$rid={rid}")
}

pub fn twin_response(status: u16, rid: &str, version: Option<u64>) -> String {
    match version {
        Some(v) => format!("$iothub/twin/res/{status}/?$rid={rid}&$version={v}"),
        None => format!("$iothub/twin/res/{status}/?$rid={rid}"),
    }
}

/// A topic a client publishes to or receives, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topic<'a> {
    /// Telemetry or an output; `bag` still percent-encoded, maybe empty.
    Events {
        device: &'a str,
        module: Option<&'a str>,
        bag: &'a str,
    },
    Input {
        device: &'a str,
        module: &'a str,
        input: &'a str,
        bag: &'a str,
    },
    MethodRequest {
        method: &'a str,
        rid: &'a str,
    },
    MethodResponse {
        status: u16,
        rid: &'a str,
    },
    TwinGet {
        rid: &'a str,
    },
    TwinReportedPatch {
        rid: &'a str,
    },
    TwinResponse {
        status: u16,
        rid: &'a str,
    },
    Unknown,
}

pub fn parse(topic: &str) -> Topic<'_> {
    if let Some(rest) = topic.strip_prefix("$iothub/") {
        return parse_iothub(rest).unwrap_or(Topic::Unknown);
    }
    parse_device(topic).unwrap_or(Topic::Unknown)
}

fn query_value<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

fn parse_iothub(rest: &str) -> Option<Topic<'_>> {
    let (path, query) = rest.split_once("/?").unwrap_or((rest, ""));
    let rid = query_value(query, "$rid").unwrap_or("");
    let mut parts = path.split('/');
    Some(match (parts.next()?, parts.next()?, parts.next()) {
        ("methods", "POST", Some(method)) if !method.is_empty() => {
            Topic::MethodRequest { method, rid }
        }
        ("methods", "res", Some(status)) => Topic::MethodResponse {
            status: status.parse().ok()?,
            rid,
        },
        ("twin", "GET", None) => Topic::TwinGet { rid },
        ("twin", "PATCH", Some("properties")) if parts.next() == Some("reported") => {
            Topic::TwinReportedPatch { rid }
        }
        ("twin", "res", Some(status)) => Topic::TwinResponse {
            status: status.parse().ok()?,
            rid,
        },
        _ => return None,
    })
}

fn parse_device(topic: &str) -> Option<Topic<'_>> {
    let rest = topic.strip_prefix("devices/")?;
    let (device, rest) = rest.split_once('/')?;
    if device.is_empty() {
        return None;
    }
    let (module, rest) = match rest.strip_prefix("modules/") {
        Some(r) => {
            let (m, r) = r.split_once('/')?;
            if m.is_empty() {
                return None;
            }
            (Some(m), r)
        }
        None => (None, rest),
    };
    if let Some(after) = rest.strip_prefix("messages/events") {
        let bag = match after {
            "" | "/" => "",
            a => a.strip_prefix('/')?,
        };
        return Some(Topic::Events {
            device,
            module,
            bag,
        });
    }
    let after = rest.strip_prefix("inputs/")?;
    let (input, bag) = after.split_once('/').unwrap_or((after, ""));
    (!input.is_empty()).then_some(Topic::Input {
        device,
        module: module?,
        input,
        bag,
    })
}

/// CONNECT username: `{hub}/{d}/{m}/?api-version=…&DeviceClientType=…`.
pub fn username(iothub_hostname: &str, device: &str, module: &str, client_type: &str) -> String {
    format!(
        "{iothub_hostname}/{device}/{module}/?api-version={API_VERSION}&DeviceClientType={}",
        utf8_percent_encode(client_type, crate::bag::COMPONENT)
    )
}

/// Identity named by a CONNECT username, parsed as edgeHub's `MqttUsernameParser` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsernameIdentity {
    pub device: String,
    pub module: Option<String>,
    pub client_type: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UsernameError {
    #[error("username {0:?} is not of the form {{host}}/{{device}}[/{{module}}]/?api-version=…")]
    Shape(String),
    #[error("username {0:?} has no api-version")]
    NoApiVersion(String),
}

pub fn parse_username(username: &str) -> Result<UsernameIdentity, UsernameError> {
    let shape = || UsernameError::Shape(username.to_owned());
    let parts: Vec<&str> = username.split('/').collect();
    let last = *parts.last().ok_or_else(shape)?;
    // Current form ends in "/?query"; the legacy form has the query as the last segment without '?'.
    let (ids, query) = if let Some(q) = last.strip_prefix('?') {
        (&parts[..parts.len() - 1], q)
    } else if last.contains("api-version=") {
        (&parts[..parts.len() - 1], last)
    } else {
        return Err(shape());
    };
    let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
    let (device, module) = match ids {
        [_host, d] => (decode(d), None),
        [_host, d, m] => (decode(d), Some(decode(m))),
        _ => return Err(shape()),
    };
    if device.is_empty() || module.as_deref() == Some("") {
        return Err(shape());
    }
    if query_value(query, "api-version").is_none() {
        return Err(UsernameError::NoApiVersion(username.to_owned()));
    }
    Ok(UsernameIdentity {
        device,
        module,
        client_type: query_value(query, "DeviceClientType").map(decode),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_subscriptions_as_edgehub() {
        use Subscription::*;
        for (filter, want) in [
            (METHODS_SUBSCRIBE, Methods),
            ("$iothub/methods/POST/", Methods),
            ("$iothub/methods/POST//somemorestuff", Methods),
            ("x/$iothub/methods/POST/", Unknown),
            (TWIN_DESIRED_SUBSCRIBE, DesiredPropertyUpdates),
            ("devices/d/messages/devicebound/#", C2D),
            (TWIN_RESPONSES_SUBSCRIBE, TwinResponses),
            ("$iothub/twin/res/200", Unknown),
            ("devices/d/modules/m/#", ModuleMessages),
            ("devices/d/modules/m/inputs/#", ModuleMessages),
            ("devices/d/x/modules/m/y/#", ModuleMessages),
            ("devices//modules/m/#", Unknown),
            ("devices/d/modules//#", Unknown),
            ("devices/d/modules/m/+", Unknown),
            ("devices/d\n/modules/m/#", Unknown),
            ("#", Unknown),
        ] {
            assert_eq!(classify_subscription(filter), want, "{filter:?}");
        }
    }

    #[test]
    fn deliverable_topics_fit_mqtt_and_the_size_limit() {
        assert!(check_deliverable(&"t".repeat(MAX_TOPIC_LEN), 0).is_ok());
        assert_eq!(
            check_deliverable(&"t".repeat(MAX_TOPIC_LEN + 1), 0),
            Err(DeliveryError::TopicTooLong(MAX_TOPIC_LEN + 1))
        );
        assert!(check_deliverable("t", MAX_MESSAGE_SIZE - 1).is_ok());
        assert_eq!(
            check_deliverable("tt", MAX_MESSAGE_SIZE - 1),
            Err(DeliveryError::TooLarge(MAX_MESSAGE_SIZE + 1))
        );
    }

    #[test]
    fn builds_topics() {
        let bag: PropertyBag = [("$.on", "out")].into_iter().collect();
        assert_eq!(
            output("d", "m", &bag),
            "devices/d/modules/m/messages/events/%24.on=out"
        );
        assert_eq!(
            input("d", "m", "in", &PropertyBag::new()),
            "devices/d/modules/m/inputs/in"
        );
        let bag: PropertyBag = [("$.cdid", "d"), ("k", "a b")].into_iter().collect();
        let prefix = input_prefix("d", "m", "in");
        assert_eq!(
            input_with_bag(&prefix, &bag.encode()),
            input("d", "m", "in", &bag)
        );
        assert_eq!(input_with_bag(&prefix, ""), "devices/d/modules/m/inputs/in");
        assert_eq!(
            method_request("Get", "1"),
            "$iothub/methods/POST/Get/?$rid=1"
        );
        assert_eq!(method_response(200, "1"), "$iothub/methods/res/200/?$rid=1");
    }

    #[test]
    fn parses_events_in_all_four_shapes() {
        for (t, bag) in [
            ("devices/d/modules/m/messages/events", ""),
            ("devices/d/modules/m/messages/events/", ""),
            ("devices/d/modules/m/messages/events/%24.on=o", "%24.on=o"),
            ("devices/d/modules/m/messages/events/%24.on=o/", "%24.on=o/"),
        ] {
            assert_eq!(
                parse(t),
                Topic::Events {
                    device: "d",
                    module: Some("m"),
                    bag
                },
                "{t}"
            );
        }
        assert_eq!(
            parse("devices/d/messages/events/a=1"),
            Topic::Events {
                device: "d",
                module: None,
                bag: "a=1"
            }
        );
    }

    #[test]
    fn parses_inputs_methods_and_twin() {
        assert_eq!(
            parse("devices/d/modules/m/inputs/in1/a=1&%24.cdid=d"),
            Topic::Input {
                device: "d",
                module: "m",
                input: "in1",
                bag: "a=1&%24.cdid=d"
            }
        );
        assert_eq!(
            parse("devices/d/modules/m/inputs/in1"),
            Topic::Input {
                device: "d",
                module: "m",
                input: "in1",
                bag: ""
            }
        );
        assert_eq!(
            parse("$iothub/methods/POST/GetTimeMethod/?$rid=abc"),
            Topic::MethodRequest {
                method: "GetTimeMethod",
                rid: "abc"
            }
        );
        assert_eq!(
            parse("$iothub/methods/res/200/?$rid=abc"),
            Topic::MethodResponse {
                status: 200,
                rid: "abc"
            }
        );
        assert_eq!(
            parse("$iothub/twin/GET/?$rid=7"),
            Topic::TwinGet { rid: "7" }
        );
        assert_eq!(
            parse("$iothub/twin/PATCH/properties/reported/?$rid=8"),
            Topic::TwinReportedPatch { rid: "8" }
        );
        for bad in [
            "",
            "devices//x",
            "devices/d/modules//inputs/x",
            "$iothub/methods/res/abc/?$rid=1",
            "foo/bar",
        ] {
            assert_eq!(parse(bad), Topic::Unknown, "{bad}");
        }
    }

    #[test]
    fn parses_usernames_like_edgehub() {
        let u = username("hub.example", "dev1", "producer", "rust/0.1 (x)");
        let id = parse_username(&u).unwrap();
        assert_eq!(id.device, "dev1");
        assert_eq!(id.module.as_deref(), Some("producer"));
        assert_eq!(id.client_type.as_deref(), Some("rust/0.1 (x)"));
        let py = "h/dev1/consumer/?api-version=2019-10-01&DeviceClientType=azure-iot-device-iothub-py%2F2.14.0";
        assert_eq!(
            parse_username(py).unwrap().module.as_deref(),
            Some("consumer")
        );
        let legacy = parse_username("h/dev1/m/api-version=2018-06-30").unwrap();
        assert_eq!(legacy.module.as_deref(), Some("m"));
        assert!(parse_username("h/dev1/?api-version=1")
            .unwrap()
            .module
            .is_none());
        assert!(parse_username("h/dev1/m/?DeviceClientType=x").is_err());
        assert!(parse_username("garbage").is_err());
        assert!(parse_username("h/a/b/c/?api-version=1").is_err());
    }
}
