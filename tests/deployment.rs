//! deployment.json is what a real device runs and what the local run and the hub read: its routes
//! parse with the hub's parser, its route endpoints name deployed modules and the inputs/outputs
//! the modules use, and every env variable it sets is one a module reads (issue 5, "Done when" 4).

mod common;
use clap::CommandFactory;
use hub::routes::{RouteTable, Sink};
use std::collections::BTreeSet;

fn manifest() -> serde_json::Value {
    let text = std::fs::read_to_string(common::repo().join("deployment.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Env variables a module binary reads: its clap arguments' env names plus identity, ports and OTLP.
fn env_read_by(cmd: clap::Command) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = cmd
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .collect();
    names.extend(
        [
            edge::contract::vars::MQTT_PORT,
            edge::contract::vars::HTTPS_PORT,
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_SERVICE_NAME",
            "OTEL_RESOURCE_ATTRIBUTES",
            "OTEL_TRACES_SAMPLER",
            "OTEL_TRACES_SAMPLER_ARG",
            "RUST_LOG",
        ]
        .map(String::from),
    );
    names
}

#[test]
fn routes_parse_and_connect_the_two_modules_by_the_names_they_use() {
    let m = manifest();
    let table = RouteTable::from_manifest(&m).unwrap();
    let modules: BTreeSet<String> = hub::manifest_modules(&m).into_iter().collect();
    assert_eq!(
        modules,
        BTreeSet::from(["consumer".to_owned(), "producer".to_owned()])
    );
    let mut links = BTreeSet::new();
    for r in table.routes() {
        match &r.sink {
            Sink::Module { module, input } => {
                assert!(
                    modules.contains(module),
                    "route {} sends to undeployed module {module}",
                    r.name
                );
                assert_eq!(input, edge::seed::MESSAGE_ENDPOINT, "route {}", r.name);
                links.insert(module.clone());
            }
            Sink::Upstream => panic!("route {} goes upstream; the comparison needs none", r.name),
        }
    }
    assert_eq!(links.len(), 2, "both modules must receive GetTimeMessage");
    // The seed's exact route strings.
    let routes = &m["modulesContent"]["$edgeHub"]["properties.desired"]["routes"];
    assert_eq!(routes["ConsumerToProducer"], "FROM /messages/modules/consumer/outputs/GetTimeMessage INTO BrokeredEndpoint(\"/modules/producer/inputs/GetTimeMessage\")");
    assert_eq!(routes["ProducerToConsumer"], "FROM /messages/modules/producer/outputs/GetTimeMessage INTO BrokeredEndpoint(\"/modules/consumer/inputs/GetTimeMessage\")");
}

#[test]
fn every_env_variable_is_one_the_module_reads() {
    let m = manifest();
    for (module, cmd) in [
        ("producer", producer::Args::command()),
        ("consumer", consumer::Args::command()),
    ] {
        let known = env_read_by(cmd);
        let env = m["modulesContent"]["$edgeAgent"]["properties.desired"]["modules"][module]["env"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        for (name, value) in &env {
            assert!(known.contains(name), "{module}: deployment.json sets {name}, which {module} does not read (it reads {known:?})");
            assert!(
                value.get("value").is_some(),
                "{module}: {name} needs {{\"value\": …}}"
            );
        }
        if module == "consumer" {
            for flag in ["EnableMethod", "EnableMessage"] {
                assert!(env.contains_key(flag), "consumer env lacks {flag}");
            }
        }
        let create: serde_json::Value = serde_json::from_str(
            m["modulesContent"]["$edgeAgent"]["properties.desired"]["modules"][module]["settings"]
                ["createOptions"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert!(
            create["ExposedPorts"]["9600/tcp"].is_object(),
            "{module}: /metrics port not exposed"
        );
    }
}
