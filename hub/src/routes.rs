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

use serde_json::Value;
use std::fmt;

/// Deepest nesting of NOT/parentheses/comparisons accepted, so no input can exhaust the stack.
const MAX_DEPTH: usize = 64;

/// edgeHub's built-in functions (`ConditionVisitor.Builtins`); only IS_DEFINED is supported here.
const BUILTINS: &[&str] = &[
    "abs",
    "exp",
    "power",
    "square",
    "ceiling",
    "floor",
    "sign",
    "sqrt",
    "as_number",
    "is_bool",
    "is_defined",
    "is_null",
    "is_number",
    "is_string",
    "concat",
    "length",
    "lower",
    "upper",
    "substring",
    "index_of",
    "starts_with",
    "ends_with",
    "contains",
    "twin_change_includes",
];

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
    pub fn new(path: &str) -> Source {
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
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub name: String,
    /// The route text as given.
    pub text: String,
    pub source: Source,
    pub condition: Option<Condition>,
    pub sink: Sink,
    /// 0 (highest) ..= 9 from the object form; 0 when not given.
    pub priority: u8,
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
    /// Reads `modulesContent.$edgeHub["properties.desired"].routes`: each entry a route string or
    /// `{"route": "...", "priority": 0-9, "timeToLiveSecs": n}`. Routes come in the order the JSON
    /// object holds them (sorted by name unless serde_json's `preserve_order` is enabled); order
    /// does not change routing, since every matching route delivers.
    pub fn from_manifest(manifest: &Value) -> Result<RouteTable, RouteError> {
        let mut desired = manifest;
        let mut path = String::new();
        for key in ["modulesContent", "$edgeHub", "properties.desired"] {
            path = match (path.is_empty(), key.contains('.')) {
                (true, _) => key.to_owned(),
                (false, true) => format!("{path}[\"{key}\"]"),
                (false, false) => format!("{path}.{key}"),
            };
            desired =
                desired
                    .get(key)
                    .filter(|v| v.is_object())
                    .ok_or_else(|| RouteError::NoRoutes {
                        missing: path.clone(),
                    })?;
        }
        let routes = desired
            .get("routes")
            .and_then(Value::as_object)
            .ok_or_else(|| RouteError::NoRoutes {
                missing: format!("{path}.routes object"),
            })?;
        // The object form arrived with schema 1.1; edgeHub reads 1.0 routes as strings only.
        let schema_1_0 = desired.get("schemaVersion").and_then(Value::as_str) == Some("1.0");

        let mut table = Vec::with_capacity(routes.len());
        for (name, spec) in routes {
            let spec_error = |problem: String| RouteError::Spec {
                name: name.clone(),
                problem,
            };
            if name.trim().is_empty() {
                return Err(spec_error("route names must not be empty".into()));
            }
            let (text, priority, ttl) = match spec {
                Value::String(text) => (text.as_str(), 0, None),
                Value::Object(fields) => {
                    if schema_1_0 {
                        return Err(spec_error(
                            "the object form needs $edgeHub schemaVersion 1.1 or later, this manifest says 1.0".into(),
                        ));
                    }
                    let text = fields
                        .get("route")
                        .and_then(Value::as_str)
                        .ok_or_else(|| spec_error("\"route\" is missing or not a string".into()))?;
                    let priority = parse_priority(fields.get("priority")).map_err(spec_error)?;
                    let ttl = parse_ttl(fields.get("timeToLiveSecs")).map_err(spec_error)?;
                    (text, priority, ttl)
                }
                other => {
                    return Err(spec_error(format!(
                        "{other} is neither a route string nor an object"
                    )))
                }
            };
            let mut route = Self::parse(name, text)?;
            route.priority = priority;
            route.time_to_live_secs = ttl;
            table.push(route);
        }
        Ok(RouteTable { routes: table })
    }

    /// Parses one route's text; priority 0 and no TTL (the manifest's object form sets those).
    pub fn parse(name: &str, text: &str) -> Result<Route, RouteError> {
        let parsed = Parser::new(name, text).route()?;
        if let Some(warning) = wildcard_warning(&parsed.items) {
            tracing::warn!(route = name, "{warning}");
        }
        Ok(Route {
            name: name.to_owned(),
            text: text.to_owned(),
            source: parsed.source,
            condition: parsed.condition,
            sink: parsed.sink,
            priority: 0,
            time_to_live_secs: None,
        })
    }

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

fn parse_priority(value: Option<&Value>) -> Result<u8, String> {
    let Some(value) = value else { return Ok(0) };
    value
        .as_u64()
        .filter(|p| *p <= 9)
        .and_then(|p| u8::try_from(p).ok())
        .ok_or_else(|| {
            format!("priority {value} is not supported (supported: 0-9, 0 is the highest)")
        })
}

fn parse_ttl(value: Option<&Value>) -> Result<Option<u64>, String> {
    let Some(value) = value else { return Ok(None) };
    // edgeHub reads a uint; 0 means "not set": the storeAndForwardConfiguration TTL applies.
    match value.as_u64().filter(|t| *t <= u64::from(u32::MAX)) {
        Some(0) => Ok(None),
        Some(t) => Ok(Some(t)),
        None => Err(format!(
            "timeToLiveSecs {value} is not supported (supported: whole seconds 0-4294967295, 0 = the store-and-forward default)"
        )),
    }
}

/// edgeHub treats `*` as a wildcard only by trimming it off the end of the path; say so when a
/// route looks like it expects more.
fn wildcard_warning(items: &[String]) -> Option<String> {
    let last = items.len().checked_sub(1)?;
    items.iter().enumerate().find_map(|(i, item)| {
        if !item.contains('*') || (i == last && item.trim_end_matches('*').is_empty()) {
            None
        } else if i == last && !item.trim_end_matches('*').contains('*') {
            Some(format!(
                "'{item}' is not a glob: edgeHub trims the trailing '*', so this route matches '{}' exactly",
                item.trim_end_matches('*')
            ))
        } else {
            Some(format!(
                "'{item}' is matched literally: edgeHub's only wildcard is a trailing '*'"
            ))
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Lexer: GrammarLexer.g4

/// Token kinds in GrammarLexer.g4's rule order: on equal length the earlier kind wins, as in ANTLR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    LBrace,
    RBrace,
    Select,
    From,
    Where,
    Into,
    Str,
    Unterminated,
    Int,
    Hex,
    Real,
    True,
    False,
    Null,
    Undefined,
    LParen,
    RParen,
    Comma,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    And,
    Or,
    Not,
    Eq,
    Ne,
    NeAlt,
    Le,
    Ge,
    Gt,
    Lt,
    Concat,
    Coalesce,
    SysProp,
    Id,
    QueryPath,
    Comment,
    Unknown,
    Eof,
}

#[derive(Debug, Clone, Copy)]
struct Token<'s> {
    kind: Kind,
    text: &'s str,
    /// Byte offset in the route text.
    start: usize,
}

impl Token<'_> {
    fn end(&self) -> usize {
        self.start + self.text.len()
    }
}

/// (keyword, kind, case-insensitive): SELECT/FROM/WHERE/INTO/AND/OR/NOT ignore case, literals don't.
const KEYWORDS: &[(&str, Kind, bool)] = &[
    ("select", Kind::Select, true),
    ("from", Kind::From, true),
    ("where", Kind::Where, true),
    ("into", Kind::Into, true),
    ("true", Kind::True, false),
    ("false", Kind::False, false),
    ("null", Kind::Null, false),
    ("undefined", Kind::Undefined, false),
    ("and", Kind::And, true),
    ("or", Kind::Or, true),
    ("not", Kind::Not, true),
];

/// ID_CHARS: anything but `()<>@,;:\"/[]?={}` and whitespace.
fn is_id_char(c: char) -> bool {
    !matches!(
        c,
        '(' | ')'
            | '<'
            | '>'
            | '@'
            | ','
            | ';'
            | ':'
            | '\\'
            | '"'
            | '/'
            | '['
            | ']'
            | '?'
            | '='
            | '{'
            | '}'
            | ' '
            | '\t'
            | '\n'
            | '\r'
    )
}

/// QUERY_PATH_CHARS: ID_CHARS plus `[` and `]`.
fn is_path_char(c: char) -> bool {
    c == '[' || c == ']' || is_id_char(c)
}

fn run_len(s: &str, accept: impl Fn(char) -> bool) -> usize {
    s.char_indices()
        .find(|&(_, c)| !accept(c))
        .map_or(s.len(), |(i, _)| i)
}

fn digits(b: &[u8], from: usize) -> usize {
    b.get(from..).map_or(0, |rest| {
        rest.iter().take_while(|c| c.is_ascii_digit()).count()
    })
}

fn exponent_len(b: &[u8], at: usize) -> usize {
    if !matches!(b.get(at), Some(b'e' | b'E')) {
        return 0;
    }
    let mut end = at + 1;
    if matches!(b.get(end), Some(b'+' | b'-')) {
        end += 1;
    }
    match digits(b, end) {
        0 => 0,
        d => end + d - at,
    }
}

/// INTEGER_LITERAL: `-?[0-9]+`.
fn integer_len(b: &[u8]) -> usize {
    let sign = usize::from(b.first() == Some(&b'-'));
    match digits(b, sign) {
        0 => 0,
        d => sign + d,
    }
}

/// HEX_INTEGER_LITERAL: `0[xX][0-9a-fA-F]+`.
fn hex_len(b: &[u8]) -> usize {
    if b.len() < 3 || b[0] != b'0' || !matches!(b[1], b'x' | b'X') {
        return 0;
    }
    match b[2..].iter().take_while(|c| c.is_ascii_hexdigit()).count() {
        0 => 0,
        h => 2 + h,
    }
}

/// REAL_LITERAL: `-?[0-9]* '.' [0-9]+ EXP?` or `-?[0-9]* EXP`.
fn real_len(b: &[u8]) -> usize {
    let sign = usize::from(b.first() == Some(&b'-'));
    let point = sign + digits(b, sign);
    let mut best = 0;
    if b.get(point) == Some(&b'.') {
        let fraction = digits(b, point + 1);
        if fraction > 0 {
            let end = point + 1 + fraction;
            best = end + exponent_len(b, end);
        }
    }
    match exponent_len(b, point) {
        0 => best,
        e => best.max(point + e),
    }
}

/// STRING / UNTERMINATED_STRING: length and whether the closing quote was found. Escapes are
/// `\"`, `\'`, `\\` and `\uXXXX`; any other backslash ends an unterminated string.
fn string_len(rest: &str, quote: u8) -> (usize, bool) {
    let b = rest.as_bytes();
    let mut i = 1;
    while let Some(&c) = b.get(i) {
        if c == quote {
            return (i + 1, true);
        }
        if c == b'\\' {
            match b.get(i + 1) {
                Some(b'"' | b'\'' | b'\\') => i += 2,
                Some(b'u')
                    if b.get(i + 2..i + 6)
                        .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) =>
                {
                    i += 6
                }
                _ => return (i, false),
            }
        } else {
            i += 1;
        }
    }
    (b.len(), false)
}

/// The longest token at `at` (ties to the earlier rule), as ANTLR's lexer picks it.
fn longest_match(text: &str, at: usize, comment_ends: &[usize]) -> (Kind, usize) {
    let rest = &text[at..];
    let b = rest.as_bytes();
    let first = rest.chars().next().unwrap_or(' ');
    let mut best = (Kind::Unknown, first.len_utf8());
    let mut offer = |kind: Kind, len: usize| {
        if len > best.1 || (len == best.1 && len > 0 && kind < best.0) {
            best = (kind, len);
        }
    };
    for &(word, kind, any_case) in KEYWORDS {
        if let Some(head) = rest.get(..word.len()) {
            if head == word || (any_case && head.eq_ignore_ascii_case(word)) {
                offer(kind, word.len());
            }
        }
    }
    match first {
        '{' => offer(Kind::LBrace, 1),
        '}' => offer(Kind::RBrace, 1),
        '\'' | '"' => {
            let (len, closed) = string_len(rest, first as u8);
            offer(
                if closed {
                    Kind::Str
                } else {
                    Kind::Unterminated
                },
                len,
            );
        }
        '(' => offer(Kind::LParen, 1),
        ')' => offer(Kind::RParen, 1),
        ',' => offer(Kind::Comma, 1),
        '+' => offer(Kind::Plus, 1),
        '-' => offer(Kind::Minus, 1),
        '*' => offer(Kind::Star, 1),
        '%' => offer(Kind::Percent, 1),
        '=' => offer(Kind::Eq, 1),
        '>' => offer(Kind::Gt, 1),
        '<' => offer(Kind::Lt, 1),
        '/' => {
            offer(Kind::Slash, 1);
            // COMMENT `/* ... */` is skipped like whitespace, but only if it is closed.
            if rest.starts_with("/*") {
                let i = comment_ends.partition_point(|&end| end < at + 2);
                if let Some(&end) = comment_ends.get(i) {
                    offer(Kind::Comment, end + 2 - at);
                }
            }
        }
        _ => {}
    }
    for (op, kind) in [
        ("!=", Kind::Ne),
        ("<>", Kind::NeAlt),
        ("<=", Kind::Le),
        (">=", Kind::Ge),
        ("||", Kind::Concat),
        ("??", Kind::Coalesce),
    ] {
        if rest.starts_with(op) {
            offer(kind, 2);
        }
    }
    offer(Kind::Int, integer_len(b));
    offer(Kind::Hex, hex_len(b));
    offer(Kind::Real, real_len(b));
    if first == '$' {
        let path = run_len(&rest[1..], is_path_char);
        if path > 0 {
            offer(Kind::SysProp, 1 + path);
        }
    }
    offer(Kind::Id, run_len(rest, is_id_char));
    offer(Kind::QueryPath, run_len(rest, is_path_char));
    best
}

fn lex(text: &str) -> Vec<Token<'_>> {
    let comment_ends: Vec<usize> = text.match_indices("*/").map(|(i, _)| i).collect();
    let mut tokens = Vec::new();
    let mut at = 0;
    while at < text.len() {
        if matches!(text.as_bytes()[at], b' ' | b'\t' | b'\r' | b'\n') {
            at += 1;
            continue;
        }
        let (kind, len) = longest_match(text, at, &comment_ends);
        // Every candidate length ends on a char boundary; fall back to one char regardless.
        let (kind, len) = match text.get(at..at + len) {
            Some(_) if len > 0 => (kind, len),
            _ => (
                Kind::Unknown,
                text[at..].chars().next().map_or(1, char::len_utf8),
            ),
        };
        if kind != Kind::Comment {
            tokens.push(Token {
                kind,
                text: &text[at..at + len],
                start: at,
            });
        }
        at += len;
    }
    tokens.push(Token {
        kind: Kind::Eof,
        text: "",
        start: text.len(),
    });
    tokens
}

