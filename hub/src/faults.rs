//! Faults on purpose: the failures seen on real edgeHubs (slow routing, lost messages, lost
//! PUBACKs, failed TLS handshakes, dropped connections), injected on demand so the modules'
//! accounting and recovery can be shown on any machine. Off unless `--fault`/`HUB_FAULTS` names
//! one; every injection is counted in `edgehub_faults_injected_total{fault}`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

pub const FORMS: &str = "delay:messages=8ms, delay:methods=10ms~2ms (~ adds uniform jitter), \
drop:messages=0.1, drop:methods=0.1, lose-ack:MODULE=0.05, tls-fail:https=0.02, disconnect:MODULE=30s";

/// Where a delay or a drop applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    Messages,
    Methods,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Added before every routed message delivery / every forwarded method request.
    Delay {
        path: Path,
        base: Duration,
        jitter: Duration,
    },
    /// That fraction of routed messages is dropped after the sender's PUBACK; that fraction of
    /// method requests is never forwarded (the caller gets 504 after its timeout).
    Drop { path: Path, ratio: f64 },
    /// That fraction of the module's PUBACKs for input messages is ignored.
    LoseAck { module: String, ratio: f64 },
    /// That fraction of HTTPS TLS handshakes is aborted.
    TlsFail { ratio: f64 },
    /// The module's MQTT connection is closed this often.
    Disconnect { module: String, every: Duration },
}

#[derive(Debug, thiserror::Error)]
#[error("invalid fault {spec:?}: {why}. Valid forms: {FORMS}")]
pub struct FaultError {
    spec: String,
    why: String,
}

impl FromStr for Fault {
    type Err = FaultError;

    fn from_str(spec: &str) -> Result<Self, FaultError> {
        let err = |why: &str| FaultError {
            spec: spec.to_owned(),
            why: why.to_owned(),
        };
        let (kind, rest) = spec
            .trim()
            .split_once(':')
            .ok_or_else(|| err("expected KIND:TARGET=VALUE"))?;
        let (target, value) = rest
            .split_once('=')
            .ok_or_else(|| err("expected KIND:TARGET=VALUE"))?;
        let (target, value) = (target.trim(), value.trim());
        let ratio = || -> Result<f64, FaultError> {
            match value.parse::<f64>() {
                Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
                _ => Err(err("the ratio must be a number from 0 to 1")),
            }
        };
        let duration = |s: &str| {
            humantime::parse_duration(s.trim())
                .map_err(|e| err(&format!("{s:?} is not a duration ({e})")))
        };
        let path = || match target {
            "messages" => Ok(Path::Messages),
            "methods" => Ok(Path::Methods),
            _ => Err(err("the target must be messages or methods")),
        };
        let module = || {
            if target.is_empty() {
                Err(err("name the module"))
            } else {
                Ok(target.to_owned())
            }
        };
        match kind.trim() {
            "delay" => {
                let (base, jitter) = match value.split_once('~') {
                    Some((b, j)) => (duration(b)?, duration(j)?),
                    None => (duration(value)?, Duration::ZERO),
                };
                Ok(Fault::Delay {
                    path: path()?,
                    base,
                    jitter,
                })
            }
            "drop" => Ok(Fault::Drop {
                path: path()?,
                ratio: ratio()?,
            }),
            "lose-ack" => Ok(Fault::LoseAck {
                module: module()?,
                ratio: ratio()?,
            }),
            "tls-fail" if target == "https" => Ok(Fault::TlsFail { ratio: ratio()? }),
            "tls-fail" => Err(err("only tls-fail:https exists")),
            "disconnect" => {
                let every = duration(value)?;
                if every.is_zero() {
                    return Err(err("the interval must be above zero"));
                }
                Ok(Fault::Disconnect {
                    module: module()?,
                    every,
                })
            }
            _ => Err(err("unknown kind")),
        }
    }
}

