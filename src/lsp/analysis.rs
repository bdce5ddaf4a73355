//! What the language server knows about one text: names and their uses, the thing
//! under the cursor, hovers, completions, symbols, renames and formatting edits. Pure:
//! a text (and, for hovers, its checked policies) in, `lsp_types` values out.

use chrono::{DateTime, Utc};
use lsp_types::{
    CompletionItem, CompletionItemKind, CompletionTextEdit, DocumentSymbol, Documentation,
    InsertTextFormat, MarkupContent, MarkupKind, Range, SymbolKind, TextEdit,
};

use super::keywords::{self, KEYWORDS, SCHEDULE_LINES, STATEMENTS, UNITS};
use super::text::Lines;
use crate::check::{RESERVED, values};
use crate::diagnostic::Span;
use crate::model;
use crate::syntax::ast::{self, Action, Expr, Node, Quantity, Stmt};
use crate::syntax::format;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefKind {
    Metric,
    Let,
}

/// A `metric` or `let` name where it is defined.
#[derive(Debug, Clone)]
pub struct Def {
    pub policy: usize,
    pub name: String,
    pub span: Span,
    pub kind: DefKind,
    /// The statement that defines it.
    pub stmt: usize,
}

/// A name where an expression reads it.
#[derive(Debug, Clone)]
pub struct Use {
    pub policy: usize,
    pub name: String,
    pub span: Span,
}

/// The names of one parsed file, per policy (names are local to their policy).
pub struct Index<'a> {
    pub policies: Vec<&'a ast::Policy>,
    pub defs: Vec<Def>,
    pub uses: Vec<Use>,
}

fn walk_expr<'a>(e: &'a Node<Expr>, f: &mut impl FnMut(&'a Node<Expr>)) {
    f(e);
    match &e.node {
        Expr::Unary(_, a) | Expr::Paren(a) => walk_expr(a, f),
        Expr::Binary(_, a, b) => {
            walk_expr(a, f);
            walk_expr(b, f);
        }
        Expr::Call(_, args) => args.iter().for_each(|a| walk_expr(a, f)),
        Expr::Number(_) | Expr::Name(_) | Expr::Current => {}
    }
}

/// The expressions of a statement.
fn exprs(stmt: &Stmt) -> Vec<&Node<Expr>> {
    match stmt {
        Stmt::Let { expr, .. } | Stmt::Track { expr, .. } | Stmt::Desired(expr) => vec![expr],
        Stmt::When { cond, action, .. } => match action {
            Action::To(to) => vec![cond, to],
            Action::Up(_) | Action::Down(_) => vec![cond],
        },
        _ => Vec::new(),
    }
}

/// Every number literal of a statement, expressions included.
fn quantities(stmt: &Stmt) -> Vec<Node<Quantity>> {
    let mut out: Vec<Node<Quantity>> = Vec::new();
    let mut add = |q: &Node<Quantity>| out.push(q.clone());
    match stmt {
        Stmt::Replicas { min, max } => {
            add(min);
            add(max);
        }
        Stmt::Every(q) | Stmt::Buffer(q) | Stmt::Tolerance(q) => add(q),
        Stmt::Track { target, .. } => match target {
            ast::TrackTarget::At(q) | ast::TrackTarget::PerReplica(q) => add(q),
        },
        Stmt::When {
            sustain, action, ..
        } => {
            if let Some(q) = sustain {
                add(q);
            }
            if let Action::Up(q) | Action::Down(q) = action {
                add(q);
            }
        }
        Stmt::OnMissing(ast::Missing::ScaleTo { replicas, after }) => {
            add(replicas);
            add(after);
        }
        Stmt::Stabilize { window, .. } | Stmt::Cooldown { window, .. } => add(window),
        Stmt::Limit {
            limit: ast::Limit::Rate { amount, per },
            ..
        } => {
            add(amount);
            add(per);
        }
        Stmt::Schedule(s) => {
            for line in &s.stmts {
                match &line.node {
                    ast::SchedStmt::Window(w) => {
                        if let ast::WindowKind::Cron { duration, .. } = &w.kind {
                            add(duration);
                        }
                    }
                    ast::SchedStmt::Effect(e) => match e {
                        ast::Effect::AtLeast(q)
                        | ast::Effect::AtMost(q)
                        | ast::Effect::Exactly(q) => add(q),
                        ast::Effect::Range(a, b) => {
                            add(a);
                            add(b);
                        }
                    },
                    ast::SchedStmt::Error => {}
                }
            }
        }
        _ => {}
    }
    for e in exprs(stmt) {
        walk_expr(e, &mut |e| {
            if let Expr::Number(q) = &e.node {
                out.push(Node::new(q.clone(), e.span));
            }
        });
    }
    out
}

