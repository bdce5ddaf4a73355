//! Metric traces: CSV with a header `time,NAME,...`, RFC 3339 times in increasing
//! order, numbers, and empty cells for missing samples. Every error names its row and
//! column, and loses nothing of the rest of the file.

use std::fmt;

use chrono::{DateTime, Utc};

#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// Column names after `time`.
    pub columns: Vec<String>,
    pub rows: Vec<Row>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub at: DateTime<Utc>,
    /// One per column; `None` is an empty cell.
    pub values: Vec<Option<f64>>,
}

/// A problem with a trace, located as a spreadsheet would: row 1 is the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceError {
    pub row: Option<usize>,
    pub column: Option<String>,
    pub message: String,
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.row, &self.column) {
            (Some(r), Some(c)) => write!(f, "row {r}, column `{c}`: {}", self.message),
            (Some(r), None) => write!(f, "row {r}: {}", self.message),
            (None, Some(c)) => write!(f, "column `{c}`: {}", self.message),
            (None, None) => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for TraceError {}

fn error(row: Option<usize>, column: Option<&str>, message: impl Into<String>) -> TraceError {
    TraceError {
        row,
        column: column.map(str::to_string),
        message: message.into(),
    }
}

pub fn parse(text: &str) -> Result<Trace, TraceError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(text.as_bytes());
    let header = reader
        .headers()
        .map_err(|e| error(Some(1), None, format!("cannot read the header: {e}")))?
        .clone();
    let mut names = header.iter();
    match names.next() {
        Some("time") => {}
        Some(other) => {
            return Err(error(
                Some(1),
                Some(other),
                "the first column must be `time`",
            ));
        }
        None => {
            return Err(error(
                Some(1),
                None,
                "the trace is empty: it needs a header `time,NAME,...`",
            ));
        }
    }
    let columns: Vec<String> = names.map(str::to_string).collect();
    for (i, name) in columns.iter().enumerate() {
        if name.is_empty() {
            return Err(error(
                Some(1),
                None,
                format!("column {} has no name", i + 2),
            ));
        }
        if columns[..i].contains(name) {
            return Err(error(Some(1), Some(name), "the column appears twice"));
        }
    }
    let mut rows: Vec<Row> = Vec::new();
    for (index, record) in reader.records().enumerate() {
        let line = index + 2;
        let record =
            record.map_err(|e| error(Some(line), None, format!("cannot read the row: {e}")))?;
        if record.len() != columns.len() + 1 {
            return Err(error(
                Some(line),
                None,
                format!(
                    "{} cells, but the header has {}",
                    record.len(),
                    columns.len() + 1
                ),
            ));
        }
        let time = record.get(0).unwrap_or_default();
        let at = DateTime::parse_from_rfc3339(time)
            .map_err(|_| {
                error(
                    Some(line),
                    Some("time"),
                    format!("`{time}` is not an RFC 3339 time (e.g. 2026-03-02T09:00:00Z)"),
                )
            })?
            .with_timezone(&Utc);
        if let Some(last) = rows.last()
            && at <= last.at
        {
            return Err(error(
                Some(line),
                Some("time"),
                format!("`{time}` is not after the row before it: times must increase"),
            ));
        }
        let values = columns
            .iter()
            .zip(record.iter().skip(1))
            .map(|(name, cell)| {
                if cell.is_empty() {
                    return Ok(None);
                }
                match cell.parse::<f64>() {
                    Ok(v) if v.is_finite() => Ok(Some(v)),
                    _ => Err(error(
                        Some(line),
                        Some(name),
                        format!("`{cell}` is not a number (an empty cell is a missing sample)"),
                    )),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        rows.push(Row { at, values });
    }
    if rows.is_empty() {
        return Err(error(None, None, "the trace has a header but no rows"));
    }
    Ok(Trace { columns, rows })
}

/// One point of a series in promtool's notation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sample {
    Value(f64),
    /// `_`: no new sample; the last one stays visible for the lookback delta.
    Omitted,
    /// `stale`: Prometheus' staleness marker; the series is missing from here.
    Stale,
}

/// promtool's expanding notation for one series: `1 2 3`, `1+1x3` (1 2 3 4),
/// `5x2` (5 5 5), `10-2x3`, `_` (no new sample), `_x3` (three such), `stale`.
pub fn expand(series: &str) -> Result<Vec<Sample>, String> {
    /// Samples one series may expand to, in all (a month of 1 s samples is 2.6 million).
    const MAX_SAMPLES: usize = 10_000_000;
    let mut out = Vec::new();
    for token in series.split_whitespace() {
        if out.len() > MAX_SAMPLES {
            return Err(format!(
                "the series expands to more than {MAX_SAMPLES} samples"
            ));
        }
        match token {
            "_" => {
                out.push(Sample::Omitted);
                continue;
            }
            "stale" => {
                out.push(Sample::Stale);
                continue;
            }
            _ => {}
        }
        let (body, times) = match token.rsplit_once('x') {
            Some((body, n)) => {
                let n: usize = n
                    .parse()
                    .map_err(|_| format!("`{token}`: `{n}` after `x` is not a count"))?;
                if n > 1_000_000 {
                    return Err(format!("`{token}`: at most 1000000 repetitions"));
                }
                (body, Some(n))
            }
            None => (token, None),
        };
        if body == "_" {
            out.extend(std::iter::repeat_n(Sample::Omitted, times.unwrap_or(1)));
            continue;
        }
        // `a+b` or `a-b`: the operator is a sign that is neither first nor an exponent's.
        let bytes = body.as_bytes();
        let split = (1..bytes.len())
            .find(|&i| matches!(bytes[i], b'+' | b'-') && !matches!(bytes[i - 1], b'e' | b'E'));
        let number = |s: &str| {
            s.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| format!("`{token}`: `{s}` is not a number"))
        };
        let (start, step) = match split {
            Some(i) => {
                let step = number(&body[i + 1..])?;
                (
                    number(&body[..i])?,
                    if bytes[i] == b'-' { -step } else { step },
                )
            }
            None => (number(body)?, 0.0),
        };
        match times {
            None if split.is_some() => {
                return Err(format!("`{token}`: a step needs a count, e.g. `{body}x10`"));
            }
            None => out.push(Sample::Value(start)),
            Some(n) => out.extend((0..=n).map(|k| Sample::Value(start + step * k as f64))),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_like_promtool() {
        use Sample::{Omitted, Stale, Value};
        assert_eq!(
            expand("1+1x3").ok(),
            Some(vec![Value(1.0), Value(2.0), Value(3.0), Value(4.0)])
        );
        assert_eq!(
            expand("5x2 _x2 stale 7 _").ok(),
            Some(vec![
                Value(5.0),
                Value(5.0),
                Value(5.0),
                Omitted,
                Omitted,
                Stale,
                Value(7.0),
                Omitted,
            ])
        );
        assert_eq!(
            expand("10-2x2 -1 1e3").ok(),
            Some(vec![
                Value(10.0),
                Value(8.0),
                Value(6.0),
                Value(-1.0),
                Value(1000.0)
            ])
        );
        assert!(expand("1+1").is_err());
        assert!(expand("abc").is_err());
        // Each token is capped, and so is the whole series.
        let many = "1x1000000 ".repeat(12);
        assert!(expand(&many).is_err_and(|e| e.contains("more than 10000000 samples")));
    }

    #[test]
    fn errors_name_row_and_column() {
        let bad = |text: &str| parse(text).err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(
            bad("time,cpu\n2026-01-01T00:00:00Z,x\n"),
            "row 2, column `cpu`: `x` is not a number (an empty cell is a missing sample)"
        );
        assert!(
            bad("time,cpu\nyesterday,1\n")
                .starts_with("row 2, column `time`: `yesterday` is not an RFC 3339 time")
        );
        assert!(
            bad("time,cpu\n2026-01-01T00:01:00Z,1\n2026-01-01T00:00:00Z,1\n")
                .starts_with("row 3, column `time`")
        );
        assert_eq!(
            bad("when,cpu\n"),
            "row 1, column `when`: the first column must be `time`"
        );
        assert_eq!(
            bad("time,cpu\n2026-01-01T00:00:00Z,1,2\n"),
            "row 2: 3 cells, but the header has 2"
        );
        let ok = parse("time,cpu,mem\n2026-01-01T00:00:00Z,1,\n").ok();
        assert_eq!(
            ok.map(|t| t.rows[0].values.clone()),
            Some(vec![Some(1.0), None])
        );
    }
}
