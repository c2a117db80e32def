//! A connection's CONNECT: it must be the first packet; authentication as edgeHub does it
//! (username and client id, this device, then the module's SAS token) and a place among the
//! established connections; each refusal answered with the CONNACK code edgeHub would send.

use super::{packet_kind, ConnError};
use crate::admission::Ticket;
use crate::metrics::{ConnectFailedLabels, MsTelemetry, NotAuthenticated};
use crate::refusals::{Protocol, Reason};
use crate::state::Hub;
use bytes::BytesMut;
use edge::topic;
use rumqttc::mqttbytes::v4::{ConnAck, Connect, ConnectReturnCode, Packet};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Why a CONNECT is refused, with the CONNACK code edgeHub would send.
pub(super) struct Refusal {
    pub(super) code: ConnectReturnCode,
    pub(super) reason: Reason,
    pub(super) detail: String,
}

/// The CONNECT a connection must open with; anything else is refused (a port probe that sends
/// nothing just leaves).
pub(super) fn first_connect(
    hub: &Hub,
    peer: SocketAddr,
    first: Result<Packet, ConnError>,
) -> Option<Connect> {
    let refuse = |detail: &dyn std::fmt::Display| {
        (hub.refusals()).refuse(Protocol::Mqtt, Reason::NotConnect, Some(peer), "", detail)
    };
    match first {
        Ok(Packet::Connect(c)) => Some(c),
        Ok(other) => {
            let kind = packet_kind(&other);
            refuse(&format_args!("first packet is {kind}, not CONNECT"));
            None
        }
        Err(ConnError::Eof) => None, // a port probe or a client that changed its mind
        Err(e) => {
            refuse(&format_args!("closed before CONNECT: {e}"));
            None
        }
    }
}

/// The module a CONNECT authenticates as, once it also has a place among the established
/// connections (`--max-connections`).
pub(super) fn admit(hub: &Hub, connect: &Connect, ticket: &Ticket) -> Result<String, Refusal> {
    let module = authenticate(hub, connect)?;
    if !ticket.establish() {
        return Err(Refusal {
            code: ConnectReturnCode::ServiceUnavailable,
            reason: Reason::ConnectionLimit,
            detail: format!(
                "{} connections are established already (--max-connections)",
                hub.settings().max_connections
            ),
        });
    }
    Ok(module)
}

/// Logs and counts a refused CONNECT, answers it with its CONNACK code and closes the
/// connection (giving a client that does not read a second at most).
pub(super) async fn refuse<W: AsyncWrite + Unpin>(
    hub: &Hub,
    peer: SocketAddr,
    connect: &Connect,
    refusal: Refusal,
    mut wr: W,
) {
    let Refusal {
        code,
        reason,
        detail,
    } = refusal;
    // Only a known identity names the series, so strangers cannot grow the metric.
    let client_id = connect.client_id.as_str();
    let known = (hub.identities()).is_client_id(&hub.settings().device_id, client_id);
    hub.refusals().refuse(
        Protocol::Mqtt,
        reason,
        Some(peer),
        if known { client_id } else { "" },
        &format_args!("CONNECT refused with {code:?}: {detail}"),
    );
    count_connect_failed(hub, reason, known.then_some(client_id));
    let mut out = BytesMut::new();
    if ConnAck::new(code, false).write(&mut out).is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            wr.write_all(&out).await?;
            wr.flush().await?;
            wr.shutdown().await
        })
        .await;
    }
}

fn authenticate(hub: &Hub, connect: &Connect) -> Result<String, Refusal> {
    let refuse = |code, reason, detail: String| Refusal {
        code,
        reason,
        detail,
    };
    let Some(login) = &connect.login else {
        return Err(refuse(
            ConnectReturnCode::BadUserNamePassword,
            Reason::NoCredentials,
            "CONNECT has no username/password".into(),
        ));
    };
    let id = topic::parse_username(&login.username).map_err(|e| {
        refuse(
            ConnectReturnCode::BadUserNamePassword,
            Reason::BadUsername,
            e.to_string(),
        )
    })?;
    let Some(module) = id.module else {
        return Err(refuse(
            ConnectReturnCode::NotAuthorized,
            Reason::NotAModule,
            format!(
                "{} is a device identity; this hub serves modules",
                id.device
            ),
        ));
    };
    let expected_client_id = format!("{}/{}", id.device, module);
    if connect.client_id != expected_client_id {
        return Err(refuse(
            ConnectReturnCode::NotAuthorized,
            Reason::ClientIdMismatch,
            format!(
                "client id {:?} must equal {expected_client_id:?} (from the username)",
                connect.client_id
            ),
        ));
    }
    if id.device != hub.settings().device_id {
        return Err(refuse(
            ConnectReturnCode::NotAuthorized,
            Reason::UnknownDevice,
            format!("device {:?} is not this edge device", id.device),
        ));
    }
    let hosts = [
        hub.settings().iothub_hostname.as_str(),
        hub.settings().gateway_hostname.as_str(),
    ];
    (hub.identities())
        .verify(&login.password, &hosts, &id.device, &module)
        .map_err(|e| refuse(ConnectReturnCode::NotAuthorized, e.reason(), e.to_string()))?;
    Ok(module)
}

/// `edgehub_client_connect_failed_total`: edgeHub counts failed authentications only, all as
/// `not_authenticated` (the finer reason is in `edgehub_refusals_total`); `id` is `unknown`
/// for a client id that names no identity here, so strangers cannot create series.
fn count_connect_failed(hub: &Hub, reason: Reason, known_id: Option<&str>) {
    if !reason.is_authentication() {
        return;
    }
    (hub.metrics().connect_failed)
        .get_or_create(&ConnectFailedLabels {
            id: known_id.unwrap_or("unknown").into(),
            reason: NotAuthenticated,
            ms_telemetry: MsTelemetry,
        })
        .inc();
}
