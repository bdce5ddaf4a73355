//! Loading policy files into the service, and reloading them when they change.
//!
//! Every reload reads all watched files and checks them together (policy names are
//! unique across files). A file that fails `check` is not loaded: the policies of its
//! last good version keep running, and its error is logged, exported as
//! `policyctl_policy_file_errors{file}` and shown by `/v1/files`. A file that is gone
//! takes its policies with it. Editors that write through a temporary file and rename it
//! are the same as an edit: only the final text is read.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use notify::{RecursiveMode, Watcher};
use sha2::{Digest, Sha256};

use super::config::{Loaded, SourceKind};
use super::metrics::{ByActuator, ByFile, ByResult};
use super::sources::HOST_METRICS;
use super::{FileStatus, Service};
use crate::check::{self, Known, Options, Queries, Source as CheckSource};
use crate::diagnostic::Severity;
use crate::model::Policy;

/// Policy files are small; a larger file is refused before parsing.
const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Events closer together than this are one change (an editor's save is several).
const DEBOUNCE: Duration = Duration::from_millis(30);

/// What the configuration declares, for `check`.
pub fn known(loaded: &Loaded) -> Known {
    Known {
        actuators: loaded
            .config
            .actuators
            .iter()
            .map(|a| a.name.clone())
            .collect(),
        sources: loaded
            .config
            .sources
            .iter()
            .map(|s| {
                let queries = match &s.kind {
                    SourceKind::Prometheus { .. } => Queries::Promql,
                    SourceKind::Host => Queries::OneOf {
                        what: "host metric",
                        names: HOST_METRICS.iter().map(|(n, _)| n.to_string()).collect(),
                    },
                    SourceKind::File { path, .. } => Queries::OneOf {
                        what: "trace column",
                        names: crate::input::read_text(
                            &loaded.resolve(path),
                            crate::input::caps::TRACE,
                        )
                        .ok()
                        .and_then(|t| crate::sim::trace::parse(&t).ok())
                        .map(|t| t.columns)
                        .unwrap_or_default(),
                    },
                };
                (s.name.clone(), queries)
            })
            .collect(),
    }
}

/// `check` options for a configuration.
pub fn options(loaded: &Loaded) -> Options {
    let mut options = Options::at(Utc::now());
    options.promql_sources = loaded
        .config
        .sources
        .iter()
        .filter(|s| matches!(s.kind, SourceKind::Prometheus { .. }))
        .map(|s| s.name.clone())
        .collect();
    options.known = Some(known(loaded));
    options
}

/// The `.scale` files under the watched paths (a missing path has none), and the
/// directories that could not be read, with why.
///
/// Not `cli::files::collect`: that walker stops at the first unreadable directory, as a
/// command line should. Here the walk goes on, and `reload` keeps the last good version
/// of every file under an unreadable directory, so a permission slip on one folder
/// unloads nothing.
pub fn scan(paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<(PathBuf, String)>) {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>, unreadable: &mut Vec<(PathBuf, String)>) {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => {
                unreadable.push((dir.to_path_buf(), e.to_string()));
                return;
            }
        };
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    unreadable.push((dir.to_path_buf(), e.to_string()));
                    return;
                }
            };
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                if !name.starts_with('.') && name != "target" {
                    walk(&path, out, unreadable);
                }
            } else if name.ends_with(".scale") && !name.starts_with('.') {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    let mut unreadable = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk(p, &mut out, &mut unreadable);
        } else if p.is_file() {
            out.push(p.clone());
        }
    }
    out.sort();
    out.dedup();
    (out, unreadable)
}

fn read(path: &Path) -> Result<String, String> {
    crate::input::read_text(path, MAX_FILE_BYTES).map_err(|e| format!("cannot read: {e}"))
}

