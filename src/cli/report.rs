//! Output formats of `check`: human (miette), JSON, GitHub Actions annotations, SARIF
//! 2.1.0. The library produces `Diagnostic`s with byte spans; only this module knows
//! how they are shown, and computes lines and columns for the machine formats.

use std::fmt;
use std::io::IsTerminal;

use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource};
use std::sync::Arc;

use policyctl::diagnostic::{Code, Diagnostic, LineIndex, Severity};
use serde_json::{Value, json};

/// A file as `check` saw it: the path as given and its text (lossy for bad UTF-8).
pub struct Shown {
    pub path: String,
    pub text: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Human,
    Json,
    Github,
    Sarif,
}

pub fn render(
    format: Format,
    files: &[Shown],
    diagnostics: &[Diagnostic],
    checked_files: usize,
) -> String {
    match format {
        Format::Human => human(files, diagnostics, checked_files),
        Format::Json => json_report(files, diagnostics, checked_files),
        Format::Github => github(files, diagnostics),
        Format::Sarif => sarif(files, diagnostics),
    }
}

/// A diagnostic with its source, in the shape miette renders.
struct Rendered<'a> {
    diagnostic: &'a Diagnostic,
    source: NamedSource<Indexed>,
    /// Labels that point into other files, shown as notes of their own.
    related: Vec<Rendered<'a>>,
    /// For a related note: its one label.
    only_label: Option<usize>,
}

impl fmt::Debug for Rendered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.diagnostic.message)
    }
}

impl fmt::Display for Rendered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.only_label {
            Some(i) => f.write_str(
                self.diagnostic
                    .labels
                    .get(i)
                    .map_or("", |l| l.message.as_str()),
            ),
            None => f.write_str(&self.diagnostic.message),
        }
    }
}

impl std::error::Error for Rendered<'_> {}

impl miette::Diagnostic for Rendered<'_> {
    fn code<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        self.only_label
            .is_none()
            .then(|| Box::new(self.diagnostic.code) as Box<dyn fmt::Display>)
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match (self.only_label, self.diagnostic.severity) {
            (Some(_), _) => miette::Severity::Advice,
            (None, Severity::Error) => miette::Severity::Error,
            (None, Severity::Warning) => miette::Severity::Warning,
        })
    }

    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        let help = self
            .diagnostic
            .help
            .as_ref()
            .filter(|_| self.only_label.is_none())?;
        Some(Box::new(help))
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.source)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let labels = self
            .diagnostic
            .labels
            .iter()
            .enumerate()
            .filter(move |(i, l)| match self.only_label {
                Some(only) => *i == only,
                None => l.file.is_none(),
            });
        Some(Box::new(labels.map(|(i, l)| {
            let text =
                (!l.message.is_empty() && self.only_label.is_none()).then(|| l.message.clone());
            let span = (l.span.start, l.span.len());
            if i == 0 {
                LabeledSpan::new_primary_with_span(text, span)
            } else {
                LabeledSpan::new_with_span(text, span)
            }
        })))
    }

    fn related<'b>(&'b self) -> Option<Box<dyn Iterator<Item = &'b dyn miette::Diagnostic> + 'b>> {
        if self.related.is_empty() {
            return None;
        }
        Some(Box::new(
            self.related.iter().map(|r| r as &dyn miette::Diagnostic),
        ))
    }
}

/// A file's text shared by all its diagnostics, with its line index: miette reads
/// only the lines around each span, instead of the text from its start (which made
/// rendering quadratic in the number of diagnostics).
#[derive(Clone)]
struct Indexed {
    path: String,
    text: Arc<str>,
    lines: Arc<LineIndex>,
}

impl Indexed {
    fn all(files: &[Shown]) -> Vec<Indexed> {
        files
            .iter()
            .map(|f| Indexed {
                path: f.path.clone(),
                text: Arc::from(f.text.as_str()),
                lines: Arc::new(LineIndex::new(&f.text)),
            })
            .collect()
    }
}

