//! pest → AST. The only module that sees pest types: everything it returns is ours.

use std::collections::BTreeSet;
use std::sync::{LazyLock, Mutex};

use pest::Parser as _;
use pest::iterators::{Pair, Pairs};
use pest::pratt_parser::{Assoc, Op, PrattParser};

use super::ast::*;
use crate::diagnostic::{Code, Diagnostic, Span};

#[derive(pest_derive::Parser)]
#[grammar = "../grammar/scale.pest"]
struct ScaleParser;

/// Deeper nesting of `(`, `{` or `[` than this is refused before pest sees the text:
/// pest parses recursively, and its stack must stay bounded whatever the input.
pub const MAX_NESTING: usize = 48;
/// Operators and operands in one expression, nested ones included.
pub const MAX_EXPR_TERMS: usize = 512;

static PRATT: LazyLock<PrattParser<Rule>> = LazyLock::new(|| {
    PrattParser::new()
        .op(Op::infix(Rule::or, Assoc::Left))
        .op(Op::infix(Rule::and, Assoc::Left))
        .op(Op::prefix(Rule::not))
        .op(Op::infix(Rule::gt, Assoc::Left)
            | Op::infix(Rule::ge, Assoc::Left)
            | Op::infix(Rule::lt, Assoc::Left)
            | Op::infix(Rule::le, Assoc::Left)
            | Op::infix(Rule::eq, Assoc::Left)
            | Op::infix(Rule::ne, Assoc::Left))
        // `a ?? b` binds looser than arithmetic and tighter than comparisons (§3).
        .op(Op::infix(Rule::fallback, Assoc::Left))
        .op(Op::infix(Rule::add, Assoc::Left) | Op::infix(Rule::sub, Assoc::Left))
        .op(Op::infix(Rule::mul, Assoc::Left) | Op::infix(Rule::div, Assoc::Left))
        .op(Op::prefix(Rule::neg))
});

/// The most rule calls one parse may make. Parsing is linear in its input (the
/// recovery rules never scan text twice; `tests/parse_work.rs` holds each hostile
/// shape to a budget per byte), so a policy file of the largest size allowed needs a
/// small fraction of this: the fuse only turns a grammar mistake into an error instead
/// of a hang.
pub const MAX_RULE_CALLS: usize = 1 << 28;

static FUSE: std::sync::Once = std::sync::Once::new();

/// Parse one file. Syntax errors are reported per statement; the tree holds an
/// `Error` node where a statement could not be read.
/// A file without a syntax error is read by the fast path (`syntax::fast`), which
/// builds the same tree; pest reads the rest, and recovers.
pub fn parse(text: &str, file: usize) -> (File, Vec<Diagnostic>) {
    if nesting_guard(text, file).is_none()
        && let Some(tree) = super::fast::parse(text)
    {
        return (tree, Vec::new());
    }
    parse_with_pest(text, file)
}

/// Parse one file with pest alone (the fast path's reference).
pub(super) fn parse_with_pest(text: &str, file: usize) -> (File, Vec<Diagnostic>) {
    FUSE.call_once(|| pest::set_call_limit(std::num::NonZeroUsize::new(MAX_RULE_CALLS)));
    let mut builder = Builder {
        file,
        text,
        diagnostics: Vec::new(),
        terms: 0,
    };
    if let Some(diagnostic) = nesting_guard(text, file) {
        return (File::default(), vec![diagnostic]);
    }
    let tree = match ScaleParser::parse(Rule::file, text) {
        Ok(mut pairs) => match pairs.next() {
            Some(file_pair) => builder.file(file_pair),
            None => File::default(),
        },
        Err(error) if is_out_of_work(&error) => {
            builder.diagnostics.push(
                Diagnostic::new(
                    Code::TooComplex,
                    file,
                    Span::new(0, 0),
                    "this file needs too much work to parse",
                )
                .label(format!("more than {MAX_RULE_CALLS} grammar steps"))
                .help("split the policies over several files"),
            );
            File::default()
        }
        Err(error) => {
            // The recovery rules make this rare (an unterminated block at the end of
            // the file, for one): report pest's error as it is.
            builder
                .diagnostics
                .push(syntax_diagnostic(&error, text, 0, file));
            File::default()
        }
    };
    (tree, builder.diagnostics)
}

