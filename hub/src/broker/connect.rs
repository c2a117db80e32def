//! MQTT CONNECT authentication as edgeHub does it: username and client id, this device, then
//! the module's SAS token; each refusal with the CONNACK code edgeHub would send.

use crate::refusals::Reason;
use crate::state::Hub;
use edge::topic;
use rumqttc::mqttbytes::v4::{Connect, ConnectReturnCode};

/// Why a CONNECT is refused, with the CONNACK code edgeHub would send.
pub(super) struct Refusal {
    pub(super) code: ConnectReturnCode,
    pub(super) reason: Reason,
    pub(super) detail: String,
}

pub(super) fn authenticate(hub: &Hub, connect: &Connect) -> Result<String, Refusal> {
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