/// Re-read the watched files and install what changed.
///
/// Only files whose text changed (and files in error, whose error may have been
/// another file's fault) are checked again, so a reload costs the size of the change,
/// not of the fleet. Policy names stay unique across all files: a changed file may not
/// define a policy that an unchanged file defines.
pub async fn reload(service: &Arc<Service>) {
    let _one_at_a_time = service.reloads.lock().await;
    let previous = service.files.lock().map(|f| f.clone()).unwrap_or_default();
    let (mut paths, unreadable_dirs) = scan(&service.loaded.policy_paths());
    // A file loaded before from a directory that cannot be read now stays, in error,
    // with its last good version: its read below fails and says why.
    let mut dir_errors = BTreeMap::new();
    for (dir, why) in &unreadable_dirs {
        let under: Vec<&PathBuf> = previous.keys().filter(|p| p.starts_with(dir)).collect();
        if under.is_empty() {
            tracing::error!(directory = %dir.display(), error = %why, "policy directory not readable");
        }
        for p in under {
            dir_errors.insert(
                p.clone(),
                format!("directory `{}` cannot be read: {why}", dir.display()),
            );
            paths.push(p.clone());
        }
    }
    paths.sort();
    paths.dedup();
    let options = options(&service.loaded);
    let prev = previous.clone();
    let checked = tokio::task::spawn_blocking(move || {
        let mut texts = Vec::new();
        let mut unreadable = BTreeMap::new();
        for p in &paths {
            if let Some(why) = dir_errors.get(p) {
                unreadable.insert(p.clone(), why.clone());
                continue;
            }
            match read(p) {
                Ok(text) => {
                    let digest: [u8; 32] = Sha256::digest(text.as_bytes()).into();
                    let unchanged = prev
                        .get(p)
                        .is_some_and(|f| f.digest == digest && f.error.is_none());
                    texts.push((p.clone(), text, digest, unchanged));
                }
                Err(e) => {
                    unreadable.insert(p.clone(), e);
                }
            }
        }
        let sources: Vec<CheckSource> = texts
            .iter()
            .filter(|t| !t.3)
            .map(|(p, t, _, _)| CheckSource {
                path: p.display().to_string(),
                text: t.clone(),
            })
            .collect();
        let result = check::check(&sources, &options);
        (texts, unreadable, result)
    })
    .await;
    let Ok((texts, unreadable, result)) = checked else {
        tracing::error!("the policy check failed to run");
        return;
    };
    let checked_files: Vec<&(PathBuf, String, [u8; 32], bool)> =
        texts.iter().filter(|t| !t.3).collect();

    // Who owns which name among the files not checked again.
    let mut owners: BTreeMap<String, PathBuf> = BTreeMap::new();
    for (path, _, _, unchanged) in &texts {
        if *unchanged && let Some(f) = previous.get(path) {
            for name in &f.policies {
                owners.insert(name.clone(), path.clone());
            }
        }
    }

    // Per checked file: its errors, or its policies.
    let mut errors: BTreeMap<PathBuf, String> = unreadable;
    let mut note = |path: &Path, message: String| {
        let entry = errors.entry(path.to_path_buf()).or_default();
        if !entry.is_empty() {
            entry.push_str("; ");
        }
        entry.push_str(&message);
    };
    for d in result
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
    {
        let Some((path, text, _, _)) = checked_files.get(d.file) else {
            continue;
        };
        let (line, column) = crate::diagnostic::line_col(text, d.span().start);
        note(
            path,
            format!(
                "{}:{line}:{column}: {} ({})",
                path.display(),
                d.message,
                d.code
            ),
        );
    }
    let mut good: BTreeMap<PathBuf, Vec<Policy>> = BTreeMap::new();
    for p in result.policies {
        let Some((path, _, _, _)) = checked_files.get(p.file) else {
            continue;
        };
        if let Some(owner) = owners.get(&p.policy.name) {
            note(
                path,
                format!(
                    "{}: policy `{}` is already defined in `{}` ({})",
                    path.display(),
                    p.policy.name,
                    owner.display(),
                    crate::diagnostic::Code::DuplicatePolicy
                ),
            );
            continue;
        }
        good.entry(path.clone()).or_default().push(p.policy);
    }

    let mut files = BTreeMap::new();
    let mut wanted: BTreeSet<String> = BTreeSet::new();
    let digests: BTreeMap<&PathBuf, ([u8; 32], bool)> =
        texts.iter().map(|(p, _, d, u)| (p, (*d, *u))).collect();
    let present: BTreeSet<PathBuf> = texts
        .iter()
        .map(|(p, _, _, _)| p.clone())
        .chain(errors.keys().cloned())
        .collect();
    for path in &present {
        let (digest, unchanged) = digests.get(path).copied().unwrap_or(([0; 32], false));
        if unchanged && let Some(f) = previous.get(path) {
            wanted.extend(f.policies.iter().cloned());
            files.insert(path.clone(), f.clone());
        } else if let Some(error) = errors.get(path) {
            // The last good version keeps running.
            let kept = previous
                .get(path)
                .map(|f| f.policies.clone())
                .unwrap_or_default();
            if previous.get(path).and_then(|f| f.error.as_ref()) != Some(error) {
                tracing::error!(file = %path.display(), kept = %kept.join(", "), "policy file not loaded: {error}");
            }
            wanted.extend(kept.iter().cloned());
            files.insert(
                path.clone(),
                FileStatus {
                    path: path.clone(),
                    policies: kept,
                    error: Some(error.clone()),
                    digest,
                },
            );
        } else {
            let policies = good.remove(path).unwrap_or_default();
            let names: Vec<String> = policies.iter().map(|p| p.name.clone()).collect();
            let shared: Arc<Path> = Arc::from(path.as_path());
            for p in policies {
                service.install(p, &shared);
            }
            wanted.extend(names.iter().cloned());
            files.insert(
                path.clone(),
                FileStatus {
                    path: path.clone(),
                    policies: names,
                    error: None,
                    digest,
                },
            );
        }
    }
    let running: Vec<String> = service.all_slots().iter().map(|s| s.name.clone()).collect();
    for name in running {
        if !wanted.contains(&name) {
            tracing::info!(policy = %name, "policy removed");
            service.uninstall(&name);
        }
    }
    for path in previous.keys() {
        if !files.contains_key(path) {
            service.metrics.file_errors.remove(&ByFile {
                file: path.display().to_string(),
            });
        }
    }
    let failed = files.values().filter(|f| f.error.is_some()).count();
    for f in files.values() {
        service
            .metrics
            .file_errors
            .get_or_create(&ByFile {
                file: f.path.display().to_string(),
            })
            .set(i64::from(f.error.is_some()));
    }
    service
        .metrics
        .reloads
        .get_or_create(&ByResult {
            result: if failed == 0 { "success" } else { "failure" }.into(),
        })
        .inc();
    tracing::info!(
        files = files.len(),
        checked = checked_files.len(),
        failed,
        policies = service.all_slots().len(),
        "policies loaded"
    );
    if let Ok(mut f) = service.files.lock() {
        *f = files;
    }
}