/// pest's own limits (rule calls, native stack) end a parse with a custom error.
fn is_out_of_work(error: &pest::error::Error<Rule>) -> bool {
    matches!(
        &error.variant,
        pest::error::ErrorVariant::CustomError { message } if message.ends_with("limit reached")
    )
}

/// How many threads are re-parsing an error right now.
static DETAIL_USERS: Mutex<usize> = Mutex::new(0);

/// Run a parse with pest's expected-token detail on. pest reads that switch (a global)
/// when a parse starts, and it slows every parse by a quarter, so it is on only while
/// some thread re-parses an error for its message. Other threads' parses that start
/// meanwhile only run a little slower.
fn with_detail<T>(parse: impl FnOnce() -> T) -> T {
    {
        let mut users = DETAIL_USERS.lock().unwrap_or_else(|e| e.into_inner());
        *users += 1;
        if *users == 1 {
            pest::set_error_detail(true);
        }
    }
    let out = parse();
    let mut users = DETAIL_USERS.lock().unwrap_or_else(|e| e.into_inner());
    *users = users.saturating_sub(1);
    if *users == 0 {
        pest::set_error_detail(false);
    }
    out
}

struct Builder<'t> {
    file: usize,
    text: &'t str,
    diagnostics: Vec<Diagnostic>,
    /// Terms counted in the expression being built, for `MAX_EXPR_TERMS`.
    terms: usize,
}

/// The span of a pair without the whitespace and comments pest leaves at its end: a
/// rule that ends in `x*` or `x?` swallows the trivia after it, because the implicit
/// skip comes before the (possibly empty) repetition.
fn span_of(pair: &Pair<'_, Rule>) -> Span {
    let s = pair.as_span();
    Span::new(s.start(), trimmed_end(pair))
}

fn trimmed_end(pair: &Pair<'_, Rule>) -> usize {
    let end = pair.as_span().end();
    let Some(last) = pair.clone().into_inner().last() else {
        // A leaf: only the recovery rules can end in white space (blank lines before
        // the next statement), and a span never covers it.
        return pair.as_span().start() + pair.as_str().trim_end().len();
    };
    let last_end = trimmed_end(&last);
    let rest = pair.get_input().get(last_end..end).unwrap_or("");
    if is_trivia(rest) { last_end } else { end }
}

fn is_trivia(text: &str) -> bool {
    let mut rest = text;
    loop {
        rest = rest.trim_start();
        match rest.strip_prefix('#') {
            Some(comment) => rest = comment.find('\n').map_or("", |i| &comment[i..]),
            None => return rest.is_empty(),
        }
    }
}

/// The pairs of the grammar that carry meaning: keywords are dropped.
fn significant<'i>(pairs: Pairs<'i, Rule>) -> impl Iterator<Item = Pair<'i, Rule>> {
    pairs.filter(|p| !is_keyword(p.as_rule()))
}

impl<'t> Builder<'t> {
    fn file(&mut self, pair: Pair<'_, Rule>) -> File {
        let mut items = Vec::new();
        for child in pair.into_inner() {
            match child.as_rule() {
                Rule::policy => items.push(TopItem::Policy(self.policy(child))),
                Rule::top_error => {
                    self.recover(&child, Rule::policy_only);
                    items.push(TopItem::Error(span_of(&child)));
                }
                _ => {}
            }
        }
        File { items }
    }

    /// Report the syntax error inside a recovery node by parsing its text again with a
    /// strict rule, which fails where the statement went wrong.
    fn recover(&mut self, pair: &Pair<'_, Rule>, strict: Rule) {
        let offset = pair.as_span().start();
        let diagnostic = match with_detail(|| ScaleParser::parse(strict, pair.as_str())) {
            Err(error) => syntax_diagnostic(&error, self.text, offset, self.file),
            Ok(_) => Diagnostic::new(
                Code::Syntax,
                self.file,
                span_of(pair),
                "cannot read this statement",
            ),
        };
        self.diagnostics.push(diagnostic);
    }

