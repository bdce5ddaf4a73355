//! The `policyctl` command line: arguments, dispatch, exit codes and output formats.
//! Exit codes: 0 success, 1 the input was judged and found wanting, 2 usage or I/O.

mod cli;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use policyctl::check::{self, Options, Source};
use policyctl::diagnostic::Severity;
use policyctl::syntax::format::{FormatError, format};

use cli::files::{self, Loaded};
use cli::report::{self, Format, Shown};

#[derive(Parser)]
#[command(
    name = "policyctl",
    version,
    about = "Autoscaling policies you can read, test and explain"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Lint `.scale` files: every error and warning of every file in one run.
    Check {
        /// Files or directories (searched recursively for `*.scale`).
        #[arg(default_value = ".")]
        paths: Vec<PathBuf>,
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
        /// Exit 1 on warnings too.
        #[arg(long)]
        deny_warnings: bool,
        /// Also check this service configuration (RON), and the policies against it:
        /// every `target` must name one of its actuators, every `metric` one of its
        /// sources, and every plugin must load. Without PATHS, its policy directories
        /// are checked.
        #[arg(long, value_name = "FILE.ron")]
        config: Option<PathBuf>,
        /// Check as of this instant (RFC 3339) instead of now: decides which one-off
        /// schedules are in the past.
        #[arg(long, hide = true)]
        now: Option<DateTime<Utc>>,
    },
    /// Run policies for real: fetch metrics, decide, call actuators, hot-reload.
    Serve {
        /// The service configuration (RON). Without it, the built-in configuration:
        /// this machine's own metrics, `examples/local/`, the `record` plugin.
        #[arg(long, value_name = "FILE.ron")]
        config: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "human")]
        log_format: cli::serve::LogFormat,
    },
    /// Rewrite `.scale` files in the one canonical layout (`-` formats standard input).
    Fmt {
        #[arg(default_value = ".")]
        paths: Vec<PathBuf>,
        /// Change nothing; list the files that would change and exit 1 if any would.
        #[arg(long)]
        check: bool,
    },
    /// Replay a metric trace through a policy with the real engine.
    Simulate {
        #[command(flatten)]
        replay: cli::sim::Replay,
        #[arg(long, value_enum, default_value = "human")]
        format: SimFormat,
        /// Print every tick, holds included.
        #[arg(long)]
        all_ticks: bool,
        /// Draw metrics, recommendation, replicas and schedules to an SVG file.
        #[arg(long, value_name = "FILE.svg")]
        plot: Option<PathBuf>,
        /// Run a second version of the policy on the same history and compare them.
        #[arg(long, value_name = "OTHER.scale")]
        compare: Option<PathBuf>,
    },
    /// Convert Kubernetes HorizontalPodAutoscalers and KEDA ScaledObjects to policies.
    /// Exit 1 when a field could not be converted exactly (each is named on stderr and
    /// in a comment of the output), 2 when an input cannot be read.
    Import {
        /// YAML files (multi-document, `List`s) or directories of `*.yaml`/`*.yml`;
        /// `-` reads standard input.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Write one `NAMESPACE/NAME.scale` per object under DIR (default: standard output).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// prometheus-adapter's rules (its config file or ConfigMap): the PromQL of
        /// Pods, Object and External metrics.
        #[arg(long, value_name = "FILE")]
        prometheus_templates: Option<PathBuf>,
        /// Exit 0 even when some fields could not be converted exactly.
        #[arg(long)]
        allow_partial: bool,
    },
    /// The language server (Language Server Protocol over standard input and output),
    /// for editors: diagnostics as `check` gives them, formatting, hover, completion,
    /// definitions, references, renames, symbols, and simulating a policy on a trace.
    Lsp {
        /// Accepted for clients that pass it (VS Code's); stdio is the only transport.
        #[arg(long)]
        stdio: bool,
    },
    /// Replay a policy on Prometheus history beside the count a live autoscaler wanted
    /// (e.g. kube-state-metrics' `kube_horizontalpodautoscaler_status_desired_replicas`),
    /// and report where they differ.
    Shadow {
        policy_file: PathBuf,
        /// The Prometheus that holds the history (range queries).
        #[arg(long, value_name = "URL")]
        prometheus: String,
        /// PromQL of the live autoscaler's desired replica count.
        #[arg(long, value_name = "QUERY")]
        against: String,
        /// How much history to replay, back from `--end` (e.g. `7d`, `12h`).
        #[arg(long, default_value = "7d", value_parser = cli::sim::parse_span)]
        since: std::time::Duration,
        /// The end of the history (RFC 3339; default now).
        #[arg(long)]
        end: Option<chrono::DateTime<chrono::Utc>>,
        /// The policy to run, when the file holds several.
        #[arg(long)]
        policy: Option<String>,
        /// Replicas at the start (default: the live count then).
        #[arg(long)]
        initial: Option<u32>,
        /// Draw both counts, and the metrics, to an SVG file.
        #[arg(long, value_name = "FILE.svg")]
        plot: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "human")]
        format: SimFormat,
    },
    /// Run policy unit tests (`*.scaletest.ron`).
    Test {
        #[arg(default_value = ".")]
        paths: Vec<PathBuf>,
    },
    /// Explain one tick in full: every rule, every step.
    Explain {
        #[command(flatten)]
        replay: cli::sim::Replay,
        /// The tick at or before this instant (RFC 3339).
        #[arg(long)]
        at: DateTime<Utc>,
    },
    /// Drive one actuator by hand: observe a target, and apply a replica count.
    Actuate {
        /// The service configuration (RON) that declares the actuator.
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        actuator: String,
        #[arg(long)]
        target: String,
        /// Apply this count (without it, only observe).
        #[arg(long)]
        replicas: Option<u32>,
        /// The count to report as the current one (default: what observe says).
        #[arg(long)]
        from: Option<u32>,
        #[arg(long)]
        dry_run: bool,
    },
    /// Actuator plugins.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Load a component, check it against the actuator WIT world, and print its info.
    Inspect { file: PathBuf },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum SimFormat {
    Human,
    Json,
}

