//! Number literals and their units: normalisation (`45%` → 0.45, `5m` → 300 s,
//! `1KiB` → 1024) and the check that a number has the kind its place needs.

use std::time::Duration;

use crate::diagnostic::{Code, Diagnostic};
use crate::syntax::ast::{Node, Quantity};

use super::suggest::did_you_mean;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Plain,
    Percent,
    Duration,
    Bytes,
}

impl Kind {
    fn describe(self) -> &'static str {
        match self {
            Kind::Plain => "a plain number",
            Kind::Percent => "a percentage",
            Kind::Duration => "a duration",
            Kind::Bytes => "a size in bytes",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Value {
    pub number: f64,
    pub kind: Kind,
}

const UNITS: &[(&str, f64, Kind)] = &[
    ("%", 0.01, Kind::Percent),
    ("ms", 0.001, Kind::Duration),
    ("s", 1.0, Kind::Duration),
    ("m", 60.0, Kind::Duration),
    ("h", 3600.0, Kind::Duration),
    ("d", 86400.0, Kind::Duration),
    ("B", 1.0, Kind::Bytes),
    ("KB", 1e3, Kind::Bytes),
    ("MB", 1e6, Kind::Bytes),
    ("GB", 1e9, Kind::Bytes),
    ("TB", 1e12, Kind::Bytes),
    ("KiB", 1024.0, Kind::Bytes),
    ("MiB", 1048576.0, Kind::Bytes),
    ("GiB", 1073741824.0, Kind::Bytes),
    ("TiB", 1099511627776.0, Kind::Bytes),
    ("k", 1e3, Kind::Plain),
    ("M", 1e6, Kind::Plain),
];

/// Words people write for a unit that is spelt otherwise here.
const ALIASES: &[(&str, &str)] = &[
    ("sec", "s"),
    ("secs", "s"),
    ("min", "m"),
    ("mins", "m"),
    ("hr", "h"),
    ("hrs", "h"),
    ("day", "d"),
    ("days", "d"),
];

/// The value of a literal, its unit applied.
pub fn evaluate(q: &Node<Quantity>, file: usize) -> Result<Value, Diagnostic> {
    let digits: String = q.digits.chars().filter(|c| *c != '_').collect();
    let number: f64 = digits.parse().map_err(|_| {
        Diagnostic::new(
            Code::InvalidNumber,
            file,
            q.span,
            format!("`{}` is not a number", q.digits),
        )
    })?;
    let (scale, kind) = match &q.unit {
        None => (1.0, Kind::Plain),
        Some(unit) => match UNITS.iter().find(|(name, _, _)| *name == unit.node) {
            Some((_, scale, kind)) => (*scale, *kind),
            None => {
                let alias = ALIASES
                    .iter()
                    .find(|(a, _)| *a == unit.node.to_lowercase())
                    .map(|(_, u)| *u);
                let help = alias
                    .map(|u| format!("did you mean `{u}`?"))
                    .or_else(|| did_you_mean(&unit.node, UNITS.iter().map(|(n, _, _)| *n)))
                    .unwrap_or_else(|| {
                        "units are % ms s m h d B KB MB GB TB KiB MiB GiB TiB k M".to_string()
                    });
                return Err(Diagnostic::new(
                    Code::UnknownUnit,
                    file,
                    unit.span,
                    format!("unknown unit `{}`", unit.node),
                )
                .label("not a unit")
                .help(help));
            }
        },
    };
    let number = number * scale;
    if !number.is_finite() {
        let text = q.text();
        let shown = if text.len() > 24 {
            format!("{}…", &text[..20])
        } else {
            text
        };
        return Err(Diagnostic::new(
            Code::InvalidNumber,
            file,
            q.span,
            format!("`{shown}` is too large"),
        )
        .label("beyond floating point"));
    }
    Ok(Value { number, kind })
}

/// Check that a literal is of `kind`, for the statement named by `place`.
pub fn expect(q: &Node<Quantity>, kind: Kind, place: &str, file: usize) -> Result<f64, Diagnostic> {
    let value = evaluate(q, file)?;
    if value.kind == kind {
        return Ok(value.number);
    }
    let help = match kind {
        Kind::Duration => match value.number {
            n if n >= 60.0 && n % 60.0 == 0.0 => {
                format!("write a unit, e.g. `{}s` or `{}m`", q.digits, n / 60.0)
            }
            _ => format!("write a unit, e.g. `{}s`", q.digits),
        },
        Kind::Percent => format!(
            "write it as a percentage, e.g. `{}%`",
            (value.number * 100.0).round()
        ),
        Kind::Plain => "remove the unit".to_string(),
        Kind::Bytes => format!("write a size, e.g. `{}MiB`", q.digits),
    };
    Err(Diagnostic::new(
        Code::UnitMismatch,
        file,
        q.span,
        format!("{place} takes {}, found `{}`", kind.describe(), q.text()),
    )
    .label(value.kind.describe())
    .help(help))
}

pub fn expect_duration(
    q: &Node<Quantity>,
    place: &str,
    file: usize,
) -> Result<Duration, Diagnostic> {
    let seconds = expect(q, Kind::Duration, place, file)?;
    Duration::try_from_secs_f64(seconds).map_err(|_| {
        Diagnostic::new(
            Code::InvalidNumber,
            file,
            q.span,
            format!("`{}` is not a usable duration", q.text()),
        )
    })
}

/// A whole, non-negative number without a unit (replica counts, tick counts).
pub fn expect_count(q: &Node<Quantity>, place: &str, file: usize) -> Result<u32, Diagnostic> {
    let number = expect(q, Kind::Plain, place, file)?;
    if number.fract() != 0.0 {
        return Err(Diagnostic::new(
            Code::NotAnInteger,
            file,
            q.span,
            format!("{place} takes a whole number, found `{}`", q.text()),
        )
        .label("not a whole number"));
    }
    if number > f64::from(u32::MAX) {
        return Err(Diagnostic::new(
            Code::OutOfRange,
            file,
            q.span,
            format!("`{}` is too large for {place}", q.text()),
        ));
    }
    Ok(number as u32)
}

pub fn expect_percent(q: &Node<Quantity>, place: &str, file: usize) -> Result<f64, Diagnostic> {
    expect(q, Kind::Percent, place, file)
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CountOrPercent {
    Count(u32),
    Percent(f64),
}

pub fn expect_count_or_percent(
    q: &Node<Quantity>,
    place: &str,
    file: usize,
) -> Result<CountOrPercent, Diagnostic> {
    if evaluate(q, file)?.kind == Kind::Percent {
        return Ok(CountOrPercent::Percent(expect_percent(q, place, file)?));
    }
    match expect_count(q, place, file) {
        Ok(n) => Ok(CountOrPercent::Count(n)),
        Err(mut d) if d.code == Code::UnitMismatch => {
            d.message = format!(
                "{place} takes a count or a percentage, found `{}`",
                q.text()
            );
            d.help = Some("write a number of replicas (`4`) or a percentage (`50%`)".into());
            Err(d)
        }
        Err(d) => Err(d),
    }
}