// ---------------------------------------------------------------------------------------------
// WHERE expressions

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Bool(bool),
    Str(String),
    Num(f64),
    /// An application property by name.
    App(String),
    /// A system property as written (`$name`); `escaped` for `{$name}`.
    Sys {
        written: String,
        escaped: bool,
    },
    Not(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Eq(Box<Expr>, Box<Expr>),
    Ne(Box<Expr>, Box<Expr>),
    IsDefined(Box<Expr>),
}

/// edgeHub's static types for the supported subset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Str,
    Num,
    Bool,
}

impl Ty {
    fn describe(self) -> &'static str {
        match self {
            Ty::Str => "a string",
            Ty::Num => "a number",
            Ty::Bool => "a condition",
        }
    }
}

/// A value at evaluation time; `Undef` is edgeHub's `undefined` (and `Bool.Undefined`).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Val<'a> {
    Str(&'a str),
    Num(f64),
    Bool(bool),
    Undef,
}

fn eval<'a>(expr: &'a Expr, props: &'a dyn MessageProperties) -> Val<'a> {
    match expr {
        Expr::Bool(b) => Val::Bool(*b),
        Expr::Str(s) => Val::Str(s),
        Expr::Num(n) => Val::Num(*n),
        Expr::App(name) => props.application(name).map_or(Val::Undef, Val::Str),
        Expr::Sys { written, escaped } => {
            // edgeHub: an application property literally named `$x` wins over system property
            // `x`; the escaped form `{$x}` reads the system property only.
            let app = if *escaped {
                None
            } else {
                props.application(written)
            };
            app.or_else(|| props.system(written.get(1..).unwrap_or_default()))
                .map_or(Val::Undef, Val::Str)
        }
        Expr::Not(inner) => match eval(inner, props) {
            Val::Bool(b) => Val::Bool(!b),
            _ => Val::Undef,
        },
        // Kleene logic as in Query/Bool.cs: false AND undefined = false, true OR undefined = true.
        Expr::And(parts) => {
            let mut result = Val::Bool(true);
            for part in parts {
                match eval(part, props) {
                    Val::Bool(true) => {}
                    Val::Bool(false) => return Val::Bool(false),
                    _ => result = Val::Undef,
                }
            }
            result
        }
        Expr::Or(parts) => {
            let mut result = Val::Bool(false);
            for part in parts {
                match eval(part, props) {
                    Val::Bool(false) => {}
                    Val::Bool(true) => return Val::Bool(true),
                    _ => result = Val::Undef,
                }
            }
            result
        }
        Expr::Eq(l, r) => equal(eval(l, props), eval(r, props)).map_or(Val::Undef, Val::Bool),
        Expr::Ne(l, r) => {
            equal(eval(l, props), eval(r, props)).map_or(Val::Undef, |e| Val::Bool(!e))
        }
        Expr::IsDefined(inner) => Val::Bool(eval(inner, props) != Val::Undef),
    }
}

/// `ComparisonOperators.Compare`: ordinal for strings; anything undefined compares undefined.
fn equal(l: Val<'_>, r: Val<'_>) -> Option<bool> {
    match (l, r) {
        (Val::Str(a), Val::Str(b)) => Some(a == b),
        (Val::Num(a), Val::Num(b)) => Some(a == b),
        (Val::Bool(a), Val::Bool(b)) => Some(a == b),
        _ => None,
    }
}

