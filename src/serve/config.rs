//! The service configuration (RON): metric sources, actuators, watched policy
//! directories, the HTTP listener, the state file, the override token and `dry_run`.
//! Reading it gives diagnostics that point into the RON text, so `policyctl check
//! --config` reports a bad configuration the way it reports a bad policy.

use crate::input::{caps, read_text};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::actuate::ActuatorConfig;
use crate::diagnostic::{Code, Diagnostic, Span};

/// The default HTTP listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9187";

/// The built-in configuration of `policyctl serve` without `--config`: this machine's
/// own CPU, memory and load, the policies of `examples/local/`, and the `record`
/// plugin writing every decision to `examples/out/local-decisions.jsonl`. Paths are
/// relative to the working directory (the repository's root).
pub const BUILT_IN: &str = include_str!("../../examples/local.ron");
/// Where the built-in configuration's paths are relative to.
pub const BUILT_IN_BASE: &str = "examples";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Where metrics come from; policies name them in `metric NAME = SOURCE "QUERY"`.
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    /// Where decisions go; policies name them in `target ACTUATOR "ID"`.
    #[serde(default)]
    pub actuators: Vec<ActuatorConfig>,
    /// Directories (searched recursively for `*.scale`) or single files, watched.
    #[serde(default)]
    pub policies: Vec<PathBuf>,
    /// The HTTP listen address.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Where state is kept across restarts; default `policyctl-state.json` beside the
    /// configuration.
    #[serde(default)]
    pub state_file: Option<PathBuf>,
    /// The bearer token for the override API; without one (and without a file), the
    /// override API refuses every request.
    #[serde(default)]
    pub override_token: Option<String>,
    /// The same, read from a file (trailing whitespace removed).
    #[serde(default)]
    pub override_token_file: Option<PathBuf>,
    /// Named tokens, so that the history shows who set each override:
    /// `[(name: "alice", token: "…"), (name: "ci", token_file: "ci.token")]`.
    #[serde(default)]
    pub override_tokens: Vec<NamedToken>,
    /// Evaluate and export every decision, but never call an actuator's `apply`.
    #[serde(default)]
    pub dry_run: bool,
    /// Where compiled plugins are cached.
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// Queries in flight at once, per source.
    #[serde(default = "default_concurrency")]
    pub max_concurrent_queries: usize,
    /// How long in-flight actuator calls may take to finish at shutdown.
    #[serde(default = "default_grace")]
    pub shutdown_grace_ms: u64,
    /// How much of each policy's ticks `/v1/policies/NAME/history` keeps in memory, in
    /// seconds (at most 3,600 ticks per policy); 0 keeps none. Decisions and override
    /// changes are kept in the state file either way.
    #[serde(default = "default_history")]
    pub history_s: u64,
    /// Policies that run beside another autoscaler: each decides as dry-run, and its
    /// count is exported beside the other's (`policyctl_shadow_*`) and shown by
    /// `/v1/policies/NAME`. Going live is removing its entry.
    #[serde(default)]
    pub shadow: Vec<ShadowConfig>,
    /// Several instances, one leader: `Etcd(endpoints: ["http://127.0.0.1:2379"],
    /// prefix: "/policyctl/", lease_ttl_s: 10)`. Without it, one instance with the state
    /// file (`File`).
    #[serde(default)]
    pub coordination: Coordination,
}

/// Where state lives and who may tick (docs/ha.md).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Coordination {
    /// One instance; state in `state_file`.
    #[default]
    File,
    /// Several instances on etcd (v3 API): one leader ticks and actuates, state under
    /// the prefix, every write fenced by the leader's lease.
    Etcd {
        endpoints: Vec<String>,
        #[serde(default = "default_prefix")]
        prefix: String,
        #[serde(default = "default_ttl")]
        lease_ttl_s: u64,
        #[serde(default)]
        id: Option<String>,
        #[serde(default)]
        user: Option<String>,
        #[serde(default)]
        password_file: Option<PathBuf>,
        #[serde(default)]
        tls: Option<EtcdTls>,
        #[serde(default = "one_shard")]
        shards: u32,
        #[serde(default)]
        api_url: Option<String>,
    },
}

