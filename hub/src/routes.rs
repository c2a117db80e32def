// TEMPORARY STUB (being replaced by the full route parser). Minimal: seed-shaped routes only.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("route {0:?}: {1}")]
    Invalid(String, String),
}
pub trait MessageProperties {
    fn system(&self, name: &str) -> Option<&str>;
    fn application(&self, name: &str) -> Option<&str>;
}
#[derive(Debug, Clone)]
pub enum Sink {
    Upstream,
    Module { module: String, input: String },
}
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub text: String,
    pub source: String,
    pub sink: Sink,
    pub priority: u8,
    pub time_to_live_secs: Option<u64>,
}
impl Route {
    pub fn matches(&self, source: &str, _props: &dyn MessageProperties) -> bool {
        let pat = format!(
            "{}/",
            self.source.trim_end_matches('*').trim_end_matches('/')
        )
        .to_ascii_lowercase();
        format!("{source}/").to_ascii_lowercase().starts_with(&pat)
    }
}
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
}
impl RouteTable {
    pub fn from_manifest(m: &serde_json::Value) -> Result<Self, RouteError> {
        let routes = m
            .pointer("/modulesContent/$edgeHub/properties.desired/routes")
            .and_then(|r| r.as_object())
            .ok_or_else(|| RouteError::Invalid("-".into(), "no routes".into()))?;
        let mut out = Vec::new();
        for (name, v) in routes {
            let text = v
                .as_str()
                .or_else(|| v.get("route").and_then(|r| r.as_str()))
                .unwrap_or("");
            out.push(Self::parse(name, text)?);
        }
        Ok(Self { routes: out })
    }
    pub fn parse(name: &str, text: &str) -> Result<Route, RouteError> {
        let bad = || RouteError::Invalid(name.into(), text.into());
        let rest = text.trim().strip_prefix("FROM ").ok_or_else(bad)?;
        let (source, sink) = rest.split_once(" INTO ").ok_or_else(bad)?;
        let sink = if sink.trim() == "$upstream" {
            Sink::Upstream
        } else {
            let p = sink
                .trim()
                .strip_prefix("BrokeredEndpoint(\"/modules/")
                .ok_or_else(bad)?
                .strip_suffix("\")")
                .ok_or_else(bad)?;
            let (m, i) = p.split_once("/inputs/").ok_or_else(bad)?;
            Sink::Module {
                module: m.into(),
                input: i.into(),
            }
        };
        Ok(Route {
            name: name.into(),
            text: text.into(),
            source: source.trim().into(),
            sink,
            priority: 0,
            time_to_live_secs: None,
        })
    }
    pub fn new(routes: Vec<Route>) -> Self {
        Self { routes }
    }
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
    pub fn matching<'a>(
        &'a self,
        source: &'a str,
        _props: &'a dyn MessageProperties,
    ) -> impl Iterator<Item = &'a Route> + 'a {
        self.routes.iter().filter(move |r| {
            let pat = format!("{}/", r.source.trim_end_matches('*').trim_end_matches('/'))
                .to_ascii_lowercase();
            format!("{source}/").to_ascii_lowercase().starts_with(&pat)
        })
    }
}
