//! Expressions: names resolved to metric and `let` indices, functions to `Func`,
//! numbers normalised, and the two types (number, condition) checked.

use std::collections::{HashMap, HashSet};

use crate::diagnostic::{Code, Diagnostic, Span};
use crate::model::{self, Func};
use crate::syntax::ast::{self, BinOp, Node, UnOp};

use super::suggest::did_you_mean;
use super::values;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Number,
    Condition,
    /// An error was already reported inside: no further type errors about it.
    Unknown,
}

impl Ty {
    fn describe(self) -> &'static str {
        match self {
            Ty::Number => "a number",
            Ty::Condition => "a condition",
            Ty::Unknown => "a value",
        }
    }
}

/// The names an expression may use at one point of a policy.
pub struct Scope<'a> {
    pub file: usize,
    pub metrics: &'a HashMap<String, usize>,
    /// `let`s defined above the current statement, with their types.
    pub lets: &'a HashMap<String, (usize, Ty)>,
    /// Every `let` of the policy, for "defined later" help.
    pub all_lets: &'a HashMap<String, Span>,
    pub used_metrics: &'a mut HashSet<usize>,
    pub used_lets: &'a mut HashSet<usize>,
}

impl Scope<'_> {
    /// Lower an expression that must have type `want`; `place` names the statement.
    pub fn lower_as(
        &mut self,
        expr: &Node<ast::Expr>,
        want: Ty,
        place: &str,
        diags: &mut Vec<Diagnostic>,
    ) -> model::Expr {
        let (lowered, ty) = self.lower(expr, diags);
        if ty != want && ty != Ty::Unknown {
            let help = match want {
                Ty::Condition => "compare it with something, e.g. `cpu > 80%`",
                _ => "a comparison or `and`/`or` is true or false, not a number",
            };
            diags.push(
                Diagnostic::new(
                    Code::TypeMismatch,
                    self.file,
                    expr.span,
                    format!("{place} needs {}, found {}", want.describe(), ty.describe()),
                )
                .label(format!("this is {}", ty.describe()))
                .help(help),
            );
        }
        lowered
    }

    pub fn lower(
        &mut self,
        expr: &Node<ast::Expr>,
        diags: &mut Vec<Diagnostic>,
    ) -> (model::Expr, Ty) {
        match &expr.node {
            ast::Expr::Number(q) => {
                match values::evaluate(&Node::new(q.clone(), expr.span), self.file) {
                    Ok(v) => (model::Expr::Number(v.number), Ty::Number),
                    Err(d) => {
                        diags.push(d);
                        (model::Expr::Number(0.0), Ty::Unknown)
                    }
                }
            }
            ast::Expr::Current => (model::Expr::Current, Ty::Number),
            ast::Expr::Name(name) => self.name(name, expr.span, diags),
            ast::Expr::Paren(inner) => self.lower(inner, diags),
            ast::Expr::Unary(op, inner) => {
                let (want, ctor): (Ty, fn(Box<model::Expr>) -> model::Expr) = match op {
                    UnOp::Neg => (Ty::Number, model::Expr::Neg),
                    UnOp::Not => (Ty::Condition, model::Expr::Not),
                };
                let (lowered, ty) = self.lower(inner, diags);
                let ty = self.operand(
                    inner,
                    ty,
                    want,
                    if *op == UnOp::Neg { "`-`" } else { "`not`" },
                    diags,
                );
                (
                    ctor(Box::new(lowered)),
                    if ty == Ty::Unknown { Ty::Unknown } else { want },
                )
            }
            ast::Expr::Binary(BinOp::Fallback, lhs, rhs) => self.fallback(lhs, rhs, diags),
            ast::Expr::Binary(op, lhs, rhs) => {
                let (operand, result) = if op.is_logical() {
                    (Ty::Condition, Ty::Condition)
                } else if op.is_comparison() {
                    (Ty::Number, Ty::Condition)
                } else {
                    (Ty::Number, Ty::Number)
                };
                let what = format!("`{}`", op.as_str());
                let (l, lt) = self.lower(lhs, diags);
                let (r, rt) = self.lower(rhs, diags);
                let lt = self.operand(lhs, lt, operand, &what, diags);
                let rt = self.operand(rhs, rt, operand, &what, diags);
                let ty = if lt == Ty::Unknown || rt == Ty::Unknown {
                    Ty::Unknown
                } else {
                    result
                };
                (
                    model::Expr::Binary(lower_op(*op), Box::new(l), Box::new(r)),
                    ty,
                )
            }
            ast::Expr::Call(name, args) => self.call(name, args, expr.span, diags),
        }
    }

    /// `a ?? b`: both sides of one type (numbers, or conditions), which is the result's.
    fn fallback(
        &mut self,
        lhs: &Node<ast::Expr>,
        rhs: &Node<ast::Expr>,
        diags: &mut Vec<Diagnostic>,
    ) -> (model::Expr, Ty) {
        let (l, lt) = self.lower(lhs, diags);
        let (r, rt) = self.lower(rhs, diags);
        let ty = match (lt, rt) {
            (Ty::Unknown, _) | (_, Ty::Unknown) => Ty::Unknown,
            (a, b) if a == b => a,
            (a, _) => self.operand(rhs, rt, a, "`??`", diags),
        };
        (
            model::Expr::Binary(model::BinOp::Fallback, Box::new(l), Box::new(r)),
            ty,
        )
    }

    /// Report an operand of the wrong type; the result is `Unknown` after an error.
    fn operand(
        &self,
        expr: &Node<ast::Expr>,
        ty: Ty,
        want: Ty,
        op: &str,
        diags: &mut Vec<Diagnostic>,
    ) -> Ty {
        if ty == want || ty == Ty::Unknown {
            return ty;
        }
        let help = if want == Ty::Condition {
            "combine comparisons, e.g. `cpu > 80% and memory > 1GiB`"
        } else {
            "arithmetic works on numbers; a comparison is true or false"
        };
        diags.push(
            Diagnostic::new(
                Code::TypeMismatch,
                self.file,
                expr.span,
                format!("{op} needs {}, found {}", want.describe(), ty.describe()),
            )
            .label(format!("this is {}", ty.describe()))
            .help(help),
        );
        Ty::Unknown
    }

    fn name(&mut self, name: &str, span: Span, diags: &mut Vec<Diagnostic>) -> (model::Expr, Ty) {
        if let Some(&index) = self.metrics.get(name) {
            self.used_metrics.insert(index);
            return (model::Expr::Metric(index), Ty::Number);
        }
        if let Some(&(index, ty)) = self.lets.get(name) {
            self.used_lets.insert(index);
            return (model::Expr::Let(index), ty);
        }
        let mut diagnostic = Diagnostic::new(
            Code::UnknownName,
            self.file,
            span,
            format!("unknown name `{name}`"),
        )
        .label("not defined");
        if let Some(later) = self.all_lets.get(name) {
            diagnostic = diagnostic
                .secondary(*later, "defined here, after its use")
                .help(format!("move `let {name}` above its first use"));
        } else {
            let known = self
                .metrics
                .keys()
                .chain(self.lets.keys())
                .map(String::as_str)
                .chain(["current"]);
            diagnostic.help = did_you_mean(name, known).or_else(|| {
                Some(format!(
                    "define it with `metric {name} = prometheus \"...\"` or `let {name} = ...`"
                ))
            });
        }
        diags.push(diagnostic);
        (model::Expr::Number(0.0), Ty::Unknown)
    }

    fn call(
        &mut self,
        name: &ast::Ident,
        args: &[Node<ast::Expr>],
        span: Span,
        diags: &mut Vec<Diagnostic>,
    ) -> (model::Expr, Ty) {
        let mut lowered = Vec::with_capacity(args.len());
        let mut ty = Ty::Number;
        for arg in args {
            let (l, t) = self.lower(arg, diags);
            if self.operand(arg, t, Ty::Number, &format!("`{}`", name.node), diags) == Ty::Unknown {
                ty = Ty::Unknown;
            }
            lowered.push(l);
        }
        let Some(func) = Func::ALL.into_iter().find(|f| f.name() == name.node) else {
            let mut d = Diagnostic::new(
                Code::UnknownFunction,
                self.file,
                name.span,
                format!("unknown function `{}`", name.node),
            )
            .label("no such function");
            d.help = did_you_mean(&name.node, Func::ALL.iter().map(|f| f.name())).or_else(|| {
                Some("functions are ceil, floor, round, abs, min, max and clamp".into())
            });
            diags.push(d);
            return (model::Expr::Number(0.0), Ty::Unknown);
        };
        let (least, most) = func.arity();
        if args.len() < least || args.len() > most {
            let wanted = match (least, most) {
                (l, m) if l == m => format!("{l}"),
                (l, _) => format!("at least {l}"),
            };
            diags.push(
                Diagnostic::new(
                    Code::WrongArity,
                    self.file,
                    span,
                    format!(
                        "`{}` takes {wanted} argument{}, found {}",
                        func.name(),
                        if least == 1 && most == 1 { "" } else { "s" },
                        args.len()
                    ),
                )
                .label("here"),
            );
            return (model::Expr::Number(0.0), Ty::Unknown);
        }
        (model::Expr::Call(func, lowered), ty)
    }
}

