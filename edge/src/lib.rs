//! Being an Azure IoT Edge module: identity from the IoT Edge environment, SAS tokens, the workload
//! API, the MQTT session with edgeHub, direct-method invocation over HTTPS, and the protocol's
//! wire formats (topics, property bags) and the files and environment between the local run's
//! processes (`contract`), which the local hub shares.
#![forbid(unsafe_code)]

pub mod bag;
pub mod contract;
pub mod deployment;
pub mod files;
pub mod identity;
pub mod invoke;
pub mod message;
pub mod payload;
pub mod sas;
pub mod seed;
pub mod session;
pub mod signal;
pub mod time;
pub mod tls;
pub mod topic;
pub mod workload;

pub use bag::PropertyBag;

/// An error with its causes, `: `-separated: the one line a log needs.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

pub use contract::{ConnectionString, Endpoints, IdentitiesFile, ModuleEnv};
pub use deployment::{Deployment, DeploymentError};
pub use identity::{IdentityError, ModuleIdentity};
pub use invoke::{InvokeError, InvokeFailure, MethodClient, MethodResult, MethodTarget};
pub use message::{Message, MethodRequest};
pub use session::{Incoming, ModuleClient, SessionError};