/// TLS to etcd (`https://` endpoints): the CA that signed the members' certificates,
/// and a client certificate when the members ask for one (`--client-cert-auth`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdTls {
    pub ca_file: PathBuf,
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

impl Coordination {
    /// The etcd settings, when coordinating on etcd.
    pub fn etcd(&self) -> Option<EtcdConfig> {
        match self {
            Coordination::File => None,
            Coordination::Etcd {
                endpoints,
                prefix,
                lease_ttl_s,
                id,
                user,
                password_file,
                tls,
                shards,
                api_url,
            } => Some(EtcdConfig {
                endpoints: endpoints.clone(),
                prefix: prefix.clone(),
                lease_ttl_s: *lease_ttl_s,
                id: id.clone(),
                user: user.clone(),
                password_file: password_file.clone(),
                tls: tls.clone(),
                shards: *shards,
                api_url: api_url.clone(),
            }),
        }
    }
}

/// The file name `check` (and the language server) look for beside policies.
pub const DISCOVERED_NAME: &str = "policyctl.ron";

/// The `policyctl.ron` in `dir` or the nearest folder above it.
pub fn nearest(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .map(|d| d.join(DISCOVERED_NAME))
        .find(|candidate| candidate.is_file())
}

/// `coordination: Etcd(…)`'s fields.
#[derive(Debug, Clone)]
pub struct EtcdConfig {
    pub endpoints: Vec<String>,
    /// Every key of this service starts with it (e.g. `/policyctl/shop/`).
    pub prefix: String,
    /// The leader's lease, in seconds: a dead leader is replaced within about this long.
    pub lease_ttl_s: u64,
    /// This instance's name in `/v1/status` and the leader key (default: host name and
    /// process id).
    pub id: Option<String>,
    /// etcd authentication: a user, with the password in a file.
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
    pub tls: Option<EtcdTls>,
    /// How many parts the policies are split into, each led by one instance (1: one
    /// leader for every policy). A policy's shard is [`crate::serve::coordination::shard_of`].
    pub shards: u32,
    /// How the other instances reach this one's HTTP API, to forward overrides to it
    /// (default: `http://` and `listen`, with the host name for an unspecified address).
    pub api_url: Option<String>,
}

impl EtcdConfig {
    /// This instance's API as the others reach it.
    pub fn api(&self, listen: &str) -> String {
        if let Some(url) = &self.api_url {
            return url.trim_end_matches('/').to_string();
        }
        let (host, port) = listen.rsplit_once(':').unwrap_or((listen, "9187"));
        let host = match host {
            "0.0.0.0" | "[::]" | "" => {
                crate::serve::coordination::host_name().unwrap_or_else(|| "localhost".into())
            }
            other => other.to_string(),
        };
        format!("http://{host}:{port}")
    }
}

fn one_shard() -> u32 {
    1
}

fn default_prefix() -> String {
    "/policyctl/".to_string()
}

fn default_ttl() -> u64 {
    10
}

/// `(policy: "shop/web", source: "prometheus", query: "kube_horizontalpodautoscaler_status_desired_replicas{…}")`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowConfig {
    pub policy: String,
    /// A source of the configuration.
    pub source: String,
    /// The other autoscaler's desired count.
    pub query: String,
}

fn default_history() -> u64 {
    super::history::KEEP.as_secs()
}

fn default_listen() -> String {
    DEFAULT_LISTEN.to_string()
}

fn default_concurrency() -> usize {
    16
}

fn default_grace() -> u64 {
    10_000
}