fn covers(span: Span, offset: usize) -> bool {
    span.start <= offset && offset <= span.end
}

impl<'a> Index<'a> {
    pub fn new(file: &'a ast::File) -> Index<'a> {
        let policies: Vec<&ast::Policy> = file
            .items
            .iter()
            .filter_map(|item| match item {
                ast::TopItem::Policy(p) => Some(p),
                ast::TopItem::Error(_) => None,
            })
            .collect();
        let mut defs = Vec::new();
        let mut uses = Vec::new();
        for (p, policy) in policies.iter().enumerate() {
            for (s, stmt) in policy.stmts.iter().enumerate() {
                let (name, kind) = match &stmt.node {
                    Stmt::Metric { name, .. } => (name, DefKind::Metric),
                    Stmt::Let { name, .. } => (name, DefKind::Let),
                    Stmt::CurrentFrom(name) => {
                        uses.push(Use {
                            policy: p,
                            name: name.node.clone(),
                            span: name.span,
                        });
                        continue;
                    }
                    _ => {
                        for e in exprs(&stmt.node) {
                            walk_expr(e, &mut |e| {
                                if let Expr::Name(n) = &e.node {
                                    uses.push(Use {
                                        policy: p,
                                        name: n.clone(),
                                        span: e.span,
                                    });
                                }
                            });
                        }
                        continue;
                    }
                };
                defs.push(Def {
                    policy: p,
                    name: name.node.clone(),
                    span: name.span,
                    kind,
                    stmt: s,
                });
                if let Stmt::Let { expr, .. } = &stmt.node {
                    walk_expr(expr, &mut |e| {
                        if let Expr::Name(n) = &e.node {
                            uses.push(Use {
                                policy: p,
                                name: n.clone(),
                                span: e.span,
                            });
                        }
                    });
                }
            }
        }
        Index {
            policies,
            defs,
            uses,
        }
    }

    /// The policy whose block holds the offset.
    pub fn policy_at(&self, offset: usize) -> Option<usize> {
        self.policies.iter().position(|p| covers(p.span, offset))
    }

    /// The `metric` or `let` name (defined or used) under the offset: its policy and name.
    pub fn name_at(&self, offset: usize) -> Option<(usize, &str)> {
        self.defs
            .iter()
            .map(|d| (d.policy, d.name.as_str(), d.span))
            .chain(
                self.uses
                    .iter()
                    .map(|u| (u.policy, u.name.as_str(), u.span)),
            )
            .find(|(_, _, span)| covers(*span, offset))
            .map(|(p, n, _)| (p, n))
    }

    /// Where a name is defined (the first definition, if defined twice).
    pub fn definition(&self, policy: usize, name: &str) -> Option<&Def> {
        self.defs
            .iter()
            .find(|d| d.policy == policy && d.name == name)
    }

    /// Every place a name stands in its policy: definitions first, then uses, in order.
    pub fn occurrences(&self, policy: usize, name: &str, with_definition: bool) -> Vec<Span> {
        let defs = self
            .defs
            .iter()
            .filter(|d| with_definition && d.policy == policy && d.name == name)
            .map(|d| d.span);
        let uses = self
            .uses
            .iter()
            .filter(|u| u.policy == policy && u.name == name)
            .map(|u| u.span);
        defs.chain(uses).collect()
    }
}

// ---------------------------------------------------------------- strings and comments

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Region {
    Comment,
    /// A string: where its content starts, and whether its closing quote was written.
    Str {
        content: usize,
        closed: bool,
    },
}

/// The comments and strings of a text, in order, as the grammar reads them (an
/// unterminated plain string ends at its line, a raw string at the end of the text).
pub fn regions(text: &str) -> Vec<(Span, Region)> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'#' => {
                let end = text[i..].find('\n').map_or(text.len(), |n| i + n);
                out.push((Span::new(i, end), Region::Comment));
                i = end;
            }
            b'"' => {
                let mut j = i + 1;
                while j < bytes.len() && bytes[j] != b'"' && bytes[j] != b'\n' {
                    j += if bytes[j] == b'\\' { 2 } else { 1 };
                }
                let closed = bytes.get(j) == Some(&b'"');
                let end = if closed { j + 1 } else { j.min(bytes.len()) };
                out.push((
                    Span::new(i, end),
                    Region::Str {
                        content: i + 1,
                        closed,
                    },
                ));
                i = end.max(i + 1);
            }
            b'r' if (i == 0 || !is_ident(bytes[i - 1]))
                && bytes[i + 1..]
                    .iter()
                    .position(|b| *b != b'#')
                    .is_some_and(|n| bytes[i + 1 + n] == b'"') =>
            {
                let hashes = bytes[i + 1..].iter().take_while(|b| **b == b'#').count();
                let open = i + 1 + hashes + 1;
                let close: String = std::iter::once('"')
                    .chain(std::iter::repeat_n('#', hashes))
                    .collect();
                let (end, closed) = text[open..]
                    .find(&close)
                    .map_or((text.len(), false), |n| (open + n + close.len(), true));
                out.push((
                    Span::new(i, end),
                    Region::Str {
                        content: open,
                        closed,
                    },
                ));
                i = end;
            }
            _ => i += 1,
        }
    }
    out
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn region_at(regions: &[(Span, Region)], offset: usize) -> Option<(Span, Region)> {
    regions
        .iter()
        .find(|(span, region)| match *region {
            // Inside a comment, up to its end (the line break).
            Region::Comment => span.start < offset && offset <= span.end,
            // Between the quotes, or anywhere after a quote that is never closed.
            Region::Str { content, closed } => {
                content <= offset && (offset < span.end || (!closed && offset == span.end))
            }
        })
        .copied()
}