impl miette::SourceCode for Indexed {
    fn read_span<'a>(
        &'a self,
        span: &miette::SourceSpan,
        before: usize,
        after: usize,
    ) -> Result<Box<dyn miette::SpanContents<'a> + 'a>, miette::MietteError> {
        // miette's own reading, on the lines that can matter: from `before` lines
        // above the span to `after` + 1 lines below it. Its answer is then moved back
        // to the whole text.
        let text: &'a str = &self.text;
        let first = self.lines.line(span.offset()).saturating_sub(before);
        let last_byte = (span.offset() + span.len()).saturating_sub(1);
        let last = self.lines.line(last_byte) + after + 2;
        let from = self.lines.start(first).unwrap_or(0);
        let to = self.lines.start(last).unwrap_or(text.len()).min(text.len());
        let slice = text.get(from..to).ok_or(miette::MietteError::OutOfBounds)?;
        #[cfg(test)]
        tests::READ.with(|r| r.set(r.get() + slice.len()));
        let local = miette::SourceSpan::new(span.offset().saturating_sub(from).into(), span.len());
        let found = slice.read_span(&local, before, after)?;
        let at = found.span().offset() + from;
        let data = text
            .as_bytes()
            .get(at..at + found.span().len())
            .ok_or(miette::MietteError::OutOfBounds)?;
        Ok(Box::new(miette::MietteSpanContents::new_named(
            self.path.clone(),
            data,
            (at, found.span().len()).into(),
            found.line() + first,
            found.column(),
            found.line_count() + first,
        )))
    }
}

fn named(files: &[Indexed], file: usize) -> NamedSource<Indexed> {
    match files.get(file) {
        Some(f) => NamedSource::new(f.path.clone(), f.clone()),
        None => NamedSource::new(
            "<unknown>",
            Indexed {
                path: "<unknown>".into(),
                text: Arc::from(""),
                lines: Arc::new(LineIndex::default()),
            },
        ),
    }
}

fn human(files: &[Shown], diagnostics: &[Diagnostic], checked_files: usize) -> String {
    let terminal = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let theme = if terminal {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let handler = GraphicalReportHandler::new_themed(theme)
        .with_width(100)
        .with_links(false);
    let files = &Indexed::all(files);
    let mut out = String::new();
    for d in diagnostics {
        let related = d
            .labels
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.file.map(|f| (i, f)))
            .map(|(i, f)| Rendered {
                diagnostic: d,
                source: named(files, f),
                related: vec![],
                only_label: Some(i),
            })
            .collect();
        let rendered = Rendered {
            diagnostic: d,
            source: named(files, d.file),
            related,
            only_label: None,
        };
        // Rendering into a String cannot fail.
        let _ = handler.render_report(&mut out, &rendered);
        out.push('\n');
    }
    let errors = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let warnings = diagnostics.len() - errors;
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    out.push_str(&format!(
        "checked {}: {}, {}\n",
        plural(checked_files, "file"),
        plural(errors, "error"),
        plural(warnings, "warning")
    ));
    out
}

struct Position {
    line: usize,
    column: usize,
    end_line: usize,
    end_column: usize,
}

fn position(files: &[Indexed], d: &Diagnostic) -> Position {
    let Some(file) = files.get(d.file) else {
        return Position {
            line: 1,
            column: 1,
            end_line: 1,
            end_column: 1,
        };
    };
    let span = d.span();
    let (line, column) = file.lines.line_col(&file.text, span.start);
    let (end_line, end_column) = file.lines.line_col(&file.text, span.end);
    Position {
        line,
        column,
        end_line,
        end_column,
    }
}

fn path(files: &[Indexed], file: usize) -> &str {
    files.get(file).map_or("<unknown>", |f| f.path.as_str())
}

