//! Route parsing, matching and refusals; WHERE evaluation and refusal cases in their own files.

mod conditions;
mod refusals;

use super::parser::wildcard_warning;
use super::*;
use serde_json::{json, Value};
use std::collections::HashMap;

#[derive(Default)]
struct Props {
    system: HashMap<String, String>,
    app: HashMap<String, String>,
}

impl Props {
    fn new(system: &[(&str, &str)], app: &[(&str, &str)]) -> Props {
        let map = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        Props {
            system: map(system),
            app: map(app),
        }
    }
}

impl MessageProperties for Props {
    fn system(&self, name: &str) -> Option<&str> {
        self.system.get(name).map(String::as_str)
    }
    fn application(&self, name: &str) -> Option<&str> {
        self.app.get(name).map(String::as_str)
    }
}

const CONSUMER_OUT: &str = "/messages/modules/consumer/outputs/GetTimeMessage";
const PRODUCER_OUT: &str = "/messages/modules/producer/outputs/GetTimeMessage";

fn route(text: &str) -> Route {
    match RouteTable::parse("R1", text) {
        Ok(r) => r,
        Err(e) => panic!("{text:?} should parse: {e}"),
    }
}

fn refused(text: &str) -> String {
    match RouteTable::parse("R1", text) {
        Ok(r) => panic!("{text:?} should be refused, got {r:?}"),
        Err(e) => {
            let message = e.to_string();
            assert!(message.contains("route \"R1\""), "{message}");
            message
        }
    }
}

fn assert_refused(text: &str, parts: &[&str]) {
    let message = refused(text);
    for part in parts {
        assert!(
            message.contains(part),
            "{text:?}: {message:?} lacks {part:?}"
        );
    }
}

/// Evaluates `WHERE cond` on a consumer output message.
fn when(cond: &str, props: &Props) -> bool {
    route(&format!("FROM /messages/* WHERE {cond} INTO $upstream")).matches(CONSUMER_OUT, props)
}

#[test]
fn seed_routes_connect_consumer_and_producer() {
    let none = Props::default();
    let c2p = route("FROM /messages/modules/consumer/outputs/GetTimeMessage INTO BrokeredEndpoint(\"/modules/producer/inputs/GetTimeMessage\")");
    let p2c = route("FROM /messages/modules/producer/outputs/GetTimeMessage INTO BrokeredEndpoint(\"/modules/consumer/inputs/GetTimeMessage\")");
    assert_eq!(
        c2p.sink,
        Sink::Module {
            module: "producer".into(),
            input: "GetTimeMessage".into()
        }
    );
    assert_eq!(
        p2c.sink,
        Sink::Module {
            module: "consumer".into(),
            input: "GetTimeMessage".into()
        }
    );
    assert!(c2p.matches(CONSUMER_OUT, &none));
    assert!(!c2p.matches(PRODUCER_OUT, &none));
    assert!(p2c.matches(PRODUCER_OUT, &none));
    assert!(!p2c.matches(CONSUMER_OUT, &none));
    assert_eq!(
        c2p.source.as_str(),
        "/messages/modules/consumer/outputs/GetTimeMessage"
    );
    assert_eq!(c2p.condition, None);
    assert_eq!(
        (c2p.priority, c2p.time_to_live_secs),
        (DEFAULT_PRIORITY, None)
    );
    assert_eq!(
        c2p.sink.to_string(),
        "BrokeredEndpoint(\"/modules/producer/inputs/GetTimeMessage\")"
    );

    let table = RouteTable::new(vec![c2p, p2c]);
    let hits: Vec<&str> = table
        .matching(CONSUMER_OUT, &none)
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(hits, ["R1"]);
    assert_eq!(
        table
            .matching("/messages/modules/other/outputs/x", &none)
            .count(),
        0
    );
}