    fn policy(&mut self, pair: Pair<'_, Rule>) -> Policy {
        let span = span_of(&pair);
        let mut inner = significant(pair.into_inner());
        let name = match inner.next() {
            Some(p) => self.string(p),
            None => Node::new(
                Str {
                    value: String::new(),
                    raw: String::new(),
                },
                span,
            ),
        };
        let stmts = inner.map(|p| self.stmt(p)).collect();
        Policy { name, stmts, span }
    }

    fn stmt(&mut self, pair: Pair<'_, Rule>) -> Node<Stmt> {
        let span = span_of(&pair);
        let rule = pair.as_rule();
        if rule == Rule::error_stmt {
            self.recover(&pair, Rule::stmt_only);
            return Node::new(Stmt::Error, span);
        }
        let mut inner = significant(pair.into_inner());
        let stmt = match self.stmt_body(rule, &mut inner) {
            Some(stmt) => stmt,
            None => {
                // Unreachable for a tree the grammar accepted; keep going regardless.
                self.diagnostics.push(Diagnostic::new(
                    Code::Syntax,
                    self.file,
                    span,
                    "cannot read this statement",
                ));
                Stmt::Error
            }
        };
        Node::new(stmt, span)
    }

    fn stmt_body<'i>(
        &mut self,
        rule: Rule,
        inner: &mut impl Iterator<Item = Pair<'i, Rule>>,
    ) -> Option<Stmt> {
        Some(match rule {
            Rule::target_stmt => Stmt::Target {
                actuator: ident(inner.next()?),
                id: self.string(inner.next()?),
            },
            Rule::replicas_stmt => Stmt::Replicas {
                min: quantity(inner.next()?),
                max: quantity(inner.next()?),
            },
            Rule::every_stmt => Stmt::Every(quantity(inner.next()?)),
            Rule::metric_stmt => Stmt::Metric {
                name: ident(inner.next()?),
                source: ident(inner.next()?),
                query: self.string(inner.next()?),
            },
            Rule::let_stmt => Stmt::Let {
                name: ident(inner.next()?),
                expr: self.expr_root(inner.next()?),
            },
            Rule::current_stmt => Stmt::CurrentFrom(ident(inner.next()?)),
            Rule::timezone_stmt => Stmt::Timezone(self.string(inner.next()?)),
            Rule::dry_run_stmt => Stmt::DryRun,
            Rule::track_stmt => {
                let expr = self.expr_root(inner.next()?);
                let target = inner.next()?;
                let value = quantity(significant(target.clone().into_inner()).next()?);
                let target = match target.as_rule() {
                    Rule::track_per => TrackTarget::PerReplica(value),
                    _ => TrackTarget::At(value),
                };
                Stmt::Track { expr, target }
            }
            Rule::desired_stmt => Stmt::Desired(self.expr_root(inner.next()?)),
            Rule::when_stmt => {
                let cond = self.expr_root(inner.next()?);
                let mut next = inner.next()?;
                let mut sustain = None;
                if next.as_rule() == Rule::sustain {
                    sustain = Some(quantity(significant(next.into_inner()).next()?));
                    next = inner.next()?;
                }
                let rule = next.as_rule();
                // `scale up by N`: `up` stays in the tree (it is a direction elsewhere).
                let value = next.into_inner().last()?;
                let action = match rule {
                    Rule::scale_up => Action::Up(quantity(value)),
                    Rule::scale_down => Action::Down(quantity(value)),
                    _ => Action::To(self.expr_root(value)),
                };
                Stmt::When {
                    cond,
                    sustain,
                    action,
                }
            }
            Rule::buffer_stmt => Stmt::Buffer(quantity(inner.next()?)),
            Rule::tolerance_stmt => Stmt::Tolerance(quantity(inner.next()?)),
            Rule::missing_stmt => match inner.next() {
                None => Stmt::OnMissing(Missing::Hold),
                Some(scale) => {
                    let mut values = significant(scale.into_inner());
                    Stmt::OnMissing(Missing::ScaleTo {
                        replicas: quantity(values.next()?),
                        after: quantity(values.next()?),
                    })
                }
            },
            Rule::stabilize_stmt => Stmt::Stabilize {
                direction: direction(inner.next()?)?,
                window: quantity(inner.next()?),
            },
            Rule::cooldown_stmt => Stmt::Cooldown {
                direction: direction(inner.next()?)?,
                window: quantity(inner.next()?),
            },
            Rule::limit_stmt => {
                let direction = direction(inner.next()?)?;
                let limit = match inner.next() {
                    // `disabled` is a keyword, so `significant` dropped it.
                    None => Limit::Disabled,
                    Some(p) if p.as_rule() == Rule::limit_rate => {
                        let mut values = significant(p.into_inner());
                        Limit::Rate {
                            amount: quantity(values.next()?),
                            per: quantity(values.next()?),
                        }
                    }
                    Some(p) => {
                        let which = p.into_inner().last()?;
                        if which.as_rule() == Rule::kw_min {
                            Limit::SelectMin
                        } else {
                            Limit::SelectMax
                        }
                    }
                };
                Stmt::Limit { direction, limit }
            }
            Rule::schedule => {
                let name = self.string(inner.next()?);
                let stmts = inner.map(|p| self.sched_stmt(p)).collect();
                Stmt::Schedule(Schedule { name, stmts })
            }
            _ => return None,
        })
    }

    fn sched_stmt(&mut self, pair: Pair<'_, Rule>) -> Node<SchedStmt> {
        let span = span_of(&pair);
        let stmt = match pair.as_rule() {
            Rule::sched_error => {
                self.recover(&pair, Rule::sched_stmt_only);
                Some(SchedStmt::Error)
            }
            Rule::window_stmt => self.window(pair).map(SchedStmt::Window),
            _ => effect(pair).map(SchedStmt::Effect),
        };
        let stmt = stmt.unwrap_or_else(|| {
            self.diagnostics.push(Diagnostic::new(
                Code::Syntax,
                self.file,
                span,
                "cannot read this line",
            ));
            SchedStmt::Error
        });
        Node::new(stmt, span)
    }

    fn window(&mut self, pair: Pair<'_, Rule>) -> Option<Window> {
        let mut inner = pair.into_inner();
        let kind_pair = inner.next()?;
        let kind = match kind_pair.as_rule() {
            Rule::weekly => {
                let mut parts = significant(kind_pair.into_inner());
                let days = parts.next()?.into_inner().filter_map(day_item).collect();
                WindowKind::Weekly {
                    days,
                    from: text_node(parts.next()?),
                    to: text_node(parts.next()?),
                }
            }
            Rule::oneoff => {
                let mut parts = significant(kind_pair.into_inner());
                WindowKind::OneOff {
                    from: text_node(parts.next()?),
                    to: text_node(parts.next()?),
                }
            }
            _ => {
                let mut parts = significant(kind_pair.into_inner());
                WindowKind::Cron {
                    expr: self.string(parts.next()?),
                    duration: quantity(parts.next()?),
                }
            }
        };
        let mut window = Window {
            kind,
            zone: None,
            except: Vec::new(),
        };
        for part in inner {
            match part.as_rule() {
                Rule::zone => {
                    window.zone = Some(self.string(significant(part.into_inner()).next()?))
                }
                _ => window.except = significant(part.into_inner()).map(text_node).collect(),
            }
        }
        Some(window)
    }

    fn string(&mut self, pair: Pair<'_, Rule>) -> Node<Str> {
        let span = span_of(&pair);
        let raw = pair.as_str().to_string();
        let value = match pair.into_inner().next() {
            Some(inner) if inner.as_rule() == Rule::raw_string => raw_string_value(inner.as_str()),
            _ => self.unescape(&raw, span),
        };
        Node::new(Str { value, raw }, span)
    }

    fn unescape(&mut self, raw: &str, span: Span) -> String {
        let body = raw
            .strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .unwrap_or(raw);
        let mut out = String::with_capacity(body.len());
        let mut chars = body.char_indices();
        while let Some((i, c)) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            let next = chars.next();
            match next.and_then(|(_, c)| escaped(c)) {
                Some(e) => out.push(e),
                None => {
                    let start = span.start + 1 + i;
                    let len = 1 + next.map_or(0, |(_, c)| c.len_utf8());
                    let shown = next.map_or(String::new(), |(_, c)| c.to_string());
                    self.diagnostics.push(
                        Diagnostic::new(
                            Code::InvalidEscape,
                            self.file,
                            Span::new(start, start + len),
                            format!("unknown escape `\\{shown}`"),
                        )
                        .label("not an escape")
                        .help("strings know `\\\"`, `\\\\`, `\\n` and `\\t`; for PromQL with quotes, use a raw string: r#\"...\"#"),
                    );
                }
            }
        }
        out
    }

    fn expr_root(&mut self, pair: Pair<'_, Rule>) -> Node<Expr> {
        self.terms = 0;
        let span = span_of(&pair);
        match self.expr(pair) {
            Ok(expr) => expr,
            Err(()) => {
                self.diagnostics.push(
                    Diagnostic::new(Code::TooComplex, self.file, span, "expression is too long")
                        .label(format!("more than {MAX_EXPR_TERMS} terms"))
                        .help("split it into `let` statements"),
                );
                Node::new(
                    Expr::Number(Quantity {
                        digits: "0".into(),
                        unit: None,
                    }),
                    span,
                )
            }
        }
    }

    /// Err(()) when the expression exceeds `MAX_EXPR_TERMS`.
    fn expr(&mut self, pair: Pair<'_, Rule>) -> Result<Node<Expr>, ()> {
        let pairs = pair.into_inner();
        self.terms += pairs.len();
        if self.terms > MAX_EXPR_TERMS {
            return Err(());
        }
        PRATT
            .map_primary(|p| self.primary(p))
            .map_prefix(|op, rhs| {
                let rhs = rhs?;
                let span = span_of(&op).to(rhs.span);
                let op = if op.as_rule() == Rule::not {
                    UnOp::Not
                } else {
                    UnOp::Neg
                };
                Ok(Node::new(Expr::Unary(op, Box::new(rhs)), span))
            })
            .map_infix(|lhs, op, rhs| {
                let (lhs, rhs) = (lhs?, rhs?);
                let span = lhs.span.to(rhs.span);
                Ok(Node::new(
                    Expr::Binary(bin_op(op.as_rule()), Box::new(lhs), Box::new(rhs)),
                    span,
                ))
            })
            .parse(pairs)
    }

    fn primary(&mut self, pair: Pair<'_, Rule>) -> Result<Node<Expr>, ()> {
        let span = span_of(&pair);
        let expr = match pair.as_rule() {
            Rule::quantity => Expr::Number(quantity(pair).node),
            Rule::current => Expr::Current,
            Rule::reference => Expr::Name(pair.as_str().to_string()),
            Rule::paren => match pair.into_inner().next() {
                Some(inner) => Expr::Paren(Box::new(self.expr(inner)?)),
                None => return Err(()),
            },
            _ => {
                // Rule::call
                let mut inner = pair.into_inner();
                let Some(name) = inner.next() else {
                    return Err(());
                };
                let args = inner.map(|a| self.expr(a)).collect::<Result<Vec<_>, _>>()?;
                Expr::Call(ident(name), args)
            }
        };
        Ok(Node::new(expr, span))
    }
}

