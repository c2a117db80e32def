//! The accept loop the three listeners share (MQTT over TLS, plain MQTT, HTTPS): admission, the
//! TLS handshake and the refusals of connections that never authenticate.

use crate::admission::{Admission, Expelled, Ticket};
use crate::refusals::{Protocol, Reason};
use crate::state::Hub;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// Accepts connections until the hub stops; each gets an admission ticket and its own task
/// running `connection`.
pub(crate) async fn accept_loop<F, Fut>(
    hub: Arc<Hub>,
    listener: TcpListener,
    protocol: Protocol,
    admission: Arc<Admission>,
    connection: F,
) where
    F: Fn(Arc<Hub>, TcpStream, SocketAddr, Ticket) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "{} accept failed", name(protocol));
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if protocol == Protocol::Https && hub.faults().tls_fail() {
            // Fault injection: the handshake dies as it starts, as the seed saw on real devices.
            drop(stream);
            continue;
        }
        let ticket = admission.arrive();
        let _ = stream.set_nodelay(true);
        hub.spawn(connection(hub.clone(), stream, peer, ticket));
    }
}

fn name(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Mqtt => "MQTT",
        Protocol::Https => "HTTPS",
    }
}

/// The TLS handshake, given up when the ticket is expelled; a failure is refused here.
pub(crate) async fn handshake(
    hub: &Hub,
    protocol: Protocol,
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    ticket: &Ticket,
) -> Option<TlsStream<TcpStream>> {
    let handshake = tokio::select! {
        r = acceptor.accept(stream) => r,
        e = ticket.expelled() => {
            expelled(hub, protocol, peer, e);
            return None;
        }
    };
    match handshake {
        Ok(stream) => Some(stream),
        Err(e) => {
            hub.refusals().refuse(
                protocol,
                Reason::TlsHandshake,
                Some(peer),
                "",
                &format_args!("TLS handshake failed: {e}"),
            );
            None
        }
    }
}

/// An unauthenticated connection made way for newer ones, or ran out of time.
pub(crate) fn expelled(hub: &Hub, protocol: Protocol, peer: SocketAddr, e: Expelled) {
    let (reason, detail) = match (e, protocol) {
        (Expelled::Evicted, _) => (
            Reason::UnauthenticatedLimit,
            "closed an unauthenticated connection to make room for newer ones (--max-unauthenticated)",
        ),
        (Expelled::Expired, Protocol::Mqtt) => (
            Reason::AuthDeadline,
            "no authenticated CONNECT within --auth-timeout",
        ),
        (Expelled::Expired, Protocol::Https) => (
            Reason::AuthDeadline,
            "no authenticated request within --auth-timeout",
        ),
    };
    hub.refusals()
        .refuse(protocol, reason, Some(peer), "", &detail);
}
