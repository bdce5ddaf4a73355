//! The parser's fast path: a hand-written reader of the grammar's happy path.
//!
//! pest spends most of `check`'s time on a typical repository (a rule call, a token
//! queue entry and a snapshot of its stack for every keyword tried). Almost every file
//! `check` sees parses without an error, so this module reads `grammar/scale.pest`'s
//! statements directly, token by token, and builds the tree the pest builder would
//! build, spans included. It gives up (`None`) at the first thing it does not expect,
//! and then the file is parsed by pest, which recovers and reports. So it never needs
//! to be right about a broken file: only to build, for a file pest accepts without an
//! error node, exactly pest's tree, and to give up on every other file.
//! `syntax::tests::the_fast_path_builds_what_pest_builds` holds it to that on every
//! policy in the repository and on thousands of mutations of them.
//!
//! Where the grammar's ordered choices decide, this follows them: a name followed by
//! `(` is a call (whatever the name); `not` and `-` in front of an operand are prefix
//! operators; a word is a keyword, not a reference, when the first of the grammar's
//! `keyword` alternatives that it starts with is the whole word (so `tolerance`, which
//! starts with the earlier `to`, is a reference in an expression, as in pest). The
//! expression's operators are then folded with pest's own Pratt algorithm and the
//! precedences of `parser::PRATT`.

use std::iter::Peekable;
use std::vec::IntoIter;

use super::ast::*;
use super::parser::escaped;
use crate::diagnostic::Span;

/// Parse a file that has no syntax error; None at the first surprise.
pub fn parse(text: &str) -> Option<File> {
    let mut p = Reader {
        text,
        bytes: text.as_bytes(),
        pos: 0,
        last_end: 0,
        terms: 0,
    };
    p.skip();
    let mut items = Vec::new();
    while p.pos < p.bytes.len() {
        items.push(TopItem::Policy(p.policy()?));
    }
    Some(File { items })
}

/// Terms in one expression beyond which the fast path leaves it to pest (which
/// refuses more than `MAX_EXPR_TERMS`).
const MAX_TERMS: usize = super::MAX_EXPR_TERMS / 2;

fn is_ident_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'
}

/// One step of an expression as pest's `expr` rule lists them.
enum Item {
    Prefix(UnOp, Span),
    Infix(BinOp),
    Operand(Node<Expr>),
}

/// The precedences `parser::PRATT` gives (pest counts from 20 in steps of 10).
fn infix_precedence(op: BinOp) -> u32 {
    match op {
        BinOp::Or => 20,
        BinOp::And => 30,
        op if op.is_comparison() => 50,
        BinOp::Fallback => 60,
        BinOp::Add | BinOp::Sub => 70,
        _ => 80,
    }
}

fn prefix_precedence(op: UnOp) -> u32 {
    match op {
        UnOp::Not => 40,
        UnOp::Neg => 90,
    }
}

struct Reader<'t> {
    text: &'t str,
    bytes: &'t [u8],
    /// At a token, or at the end: trivia is skipped after every token.
    pos: usize,
    /// Where the last token ended: a node's span ends there.
    last_end: usize,
    /// Terms in the expression being read.
    terms: usize,
}

impl<'t> Reader<'t> {
    /// Skip white space and comments (the grammar's WHITESPACE and COMMENT).
    fn skip(&mut self) {
        while let Some(&b) = self.bytes.get(self.pos) {
            match b {
                b' ' | b'\t' | b'\r' | b'\n' => self.pos += 1,
                b'#' => {
                    self.pos = self.text[self.pos..]
                        .find('\n')
                        .map_or(self.bytes.len(), |n| self.pos + n)
                }
                _ => break,
            }
        }
    }

    /// End a token at `end`: its span, with the trivia after it skipped.
    fn token(&mut self, end: usize) -> Span {
        let span = Span::new(self.pos, end);
        self.last_end = end;
        self.pos = end;
        self.skip();
        span
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn at(&self, s: &str) -> bool {
        self.text[self.pos..].starts_with(s)
    }

    /// A literal piece of punctuation.
    fn punct(&mut self, s: &str) -> Option<Span> {
        self.at(s).then(|| self.token(self.pos + s.len()))
    }

    /// The word at the cursor as the grammar's `name` reads it, without consuming it.
    fn word(&self) -> &'t str {
        let rest = &self.bytes[self.pos..];
        let len = match rest.first() {
            Some(&b) if b.is_ascii_lowercase() || b == b'_' => {
                1 + rest[1..].iter().take_while(|&&b| is_ident_char(b)).count()
            }
            _ => 0,
        };
        &self.text[self.pos..self.pos + len]
    }