impl ServiceConfig {
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub name: String,
    pub kind: SourceKind,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum SourceKind {
    /// A Prometheus server's HTTP API; queries are PromQL.
    Prometheus {
        url: String,
        #[serde(default = "default_query_timeout")]
        timeout_ms: u64,
        #[serde(default)]
        bearer_token: Option<String>,
        #[serde(default)]
        bearer_token_file: Option<PathBuf>,
        #[serde(default)]
        basic_auth: Option<BasicAuth>,
        /// Extra headers on every request (e.g. a tenant id for Mimir or Thanos).
        #[serde(default)]
        headers: BTreeMap<String, String>,
        /// The largest answer read; a larger one is a missing sample. Real answers
        /// to the one-series queries policies make are a few hundred bytes; a range
        /// query for a window rebuild is a few hundred KiB.
        #[serde(default = "default_max_response_bytes")]
        max_response_bytes: u64,
    },
    /// This machine: queries are the names in [`crate::serve::sources::HOST_METRICS`].
    Host,
    /// A CSV trace (as `simulate --trace` reads) replayed in real time from the
    /// moment the service starts; queries are column names.
    File {
        path: PathBuf,
        /// Start over after the last row (otherwise its samples go stale).
        #[serde(default, rename = "loop")]
        repeat: bool,
    },
}

fn default_query_timeout() -> u64 {
    5_000
}

pub fn default_max_response_bytes() -> u64 {
    16 << 20
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub username: String,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

/// A configuration as read, with the paths it names resolved against its directory.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: ServiceConfig,
    pub text: String,
    /// The directory relative paths are resolved against.
    pub base: PathBuf,
}

impl Loaded {
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base.join(path)
        }
    }

    pub fn state_file(&self) -> PathBuf {
        self.resolve(
            self.config
                .state_file
                .as_deref()
                .unwrap_or(Path::new("policyctl-state.json")),
        )
    }

    pub fn policy_paths(&self) -> Vec<PathBuf> {
        self.config
            .policies
            .iter()
            .map(|p| self.resolve(p))
            .collect()
    }

    /// Every override token, with its name: `override_token` (named `default`), then
    /// `override_tokens`.
    pub fn override_tokens(&self) -> Result<Vec<(String, String)>, String> {
        let mut out = Vec::new();
        if let Some(t) = self.override_token()? {
            out.push(("default".to_string(), t));
        }
        for named in &self.config.override_tokens {
            let token = match (&named.token, &named.token_file) {
                (Some(t), _) => t.clone(),
                (None, Some(path)) => {
                    let path = self.resolve(path);
                    read_text(&path, caps::SECRET)
                        .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?
                        .trim_end()
                        .to_string()
                }
                (None, None) => String::new(),
            };
            if token.is_empty() {
                return Err(format!("override token `{}` is empty", named.name));
            }
            out.push((named.name.clone(), token));
        }
        Ok(out)
    }

    /// The override token, if one is configured.
    pub fn override_token(&self) -> Result<Option<String>, String> {
        if let Some(token) = &self.config.override_token {
            return Ok(Some(token.clone()));
        }
        match &self.config.override_token_file {
            None => Ok(None),
            Some(path) => {
                let path = self.resolve(path);
                let text = read_text(&path, caps::SECRET)
                    .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
                let token = text.trim_end().to_string();
                Ok((!token.is_empty()).then_some(token))
            }
        }
    }
}

/// A named override token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedToken {
    pub name: String,
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

/// Byte offset of a 1-based line and (character) column.
fn offset(text: &str, line: usize, col: usize) -> usize {
    let mut start = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            return start
                + l.char_indices()
                    .nth(col.saturating_sub(1))
                    .map_or(l.len(), |(b, _)| b);
        }
        start += l.len();
    }
    text.len()
}

/// The span of the first quoted occurrence of `value` in `text`, for errors about a
/// value that serde accepted; the start of the file when it cannot be found.
pub fn span_of(text: &str, value: &str) -> Span {
    let quoted = format!("\"{value}\"");
    text.find(&quoted)
        .map_or(Span::new(0, 0), |at| Span::new(at, at + quoted.len()))
}

