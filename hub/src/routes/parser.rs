//! The route parser: `[SELECT *] FROM <source> [WHERE <condition>] INTO <sink>` (Route.g4).

mod where_clause;

use super::lexer::{lex, Kind, Token};
use super::{Condition, Route, RouteError, RouteTable, Sink, Source};

impl RouteTable {
    /// Parses one route's text; the default (lowest) priority and no TTL (the manifest's object form sets those).
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
            priority: super::DEFAULT_PRIORITY,
            time_to_live_secs: None,
        })
    }
}

/// edgeHub treats `*` as a wildcard only by trimming it off the end of the path; say so when a
/// route looks like it expects more.
pub(super) fn wildcard_warning(items: &[String]) -> Option<String> {
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

struct Parsed {
    source: Source,
    items: Vec<String>,
    condition: Option<Condition>,
    sink: Sink,
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
