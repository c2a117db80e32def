//! Our producer and consumer as processes against the hub: identity through the IoT Edge
//! workload API, and timeouts that are counted while the loops go on (issue 3).

use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};
use edge::contract::vars;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use test_support::*;

/// A workload API (aziot-edged's sign and trust-bundle endpoints) on a unix socket, holding the
/// module keys as the security daemon does. Records the request lines it served.
fn serve_workload(
    socket: &std::path::Path,
    keys: Vec<(String, Vec<u8>)>,
    ca_pem: String,
) -> Arc<Mutex<Vec<String>>> {
    let listener = UnixListener::bind(socket).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let (keys, ca_pem, log) = (keys.clone(), ca_pem.clone(), log.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut stream = stream;
                loop {
                    let mut request_line = String::new();
                    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut length = 0;
                    loop {
                        let mut h = String::new();
                        reader.read_line(&mut h).unwrap();
                        if h.trim().is_empty() {
                            break;
                        }
                        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap();
                        }
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    log.lock().unwrap().push(request_line.trim().to_owned());
                    let path = request_line
                        .split_whitespace()
                        .nth(1)
                        .unwrap_or("")
                        .to_owned();
                    let (status, reply) = if path.starts_with("/trust-bundle") {
                        ("200 OK", serde_json::json!({ "certificate": ca_pem }))
                    } else if let Some(module) = path
                        .strip_prefix("/modules/")
                        .and_then(|p| p.split('/').next())
                    {
                        let req: serde_json::Value = serde_json::from_slice(&body).unwrap();
                        assert_eq!(req["keyId"], "primary");
                        assert_eq!(req["algo"], "HMACSHA256");
                        let data = BASE64.decode(req["data"].as_str().unwrap()).unwrap();
                        match keys.iter().find(|(m, _)| m == module) {
                            Some((_, key)) => (
                                "200 OK",
                                serde_json::json!({ "digest": edge::sas::sign(key, std::str::from_utf8(&data).unwrap()) }),
                            ),
                            None => (
                                "404 Not Found",
                                serde_json::json!({ "message": "no such module" }),
                            ),
                        }
                    } else {
                        (
                            "404 Not Found",
                            serde_json::json!({ "message": "not found" }),
                        )
                    };
                    let body = reply.to_string();
                    let _ = write!(stream, "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                }
            });
        }
    });
    seen
}

#[test]
fn a_module_started_by_the_iotedge_runtime_signs_through_the_workload_api() {
    let hub = Hub::start("workload", &seed_manifest(), 0, 0, &[]);
    let socket = hub.state.join("workload.sock");
    let keys = vec![(
        "consumer".to_owned(),
        BASE64.decode(hub.key("consumer")).unwrap(),
    )];
    let seen = serve_workload(&socket, keys, std::fs::read_to_string(&hub.ca).unwrap());

    let _producer = module("producer", &hub.module_env("producer"));
    let mut env = std::collections::BTreeMap::from([
        (vars::IOTHUB_HOSTNAME.to_owned(), hub.iothub()),
        (vars::GATEWAY_HOSTNAME.into(), "localhost".into()),
        (vars::DEVICE_ID.into(), hub.device()),
        (vars::MODULE_ID.into(), "consumer".into()),
        (vars::MODULE_GENERATION_ID.into(), "gen-42".into()),
        (
            vars::WORKLOAD_URI.into(),
            format!("unix://{}", socket.display()),
        ),
        (vars::API_VERSION.into(), "2019-01-30".into()),
        (vars::AUTH_SCHEME.into(), "sasToken".into()),
        (vars::MQTT_PORT.into(), hub.mqtt.to_string()),
        (vars::HTTPS_PORT.into(), hub.https.to_string()),
        (vars::METRICS_ADDR.into(), "127.0.0.1:0".into()),
        ("SUMMARY_INTERVAL".into(), "2s".into()),
        ("SUMMARY_FORMAT".into(), "json".into()),
    ]);
    env.insert("PATH".into(), std::env::var("PATH").unwrap_or_default());
    let mut consumer = module("consumer", &env);
    wait_for_summary(&mut consumer, Duration::from_secs(30), |s| {
        count(s, "method", "count") > 0 && count(s, "message", "count") > 0
    });
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|l| l.starts_with("GET /trust-bundle?api-version=2019-01-30")),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|l| l
                .starts_with("POST /modules/consumer/genid/gen-42/sign?api-version=2019-01-30")),
        "{seen:?}"
    );
    assert!(consumer.terminate().success(), "{}", consumer.output());
}