/// How deep the braces are at the offset: 0 outside policies, 1 in a policy, 2 in a
/// schedule.
fn depth(text: &str, regions: &[(Span, Region)], offset: usize) -> usize {
    let mut depth: usize = 0;
    let mut skip = regions.iter().peekable();
    let mut i = 0;
    let bytes = text.as_bytes();
    while i < offset.min(bytes.len()) {
        if let Some((span, _)) = skip.peek()
            && span.start == i
        {
            i = span.end.max(i + 1);
            skip.next();
            continue;
        }
        while let Some((span, _)) = skip.peek()
            && span.start < i
        {
            skip.next();
        }
        match bytes[i] {
            b'{' => depth += 1,
            b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    depth
}

/// The word (letters, digits, `_`, `-`) around the offset, and its span.
fn word_at(text: &str, offset: usize) -> Option<(&str, Span)> {
    let bytes = text.as_bytes();
    let part = |b: u8| is_ident(b) || b == b'-';
    let mut start = offset.min(bytes.len());
    while start > 0 && part(bytes[start - 1]) {
        start -= 1;
    }
    let mut end = offset.min(bytes.len());
    while end < bytes.len() && part(bytes[end]) {
        end += 1;
    }
    (start < end).then(|| (&text[start..end], Span::new(start, end)))
}

// ---------------------------------------------------------------- hover

/// `629145600` → `629,145,600`; other numbers as Rust prints them.
fn grouped(n: f64) -> String {
    if n.fract() != 0.0 || n.abs() >= 1e21 {
        return format!("{n}");
    }
    let digits = format!("{}", n.abs() as u128);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0.0 {
        out.insert(0, '-');
    }
    out
}

fn literal(q: &Node<Quantity>) -> String {
    let written = q.text();
    match values::evaluate(q, 0) {
        Err(d) => format!("`{written}`: {}", d.message),
        Ok(v) => {
            let value = match v.kind {
                values::Kind::Plain if q.unit.is_none() => {
                    return format!("`{written}` = {}", grouped(v.number));
                }
                values::Kind::Plain => grouped(v.number),
                values::Kind::Percent => format!("{} (a ratio)", v.number),
                values::Kind::Duration => {
                    let secs = v.number;
                    let plural = if secs == 1.0 { "second" } else { "seconds" };
                    format!("{} {plural}", grouped(secs))
                }
                values::Kind::Bytes => format!("{} bytes", grouped(v.number)),
            };
            format!("`{written}` = {value}")
        }
    }
}

/// Words for a hover or a completion item's documentation.
pub fn markdown(value: String) -> MarkupContent {
    MarkupContent {
        kind: MarkupKind::Markdown,
        value,
    }
}

/// What hovering over the offset shows, and the span it is about.
///
/// `checked` is the policy under the cursor as `check` lowered it, when it has no
/// errors: schedules show their next windows from it. `reference` is where
/// docs/reference.md lives, to link keywords to.
pub fn hover(
    text: &str,
    tree: &ast::File,
    offset: usize,
    checked: &dyn Fn(&str) -> Option<model::Policy>,
    now: DateTime<Utc>,
    reference: Option<&str>,
) -> Option<(String, Span)> {
    let regions = regions(text);
    if let Some((_, Region::Comment)) = region_at(&regions, offset) {
        return None;
    }
    let index = Index::new(tree);
    if let Some((p, name)) = index.name_at(offset) {
        let policy = index.policies[p];
        let span = index
            .occurrences(p, name, true)
            .into_iter()
            .find(|s| covers(*s, offset))
            .unwrap_or_default();
        let Some(def) = index.definition(p, name) else {
            return Some((
                format!("`{name}`: not defined in policy `{}`", policy.name.value),
                span,
            ));
        };
        let words = match &policy.stmts[def.stmt].node {
            Stmt::Metric { source, query, .. } => format!(
                "**metric** `{name}` from source `{}`\n\n```promql\n{}\n```",
                source.node, query.value
            ),
            Stmt::Let { expr, .. } => {
                format!("**let** `{name}` = `{}`", format::expr(expr))
            }
            _ => return None,
        };
        return Some((words, span));
    }
    let policy = index.policy_at(offset).map(|p| index.policies[p]);
    if let Some(policy) = policy {
        for stmt in &policy.stmts {
            if !covers(stmt.span, offset) {
                continue;
            }
            if let Some(q) = quantities(&stmt.node)
                .into_iter()
                .find(|q| covers(q.span, offset))
            {
                return Some((literal(&q), q.span));
            }
            if let Stmt::Schedule(s) = &stmt.node
                && covers(s.name.span, offset)
            {
                let words = match checked(&policy.name.value) {
                    Some(model) => next_windows(&model, &s.name.value, now),
                    None => format!(
                        "**schedule** `{}`: its next windows show once the policy has no errors",
                        s.name.value
                    ),
                };
                return Some((words, s.name.span));
            }
            if let Some(zone) = zone_string(&stmt.node, offset) {
                return Some((zone_words(&zone.value, now), zone.span));
            }
        }
    }
    if let Some((_, Region::Str { .. })) = region_at(&regions, offset) {
        return None;
    }
    let (word, span) = word_at(text, offset)?;
    let (line, section) = keywords::describe(word)?;
    let see = match reference {
        Some(base) => format!("[reference §{}]({base}#{section})", section_number(section)),
        None => format!("docs/reference.md §{}", section_number(section)),
    };
    Some((format!("{line}\n\n{see}"), span))
}

fn section_number(anchor: &str) -> &str {
    anchor.split('-').next().unwrap_or(anchor)
}

/// The zone string (`timezone "…"`, `in "…"`) under the offset.
fn zone_string(stmt: &Stmt, offset: usize) -> Option<&Node<ast::Str>> {
    match stmt {
        Stmt::Timezone(zone) => covers(zone.span, offset).then_some(zone),
        Stmt::Schedule(s) => s.stmts.iter().find_map(|line| match &line.node {
            ast::SchedStmt::Window(w) => w.zone.as_ref().filter(|z| covers(z.span, offset)),
            _ => None,
        }),
        _ => None,
    }
}

fn zone_words(name: &str, now: DateTime<Utc>) -> String {
    match name.parse::<chrono_tz::Tz>() {
        Ok(tz) => {
            let local = now.with_timezone(&tz);
            format!(
                "**{name}**: now {} (UTC{})",
                local.format("%Y-%m-%d %H:%M %Z"),
                local.format("%:z")
            )
        }
        Err(_) => format!("`{name}` is not an IANA time zone"),
    }
}

/// A schedule's next three windows (or the one active now), in its zone and in UTC.
pub fn next_windows(policy: &model::Policy, schedule: &str, now: DateTime<Utc>) -> String {
    let Some(s) = policy.schedules.iter().find(|s| s.name == schedule) else {
        return format!("**schedule** `{schedule}`");
    };
    let horizon = now + chrono::Duration::days(400);
    let mut windows: Vec<(crate::calendar::Interval, chrono_tz::Tz)> = s
        .windows
        .iter()
        .flat_map(|w| {
            let active = crate::calendar::active_at(w, now);
            active
                .into_iter()
                .chain(crate::calendar::instances_upto(w, now, horizon, 3))
                .map(move |i| (i, w.zone))
        })
        .collect();
    windows.sort_by_key(|(i, _)| i.start);
    windows.dedup_by_key(|(i, _)| (i.start, i.end));
    windows.truncate(3);
    let mut out = format!("**schedule** `{schedule}`: next windows\n");
    if windows.is_empty() {
        out.push_str("\nnone in the next 400 days\n");
    }
    for (i, zone) in windows {
        let (start, end) = (i.start.with_timezone(&zone), i.end.with_timezone(&zone));
        let now_mark = if i.contains(now) { " (active now)" } else { "" };
        out.push_str(&format!(
            "\n- {} → {} {zone}{now_mark}  \n  {} → {} UTC",
            start.format("%a %Y-%m-%d %H:%M"),
            end.format("%a %Y-%m-%d %H:%M"),
            i.start.format("%a %Y-%m-%d %H:%M"),
            i.end.format("%a %Y-%m-%d %H:%M"),
        ));
    }
    out
}

// ---------------------------------------------------------------- completion

/// What the configuration names, for completion.
#[derive(Debug, Clone, Default)]
pub struct Names {
    pub actuators: Vec<String>,
    pub sources: Vec<String>,
}

fn item(label: &str, kind: CompletionItemKind, detail: &str) -> CompletionItem {
    CompletionItem {
        label: label.to_string(),
        kind: Some(kind),
        detail: (!detail.is_empty()).then(|| detail.to_string()),
        ..CompletionItem::default()
    }
}

fn snippet(label: &str, body: &str, detail: &str) -> CompletionItem {
    CompletionItem {
        label: label.to_string(),
        kind: Some(CompletionItemKind::KEYWORD),
        detail: Some(detail.to_string()),
        insert_text: Some(body.to_string()),
        insert_text_format: Some(InsertTextFormat::SNIPPET),
        ..CompletionItem::default()
    }
}

/// Keyword items: (label, the keyword whose meaning describes it).
fn keywords(items: &[(&str, &str)]) -> Vec<CompletionItem> {
    items
        .iter()
        .map(|(label, kw)| item(label, CompletionItemKind::KEYWORD, keyword_detail(kw)))
        .collect()
}

fn keyword_detail(word: &str) -> &'static str {
    KEYWORDS
        .iter()
        .find(|(k, _, _)| *k == word)
        .map_or("", |(_, line, _)| line)
}

/// The names a policy defines in the text between the `policy` line before the offset
/// and the next one: read from the text, so that a half-typed policy still has them.
fn names_near(text: &str, offset: usize) -> (Vec<String>, Vec<String>) {
    let start = text[..offset.min(text.len())].rfind("policy ").unwrap_or(0);
    let end = text[offset.min(text.len())..]
        .find("\npolicy ")
        .map_or(text.len(), |n| offset + n);
    let block = &text[start..end];
    let mut metrics = Vec::new();
    let mut lets = Vec::new();
    for (i, line) in block.lines().scan(0, |at, line| {
        let here = *at;
        *at += line.len() + 1;
        Some((start + here, line))
    }) {
        let mut words = line.split_whitespace();
        let (Some(kw), Some(name)) = (words.next(), words.next()) else {
            continue;
        };
        let valid = name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid || RESERVED.contains(&name) {
            continue;
        }
        match kw {
            "metric" => metrics.push(name.to_string()),
            // A `let` is usable below it only.
            "let" if i < offset => lets.push(name.to_string()),
            _ => {}
        }
    }
    (metrics, lets)
}

/// What may stand at the offset.
pub fn complete(text: &str, offset: usize, names: &Names) -> Vec<CompletionItem> {
    let offset = offset.min(text.len());
    let regions = regions(text);
    let lines = Lines::new(text, super::text::Encoding::Utf16);
    match region_at(&regions, offset) {
        Some((_, Region::Comment)) => return Vec::new(),
        Some((span, Region::Str { content, .. })) => {
            let line_start = text[..span.start].rfind('\n').map_or(0, |i| i + 1);
            let before = text[line_start..span.start].trim_end();
            if before.ends_with(" in") || before == "in" || before.ends_with("timezone") {
                return zones(
                    &text[content..offset],
                    lines.range(Span::new(content, offset)),
                );
            }
            return Vec::new();
        }
        None => {}
    }
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = &text[line_start..offset];
    // The partial word being typed, and the line before it.
    let typed_len = line
        .bytes()
        .rev()
        .take_while(|b| is_ident(*b) || *b == b'%' || *b == b'.' || *b == b'-')
        .count();
    let typed = &line[line.len() - typed_len..];
    let before = line[..line.len() - typed_len].trim();

    // Units right after a number.
    if let Some(first) = typed.bytes().next()
        && first.is_ascii_digit()
    {
        let unit_at = typed
            .bytes()
            .position(|b| b.is_ascii_alphabetic() || b == b'%')
            .unwrap_or(typed.len());
        if typed[..unit_at]
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'_' || b == b'.')
        {
            let typed_unit = &typed[unit_at..];
            let at = offset - typed_unit.len();
            let range = lines.range(Span::new(at, offset));
            return UNITS
                .iter()
                .filter(|(u, _)| u.starts_with(typed_unit))
                .map(|(u, what)| CompletionItem {
                    label: format!("{}{u}", &typed[..unit_at]),
                    filter_text: Some(format!("{}{u}", &typed[..unit_at])),
                    kind: Some(CompletionItemKind::UNIT),
                    detail: Some((*what).to_string()),
                    text_edit: Some(CompletionTextEdit::Edit(TextEdit::new(
                        range,
                        (*u).to_string(),
                    ))),
                    ..CompletionItem::default()
                })
                .collect();
        }
    }

    let last = before.split_whitespace().last().unwrap_or("");
    let first = before.split_whitespace().next().unwrap_or("");
    match (first, last) {
        ("target", "target") => {
            return names
                .actuators
                .iter()
                .map(|a| item(a, CompletionItemKind::MODULE, "actuator"))
                .collect();
        }
        ("metric", "=") => {
            return names
                .sources
                .iter()
                .map(|s| item(s, CompletionItemKind::MODULE, "metric source"))
                .collect();
        }
        ("current", "from") => {
            let (metrics, _) = names_near(text, offset);
            return metrics
                .iter()
                .map(|m| item(m, CompletionItemKind::VARIABLE, "metric"))
                .collect();
        }
        ("stabilize" | "cooldown" | "limit", "stabilize" | "cooldown" | "limit") => {
            return keywords(&[("up", "up"), ("down", "down")]);
        }
        ("limit", "up" | "down") => {
            return keywords(&[
                ("select min", "select"),
                ("select max", "select"),
                ("disabled", "disabled"),
            ]);
        }
        ("on", "on") if depth(text, &regions, offset) == 1 => {
            return keywords(&[("missing hold", "missing"), ("missing scale to", "missing")]);
        }
        (_, "scale") => {
            return keywords(&[("up by", "up"), ("down by", "down"), ("to", "to")]);
        }
        _ => {}
    }

    if before.is_empty() {
        return match depth(text, &regions, offset) {
            0 => vec![snippet(
                "policy",
                "policy \"${1:name}\" {\n  target ${2:k8s} \"${3:namespace/deployment/name}\"\n  replicas ${4:1}..${5:10}\n  $0\n}",
                keyword_detail("policy"),
            )],
            1 => STATEMENTS
                .iter()
                .map(|(k, body)| snippet(k, body, keyword_detail(k)))
                .collect(),
            _ => SCHEDULE_LINES
                .iter()
                .map(|(k, body)| snippet(k, body, keyword_detail(k)))
                .collect(),
        };
    }

    // Inside an expression: names, functions, `current`, and what may follow.
    let (metrics, lets) = names_near(text, offset);
    let mut out: Vec<CompletionItem> = metrics
        .iter()
        .map(|m| item(m, CompletionItemKind::VARIABLE, "metric"))
        .chain(
            lets.iter()
                .map(|l| item(l, CompletionItemKind::VARIABLE, "let")),
        )
        .collect();
    out.extend(model::Func::ALL.iter().map(|f| CompletionItem {
        insert_text: Some(format!("{}($1)", f.name())),
        insert_text_format: Some(InsertTextFormat::SNIPPET),
        ..item(
            f.name(),
            CompletionItemKind::FUNCTION,
            keyword_detail(f.name()),
        )
    }));
    let follow: &[&str] = match first {
        "when" => &["current", "and", "or", "not", "for", "scale"],
        "track" => &["current", "at", "per replica"],
        _ => &["current", "and", "or", "not"],
    };
    out.extend(follow.iter().map(|k| {
        let word = k.split(' ').next().unwrap_or(k);
        item(k, CompletionItemKind::KEYWORD, keyword_detail(word))
    }));
    out
}