fn bin_op(rule: Rule) -> BinOp {
    match rule {
        Rule::add => BinOp::Add,
        Rule::sub => BinOp::Sub,
        Rule::mul => BinOp::Mul,
        Rule::div => BinOp::Div,
        Rule::gt => BinOp::Gt,
        Rule::ge => BinOp::Ge,
        Rule::lt => BinOp::Lt,
        Rule::le => BinOp::Le,
        Rule::eq => BinOp::Eq,
        Rule::ne => BinOp::Ne,
        Rule::and => BinOp::And,
        Rule::fallback => BinOp::Fallback,
        _ => BinOp::Or,
    }
}

fn ident(pair: Pair<'_, Rule>) -> Ident {
    Node::new(pair.as_str().to_string(), span_of(&pair))
}

fn text_node(pair: Pair<'_, Rule>) -> Node<String> {
    Node::new(pair.as_str().to_string(), span_of(&pair))
}

fn quantity(pair: Pair<'_, Rule>) -> Node<Quantity> {
    let span = span_of(&pair);
    let mut digits = String::new();
    let mut unit = None;
    for part in pair.into_inner() {
        match part.as_rule() {
            Rule::unit => unit = Some(text_node(part)),
            _ => digits = part.as_str().to_string(),
        }
    }
    Node::new(Quantity { digits, unit }, span)
}