/// Reload one actuator's plugin after its file changed; the old one keeps running if
/// the new one does not load.
pub fn reload_plugin(service: &Service, name: &str) {
    let Some(config) = service
        .loaded
        .config
        .actuators
        .iter()
        .find(|a| a.name == name)
    else {
        return;
    };
    let label = ByActuator {
        actuator: name.to_string(),
    };
    match service.runtime.load(config, &service.loaded.base) {
        Ok(actuator) => {
            if let Ok(mut a) = service.actuators.write() {
                a.insert(name.to_string(), Arc::new(actuator));
            }
            service.metrics.plugin_errors.get_or_create(&label).set(0);
            service
                .metrics
                .plugin_reloads
                .get_or_create(&ByResult {
                    result: "success".into(),
                })
                .inc();
            tracing::info!(actuator = %name, "plugin reloaded");
        }
        Err(e) => {
            service.metrics.plugin_errors.get_or_create(&label).set(1);
            service
                .metrics
                .plugin_reloads
                .get_or_create(&ByResult {
                    result: "failure".into(),
                })
                .inc();
            tracing::error!(actuator = %name, "changed plugin not loaded, the previous one keeps running: {e}");
        }
    }
}

/// Watch the policy paths and the plugin files; reload on change.
pub fn watch(service: &Arc<Service>) -> Result<notify::RecommendedWatcher, String> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<notify::Event>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            let _ = tx.send(event);
        }
    })
    .map_err(|e| format!("cannot watch files: {e}"))?;
    let policy_paths = service.loaded.policy_paths();
    for p in &policy_paths {
        // A single file is watched through its directory: editors replace files.
        let (dir, mode) = if p.is_dir() {
            (p.clone(), RecursiveMode::Recursive)
        } else {
            (
                p.parent()
                    .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
                RecursiveMode::NonRecursive,
            )
        };
        watcher
            .watch(&dir, mode)
            .map_err(|e| format!("cannot watch `{}`: {e}", dir.display()))?;
    }
    let plugins: Vec<(String, PathBuf)> = service
        .loaded
        .config
        .actuators
        .iter()
        .map(|a| {
            (
                a.name.clone(),
                canonical(&service.loaded.resolve(&a.plugin)),
            )
        })
        .collect();
    let mut dirs = BTreeSet::new();
    for (_, plugin) in &plugins {
        if let Some(dir) = plugin.parent() {
            dirs.insert(dir.to_path_buf());
        }
    }
    for dir in dirs {
        if let Err(e) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
            tracing::warn!("cannot watch plugin directory `{}`: {e}", dir.display());
        }
    }
    let roots: Vec<PathBuf> = policy_paths.iter().map(|p| canonical(p)).collect();
    let service = service.clone();
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut events = vec![first];
            // Collect the rest of this change.
            while let Ok(Some(e)) = tokio::time::timeout(DEBOUNCE, rx.recv()).await {
                events.push(e);
            }
            let paths: Vec<PathBuf> = events
                .iter()
                .filter(|e| !e.kind.is_access())
                .flat_map(|e| e.paths.iter().cloned())
                .collect();
            let policies_changed = paths.iter().any(|p| {
                let p = canonical(p);
                roots.iter().any(|r| p.starts_with(r) || r.starts_with(&p))
                    && (p.extension().is_some_and(|x| x == "scale") || p.is_dir() || !p.exists())
            });
            if policies_changed {
                reload(&service).await;
            }
            for (name, plugin) in &plugins {
                if paths.iter().any(|p| canonical(p) == *plugin) && plugin.exists() {
                    reload_plugin(&service, name);
                }
            }
        }
    });
    Ok(watcher)
}

/// The path with its directory resolved (the file itself may not exist).
fn canonical(p: &Path) -> PathBuf {
    if let Ok(c) = p.canonicalize() {
        return c;
    }
    match (p.parent(), p.file_name()) {
        (Some(dir), Some(name)) => dir
            .canonicalize()
            .map(|d| d.join(name))
            .unwrap_or_else(|_| p.to_path_buf()),
        _ => p.to_path_buf(),
    }
}