const OK: u8 = 0;
const FOUND_WANTING: u8 = 1;
const USAGE_OR_IO: u8 = 2;

/// A command whose output goes to a pipe that closes (`policyctl simulate … | head -1`)
/// ends quietly, as `grep` does: SIGPIPE ends the process, instead of Rust's default of
/// ignoring it and panicking in `println!`. Not for `serve`, whose log pipe closing
/// must not stop the scaling (its sockets never raise SIGPIPE: std sends with
/// MSG_NOSIGNAL).
fn quiet_on_closed_pipe() {
    // SAFETY: restoring a signal's default disposition before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            let code = if e.use_stderr() { USAGE_OR_IO } else { OK };
            return ExitCode::from(code);
        }
    };
    if !matches!(args.command, Command::Serve { .. }) {
        quiet_on_closed_pipe();
    }
    let code = match args.command {
        Command::Check {
            paths,
            format,
            deny_warnings,
            config,
            now,
        } => run_check(&paths, format, deny_warnings, config.as_deref(), now),
        Command::Serve { config, log_format } => {
            report_failure(cli::serve::serve(config.as_deref(), log_format))
        }
        Command::Fmt { paths, check } => run_fmt(&paths, check),
        Command::Simulate {
            replay,
            format,
            all_ticks,
            plot,
            compare,
        } => {
            let json = format == SimFormat::Json;
            report_failure(cli::sim::simulate(&cli::sim::SimulateArgs {
                replay,
                json,
                all_ticks,
                plot,
                compare,
            }))
        }
        Command::Lsp { stdio: _ } => {
            let (connection, threads) = lsp_server::Connection::stdio();
            let served = policyctl::lsp::run(connection, policyctl::lsp::Settings::default());
            // The reader thread ends with the client's input; the writer once all is sent.
            let joined = threads.join();
            match served {
                Ok(()) => match joined {
                    Ok(()) => OK,
                    Err(e) => fail(&format!("policyctl lsp: {e}")),
                },
                Err(e) => fail(&format!("policyctl lsp: {e}")),
            }
        }
        Command::Import {
            inputs,
            out,
            prometheus_templates,
            allow_partial,
        } => report_failure(cli::import::import(&cli::import::ImportArgs {
            inputs,
            out,
            templates: prometheus_templates,
            allow_partial,
        })),
        Command::Shadow {
            policy_file,
            prometheus,
            against,
            since,
            end,
            policy,
            initial,
            plot,
            format,
        } => report_failure(cli::shadow::shadow(&cli::shadow::ShadowArgs {
            replay: cli::sim::Replay {
                policy_file,
                trace: None,
                prometheus: Some(prometheus),
                since,
                end,
                policy,
                initial,
                per_replica: Vec::new(),
            },
            against,
            plot,
            json: format == SimFormat::Json,
        })),
        Command::Test { paths } => report_failure(cli::sim::test(&paths)),
        Command::Actuate {
            config,
            actuator,
            target,
            replicas,
            from,
            dry_run,
        } => report_failure(cli::actuate::actuate(&cli::actuate::ActuateArgs {
            config,
            actuator,
            target,
            replicas,
            from,
            dry_run,
        })),
        Command::Plugin {
            command: PluginCommand::Inspect { file },
        } => report_failure(cli::actuate::inspect(&file)),
        Command::Explain { replay, at } => {
            report_failure(cli::sim::explain(&cli::sim::ExplainArgs { replay, at }))
        }
    };
    ExitCode::from(code)
}

