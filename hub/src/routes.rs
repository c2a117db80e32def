//! edgeHub's routes (PROTOCOL.md §4.1): `[SELECT *] FROM <source> [WHERE <condition>] INTO <sink>`,
//! sources matched as case-insensitive prefixes, sinks `$upstream` or
//! `BrokeredEndpoint("/modules/{m}/inputs/{i}")`, and a useful subset of the WHERE language.
//! A condition outside the subset refuses to load, naming the route and the part: a route must
//! never match more (or less) than its author wrote.

use serde_json::Value;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RouteError {
    #[error("the manifest has no $edgeHub routes (modulesContent.$edgeHub[\"properties.desired\"].routes)")]
    NoRoutes,
    #[error("route {route:?}: {message}")]
    Syntax { route: String, message: String },
    #[error(
        "route {route:?}: unsupported in WHERE: {part} (supported: application properties, $system properties, \
         'strings', numbers, true/false, =, !=, <>, AND, OR, NOT, IS_DEFINED(), parentheses)"
    )]
    Unsupported { route: String, part: String },
    #[error("route {route:?}: sink {sink:?} is neither $upstream nor BrokeredEndpoint(\"/modules/{{module}}/inputs/{{input}}\")")]
    Sink { route: String, sink: String },
}

/// What a route's WHERE clause can see of a message.
pub trait MessageProperties {
    /// A system property by its query name without `$` (`connectionModuleId`, `messageId`, …).
    fn system(&self, name: &str) -> Option<&str>;
    /// An application property.
    fn application(&self, name: &str) -> Option<&str>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink {
    Upstream,
    Module { module: String, input: String },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Application(String),
    System(String),
    Str(String),
    Num(f64),
    Bool(bool),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    And(Box<Condition>, Box<Condition>),
    Or(Box<Condition>, Box<Condition>),
    Not(Box<Condition>),
    Equal(Operand, Operand),
    NotEqual(Operand, Operand),
    IsDefined(Operand),
    Constant(bool),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub name: String,
    pub text: String,
    /// Source prefix as written (`/messages/modules/x/*`).
    pub source: String,
    /// Lower-cased, trailing `*`/`/` trimmed, one `/` appended: what messages are matched with.
    prefix: String,
    pub condition: Option<Condition>,
    pub sink: Sink,
    pub priority: u8,
    pub time_to_live_secs: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouteTable {
    routes: Vec<Route>,
}

/// Finds keyword `kw` (case-insensitive, as a whole word, outside quotes) in `text` from `from`.
fn find_keyword(text: &str, kw: &str, from: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut quoted = false;
    let mut i = from;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' => quoted = !quoted,
            b'"' if !quoted => {
                // Skip a double-quoted string (the sink's parameter).
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += 1;
                }
            }
            _ if !quoted
                && bytes.len() - i >= kw.len()
                && bytes[i..i + kw.len()].eq_ignore_ascii_case(kw.as_bytes())
                && (i == 0 || bytes[i - 1].is_ascii_whitespace() || bytes[i - 1] == b')')
                && bytes
                    .get(i + kw.len())
                    .is_none_or(|b| b.is_ascii_whitespace() || *b == b'(') =>
            {
                return Some(i);
            }
            _ => {}
        }
        i += 1;
    }
    None
}

fn syntax(route: &str, message: impl Into<String>) -> RouteError {
    RouteError::Syntax {
        route: route.to_owned(),
        message: message.into(),
    }
}

impl RouteTable {
    pub fn new(routes: Vec<Route>) -> Self {
        Self { routes }
    }