    /// A keyword rule (`kw_x = @{ "x" ~ !ident_char }`).
    fn kw(&mut self, word: &str) -> Option<Span> {
        let end = self.pos + word.len();
        (self.at(word) && !self.bytes.get(end).is_some_and(|&b| is_ident_char(b)))
            .then(|| self.token(end))
    }

    fn name(&mut self) -> Option<Ident> {
        let word = self.word();
        if word.is_empty() {
            return None;
        }
        let span = self.token(self.pos + word.len());
        Some(Node::new(word.to_string(), span))
    }

    fn string(&mut self) -> Option<Node<Str>> {
        let start = self.pos;
        let rest = &self.text[start..];
        let (end, value) = if let Some(after_r) = rest.strip_prefix('r') {
            let hashes = after_r.bytes().take_while(|&b| b == b'#').count();
            let body = after_r[hashes..].strip_prefix('"')?;
            let closing = format!("\"{}", &after_r[..hashes]);
            let len = body.find(&closing)?;
            let end = start + 1 + hashes + 1 + len + closing.len();
            (end, body[..len].to_string())
        } else {
            let body = rest.strip_prefix('"')?;
            let bytes = body.as_bytes();
            let (mut len, mut escaped) = (0, false);
            loop {
                match bytes.get(len)? {
                    b'"' => break,
                    b'\n' => return None,
                    b'\\' => (len, escaped) = (len + 2, true),
                    _ => len += 1,
                }
            }
            let value = if escaped {
                unescape(&body[..len])?
            } else {
                body[..len].to_string()
            };
            (start + 1 + len + 1, value)
        };
        let raw = self.text[start..end].to_string();
        let span = self.token(end);
        Some(Node::new(Str { value, raw }, span))
    }

    /// `quantity = ${ number ~ unit? }`.
    fn quantity(&mut self) -> Option<Node<Quantity>> {
        let start = self.pos;
        let digits = |from: usize| {
            self.bytes[from..]
                .iter()
                .take_while(|&&b| b.is_ascii_digit() || b == b'_')
                .count()
        };
        if !self.peek()?.is_ascii_digit() {
            return None;
        }
        let mut end = start + digits(start);
        if self.bytes.get(end) == Some(&b'.')
            && self.bytes.get(end + 1).is_some_and(u8::is_ascii_digit)
        {
            end += 1 + digits(end + 1);
        }
        let number = self.text[start..end].to_string();
        let unit_len = match self.bytes.get(end) {
            Some(b'%') => 1,
            _ => self.bytes[end..]
                .iter()
                .take_while(|b| b.is_ascii_alphabetic())
                .count(),
        };
        let unit = (unit_len > 0).then(|| {
            Node::new(
                self.text[end..end + unit_len].to_string(),
                Span::new(end, end + unit_len),
            )
        });
        let span = self.token(end + unit_len);
        Some(Node::new(
            Quantity {
                digits: number,
                unit,
            },
            span,
        ))
    }

    fn policy(&mut self) -> Option<Policy> {
        let start = self.kw("policy")?.start;
        let name = self.string()?;
        self.punct("{")?;
        let mut stmts = Vec::new();
        while self.punct("}").is_none() {
            stmts.push(self.stmt()?);
        }
        Some(Policy {
            name,
            stmts,
            span: Span::new(start, self.last_end),
        })
    }