fn lower_op(op: BinOp) -> model::BinOp {
    match op {
        BinOp::Add => model::BinOp::Add,
        BinOp::Sub => model::BinOp::Sub,
        BinOp::Mul => model::BinOp::Mul,
        BinOp::Div => model::BinOp::Div,
        BinOp::Gt => model::BinOp::Gt,
        BinOp::Ge => model::BinOp::Ge,
        BinOp::Lt => model::BinOp::Lt,
        BinOp::Le => model::BinOp::Le,
        BinOp::Eq => model::BinOp::Eq,
        BinOp::Ne => model::BinOp::Ne,
        BinOp::And => model::BinOp::And,
        BinOp::Or => model::BinOp::Or,
        BinOp::Fallback => model::BinOp::Fallback,
    }
}

/// Whether an expression refers to `BinOp` comparisons of one name against a
/// constant: `(name, op, constant)` with the name on the left.
pub fn simple_comparison(expr: &Node<ast::Expr>) -> Option<(String, BinOp, f64)> {
    let ast::Expr::Binary(op, lhs, rhs) = &strip(expr).node else {
        return None;
    };
    if !op.is_comparison() {
        return None;
    }
    let flipped = |op: BinOp| match op {
        BinOp::Gt => BinOp::Lt,
        BinOp::Ge => BinOp::Le,
        BinOp::Lt => BinOp::Gt,
        BinOp::Le => BinOp::Ge,
        other => other,
    };
    match (
        &strip(lhs).node,
        constant(rhs),
        &strip(rhs).node,
        constant(lhs),
    ) {
        (ast::Expr::Name(n), Some(c), _, _) => Some((n.clone(), *op, c)),
        (_, _, ast::Expr::Name(n), Some(c)) => Some((n.clone(), flipped(*op), c)),
        _ => None,
    }
}

fn strip(expr: &Node<ast::Expr>) -> &Node<ast::Expr> {
    match &expr.node {
        ast::Expr::Paren(inner) => strip(inner),
        _ => expr,
    }
}

fn constant(expr: &Node<ast::Expr>) -> Option<f64> {
    match &strip(expr).node {
        ast::Expr::Number(q) => values::evaluate(&Node::new(q.clone(), expr.span), 0)
            .ok()
            .map(|v| v.number),
        ast::Expr::Unary(UnOp::Neg, inner) => constant(inner).map(|c| -c),
        _ => None,
    }
}
