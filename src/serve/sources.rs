//! Metric sources: a Prometheus server, this machine, or a CSV trace replayed in real
//! time. A query answers one number or a missing sample with its reason; a source that
//! keeps history also answers range queries (for rebuilding `for` windows and for
//! backtests).

use crate::input::{caps, read_text};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Duration as TimeDelta, Utc};
use http::{HeaderName, HeaderValue};
use prometheus_http_query::Client;
use prometheus_http_query::response::{Data, PromqlResult};

use super::config::{Loaded, SourceConfig, SourceKind};
use crate::sim::trace::{self, Trace};

/// A sample, or why there is none.
pub type Sample = Result<f64, String>;

/// A range query's answer: one point per step, `None` where there was no value.
pub type Series = Vec<(DateTime<Utc>, Option<f64>)>;

/// What the `host` source answers, with what each means.
pub const HOST_METRICS: &[(&str, &str)] = &[
    (
        "cpu",
        "busy fraction of all cores since the last query (0 to 1)",
    ),
    ("cpus", "logical cores"),
    ("load1", "load average over 1 minute"),
    ("load5", "load average over 5 minutes"),
    ("load15", "load average over 15 minutes"),
    ("memory", "bytes in use (total minus available)"),
    ("memory_ratio", "fraction of memory in use (0 to 1)"),
    ("memory_available", "bytes available"),
    ("memory_total", "bytes in all"),
];

pub enum Source {
    Prometheus(Prometheus),
    Host(Host),
    File(File),
}

impl Source {
    pub fn new(config: &SourceConfig, loaded: &Loaded) -> Result<Source, String> {
        match &config.kind {
            SourceKind::Prometheus {
                url,
                timeout_ms,
                max_response_bytes,
                bearer_token,
                bearer_token_file,
                basic_auth,
                headers,
            } => {
                let mut extra = Vec::new();
                for (k, v) in headers {
                    extra.push(header(k, v)?);
                }
                let read = |p: &std::path::Path| {
                    let p = loaded.resolve(p);
                    read_text(&p, caps::SECRET)
                        .map(|t| t.trim_end().to_string())
                        .map_err(|e| format!("cannot read `{}`: {e}", p.display()))
                };
                let token = match (bearer_token, bearer_token_file) {
                    (Some(t), _) => Some(t.clone()),
                    (None, Some(f)) => Some(read(f)?),
                    (None, None) => None,
                };
                if let Some(t) = token {
                    extra.push(header("authorization", &format!("Bearer {t}"))?);
                }
                if let Some(b) = basic_auth {
                    let password = match (&b.password, &b.password_file) {
                        (Some(p), _) => p.clone(),
                        (None, Some(f)) => read(f)?,
                        (None, None) => String::new(),
                    };
                    let encoded = base64(format!("{}:{password}", b.username).as_bytes());
                    extra.push(header("authorization", &format!("Basic {encoded}"))?);
                }
                let client = Client::try_from(url.as_str())
                    .map_err(|e| format!("source `{}`: {e}", config.name))?;
                Ok(Source::Prometheus(Prometheus {
                    client,
                    headers: extra,
                    timeout: Duration::from_millis(*timeout_ms),
                    max_bytes: *max_response_bytes,
                }))
            }
            SourceKind::Host => Ok(Source::Host(Host::new())),
            SourceKind::File { path, repeat } => {
                let path = loaded.resolve(path);
                let text = read_text(&path, caps::TRACE)
                    .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
                let trace =
                    trace::parse(&text).map_err(|e| format!("`{}`: {e}", path.display()))?;
                Ok(Source::File(File::new(trace, *repeat, Utc::now())))
            }
        }
    }

    /// A Prometheus server with no authentication (backtests).
    pub fn prometheus(url: &str, timeout: Duration) -> Result<Source, String> {
        let client = Client::try_from(url).map_err(|e| format!("`{url}`: {e}"))?;
        Ok(Source::Prometheus(Prometheus {
            client,
            headers: Vec::new(),
            timeout,
            max_bytes: super::config::default_max_response_bytes(),
        }))
    }

    /// How long one query may take before it counts as missing.
    pub fn timeout(&self) -> Duration {
        match self {
            Source::Prometheus(p) => p.timeout,
            Source::Host(_) | Source::File(_) => Duration::from_secs(1),
        }
    }

    /// The value of `query` at `at`.
    pub async fn instant(&self, query: &str, at: DateTime<Utc>) -> Sample {
        match self {
            Source::Prometheus(p) => tokio::time::timeout(p.timeout, p.instant(query, at))
                .await
                .unwrap_or_else(|_| Err(format!("timed out after {:?}", p.timeout))),
            Source::Host(h) => h.read(query),
            Source::File(f) => f.read(query, at),
        }
    }