fn json_report(shown: &[Shown], diagnostics: &[Diagnostic], checked_files: usize) -> String {
    let files = &Indexed::all(shown);
    let list: Vec<Value> = diagnostics
        .iter()
        .map(|d| {
            let p = position(files, d);
            json!({
                "code": d.code.as_str(),
                "severity": d.severity.as_str(),
                "message": d.message,
                "file": path(files, d.file),
                "line": p.line,
                "column": p.column,
                "end_line": p.end_line,
                "end_column": p.end_column,
                "help": d.help,
            })
        })
        .collect();
    let errors = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let report = json!({
        "files": checked_files,
        "errors": errors,
        "warnings": diagnostics.len() - errors,
        "diagnostics": list,
    });
    format!("{report}\n")
}

/// GitHub's workflow commands escape `%`, CR and LF in messages, and `:` and `,` too in
/// properties.
fn github_escape(s: &str, property: bool) -> String {
    let mut out = s
        .replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A");
    if property {
        out = out.replace(':', "%3A").replace(',', "%2C");
    }
    out
}

fn github(shown: &[Shown], diagnostics: &[Diagnostic]) -> String {
    let files = &Indexed::all(shown);
    let mut out = String::new();
    for d in diagnostics {
        let p = position(files, d);
        let level = match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let mut message = d.message.clone();
        if let Some(help) = &d.help {
            message.push_str(&format!("\nhelp: {help}"));
        }
        out.push_str(&format!(
            "::{level} file={},line={},col={},endLine={},endColumn={},title={}::{}\n",
            github_escape(path(files, d.file), true),
            p.line,
            p.column,
            p.end_line,
            p.end_column,
            github_escape(d.code.as_str(), true),
            github_escape(&message, false),
        ));
    }
    out
}

fn sarif(shown: &[Shown], diagnostics: &[Diagnostic]) -> String {
    let files = &Indexed::all(shown);
    let rules: Vec<Value> = Code::ALL
        .iter()
        .map(|c| {
            json!({
                "id": c.as_str(),
                "shortDescription": {"text": c.summary()},
                "defaultConfiguration": {"level": c.severity().as_str()},
            })
        })
        .collect();
    let results: Vec<Value> = diagnostics
        .iter()
        .map(|d| {
            let p = position(files, d);
            let mut text = d.message.clone();
            if let Some(help) = &d.help {
                text.push_str(&format!("\nhelp: {help}"));
            }
            json!({
                "ruleId": d.code.as_str(),
                "ruleIndex": Code::ALL.iter().position(|c| *c == d.code),
                "level": d.severity.as_str(),
                "message": {"text": text},
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": {"uri": path(files, d.file)},
                        "region": {
                            "startLine": p.line,
                            "startColumn": p.column,
                            "endLine": p.end_line,
                            "endColumn": p.end_column,
                        }
                    }
                }],
            })
        })
        .collect();
    let report = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "policyctl",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }},
            "columnKind": "unicodeCodePoints",
            "results": results,
        }],
    });
    format!("{report}\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use policyctl::diagnostic::Span;
    use std::cell::Cell;

    thread_local! {
        /// Bytes of source handed to miette while rendering.
        pub static READ: Cell<usize> = const { Cell::new(0) };
    }

    #[test]
    fn rendering_reads_only_the_lines_around_each_diagnostic() {
        // 5,000 errors in one file: miette used to scan the text from its start for
        // each of them (and the text was copied for each), quadratic in their number.
        let line = "  every x\n";
        let text = line.repeat(5_000);
        let diagnostics: Vec<Diagnostic> = (0..5_000)
            .map(|i| {
                let at = i * line.len() + 8;
                Diagnostic::new(Code::Syntax, 0, Span::new(at, at + 1), "expected a number")
            })
            .collect();
        let files = [Shown {
            path: "big.scale".into(),
            text,
        }];
        READ.with(|r| r.set(0));
        let out = human(&files, &diagnostics, 1);
        assert!(out.contains("5000 errors"), "{}", &out[out.len() - 60..]);
        let read = READ.with(Cell::get);
        // A few lines of context each; the whole text each would be 5,000 × 55 KB.
        assert!(
            read < 5_000 * 16 * line.len(),
            "{read} bytes read for 5,000 diagnostics"
        );
    }
}