fn zones(typed: &str, range: Range) -> Vec<CompletionItem> {
    let lower = typed.to_ascii_lowercase();
    chrono_tz::TZ_VARIANTS
        .iter()
        .map(|tz| tz.name())
        .filter(|name| name.to_ascii_lowercase().contains(&lower))
        .map(|name| CompletionItem {
            label: name.to_string(),
            kind: Some(CompletionItemKind::CONSTANT),
            detail: Some("IANA time zone".into()),
            text_edit: Some(CompletionTextEdit::Edit(TextEdit::new(
                range,
                name.to_string(),
            ))),
            ..CompletionItem::default()
        })
        .collect()
}

// ---------------------------------------------------------------- symbols

fn short(text: String) -> String {
    const MOST: usize = 60;
    if text.chars().count() <= MOST {
        return text;
    }
    let cut: String = text.chars().take(MOST - 1).collect();
    format!("{cut}…")
}

#[allow(deprecated)] // DocumentSymbol's `deprecated` field must be written out.
fn symbol(
    name: String,
    detail: Option<String>,
    kind: SymbolKind,
    range: Range,
    selection: Range,
    children: Option<Vec<DocumentSymbol>>,
) -> DocumentSymbol {
    DocumentSymbol {
        name,
        detail,
        kind,
        tags: None,
        deprecated: None,
        range,
        selection_range: selection,
        children,
    }
}