    /// `query` at every `step` from `start` to `end`, where the source keeps history.
    pub async fn range(
        &self,
        query: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        step: Duration,
    ) -> Option<Result<Series, String>> {
        match self {
            Source::Prometheus(p) => Some(p.range(query, start, end, step).await),
            Source::Host(_) | Source::File(_) => None,
        }
    }
}

/// `query` at every `every` from `start` to `end`, in range queries of at most 10,000
/// points each (Prometheus' limit is 11,000).
pub async fn series(
    source: &Source,
    query: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    every: Duration,
) -> Result<Series, String> {
    let every = every.max(Duration::from_secs(1));
    let step = TimeDelta::from_std(every).unwrap_or(TimeDelta::seconds(15));
    let chunk = step * 10_000;
    let mut series = Series::new();
    let mut from = start;
    while from <= end {
        let to = (from + chunk - step).min(end);
        let part = source
            .range(query, from, to, every)
            .await
            .ok_or_else(|| "this source keeps no history".to_string())??;
        series.extend(part);
        from = to + step;
    }
    Ok(series)
}

/// The history of every metric of `policy` from `start` to `end`, one row per
/// `every`, as a trace `simulate` replays. Range queries are split so that none asks
/// Prometheus for more than 10,000 points (its limit is 11,000).
pub async fn history(
    source: &Source,
    policy: &crate::model::Policy,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Trace, String> {
    let mut columns: Vec<Series> = Vec::new();
    for m in &policy.metrics {
        columns.push(
            series(source, &m.query, start, end, policy.every)
                .await
                .map_err(|e| format!("metric `{}`: {e}", m.name))?,
        );
    }
    let points = columns.iter().map(Vec::len).min().unwrap_or(0);
    let rows = (0..points)
        .map(|i| trace::Row {
            at: columns[0][i].0,
            values: columns.iter().map(|c| c[i].1).collect(),
        })
        .collect();
    Ok(Trace {
        columns: policy.metrics.iter().map(|m| m.name.clone()).collect(),
        rows,
    })
}

fn header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), String> {
    let n = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("`{name}` is not a header name"))?;
    let mut v =
        HeaderValue::from_str(value).map_err(|_| format!("header `{name}` has a bad value"))?;
    v.set_sensitive(true);
    Ok((n, v))
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(A[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A number a policy can use, or why not.
fn usable(value: f64) -> Sample {
    if value.is_nan() {
        Err("the query returned NaN".into())
    } else if value.is_infinite() {
        Err("the query returned an infinite value".into())
    } else {
        Ok(value)
    }
}

pub struct Prometheus {
    client: Client,
    headers: Vec<(HeaderName, HeaderValue)>,
    timeout: Duration,
    /// The largest answer read (`max_response_bytes`).
    max_bytes: u64,
}

/// The envelope of every Prometheus API answer.
#[derive(serde::Deserialize)]
#[serde(tag = "status")]
enum Answer {
    #[serde(rename = "success")]
    Success { data: PromqlResult },
    #[serde(rename = "error")]
    Error {
        #[serde(rename = "errorType", default)]
        kind: String,
        #[serde(default)]
        error: String,
    },
}

impl Prometheus {
    /// Read an answer as it streams in, never more than `max_bytes` of it: a server
    /// (or a proxy in front of it) that streams a huge body costs a missing sample,
    /// not the service's memory.
    async fn answer(
        &self,
        sent: Result<reqwest::Response, prometheus_http_query::Error>,
    ) -> Result<PromqlResult, String> {
        let mut response = sent.map_err(|e| format!("query failed: {e}"))?;
        let status = response.status();
        if let Some(length) = response.content_length()
            && length > self.max_bytes
        {
            return Err(format!(
                "the answer is {} (HTTP {status}); at most {} is read (max_response_bytes)",
                crate::input::show_bytes(length),
                crate::input::show_bytes(self.max_bytes)
            ));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("query failed while reading the answer: {e}"))?
        {
            body.extend_from_slice(&chunk);
            if body.len() as u64 > self.max_bytes {
                return Err(format!(
                    "the answer is larger than {} (max_response_bytes)",
                    crate::input::show_bytes(self.max_bytes)
                ));
            }
        }
        match serde_json::from_slice::<Answer>(&body) {
            Ok(Answer::Success { data }) => Ok(data),
            Ok(Answer::Error { kind, error }) => {
                Err(format!("query failed: Prometheus says {kind}: {error}"))
            }
            Err(_) if !status.is_success() => Err(format!("query failed: HTTP {status}")),
            Err(e) => Err(format!(
                "query failed: the answer is not Prometheus JSON: {e}"
            )),
        }
    }

    async fn instant(&self, query: &str, at: DateTime<Utc>) -> Sample {
        let mut q = self
            .client
            .query(query)
            .at(at.timestamp())
            .timeout(self.timeout.as_millis() as i64);
        for (k, v) in &self.headers {
            q = q.header(k.clone(), v.clone());
        }
        let result = self.answer(q.get_raw().await).await?;
        match result.data() {
            Data::Scalar(s) => usable(s.value()),
            Data::Vector(v) => match v.as_slice() {
                [] => Err("the query returned no series".into()),
                [one] => usable(one.sample().value()),
                many => Err(format!(
                    "the query returned {} series; it must return one (aggregate it, e.g. with sum)",
                    many.len()
                )),
            },
            Data::Matrix(_) => {
                Err("the query returned a range vector; it must return one number".into())
            }
        }
    }

    async fn range(
        &self,
        query: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        step: Duration,
    ) -> Result<Series, String> {
        let mut q = self
            .client
            .query_range(
                query,
                start.timestamp(),
                end.timestamp(),
                step.as_secs_f64(),
            )
            .timeout(self.timeout.as_millis() as i64);
        for (k, v) in &self.headers {
            q = q.header(k.clone(), v.clone());
        }
        let result = tokio::time::timeout(self.timeout.max(Duration::from_secs(30)), async {
            self.answer(q.get_raw().await).await
        })
        .await
        .map_err(|_| "the range query timed out".to_string())?
        .map_err(|e| format!("range {e}"))?;
        let points: Vec<(f64, f64)> = match result.data() {
            Data::Matrix(m) => match m.as_slice() {
                [] => Vec::new(),
                [one] => one
                    .samples()
                    .iter()
                    .map(|s| (s.timestamp(), s.value()))
                    .collect(),
                many => {
                    return Err(format!(
                        "the query returned {} series; it must return one",
                        many.len()
                    ));
                }
            },
            Data::Scalar(s) => vec![(s.timestamp(), s.value())],
            Data::Vector(_) => return Err("a range query returned an instant vector".into()),
        };
        // One point per step, `None` where Prometheus had nothing.
        let step = TimeDelta::from_std(step).unwrap_or(TimeDelta::seconds(15));
        let mut out = Vec::new();
        let mut at = start.timestamp();
        let mut i = 0;
        while at <= end.timestamp() {
            while points.get(i).is_some_and(|p| (p.0 as i64) < at) {
                i += 1;
            }
            let value = points
                .get(i)
                .filter(|p| p.0 as i64 == at)
                .and_then(|p| usable(p.1).ok());
            if let Some(t) = DateTime::from_timestamp(at, 0) {
                out.push((t, value));
            }
            at += step.num_seconds().max(1);
        }
        Ok(out)
    }
}

/// This machine, read from `/proc`.
pub struct Host {
    last_cpu: Mutex<Option<CpuReading>>,
}

#[derive(Clone, Copy)]
struct CpuReading {
    read_at: Instant,
    busy: u64,
    total: u64,
    /// The utilisation computed at `read_at`.
    value: f64,
}

impl Host {
    fn new() -> Host {
        let host = Host {
            last_cpu: Mutex::new(None),
        };
        // A first reading, so the first query has an interval to measure.
        let _ = host.cpu();
        host
    }

    fn read(&self, name: &str) -> Sample {
        match name {
            "cpu" => self.cpu(),
            "cpus" => Ok(std::thread::available_parallelism().map_or(1, |n| n.get()) as f64),
            "load1" | "load5" | "load15" => {
                let text = std::fs::read_to_string("/proc/loadavg")
                    .map_err(|e| format!("cannot read /proc/loadavg: {e}"))?;
                let i = match name {
                    "load1" => 0,
                    "load5" => 1,
                    _ => 2,
                };
                text.split_whitespace()
                    .nth(i)
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| "cannot parse /proc/loadavg".to_string())
            }
            "memory" | "memory_ratio" | "memory_available" | "memory_total" => {
                let text = std::fs::read_to_string("/proc/meminfo")
                    .map_err(|e| format!("cannot read /proc/meminfo: {e}"))?;
                let field = |key: &str| {
                    text.lines()
                        .find_map(|l| l.strip_prefix(key))
                        .and_then(|rest| {
                            rest.trim()
                                .trim_end_matches("kB")
                                .trim()
                                .parse::<f64>()
                                .ok()
                        })
                        .map(|kib| kib * 1024.0)
                        .ok_or_else(|| format!("no {key} in /proc/meminfo"))
                };
                let total = field("MemTotal:")?;
                let available = field("MemAvailable:")?;
                match name {
                    "memory" => Ok(total - available),
                    "memory_available" => Ok(available),
                    "memory_total" => Ok(total),
                    _ => usable((total - available) / total),
                }
            }
            other => Err(format!("the host source has no metric `{other}`")),
        }
    }

    fn cpu(&self) -> Sample {
        let text = std::fs::read_to_string("/proc/stat")
            .map_err(|e| format!("cannot read /proc/stat: {e}"))?;
        let fields: Vec<u64> = text
            .lines()
            .next()
            .filter(|l| l.starts_with("cpu "))
            .ok_or("cannot parse /proc/stat")?
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        if fields.len() < 4 {
            return Err("cannot parse /proc/stat".into());
        }
        // user nice system idle iowait irq softirq steal: idle and iowait are not busy.
        let total: u64 = fields.iter().take(8).sum();
        let idle = fields[3] + fields.get(4).copied().unwrap_or(0);
        let busy = total - idle;
        let now = Instant::now();
        let Ok(mut last) = self.last_cpu.lock() else {
            return Err("the CPU reading is poisoned".into());
        };
        let value = match *last {
            // Several policies ask in the same instant: they get one figure.
            Some(prev) if now.duration_since(prev.read_at) < Duration::from_millis(250) => {
                return Ok(prev.value);
            }
            Some(prev) if total > prev.total => {
                (busy.saturating_sub(prev.busy)) as f64 / (total - prev.total) as f64
            }
            _ if total > 0 => busy as f64 / total as f64,
            _ => 0.0,
        };
        *last = Some(CpuReading {
            read_at: now,
            busy,
            total,
            value,
        });
        Ok(value)
    }
}

/// A trace replayed from `started`: its first row is "now" at `started`.
pub struct File {
    trace: Trace,
    repeat: bool,
    started: DateTime<Utc>,
}

impl File {
    pub fn new(trace: Trace, repeat: bool, started: DateTime<Utc>) -> File {
        File {
            trace,
            repeat,
            started,
        }
    }

    fn read(&self, column: &str, at: DateTime<Utc>) -> Sample {
        let Some(c) = self.trace.columns.iter().position(|n| n == column) else {
            return Err(format!("the trace has no column `{column}`"));
        };
        let (Some(first), Some(last)) = (self.trace.rows.first(), self.trace.rows.last()) else {
            return Err("the trace has no row".into());
        };
        let mut offset = at - self.started;
        let length = last.at - first.at;
        if self.repeat && offset > length {
            // The row after the last is the first again, one typical step later.
            let period = length.num_milliseconds()
                + self
                    .trace
                    .rows
                    .get(1)
                    .map_or(1000, |r| (r.at - first.at).num_milliseconds().max(1));
            offset = TimeDelta::milliseconds(offset.num_milliseconds() % period.max(1));
        }
        let when = first.at + offset;
        let i = self.trace.rows.partition_point(|r| r.at <= when);
        let Some(row) = i.checked_sub(1).and_then(|i| self.trace.rows.get(i)) else {
            return Err("the trace has not started".into());
        };
        if when - row.at > crate::sim::STALE_AFTER {
            return Err("the trace's last row is older than 5 minutes".into());
        }
        row.values
            .get(c)
            .copied()
            .flatten()
            .ok_or_else(|| format!("the trace has no value of `{column}` here"))
            .and_then(usable)
    }
}

/// Whether a fetch error means the source itself is unreachable or failing (a refused
/// connection, a timeout, an HTTP error, a broken answer), rather than one query's
/// problem (Prometheus rejected the query, or its answer is not one number).
pub fn is_outage(error: &str) -> bool {
    error.starts_with("timed out")
        || error.starts_with("no answer within")
        || (error.starts_with("query failed")
            && !error.starts_with("query failed: Prometheus says"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_examples() {
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
    }

    #[test]
    fn the_host_answers_every_metric_it_lists() {
        let host = Host::new();
        for (name, _) in HOST_METRICS {
            let value = host.read(name);
            assert!(
                value.as_ref().is_ok_and(|v| v.is_finite() && *v >= 0.0),
                "{name}: {value:?}"
            );
        }
        assert!(host.read("cpu").is_ok_and(|v| v <= 1.0));
        assert!(host.read("disk").is_err());
    }

    #[test]
    fn a_file_replays_from_its_start_and_loops() {
        let trace = trace::parse(
            "time,q\n2026-01-01T00:00:00Z,1\n2026-01-01T00:00:10Z,2\n2026-01-01T00:00:20Z,\n",
        )
        .map_err(|e| e.to_string());
        let Ok(trace) = trace else {
            unreachable!("{trace:?}")
        };
        let start = Utc::now();
        let f = File::new(trace, true, start);
        assert_eq!(f.read("q", start), Ok(1.0));
        assert_eq!(f.read("q", start + TimeDelta::seconds(12)), Ok(2.0));
        assert!(f.read("q", start + TimeDelta::seconds(21)).is_err());
        // Period 30 s: 35 s in is 5 s in.
        assert_eq!(f.read("q", start + TimeDelta::seconds(35)), Ok(1.0));
        assert!(f.read("nope", start).is_err());
    }
}
