//! Finding and reading the files a command was given: directories are searched
//! recursively for `*.scale`, sizes are capped, and text that is not UTF-8 becomes a
//! diagnostic rather than an error of the run.

use std::path::{Path, PathBuf};

use policyctl::check::Source;
use policyctl::diagnostic::{Code, Diagnostic, Span};
use policyctl::input::{self, ReadError};
use policyctl::serve::config;

/// Policy files are small; a larger file is refused before parsing.
pub const MAX_FILE_BYTES: u64 = input::caps::POLICY;

/// Files under `paths` with the given extension; an explicitly named file is taken
/// whatever its name. Errors are for the command line: missing paths, unreadable
/// directories, a directory with no such file.
pub fn collect(paths: &[PathBuf], extension: &str) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path)
            .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
        if meta.is_dir() {
            let before = out.len();
            walk(path, extension, &mut out)?;
            if out.len() == before {
                return Err(format!("no `*{extension}` file under `{}`", path.display()));
            }
        } else {
            out.push(path.clone());
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn walk(dir: &Path, extension: &str, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read directory `{}`: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read directory `{}`: {e}", dir.display()))?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        // Symbolic links to directories are not followed: no loops, no surprises.
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            if !name.starts_with('.') && name != "target" {
                walk(&path, extension, out)?;
            }
        } else if name.ends_with(extension) {
            out.push(path);
        }
    }
    Ok(())
}

/// What reading one file gave.
pub enum Loaded {
    /// The text, possibly with a diagnostic about it (bad UTF-8, too large) that
    /// stands for every other one: such a file is not parsed.
    Text(Source, Option<Diagnostic>),
    /// The file could not be read at all.
    Unreadable(String),
}

pub fn load(path: &Path, file: usize) -> Loaded {
    let shown = path.display().to_string();
    let bytes = match input::read_bytes(path, MAX_FILE_BYTES) {
        Ok(bytes) => bytes,
        Err(ReadError::TooLarge { size, .. }) => {
            let d = Diagnostic::new(
                Code::FileTooLarge,
                file,
                Span::new(0, 0),
                format!(
                    "`{shown}` is {:.1} MiB; a policy file may be at most {}",
                    size as f64 / 1048576.0,
                    input::show_bytes(MAX_FILE_BYTES)
                ),
            )
            .label("not read")
            .help("split the policies over several files");
            return Loaded::Text(
                Source {
                    path: shown,
                    text: String::new(),
                },
                Some(d),
            );
        }
        Err(e) => return Loaded::Unreadable(format!("cannot read `{shown}`: {e}")),
    };
    match String::from_utf8(bytes) {
        Ok(text) => Loaded::Text(Source { path: shown, text }, None),
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let text = String::from_utf8_lossy(e.as_bytes()).into_owned();
            // In the lossy text the bad byte became U+FFFD, three bytes long.
            let d = Diagnostic::new(
                Code::InvalidUtf8,
                file,
                Span::new(at, at + 3),
                format!("`{shown}` is not UTF-8 text"),
            )
            .label("this byte is not UTF-8")
            .help("save the file as UTF-8");
            Loaded::Text(Source { path: shown, text }, Some(d))
        }
    }
}

/// The service configuration `check` uses without `--config` (policyctl.md): a
/// `policyctl.ron` in the current directory, else in the nearest parent folder of a
/// checked path.
pub fn discover_config(paths: &[PathBuf]) -> Option<PathBuf> {
    let here = Path::new(config::DISCOVERED_NAME);
    if here.is_file() {
        return Some(here.to_path_buf());
    }
    paths.iter().find_map(|path| {
        let path = std::fs::canonicalize(path).ok()?;
        let start = if path.is_dir() { &path } else { path.parent()? };
        config::nearest(start)
    })
}