/// Policies, and in each its metrics, lets, rules and schedules.
pub fn symbols(tree: &ast::File, lines: &Lines<'_>) -> Vec<DocumentSymbol> {
    let index = Index::new(tree);
    index
        .policies
        .iter()
        .map(|policy| {
            let mut children = Vec::new();
            let mut target = None;
            for stmt in &policy.stmts {
                let range = lines.range(stmt.span);
                let child = match &stmt.node {
                    Stmt::Target { actuator, id } => {
                        target = Some(format!("{} {}", actuator.node, id.raw));
                        continue;
                    }
                    Stmt::Metric { name, source, .. } => symbol(
                        name.node.clone(),
                        Some(format!("metric from {}", source.node)),
                        SymbolKind::VARIABLE,
                        range,
                        lines.range(name.span),
                        None,
                    ),
                    Stmt::Let { name, .. } => symbol(
                        name.node.clone(),
                        Some("let".into()),
                        SymbolKind::VARIABLE,
                        range,
                        lines.range(name.span),
                        None,
                    ),
                    Stmt::Schedule(s) => symbol(
                        s.name.value.clone(),
                        Some("schedule".into()),
                        SymbolKind::NAMESPACE,
                        range,
                        lines.range(s.name.span),
                        None,
                    ),
                    Stmt::Track { .. } | Stmt::Desired(_) | Stmt::When { .. } => symbol(
                        short(format::stmt_line(&stmt.node)),
                        Some("rule".into()),
                        SymbolKind::EVENT,
                        range,
                        range,
                        None,
                    ),
                    _ => continue,
                };
                children.push(child);
            }
            symbol(
                policy.name.value.clone(),
                target,
                SymbolKind::MODULE,
                lines.range(policy.span),
                lines.range(policy.name.span),
                Some(children),
            )
        })
        .collect()
}