fn direction(pair: Pair<'_, Rule>) -> Option<Direction> {
    match pair.into_inner().next()?.as_rule() {
        Rule::kw_up => Some(Direction::Up),
        _ => Some(Direction::Down),
    }
}

fn day_number(text: &str) -> u8 {
    DAY_NAMES
        .iter()
        .position(|d| *d == text)
        .map_or(0, |i| i as u8)
}

fn day_item(pair: Pair<'_, Rule>) -> Option<Node<DayItem>> {
    let span = span_of(&pair);
    let inner = pair.into_inner().next()?;
    let item = match inner.as_rule() {
        Rule::kw_daily => DayItem::Daily,
        Rule::day => DayItem::Day(day_number(inner.as_str())),
        _ => {
            let mut days = inner.into_inner();
            DayItem::Range(
                day_number(days.next()?.as_str()),
                day_number(days.next()?.as_str()),
            )
        }
    };
    Some(Node::new(item, span))
}

fn effect(pair: Pair<'_, Rule>) -> Option<Effect> {
    let kind = significant(pair.into_inner()).next()?;
    let rule = kind.as_rule();
    let mut values = significant(kind.into_inner()).map(quantity);
    Some(match rule {
        Rule::at_least => Effect::AtLeast(values.next()?),
        Rule::at_most => Effect::AtMost(values.next()?),
        Rule::exactly => Effect::Exactly(values.next()?),
        _ => Effect::Range(values.next()?, values.next()?),
    })
}

