//! Being an Azure IoT Edge module: identity from the IoT Edge environment, SAS tokens, the workload
//! API, the MQTT session with edgeHub, direct-method invocation over HTTPS, and the protocol's
//! wire formats (topics, property bags) and the files and environment between the local run's
//! processes (`contract`), which the local hub shares.
#![forbid(unsafe_code)]

pub mod bag;
pub mod contract;
pub mod identity;
pub mod invoke;
pub mod message;
pub mod sas;
pub mod seed;
pub mod session;
pub mod time;
pub mod tls;
pub mod topic;
pub mod workload;

pub use bag::PropertyBag;
pub use contract::{ConnectionString, Endpoints, IdentitiesFile, ModuleEnv};
pub use identity::{IdentityError, ModuleIdentity};
pub use invoke::{InvokeError, InvokeFailure, MethodClient, MethodResult};
pub use message::{Message, MethodRequest};
pub use session::{Incoming, ModuleClient, SessionError};