fn report_failure(result: Result<u8, cli::sim::Failure>) -> u8 {
    match result {
        Ok(code) => code,
        Err(cli::sim::Failure(code, message)) => {
            eprintln!("error: {message}");
            code
        }
    }
}

fn fail(message: &str) -> u8 {
    eprintln!("error: {message}");
    USAGE_OR_IO
}

fn run_check(
    paths: &[PathBuf],
    format: Format,
    deny_warnings: bool,
    config: Option<&Path>,
    now: Option<DateTime<Utc>>,
) -> u8 {
    // Without `--config`, the configuration `serve` would use, if one stands where
    // policyctl.md says to look; else sources are judged by convention.
    let discovered = match config {
        Some(_) => None,
        None => files::discover_config(paths),
    };
    if let (Some(found), Format::Human) = (&discovered, format) {
        eprintln!(
            "note: checking against the service configuration {}",
            found.display()
        );
    }
    let config = config.or(discovered.as_deref());
    let service = match config.map(cli::serve::check_config).transpose() {
        Ok(service) => service,
        Err(e) => return fail(&e),
    };
    let default_paths;
    let paths = match &service {
        Some(s) if paths == [PathBuf::from(".")] => {
            default_paths = s.policy_paths();
            &default_paths[..]
        }
        _ => paths,
    };
    let found = match files::collect(paths, ".scale") {
        Ok(found) => found,
        Err(e) => return fail(&e),
    };
    let mut unreadable = Vec::new();
    let mut sources = Vec::new();
    let mut shown = Vec::new();
    let mut diagnostics = Vec::new();
    for path in &found {
        match files::load(path, sources.len()) {
            Loaded::Unreadable(e) => unreadable.push(e),
            Loaded::Text(source, problem) => {
                shown.push(Shown {
                    path: source.path.clone(),
                    text: source.text.clone(),
                });
                // A file that is not text is not parsed: its one diagnostic says why.
                let text = if problem.is_some() {
                    String::new()
                } else {
                    source.text
                };
                diagnostics.extend(problem);
                sources.push(Source {
                    path: source.path,
                    text,
                });
            }
        }
    }
    let mut options = Options::at(now.unwrap_or_else(Utc::now));
    options.conventional_sources = service.is_none();
    if let Some(s) = &service {
        let now = options.now;
        options = s.options.clone();
        options.now = now;
        // The configuration is one more file of the report.
        let file = sources.len();
        shown.push(Shown {
            path: s.path.clone(),
            text: s.text.clone(),
        });
        diagnostics.extend(s.diagnostics.iter().cloned().map(|mut d| {
            d.file = file;
            d
        }));
    }
    let checked = check::check(&sources, &options);
    diagnostics.extend(checked.diagnostics);
    diagnostics.sort_by_key(|d| (d.file, d.span().start, d.code));

    print!(
        "{}",
        report::render(format, &shown, &diagnostics, shown.len())
    );
    let _ = std::io::stdout().flush();
    for e in &unreadable {
        eprintln!("error: {e}");
    }
    let errors = diagnostics.iter().any(|d| d.severity == Severity::Error);
    let warnings = diagnostics.iter().any(|d| d.severity == Severity::Warning);
    if !unreadable.is_empty() {
        USAGE_OR_IO
    } else if errors || (deny_warnings && warnings) {
        FOUND_WANTING
    } else {
        OK
    }
}

