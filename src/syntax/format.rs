//! The one canonical layout: two-space indents, one statement per line, single
//! spaces between tokens, at most one blank line kept between statements, comments kept
//! (a comment inside a statement moves above it). Literals are printed exactly as
//! written, so the tree of the output equals the tree of the input: formatting never
//! changes meaning, and formatting twice changes nothing.

use super::ast::*;
use super::comments::{self, Comment};
use crate::diagnostic::{Diagnostic, Span};

const INDENT: &str = "  ";

#[derive(Debug)]
pub enum FormatError {
    /// The input has syntax errors: nothing is formatted.
    Syntax(Vec<Diagnostic>),
    /// The output did not parse back to the same tree. A bug in the formatter; the
    /// input is left alone.
    Unstable(String),
}

/// Format a whole file. The output is parsed again and compared with the input's tree
/// (spans aside) before it is returned, so a formatter bug can never change a policy.
pub fn format(text: &str) -> Result<String, FormatError> {
    let (tree, diagnostics) = super::parse(text, 0);
    if !diagnostics.is_empty() {
        return Err(FormatError::Syntax(diagnostics));
    }
    let out = print(text, &tree);
    let (again, diagnostics) = super::parse(&out, 0);
    if !diagnostics.is_empty() {
        let first = diagnostics
            .first()
            .map_or(String::new(), |d| d.message.clone());
        return Err(FormatError::Unstable(format!(
            "the formatted text does not parse: {first}"
        )));
    }
    if again != tree {
        return Err(FormatError::Unstable(
            "the formatted text parses to a different policy".into(),
        ));
    }
    Ok(out)
}

fn print(text: &str, tree: &File) -> String {
    let mut printer = Printer {
        text,
        comments: comments::scan(text),
        next: 0,
        last_end: 0,
        out: String::new(),
    };
    for item in &tree.items {
        if let TopItem::Policy(policy) = item {
            printer.policy(policy);
        }
    }
    printer.rest(0, text.len());
    let mut out = printer.out;
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

/// One statement on one line, as `fmt` prints it (used to name rules in explanations).
pub fn stmt_line(stmt: &Stmt) -> String {
    let mut s = String::new();
    leaf(&mut s, stmt);
    s
}

struct Printer<'t> {
    text: &'t str,
    comments: Vec<Comment>,
    /// The next comment not yet printed.
    next: usize,
    /// Where in the source the last printed thing ended, for blank lines.
    last_end: usize,
    out: String,
}