    fn stmt(&mut self) -> Option<Node<Stmt>> {
        let start = self.pos;
        if self.kw("dry-run").is_some() {
            return Some(Node::new(Stmt::DryRun, Span::new(start, self.last_end)));
        }
        let keyword = self.word();
        if keyword.is_empty() {
            return None;
        }
        self.kw(keyword)?;
        let stmt = match keyword {
            "target" => Stmt::Target {
                actuator: self.name()?,
                id: self.string()?,
            },
            "replicas" => {
                let min = self.quantity()?;
                self.punct("..")?;
                Stmt::Replicas {
                    min,
                    max: self.quantity()?,
                }
            }
            "every" => Stmt::Every(self.quantity()?),
            "metric" => {
                let name = self.name()?;
                self.punct("=")?;
                Stmt::Metric {
                    name,
                    source: self.name()?,
                    query: self.string()?,
                }
            }
            "let" => {
                let name = self.name()?;
                self.punct("=")?;
                Stmt::Let {
                    name,
                    expr: self.expr()?,
                }
            }
            "current" => {
                self.kw("from")?;
                Stmt::CurrentFrom(self.name()?)
            }
            "timezone" => Stmt::Timezone(self.string()?),
            "track" => {
                let expr = self.expr()?;
                let target = if self.kw("at").is_some() {
                    TrackTarget::At(self.quantity()?)
                } else {
                    self.kw("per")?;
                    self.kw("replica")?;
                    TrackTarget::PerReplica(self.quantity()?)
                };
                Stmt::Track { expr, target }
            }
            "desired" => {
                self.punct("=")?;
                Stmt::Desired(self.expr()?)
            }
            "when" => {
                let cond = self.expr()?;
                let sustain = match self.kw("for") {
                    Some(_) => Some(self.quantity()?),
                    None => None,
                };
                self.kw("scale")?;
                let action = if self.kw("up").is_some() {
                    self.kw("by")?;
                    Action::Up(self.quantity()?)
                } else if self.kw("down").is_some() {
                    self.kw("by")?;
                    Action::Down(self.quantity()?)
                } else {
                    self.kw("to")?;
                    Action::To(self.expr()?)
                };
                Stmt::When {
                    cond,
                    sustain,
                    action,
                }
            }
            "buffer" => Stmt::Buffer(self.quantity()?),
            "tolerance" => Stmt::Tolerance(self.quantity()?),
            "on" => {
                self.kw("missing")?;
                if self.kw("hold").is_some() {
                    Stmt::OnMissing(Missing::Hold)
                } else {
                    self.kw("scale")?;
                    self.kw("to")?;
                    let replicas = self.quantity()?;
                    self.kw("after")?;
                    Stmt::OnMissing(Missing::ScaleTo {
                        replicas,
                        after: self.quantity()?,
                    })
                }
            }
            "stabilize" => Stmt::Stabilize {
                direction: self.direction()?,
                window: self.quantity()?,
            },
            "cooldown" => Stmt::Cooldown {
                direction: self.direction()?,
                window: self.quantity()?,
            },
            "limit" => {
                let direction = self.direction()?;
                let limit = if self.kw("select").is_some() {
                    if self.kw("min").is_some() {
                        Limit::SelectMin
                    } else {
                        self.kw("max")?;
                        Limit::SelectMax
                    }
                } else if self.kw("disabled").is_some() {
                    Limit::Disabled
                } else {
                    let amount = self.quantity()?;
                    self.kw("per")?;
                    Limit::Rate {
                        amount,
                        per: self.quantity()?,
                    }
                };
                Stmt::Limit { direction, limit }
            }
            "schedule" => {
                let name = self.string()?;
                self.punct("{")?;
                let mut stmts = Vec::new();
                while self.punct("}").is_none() {
                    stmts.push(self.sched_stmt()?);
                }
                Stmt::Schedule(Schedule { name, stmts })
            }
            _ => return None,
        };
        Some(Node::new(stmt, Span::new(start, self.last_end)))
    }

    fn direction(&mut self) -> Option<Direction> {
        if self.kw("up").is_some() {
            Some(Direction::Up)
        } else {
            self.kw("down").map(|_| Direction::Down)
        }
    }

    fn sched_stmt(&mut self) -> Option<Node<SchedStmt>> {
        let start = self.pos;
        let stmt = if self.kw("replicas").is_some() {
            SchedStmt::Effect(if self.kw("at").is_some() {
                if self.kw("least").is_some() {
                    Effect::AtLeast(self.quantity()?)
                } else {
                    self.kw("most")?;
                    Effect::AtMost(self.quantity()?)
                }
            } else if self.kw("exactly").is_some() {
                Effect::Exactly(self.quantity()?)
            } else {
                let min = self.quantity()?;
                self.punct("..")?;
                Effect::Range(min, self.quantity()?)
            })
        } else {
            SchedStmt::Window(self.window()?)
        };
        Some(Node::new(stmt, Span::new(start, self.last_end)))
    }

