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

/// Each unit as an exact factor: an integer times a power of ten (`%` is 1 × 10^-2,
/// `h` is 3600 × 10^0, `MB` is 1 × 10^6), so that scaling is exact decimal arithmetic.
const UNITS: &[(&str, u64, i32, Kind)] = &[
    ("%", 1, -2, Kind::Percent),
    ("ms", 1, -3, Kind::Duration),
    ("s", 1, 0, Kind::Duration),
    ("m", 60, 0, Kind::Duration),
    ("h", 3600, 0, Kind::Duration),
    ("d", 86400, 0, Kind::Duration),
    ("B", 1, 0, Kind::Bytes),
    ("KB", 1, 3, Kind::Bytes),
    ("MB", 1, 6, Kind::Bytes),
    ("GB", 1, 9, Kind::Bytes),
    ("TB", 1, 12, Kind::Bytes),
    ("KiB", 1024, 0, Kind::Bytes),
    ("MiB", 1_048_576, 0, Kind::Bytes),
    ("GiB", 1_073_741_824, 0, Kind::Bytes),
    ("TiB", 1_099_511_627_776, 0, Kind::Bytes),
    ("k", 1, 3, Kind::Plain),
    ("M", 1, 6, Kind::Plain),
];

/// The decimal `digits` (`70`, `4.03`) times `factor` × 10^`pow10`, computed on decimal
/// digits and rounded once to the nearest double (§1): `70%` is exactly the double of
/// `0.7`, where `70.0 * 0.01` is 0.7000000000000001.
fn scaled(digits: &str, factor: u64, pow10: i32) -> Option<f64> {
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let mut mantissa: Vec<u8> = whole
        .bytes()
        .chain(fraction.bytes())
        .map(|b| b.checked_sub(b'0').filter(|d| *d < 10))
        .collect::<Option<_>>()?;
    let mut carry: u128 = 0;
    for d in mantissa.iter_mut().rev() {
        let v = u128::from(*d) * u128::from(factor) + carry;
        *d = (v % 10) as u8;
        carry = v / 10;
    }
    while carry > 0 {
        mantissa.insert(0, (carry % 10) as u8);
        carry /= 10;
    }
    let exponent = i64::from(pow10) - fraction.len() as i64;
    let text: String = mantissa.iter().map(|d| char::from(b'0' + d)).collect();
    format!("{text}e{exponent}").parse().ok()
}

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
    let _: f64 = digits.parse().map_err(|_| {
        Diagnostic::new(
            Code::InvalidNumber,
            file,
            q.span,
            format!("`{}` is not a number", q.digits),
        )
    })?;
    let (factor, pow10, kind) = match &q.unit {
        None => (1, 0, Kind::Plain),
        Some(unit) => match UNITS.iter().find(|(name, _, _, _)| *name == unit.node) {
            Some((_, factor, pow10, kind)) => (*factor, *pow10, *kind),
            None => {
                let alias = ALIASES
                    .iter()
                    .find(|(a, _)| *a == unit.node.to_lowercase())
                    .map(|(_, u)| *u);
                let help = alias
                    .map(|u| format!("did you mean `{u}`?"))
                    .or_else(|| did_you_mean(&unit.node, UNITS.iter().map(|(n, _, _, _)| *n)))
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
    let number = scaled(&digits, factor, pow10).unwrap_or(f64::INFINITY);
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

#[cfg(test)]
mod tests {
    use super::scaled;

    #[test]
    fn unit_literals_are_exact_decimals() {
        // Each was one ulp off when the parsed number was multiplied by the unit.
        for p in [35, 41, 47, 57, 69, 70, 82, 83, 94, 95] {
            let written = format!("0.{p}");
            assert_eq!(scaled(&p.to_string(), 1, -2), written.parse().ok(), "{p}%");
        }
        assert_eq!(scaled("13", 1, -3), Some(0.013));
        assert_eq!(scaled("4.03", 1, 3), Some(4030.0));
        assert_eq!(scaled("2.01", 1, 6), Some(2_010_000.0));
        assert_eq!(scaled("600", 1_048_576, 0), Some(629_145_600.0));
        assert_eq!(scaled("1.5", 3600, 0), Some(5400.0));
        assert_eq!(scaled("0.1", 60, 0), Some(6.0));
        assert_eq!(scaled("1e3", 1, 0), None);
    }
}