#[test]
fn wildcard_sources_follow_edgehub_prefix_semantics() {
    let cases = [
        ("/*", CONSUMER_OUT, true),
        ("/*", "/messages", true),
        ("/*", "/twinChangeNotifications", true),
        ("/messages/*", CONSUMER_OUT, true),
        ("/messages/*", "/messages/modules/consumer", true),
        ("/messages/*", "/messages", true),
        ("/messages/*", "/twinChangeNotifications", false),
        ("/messages/modules/consumer/*", CONSUMER_OUT, true),
        (
            "/messages/modules/consumer/*",
            "/messages/modules/consumer",
            true,
        ),
        ("/messages/modules/consumer/*", PRODUCER_OUT, false),
        (
            "/messages/modules/consumer/*",
            "/messages/modules/consumerX/outputs/a",
            false,
        ),
        ("/messages/modules/consumer/outputs/*", CONSUMER_OUT, true),
        (
            "/messages/modules/consumer/outputs/*",
            "/messages/modules/consumer",
            false,
        ),
        ("/messages/modules/consumer/outputs/*", PRODUCER_OUT, false),
        ("/messages/modules/consumer", CONSUMER_OUT, true),
    ];
    for (source, message, expected) in cases {
        let r = route(&format!("FROM {source} INTO $upstream"));
        assert_eq!(
            r.matches(message, &Props::default()),
            expected,
            "FROM {source} vs {message}"
        );
    }
}

#[test]
fn exact_output_matches_on_segment_boundaries_only() {
    let none = Props::default();
    let get = route("FROM /messages/modules/consumer/outputs/Get INTO $upstream");
    assert!(!get.matches(CONSUMER_OUT, &none));
    assert!(get.matches("/messages/modules/consumer/outputs/Get", &none));
    assert!(get.matches("/messages/modules/consumer/outputs/Get/", &none));
    let exact = route(&format!("FROM {CONSUMER_OUT} INTO $upstream"));
    assert!(exact.matches(CONSUMER_OUT, &none));
    assert!(!exact.matches(&format!("{CONSUMER_OUT}2"), &none));
    assert!(!exact.matches("/messages/modules/consumer/outputs/GetTime", &none));
    // edgeHub trims the trailing '*' of `Get*`: no glob, exactly output Get.
    let star = route("FROM /messages/modules/consumer/outputs/Get* INTO $upstream");
    assert!(!star.matches(CONSUMER_OUT, &none));
    assert!(star.matches("/messages/modules/consumer/outputs/Get", &none));
}

#[test]
fn keywords_sources_and_sinks_ignore_case() {
    let none = Props::default();
    let r = route("select * from /MESSAGES/Modules/CONSUMER/* where $connectionModuleId = 'consumer' into brokeredendpoint(\"/modules/producer/inputs/in\")");
    let props = Props::new(&[("connectionModuleId", "consumer")], &[]);
    assert!(r.matches(CONSUMER_OUT, &props));
    assert!(r.matches("/messages/modules/consumer/outputs/getTIMEmessage", &props));
    assert_eq!(
        route("FROM /messages/* INTO $UPSTREAM").sink,
        Sink::Upstream
    );
    assert!(route("From /messages/* Into $Upstream").matches(CONSUMER_OUT, &none));
    assert!(
        route("SeLeCt * FrOm /* InTo BROKEREDENDPOINT('/Modules/p/Inputs/i')")
            .matches(CONSUMER_OUT, &none)
    );
    // String comparisons stay ordinal (case-sensitive), as in edgeHub.
    let props = Props::new(&[("connectionModuleId", "Consumer")], &[]);
    assert!(!r.matches(CONSUMER_OUT, &props));
}

#[test]
fn whitespace_and_comments_are_flexible() {
    let none = Props::default();
    let r = route("\n\tFROM  / messages /modules/ consumer /*anything*/ /*\r\n  INTO\tBrokeredEndpoint ( \"/modules/p/inputs/i\" )  ");
    assert_eq!(r.source.as_str(), "/messages/modules/consumer/*");
    assert!(r.matches(CONSUMER_OUT, &none));
    assert_eq!(
        r.sink,
        Sink::Module {
            module: "p".into(),
            input: "i".into()
        }
    );
    // The address's own slashes are optional, as in EndpointFactory.
    assert_eq!(
        route("FROM /* INTO BrokeredEndpoint(\" modules/p/inputs/i/ \")").sink,
        Sink::Module {
            module: "p".into(),
            input: "i".into()
        }
    );
}