impl Printer<'_> {
    fn line(&mut self, depth: usize, content: &str) {
        for _ in 0..depth {
            self.out.push_str(INDENT);
        }
        self.out.push_str(content);
        self.out.push('\n');
    }

    /// Keep one blank line where the source had at least one before `at`.
    fn gap(&mut self, at: usize) {
        let between = self.text.get(self.last_end..at).unwrap_or("");
        let lines: Vec<&str> = between.split('\n').collect();
        let blank = lines.len() >= 3
            && lines[1..lines.len() - 1]
                .iter()
                .any(|l| l.trim().is_empty());
        if blank
            && !self.out.is_empty()
            && !self.out.ends_with("{\n")
            && !self.out.ends_with("\n\n")
        {
            self.out.push('\n');
        }
    }

    /// Print the comments that start before `before` on their own lines.
    fn leading(&mut self, depth: usize, before: usize) {
        while let Some(c) = self.comments.get(self.next).cloned() {
            if c.span.start >= before {
                break;
            }
            self.gap(c.span.start);
            let body = self
                .text
                .get(c.span.start..c.span.end)
                .unwrap_or("#")
                .trim_end()
                .to_string();
            self.line(depth, &body);
            self.last_end = c.span.end;
            self.next += 1;
        }
    }

    /// A comment on the same source line right after `end` stays at the end of the line.
    fn trailing(&mut self, end: usize) {
        let Some(c) = self.comments.get(self.next) else {
            return;
        };
        let between = self.text.get(end..c.span.start).unwrap_or("\n");
        if between.contains('\n') || !between.trim().is_empty() {
            return;
        }
        let body = self
            .text
            .get(c.span.start..c.span.end)
            .unwrap_or("#")
            .trim_end()
            .to_string();
        if self.out.ends_with('\n') {
            self.out.pop();
        }
        self.out.push_str("  ");
        self.out.push_str(&body);
        self.out.push('\n');
        self.last_end = c.span.end;
        self.next += 1;
    }

    /// Comments left before the end of a block (or the file).
    fn rest(&mut self, depth: usize, end: usize) {
        self.leading(depth, end);
    }

    fn statement_start(&mut self, depth: usize, span: Span) {
        // Comments inside a statement move above it.
        self.leading(depth, span.end);
        self.gap(span.start);
    }

    fn policy(&mut self, policy: &Policy) {
        self.statement_start(0, Span::new(policy.span.start, policy.span.start + 1));
        self.line(0, &format!("policy {} {{", policy.name.raw));
        self.last_end = policy.name.span.end;
        self.trailing_open(policy.name.span.end);
        for stmt in &policy.stmts {
            self.stmt(1, stmt);
        }
        self.rest(1, policy.span.end);
        self.line(0, "}");
        self.last_end = policy.span.end;
        self.trailing(policy.span.end);
    }

    /// A comment right after a block's `{`, on the same line, stays there.
    fn trailing_open(&mut self, after_name: usize) {
        if let Some(brace) = self.text.get(after_name..).and_then(|t| t.find('{')) {
            let end = after_name + brace + 1;
            self.trailing(end);
            self.last_end = self.last_end.max(end);
        }
    }

    fn stmt(&mut self, depth: usize, stmt: &Node<Stmt>) {
        match &stmt.node {
            Stmt::Schedule(schedule) => {
                self.statement_start(depth, Span::new(stmt.span.start, stmt.span.start + 1));
                self.line(depth, &format!("schedule {} {{", schedule.name.raw));
                self.last_end = schedule.name.span.end;
                self.trailing_open(schedule.name.span.end);
                for s in &schedule.stmts {
                    self.statement_start(depth + 1, s.span);
                    let mut line = String::new();
                    sched_stmt(&mut line, &s.node);
                    self.line(depth + 1, &line);
                    self.last_end = s.span.end;
                    self.trailing(s.span.end);
                }
                self.rest(depth + 1, stmt.span.end);
                self.line(depth, "}");
            }
            other => {
                self.statement_start(depth, stmt.span);
                self.line(depth, &stmt_line(other));
            }
        }
        self.last_end = stmt.span.end;
        self.trailing(stmt.span.end);
    }
}

fn leaf(s: &mut String, stmt: &Stmt) {
    let q = |q: &Node<Quantity>| q.text();
    let text = match stmt {
        Stmt::Target { actuator, id } => format!("target {} {}", actuator.node, id.raw),
        Stmt::Replicas { min, max } => format!("replicas {}..{}", q(min), q(max)),
        Stmt::Every(v) => format!("every {}", q(v)),
        Stmt::Metric {
            name,
            source,
            query,
        } => format!("metric {} = {} {}", name.node, source.node, query.raw),
        Stmt::Let { name, expr: e } => format!("let {} = {}", name.node, expr(e)),
        Stmt::CurrentFrom(name) => format!("current from {}", name.node),
        Stmt::Timezone(zone) => format!("timezone {}", zone.raw),
        Stmt::DryRun => "dry-run".to_string(),
        Stmt::Track {
            expr: e,
            target: TrackTarget::At(t),
        } => format!("track {} at {}", expr(e), q(t)),
        Stmt::Track {
            expr: e,
            target: TrackTarget::PerReplica(t),
        } => format!("track {} per replica {}", expr(e), q(t)),
        Stmt::Desired(e) => format!("desired = {}", expr(e)),
        Stmt::When {
            cond,
            sustain,
            action,
        } => {
            let mut t = format!("when {}", expr(cond));
            if let Some(d) = sustain {
                t.push_str(&format!(" for {}", q(d)));
            }
            t.push_str(&match action {
                Action::Up(n) => format!(" scale up by {}", q(n)),
                Action::Down(n) => format!(" scale down by {}", q(n)),
                Action::To(e) => format!(" scale to {}", expr(e)),
            });
            t
        }
        Stmt::Buffer(v) => format!("buffer {}", q(v)),
        Stmt::Tolerance(v) => format!("tolerance {}", q(v)),
        Stmt::OnMissing(Missing::Hold) => "on missing hold".to_string(),
        Stmt::OnMissing(Missing::ScaleTo { replicas, after }) => {
            format!("on missing scale to {} after {}", q(replicas), q(after))
        }
        Stmt::Stabilize { direction, window } => {
            format!("stabilize {} {}", direction.as_str(), q(window))
        }
        Stmt::Cooldown { direction, window } => {
            format!("cooldown {} {}", direction.as_str(), q(window))
        }
        Stmt::Limit { direction, limit } => {
            let rest = match limit {
                Limit::Rate { amount, per } => format!("{} per {}", q(amount), q(per)),
                Limit::SelectMin => "select min".to_string(),
                Limit::SelectMax => "select max".to_string(),
                Limit::Disabled => "disabled".to_string(),
            };
            format!("limit {} {}", direction.as_str(), rest)
        }
        Stmt::Schedule(schedule) => format!("schedule {} {{ ... }}", schedule.name.raw),
        Stmt::Error => String::new(),
    };
    s.push_str(&text);
}

