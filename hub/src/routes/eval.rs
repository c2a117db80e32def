//! WHERE expressions and their evaluation with edgeHub's three-valued logic.

use super::MessageProperties;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Expr {
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

/// A value at evaluation time; `Undef` is edgeHub's `undefined` (and `Bool.Undefined`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Val<'a> {
    Str(&'a str),
    Num(f64),
    Bool(bool),
    Undef,
}

pub(super) fn eval<'a>(expr: &'a Expr, props: &'a dyn MessageProperties) -> Val<'a> {
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