/// `ConditionVisitor.Unescape`: first every `\uXXXX`, then `\"`, `\'`, `\\` (two passes, like
/// edgeHub's two regex replacements), in UTF-16 so surrogate pairs combine.
fn unescape(raw: &str) -> Option<String> {
    let units: Vec<u16> = raw.encode_utf16().collect();
    let hex = |u: u16| char::from_u32(u32::from(u)).and_then(|c| c.to_digit(16));
    let mut pass1 = Vec::with_capacity(units.len());
    let mut i = 0;
    while i < units.len() {
        let code = (units[i] == u16::from(b'\\')
            && matches!(units.get(i + 1), Some(&u) if u == u16::from(b'u') || u == u16::from(b'U')))
        .then(|| units.get(i + 2..i + 6))
        .flatten()
        .and_then(|h| {
            h.iter()
                .try_fold(0u16, |acc, &u| Some(acc * 16 + hex(u)? as u16))
        });
        match code {
            Some(unit) => {
                pass1.push(unit);
                i += 6;
            }
            None => {
                pass1.push(units[i]);
                i += 1;
            }
        }
    }
    let mut pass2 = Vec::with_capacity(pass1.len());
    let mut i = 0;
    while i < pass1.len() {
        let escapes = [u16::from(b'"'), u16::from(b'\''), u16::from(b'\\')];
        match pass1.get(i + 1) {
            Some(next) if pass1[i] == u16::from(b'\\') && escapes.contains(next) => {
                pass2.push(*next);
                i += 2;
            }
            _ => {
                pass2.push(pass1[i]);
                i += 1;
            }
        }
    }
    String::from_utf16(&pass2).ok()
}

// ---------------------------------------------------------------------------------------------
// Parser

struct Parsed {
    source: Source,
    items: Vec<String>,
    condition: Option<Condition>,
    sink: Sink,
}

/// A typed WHERE expression with its span in the route text.
struct Typed {
    expr: Expr,
    ty: Ty,
    start: usize,
    end: usize,
    depth: usize,
}

struct Parser<'s> {
    name: &'s str,
    text: &'s str,
    tokens: Vec<Token<'s>>,
    pos: usize,
    nesting: usize,
}

impl<'s> Parser<'s> {
    fn new(name: &'s str, text: &'s str) -> Self {
        Parser {
            name,
            text,
            tokens: lex(text),
            pos: 0,
            nesting: 0,
        }
    }

