//! `policyctl import`: HPA and KEDA manifests → `.scale` files, with every field that
//! could not be converted exactly named on standard error (`FILE:LINE:COL: level: …`).

use std::io::Read;
use std::path::{Path, PathBuf};

use policyctl::import::adapter::Rules;
use policyctl::import::yaml::{self, Node};
use policyctl::import::{self, Imported, Level, Note, Options};
use policyctl::input::{self, caps};

use super::sim::Failure;

const OK: u8 = 0;
const PARTIAL: u8 = 1;
const UNREADABLE: u8 = 2;

pub struct ImportArgs {
    pub inputs: Vec<PathBuf>,
    pub out: Option<PathBuf>,
    pub templates: Option<PathBuf>,
    pub allow_partial: bool,
}

/// Manifests under `paths`: files as given, directories searched for `*.yaml`/`*.yml`.
fn manifests(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Failure> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), Failure> {
        let entries = std::fs::read_dir(dir).map_err(|e| {
            Failure(
                UNREADABLE,
                format!("cannot read directory `{}`: {e}", dir.display()),
            )
        })?;
        let mut found: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        found.sort();
        for path in found {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                if !name.starts_with('.') {
                    walk(&path, out)?;
                }
            } else if name.ends_with(".yaml") || name.ends_with(".yml") {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    for path in paths {
        if path == Path::new("-") {
            out.push(path.clone());
            continue;
        }
        let meta = std::fs::metadata(path)
            .map_err(|e| Failure(UNREADABLE, format!("cannot read `{}`: {e}", path.display())))?;
        if meta.is_dir() {
            let before = out.len();
            walk(path, &mut out)?;
            if out.len() == before {
                return Err(Failure(
                    UNREADABLE,
                    format!("no `*.yaml` or `*.yml` file under `{}`", path.display()),
                ));
            }
        } else {
            out.push(path.clone());
        }
    }
    Ok(out)
}

/// The YAML documents of one file (or standard input).
fn read(path: &Path) -> Result<Vec<Node>, Failure> {
    let shown = path.display();
    let text = if path == Path::new("-") {
        let bytes = input::read_all(
            std::io::stdin().lock().take(caps::MANIFEST + 1),
            caps::MANIFEST,
        )
        .map_err(|e| Failure(UNREADABLE, format!("cannot read standard input: {e}")))?;
        String::from_utf8(bytes)
            .map_err(|_| Failure(UNREADABLE, "standard input is not UTF-8".into()))?
    } else {
        input::read_text(path, caps::MANIFEST)
            .map_err(|e| Failure(UNREADABLE, format!("cannot read `{shown}`: {e}")))?
    };
    yaml::documents(&text).map_err(|e| {
        let at = e.at.map(|l| format!(":{l}")).unwrap_or_default();
        Failure(
            UNREADABLE,
            format!("{shown}{at}: malformed YAML: {}", e.message),
        )
    })
}

fn show(path: &Path, note: &Note) -> String {
    let level = match note.level {
        Level::Partial => "not converted",
        Level::Warning => "warning",
        Level::Info => "note",
    };
    let at = note.at.map(|l| format!(":{l}")).unwrap_or_default();
    format!("{}{at}: {level}: {}", path.display(), note.message)
}

pub fn import(args: &ImportArgs) -> Result<u8, Failure> {
    let templates = match &args.templates {
        None => None,
        Some(path) => {
            let docs = read(path)?;
            Some(Rules::from_documents(&docs).map_err(|e| {
                Failure(
                    UNREADABLE,
                    format!("{}:{}: {}", path.display(), e.at, e.message),
                )
            })?)
        }
    };
    let options = Options {
        templates: templates.as_ref(),
    };
    let mut code = OK;
    let mut all: Vec<(PathBuf, Imported)> = Vec::new();
    for path in manifests(&args.inputs)? {
        let docs = read(&path)?;
        let outcome = import::import(&docs, options);
        for note in &outcome.notes {
            eprintln!("{}", show(&path, note));
            if note.level == Level::Partial {
                code = PARTIAL;
            }
        }
        all.extend(outcome.imported.into_iter().map(|i| (path.clone(), i)));
    }
    if all.is_empty() {
        return Err(Failure(
            PARTIAL,
            "no HorizontalPodAutoscaler or ScaledObject to import".into(),
        ));
    }
    let mut stdout = String::new();
    for (path, imported) in &all {
        for note in &imported.notes {
            eprintln!("{}", show(path, note));
            if note.level == Level::Partial {
                code = PARTIAL;
            }
        }
        let text = match policyctl::syntax::format::format(&imported.text) {
            Ok(text) => text,
            Err(e) => {
                let why = match e {
                    policyctl::syntax::format::FormatError::Syntax(d) => d
                        .iter()
                        .map(|d| d.message.clone())
                        .collect::<Vec<_>>()
                        .join("; "),
                    policyctl::syntax::format::FormatError::Unstable(why) => why,
                };
                eprintln!(
                    "{}:{}: not converted: the policy written for `{}` does not parse ({why}); it is written unformatted",
                    path.display(),
                    imported.at,
                    imported.policy
                );
                code = PARTIAL;
                imported.text.clone()
            }
        };
        match &args.out {
            None => {
                if !stdout.is_empty() {
                    stdout.push('\n');
                }
                stdout.push_str(&text);
            }
            Some(dir) => {
                let file = dir.join(format!("{}.scale", imported.policy));
                if let Some(parent) = file.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| {
                        Failure(
                            UNREADABLE,
                            format!("cannot create `{}`: {e}", parent.display()),
                        )
                    })?;
                }
                std::fs::write(&file, text).map_err(|e| {
                    Failure(
                        UNREADABLE,
                        format!("cannot write `{}`: {e}", file.display()),
                    )
                })?;
                eprintln!("wrote {}", file.display());
            }
        }
    }
    print!("{stdout}");
    if code == PARTIAL && args.allow_partial {
        code = OK;
    }
    Ok(code)
}
