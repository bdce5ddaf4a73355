//! An actuator's configuration, as the service configuration (RON) gives it: the
//! plugin, its own settings, the capabilities granted to it, and its limits. Nothing
//! is granted by default.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActuatorConfig {
    /// The name policies use in `target NAME "ID"`.
    pub name: String,
    /// The plugin: a WebAssembly component (`.wasm`), relative to the configuration file.
    pub plugin: PathBuf,
    /// The plugin's own settings, readable through its `config` import.
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
    /// Outgoing HTTP: `scheme://host[:port]` patterns; `*.` prefixes a host, `a-b` is a
    /// port range. Nothing else is reachable.
    #[serde(default)]
    pub allow_http: Vec<String>,
    /// CA certificates (PEM files) trusted for this actuator's HTTPS, beside the public
    /// web roots: a Kubernetes API server's own CA, for one.
    #[serde(default)]
    pub tls_ca_files: Vec<PathBuf>,
    /// Headers the host adds to matching requests; the plugin never sees their values.
    #[serde(default)]
    pub inject_headers: Vec<InjectHeader>,
    /// Programs the plugin may run, argv only.
    #[serde(default)]
    pub allow_commands: Vec<AllowCommand>,
    /// Host directories the plugin sees, each under a guest path.
    #[serde(default)]
    pub files: Vec<FileGrant>,
    #[serde(default)]
    pub limits: Limits,
}

impl ActuatorConfig {
    /// An actuator with no setting, no capability and the default limits.
    pub fn new(name: impl Into<String>, plugin: impl Into<PathBuf>) -> Self {
        ActuatorConfig {
            name: name.into(),
            plugin: plugin.into(),
            settings: BTreeMap::new(),
            allow_http: Vec::new(),
            tls_ca_files: Vec::new(),
            inject_headers: Vec::new(),
            allow_commands: Vec::new(),
            files: Vec::new(),
            limits: Limits::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InjectHeader {
    /// A URL prefix, e.g. `https://kube.internal:6443`.
    pub url: String,
    pub header: String,
    /// The value is read from this file at each request (so it can rotate).
    pub value_from_file: PathBuf,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowCommand {
    /// The program, as an absolute path; matched exactly.
    pub program: String,
    /// The whole argument list, one pattern per argument: a literal, `{int}` (a whole
    /// number), `{name}` (letters, digits and `._/:-`, not starting with `-`) or `{any}`
    /// (any text not starting with `-`). Without `args` (and without `args_prefix`),
    /// the program runs with no argument at all.
    #[serde(default)]
    pub args: Vec<String>,
    /// Dangerous, and only where the program is known to be harmless whatever follows:
    /// the arguments must start with these, and *any* may follow (`find` with a prefix
    /// becomes `find … -exec sh -c …`). Replaces `args` when given.
    #[serde(default)]
    pub args_prefix: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileGrant {
    pub host: PathBuf,
    pub guest: String,
    #[serde(default)]
    pub write: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Linear memory per instance.
    pub memory_mib: u64,
    /// Wall-clock budget of one call (`observe` or one `apply` attempt with its
    /// retries), at most 30 s.
    pub timeout_ms: u64,
    /// A granted command is killed after this (and never outlives the call).
    pub command_timeout_ms: u64,
    /// Bytes kept of a command's stdout and of its stderr.
    pub command_output_bytes: usize,
    /// Log lines kept per call; more are counted and dropped.
    pub log_lines: usize,
    /// Bytes kept of one log line.
    pub log_line_bytes: usize,
    /// Attempts of one decision, retries of transient errors included.
    pub attempts: u32,
    /// Bytes kept of the plugin's own error or outcome message.
    pub message_bytes: usize,
    /// Host-side resources one call may hold at once (HTTP fields, requests, bodies,
    /// streams, pollables, open files and directories): each is host memory or a
    /// descriptor outside `memory_mib`.
    pub host_resources: usize,
    /// Bytes of one set of HTTP headers (as the host holds them in memory).
    pub header_bytes: usize,
    /// Outgoing HTTP requests (each a connection) in one call.
    pub http_requests: u32,
    /// Calls of this actuator that may run at once; more wait their turn (within their
    /// budget), so a stuck actuator delays only its own policies.
    pub concurrency: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_mib: 64,
            timeout_ms: 5_000,
            command_timeout_ms: 10_000,
            command_output_bytes: 64 * 1024,
            log_lines: 100,
            log_line_bytes: 1024,
            attempts: 4,
            message_bytes: 4096,
            host_resources: 64,
            header_bytes: 64 * 1024,
            http_requests: 16,
            concurrency: 8,
        }
    }
}

pub const MAX_TIMEOUT: Duration = Duration::from_secs(30);

impl Limits {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms).min(MAX_TIMEOUT)
    }
}

/// The part of the service configuration that `actuate` and `plugin` read.
#[derive(Debug, Clone, Deserialize)]
pub struct ActuatorsFile {
    #[serde(default)]
    pub actuators: Vec<ActuatorConfig>,
    /// Where compiled plugins are cached; default: a `policyctl` folder in the
    /// system's temporary directory.
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
}