#[test]
fn a_producer_that_stops_answering_is_counted_as_timeouts_and_the_loops_go_on() {
    let hub = Hub::start("timeouts", &seed_manifest(), 0, 0, &["--ack-timeout", "3s"]);
    let producer = module("producer", &hub.module_env("producer"));
    let mut env = hub.module_env("consumer");
    env.extend([
        ("SUMMARY_INTERVAL".to_owned(), "2s".to_owned()),
        ("SUMMARY_FORMAT".into(), "json".into()),
        ("EXCHANGE_TIMEOUT".into(), "1s".into()),
    ]);
    let mut consumer = module("consumer", &env);
    wait_for_summary(&mut consumer, Duration::from_secs(30), |s| {
        count(s, "method", "count") > 0 && count(s, "message", "count") > 0
    });

    producer.signal("STOP"); // alive, connected, silent
    let seen_before = summaries(&consumer).len();
    wait_for_summary(&mut consumer, Duration::from_secs(30), |s| {
        count(s, "method", "timeouts") > 0 && count(s, "message", "timeouts") > 0
    });
    producer.signal("CONT");
    // The loops recover: a later interval has successful exchanges of both kinds again.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let all = summaries(&consumer);
        let after_timeouts = all.iter().skip(seen_before).skip_while(|s| {
            count(s, "message", "timeouts") == 0 && count(s, "method", "timeouts") == 0
        });
        if after_timeouts
            .skip(1)
            .any(|s| count(s, "method", "count") > 0 && count(s, "message", "count") > 0)
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "loops did not recover:\n{}",
            consumer.output()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(consumer.terminate().success(), "{}", consumer.output());
    let _ = std::io::stdout().flush();
}

#[test]
fn the_modules_reconnect_and_resubscribe_after_the_hub_restarts() {
    let mut hub = Hub::start("restart", &seed_manifest(), 0, 0, &[]);
    let (mqtt, https) = (hub.mqtt, hub.https);
    let _producer = module("producer", &hub.module_env("producer"));
    let mut env = hub.module_env("consumer");
    env.extend([
        ("SUMMARY_INTERVAL".to_owned(), "2s".to_owned()),
        ("SUMMARY_FORMAT".into(), "json".into()),
        ("EXCHANGE_TIMEOUT".into(), "2s".into()),
    ]);
    let mut consumer = module("consumer", &env);
    wait_for_summary(&mut consumer, Duration::from_secs(30), |s| {
        count(s, "method", "count") > 0 && count(s, "message", "count") > 0
    });
    // The hub goes away and comes back on the same ports with the same state (CA, keys).
    assert!(hub.proc.terminate().success());
    let state = hub.state.clone();
    let seen = summaries(&consumer).len();
    std::thread::sleep(Duration::from_secs(3));
    let _hub2 = Hub::start_in(state, &seed_manifest(), mqtt, https, &[]);
    // Both loops measure again: a later interval has successful exchanges of both kinds.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let all = summaries(&consumer);
        if all
            .iter()
            .skip(seen + 1)
            .any(|s| count(s, "method", "count") > 0 && count(s, "message", "count") > 0)
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no recovery after the hub restarted:\n{}",
            consumer.output()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(consumer.terminate().success(), "{}", consumer.output());
}