    fn window(&mut self) -> Option<Window> {
        let kind = if self.kw("on").is_some() {
            let mut days = vec![self.day_item()?];
            while self.punct(",").is_some() {
                days.push(self.day_item()?);
            }
            self.kw("from")?;
            let from = self.fixed(clock_len)?;
            self.kw("to")?;
            WindowKind::Weekly {
                days,
                from,
                to: self.fixed(clock_len)?,
            }
        } else if self.kw("from").is_some() {
            let from = self.fixed(datetime_len)?;
            self.kw("to")?;
            WindowKind::OneOff {
                from,
                to: self.fixed(datetime_len)?,
            }
        } else {
            self.kw("cron")?;
            let expr = self.string()?;
            self.kw("for")?;
            WindowKind::Cron {
                expr,
                duration: self.quantity()?,
            }
        };
        let zone = match self.kw("in") {
            Some(_) => Some(self.string()?),
            None => None,
        };
        let mut except = Vec::new();
        if self.kw("except").is_some() {
            except.push(self.fixed(date_len)?);
            while self.punct(",").is_some() {
                except.push(self.fixed(date_len)?);
            }
        }
        Some(Window { kind, zone, except })
    }

    fn day_item(&mut self) -> Option<Node<DayItem>> {
        let start = self.pos;
        if self.kw("daily").is_some() {
            return Some(Node::new(DayItem::Daily, Span::new(start, self.last_end)));
        }
        let first = self.day()?;
        let item = if self.punct("..").is_some() {
            DayItem::Range(first, self.day()?)
        } else {
            DayItem::Day(first)
        };
        Some(Node::new(item, Span::new(start, self.last_end)))
    }

    fn day(&mut self) -> Option<u8> {
        let i = DAY_NAMES.iter().position(|d| self.at(d))?;
        self.kw(DAY_NAMES[i])?;
        Some(i as u8)
    }

    /// An atomic token whose length `len` finds (a clock, a date, a date and time).
    fn fixed(&mut self, len: fn(&[u8]) -> Option<usize>) -> Option<Node<String>> {
        let n = len(&self.bytes[self.pos..])?;
        let text = self.text[self.pos..self.pos + n].to_string();
        let span = self.token(self.pos + n);
        Some(Node::new(text, span))
    }

    // ---------------------------------------------------------------- expressions

    /// `expr = { prefix_op* ~ primary ~ (infix_op ~ prefix_op* ~ primary)* }`, folded as
    /// pest's Pratt parser folds it.
    fn expr(&mut self) -> Option<Node<Expr>> {
        self.terms = 0;
        self.sub_expr()
    }

    fn sub_expr(&mut self) -> Option<Node<Expr>> {
        let mut items = Vec::new();
        self.operand(&mut items)?;
        while let Some(op) = self.infix() {
            items.push(Item::Infix(op));
            self.operand(&mut items)?;
        }
        self.terms += items.len();
        if self.terms > MAX_TERMS {
            return None;
        }
        fold(&mut items.into_iter().peekable(), 0)
    }

    /// `prefix_op* ~ primary`.
    fn operand(&mut self, items: &mut Vec<Item>) -> Option<()> {
        loop {
            let start = self.pos;
            if self.punct("-").is_some() {
                items.push(Item::Prefix(UnOp::Neg, Span::new(start, self.last_end)));
            } else if self.kw("not").is_some() {
                items.push(Item::Prefix(UnOp::Not, Span::new(start, self.last_end)));
            } else {
                break;
            }
            if items.len() > MAX_TERMS {
                return None;
            }
        }
        items.push(Item::Operand(self.primary()?));
        Some(())
    }