#[test]
fn upstream_sink() {
    let r = route("FROM /messages/modules/consumer/* INTO $upstream");
    assert_eq!(r.sink, Sink::Upstream);
    assert_eq!(r.sink.to_string(), "$upstream");
    assert!(r.matches(CONSUMER_OUT, &Props::default()));
}

fn manifest(routes: Value) -> Value {
    json!({"modulesContent": {
        "$edgeAgent": {"properties.desired": {"modules": {}}},
        "$edgeHub": {"properties.desired": {"schemaVersion": "1.1", "routes": routes}}
    }})
}

#[test]
fn manifest_string_and_object_forms() {
    let m = manifest(json!({
        "ConsumerToProducer": "FROM /messages/modules/consumer/outputs/GetTimeMessage INTO BrokeredEndpoint(\"/modules/producer/inputs/GetTimeMessage\")",
        "ProducerToConsumer": {"route": "FROM /messages/modules/producer/outputs/GetTimeMessage INTO BrokeredEndpoint(\"/modules/consumer/inputs/GetTimeMessage\")", "priority": 3, "timeToLiveSecs": 60},
        "Up": {"route": "FROM /messages/* WHERE IS_DEFINED($connectionModuleId) INTO $upstream", "timeToLiveSecs": 0},
        "Low": {"route": "FROM /* INTO $upstream", "priority": 9, "extra": "ignored"}
    }));
    let table = match RouteTable::from_manifest(&m) {
        Ok(t) => t,
        Err(e) => panic!("{e}"),
    };
    let by_name: HashMap<&str, &Route> = table
        .routes()
        .iter()
        .map(|r| (r.name.as_str(), r))
        .collect();
    assert_eq!(by_name.len(), 4);
    let c2p = by_name["ConsumerToProducer"];
    assert_eq!(
        (c2p.priority, c2p.time_to_live_secs),
        (DEFAULT_PRIORITY, None)
    );
    let p2c = by_name["ProducerToConsumer"];
    assert_eq!((p2c.priority, p2c.time_to_live_secs), (3, Some(60)));
    assert!(p2c.text.starts_with("FROM /messages/modules/producer"));
    let up = by_name["Up"];
    assert_eq!(
        (up.priority, up.time_to_live_secs),
        (DEFAULT_PRIORITY, None)
    );
    assert_eq!(
        up.condition.as_ref().map(Condition::text),
        Some("IS_DEFINED($connectionModuleId)")
    );
    assert_eq!(by_name["Low"].priority, 9);
    let props = Props::new(&[("connectionModuleId", "consumer")], &[]);
    assert_eq!(table.matching(CONSUMER_OUT, &props).count(), 3);

    // The seed's own deployment.json: schema 1.0, routes as strings.
    let seed = json!({"modulesContent": {"$edgeHub": {"properties.desired": {
        "schemaVersion": "1.0",
        "routes": {
            "ConsumerToProducer": "FROM /messages/modules/consumer/outputs/GetTimeMessage INTO BrokeredEndpoint(\"/modules/producer/inputs/GetTimeMessage\")",
            "ProducerToConsumer": "FROM /messages/modules/producer/outputs/GetTimeMessage INTO BrokeredEndpoint(\"/modules/consumer/inputs/GetTimeMessage\")"
        },
        "storeAndForwardConfiguration": {"timeToLiveSecs": 7200}}}}});
    assert!(RouteTable::from_manifest(&seed).is_ok_and(|t| t.routes().len() == 2));
    // No routes at all is valid: edgeHub then drops every message.
    assert!(RouteTable::from_manifest(&manifest(json!({}))).is_ok_and(|t| t.routes().is_empty()));
}