fn sched_stmt(s: &mut String, stmt: &SchedStmt) {
    match stmt {
        SchedStmt::Window(w) => {
            match &w.kind {
                WindowKind::Weekly { days, from, to } => {
                    let days: Vec<String> = days.iter().map(|d| day_item(d.node)).collect();
                    s.push_str(&format!(
                        "on {} from {} to {}",
                        days.join(","),
                        from.node,
                        to.node
                    ));
                }
                WindowKind::OneOff { from, to } => {
                    s.push_str(&format!("from {} to {}", from.node, to.node))
                }
                WindowKind::Cron { expr, duration } => {
                    s.push_str(&format!("cron {} for {}", expr.raw, duration.text()))
                }
            }
            if let Some(zone) = &w.zone {
                s.push_str(&format!(" in {}", zone.raw));
            }
            if !w.except.is_empty() {
                let dates: Vec<&str> = w.except.iter().map(|d| d.node.as_str()).collect();
                s.push_str(&format!(" except {}", dates.join(", ")));
            }
        }
        SchedStmt::Effect(e) => s.push_str(&match e {
            Effect::AtLeast(n) => format!("replicas at least {}", n.text()),
            Effect::AtMost(n) => format!("replicas at most {}", n.text()),
            Effect::Exactly(n) => format!("replicas exactly {}", n.text()),
            Effect::Range(a, b) => format!("replicas {}..{}", a.text(), b.text()),
        }),
        SchedStmt::Error => {}
    }
}

fn day_item(item: DayItem) -> String {
    let name = |d: u8| DAY_NAMES.get(usize::from(d)).copied().unwrap_or("mon");
    match item {
        DayItem::Day(d) => name(d).to_string(),
        DayItem::Range(a, b) => format!("{}..{}", name(a), name(b)),
        DayItem::Daily => "daily".to_string(),
    }
}

/// An expression with single spaces around binary operators and the parentheses that
/// were written (and no others: the tree already encodes precedence).
pub fn expr(e: &Node<Expr>) -> String {
    let mut s = String::new();
    write_expr(&mut s, e);
    s
}

fn write_expr(s: &mut String, e: &Node<Expr>) {
    match &e.node {
        Expr::Number(q) => s.push_str(&q.text()),
        Expr::Name(n) => s.push_str(n),
        Expr::Current => s.push_str("current"),
        Expr::Unary(UnOp::Neg, inner) => {
            s.push('-');
            write_expr(s, inner);
        }
        Expr::Unary(UnOp::Not, inner) => {
            s.push_str("not ");
            write_expr(s, inner);
        }
        Expr::Binary(op, l, r) => {
            write_expr(s, l);
            s.push(' ');
            s.push_str(op.as_str());
            s.push(' ');
            write_expr(s, r);
        }
        Expr::Call(name, args) => {
            s.push_str(&name.node);
            s.push('(');
            for (i, a) in args.iter().enumerate() {
                if i > 0 {
                    s.push_str(", ");
                }
                write_expr(s, a);
            }
            s.push(')');
        }
        Expr::Paren(inner) => {
            s.push('(');
            write_expr(s, inner);
            s.push(')');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lays_out_and_keeps_comments() {
        let input = "# head\npolicy \"p\"{target k \"x\"   # why\nreplicas 1..2\n\n\n  # about cpu\ntrack cpu   at 50% }";
        let out = format(input).unwrap_or_else(|e| unreachable!("{e:?}"));
        let want = "# head\npolicy \"p\" {\n  target k \"x\"  # why\n  replicas 1..2\n\n  # about cpu\n  track cpu at 50%\n}\n";
        assert_eq!(out, want);
        assert_eq!(format(&out).unwrap_or_default(), want);
    }

    #[test]
    fn double_negation_survives() {
        let out = format("policy \"p\" { let x = - -a - -(b) }").unwrap_or_default();
        assert!(out.contains("let x = --a - -(b)"), "{out}");
    }
}
