//! `serve` (logging set-up, configuration, the runtime) and `check --config`.

use std::path::{Path, PathBuf};

use policyctl::actuate::Runtime;
use policyctl::check::Options;
use policyctl::diagnostic::{Code, Diagnostic, Severity};
use policyctl::serve::{self, config};

use super::report::{self, Format, Shown};
use super::sim::{Failure, OK, USAGE_OR_IO};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

/// A service configuration as `check --config` sees it.
pub struct ConfigCheck {
    pub path: String,
    pub text: String,
    /// About the configuration itself (file index 0; the caller renumbers).
    pub diagnostics: Vec<Diagnostic>,
    /// `check` options that know the configuration's actuators and sources.
    pub options: Options,
    loaded: Option<config::Loaded>,
}

impl ConfigCheck {
    pub fn policy_paths(&self) -> Vec<PathBuf> {
        self.loaded
            .as_ref()
            .map(config::Loaded::policy_paths)
            .unwrap_or_default()
    }
}

/// Read, parse and validate a configuration, and load every plugin it names.
pub fn check_config(path: &Path) -> Result<ConfigCheck, String> {
    let (text, base) = config::read(path)?;
    Ok(check_text(path.display().to_string(), text, base, true))
}

fn check_text(path: String, text: String, base: PathBuf, plugins: bool) -> ConfigCheck {
    let (loaded, mut diagnostics) = match config::load(text.clone(), base) {
        Ok(loaded) => loaded,
        Err(d) => {
            return ConfigCheck {
                path,
                text,
                diagnostics: vec![d],
                // Nothing is known: every target and source would be reported.
                options: Options::at(chrono::Utc::now()),
                loaded: None,
            };
        }
    };
    if plugins {
        diagnostics.extend(check_plugins(&loaded));
    }
    ConfigCheck {
        path,
        text,
        diagnostics,
        options: serve::policies::options(&loaded),
        loaded: Some(loaded),
    }
}

/// Every plugin loads and exports the actuator interface.
fn check_plugins(loaded: &config::Loaded) -> Vec<Diagnostic> {
    if loaded.config.actuators.is_empty() {
        return Vec::new();
    }
    let cache = loaded.config.cache_dir.as_ref().map(|p| loaded.resolve(p));
    let runtime = match Runtime::new(cache) {
        Ok(r) => r,
        Err(e) => {
            return vec![Diagnostic::new(
                Code::PluginLoad,
                0,
                policyctl::diagnostic::Span::new(0, 0),
                format!("cannot start the plugin runtime: {e}"),
            )];
        }
    };
    let mut out = Vec::new();
    for a in &loaded.config.actuators {
        if let Err(e) = runtime.load(a, &loaded.base) {
            let shown = a.plugin.display().to_string();
            let mut d = Diagnostic::new(
                Code::PluginLoad,
                0,
                config::span_of(&loaded.text, &shown),
                format!("actuator `{}`: the plugin does not load: {e}", a.name),
            )
            .label("this plugin");
            d.help = Some(format!(
                "build it (cargo build --release --target wasm32-wasip2) and check that `{}` is a component of the policyctl:actuator world (`policyctl plugin inspect FILE`)",
                loaded.resolve(&a.plugin).display()
            ));
            out.push(d);
        }
    }
    out
}

/// Logging to standard error. `POLICYCTL_LOG` takes `target=level` directives
/// (`info`, `policyctl=debug,wasmtime=warn`): `Targets`, not `EnvFilter`, whose
/// regex-matching dependency turns on full-DFA regex compilation crate-wide and made
/// `check` spend a quarter of its time compiling PromQL `=~` matchers.
fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::prelude::*;
    let filter = std::env::var("POLICYCTL_LOG")
        .ok()
        .and_then(|v| v.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO));
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        LogFormat::Human => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(ansi)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                // No `target` of tracing's own: the field `target` is the scale target's,
                // and a JSON object must not repeat a key.
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_target(false)
                    .with_ansi(false)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
}

pub fn serve(path: Option<&Path>, log_format: LogFormat) -> Result<u8, Failure> {
    init_logging(log_format);
    let (shown, text, base) = match path {
        Some(p) => {
            let (text, base) = config::read(p).map_err(|e| Failure(USAGE_OR_IO, e))?;
            (p.display().to_string(), text, base)
        }
        None => (
            "<built-in configuration: examples/local.ron>".to_string(),
            config::BUILT_IN.to_string(),
            PathBuf::from(config::BUILT_IN_BASE),
        ),
    };
    // The same checks as `check --config`, plugins aside (they load at start).
    let checked = check_text(shown.clone(), text, base, false);
    let errors: Vec<&Diagnostic> = checked
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .collect();
    let Some(loaded) = checked.loaded.filter(|_| errors.is_empty()) else {
        eprint!(
            "{}",
            report::render(
                Format::Human,
                &[Shown {
                    path: checked.path.clone(),
                    text: checked.text.clone(),
                }],
                &checked.diagnostics,
                1
            )
        );
        return Err(Failure(
            USAGE_OR_IO,
            format!("the service configuration `{shown}` is not valid"),
        ));
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure(USAGE_OR_IO, format!("cannot start the async runtime: {e}")))?;
    runtime
        .block_on(serve::run(loaded))
        .map_err(|e| Failure(USAGE_OR_IO, e.to_string()))?;
    // Plugin instances and in-flight HTTP may hold tasks: do not wait for them.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    Ok(OK)
}