/// Parse the text; the error is a diagnostic pointing at the offending RON.
pub fn parse(text: &str, file: usize) -> Result<ServiceConfig, Diagnostic> {
    // `Some(...)` around optional values is not required: `state_file: "x"` reads.
    ron::Options::default()
        .with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME)
        .from_str::<ServiceConfig>(text)
        .map_err(|e| {
            let start = offset(text, e.span.start.line, e.span.start.col);
            let end = offset(text, e.span.end.line, e.span.end.col).max(start);
            let end = if end == start {
                (start + 1).min(text.len())
            } else {
                end
            };
            Diagnostic::new(
                Code::ConfigInvalid,
                file,
                Span::new(start, end),
                format!("invalid service configuration: {}", e.code),
            )
            .label("here")
            .help("see docs/serve.md for every field of the service configuration")
        })
}

/// Parse a configuration and make the checks that need no plugin and no network: the
/// configuration and its problems, or why it does not parse.
pub fn load(text: String, base: PathBuf) -> Result<(Loaded, Vec<Diagnostic>), Diagnostic> {
    let config = parse(&text, 0)?;
    let loaded = Loaded { config, text, base };
    let problems = validate(&loaded, 0);
    Ok((loaded, problems))
}

/// Checks that need no plugin and no network: unique names, addresses and URLs that
/// parse, files and directories that exist.
pub fn validate(loaded: &Loaded, file: usize) -> Vec<Diagnostic> {
    let config = &loaded.config;
    let text = &loaded.text;
    let mut out = Vec::new();
    let invalid = |value: &str, message: String, help: &str| {
        Diagnostic::new(Code::ConfigInvalid, file, span_of(text, value), message)
            .label("here")
            .help(help.to_string())
    };
    if let Some(etcd) = config.coordination.etcd() {
        if etcd.endpoints.is_empty() {
            out.push(invalid(
                "Etcd",
                "coordination: no etcd endpoint".into(),
                "list the members, e.g. `endpoints: [\"http://127.0.0.1:2379\"]`",
            ));
        }
        if !(2..=3600).contains(&etcd.lease_ttl_s) {
            out.push(invalid(
                "lease_ttl_s",
                format!(
                    "coordination: lease_ttl_s is {}; it is 2 to 3600 seconds",
                    etcd.lease_ttl_s
                ),
                "a dead leader is replaced within about one lease; 10 is a good start",
            ));
        }
        if let Some(url) = &etcd.api_url
            && !is_http_url(url)
        {
            out.push(invalid(
                "api_url",
                format!("coordination: api_url `{url}` is not an http(s) URL"),
                "how the other instances reach this one, e.g. \"http://policyctl-a:9187\"",
            ));
        }
        if !(1..=4096).contains(&etcd.shards) {
            out.push(invalid(
                "shards",
                format!("coordination: shards is {}; it is 1 to 4096", etcd.shards),
                "a few shards per instance spread the policies evenly; e.g. 3 instances, `shards: 6`",
            ));
        }
        if let Some(tls) = &etcd.tls {
            if tls.cert_file.is_some() != tls.key_file.is_some() {
                out.push(invalid(
                    "cert_file",
                    "coordination: `cert_file` and `key_file` go together".into(),
                    "give both (a client certificate and its key), or neither",
                ));
            }
            if etcd.endpoints.iter().any(|e| !e.starts_with("https://")) {
                out.push(invalid(
                    "tls",
                    "coordination: with `tls`, every endpoint is `https://`".into(),
                    "write the members' URLs as https://HOST:PORT",
                ));
            }
        }
        if etcd.user.is_some() != etcd.password_file.is_some() {
            out.push(invalid(
                "user",
                "coordination: `user` and `password_file` go together".into(),
                "give both, or neither",
            ));
        }
    }
    let mut shadowed = std::collections::BTreeSet::new();
    for s in &config.shadow {
        if !config.sources.iter().any(|source| source.name == s.source) {
            out.push(invalid(
                &s.source,
                format!("shadow of `{}`: no source `{}`", s.policy, s.source),
                "name one of the configuration's `sources`",
            ));
        }
        if !shadowed.insert(&s.policy) {
            out.push(invalid(
                &s.policy,
                format!("policy `{}` is shadowed twice", s.policy),
                "keep one `shadow` entry per policy",
            ));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for s in &config.sources {
        if !seen.insert(&s.name) {
            out.push(invalid(
                &s.name,
                format!("two sources are named `{}`", s.name),
                "give every source its own name",
            ));
        }
        match &s.kind {
            SourceKind::Prometheus {
                url,
                bearer_token,
                bearer_token_file,
                basic_auth,
                ..
            } => {
                if !is_http_url(url) {
                    out.push(invalid(
                        url,
                        format!("source `{}`: `{url}` is not an http(s) URL", s.name),
                        "write the server's base URL, e.g. \"http://127.0.0.1:9090\"",
                    ));
                }
                if bearer_token.is_some() && (bearer_token_file.is_some() || basic_auth.is_some())
                    || bearer_token_file.is_some() && basic_auth.is_some()
                {
                    out.push(invalid(
                        &s.name,
                        format!(
                            "source `{}` has more than one kind of authentication",
                            s.name
                        ),
                        "keep one of bearer_token, bearer_token_file and basic_auth",
                    ));
                }
                for p in bearer_token_file
                    .iter()
                    .chain(basic_auth.iter().filter_map(|b| b.password_file.as_ref()))
                {
                    let path = loaded.resolve(p);
                    if !path.is_file() {
                        out.push(invalid(
                            &p.display().to_string(),
                            format!("source `{}`: no file `{}`", s.name, path.display()),
                            "paths are relative to the configuration file",
                        ));
                    }
                }
            }
            SourceKind::Host => {}
            SourceKind::File { path, .. } => {
                let resolved = loaded.resolve(path);
                match read_text(&resolved, caps::TRACE) {
                    Err(e) => out.push(invalid(
                        &path.display().to_string(),
                        format!(
                            "source `{}`: cannot read `{}`: {e}",
                            s.name,
                            resolved.display()
                        ),
                        "paths are relative to the configuration file",
                    )),
                    Ok(trace) => {
                        if let Err(e) = crate::sim::trace::parse(&trace) {
                            out.push(invalid(
                                &path.display().to_string(),
                                format!("source `{}`: `{}`: {e}", s.name, resolved.display()),
                                "a trace is CSV: a header `time,NAME,...`, then RFC 3339 rows",
                            ));
                        }
                    }
                }
            }
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for a in &config.actuators {
        if !seen.insert(&a.name) {
            out.push(invalid(
                &a.name,
                format!("two actuators are named `{}`", a.name),
                "give every actuator its own name",
            ));
        }
    }
    if config.listen.parse::<SocketAddr>().is_err() {
        out.push(invalid(
            &config.listen,
            format!("`{}` is not an address and port", config.listen),
            "e.g. \"127.0.0.1:9187\"",
        ));
    }
    if config.policies.is_empty() {
        out.push(
            Diagnostic::new(
                Code::ConfigInvalid,
                file,
                Span::new(0, 0),
                "the configuration names no policy directory",
            )
            .help("add `policies: [\"policies\"]`"),
        );
    }
    for p in &config.policies {
        let path = loaded.resolve(p);
        if !path.exists() {
            out.push(invalid(
                &p.display().to_string(),
                format!("no policy directory or file `{}`", path.display()),
                "paths are relative to the configuration file",
            ));
        }
    }
    for named in &config.override_tokens {
        if named.token.is_some() == named.token_file.is_some() {
            out.push(invalid(
                "override_tokens",
                format!(
                    "override token `{}` needs one of token and token_file",
                    named.name
                ),
                "give the token, or a file that holds it",
            ));
        }
    }
    if config.override_token.is_some() && config.override_token_file.is_some() {
        out.push(invalid(
            "override_token",
            "both override_token and override_token_file are set".to_string(),
            "keep one",
        ));
    }
    if let Some(p) = &config.override_token_file
        && !loaded.resolve(p).is_file()
    {
        out.push(invalid(
            &p.display().to_string(),
            format!("no file `{}`", loaded.resolve(p).display()),
            "paths are relative to the configuration file",
        ));
    }
    if config.max_concurrent_queries == 0 {
        out.push(invalid(
            "max_concurrent_queries",
            "max_concurrent_queries must be at least 1".to_string(),
            "the default is 16",
        ));
    }
    // What `serve` does at start-up with the same values, so that `check --config`
    // passes exactly the configurations `serve` accepts: build every source (headers,
    // credentials, URL), read the override token, and look at the state file's folder.
    if out.is_empty() {
        for s in &config.sources {
            if let Err(e) = crate::serve::sources::Source::new(s, loaded) {
                out.push(invalid(
                    &s.name,
                    format!("source `{}`: {e}", s.name),
                    "see docs/serve.md",
                ));
            }
            if let SourceKind::Prometheus {
                timeout_ms,
                max_response_bytes,
                ..
            } = &s.kind
                && (*timeout_ms == 0 || *max_response_bytes == 0)
            {
                out.push(invalid(
                    &s.name,
                    format!(
                        "source `{}`: timeout_ms and max_response_bytes must be above 0",
                        s.name
                    ),
                    "every query would fail: leave them out for the defaults",
                ));
            }
        }
        if let Err(e) = loaded.override_token() {
            out.push(invalid(
                "override_token_file",
                e,
                "the file holds the token alone",
            ));
        }
        let state = loaded.state_file();
        if let Some(dir) = state.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.is_dir()
        {
            out.push(invalid(
                "state_file",
                format!("the state file's folder `{}` does not exist", dir.display()),
                "decisions are written there before they are applied: create it, or point state_file elsewhere",
            ));
        }
        if state.is_dir() {
            out.push(invalid(
                "state_file",
                format!("the state file `{}` is a directory", state.display()),
                "name a file",
            ));
        }
    }
    for a in &config.actuators {
        for grant in &a.allow_http {
            if let Err(e) = crate::actuate::grants::HttpGrant::parse(grant) {
                out.push(invalid(
                    grant,
                    format!("actuator `{}`: {e}", a.name),
                    "see docs/plugins.md",
                ));
            }
        }
        let l = &a.limits;
        let zero = [
            ("memory_mib", l.memory_mib == 0),
            ("timeout_ms", l.timeout_ms == 0),
            ("attempts", l.attempts == 0),
            ("concurrency", l.concurrency == 0),
            ("host_resources", l.host_resources < 8),
            ("header_bytes", l.header_bytes < 1024),
        ];
        for (field, bad) in zero {
            if bad {
                out.push(invalid(
                    field,
                    format!(
                        "actuator `{}`: limits.{field} is too small for any call to succeed",
                        a.name
                    ),
                    "leave it out for the default (docs/security.md lists them)",
                ));
            }
        }
    }
    out
}

/// An `http://` or `https://` URL with a host.
fn is_http_url(url: &str) -> bool {
    url.parse::<http::Uri>()
        .is_ok_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some())
}

/// Read a configuration file.
pub fn read(path: &Path) -> Result<(String, PathBuf), String> {
    let text = read_text(path, caps::CONFIG)
        .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    let base = path
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                p.to_path_buf()
            }
        })
        .unwrap_or_else(|| PathBuf::from("."));
    Ok((text, base))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_configuration_parses() {
        let config = parse(BUILT_IN, 0).map_err(|d| d.message);
        assert!(config.is_ok(), "{config:?}");
    }

    #[test]
    fn prometheus_urls_must_be_http_with_a_host() {
        assert!(is_http_url("http://127.0.0.1:9090"));
        assert!(is_http_url("https://prometheus.monitoring/prefix"));
        assert!(!is_http_url("ftp://nowhere"));
        assert!(!is_http_url("127.0.0.1:9090"));
        assert!(!is_http_url("http://"));
    }

    #[test]
    fn an_unknown_field_points_at_itself() {
        let text = "(\n  sources: [],\n  listn: \"x\",\n)";
        let Err(d) = parse(text, 0) else {
            unreachable!("an unknown field parsed")
        };
        assert_eq!(d.code, Code::ConfigInvalid);
        assert!(d.message.contains("listn"), "{}", d.message);
        assert_eq!(&text[d.span().start..d.span().start + 5], "listn");
    }
}
