//! `GET /metrics`: OpenMetrics (with exemplars) when the scraper accepts it, as Prometheus does;
//! the classic text format 0.0.4 otherwise (what `promtool check metrics` and old scrapers read).
//! A module can serve extra pages on the same port ([`serve_metrics_with`]; the consumer's
//! `/report`). `GET /healthz` answers 200 `ok`, or, for a module with a [`Watchdog`], 503 with
//! what is overdue ([`serve_metrics_watched`]).

use crate::watchdog::Watchdog;
use bytes_body::full;
use hyper::body::Incoming;
use hyper::header::{ACCEPT, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

mod bytes_body {
    use http_body_util::Full;
    pub fn full(s: impl Into<String>) -> Full<hyper::body::Bytes> {
        Full::new(hyper::body::Bytes::from(s.into()))
    }
}

/// Extra pages: given a request's path, the page's body and content type, or `None` (404).
/// Called on a blocking thread, so a page may take a few milliseconds to render.
pub type Pages = Arc<dyn Fn(&str) -> Option<(String, &'static str)> + Send + Sync>;

pub struct MetricsServer {
    pub local_addr: SocketAddr,
    pub task: JoinHandle<()>,
}

/// Encodes the registry as the scraper asked (`Accept`).
pub fn render(
    registry: &Registry,
    accept: &str,
) -> Result<(String, &'static str), std::fmt::Error> {
    let mut body = String::with_capacity(8 * 1024);
    if accept.contains("application/openmetrics-text") {
        prometheus_client::encoding::text::encode(&mut body, registry)?;
        Ok((body, OPENMETRICS))
    } else {
        prometheus_client::encoding::prometheus_text::encode(&mut body, registry)?;
        Ok((body, TEXT))
    }
}

/// Binds `addr` (port 0 picks a free one) and serves the registry until the task is aborted,
/// which also ends its connections.
pub async fn serve_metrics(
    addr: SocketAddr,
    registry: Arc<Registry>,
) -> std::io::Result<MetricsServer> {
    serve_metrics_with(addr, registry, None).await
}

/// [`serve_metrics`], plus `pages` for any other path.
pub async fn serve_metrics_with(
    addr: SocketAddr,
    registry: Arc<Registry>,
    pages: Option<Pages>,
) -> std::io::Result<MetricsServer> {
    serve_metrics_watched(addr, registry, pages, None).await
}

/// How often the server's loop turns when nobody connects, so that the watchdog sees it alive.
const TURN: std::time::Duration = std::time::Duration::from_secs(1);

/// [`serve_metrics_with`]; with a `watchdog`, `/healthz` answers its state and the server's own
/// loop is one of the things it watches ("the metrics server").
pub async fn serve_metrics_watched(
    addr: SocketAddr,
    registry: Arc<Registry>,
    pages: Option<Pages>,
    watchdog: Option<Watchdog>,
) -> std::io::Result<MetricsServer> {
    let listener = TcpListener::bind(addr).await?;
    let local_addr = listener.local_addr()?;
    // A turn a second, or a few seconds late on a busy runtime, is healthy.
    let pulse = watchdog
        .as_ref()
        .map(|w| w.pulse("the metrics server", "it last turned", TURN * 4));
    let task = tokio::spawn(async move {
        // Connections live in this set: aborting the server aborts them too.
        let mut connections = tokio::task::JoinSet::new();
        let mut turn = tokio::time::interval(TURN);
        turn.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            while connections.try_join_next().is_some() {}
            if let Some(pulse) = &pulse {
                pulse.beat();
            }
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = turn.tick(), if pulse.is_some() => continue,
            };
            let (stream, _) = match accepted {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics listener: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let (registry, pages, watchdog) = (registry.clone(), pages.clone(), watchdog.clone());
            connections.spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let (registry, pages, watchdog) =
                        (registry.clone(), pages.clone(), watchdog.clone());
                    async move {
                        Ok::<_, std::convert::Infallible>(
                            handle(&registry, pages.as_ref(), watchdog.as_ref(), &req).await,
                        )
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(MetricsServer { local_addr, task })
}

async fn handle(
    registry: &Registry,
    pages: Option<&Pages>,
    watchdog: Option<&Watchdog>,
    req: &Request<Incoming>,
) -> Response<http_body_util::Full<hyper::body::Bytes>> {
    let reply = |status: StatusCode, ctype: &str, body: String| {
        let mut r = Response::new(full(body));
        *r.status_mut() = status;
        if let Ok(v) = ctype.parse() {
            r.headers_mut().insert(CONTENT_TYPE, v);
        }
        r
    };
    if req.method() != Method::GET {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        );
    }
    match req.uri().path() {
        "/metrics" => {
            let accept = req
                .headers()
                .get(ACCEPT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            match render(registry, accept) {
                Ok((body, ctype)) => reply(StatusCode::OK, ctype, body),
                Err(_) => reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    "encoding failed\n".into(),
                ),
            }
        }
        "/" => reply(
            StatusCode::OK,
            "text/plain",
            "ok: metrics at /metrics\n".into(),
        ),
        "/healthz" => match watchdog.map_or(Ok(()), Watchdog::health) {
            Ok(()) => reply(StatusCode::OK, "text/plain", "ok\n".into()),
            Err(why) => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("{why}\n"),
            ),
        },
        path => {
            let page = match pages {
                Some(pages) => {
                    let (pages, path) = (pages.clone(), path.to_owned());
                    tokio::task::spawn_blocking(move || pages(&path))
                        .await
                        .unwrap_or(None)
                }
                None => None,
            };
            match page {
                Some((body, ctype)) => reply(StatusCode::OK, ctype, body),
                None => reply(
                    StatusCode::NOT_FOUND,
                    "text/plain",
                    "not found: metrics are at /metrics\n".into(),
                ),
            }
        }
    }
}

/// A module's /metrics: serves `registry` on `addr`, logs where, and writes the bound address to
/// `addr_file` when asked (launchers that pass port 0 read it there).
pub async fn serve_module_metrics(
    addr: SocketAddr,
    registry: Registry,
    addr_file: Option<&std::path::Path>,
) -> anyhow::Result<MetricsServer> {
    serve_module_metrics_with(addr, registry, addr_file, None).await
}

/// [`serve_module_metrics`], plus `pages` for any other path.
pub async fn serve_module_metrics_with(
    addr: SocketAddr,
    registry: Registry,
    addr_file: Option<&std::path::Path>,
    pages: Option<Pages>,
) -> anyhow::Result<MetricsServer> {
    serve_module_metrics_watched(addr, registry, addr_file, pages, None).await
}

/// [`serve_module_metrics_with`], with `/healthz` answering `watchdog`'s state.
pub async fn serve_module_metrics_watched(
    addr: SocketAddr,
    registry: Registry,
    addr_file: Option<&std::path::Path>,
    pages: Option<Pages>,
    watchdog: Option<Watchdog>,
) -> anyhow::Result<MetricsServer> {
    use anyhow::Context as _;
    let server = serve_metrics_watched(addr, Arc::new(registry), pages, watchdog)
        .await
        .with_context(|| format!("cannot serve /metrics on {addr} (set METRICS_ADDR)"))?;
    tracing::info!("metrics at http://{}/metrics", server.local_addr);
    if let Some(path) = addr_file {
        std::fs::write(path, server.local_addr.to_string())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(server)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn extra_pages_are_served_beside_the_metrics() {
        let mut registry = Registry::default();
        let counter = prometheus_client::metrics::counter::Counter::<u64>::default();
        registry.register("things", "Things", counter.clone());
        counter.inc();
        let pages: Pages = Arc::new(|path: &str| {
            (path == "/report").then(|| ("<p>hello</p>".to_owned(), "text/html; charset=utf-8"))
        });
        let server = serve_metrics_with(
            "127.0.0.1:0".parse().unwrap(),
            Arc::new(registry),
            Some(pages),
        )
        .await
        .unwrap();
        let report = get(server.local_addr, "/report").await;
        assert!(
            report.starts_with("HTTP/1.0 200") || report.starts_with("HTTP/1.1 200"),
            "{report}"
        );
        assert!(
            report.contains("content-type: text/html; charset=utf-8"),
            "{report}"
        );
        assert!(report.ends_with("<p>hello</p>"), "{report}");
        assert!(get(server.local_addr, "/metrics")
            .await
            .contains("things_total 1"));
        assert!(get(server.local_addr, "/other").await.contains(" 404 "));
        server.task.abort();

        // Without pages, as before: 404 beside /metrics.
        let plain = serve_metrics(
            "127.0.0.1:0".parse().unwrap(),
            Arc::new(Registry::default()),
        )
        .await
        .unwrap();
        assert!(get(plain.local_addr, "/report").await.contains(" 404 "));
        plain.task.abort();
    }

    #[tokio::test]
    async fn healthz_answers_the_watchdogs_state() {
        let dog = Watchdog::new(std::time::Duration::from_secs(60));
        let server = serve_metrics_watched(
            "127.0.0.1:0".parse().unwrap(),
            Arc::new(Registry::default()),
            None,
            Some(dog.clone()),
        )
        .await
        .unwrap();
        let ok = get(server.local_addr, "/healthz").await;
        assert!(ok.contains(" 200 ") && ok.ends_with("\r\nok\n"), "{ok}");
        let server_addr = server.local_addr;
        let probe = tokio::task::spawn_blocking(move || crate::healthcheck(server_addr));
        assert_eq!(probe.await.unwrap(), Ok(()));

        // A loop that stops: 503 with what stopped, once past its bound.
        let _stalled = dog.pulse(
            "the method loop",
            "last exchange finished",
            std::time::Duration::ZERO,
        );
        tokio::time::sleep(crate::watchdog::SLACK + std::time::Duration::from_millis(100)).await;
        let stalled = get(server.local_addr, "/healthz").await;
        assert!(stalled.contains(" 503 "), "{stalled}");
        assert!(
            stalled.contains("the method loop made no progress for 1."),
            "{stalled}"
        );
        let probe = tokio::task::spawn_blocking(move || crate::healthcheck(server_addr));
        let e = probe.await.unwrap().unwrap_err();
        assert!(
            e.starts_with(&format!(
                "healthcheck: http://{server_addr}/healthz: 503: the method loop made no progress"
            )),
            "{e}"
        );
        // The server's own loop is watched and healthy meanwhile; the hub's (no watchdog) says ok.
        assert!(!e.contains("metrics server"), "{e}");
        server.task.abort();
        let plain = serve_metrics(
            "127.0.0.1:0".parse().unwrap(),
            Arc::new(Registry::default()),
        )
        .await
        .unwrap();
        assert!(get(plain.local_addr, "/healthz")
            .await
            .ends_with("\r\nok\n"));
        plain.task.abort();
    }
}