/// What `\c` in a plain string stands for; None for an escape the language does not know.
pub(super) fn escaped(c: char) -> Option<char> {
    Some(match c {
        '"' => '"',
        '\\' => '\\',
        'n' => '\n',
        't' => '\t',
        _ => return None,
    })
}

fn raw_string_value(raw: &str) -> String {
    let hashes = raw[1..].bytes().take_while(|&b| b == b'#').count();
    let start = 1 + hashes + 1;
    let end = raw.len().saturating_sub(1 + hashes);
    raw.get(start..end).unwrap_or_default().to_string()
}

fn is_keyword(rule: Rule) -> bool {
    keyword_text(rule).is_some()
}

fn keyword_text(rule: Rule) -> Option<&'static str> {
    Some(match rule {
        Rule::kw_policy => "policy",
        Rule::kw_target => "target",
        Rule::kw_replicas => "replicas",
        Rule::kw_every => "every",
        Rule::kw_metric => "metric",
        Rule::kw_let => "let",
        Rule::kw_current => "current",
        Rule::kw_from => "from",
        Rule::kw_timezone => "timezone",
        Rule::kw_dry_run => "dry-run",
        Rule::kw_track => "track",
        Rule::kw_at => "at",
        Rule::kw_per => "per",
        Rule::kw_replica => "replica",
        Rule::kw_desired => "desired",
        Rule::kw_when => "when",
        Rule::kw_for => "for",
        Rule::kw_scale => "scale",
        Rule::kw_by => "by",
        Rule::kw_to => "to",
        Rule::kw_buffer => "buffer",
        Rule::kw_tolerance => "tolerance",
        Rule::kw_on => "on",
        Rule::kw_missing => "missing",
        Rule::kw_hold => "hold",
        Rule::kw_after => "after",
        Rule::kw_stabilize => "stabilize",
        Rule::kw_limit => "limit",
        Rule::kw_select => "select",
        Rule::kw_disabled => "disabled",
        Rule::kw_cooldown => "cooldown",
        Rule::kw_schedule => "schedule",
        Rule::kw_in => "in",
        Rule::kw_except => "except",
        Rule::kw_cron => "cron",
        Rule::kw_exactly => "exactly",
        Rule::kw_least => "least",
        Rule::kw_most => "most",
        Rule::kw_daily => "daily",
        // `up`, `down`, `min` and `max` carry meaning where they stand (direction,
        // select), so they are not dropped by `significant`.
        _ => return None,
    })
}

/// Refuse input nested deeper than `MAX_NESTING` before pest recurses into it.
pub(super) fn nesting_guard(text: &str, file: usize) -> Option<Diagnostic> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'(' | b'{' | b'[' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Some(
                        Diagnostic::new(
                            Code::TooComplex,
                            file,
                            Span::new(i, i + 1),
                            "nesting is too deep",
                        )
                        .label(format!("more than {MAX_NESTING} levels of brackets"))
                        .help("split the expression into `let` statements"),
                    );
                }
            }
            b')' | b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    None
}