    fn peek_at(&self, ahead: usize) -> Token<'s> {
        let last = self.tokens.len().saturating_sub(1);
        self.tokens
            .get((self.pos + ahead).min(last))
            .copied()
            .unwrap_or(Token {
                kind: Kind::Eof,
                text: "",
                start: self.text.len(),
            })
    }

    fn peek(&self) -> Token<'s> {
        self.peek_at(0)
    }

    fn bump(&mut self) -> Token<'s> {
        let token = self.peek();
        if self.pos < self.tokens.len() {
            self.pos += 1;
        }
        token
    }

    fn column(&self, at: usize) -> usize {
        self.text.get(..at).map_or(0, |s| s.chars().count()) + 1
    }

    fn describe(&self, token: Token<'_>) -> String {
        if token.kind == Kind::Eof {
            return "the end of the route".into();
        }
        let hint = match token.kind {
            Kind::Select
            | Kind::From
            | Kind::Where
            | Kind::Into
            | Kind::And
            | Kind::Or
            | Kind::Not
            | Kind::True
            | Kind::False
            | Kind::Null
            | Kind::Undefined => " (a keyword in edgeHub's route grammar)",
            Kind::Int | Kind::Hex | Kind::Real => " (a number in edgeHub's route grammar)",
            Kind::Unknown => " (not a symbol edgeHub's route grammar accepts)",
            Kind::Unterminated => " (a string without its closing quote)",
            _ => "",
        };
        format!(
            "{} at column {}{hint}",
            quote(token.text),
            self.column(token.start)
        )
    }

    fn snippet(&self, start: usize, end: usize) -> String {
        quote(self.text.get(start..end).unwrap_or_default().trim())
    }

    fn syntax(&self, expected: impl Into<String>, found: Token<'_>) -> RouteError {
        RouteError::Syntax {
            name: self.name.to_owned(),
            expected: expected.into(),
            found: self.describe(found),
        }
    }

    fn unsupported(&self, what: impl Into<String>) -> RouteError {
        RouteError::Unsupported {
            name: self.name.to_owned(),
            what: what.into(),
        }
    }

    fn type_error(&self, problem: impl Into<String>) -> RouteError {
        RouteError::Type {
            name: self.name.to_owned(),
            problem: problem.into(),
        }
    }

    fn expect(&mut self, kind: Kind, expected: &str) -> Result<Token<'s>, RouteError> {
        if self.peek().kind == kind {
            Ok(self.bump())
        } else {
            Err(self.syntax(expected, self.peek()))
        }
    }

    fn route(mut self) -> Result<Parsed, RouteError> {
        if self.peek().kind == Kind::Eof {
            return Err(self.syntax(
                "FROM <source> INTO <sink> (the route is empty)",
                self.peek(),
            ));
        }
        if self.peek().kind == Kind::Select {
            self.bump();
            self.expect(Kind::Star, "'*' after SELECT (edgeHub only has SELECT *)")?;
        }
        self.expect(Kind::From, "FROM")?;
        let (source, items) = self.source()?;
        let condition = if self.peek().kind == Kind::Where {
            self.bump();
            Some(self.condition()?)
        } else {
            None
        };
        if self.peek().kind != Kind::Into {
            let expected = if condition.is_some() {
                "AND, OR or INTO after the condition"
            } else {
                "'/', WHERE or INTO after the source"
            };
            return Err(self.syntax(expected, self.peek()));
        }
        self.bump();
        let sink = self.sink()?;
        if self.peek().kind != Kind::Eof {
            // edgeHub's parser stops after the sink and drops the rest unread; refuse instead.
            return Err(self.syntax(
                "the end of the route after the sink (edgeHub would silently ignore the rest)",
                self.peek(),
            ));
        }
        Ok(Parsed {
            source,
            items,
            condition,
            sink,
        })
    }

    /// `'/' item ('/' item)*`, item `*` or a name; the text is the tokens joined, as edgeHub's
    /// `GetText()` yields it.
    fn source(&mut self) -> Result<(Source, Vec<String>), RouteError> {
        self.expect(
            Kind::Slash,
            "a source path starting with '/' after FROM (e.g. /messages/modules/<module>/outputs/<output>)",
        )?;
        let mut text = String::new();
        let mut items = Vec::new();
        loop {
            let item = self.peek();
            if !matches!(item.kind, Kind::Star | Kind::Id) {
                return Err(self.syntax("a source path item ('*' or a name) after '/'", item));
            }
            self.bump();
            text.push('/');
            text.push_str(item.text);
            items.push(item.text.to_owned());
            if self.peek().kind != Kind::Slash {
                return Ok((Source::new(&text), items));
            }
            self.bump();
        }
    }

    fn condition(&mut self) -> Result<Condition, RouteError> {
        if matches!(self.peek().kind, Kind::Into | Kind::Eof) {
            return Err(self.syntax("a condition after WHERE", self.peek()));
        }
        let typed = self.or()?;
        if typed.ty != Ty::Bool {
            // edgeHub compiles this and then never routes (a non-boolean is undefined).
            let raw = self.text.get(typed.start..typed.end).unwrap_or_default();
            return Err(self.type_error(format!(
                "the condition {} is {}, so edgeHub would never route with it (compare it, e.g. {raw} = 'value', or use IS_DEFINED({raw}))",
                quote(raw),
                typed.ty.describe()
            )));
        }
        Ok(Condition {
            text: self
                .text
                .get(typed.start..typed.end)
                .unwrap_or_default()
                .to_owned(),
            expr: typed.expr,
        })
    }

    fn node(
        &self,
        expr: Expr,
        start: usize,
        end: usize,
        depth: usize,
    ) -> Result<Typed, RouteError> {
        if depth > MAX_DEPTH {
            return Err(self.unsupported(format!("nesting deeper than {MAX_DEPTH} levels")));
        }
        Ok(Typed {
            expr,
            ty: Ty::Bool,
            start,
            end,
            depth,
        })
    }

    fn need_condition(&self, typed: &Typed, op: &str) -> Result<(), RouteError> {
        if typed.ty == Ty::Bool {
            return Ok(());
        }
        Err(self.type_error(format!(
            "{op} needs a condition on each side, but {} is {}",
            self.snippet(typed.start, typed.end),
            typed.ty.describe()
        )))
    }

    /// `a OR b OR ...` (lowest precedence), flattened so long chains don't nest.
    fn or(&mut self) -> Result<Typed, RouteError> {
        self.chain(Kind::Or)
    }

    fn and(&mut self) -> Result<Typed, RouteError> {
        self.chain(Kind::And)
    }

    fn chain(&mut self, op: Kind) -> Result<Typed, RouteError> {
        let operand = |p: &mut Self| {
            if op == Kind::Or {
                p.and()
            } else {
                p.equality()
            }
        };
        let first = operand(self)?;
        if self.peek().kind != op {
            return Ok(first);
        }
        let op_name = if op == Kind::Or { "OR" } else { "AND" };
        self.need_condition(&first, op_name)?;
        let (start, mut end, mut depth) = (first.start, first.end, first.depth);
        let mut parts = vec![first.expr];
        while self.peek().kind == op {
            self.bump();
            let next = operand(self)?;
            self.need_condition(&next, op_name)?;
            end = next.end;
            depth = depth.max(next.depth);
            parts.push(next.expr);
        }
        let expr = if op == Kind::Or {
            Expr::Or(parts)
        } else {
            Expr::And(parts)
        };
        self.node(expr, start, end, depth + 1)
    }

    /// `=`, `!=`, `<>`: both sides of one type, as edgeHub's compiler demands.
    fn equality(&mut self) -> Result<Typed, RouteError> {
        let mut left = self.operand()?;
        loop {
            let negate = match self.peek().kind {
                Kind::Eq => false,
                Kind::Ne | Kind::NeAlt => true,
                _ => return Ok(left),
            };
            let op = self.bump();
            let right = self.operand()?;
            if left.ty != right.ty {
                let l = self.text.get(left.start..left.end).unwrap_or_default();
                let r = self.text.get(right.start..right.end).unwrap_or_default();
                let op = op.text;
                let hint = match (left.ty, right.ty) {
                    (Ty::Str, Ty::Num | Ty::Bool) => {
                        format!("; properties are strings, so quote the literal: {l} {op} '{r}'")
                    }
                    (Ty::Num | Ty::Bool, Ty::Str) => {
                        format!("; properties are strings, so quote the literal: '{l}' {op} {r}")
                    }
                    _ => String::new(),
                };
                return Err(self.type_error(format!(
                    "{} compares {} with {}, which edgeHub refuses{hint}",
                    self.snippet(left.start, right.end),
                    left.ty.describe(),
                    right.ty.describe()
                )));
            }
            let depth = left.depth.max(right.depth) + 1;
            let (start, end) = (left.start, right.end);
            let (l, r) = (Box::new(left.expr), Box::new(right.expr));
            let expr = if negate {
                Expr::Ne(l, r)
            } else {
                Expr::Eq(l, r)
            };
            left = self.node(expr, start, end, depth)?;
        }
    }

    /// A unary expression that no unsupported binary operator follows.
    fn operand(&mut self) -> Result<Typed, RouteError> {
        let typed = self.unary()?;
        let next = self.peek();
        if matches!(
            next.kind,
            Kind::Lt
                | Kind::Le
                | Kind::Gt
                | Kind::Ge
                | Kind::Plus
                | Kind::Minus
                | Kind::Star
                | Kind::Slash
                | Kind::Percent
                | Kind::Concat
                | Kind::Coalesce
        ) {
            return Err(self.unsupported(format!(
                "operator {} at column {}",
                next.text,
                self.column(next.start)
            )));
        }
        Ok(typed)
    }

    fn unary(&mut self) -> Result<Typed, RouteError> {
        self.nesting += 1;
        let result = if self.nesting > MAX_DEPTH {
            Err(self.unsupported(format!("nesting deeper than {MAX_DEPTH} levels")))
        } else {
            self.unary_inner()
        };
        self.nesting -= 1;
        result
    }

    fn unary_inner(&mut self) -> Result<Typed, RouteError> {
        let token = self.peek();
        match token.kind {
            // edgeHub's NOT binds tighter than any binary operator: NOT a = 'x' is (NOT a) = 'x'.
            Kind::Not => {
                self.bump();
                let inner = self.unary()?;
                if inner.ty != Ty::Bool {
                    let written = self.snippet(inner.start, inner.end);
                    return Err(self.type_error(format!(
                        "NOT needs a condition, but {written} is {}; NOT binds tighter than = in edgeHub, so write NOT ({} = ...)",
                        inner.ty.describe(),
                        self.text.get(inner.start..inner.end).unwrap_or_default()
                    )));
                }
                let (end, depth) = (inner.end, inner.depth + 1);
                self.node(Expr::Not(Box::new(inner.expr)), token.start, end, depth)
            }
            Kind::Minus => Err(self.unsupported(format!(
                "unary minus at column {} (write negative numbers as literals, e.g. -5)",
                self.column(token.start)
            ))),
            _ => self.primary(),
        }
    }

    fn primary(&mut self) -> Result<Typed, RouteError> {
        let token = self.peek();
        let leaf = |expr: Expr, ty: Ty| Typed {
            expr,
            ty,
            start: token.start,
            end: token.end(),
            depth: 1,
        };
        match token.kind {
            Kind::LParen => {
                self.bump();
                let inner = self.or()?;
                let expected = format!(
                    "')' to close the '(' at column {}",
                    self.column(token.start)
                );
                let close = self.expect(Kind::RParen, &expected)?;
                Ok(Typed {
                    start: token.start,
                    end: close.end(),
                    ..inner
                })
            }
            Kind::Str => {
                self.bump();
                let inner = token
                    .text
                    .get(1..token.text.len().saturating_sub(1))
                    .unwrap_or_default();
                match unescape(inner) {
                    Some(s) => Ok(leaf(Expr::Str(s), Ty::Str)),
                    None => Err(self.syntax(
                        "a string whose \\u escapes form valid characters",
                        token,
                    )),
                }
            }
            Kind::Int | Kind::Real => {
                self.bump();
                match token.text.parse::<f64>() {
                    Ok(n) => Ok(leaf(Expr::Num(n), Ty::Num)),
                    Err(_) => Err(self.syntax("a number", token)),
                }
            }
            Kind::Hex => {
                self.bump();
                // C#'s long.TryParse(HexNumber): up to 16 digits, two's complement.
                match u64::from_str_radix(token.text.get(2..).unwrap_or_default(), 16) {
                    Ok(n) => Ok(leaf(Expr::Num(n as i64 as f64), Ty::Num)),
                    Err(_) => Err(self.unsupported(format!(
                        "hex literal {} (more than 64 bits)",
                        token.text
                    ))),
                }
            }
            Kind::True | Kind::False => {
                self.bump();
                Ok(leaf(Expr::Bool(token.kind == Kind::True), Ty::Bool))
            }
            Kind::Null | Kind::Undefined => Err(self.unsupported(format!("literal {}", token.text))),
            Kind::SysProp => {
                self.bump();
                self.system_property(token)?;
                Ok(leaf(
                    Expr::Sys {
                        written: token.text.to_owned(),
                        escaped: false,
                    },
                    Ty::Str,
                ))
            }
            Kind::LBrace => {
                self.bump();
                let inner = self.expect(
                    Kind::SysProp,
                    "a $system property inside '{ }' (e.g. {$connectionModuleId})",
                )?;
                self.system_property(inner)?;
                let close = self.expect(Kind::RBrace, "'}' after the escaped $system property")?;
                Ok(Typed {
                    end: close.end(),
                    ..leaf(
                        Expr::Sys {
                            written: inner.text.to_owned(),
                            escaped: true,
                        },
                        Ty::Str,
                    )
                })
            }
            Kind::Id if self.peek_at(1).kind == Kind::LParen => self.function(token),
            Kind::Id => {
                self.bump();
                if token.text.ends_with('!') && self.peek().kind == Kind::Eq {
                    return Err(self.syntax(
                        format!(
                            "a space before '!=' (edgeHub's lexer reads {} as a property name followed by '=')",
                            quote(token.text)
                        ),
                        token,
                    ));
                }
                Ok(leaf(Expr::App(token.text.to_owned()), Ty::Str))
            }
            Kind::QueryPath => Err(self.unsupported(format!(
                "{} ('[ ]' paths are body queries)",
                token.text
            ))),
            Kind::Unterminated => Err(self.syntax(
                "a string closed by its quote (escapes: \\' \\\" \\\\ \\uXXXX)",
                token,
            )),
            _ => Err(self.syntax(
                "an operand: a property, a $system property, a 'string', a number, true, false, IS_DEFINED(...), NOT or '('",
                token,
            )),
        }
    }

    /// Refuses body queries (`$body.x`, `$body[...]`) and other `[ ]` paths.
    fn system_property(&self, token: Token<'_>) -> Result<(), RouteError> {
        let lower = token.text.to_ascii_lowercase();
        if lower == "$body" || lower.starts_with("$body.") || lower.starts_with("$body[") {
            return Err(self.unsupported(format!(
                "body query {} (the local hub routes on properties only)",
                token.text
            )));
        }
        if token.text.contains(['[', ']']) {
            return Err(self.unsupported(format!("{} ('[ ]' paths are body queries)", token.text)));
        }
        Ok(())
    }

    /// `name(...)`: IS_DEFINED with one argument; any other function is refused.
    fn function(&mut self, name: Token<'s>) -> Result<Typed, RouteError> {
        if !name.text.eq_ignore_ascii_case("is_defined") {
            let known = BUILTINS.iter().any(|b| name.text.eq_ignore_ascii_case(b));
            return Err(self.unsupported(if known {
                format!("function {}", name.text)
            } else {
                format!("function {} (not an edgeHub built-in either)", name.text)
            }));
        }
        self.bump();
        self.bump();
        if self.peek().kind == Kind::RParen {
            return Err(self.syntax("one argument to IS_DEFINED", self.peek()));
        }
        let arg = self.or()?;
        let expected = match self.peek().kind {
            Kind::Comma => "')': IS_DEFINED takes exactly one argument".to_owned(),
            _ => format!(
                "')' to close IS_DEFINED( at column {}",
                self.column(name.start)
            ),
        };
        let close = self.expect(Kind::RParen, &expected)?;
        let depth = arg.depth + 1;
        self.node(
            Expr::IsDefined(Box::new(arg.expr)),
            name.start,
            close.end(),
            depth,
        )
    }

    fn sink(&mut self) -> Result<Sink, RouteError> {
        let token = self.peek();
        let (name, text) = (self.name, self.text);
        let written = text.get(token.start..).unwrap_or_default().trim();
        let refuse = |problem: String| RouteError::Sink {
            name: name.to_owned(),
            sink: quote(written),
            problem,
        };
        match token.kind {
            Kind::SysProp => {
                self.bump();
                if token.text.eq_ignore_ascii_case("$upstream") {
                    Ok(Sink::Upstream)
                } else {
                    Err(refuse(format!(
                        "{} is not a system endpoint (the only one is $upstream)",
                        token.text
                    )))
                }
            }
            Kind::Id if self.peek_at(1).kind == Kind::LParen => {
                if !token.text.eq_ignore_ascii_case("BrokeredEndpoint") {
                    return Err(refuse(format!(
                        "{} is not a function endpoint (the only one is BrokeredEndpoint)",
                        token.text
                    )));
                }
                let address = self.peek_at(2);
                if address.kind != Kind::Str {
                    return Err(refuse(
                        "BrokeredEndpoint takes one quoted address".to_owned(),
                    ));
                }
                self.bump();
                self.bump();
                self.bump();
                self.expect(Kind::RParen, "')' after the BrokeredEndpoint address")?;
                // edgeHub passes the text between the quotes on without unescaping it.
                let inner = address
                    .text
                    .get(1..address.text.len().saturating_sub(1))
                    .unwrap_or_default();
                brokered_endpoint(inner).ok_or_else(|| {
                    refuse(format!(
                        "the address {} is not /modules/<module>/inputs/<input>",
                        quote(inner)
                    ))
                })
            }
            Kind::Eof => Err(self.syntax("a sink after INTO", token)),
            _ => Err(refuse("it is not a sink".to_owned())),
        }
    }
}