// ---------------------------------------------------------------- rename

/// Why a new name cannot replace `old` in its policy.
pub fn rename_problem(index: &Index<'_>, policy: usize, old: &str, new: &str) -> Option<String> {
    let valid = new
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && new
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !valid {
        return Some(format!(
            "`{new}` is not a name: names are lower-case letters, digits and `_`, not starting with a digit"
        ));
    }
    if RESERVED.contains(&new) || model::Func::ALL.iter().any(|f| f.name() == new) {
        return Some(format!("`{new}` is a keyword or a function"));
    }
    if new != old && index.definition(policy, new).is_some() {
        return Some(format!(
            "policy `{}` already defines `{new}`",
            index.policies[policy].name.value
        ));
    }
    None
}

// ---------------------------------------------------------------- formatting

/// The edit that turns `old` into `new`: the lines between their common first and last
/// lines, so that the cursor and marks elsewhere stay put.
pub fn edit_between(old: &str, new: &str, lines: &Lines<'_>) -> Option<TextEdit> {
    if old == new {
        return None;
    }
    let a: Vec<&str> = old.split_inclusive('\n').collect();
    let b: Vec<&str> = new.split_inclusive('\n').collect();
    let prefix = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let most = a.len().min(b.len()) - prefix;
    let suffix = a
        .iter()
        .rev()
        .zip(b.iter().rev())
        .take(most)
        .take_while(|(x, y)| x == y)
        .count();
    let start: usize = a[..prefix].iter().map(|l| l.len()).sum();
    let end: usize = old.len() - a[a.len() - suffix..].iter().map(|l| l.len()).sum::<usize>();
    let replacement: String = b[prefix..b.len() - suffix].concat();
    Some(TextEdit::new(
        lines.range(Span::new(start, end)),
        replacement,
    ))
}