#[test]
fn manifest_refusals_name_what_is_missing() {
    let no_hub = json!({"modulesContent": {"$edgeAgent": {}}});
    let message = RouteTable::from_manifest(&no_hub)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(message.contains("modulesContent.$edgeHub"), "{message}");
    let no_routes =
        json!({"modulesContent": {"$edgeHub": {"properties.desired": {"schemaVersion": "1.1"}}}});
    let message = RouteTable::from_manifest(&no_routes)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("[\"properties.desired\"].routes"),
        "{message}"
    );
    for bad in [
        json!(null),
        json!({"modulesContent": 3}),
        json!({"modulesContent": {"$edgeHub": {"properties.desired": {"routes": ["x"]}}}}),
    ] {
        assert!(matches!(
            RouteTable::from_manifest(&bad),
            Err(RouteError::NoRoutes { .. })
        ));
    }

    let cases = [
        (
            json!({"R1": {"route": "FROM /* INTO $upstream", "priority": 10}}),
            "priority 10",
        ),
        (
            json!({"R1": {"route": "FROM /* INTO $upstream", "priority": "1"}}),
            "priority \"1\"",
        ),
        (
            json!({"R1": {"route": "FROM /* INTO $upstream", "priority": -1}}),
            "priority -1",
        ),
        (
            json!({"R1": {"route": "FROM /* INTO $upstream", "timeToLiveSecs": -5}}),
            "timeToLiveSecs -5",
        ),
        (
            json!({"R1": {"route": "FROM /* INTO $upstream", "timeToLiveSecs": 1.5}}),
            "timeToLiveSecs 1.5",
        ),
        (
            json!({"R1": {"route": "FROM /* INTO $upstream", "timeToLiveSecs": 4_294_967_296u64}}),
            "timeToLiveSecs",
        ),
        (json!({"R1": {"priority": 1}}), "\"route\" is missing"),
        (json!({"R1": {"route": 5}}), "\"route\" is missing"),
        (json!({"R1": 42}), "42 is neither"),
        (json!({"R1": null}), "null is neither"),
        (json!({"R1": ""}), "the route is empty"),
        (json!({"R1": "   "}), "the route is empty"),
        (json!({"R1": "FROM /* INTO Nowhere(\"x\")"}), "Nowhere"),
    ];
    for (routes, part) in cases {
        let message = match RouteTable::from_manifest(&manifest(routes.clone())) {
            Ok(_) => panic!("{routes} should be refused"),
            Err(e) => e.to_string(),
        };
        assert!(message.contains("route \"R1\""), "{message}");
        assert!(message.contains(part), "{message:?} lacks {part:?}");
    }
    let message = RouteTable::from_manifest(&manifest(json!({" ": "FROM /* INTO $upstream"})))
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(message.contains("names must not be empty"), "{message}");

    let old = json!({"modulesContent": {"$edgeHub": {"properties.desired": {"schemaVersion": "1.0",
        "routes": {"R1": {"route": "FROM /* INTO $upstream"}}}}}});
    let message = RouteTable::from_manifest(&old)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("route \"R1\"") && message.contains("schemaVersion 1.1"),
        "{message}"
    );
}

#[test]
fn wildcards_that_are_not_wildcards_are_explained() {
    let items =
        |path: &str| -> Vec<String> { path.split('/').skip(1).map(str::to_owned).collect() };
    assert_eq!(wildcard_warning(&items("/messages/*")), None);
    assert_eq!(wildcard_warning(&items("/*")), None);
    assert_eq!(
        wildcard_warning(&items("/messages/modules/a/outputs/x")),
        None
    );
    assert!(wildcard_warning(&items("/messages/modules/a/outputs/Get*"))
        .is_some_and(|w| w.contains("matches 'Get' exactly")));
    assert!(
        wildcard_warning(&items("/messages/*/outputs/x")).is_some_and(|w| w.contains("literally"))
    );
    // Such routes still parse, with edgeHub's (literal) meaning.
    let r = route("FROM /messages/modules/*/outputs/x INTO $upstream");
    assert!(!r.matches("/messages/modules/a/outputs/x", &Props::default()));
    assert!(r.matches("/messages/modules/*/outputs/x", &Props::default()));
}

#[test]
fn source_new_trims_like_edgehub() {
    for (path, message, expected) in [
        ("/messages/modules/a/", "/messages/modules/a", true),
        ("  /messages//  ", "/messages/x", true),
        ("/", "/anything", true),
        ("", "/anything", true),
        (
            "/messages/modules/A/outputs/O",
            " /messages/modules/a/outputs/o/ ",
            true,
        ),
        ("/messages/modules/a", "/messages/modules", false),
    ] {
        assert_eq!(
            Source::new(path).matches(message),
            expected,
            "{path:?} vs {message:?}"
        );
    }
}
