//! WHERE conditions: parsed with edgeHub's precedence and checked against its static types.

use super::{quote, Parser};
use crate::routes::eval::Expr;
use crate::routes::lexer::{unescape, Kind, Token};
use crate::routes::{Condition, RouteError};

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

/// A typed WHERE expression with its span in the route text.
struct Typed {
    expr: Expr,
    ty: Ty,
    start: usize,
    end: usize,
    depth: usize,
}

impl Typed {
    /// A literal or property: one token, no nesting.
    fn leaf(expr: Expr, ty: Ty, token: Token<'_>) -> Self {
        Typed {
            expr,
            ty,
            start: token.start,
            end: token.end(),
            depth: 1,
        }
    }
}

impl<'s> Parser<'s> {
    pub(super) fn condition(&mut self) -> Result<Condition, RouteError> {
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

    /// An operand: a literal, a property, a $system property, IS_DEFINED(...) or a condition
    /// in parentheses.
    fn primary(&mut self) -> Result<Typed, RouteError> {
        let token = self.peek();
        match token.kind {
            Kind::LParen => self.parenthesized(token),
            Kind::Str => self.string(token),
            Kind::Int | Kind::Real => self.number(token),
            Kind::Hex => self.hex_number(token),
            Kind::True | Kind::False => {
                self.bump();
                let value = Expr::Bool(token.kind == Kind::True);
                Ok(Typed::leaf(value, Ty::Bool, token))
            }
            Kind::Null | Kind::Undefined => Err(self.unsupported(format!("literal {}", token.text))),
            Kind::SysProp => self.system_property_operand(token),
            Kind::LBrace => self.escaped_system_property(token),
            Kind::Id if self.peek_at(1).kind == Kind::LParen => self.function(token),
            Kind::Id => self.property(token),
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

    /// `( condition )`: the inner expression, spanning the parentheses.
    fn parenthesized(&mut self, open: Token<'s>) -> Result<Typed, RouteError> {
        self.bump();
        let inner = self.or()?;
        let expected = format!("')' to close the '(' at column {}", self.column(open.start));
        let close = self.expect(Kind::RParen, &expected)?;
        Ok(Typed {
            start: open.start,
            end: close.end(),
            ..inner
        })
    }

    /// A 'string' literal, its escapes resolved.
    fn string(&mut self, token: Token<'s>) -> Result<Typed, RouteError> {
        self.bump();
        let inner = token
            .text
            .get(1..token.text.len().saturating_sub(1))
            .unwrap_or_default();
        match unescape(inner) {
            Some(s) => Ok(Typed::leaf(Expr::Str(s), Ty::Str, token)),
            None => Err(self.syntax("a string whose \\u escapes form valid characters", token)),
        }
    }

    /// An integer or real literal.
    fn number(&mut self, token: Token<'s>) -> Result<Typed, RouteError> {
        self.bump();
        match token.text.parse::<f64>() {
            Ok(n) => Ok(Typed::leaf(Expr::Num(n), Ty::Num, token)),
            Err(_) => Err(self.syntax("a number", token)),
        }
    }

    /// A `0x` literal, read as C#'s long.TryParse(HexNumber) does: up to 16 digits, two's
    /// complement.
    fn hex_number(&mut self, token: Token<'s>) -> Result<Typed, RouteError> {
        self.bump();
        match u64::from_str_radix(token.text.get(2..).unwrap_or_default(), 16) {
            Ok(n) => Ok(Typed::leaf(Expr::Num(n as i64 as f64), Ty::Num, token)),
            Err(_) => {
                Err(self.unsupported(format!("hex literal {} (more than 64 bits)", token.text)))
            }
        }
    }

    /// `$name`: a system property.
    fn system_property_operand(&mut self, token: Token<'s>) -> Result<Typed, RouteError> {
        self.bump();
        self.system_property(token)?;
        let sys = Expr::Sys {
            written: token.text.to_owned(),
            escaped: false,
        };
        Ok(Typed::leaf(sys, Ty::Str, token))
    }

    /// `{$name}`: a system property written escaped, spanning the braces.
    fn escaped_system_property(&mut self, open: Token<'s>) -> Result<Typed, RouteError> {
        self.bump();
        let inner = self.expect(
            Kind::SysProp,
            "a $system property inside '{ }' (e.g. {$connectionModuleId})",
        )?;
        self.system_property(inner)?;
        let close = self.expect(Kind::RBrace, "'}' after the escaped $system property")?;
        let sys = Expr::Sys {
            written: inner.text.to_owned(),
            escaped: true,
        };
        Ok(Typed {
            end: close.end(),
            ..Typed::leaf(sys, Ty::Str, open)
        })
    }

    /// An application property by name.
    fn property(&mut self, token: Token<'s>) -> Result<Typed, RouteError> {
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
        Ok(Typed::leaf(
            Expr::App(token.text.to_owned()),
            Ty::Str,
            token,
        ))
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
}
