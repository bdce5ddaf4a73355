//! The syntax tree of a `.scale` file: what was written, with a span on every node.
//! Nothing here is checked; `check` turns it into the model. Spans never take part
//! in equality, so two trees compare equal wherever they were written.

use std::ops::Deref;

use crate::diagnostic::Span;

/// A node with its place in the source. `PartialEq` ignores the span.
#[derive(Debug, Clone)]
pub struct Node<T> {
    pub node: T,
    pub span: Span,
}

impl<T> Node<T> {
    pub fn new(node: T, span: Span) -> Self {
        Node { node, span }
    }
}

impl<T: PartialEq> PartialEq for Node<T> {
    fn eq(&self, other: &Self) -> bool {
        self.node == other.node
    }
}

impl<T> Deref for Node<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.node
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct File {
    pub items: Vec<TopItem>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TopItem {
    Policy(Policy),
    /// Text that could not be parsed; its diagnostic was already reported.
    Error(Span),
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub name: Node<Str>,
    pub stmts: Vec<Node<Stmt>>,
    pub span: Span,
}

impl PartialEq for Policy {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.stmts == other.stmts
    }
}

/// A string literal: its decoded value and the text it was written as.
#[derive(Debug, Clone, PartialEq)]
pub struct Str {
    pub value: String,
    pub raw: String,
}

/// A number literal with its optional unit suffix, exactly as written.
#[derive(Debug, Clone, PartialEq)]
pub struct Quantity {
    /// The digits as written, underscores included.
    pub digits: String,
    pub unit: Option<Node<String>>,
}

impl Quantity {
    pub fn text(&self) -> String {
        match &self.unit {
            Some(unit) => format!("{}{}", self.digits, unit.node),
            None => self.digits.clone(),
        }
    }
}

pub type Ident = Node<String>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Up,
    Down,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Stmt {
    Target {
        actuator: Ident,
        id: Node<Str>,
    },
    Replicas {
        min: Node<Quantity>,
        max: Node<Quantity>,
    },
    Every(Node<Quantity>),
    Metric {
        name: Ident,
        source: Ident,
        query: Node<Str>,
    },
    Let {
        name: Ident,
        expr: Node<Expr>,
    },
    CurrentFrom(Ident),
    Timezone(Node<Str>),
    DryRun,
    Track {
        expr: Node<Expr>,
        target: TrackTarget,
    },
    Desired(Node<Expr>),
    When {
        cond: Node<Expr>,
        sustain: Option<Node<Quantity>>,
        action: Action,
    },
    Buffer(Node<Quantity>),
    Tolerance(Node<Quantity>),
    OnMissing(Missing),
    Stabilize {
        direction: Direction,
        window: Node<Quantity>,
    },
    Limit {
        direction: Direction,
        limit: Limit,
    },
    Cooldown {
        direction: Direction,
        window: Node<Quantity>,
    },
    Schedule(Schedule),
    /// A statement that could not be parsed; its diagnostic was already reported.
    Error,
}

impl Stmt {
    /// The keyword(s) that open the statement, for messages.
    pub fn keyword(&self) -> &'static str {
        match self {
            Stmt::Target { .. } => "target",
            Stmt::Replicas { .. } => "replicas",
            Stmt::Every(_) => "every",
            Stmt::Metric { .. } => "metric",
            Stmt::Let { .. } => "let",
            Stmt::CurrentFrom(_) => "current from",
            Stmt::Timezone(_) => "timezone",
            Stmt::DryRun => "dry-run",
            Stmt::Track { .. } => "track",
            Stmt::Desired(_) => "desired",
            Stmt::When { .. } => "when",
            Stmt::Buffer(_) => "buffer",
            Stmt::Tolerance(_) => "tolerance",
            Stmt::OnMissing(_) => "on missing",
            Stmt::Stabilize {
                direction: Direction::Up,
                ..
            } => "stabilize up",
            Stmt::Stabilize {
                direction: Direction::Down,
                ..
            } => "stabilize down",
            Stmt::Limit { .. } => "limit",
            Stmt::Cooldown {
                direction: Direction::Up,
                ..
            } => "cooldown up",
            Stmt::Cooldown {
                direction: Direction::Down,
                ..
            } => "cooldown down",
            Stmt::Schedule(_) => "schedule",
            Stmt::Error => "",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum TrackTarget {
    At(Node<Quantity>),
    PerReplica(Node<Quantity>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Up(Node<Quantity>),
    Down(Node<Quantity>),
    To(Node<Expr>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Missing {
    Hold,
    ScaleTo {
        replicas: Node<Quantity>,
        after: Node<Quantity>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Limit {
    Rate {
        amount: Node<Quantity>,
        per: Node<Quantity>,
    },
    SelectMin,
    SelectMax,
    Disabled,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub name: Node<Str>,
    pub stmts: Vec<Node<SchedStmt>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SchedStmt {
    Window(Window),
    Effect(Effect),
    /// A line that could not be parsed; its diagnostic was already reported.
    Error,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub kind: WindowKind,
    pub zone: Option<Node<Str>>,
    pub except: Vec<Node<String>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum WindowKind {
    Weekly {
        days: Vec<Node<DayItem>>,
        from: Node<String>,
        to: Node<String>,
    },
    OneOff {
        from: Node<String>,
        to: Node<String>,
    },
    Cron {
        expr: Node<Str>,
        duration: Node<Quantity>,
    },
}

/// Days are numbered from Monday = 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DayItem {
    Day(u8),
    Range(u8, u8),
    Daily,
}

/// The grammar's `keyword` rule, in its order: words that are never a reference in an
/// expression, and that may not name a metric or a `let`. The order matters to the
/// parser's fast path (`syntax::fast::is_keyword`).
pub const KEYWORDS: [&str; 43] = [
    "policy",
    "target",
    "replicas",
    "every",
    "metric",
    "let",
    "current",
    "from",
    "timezone",
    "track",
    "at",
    "per",
    "replica",
    "desired",
    "when",
    "for",
    "scale",
    "up",
    "down",
    "by",
    "to",
    "buffer",
    "tolerance",
    "on",
    "missing",
    "hold",
    "after",
    "stabilize",
    "limit",
    "select",
    "disabled",
    "cooldown",
    "schedule",
    "in",
    "except",
    "cron",
    "exactly",
    "least",
    "most",
    "daily",
    "and",
    "or",
    "not",
];

pub const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    AtLeast(Node<Quantity>),
    AtMost(Node<Quantity>),
    Exactly(Node<Quantity>),
    Range(Node<Quantity>, Node<Quantity>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
    And,
    Or,
    /// `a ?? b`: `a` where it is present, else `b`.
    Fallback,
}

impl BinOp {
    pub fn as_str(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::And => "and",
            BinOp::Or => "or",
            BinOp::Fallback => "??",
        }
    }

    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinOp::Gt | BinOp::Ge | BinOp::Lt | BinOp::Le | BinOp::Eq | BinOp::Ne
        )
    }

    pub fn is_logical(self) -> bool {
        matches!(self, BinOp::And | BinOp::Or)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnOp {
    Neg,
    Not,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Number(Quantity),
    Name(String),
    Current,
    Unary(UnOp, Box<Node<Expr>>),
    Binary(BinOp, Box<Node<Expr>>, Box<Node<Expr>>),
    Call(Ident, Vec<Node<Expr>>),
    /// Parentheses as written, kept so that `fmt` keeps them.
    Paren(Box<Node<Expr>>),
}