// ---------------------------------------------------------------- syntax errors

/// What the user should read for a rule in an "expected ..." list.
fn rule_description(rule: Rule) -> Option<&'static str> {
    Some(match rule {
        Rule::quantity | Rule::number => "a number",
        Rule::unit => "a unit",
        Rule::string | Rule::plain_string | Rule::raw_string => "a string",
        Rule::name | Rule::reference | Rule::call => "a name",
        Rule::expr | Rule::paren | Rule::current => "an expression",
        Rule::clock => "a time of day (`HH:MM`)",
        Rule::date => "a date (`YYYY-MM-DD`)",
        Rule::datetime => "a date and time (`YYYY-MM-DDTHH:MM`)",
        Rule::day | Rule::day_item | Rule::day_range | Rule::days | Rule::kw_daily => {
            "a day (`mon`..`sun`, `daily`)"
        }
        Rule::EOI => "end of file",
        _ => return None,
    })
}

const STATEMENT_WORDS: &[&str] = &[
    "target",
    "replicas",
    "every",
    "metric",
    "let",
    "current",
    "timezone",
    "dry-run",
    "track",
    "desired",
    "when",
    "buffer",
    "tolerance",
    "on",
    "stabilize",
    "limit",
    "cooldown",
    "schedule",
];

fn syntax_diagnostic(
    error: &pest::error::Error<Rule>,
    text: &str,
    offset: usize,
    file: usize,
) -> Diagnostic {
    let pos = offset
        + match error.location {
            pest::error::InputLocation::Pos(p) => p,
            pest::error::InputLocation::Span((s, _)) => s,
        };
    let mut expected: BTreeSet<String> = BTreeSet::new();
    if let Some(attempts) = error.parse_attempts() {
        // `ParsingToken` is not exported; its Display shows a literal as it is, a
        // character range as `a..z` and built-in rules as `BUILTIN_RULE`.
        for token in attempts.expected_tokens() {
            let token = token.to_string();
            let is_range =
                token.chars().count() == 4 && token.chars().skip(1).take(2).all(|c| c == '.');
            if token != "BUILTIN_RULE" && !is_range && !token.trim().is_empty() {
                expected.insert(format!("`{token}`"));
            }
        }
        for stack in attempts.call_stacks() {
            let rules = [stack.deepest.get_rule().copied(), stack.parent];
            if let Some(description) = rules.into_iter().flatten().find_map(rule_description) {
                expected.insert(description.to_string());
            }
        }
    }
    if let pest::error::ErrorVariant::ParsingError { positives, .. } = &error.variant {
        for rule in positives {
            if let Some(word) = keyword_text(*rule) {
                expected.insert(format!("`{word}`"));
            } else if let Some(description) = rule_description(*rule) {
                expected.insert(description.to_string());
            }
        }
    }
    // A list of every statement keyword reads better as one phrase.
    let statements = STATEMENT_WORDS
        .iter()
        .filter(|w| expected.contains(&format!("`{w}`")))
        .count();
    if statements >= 4 {
        for word in STATEMENT_WORDS {
            expected.remove(&format!("`{word}`"));
        }
        expected.insert("a statement".to_string());
    }
    // Parts of words (`up` inside `update`) and digits of a number say nothing useful.
    // A string is named as such, not by its opening characters.
    if expected.contains("a string") {
        expected.remove("`\"`");
        expected.remove("`r`");
    }
    const DAYS: [&str; 8] = [
        "`mon`", "`tue`", "`wed`", "`thu`", "`fri`", "`sat`", "`sun`", "`daily`",
    ];
    if DAYS.iter().any(|d| expected.contains(*d)) {
        for day in DAYS {
            expected.remove(day);
        }
        expected.insert("a day (`mon`..`sun`, `daily`)".to_string());
    }
    // `#` opens a comment, which may stand anywhere: listing it says nothing.
    expected.remove("`-`");
    expected.remove("`#`");
    let found = found_token(text, pos);
    let message = match expected.len() {
        0 => format!("unexpected {}", found.1),
        1 => format!("expected {}, found {}", join(&expected), found.1),
        _ => format!("expected one of {}, found {}", join(&expected), found.1),
    };
    let label = if found.0.is_empty() {
        "expected here".to_string()
    } else {
        "unexpected".to_string()
    };
    Diagnostic::new(Code::Syntax, file, found.0, message).label(label)
}