/// Formatting of the policies that a range touches: each is formatted on its own,
/// which is exactly what formatting the file does to it.
pub fn format_policies(
    text: &str,
    tree: &ast::File,
    range: Span,
    lines: &Lines<'_>,
) -> Vec<TextEdit> {
    let index = Index::new(tree);
    index
        .policies
        .iter()
        .filter(|p| p.span.start <= range.end && range.start <= p.span.end)
        .filter_map(|p| {
            let old = text.get(p.span.start..p.span.end)?;
            let new = format::format(old).ok()?;
            let new = new.trim_end_matches('\n');
            (old != new).then(|| TextEdit::new(lines.range(p.span), new.to_string()))
        })
        .collect()
}

/// The documentation for a completion item, when it has a long form.
pub fn documentation(label: &str) -> Option<Documentation> {
    keywords::describe(label)
        .map(|(line, _)| Documentation::MarkupContent(markdown(line.to_string())))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::syntax;

    const TEXT: &str = r#"policy "web" {
  target k8s "shop/deployment/web"
  replicas 2..10
  metric cpu = prometheus "avg(rate(x[1m]))" # 600MiB here is a comment
  let doubled = cpu * 2
  track doubled at 70%
  when cpu > 600MiB for 5m scale up by 2
}
"#;

    #[test]
    fn names_and_their_uses() {
        let (tree, _) = syntax::parse(TEXT, 0);
        let index = Index::new(&tree);
        let at = TEXT.find("cpu * 2").unwrap() + 1;
        let (p, name) = index.name_at(at).unwrap();
        assert_eq!((p, name), (0, "cpu"));
        let spans = index.occurrences(p, name, true);
        assert_eq!(spans.len(), 3);
        assert!(spans.iter().all(|s| &TEXT[s.start..s.end] == "cpu"));
        assert_eq!(index.definition(0, "doubled").unwrap().kind, DefKind::Let);
    }

    #[test]
    fn hovers_name_literals_and_keywords() {
        let (tree, _) = syntax::parse(TEXT, 0);
        let none = |_: &str| None;
        let hover = |needle: &str, delta: usize| {
            let at = TEXT.find(needle).unwrap() + delta;
            hover(TEXT, &tree, at, &none, Utc::now(), None).map(|(w, _)| w)
        };
        assert_eq!(hover("70%", 1).unwrap(), "`70%` = 0.7 (a ratio)");
        assert_eq!(
            hover("600MiB for", 2).unwrap(),
            "`600MiB` = 629,145,600 bytes"
        );
        assert_eq!(hover("5m scale", 0).unwrap(), "`5m` = 300 seconds");
        assert!(hover("cpu * 2", 0).unwrap().contains("avg(rate(x[1m]))"));
        assert!(hover("track", 2).unwrap().starts_with("`track EXPR at T`"));
        // Inside a comment: nothing.
        assert!(hover("600MiB here", 1).is_none());
    }

    #[test]
    fn completion_knows_where_it_stands() {
        let labels = |text: &str| -> Vec<String> {
            let names = Names {
                actuators: vec!["k8s".into()],
                sources: vec!["prometheus".into()],
            };
            complete(text, text.len(), &names)
                .into_iter()
                .map(|i| i.label)
                .collect()
        };
        assert!(labels("policy \"a\" {\n  every 15").contains(&"15ms".to_string()));
        assert!(labels("policy \"a\" {\n  ").contains(&"when".to_string()));
        assert_eq!(labels(""), vec!["policy".to_string()]);
        assert!(labels("policy \"a\" {\n  schedule \"s\" {\n    ").contains(&"cron".to_string()));
        assert!(
            labels(
                "policy \"a\" {\n  schedule \"s\" {\n    on mon from 08:00 to 09:00 in \"Europe/Ber"
            )
            .contains(&"Europe/Berlin".to_string())
        );
        assert_eq!(labels("policy \"a\" {\n  target "), vec!["k8s".to_string()]);
        let expr = labels("policy \"a\" {\n  metric cpu = prometheus \"x\"\n  let b = 1\n  when c");
        assert!(expr.contains(&"cpu".to_string()) && expr.contains(&"b".to_string()));
        assert!(expr.contains(&"ceil".to_string()) && expr.contains(&"scale".to_string()));
        // In a comment: nothing.
        assert!(labels("policy \"a\" {\n  # when ").is_empty());
    }

    #[test]
    fn edits_cover_only_what_changed() {
        let old = "a\nb\nc\nd\n";
        let new = "a\nB\nB2\nd\n";
        let lines = Lines::new(old, super::super::text::Encoding::Utf16);
        let edit = edit_between(old, new, &lines).unwrap();
        assert_eq!(
            edit.range,
            Range::new(
                lsp_types::Position::new(1, 0),
                lsp_types::Position::new(3, 0)
            )
        );
        assert_eq!(edit.new_text, "B\nB2\n");
    }
}