impl fmt::Display for Fault {
    /// The `fault` label: kind and target, e.g. `drop:messages`, `lose-ack:producer`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = |p: &Path| match p {
            Path::Messages => "messages",
            Path::Methods => "methods",
        };
        match self {
            Fault::Delay { path: p, .. } => write!(f, "delay:{}", path(p)),
            Fault::Drop { path: p, .. } => write!(f, "drop:{}", path(p)),
            Fault::LoseAck { module, .. } => write!(f, "lose-ack:{module}"),
            Fault::TlsFail { .. } => write!(f, "tls-fail:https"),
            Fault::Disconnect { module, .. } => write!(f, "disconnect:{module}"),
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FaultLabels {
    pub fault: String,
}

/// The faults a hub runs with, each with its counter resolved once.
#[derive(Default)]
pub struct Faults {
    active: Vec<(Fault, Counter)>,
}

impl Faults {
    pub fn new(faults: Vec<Fault>, family: &Family<FaultLabels, Counter>) -> Self {
        let active = faults
            .into_iter()
            .map(|f| {
                let counter = family
                    .get_or_create(&FaultLabels {
                        fault: f.to_string(),
                    })
                    .clone();
                (f, counter)
            })
            .collect();
        Self { active }
    }

    pub fn is_empty(&self) -> bool {
        self.active.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Fault> {
        self.active.iter().map(|(f, _)| f)
    }

    /// The delay to add on `path` now (counted), if any.
    pub fn delay(&self, on: Path) -> Option<Duration> {
        self.active.iter().find_map(|(f, c)| match f {
            Fault::Delay { path, base, jitter } if *path == on => {
                c.inc();
                let extra = jitter.mul_f64(rand::random::<f64>());
                Some(*base + extra)
            }
            _ => None,
        })
    }

    /// Whether to drop this message / method request (counted when it does).
    pub fn drop(&self, on: Path) -> bool {
        self.chance(|f| matches!(f, Fault::Drop { path, ratio } if *path == on).then(|| ratio(f)))
    }

    /// Whether to ignore this PUBACK from `module` (counted when it does).
    pub fn lose_ack(&self, module: &str) -> bool {
        self.chance(|f| {
            matches!(f, Fault::LoseAck { module: m, .. } if m == module).then(|| ratio(f))
        })
    }

    /// Whether to abort this HTTPS handshake (counted when it does).
    pub fn tls_fail(&self) -> bool {
        self.chance(|f| matches!(f, Fault::TlsFail { .. }).then(|| ratio(f)))
    }

    /// How often to close `module`'s connection, if at all.
    pub fn disconnect_every(&self, module: &str) -> Option<Duration> {
        self.active.iter().find_map(|(f, _)| match f {
            Fault::Disconnect { module: m, every } if m == module => Some(*every),
            _ => None,
        })
    }

    /// Counts one injected disconnect of `module`.
    pub fn disconnected(&self, module: &str) {
        for (f, c) in &self.active {
            if matches!(f, Fault::Disconnect { module: m, .. } if m == module) {
                c.inc();
            }
        }
    }

    fn chance(&self, pick: impl Fn(&Fault) -> Option<f64>) -> bool {
        for (f, c) in &self.active {
            if let Some(r) = pick(f) {
                if rand::random::<f64>() < r {
                    c.inc();
                    return true;
                }
                return false;
            }
        }
        false
    }
}

fn ratio(f: &Fault) -> f64 {
    match f {
        Fault::Drop { ratio, .. } | Fault::LoseAck { ratio, .. } | Fault::TlsFail { ratio } => {
            *ratio
        }
        _ => 0.0,
    }
}

/// `--fault` specs plus `HUB_FAULTS` (specs separated by `;`).
pub fn parse_all(flags: &[String], env: Option<&str>) -> Result<Vec<Fault>, FaultError> {
    flags
        .iter()
        .map(String::as_str)
        .chain(env.into_iter().flat_map(|e| e.split(';')))
        .filter(|s| !s.trim().is_empty())
        .map(str::parse)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_documented_form() {
        let all = parse_all(
            &["delay:messages=8ms".into(), "delay:methods=10ms~2ms".into()],
            Some("drop:messages=0.1; drop:methods=0.1;lose-ack:producer=0.05;tls-fail:https=0.02;disconnect:consumer=30s"),
        )
        .unwrap();
        let labels: Vec<String> = all.iter().map(ToString::to_string).collect();
        assert_eq!(
            labels,
            [
                "delay:messages",
                "delay:methods",
                "drop:messages",
                "drop:methods",
                "lose-ack:producer",
                "tls-fail:https",
                "disconnect:consumer"
            ]
        );
        assert_eq!(
            all[1],
            Fault::Delay {
                path: Path::Methods,
                base: Duration::from_millis(10),
                jitter: Duration::from_millis(2)
            }
        );
        assert_eq!(
            all[6],
            Fault::Disconnect {
                module: "consumer".into(),
                every: Duration::from_secs(30)
            }
        );
    }

    #[test]
    fn invalid_specs_name_the_spec_and_the_valid_forms() {
        for bad in [
            "drop:messages=2",
            "drop:cloud=0.1",
            "delay:messages=soon",
            "tls-fail:mqtt=0.1",
            "explode:hub=1",
            "disconnect:producer=0s",
            "lose-ack:=0.1",
            "nonsense",
        ] {
            let e = bad.parse::<Fault>().unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
            assert!(e.contains("Valid forms: delay:messages=8ms"), "{e}");
        }
    }

    #[test]
    fn ratios_are_honoured_and_counted() {
        let family = Family::<FaultLabels, Counter>::default();
        let faults = Faults::new(
            vec![Fault::Drop {
                path: Path::Messages,
                ratio: 0.25,
            }],
            &family,
        );
        let dropped = (0..10_000).filter(|_| faults.drop(Path::Messages)).count();
        assert!((2_000..3_000).contains(&dropped), "{dropped}");
        let counted = family
            .get_or_create(&FaultLabels {
                fault: "drop:messages".into(),
            })
            .get();
        assert_eq!(counted as usize, dropped);
        assert!(!faults.drop(Path::Methods));
        assert!(faults.delay(Path::Messages).is_none());
    }
}