/// `EndpointFactory.CreateFunctionEndpoint`: trim, drop one leading and one trailing `/`, split
/// into four parts. edgeHub ignores the words of parts 0 and 2; they must be modules/inputs here.
fn brokered_endpoint(address: &str) -> Option<Sink> {
    let trimmed = address.trim();
    let trimmed = trimmed.strip_prefix('/').unwrap_or(trimmed);
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    let valid = |id: &str| !id.is_empty() && !id.contains(char::is_whitespace);
    match trimmed.split('/').collect::<Vec<_>>().as_slice() {
        [modules, module, inputs, input]
            if modules.eq_ignore_ascii_case("modules")
                && inputs.eq_ignore_ascii_case("inputs")
                && valid(module)
                && valid(input) =>
        {
            Some(Sink::Module {
                module: (*module).to_owned(),
                input: (*input).to_owned(),
            })
        }
        _ => None,
    }
}

/// Quotes route text for a message, shortened so one bad route can't flood the log.
fn quote(s: &str) -> String {
    const MAX: usize = 60;
    match s.char_indices().nth(MAX) {
        Some((cut, _)) => format!("'{}…'", &s[..cut]),
        None => format!("'{s}'"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashMap;

    #[derive(Default)]
    struct Props {
        system: HashMap<String, String>,
        app: HashMap<String, String>,
    }

    impl Props {
        fn new(system: &[(&str, &str)], app: &[(&str, &str)]) -> Props {
            let map = |pairs: &[(&str, &str)]| {
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect()
            };
            Props {
                system: map(system),
                app: map(app),
            }
        }
    }

    impl MessageProperties for Props {
        fn system(&self, name: &str) -> Option<&str> {
            self.system.get(name).map(String::as_str)
        }
        fn application(&self, name: &str) -> Option<&str> {
            self.app.get(name).map(String::as_str)
        }
    }

    const CONSUMER_OUT: &str = "/messages/modules/consumer/outputs/GetTimeMessage";
    const PRODUCER_OUT: &str = "/messages/modules/producer/outputs/GetTimeMessage";

    fn route(text: &str) -> Route {
        match RouteTable::parse("R1", text) {
            Ok(r) => r,
            Err(e) => panic!("{text:?} should parse: {e}"),
        }
    }

    fn refused(text: &str) -> String {
        match RouteTable::parse("R1", text) {
            Ok(r) => panic!("{text:?} should be refused, got {r:?}"),
            Err(e) => {
                let message = e.to_string();
                assert!(message.contains("route \"R1\""), "{message}");
                message
            }
        }
    }

    fn assert_refused(text: &str, parts: &[&str]) {
        let message = refused(text);
        for part in parts {
            assert!(
                message.contains(part),
                "{text:?}: {message:?} lacks {part:?}"
            );
        }
    }

    /// Evaluates `WHERE cond` on a consumer output message.
    fn when(cond: &str, props: &Props) -> bool {
        route(&format!("FROM /messages/* WHERE {cond} INTO $upstream")).matches(CONSUMER_OUT, props)
    }

    #[test]
    fn seed_routes_connect_consumer_and_producer() {
        let none = Props::default();
        let c2p = route("FROM /messages/modules/consumer/outputs/GetTimeMessage INTO BrokeredEndpoint(\"/modules/producer/inputs/GetTimeMessage\")");
        let p2c = route("FROM /messages/modules/producer/outputs/GetTimeMessage INTO BrokeredEndpoint(\"/modules/consumer/inputs/GetTimeMessage\")");
        assert_eq!(
            c2p.sink,
            Sink::Module {
                module: "producer".into(),
                input: "GetTimeMessage".into()
            }
        );
        assert_eq!(
            p2c.sink,
            Sink::Module {
                module: "consumer".into(),
                input: "GetTimeMessage".into()
            }
        );
        assert!(c2p.matches(CONSUMER_OUT, &none));
        assert!(!c2p.matches(PRODUCER_OUT, &none));
        assert!(p2c.matches(PRODUCER_OUT, &none));
        assert!(!p2c.matches(CONSUMER_OUT, &none));
        assert_eq!(
            c2p.source.as_str(),
            "/messages/modules/consumer/outputs/GetTimeMessage"
        );
        assert_eq!(c2p.condition, None);
        assert_eq!((c2p.priority, c2p.time_to_live_secs), (0, None));
        assert_eq!(
            c2p.sink.to_string(),
            "BrokeredEndpoint(\"/modules/producer/inputs/GetTimeMessage\")"
        );

        let table = RouteTable::new(vec![c2p, p2c]);
        let hits: Vec<&str> = table
            .matching(CONSUMER_OUT, &none)
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(hits, ["R1"]);
        assert_eq!(
            table
                .matching("/messages/modules/other/outputs/x", &none)
                .count(),
            0
        );
    }

    #[test]
    fn wildcard_sources_follow_edgehub_prefix_semantics() {
        let cases = [
            ("/*", CONSUMER_OUT, true),
            ("/*", "/messages", true),
            ("/*", "/twinChangeNotifications", true),
            ("/messages/*", CONSUMER_OUT, true),
            ("/messages/*", "/messages/modules/consumer", true),
            ("/messages/*", "/messages", true),
            ("/messages/*", "/twinChangeNotifications", false),
            ("/messages/modules/consumer/*", CONSUMER_OUT, true),
            (
                "/messages/modules/consumer/*",
                "/messages/modules/consumer",
                true,
            ),
            ("/messages/modules/consumer/*", PRODUCER_OUT, false),
            (
                "/messages/modules/consumer/*",
                "/messages/modules/consumerX/outputs/a",
                false,
            ),
            ("/messages/modules/consumer/outputs/*", CONSUMER_OUT, true),
            (
                "/messages/modules/consumer/outputs/*",
                "/messages/modules/consumer",
                false,
            ),
            ("/messages/modules/consumer/outputs/*", PRODUCER_OUT, false),
            ("/messages/modules/consumer", CONSUMER_OUT, true),
        ];
        for (source, message, expected) in cases {
            let r = route(&format!("FROM {source} INTO $upstream"));
            assert_eq!(
                r.matches(message, &Props::default()),
                expected,
                "FROM {source} vs {message}"
            );
        }
    }

    #[test]
    fn exact_output_matches_on_segment_boundaries_only() {
        let none = Props::default();
        let get = route("FROM /messages/modules/consumer/outputs/Get INTO $upstream");
        assert!(!get.matches(CONSUMER_OUT, &none));
        assert!(get.matches("/messages/modules/consumer/outputs/Get", &none));
        assert!(get.matches("/messages/modules/consumer/outputs/Get/", &none));
        let exact = route(&format!("FROM {CONSUMER_OUT} INTO $upstream"));
        assert!(exact.matches(CONSUMER_OUT, &none));
        assert!(!exact.matches(&format!("{CONSUMER_OUT}2"), &none));
        assert!(!exact.matches("/messages/modules/consumer/outputs/GetTime", &none));
        // edgeHub trims the trailing '*' of `Get*`: no glob, exactly output Get.
        let star = route("FROM /messages/modules/consumer/outputs/Get* INTO $upstream");
        assert!(!star.matches(CONSUMER_OUT, &none));
        assert!(star.matches("/messages/modules/consumer/outputs/Get", &none));
    }

    #[test]
    fn keywords_sources_and_sinks_ignore_case() {
        let none = Props::default();
        let r = route("select * from /MESSAGES/Modules/CONSUMER/* where $connectionModuleId = 'consumer' into brokeredendpoint(\"/modules/producer/inputs/in\")");
        let props = Props::new(&[("connectionModuleId", "consumer")], &[]);
        assert!(r.matches(CONSUMER_OUT, &props));
        assert!(r.matches("/messages/modules/consumer/outputs/getTIMEmessage", &props));
        assert_eq!(
            route("FROM /messages/* INTO $UPSTREAM").sink,
            Sink::Upstream
        );
        assert!(route("From /messages/* Into $Upstream").matches(CONSUMER_OUT, &none));
        assert!(
            route("SeLeCt * FrOm /* InTo BROKEREDENDPOINT('/Modules/p/Inputs/i')")
                .matches(CONSUMER_OUT, &none)
        );
        // String comparisons stay ordinal (case-sensitive), as in edgeHub.
        let props = Props::new(&[("connectionModuleId", "Consumer")], &[]);
        assert!(!r.matches(CONSUMER_OUT, &props));
    }

    #[test]
    fn whitespace_and_comments_are_flexible() {
        let none = Props::default();
        let r = route("\n\tFROM  / messages /modules/ consumer /*anything*/ /*\r\n  INTO\tBrokeredEndpoint ( \"/modules/p/inputs/i\" )  ");
        assert_eq!(r.source.as_str(), "/messages/modules/consumer/*");
        assert!(r.matches(CONSUMER_OUT, &none));
        assert_eq!(
            r.sink,
            Sink::Module {
                module: "p".into(),
                input: "i".into()
            }
        );
        // The address's own slashes are optional, as in EndpointFactory.
        assert_eq!(
            route("FROM /* INTO BrokeredEndpoint(\" modules/p/inputs/i/ \")").sink,
            Sink::Module {
                module: "p".into(),
                input: "i".into()
            }
        );
    }

    #[test]
    fn upstream_sink() {
        let r = route("FROM /messages/modules/consumer/* INTO $upstream");
        assert_eq!(r.sink, Sink::Upstream);
        assert_eq!(r.sink.to_string(), "$upstream");
        assert!(r.matches(CONSUMER_OUT, &Props::default()));
    }

    fn manifest(routes: Value) -> Value {
        json!({"modulesContent": {
            "$edgeAgent": {"properties.desired": {"modules": {}}},
            "$edgeHub": {"properties.desired": {"schemaVersion": "1.1", "routes": routes}}
        }})
    }

    #[test]
    fn manifest_string_and_object_forms() {
        let m = manifest(json!({
            "ConsumerToProducer": "FROM /messages/modules/consumer/outputs/GetTimeMessage INTO BrokeredEndpoint(\"/modules/producer/inputs/GetTimeMessage\")",
            "ProducerToConsumer": {"route": "FROM /messages/modules/producer/outputs/GetTimeMessage INTO BrokeredEndpoint(\"/modules/consumer/inputs/GetTimeMessage\")", "priority": 3, "timeToLiveSecs": 60},
            "Up": {"route": "FROM /messages/* WHERE IS_DEFINED($connectionModuleId) INTO $upstream", "timeToLiveSecs": 0},
            "Low": {"route": "FROM /* INTO $upstream", "priority": 9, "extra": "ignored"}
        }));
        let table = match RouteTable::from_manifest(&m) {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        };
        let by_name: HashMap<&str, &Route> = table
            .routes()
            .iter()
            .map(|r| (r.name.as_str(), r))
            .collect();
        assert_eq!(by_name.len(), 4);
        let c2p = by_name["ConsumerToProducer"];
        assert_eq!((c2p.priority, c2p.time_to_live_secs), (0, None));
        let p2c = by_name["ProducerToConsumer"];
        assert_eq!((p2c.priority, p2c.time_to_live_secs), (3, Some(60)));
        assert!(p2c.text.starts_with("FROM /messages/modules/producer"));
        let up = by_name["Up"];
        assert_eq!((up.priority, up.time_to_live_secs), (0, None));
        assert_eq!(
            up.condition.as_ref().map(Condition::text),
            Some("IS_DEFINED($connectionModuleId)")
        );
        assert_eq!(by_name["Low"].priority, 9);
        let props = Props::new(&[("connectionModuleId", "consumer")], &[]);
        assert_eq!(table.matching(CONSUMER_OUT, &props).count(), 3);

        // The seed's own deployment.json: schema 1.0, routes as strings.
        let seed = json!({"modulesContent": {"$edgeHub": {"properties.desired": {
            "schemaVersion": "1.0",
            "routes": {
                "ConsumerToProducer": "FROM /messages/modules/consumer/outputs/GetTimeMessage INTO BrokeredEndpoint(\"/modules/producer/inputs/GetTimeMessage\")",
                "ProducerToConsumer": "FROM /messages/modules/producer/outputs/GetTimeMessage INTO BrokeredEndpoint(\"/modules/consumer/inputs/GetTimeMessage\")"
            },
            "storeAndForwardConfiguration": {"timeToLiveSecs": 7200}}}}});
        assert!(RouteTable::from_manifest(&seed).is_ok_and(|t| t.routes().len() == 2));
        // No routes at all is valid: edgeHub then drops every message.
        assert!(
            RouteTable::from_manifest(&manifest(json!({}))).is_ok_and(|t| t.routes().is_empty())
        );
    }

    #[test]
    fn manifest_refusals_name_what_is_missing() {
        let no_hub = json!({"modulesContent": {"$edgeAgent": {}}});
        let message = RouteTable::from_manifest(&no_hub)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(message.contains("modulesContent.$edgeHub"), "{message}");
        let no_routes = json!({"modulesContent": {"$edgeHub": {"properties.desired": {"schemaVersion": "1.1"}}}});
        let message = RouteTable::from_manifest(&no_routes)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("[\"properties.desired\"].routes"),
            "{message}"
        );
        for bad in [
            json!(null),
            json!({"modulesContent": 3}),
            json!({"modulesContent": {"$edgeHub": {"properties.desired": {"routes": ["x"]}}}}),
        ] {
            assert!(matches!(
                RouteTable::from_manifest(&bad),
                Err(RouteError::NoRoutes { .. })
            ));
        }

        let cases = [
            (
                json!({"R1": {"route": "FROM /* INTO $upstream", "priority": 10}}),
                "priority 10",
            ),
            (
                json!({"R1": {"route": "FROM /* INTO $upstream", "priority": "1"}}),
                "priority \"1\"",
            ),
            (
                json!({"R1": {"route": "FROM /* INTO $upstream", "priority": -1}}),
                "priority -1",
            ),
            (
                json!({"R1": {"route": "FROM /* INTO $upstream", "timeToLiveSecs": -5}}),
                "timeToLiveSecs -5",
            ),
            (
                json!({"R1": {"route": "FROM /* INTO $upstream", "timeToLiveSecs": 1.5}}),
                "timeToLiveSecs 1.5",
            ),
            (
                json!({"R1": {"route": "FROM /* INTO $upstream", "timeToLiveSecs": 4_294_967_296u64}}),
                "timeToLiveSecs",
            ),
            (json!({"R1": {"priority": 1}}), "\"route\" is missing"),
            (json!({"R1": {"route": 5}}), "\"route\" is missing"),
            (json!({"R1": 42}), "42 is neither"),
            (json!({"R1": null}), "null is neither"),
            (json!({"R1": ""}), "the route is empty"),
            (json!({"R1": "   "}), "the route is empty"),
            (json!({"R1": "FROM /* INTO Nowhere(\"x\")"}), "Nowhere"),
        ];
        for (routes, part) in cases {
            let message = match RouteTable::from_manifest(&manifest(routes.clone())) {
                Ok(_) => panic!("{routes} should be refused"),
                Err(e) => e.to_string(),
            };
            assert!(message.contains("route \"R1\""), "{message}");
            assert!(message.contains(part), "{message:?} lacks {part:?}");
        }
        let message = RouteTable::from_manifest(&manifest(json!({" ": "FROM /* INTO $upstream"})))
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(message.contains("names must not be empty"), "{message}");

        let old = json!({"modulesContent": {"$edgeHub": {"properties.desired": {"schemaVersion": "1.0",
            "routes": {"R1": {"route": "FROM /* INTO $upstream"}}}}}});
        let message = RouteTable::from_manifest(&old)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("route \"R1\"") && message.contains("schemaVersion 1.1"),
            "{message}"
        );
    }

    #[test]
    fn where_on_application_and_system_properties() {
        let r = route("FROM /messages/* WHERE $connectionModuleId = 'consumer' AND kind = 'time' INTO BrokeredEndpoint(\"/modules/producer/inputs/in\")");
        let good = Props::new(&[("connectionModuleId", "consumer")], &[("kind", "time")]);
        let other_module = Props::new(&[("connectionModuleId", "producer")], &[("kind", "time")]);
        let other_kind = Props::new(&[("connectionModuleId", "consumer")], &[("kind", "date")]);
        assert!(r.matches(CONSUMER_OUT, &good));
        assert!(!r.matches(CONSUMER_OUT, &other_module));
        assert!(!r.matches(CONSUMER_OUT, &other_kind));
        assert!(!r.matches("/twinChangeNotifications", &good));
        assert_eq!(
            r.condition.as_ref().map(Condition::text),
            Some("$connectionModuleId = 'consumer' AND kind = 'time'")
        );

        let sys = Props::new(
            &[
                ("connectionDeviceId", "dev1"),
                ("messageId", "m1"),
                ("correlationId", "c1"),
                ("contentType", "application/json"),
                ("contentEncoding", "utf-8"),
                ("outputName", "GetTimeMessage"),
            ],
            &[("my-prop.v2", "x y")],
        );
        for cond in [
            "$connectionDeviceId = 'dev1'",
            "$messageId <> 'm2'",
            "$correlationId != 'c2'",
            "$contentType = 'application/json'",
            "{$contentEncoding} = 'utf-8'",
            "$outputName = 'GetTimeMessage'",
            "my-prop.v2 = 'x y'",
            "'dev1' = $connectionDeviceId",
            "\"dev1\" = $connectionDeviceId",
            "$connectionDeviceId = $connectionDeviceId",
        ] {
            assert!(when(cond, &sys), "{cond}");
        }
    }

    #[test]
    fn dollar_names_prefer_an_application_property_unless_escaped() {
        let props = Props::new(&[("thing", "system")], &[("$thing", "app")]);
        assert!(when("$thing = 'app'", &props));
        assert!(when("{$thing} = 'system'", &props));
        let props = Props::new(&[("thing", "system")], &[]);
        assert!(when("$thing = 'system'", &props));
    }

    #[test]
    fn boolean_operators_and_precedence() {
        let p = |app: &[(&str, &str)]| Props::new(&[("connectionModuleId", "consumer")], app);
        let a = p(&[("a", "1")]);
        let ab = p(&[("a", "1"), ("b", "2")]);
        let c = p(&[("c", "3")]);
        assert!(when("a = '1' AND b = '2'", &ab));
        assert!(!when("a = '1' AND b = '2'", &a));
        assert!(when("a = '1' OR b = '2'", &a));
        assert!(when("NOT (a = '2')", &a));
        assert!(when("NOT NOT (a = '1')", &a));
        // AND binds tighter than OR.
        assert!(when("a = '1' OR b = '9' AND c = '3'", &a));
        assert!(!when("(a = '1' OR b = '9') AND c = '3'", &a));
        assert!(when(
            "(a = '1' OR b = '9') AND c = '3'",
            &p(&[("a", "1"), ("c", "3")])
        ));
        assert!(when("c = '3' or a = '1' and b = '2'", &c));
        assert!(when("IS_DEFINED(a)", &a));
        assert!(!when("is_defined(b)", &a));
        assert!(when(
            "NOT IS_DEFINED(b) AND Is_Defined($connectionModuleId)",
            &a
        ));
        assert!(!when("NOT IS_DEFINED($connectionModuleId)", &a));
        assert!(when("IS_DEFINED((a = '1'))", &a));
        assert!(!when("IS_DEFINED(b = '1')", &a));
        assert!(when("((((a = '1'))))", &a));
        assert!(when("(a = '1') = true", &a));
        assert!(when("true", &a));
        assert!(!when("false", &a));
        assert!(when("a = '1' AND a = '1' AND a = '1' AND a = '1'", &a));
    }

    #[test]
    fn undefined_properties_never_route() {
        let none = Props::default();
        assert!(!when("missing = 'x'", &none));
        assert!(!when("missing != 'x'", &none));
        assert!(!when("missing <> 'x'", &none));
        assert!(!when("NOT (missing = 'x')", &none));
        assert!(!when("missing = missing", &none));
        assert!(!when("$connectionModuleId = 'consumer'", &none));
        // Kleene logic: undefined OR true is true, undefined AND false is false (not undefined).
        assert!(when("missing = 'x' OR true", &none));
        assert!(!when("missing = 'x' AND true", &none));
        assert!(when("NOT (missing = 'x' AND false)", &none));
        assert!(!when("NOT (missing = 'x' OR false)", &none));
        assert!(when("NOT IS_DEFINED(missing)", &none));
        let a = Props::new(&[], &[("a", "y")]);
        assert!(when("IS_DEFINED(a) AND a != 'x'", &a));
    }

    #[test]
    fn literals_numbers_and_escapes() {
        let none = Props::default();
        assert!(when("1 = 1", &none));
        assert!(when("1.0 = 1", &none));
        assert!(when("-5 = -5.0", &none));
        assert!(when("0x10 = 16", &none));
        assert!(when("1e3 = 1000", &none));
        assert!(when(".5 = 0.5", &none));
        assert!(when("2 != 3", &none));
        assert!(when("true = true", &none));
        assert!(when("true <> false", &none));
        let app = Props::new(
            &[],
            &[
                ("q", "it's"),
                ("d", "say \"hi\""),
                ("u", "A😀"),
                ("b", "back\\slash"),
                ("e", ""),
            ],
        );
        assert!(when("q = 'it\\'s'", &app));
        assert!(when("d = \"say \\\"hi\\\"\"", &app));
        assert!(when("u = '\\u0041\\uD83D\\uDE00'", &app));
        assert!(when("b = 'back\\\\slash'", &app));
        assert!(when("e = ''", &app));
        // edgeHub unescapes \uXXXX before \\, so '\\u0041' becomes '\A'.
        assert!(when("'\\\\u0041' = '\\\\A'", &app));
        assert!(!when("q = 'its'", &app));
        // Names follow edgeHub's lexer: `5s` and `a.b-c` are property names, not numbers.
        let odd = Props::new(&[], &[("x", "5s"), ("5s", "v")]);
        assert!(when("5s = 'v'", &odd));
        assert!(when("x = '5s'", &odd));
    }

    #[test]
    fn refuses_unsupported_where_parts_naming_the_route() {
        assert_refused(
            "FROM /messages/* WHERE contains(a, 'x') INTO $upstream",
            &["unsupported in WHERE: function contains (supported: =, !=, <>, AND, OR, NOT, IS_DEFINED, parentheses)"],
        );
        assert_refused(
            "FROM /* WHERE UPPER(a) = 'X' INTO $upstream",
            &["function UPPER"],
        );
        assert_refused(
            "FROM /* WHERE frobnicate(a) INTO $upstream",
            &["function frobnicate", "not an edgeHub built-in"],
        );
        assert_refused(
            "FROM /* WHERE twin_change_includes(x) INTO $upstream",
            &["function twin_change_includes"],
        );
        assert_refused(
            "FROM /* WHERE $body.temperature = '5' INTO $upstream",
            &["body query $body.temperature"],
        );
        assert_refused(
            "FROM /* WHERE {$body.x} = '5' INTO $upstream",
            &["body query $body.x"],
        );
        assert_refused(
            "FROM /* WHERE $BODY.x = '5' INTO $upstream",
            &["body query $BODY.x"],
        );
        assert_refused(
            "FROM /* WHERE $body[0] = '5' INTO $upstream",
            &["body query $body[0]"],
        );
        assert_refused("FROM /* WHERE $x[0] = '5' INTO $upstream", &["$x[0]"]);
        assert_refused("FROM /* WHERE a[0] = '5' INTO $upstream", &["a[0]"]);
        for op in ["<", "<=", ">", ">=", "+", "-", "*", "/", "%", "||", "??"] {
            assert_refused(
                &format!("FROM /* WHERE a {op} 'b' INTO $upstream"),
                &[&format!("unsupported in WHERE: operator {op} ")],
            );
        }
        assert_refused(
            "FROM /* WHERE a = 'x' AND b < 'y' INTO $upstream",
            &["operator <"],
        );
        assert_refused("FROM /* WHERE a = null INTO $upstream", &["literal null"]);
        assert_refused(
            "FROM /* WHERE a = undefined INTO $upstream",
            &["literal undefined"],
        );
        assert_refused("FROM /* WHERE - a = 'b' INTO $upstream", &["unary minus"]);
        assert_refused(
            "FROM /* WHERE IS_DEFINED() INTO $upstream",
            &["one argument to IS_DEFINED"],
        );
        assert_refused(
            "FROM /* WHERE IS_DEFINED(a, b) INTO $upstream",
            &["exactly one argument"],
        );
    }

    #[test]
    fn refuses_type_errors_edgehub_refuses() {
        // Properties are strings in edgeHub: comparing one with a number does not compile there.
        assert_refused(
            "FROM /* WHERE temperature = 5 INTO $upstream",
            &["temperature", "a string with a number", "temperature = '5'"],
        );
        assert_refused(
            "FROM /* WHERE 5 != $messageId INTO $upstream",
            &["a number with a string", "'5' != $messageId"],
        );
        assert_refused(
            "FROM /* WHERE flag = true INTO $upstream",
            &["a string with a condition"],
        );
        assert_refused(
            "FROM /* WHERE a AND b = 'x' INTO $upstream",
            &["AND needs a condition", "'a' is a string"],
        );
        assert_refused(
            "FROM /* WHERE b = 'x' OR 5 INTO $upstream",
            &["OR needs a condition", "'5' is a number"],
        );
        // NOT binds tighter than '=' in edgeHub, so this is (NOT a) = 'x': refused, with the fix.
        assert_refused(
            "FROM /* WHERE NOT a = 'x' INTO $upstream",
            &["NOT needs a condition", "NOT (a = ...)"],
        );
        // A bare property is not a condition (edgeHub would compile it and never route).
        assert_refused(
            "FROM /* WHERE a INTO $upstream",
            &["the condition 'a' is a string"],
        );
        assert_refused("FROM /* WHERE 'x' INTO $upstream", &["is a string"]);
    }

    #[test]
    fn refuses_malformed_routes_naming_the_route() {
        assert_refused("", &["the route is empty"]);
        assert_refused("  \n ", &["the route is empty"]);
        assert_refused("/messages/* INTO $upstream", &["expected FROM", "'/'"]);
        assert_refused("SELECT a FROM /* INTO $upstream", &["'*' after SELECT"]);
        assert_refused(
            "SELECT* FROM /* INTO $upstream",
            &["expected FROM", "'SELECT*'"],
        );
        assert_refused("FROM INTO $upstream", &["source path starting with '/'"]);
        assert_refused(
            "FROM messages INTO $upstream",
            &["source path starting with '/'"],
        );
        assert_refused("FROM /messages/ INTO $upstream", &["path item", "'INTO'"]);
        assert_refused("FROM / INTO $upstream", &["path item"]);
        assert_refused(
            "FROM /messages/modules/not/* INTO $upstream",
            &["'not'", "keyword"],
        );
        assert_refused(
            "FROM /messages/modules/$edgeHub INTO $upstream",
            &["path item", "'$edgeHub'"],
        );
        assert_refused(
            "FROM /messages/*",
            &["'/', WHERE or INTO", "end of the route"],
        );
        assert_refused(
            "FROM /messages/* $upstream",
            &["'/', WHERE or INTO", "'$upstream'"],
        );
        assert_refused("FROM /messages/* INTO", &["a sink after INTO"]);
        assert_refused("FROM /* WHERE INTO $upstream", &["a condition after WHERE"]);
        assert_refused(
            "FROM /* WHERE a = 'x' b = 'y' INTO $upstream",
            &["AND, OR or INTO", "'b'"],
        );
        assert_refused(
            "FROM /* WHERE a = 'x INTO $upstream",
            &["closed by its quote", "closing quote"],
        );
        assert_refused(
            "FROM /* WHERE a = \"x INTO $upstream",
            &["closed by its quote"],
        );
        assert_refused(
            "FROM /* WHERE a = 'bad \\n escape' INTO $upstream",
            &["closed by its quote"],
        );
        assert_refused(
            "FROM /* WHERE (a = 'x' INTO $upstream",
            &["')' to close the '(' at column 15"],
        );
        assert_refused(
            "FROM /* WHERE a = 'x') INTO $upstream",
            &["AND, OR or INTO", "')'"],
        );
        assert_refused("FROM /* WHERE () INTO $upstream", &["an operand"]);
        assert_refused("FROM /* WHERE a = @ INTO $upstream", &["an operand", "'@'"]);
        assert_refused(
            "FROM /* WHERE {a} = 'x' INTO $upstream",
            &["$system property inside '{ }'"],
        );
        assert_refused(
            "FROM /* WHERE a!='x' INTO $upstream",
            &["a space before '!='"],
        );
        assert_refused(
            "FROM /* INTO $upstream WHERE a = 'x'",
            &["end of the route after the sink", "'WHERE'"],
        );
        assert_refused(
            "FROM /* INTO $upstream $upstream",
            &["end of the route after the sink"],
        );
        assert_refused(
            "FROM /* WHERE a = '\\uD800' INTO $upstream",
            &["\\u escapes"],
        );
    }

    #[test]
    fn refuses_bad_sinks_naming_the_route_and_sink() {
        let cases = [
            (
                "FROM /* INTO Nowhere(\"x\")",
                &[
                    "unsupported sink 'Nowhere(\"x\")'",
                    "Nowhere is not a function endpoint",
                ][..],
            ),
            (
                "FROM /* INTO $downstream",
                &["'$downstream'", "only one is $upstream"],
            ),
            ("FROM /* INTO upstream", &["'upstream'", "not a sink"]),
            (
                "FROM /* INTO BrokeredEndpoint(\"/modules/x\")",
                &["'/modules/x' is not /modules/<module>/inputs/<input>"],
            ),
            (
                "FROM /* INTO BrokeredEndpoint(\"/devices/x/inputs/y\")",
                &["'/devices/x/inputs/y'"],
            ),
            (
                "FROM /* INTO BrokeredEndpoint(\"/modules/x/outputs/y\")",
                &["'/modules/x/outputs/y'"],
            ),
            (
                "FROM /* INTO BrokeredEndpoint(\"/modules//inputs/y\")",
                &["'/modules//inputs/y'"],
            ),
            (
                "FROM /* INTO BrokeredEndpoint(\"/modules/a b/inputs/y\")",
                &["'/modules/a b/inputs/y'"],
            ),
            (
                "FROM /* INTO BrokeredEndpoint(\"/modules/x/inputs/y/z\")",
                &["'/modules/x/inputs/y/z'"],
            ),
            (
                "FROM /* INTO BrokeredEndpoint(/modules/x/inputs/y)",
                &["takes one quoted address"],
            ),
            (
                "FROM /* INTO BrokeredEndpoint(\"/modules/x/inputs/y\"",
                &["')' after the BrokeredEndpoint address"],
            ),
            (
                "FROM /* INTO BrokeredEndpoint(\"/modules/x/inputs/y)",
                &["takes one quoted address"],
            ),
            (
                "FROM /* INTO BrokeredEndpoint",
                &["'BrokeredEndpoint'", "not a sink"],
            ),
        ];
        for (text, parts) in cases {
            assert_refused(text, parts);
        }
    }

    #[test]
    fn wildcards_that_are_not_wildcards_are_explained() {
        let items =
            |path: &str| -> Vec<String> { path.split('/').skip(1).map(str::to_owned).collect() };
        assert_eq!(wildcard_warning(&items("/messages/*")), None);
        assert_eq!(wildcard_warning(&items("/*")), None);
        assert_eq!(
            wildcard_warning(&items("/messages/modules/a/outputs/x")),
            None
        );
        assert!(wildcard_warning(&items("/messages/modules/a/outputs/Get*"))
            .is_some_and(|w| w.contains("matches 'Get' exactly")));
        assert!(wildcard_warning(&items("/messages/*/outputs/x"))
            .is_some_and(|w| w.contains("literally")));
        // Such routes still parse, with edgeHub's (literal) meaning.
        let r = route("FROM /messages/modules/*/outputs/x INTO $upstream");
        assert!(!r.matches("/messages/modules/a/outputs/x", &Props::default()));
        assert!(r.matches("/messages/modules/*/outputs/x", &Props::default()));
    }

    #[test]
    fn source_new_trims_like_edgehub() {
        for (path, message, expected) in [
            ("/messages/modules/a/", "/messages/modules/a", true),
            ("  /messages//  ", "/messages/x", true),
            ("/", "/anything", true),
            ("", "/anything", true),
            (
                "/messages/modules/A/outputs/O",
                " /messages/modules/a/outputs/o/ ",
                true,
            ),
            ("/messages/modules/a", "/messages/modules", false),
        ] {
            assert_eq!(
                Source::new(path).matches(message),
                expected,
                "{path:?} vs {message:?}"
            );
        }
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing() {
        let deep = format!(
            "FROM /* WHERE {}a = 'x'{} INTO $upstream",
            "(".repeat(5000),
            ")".repeat(5000)
        );
        assert_refused(&deep, &["nesting deeper than 64"]);
        let nots = format!("FROM /* WHERE {}true INTO $upstream", "NOT ".repeat(5000));
        assert_refused(&nots, &["nesting deeper than 64"]);
        let eqs = format!(
            "FROM /* WHERE true{} INTO $upstream",
            " = true".repeat(5000)
        );
        assert_refused(&eqs, &["nesting deeper than 64"]);
        // Long flat AND/OR chains are fine.
        let chain = ["a = '1'"; 5000].join(" AND ");
        assert!(when(&chain, &Props::new(&[], &[("a", "1")])));
        let chain = ["a = '2'"; 5000].join(" OR ");
        assert!(!when(&chain, &Props::new(&[], &[("a", "1")])));
    }

    #[test]
    fn no_input_panics() {
        const PIECES: &[&str] = &[
            "FROM",
            "from",
            "INTO",
            "into",
            "WHERE",
            "SELECT",
            "*",
            "/",
            "/messages",
            "/modules",
            "/outputs",
            "/*",
            "*/",
            "consumer",
            "x",
            "$upstream",
            "$UPSTREAM",
            "BrokeredEndpoint",
            "(",
            ")",
            "\"",
            "'",
            "\"/modules/a/inputs/b\"",
            "'/modules/a/inputs/b'",
            "'v'",
            "\"v\"",
            "AND",
            "OR",
            "NOT",
            "IS_DEFINED",
            "contains",
            "=",
            "!=",
            "<>",
            "<",
            ">=",
            "||",
            "??",
            "+",
            "-",
            "%",
            ",",
            "$body.x",
            "$body[",
            "{",
            "}",
            "$connectionModuleId",
            "{$messageId}",
            "1",
            "-1",
            "0x1F",
            "0x",
            "1.5e3",
            "1e",
            ".",
            "true",
            "false",
            "null",
            "undefined",
            "\\",
            "\\u00",
            "\\uD83D",
            "\\'",
            "é",
            "😀",
            "İ",
            "[",
            "]",
            "@",
            "!",
            "?",
            "$",
            " ",
            " ",
            " ",
            "\t",
            "\n",
            "a!",
            "5s",
        ];
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move |bound: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            usize::try_from(state % bound as u64).unwrap_or(0)
        };
        let props = Props::new(&[("connectionModuleId", "consumer")], &[("x", "v")]);
        let check = |text: &str| {
            if let Ok(r) = RouteTable::parse("fuzz", text) {
                let _ = r.matches(CONSUMER_OUT, &props);
                let _ = r.matches("", &props);
            } else if let Err(e) = RouteTable::parse("fuzz", text) {
                assert!(e.to_string().contains("\"fuzz\""), "{e}");
            }
        };
        for _ in 0..800 {
            let mut text = String::new();
            for _ in 0..=next(24) {
                text.push_str(PIECES[next(PIECES.len())]);
                if next(3) > 0 {
                    text.push(' ');
                }
            }
            check(&text);
        }
        // Every prefix of well-formed routes.
        for full in [
            "SELECT * FROM /messages/modules/consumer/outputs/* WHERE NOT IS_DEFINED($connectionModuleId) OR (x = 'v' AND {$messageId} <> \"m\\u0041\") INTO BrokeredEndpoint(\"/modules/p/inputs/i\")",
            "FROM /messages/* /* c */ WHERE x = 'it\\'s é 😀' INTO $upstream",
        ] {
            for (i, _) in full.char_indices() {
                check(&full[..i]);
                check(&full[i..]);
            }
        }
    }
}