    /// Routes of `modulesContent.$edgeHub["properties.desired"].routes`, in manifest order.
    pub fn from_manifest(manifest: &Value) -> Result<Self, RouteError> {
        let routes = manifest
            .pointer("/modulesContent/$edgeHub/properties.desired/routes")
            .and_then(Value::as_object)
            .ok_or(RouteError::NoRoutes)?;
        let mut out = Vec::with_capacity(routes.len());
        for (name, spec) in routes {
            let (text, priority, ttl) = match spec {
                Value::String(s) => (s.as_str(), 0, None),
                Value::Object(o) => {
                    let text = o
                        .get("route")
                        .and_then(Value::as_str)
                        .ok_or_else(|| syntax(name, "the object form needs a \"route\" string"))?;
                    let priority = match o.get("priority") {
                        None => 0,
                        Some(p) => p.as_u64().filter(|p| *p <= 9).ok_or_else(|| {
                            syntax(name, "priority must be an integer from 0 to 9")
                        })? as u8,
                    };
                    let ttl = match o.get("timeToLiveSecs") {
                        None => None,
                        Some(t) => Some(t.as_u64().ok_or_else(|| {
                            syntax(name, "timeToLiveSecs must be a non-negative integer")
                        })?),
                    };
                    (text, priority, ttl)
                }
                _ => return Err(syntax(
                    name,
                    "a route is a string or {\"route\": …, \"priority\": …, \"timeToLiveSecs\": …}",
                )),
            };
            let mut route = Self::parse(name, text)?;
            route.priority = priority;
            route.time_to_live_secs = ttl;
            out.push(route);
        }
        Ok(Self { routes: out })
    }

    /// Parses one route.
    pub fn parse(name: &str, text: &str) -> Result<Route, RouteError> {
        let t = text.trim();
        if t.is_empty() {
            return Err(syntax(
                name,
                "the route is empty; expected FROM <source> [WHERE <condition>] INTO <sink>",
            ));
        }
        let mut at = 0;
        if t.len() >= 6 && t[..6].eq_ignore_ascii_case("SELECT") {
            let rest = t[6..].trim_start();
            let star = rest
                .strip_prefix('*')
                .ok_or_else(|| syntax(name, "only SELECT * is supported"))?;
            at = t.len() - star.len();
        }
        let from =
            find_keyword(t, "FROM", at).ok_or_else(|| syntax(name, "expected FROM <source>"))?;
        if !t[at..from].trim().is_empty() {
            return Err(syntax(
                name,
                format!("unexpected {:?} before FROM", t[at..from].trim()),
            ));
        }
        let into = find_keyword(t, "INTO", from + 4)
            .ok_or_else(|| syntax(name, "expected INTO <sink>"))?;
        let between = &t[from + 4..into];
        let (source, condition) = match find_keyword(t, "WHERE", from + 4).filter(|w| *w < into) {
            Some(w) => (t[from + 4..w].trim(), Some(&t[w + 5..into])),
            None => (between.trim(), None),
        };
        let prefix = parse_source(name, source)?;
        let condition = match condition {
            Some(c) if c.trim().is_empty() => return Err(syntax(name, "WHERE needs a condition")),
            Some(c) => Some(ConditionParser::new(name, c)?.parse()?),
            None => None,
        };
        let sink = parse_sink(name, t[into + 4..].trim())?;
        Ok(Route {
            name: name.to_owned(),
            text: text.to_owned(),
            source: source.to_owned(),
            prefix,
            condition,
            sink,
            priority: 0,
            time_to_live_secs: None,
        })
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    pub fn matching<'a>(
        &'a self,
        source: &'a str,
        props: &'a dyn MessageProperties,
    ) -> impl Iterator<Item = &'a Route> + 'a {
        self.routes.iter().filter(move |r| r.matches(source, props))
    }
}

fn parse_source(route: &str, source: &str) -> Result<String, RouteError> {
    if !source.starts_with('/') || source.split_whitespace().count() != 1 {
        return Err(syntax(route, format!("source {source:?} must be a path such as /messages/modules/<module>/outputs/<output> or /*")));
    }
    for segment in source[1..].split('/') {
        let ok = segment == "*"
            || (!segment.is_empty()
                && segment
                    .chars()
                    .all(|c| c.is_alphanumeric() || "_-.$:@".contains(c)));
        let root = segment.is_empty() && source == "/";
        if !(ok || root) {
            return Err(syntax(
                route,
                format!("source {source:?} has an invalid segment {segment:?}"),
            ));
        }
    }
    let trimmed = source.trim_end_matches(['*', '/']);
    Ok(format!("{}/", trimmed.to_ascii_lowercase()))
}

