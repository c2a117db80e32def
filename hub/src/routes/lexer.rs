//! The route lexer, as GrammarLexer.g4: longest match, and the earlier rule wins a tie.

/// Token kinds in GrammarLexer.g4's rule order: on equal length the earlier kind wins, as in ANTLR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Kind {
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
pub(super) struct Token<'s> {
    pub(super) kind: Kind,
    pub(super) text: &'s str,
    /// Byte offset in the route text.
    pub(super) start: usize,
}

impl Token<'_> {
    pub(super) fn end(&self) -> usize {
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

pub(super) fn lex(text: &str) -> Vec<Token<'_>> {
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

/// `ConditionVisitor.Unescape`: first every `\uXXXX`, then `\"`, `\'`, `\\` (two passes, like
/// edgeHub's two regex replacements), in UTF-16 so surrogate pairs combine.
pub(super) fn unescape(raw: &str) -> Option<String> {
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