    /// `primary = _{ call | paren | quantity | current | reference }`.
    fn primary(&mut self) -> Option<Node<Expr>> {
        let start = self.pos;
        let word = self.word();
        if !word.is_empty()
            && self.text[self.pos + word.len()..]
                .trim_start()
                .starts_with('(')
        {
            // A call, by the first alternative; anything wrong inside it is left to pest.
            let name = self.name()?;
            self.punct("(")?;
            let mut args = Vec::new();
            if self.punct(")").is_none() {
                loop {
                    args.push(self.sub_expr()?);
                    if self.punct(")").is_some() {
                        break;
                    }
                    self.punct(",")?;
                }
            }
            return Some(Node::new(
                Expr::Call(name, args),
                Span::new(start, self.last_end),
            ));
        }
        if self.punct("(").is_some() {
            let inner = self.sub_expr()?;
            self.punct(")")?;
            return Some(Node::new(
                Expr::Paren(Box::new(inner)),
                Span::new(start, self.last_end),
            ));
        }
        if self.peek()?.is_ascii_digit() {
            let q = self.quantity()?;
            return Some(Node::new(Expr::Number(q.node), q.span));
        }
        if let Some(span) = self.kw("current") {
            return Some(Node::new(Expr::Current, span));
        }
        if word.is_empty() || is_keyword(word) {
            return None;
        }
        let name = self.name()?;
        Some(Node::new(Expr::Name(name.node), name.span))
    }

    /// `infix_op`, in the grammar's order.
    fn infix(&mut self) -> Option<BinOp> {
        const SYMBOLS: [(&str, BinOp); 11] = [
            ("??", BinOp::Fallback),
            ("+", BinOp::Add),
            ("-", BinOp::Sub),
            ("*", BinOp::Mul),
            ("/", BinOp::Div),
            (">=", BinOp::Ge),
            ("<=", BinOp::Le),
            ("==", BinOp::Eq),
            ("!=", BinOp::Ne),
            (">", BinOp::Gt),
            ("<", BinOp::Lt),
        ];
        if let Some(&(s, op)) = SYMBOLS.iter().find(|(s, _)| self.at(s)) {
            self.punct(s)?;
            return Some(op);
        }
        if self.kw("and").is_some() {
            Some(BinOp::And)
        } else {
            self.kw("or").map(|_| BinOp::Or)
        }
    }
}

/// The grammar's `!(keyword ~ !ident_char)`: the first alternative that the word starts
/// with must be the whole word.
fn is_keyword(word: &str) -> bool {
    KEYWORDS
        .iter()
        .find(|k| word.starts_with(*k))
        .is_some_and(|k| k.len() == word.len())
}

/// A plain string's body with its escapes read; None for an escape pest's builder
/// reports (or a line break after `\\`, which the grammar refuses).
fn unescape(body: &str) -> Option<String> {
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        out.push(match c {
            '\\' => escaped(chars.next()?)?,
            c => c,
        });
    }
    Some(out)
}

/// pest's Pratt parser (`pest::pratt_parser`): `expr`, `nud`, `led` and `lbp`, with the
/// spans `parser::Builder::expr` gives. None only for a list the reader never makes.
fn fold(items: &mut Peekable<IntoIter<Item>>, rbp: u32) -> Option<Node<Expr>> {
    let mut lhs = match items.next()? {
        Item::Prefix(op, span) => {
            let rhs = fold(items, prefix_precedence(op) - 1)?;
            let span = span.to(rhs.span);
            Node::new(Expr::Unary(op, Box::new(rhs)), span)
        }
        Item::Operand(node) => node,
        Item::Infix(_) => return None,
    };
    // The reader lists an operator after every operand but the last.
    while let Some(&Item::Infix(op)) = items.peek()
        && infix_precedence(op) > rbp
    {
        items.next();
        let rhs = fold(items, infix_precedence(op))?;
        let span = lhs.span.to(rhs.span);
        lhs = Node::new(Expr::Binary(op, Box::new(lhs), Box::new(rhs)), span);
    }
    Some(lhs)
}

/// `clock = @{ ASCII_DIGIT{1,2} ~ ":" ~ ASCII_DIGIT{2} ~ !(ASCII_DIGIT | ":") }`.
fn clock_len(b: &[u8]) -> Option<usize> {
    let hours = b.iter().take(2).take_while(|b| b.is_ascii_digit()).count();
    let rest = b.get(hours..)?;
    let ok = hours > 0
        && rest.first() == Some(&b':')
        && rest
            .get(1..3)
            .is_some_and(|m| m.iter().all(u8::is_ascii_digit))
        && !rest
            .get(3)
            .is_some_and(|&c| c.is_ascii_digit() || c == b':');
    ok.then_some(hours + 3)
}