fn parse_sink(route: &str, sink: &str) -> Result<Sink, RouteError> {
    let bad = || RouteError::Sink {
        route: route.to_owned(),
        sink: sink.to_owned(),
    };
    if sink.eq_ignore_ascii_case("$upstream") {
        return Ok(Sink::Upstream);
    }
    let open = sink.find('(').ok_or_else(bad)?;
    if !sink[..open].trim().eq_ignore_ascii_case("BrokeredEndpoint") || !sink.ends_with(')') {
        return Err(bad());
    }
    let arg = sink[open + 1..sink.len() - 1].trim();
    let path = arg
        .strip_prefix('"')
        .and_then(|a| a.strip_suffix('"'))
        .ok_or_else(bad)?;
    match path.split('/').collect::<Vec<_>>().as_slice() {
        ["", "modules", module, "inputs", input] if !module.is_empty() && !input.is_empty() => {
            Ok(Sink::Module {
                module: (*module).to_owned(),
                input: (*input).to_owned(),
            })
        }
        _ => Err(bad()),
    }
}

impl Route {
    /// Does a message from `source` (`/messages/modules/{m}/outputs/{o}`) with these properties match?
    pub fn matches(&self, source: &str, props: &dyn MessageProperties) -> bool {
        // Compare as if `source` had a trailing '/', without building that string.
        let (p, s) = (self.prefix.as_bytes(), source.as_bytes());
        let prefix_ok = if p.len() == s.len() + 1 {
            p[..s.len()].eq_ignore_ascii_case(s)
        } else {
            p.len() <= s.len() && s[..p.len()].eq_ignore_ascii_case(p)
        };
        prefix_ok && self.condition.as_ref().is_none_or(|c| c.eval(props))
    }
}

impl Operand {
    fn value<'a>(&'a self, props: &'a dyn MessageProperties) -> Option<Literal<'a>> {
        match self {
            Operand::Application(n) => props.application(n).map(Literal::Str),
            Operand::System(n) => props.system(n).map(Literal::Str),
            Operand::Str(s) => Some(Literal::Str(s)),
            Operand::Num(n) => Some(Literal::Num(*n)),
            Operand::Bool(b) => Some(Literal::Bool(*b)),
        }
    }
}

enum Literal<'a> {
    Str(&'a str),
    Num(f64),
    Bool(bool),
}

/// Equality with IoT Hub's undefined semantics: `None` when either side is undefined.
fn equal(a: Option<Literal>, b: Option<Literal>) -> Option<bool> {
    Some(match (a?, b?) {
        (Literal::Str(x), Literal::Str(y)) => x == y,
        (Literal::Num(x), Literal::Num(y)) => x == y,
        (Literal::Str(s), Literal::Num(n)) | (Literal::Num(n), Literal::Str(s)) => {
            s.trim().parse::<f64>().is_ok_and(|v| v == n)
        }
        (Literal::Bool(x), Literal::Bool(y)) => x == y,
        (Literal::Str(s), Literal::Bool(b)) | (Literal::Bool(b), Literal::Str(s)) => {
            s.eq_ignore_ascii_case(if b { "true" } else { "false" })
        }
        _ => false,
    })
}