fn run_fmt(paths: &[PathBuf], check_only: bool) -> u8 {
    if paths.len() == 1 && paths[0] == Path::new("-") {
        return fmt_stdin();
    }
    let found = match files::collect(paths, ".scale") {
        Ok(found) => found,
        Err(e) => return fail(&e),
    };
    let mut code = OK;
    for path in &found {
        let source = match files::load(path, 0) {
            Loaded::Unreadable(e) => {
                eprintln!("error: {e}");
                code = USAGE_OR_IO;
                continue;
            }
            Loaded::Text(source, Some(problem)) => {
                let shown = [Shown {
                    path: source.path.clone(),
                    text: source.text,
                }];
                eprint!("{}", report::render(Format::Human, &shown, &[problem], 1));
                code = code.max(FOUND_WANTING);
                continue;
            }
            Loaded::Text(source, None) => source,
        };
        match format(&source.text) {
            Ok(out) if out == source.text => {}
            Ok(out) => {
                if check_only {
                    println!("would reformat {}", source.path);
                    code = code.max(FOUND_WANTING);
                } else if let Err(e) = write_atomically(path, &out) {
                    eprintln!("error: cannot write `{}`: {e}", source.path);
                    code = USAGE_OR_IO;
                } else {
                    println!("formatted {}", source.path);
                }
            }
            Err(FormatError::Syntax(diagnostics)) => {
                let shown = [Shown {
                    path: source.path.clone(),
                    text: source.text,
                }];
                eprint!("{}", report::render(Format::Human, &shown, &diagnostics, 1));
                eprintln!("not formatted: `{}` has syntax errors", shown[0].path);
                code = code.max(FOUND_WANTING);
            }
            Err(FormatError::Unstable(why)) => {
                eprintln!(
                    "error: not formatting `{}`: {why} (a bug in policyctl; the file is unchanged)",
                    source.path
                );
                code = USAGE_OR_IO;
            }
        }
    }
    code
}

fn fmt_stdin() -> u8 {
    // Refuse rather than truncate: formatting a cut policy would lose its end.
    let text = match policyctl::input::read_all(std::io::stdin().lock(), files::MAX_FILE_BYTES)
        .map_err(|e| e.to_string())
        .and_then(|bytes| String::from_utf8(bytes).map_err(|_| "it is not UTF-8 text".into()))
    {
        Ok(text) => text,
        Err(e) => return fail(&format!("cannot format standard input: {e}")),
    };
    match format(&text) {
        Ok(out) => {
            print!("{out}");
            OK
        }
        Err(FormatError::Syntax(diagnostics)) => {
            let shown = [Shown {
                path: "<stdin>".into(),
                text,
            }];
            eprint!("{}", report::render(Format::Human, &shown, &diagnostics, 1));
            FOUND_WANTING
        }
        Err(FormatError::Unstable(why)) => fail(&why),
    }
}

/// Write through a temporary file in the same directory and rename it over the
/// original, so that an interrupted `fmt` never leaves half a policy behind. A symbolic
/// link is written through: the file it leads to is replaced, and the link stays.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let resolved;
    let path = if std::fs::symlink_metadata(path)?.file_type().is_symlink() {
        resolved = std::fs::canonicalize(path)?;
        resolved.as_path()
    } else {
        path
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.fmt-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        if let Ok(meta) = std::fs::metadata(path) {
            std::fs::set_permissions(&tmp, meta.permissions())?;
        }
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