/// `date = @{ ASCII_DIGIT{4} ~ "-" ~ ASCII_DIGIT{2} ~ "-" ~ ASCII_DIGIT{2} ~ !ASCII_DIGIT }`.
fn date_len(b: &[u8]) -> Option<usize> {
    let shape = b"dddd-dd-dd";
    let ok = b.len() >= shape.len()
        && shape.iter().zip(b).all(|(s, c)| match s {
            b'd' => c.is_ascii_digit(),
            _ => c == s,
        })
        && !b.get(shape.len()).is_some_and(u8::is_ascii_digit);
    ok.then_some(shape.len())
}

/// `datetime = @{ date ~ ("T" ~ ASCII_DIGIT{2} ~ ":" ~ ASCII_DIGIT{2} ~ (":" ~
/// ASCII_DIGIT{2})?)? ~ !ident_char }`.
fn datetime_len(b: &[u8]) -> Option<usize> {
    let date = date_len(b)?;
    let two_digits = |at: usize| {
        b.get(at..at + 2)
            .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
    };
    let mut end = date;
    if b.get(end) == Some(&b'T')
        && two_digits(end + 1)
        && b.get(end + 3) == Some(&b':')
        && two_digits(end + 4)
    {
        end += 6;
        if b.get(end) == Some(&b':') && two_digits(end + 1) {
            end += 3;
        }
    }
    (!b.get(end).is_some_and(|&c| is_ident_char(c))).then_some(end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syntax::parser::{nesting_guard, parse_with_pest};

    /// Every `.scale` file of the repository, by path.
    fn repository_files() -> Vec<(String, String)> {
        fn walk(dir: &std::path::Path, out: &mut Vec<(String, String)>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() && !path.ends_with("target") && !path.ends_with(".git") {
                    walk(&path, out);
                } else if path.extension().is_some_and(|e| e == "scale")
                    && let Ok(text) = std::fs::read_to_string(&path)
                {
                    out.push((path.display().to_string(), text));
                }
            }
        }
        let mut out = Vec::new();
        walk(std::path::Path::new(env!("CARGO_MANIFEST_DIR")), &mut out);
        out.sort();
        out
    }

    /// Cases where the grammar's ordered choices decide.
    const TRICKY: &[&str] = &[
        r#"policy "p" { let x = tolerance + to_x * current - currently }"#,
        r#"policy "p" { let x = current(1) + not(a) + - -b ?? c / (d) }"#,
        r#"policy "p" { let x = f ( a , g() ) # c
        desired = not a > b and c or d == e != f >= g <= h < i }"#,
        r###"policy "p" { metric m = prom r##"a"#b"## target t r"x" timezone "a\"b\\c\n\t" }"###,
        "policy\"p\"{replicas 2..10 every 15s buffer 10% tolerance 0.1 dry-run}",
        "policy \"p\" {\n  replicas 1 .. 2\n  when x > 5m for 5m scale to max(1, x) - 1\n  when x scale up by 1\n  when x scale down by 2\n}",
        "policy \"p\" { on missing hold on missing scale to 2 after 5m limit up select min limit down select max limit up disabled limit down 50% per 60s stabilize up 1m cooldown down 2m current from k }",
        "policy \"p\" { schedule \"s\" { on mon..fri, sat , daily from 9:00 to 19:00 in \"UTC\" except 2026-01-01, 2026-12-25 from 2026-01-01T10:00 to 2026-01-02T10:00:30 cron \"0 9 * * *\" for 8h replicas at least 2 replicas at most 3 replicas exactly 4 replicas 1..2 } }",
        "policy \"p\" { track cpu at 50% track jobs per replica 5 let y = 1_000.5e + 2MiB }",
        "# only a comment\n",
        "",
        "\u{FEFF}policy \"p\" {}",
        "policy \"p\" { let x = a + }",
        "policy \"p\" { let x = f(a,) }",
        "policy \"p\" { let x = for }",
        "policy \"p\" { let x = a\n - }",
        "policy \"p\" { schedule \"s\" { from 2026-01-01T10 to 2026-01-02 } }",
        "policy \"p\" { schedule \"s\" { on mon.. from 9:00 to 10:00 } }",
        "policy \"p\" { target k8s \"a\\qb\" }",
    ];

    /// Whether `syntax::parse` takes the fast path for `text` (after the nesting guard,
    /// as it does); if so, that its tree is pest's.
    fn agree(label: &str, text: &str) -> bool {
        if nesting_guard(text, 0).is_some() {
            return false;
        }
        let Some(fast) = parse(text) else {
            return false;
        };
        let (pest, diagnostics) = parse_with_pest(text, 0);
        assert!(
            diagnostics.is_empty(),
            "{label}: the fast path read a file pest reports:\n{text}\n{diagnostics:#?}"
        );
        // Debug output includes every span (equality ignores them).
        assert_eq!(
            format!("{fast:#?}"),
            format!("{pest:#?}"),
            "{label}: the trees differ for\n{text}"
        );
        true
    }

    #[test]
    fn the_keywords_are_the_grammars_in_its_order() {
        let grammar = include_str!("../../grammar/scale.pest");
        let rule = grammar
            .split("\nkeyword = _{")
            .nth(1)
            .and_then(|r| r.split('}').next())
            .unwrap_or_default();
        let words: Vec<&str> = rule.split('"').skip(1).step_by(2).collect();
        assert_eq!(words, KEYWORDS);
    }

    #[test]
    fn the_fast_path_builds_what_pest_builds() {
        for (i, text) in TRICKY.iter().enumerate() {
            agree(&format!("tricky case {i}"), text);
        }
        // The tricky cases that pest reads without an error are read by the fast path.
        assert!(agree("all statements", TRICKY[6]) && agree("schedules", TRICKY[7]));
        assert!(agree("calls", TRICKY[1]) && agree("keywords", TRICKY[0]));

        let files = repository_files();
        assert!(files.len() > 50, "{} files", files.len());
        let mut read = 0;
        for (path, text) in &files {
            let clean = parse_with_pest(text, 0).1.is_empty();
            let fast = agree(path, text);
            // Every file pest reads without a diagnostic takes the fast path, except
            // for what it leaves to pest on purpose (a byte-order mark).
            if clean && !text.starts_with('\u{FEFF}') {
                assert!(fast, "{path}: the fast path gave up on a clean file");
            }
            read += usize::from(fast);
        }
        assert!(read > 10, "only {read} files took the fast path");

        // Mutations: whatever the fast path accepts, pest reads the same way.
        const PIECES: &[&str] = &[
            "(",
            ")",
            "{",
            "}",
            "-",
            "not ",
            " and ",
            "??",
            ">=",
            "..",
            ",",
            "\"",
            "r#\"",
            "\"#",
            "#",
            "\n",
            " ",
            "5m",
            "50%",
            "x",
            "current",
            "tolerance",
            "for",
            " to ",
            "scale",
            "up",
            "by",
            "1",
            "T",
            ":",
            "mon",
            "in \"UTC\"",
            " except 2026-01-01",
            "_",
            "\\",
            "f(",
            "=",
            "*",
            "9:00",
            "dry-run",
            "let y = 2",
        ];
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n.max(1) as u64) as usize
        };
        let mut accepted = 0;
        for (path, text) in &files {
            for round in 0..60 {
                let mut t = text.clone();
                for _ in 0..1 + next(2) {
                    let mut at = next(t.len() + 1);
                    while !t.is_char_boundary(at) {
                        at -= 1;
                    }
                    match next(3) {
                        0 => t.insert_str(at, PIECES[next(PIECES.len())]),
                        1 => {
                            let mut end = (at + 1 + next(8)).min(t.len());
                            while !t.is_char_boundary(end) {
                                end -= 1;
                            }
                            t.replace_range(at..end, "");
                        }
                        _ => {
                            let line_start = t[..at].rfind('\n').map_or(0, |i| i + 1);
                            let line_end = t[at..].find('\n').map_or(t.len(), |i| at + i + 1);
                            let line = t[line_start..line_end].to_string();
                            t.insert_str(line_start, &line);
                        }
                    }
                }
                accepted += usize::from(agree(&format!("{path}, mutation {round}"), &t));
            }
        }
        // Mutations that keep a file valid (a duplicated line, a deleted comment) test
        // the trees; the others test that the fast path gives up.
        assert!(
            accepted > 100,
            "only {accepted} mutated files took the fast path"
        );
    }
}