impl Condition {
    pub fn eval(&self, props: &dyn MessageProperties) -> bool {
        match self {
            Condition::And(a, b) => a.eval(props) && b.eval(props),
            Condition::Or(a, b) => a.eval(props) || b.eval(props),
            Condition::Not(c) => !c.eval(props),
            Condition::Equal(a, b) => equal(a.value(props), b.value(props)).unwrap_or(false),
            Condition::NotEqual(a, b) => equal(a.value(props), b.value(props))
                .map(|e| !e)
                .unwrap_or(false),
            Condition::IsDefined(o) => o.value(props).is_some(),
            Condition::Constant(b) => *b,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    System(String),
    Escaped(String),
    Str(String),
    Num(f64),
    LParen,
    RParen,
    Eq,
    Ne,
    Other(String),
}

struct ConditionParser<'a> {
    route: &'a str,
    tokens: Vec<Token>,
    at: usize,
}

impl<'a> ConditionParser<'a> {
    fn new(route: &'a str, text: &str) -> Result<Self, RouteError> {
        let chars: Vec<char> = text.chars().collect();
        let mut tokens = Vec::new();
        let mut i = 0;
        let unsupported = |part: String| RouteError::Unsupported {
            route: route.to_owned(),
            part,
        };
        while i < chars.len() {
            let c = chars[i];
            if c.is_whitespace() {
                i += 1;
                continue;
            }
            let word_char = |c: char| c.is_alphanumeric() || c == '_' || c == '-' || c == '.';
            match c {
                '(' => tokens.push(Token::LParen),
                ')' => tokens.push(Token::RParen),
                '=' => tokens.push(Token::Eq),
                '\'' => {
                    let mut s = String::new();
                    i += 1;
                    loop {
                        match chars.get(i) {
                            None => return Err(syntax(route, "unterminated 'string' in WHERE")),
                            Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                                s.push('\'');
                                i += 1;
                            }
                            Some('\'') => break,
                            Some(c) => s.push(*c),
                        }
                        i += 1;
                    }
                    tokens.push(Token::Str(s));
                }
                '{' => {
                    let end = chars[i..]
                        .iter()
                        .position(|c| *c == '}')
                        .ok_or_else(|| syntax(route, "unterminated {escaped name} in WHERE"))?;
                    tokens.push(Token::Escaped(chars[i + 1..i + end].iter().collect()));
                    i += end;
                }
                '$' => {
                    let start = i + 1;
                    let mut j = start;
                    while j < chars.len() && word_char(chars[j]) {
                        j += 1;
                    }
                    let name: String = chars[start..j].iter().collect();
                    if name.is_empty() {
                        return Err(syntax(route, "a lone $ in WHERE"));
                    }
                    if name.to_ascii_lowercase().starts_with("body") {
                        return Err(unsupported(format!("${name} (message body queries)")));
                    }
                    if name.contains('.') {
                        return Err(unsupported(format!("${name}")));
                    }
                    tokens.push(Token::System(name));
                    i = j - 1;
                }
                '!' if chars.get(i + 1) == Some(&'=') => {
                    tokens.push(Token::Ne);
                    i += 1;
                }
                '<' if chars.get(i + 1) == Some(&'>') => {
                    tokens.push(Token::Ne);
                    i += 1;
                }
                c if c.is_ascii_digit() => {
                    let start = i;
                    while i + 1 < chars.len()
                        && (chars[i + 1].is_ascii_digit() || chars[i + 1] == '.')
                    {
                        i += 1;
                    }
                    let s: String = chars[start..=i].iter().collect();
                    tokens.push(Token::Num(
                        s.parse()
                            .map_err(|_| syntax(route, format!("bad number {s:?}")))?,
                    ));
                }
                c if c.is_alphabetic() || c == '_' => {
                    let start = i;
                    while i + 1 < chars.len() && word_char(chars[i + 1]) {
                        i += 1;
                    }
                    tokens.push(Token::Word(chars[start..=i].iter().collect()));
                }
                other => {
                    // Operators outside the subset: <, >, <=, >=, +, -, *, /, %, ||, ??, ','
                    let mut op = other.to_string();
                    if let Some(n) = chars.get(i + 1).filter(|n| "=|?".contains(**n)) {
                        op.push(*n);
                    }
                    tokens.push(Token::Other(op));
                }
            }
            i += 1;
        }
        Ok(Self {
            route,
            tokens,
            at: 0,
        })
    }

