//! edgeHub's route model: `[SELECT *] FROM <source> [WHERE <condition>] INTO <sink>`.
//!
//! Follows Azure/iotedge `Microsoft.Azure.Devices.Routing.Core` (grammar `Route.g4`,
//! `Condition.g4`, `GrammarLexer.g4`; `RouteFactory`, `CustomMessageSource`, `ConditionVisitor`,
//! `Query/Bool.cs`) and `Edge.Hub.Core` (`EndpointFactory`, `RouteSpec`). See docs/protocol.md#routes.
//!
//! - The lexer reproduces GrammarLexer.g4 (longest match, earlier rule wins a tie), so a route
//!   splits into the tokens edgeHub sees: `a!='x'` is the property `a!`, `SELECT*` is one name.
//! - WHERE accepts a subset of edgeHub's query language, with edgeHub's static types (properties
//!   are strings; comparing a string with a number fails to compile there too) and its
//!   three-valued logic (a missing property is *undefined*, which never routes). Everything outside
//!   the subset is refused with the route's name, never approximated or ignored.
//! - Where edgeHub silently accepts something that can never work (text after the sink, a WHERE
//!   that is not a condition) the route is refused instead, so a manifest that starts here behaves
//!   the same on a device.
//!
//! `manifest` reads the deployment's routes, `lexer` and `parser` turn a route's text into a
//! [`Route`], `eval` runs its WHERE clause on a message.

mod eval;
mod lexer;
mod manifest;
mod parser;
#[cfg(test)]
mod tests;
mod view;

pub(crate) use view::RoutingView;

use eval::{eval, Expr, Val};
use std::fmt;

/// What a message offers a WHERE clause.
pub trait MessageProperties {
    /// A system property by its routing name without the `$` (`connectionDeviceId`,
    /// `connectionModuleId`, `messageId`, `correlationId`, `contentType`, ...).
    fn system(&self, name: &str) -> Option<&str>;
    /// An application property by its exact name.
    fn application(&self, name: &str) -> Option<&str>;
}

/// Why a manifest or route was refused. Each message names the route and the offending part.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// The manifest has no `$edgeHub` routes object.
    #[error("deployment manifest has no {missing} (expected modulesContent.$edgeHub[\"properties.desired\"].routes, an object of \"<name>\": \"<route>\" or {{\"route\": \"<route>\", \"priority\": 0-9, \"timeToLiveSecs\": <seconds>}})")]
    NoRoutes { missing: String },
    /// The manifest entry of a route is malformed (not the route text itself).
    #[error("route {name:?}: {problem} (expected \"<route>\" or {{\"route\": \"<route>\", \"priority\": 0-9, \"timeToLiveSecs\": <seconds>}})")]
    Spec { name: String, problem: String },
    /// The route text does not follow the grammar.
    #[error("route {name:?}: expected {expected}, found {found} (route syntax: [SELECT *] FROM /<source> [WHERE <condition>] INTO <sink>)")]
    Syntax {
        name: String,
        expected: String,
        found: String,
    },
    /// WHERE uses something outside the supported subset.
    #[error("route {name:?}: unsupported in WHERE: {what} (supported: =, !=, <>, AND, OR, NOT, IS_DEFINED, parentheses)")]
    Unsupported { name: String, what: String },
    /// WHERE mixes types the way edgeHub's compiler rejects (or could never route with).
    #[error("route {name:?}: in WHERE, {problem} (edgeHub's types: properties and quoted literals are strings, numbers compare only with numbers, AND/OR/NOT and WHERE itself need conditions)")]
    Type { name: String, problem: String },
    /// The sink after INTO is not one edgeHub has.
    #[error("route {name:?}: unsupported sink {sink}: {problem} (supported: $upstream, BrokeredEndpoint(\"/modules/<module>/inputs/<input>\"))")]
    Sink {
        name: String,
        sink: String,
        problem: String,
    },
}

/// Where a route delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink {
    /// `$upstream`: IoT Hub.
    Upstream,
    /// `BrokeredEndpoint("/modules/{module}/inputs/{input}")`.
    Module { module: String, input: String },
}

impl fmt::Display for Sink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sink::Upstream => f.write_str("$upstream"),
            Sink::Module { module, input } => {
                write!(f, "BrokeredEndpoint(\"/modules/{module}/inputs/{input}\")")
            }
        }
    }
}

/// A route's FROM path and edgeHub's prefix match on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    text: String,
    prefix: String,
}

impl Source {
    /// The match prefix edgeHub derives (`CustomMessageSource.Create` + `BaseMessageSource`):
    /// trim, trim trailing `*`, then (if longer than one char) trailing `/`, then append one `/`.
    pub(crate) fn new(path: &str) -> Source {
        let trimmed = path.trim().trim_end_matches('*');
        let trimmed = if trimmed.len() > 1 {
            trimmed.trim_end_matches('/')
        } else {
            trimmed
        };
        Source {
            text: path.to_owned(),
            prefix: format!("{}/", trimmed.trim().trim_end_matches('/')),
        }
    }

    /// The path as the route wrote it (whitespace between its tokens removed, as edgeHub does).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether a message source (`/messages/modules/{m}/outputs/{o}` or `/messages/modules/{m}`)
    /// falls under this path: case-insensitive prefix match with a `/` appended to both, so
    /// `.../outputs/Get` matches output `Get` but not `GetTime`.
    pub fn matches(&self, message_source: &str) -> bool {
        let message = message_source.trim().trim_end_matches('/');
        let mut hay = message.chars().chain(std::iter::once('/'));
        self.prefix
            .chars()
            .all(|p| hay.next().is_some_and(|h| eq_ignore_case(h, p)))
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// .NET's OrdinalIgnoreCase compares upper-cased characters.
fn eq_ignore_case(a: char, b: char) -> bool {
    a == b || a.to_uppercase().eq(b.to_uppercase())
}

/// A parsed WHERE clause.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    text: String,
    expr: Expr,
}

impl Condition {
    /// The condition as written between WHERE and INTO.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// True only when the condition is true; false and undefined (a missing property) don't route.
    pub fn evaluate(&self, props: &dyn MessageProperties) -> bool {
        matches!(eval(&self.expr, props), Val::Bool(true))
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// One route of `$edgeHub`'s desired properties.
/// The priority of a route that names none (every string route): edgeHub's
/// `RouteFactory.DefaultPriority`, below every explicit priority 0-9.
pub const DEFAULT_PRIORITY: u32 = 2_000_000_000;

#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub name: String,
    /// The route text as given.
    pub text: String,
    pub source: Source,
    pub condition: Option<Condition>,
    pub sink: Sink,
    /// 0 (highest) ..= 9 from the object form; [`DEFAULT_PRIORITY`] (the lowest) when not given.
    pub priority: u32,
    /// From the object form's `timeToLiveSecs`; None (also for 0) means the store-and-forward default.
    pub time_to_live_secs: Option<u64>,
}

impl Route {
    /// Whether a message from `source` with these properties takes this route.
    pub fn matches(&self, source: &str, props: &dyn MessageProperties) -> bool {
        self.source.matches(source)
            && self
                .condition
                .as_ref()
                .is_none_or(|condition| condition.evaluate(props))
    }
}

/// All routes of a deployment.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    pub fn new(routes: Vec<Route>) -> RouteTable {
        RouteTable { routes }
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The routes a message from `source` with these properties takes, in table order.
    pub fn matching<'a>(
        &'a self,
        source: &'a str,
        props: &'a dyn MessageProperties,
    ) -> impl Iterator<Item = &'a Route> + 'a {
        self.routes.iter().filter(move |r| r.matches(source, props))
    }
}