fn join(items: &BTreeSet<String>) -> String {
    let items: Vec<&str> = items.iter().map(String::as_str).collect();
    match items.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {}", rest.join(", "), last),
        _ => items.join(""),
    }
}

/// The token at `pos` (up to the next space or punctuation) and how to name it.
fn found_token(text: &str, pos: usize) -> (Span, String) {
    let mut pos = pos.min(text.len());
    while !text.is_char_boundary(pos) {
        pos -= 1;
    }
    let rest = &text[pos..];
    let Some(first) = rest.chars().next() else {
        return (Span::new(pos, pos), "end of file".to_string());
    };
    let len = if first.is_alphanumeric() || first == '_' {
        rest.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.' || c == '-'))
            .unwrap_or(rest.len())
    } else {
        first.len_utf8()
    };
    if first == '\n' || first == '\r' {
        return (Span::new(pos, pos), "end of line".to_string());
    }
    (
        Span::new(pos, pos + len),
        format!("`{}`", rest[..len].escape_debug()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> File {
        let (file, diagnostics) = parse(text, 0);
        assert!(diagnostics.is_empty(), "{diagnostics:#?}");
        file
    }

    fn first_stmt(file: &File) -> &Stmt {
        match &file.items[0] {
            TopItem::Policy(p) => &p.stmts[0].node,
            TopItem::Error(_) => unreachable!("not a policy"),
        }
    }

    #[test]
    fn precedence_follows_arithmetic_then_comparison_then_logic() {
        let file = parse_ok(r#"policy "p" { let x = not a + b * c > 2 and d }"#);
        let Stmt::Let { expr, .. } = first_stmt(&file) else {
            unreachable!()
        };
        let Expr::Binary(BinOp::And, lhs, _) = &expr.node else {
            unreachable!("{expr:?}")
        };
        let Expr::Unary(UnOp::Not, cmp) = &lhs.node else {
            unreachable!("{lhs:?}")
        };
        let Expr::Binary(BinOp::Gt, sum, _) = &cmp.node else {
            unreachable!("{cmp:?}")
        };
        let Expr::Binary(BinOp::Add, _, product) = &sum.node else {
            unreachable!("{sum:?}")
        };
        assert!(matches!(product.node, Expr::Binary(BinOp::Mul, _, _)));
    }

    #[test]
    fn raw_strings_keep_quotes_and_hashes() {
        let file = parse_ok(r##"policy "p" { metric m = prometheus r#"sum(x{a="b"})"# }"##);
        let Stmt::Metric { query, .. } = first_stmt(&file) else {
            unreachable!()
        };
        assert_eq!(query.value, r#"sum(x{a="b"})"#);
    }

    #[test]
    fn every_broken_statement_is_reported() {
        let text =
            "policy \"p\" {\n  replicas 2..\n  every 15s\n  track cpu at\n  cooldown down 5m\n}\n";
        let (file, diagnostics) = parse(text, 0);
        assert_eq!(diagnostics.len(), 2, "{diagnostics:#?}");
        let TopItem::Policy(policy) = &file.items[0] else {
            unreachable!()
        };
        assert_eq!(policy.stmts.len(), 4);
        assert!(matches!(policy.stmts[1].node, Stmt::Every(_)));
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let text = format!(
            "policy \"p\" {{ let x = {}1{} }}",
            "(".repeat(100_000),
            ")".repeat(100_000)
        );
        let (_, diagnostics) = parse(&text, 0);
        assert_eq!(diagnostics[0].code, Code::TooComplex);
    }

    #[test]
    fn long_prefix_chains_are_refused() {
        let text = format!("policy \"p\" {{ let x = {}1 }}", "- ".repeat(10_000));
        let (_, diagnostics) = parse(&text, 0);
        assert_eq!(diagnostics[0].code, Code::TooComplex);
    }
}