    fn unsupported(&self, part: impl Into<String>) -> RouteError {
        RouteError::Unsupported {
            route: self.route.to_owned(),
            part: part.into(),
        }
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(kw))
    }

    fn parse(mut self) -> Result<Condition, RouteError> {
        let c = self.or()?;
        match self.peek() {
            None => Ok(c),
            Some(Token::Other(op)) => Err(self.unsupported(format!("operator {op}"))),
            Some(t) => Err(syntax(self.route, format!("unexpected {t:?} in WHERE"))),
        }
    }

    fn or(&mut self) -> Result<Condition, RouteError> {
        let mut left = self.and()?;
        while self.keyword("OR") {
            self.at += 1;
            left = Condition::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Condition, RouteError> {
        let mut left = self.unary()?;
        while self.keyword("AND") {
            self.at += 1;
            left = Condition::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Condition, RouteError> {
        if self.keyword("NOT") {
            self.at += 1;
            return Ok(Condition::Not(Box::new(self.unary()?)));
        }
        self.primary()
    }

    fn expect(&mut self, t: Token, what: &str) -> Result<(), RouteError> {
        if self.peek() == Some(&t) {
            self.at += 1;
            Ok(())
        } else {
            Err(syntax(self.route, format!("expected {what} in WHERE")))
        }
    }

    fn primary(&mut self) -> Result<Condition, RouteError> {
        if self.peek() == Some(&Token::LParen) {
            self.at += 1;
            let c = self.or()?;
            self.expect(Token::RParen, "')'")?;
            return Ok(c);
        }
        if let Some(Token::Word(w)) = self.peek().cloned() {
            if self.tokens.get(self.at + 1) == Some(&Token::LParen) {
                if !w.eq_ignore_ascii_case("IS_DEFINED") {
                    return Err(self.unsupported(format!("function {w}")));
                }
                self.at += 2;
                let o = self.operand()?;
                self.expect(Token::RParen, "')' after IS_DEFINED(…")?;
                return Ok(Condition::IsDefined(o));
            }
        }
        let left = self.operand()?;
        match self.peek() {
            Some(Token::Eq) => {
                self.at += 1;
                Ok(Condition::Equal(left, self.operand()?))
            }
            Some(Token::Ne) => {
                self.at += 1;
                Ok(Condition::NotEqual(left, self.operand()?))
            }
            Some(Token::Other(op)) => Err(self.unsupported(format!("operator {op}"))),
            _ => match left {
                Operand::Bool(b) => Ok(Condition::Constant(b)),
                other => Err(syntax(self.route, format!("{other:?} alone is not a condition; compare it with = or != or use IS_DEFINED()"))),
            },
        }
    }

    fn operand(&mut self) -> Result<Operand, RouteError> {
        let t = self
            .peek()
            .cloned()
            .ok_or_else(|| syntax(self.route, "the condition ends too early"))?;
        self.at += 1;
        Ok(match t {
            Token::Str(s) => Operand::Str(s),
            Token::Num(n) => Operand::Num(n),
            Token::System(n) => Operand::System(n),
            Token::Escaped(n) => match n.strip_prefix('$') {
                Some(sys) => Operand::System(sys.to_owned()),
                None => Operand::Application(n),
            },
            Token::Word(w) if w.eq_ignore_ascii_case("true") => Operand::Bool(true),
            Token::Word(w) if w.eq_ignore_ascii_case("false") => Operand::Bool(false),
            Token::Word(w)
                if ["AND", "OR", "NOT"]
                    .iter()
                    .any(|k| w.eq_ignore_ascii_case(k)) =>
            {
                return Err(syntax(
                    self.route,
                    format!("{w} where a value was expected"),
                ))
            }
            Token::Word(w) if self.peek() == Some(&Token::LParen) => {
                return Err(self.unsupported(format!("function {w}")))
            }
            Token::Word(w) => Operand::Application(w),
            Token::Other(op) => return Err(self.unsupported(format!("operator {op}"))),
            t => {
                return Err(syntax(
                    self.route,
                    format!("unexpected {t:?} where a value was expected"),
                ))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[derive(Default)]
    struct Props {
        sys: HashMap<&'static str, &'static str>,
        app: HashMap<&'static str, &'static str>,
    }
    impl MessageProperties for Props {
        fn system(&self, n: &str) -> Option<&str> {
            self.sys.get(n).copied()
        }
        fn application(&self, n: &str) -> Option<&str> {
            self.app.get(n).copied()
        }
    }

    fn route(text: &str) -> Route {
        RouteTable::parse("r", text).unwrap()
    }

    fn err(text: &str) -> String {
        RouteTable::parse("R1", text).unwrap_err().to_string()
    }

    const C2P: &str = r#"FROM /messages/modules/consumer/outputs/GetTimeMessage INTO BrokeredEndpoint("/modules/producer/inputs/GetTimeMessage")"#;

    #[test]
    fn the_seed_routes() {
        let r = route(C2P);
        assert_eq!(
            r.sink,
            Sink::Module {
                module: "producer".into(),
                input: "GetTimeMessage".into()
            }
        );
        let p = Props::default();
        assert!(r.matches("/messages/modules/consumer/outputs/GetTimeMessage", &p));
        assert!(!r.matches("/messages/modules/producer/outputs/GetTimeMessage", &p));
        assert!(!r.matches("/messages/modules/consumer/outputs/GetTimeMessageX", &p));
        assert!(!r.matches("/messages/modules/consumer/outputs/GetTime", &p));
        assert!(
            r.matches("/MESSAGES/modules/Consumer/outputs/gettimemessage", &p),
            "case-insensitive"
        );
    }

    #[test]
    fn wildcards_are_prefixes_on_segment_boundaries() {
        let p = Props::default();
        let out = "/messages/modules/consumer/outputs/GetTimeMessage";
        let bare = "/messages/modules/consumer";
        for (src, hits_out, hits_bare) in [
            ("/*", true, true),
            ("/messages/*", true, true),
            ("/messages/modules/consumer/*", true, true),
            ("/messages/modules/consumer/outputs/*", true, false),
            ("/messages/modules/cons/*", false, false),
            ("/messages/modules/consumer/outputs/Get", false, false),
        ] {
            let r = route(&format!("FROM {src} INTO $upstream"));
            assert_eq!(r.matches(out, &p), hits_out, "{src} vs {out}");
            assert_eq!(r.matches(bare, &p), hits_bare, "{src} vs {bare}");
        }
    }

    #[test]
    fn keywords_and_sinks_are_case_insensitive() {
        let r = route(r#"select * from /messages/* into brokeredendpoint("/modules/m/inputs/i")"#);
        assert_eq!(
            r.sink,
            Sink::Module {
                module: "m".into(),
                input: "i".into()
            }
        );
        assert_eq!(route("FROM /* INTO $UPSTREAM").sink, Sink::Upstream);
    }

    #[test]
    fn manifest_object_form_with_priority_and_ttl() {
        let m: Value = serde_json::from_str(&format!(
            r#"{{"modulesContent":{{"$edgeHub":{{"properties.desired":{{"routes":{{
                "a":{},
                "b":{{"route":"FROM /* INTO $upstream","priority":3,"timeToLiveSecs":60}}}}}}}}}}}}"#,
            serde_json::to_string(C2P).unwrap()
        ))
        .unwrap();
        let t = RouteTable::from_manifest(&m).unwrap();
        assert_eq!(t.routes().len(), 2);
        let b = t.routes().iter().find(|r| r.name == "b").unwrap();
        assert_eq!((b.priority, b.time_to_live_secs), (3, Some(60)));
        assert_eq!(
            RouteTable::from_manifest(&serde_json::json!({})).unwrap_err(),
            RouteError::NoRoutes
        );
        let bad = serde_json::json!({"modulesContent":{"$edgeHub":{"properties.desired":{"routes":{"x":{"route":"FROM /* INTO $upstream","priority":12}}}}}});
        assert!(RouteTable::from_manifest(&bad)
            .unwrap_err()
            .to_string()
            .contains("\"x\""));
    }

    #[test]
    fn where_conditions() {
        let mut p = Props::default();
        p.sys.insert("connectionModuleId", "consumer");
        p.app.insert("color", "blue");
        p.app.insert("level", "3");
        let cases = [
            ("color = 'blue'", true),
            ("color != 'blue'", false),
            ("color <> 'red'", true),
            ("$connectionModuleId = 'consumer'", true),
            (
                "{$connectionModuleId} = 'consumer' AND {color} = 'blue'",
                true,
            ),
            ("level = 3", true),
            ("level = 4", false),
            ("color = 'red' OR level = 3", true),
            ("NOT (color = 'red')", true),
            ("NOT color = 'blue' OR level = 3", true),
            ("color = 'red' OR level = 3 AND color = 'x'", false),
            ("IS_DEFINED(color)", true),
            ("is_defined($connectionDeviceId)", false),
            ("NOT IS_DEFINED(missing)", true),
            // Undefined on either side makes both = and != false.
            ("missing = 'x'", false),
            ("missing != 'x'", false),
            ("true", true),
            ("(color = 'blue') AND (false OR level = 3)", true),
        ];
        for (cond, expected) in cases {
            let r = route(&format!("FROM /messages/* WHERE {cond} INTO $upstream"));
            assert_eq!(
                r.matches("/messages/modules/consumer/outputs/o", &p),
                expected,
                "{cond}"
            );
        }
    }

    #[test]
    fn refusals_name_the_route_and_the_part() {
        for (text, part) in [
            (
                "FROM /* WHERE contains(color, 'b') INTO $upstream",
                "function contains",
            ),
            (
                "FROM /* WHERE $body.temperature = 1 INTO $upstream",
                "$body.temperature",
            ),
            ("FROM /* WHERE level < 3 INTO $upstream", "operator <"),
            ("FROM /* WHERE level >= 3 INTO $upstream", "operator >="),
            ("FROM /* WHERE level + 1 = 3 INTO $upstream", "operator +"),
        ] {
            let e = err(text);
            assert!(
                e.contains("\"R1\"") && e.contains("unsupported") && e.contains(part),
                "{text}: {e}"
            );
        }
        for (text, says) in [
            ("", "empty"),
            ("FROM /*", "INTO"),
            ("/messages/* INTO $upstream", "FROM"),
            ("FROM messages INTO $upstream", "source"),
            ("FROM /* WHERE color = 'x INTO $upstream", "INTO"),
            ("FROM /* WHERE (color = 'x' INTO $upstream", "')'"),
            ("FROM /* WHERE INTO $upstream", "condition"),
            ("FROM /* WHERE color INTO $upstream", "alone"),
            ("SELECT a FROM /* INTO $upstream", "SELECT *"),
        ] {
            let e = err(text);
            assert!(e.contains("\"R1\"") && e.contains(says), "{text:?}: {e}");
        }
        for sink in [
            "Nowhere(\"x\")",
            "BrokeredEndpoint(\"/modules/m\")",
            "BrokeredEndpoint(/modules/m/inputs/i)",
            "BrokeredEndpoint(\"/modules//inputs/i\")",
            "$downstream",
        ] {
            let e = err(&format!("FROM /* INTO {sink}"));
            assert!(e.contains("\"R1\"") && e.contains("sink"), "{sink}: {e}");
        }
    }

    #[test]
    fn no_input_panics() {
        let pieces = [
            "FROM",
            "WHERE",
            "INTO",
            "SELECT",
            "*",
            "/",
            "/messages",
            "(",
            ")",
            "'",
            "'a'",
            "=",
            "!=",
            "<>",
            "AND",
            "OR",
            "NOT",
            "IS_DEFINED",
            "$x",
            "{",
            "}",
            "$upstream",
            "BrokeredEndpoint(\"/modules/m/inputs/i\")",
            "é",
            "1",
            "\"",
            " ",
        ];
        let mut seed = 0x2545F4914F6CDD1Du64;
        let p = Props::default();
        for _ in 0..3000 {
            let mut s = String::new();
            for _ in 0..(seed % 12) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                s.push_str(pieces[(seed % pieces.len() as u64) as usize]);
                s.push(' ');
            }
            if let Ok(r) = RouteTable::parse("fuzz", &s) {
                let _ = r.matches("/messages/modules/a/outputs/b", &p);
            }
            for cut in 0..s.len() {
                if s.is_char_boundary(cut) {
                    let _ = RouteTable::parse("fuzz", &s[..cut]);
                }
            }
        }
    }
}
