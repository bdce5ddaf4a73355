//! Diagnostics: the one registry of codes, spans, and the diagnostic value that the
//! syntax and check stages produce. Rendering (human, JSON, GitHub, SARIF) belongs to
//! the binary; this module only knows positions and words.

use std::fmt;

/// A byte range in one source text. Equality of AST nodes never looks at spans.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }

    pub fn len(&self) -> usize {
        self.end.saturating_sub(self.start)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

macro_rules! codes {
    ($($variant:ident = $name:literal, $severity:ident, $summary:literal;)*) => {
        /// Every diagnostic code policyctl can emit. Codes are stable: never rename or
        /// reuse one; retire it instead.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Code {
            $($variant,)*
        }

        impl Code {
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            /// The stable name, e.g. `scale::unknown-name`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $name,)*
                }
            }

            pub fn severity(self) -> Severity {
                match self {
                    $(Code::$variant => Severity::$severity,)*
                }
            }

            /// One line on what the code means, for `docs/diagnostics.md` and SARIF rules.
            pub fn summary(self) -> &'static str {
                match self {
                    $(Code::$variant => $summary,)*
                }
            }
        }
    };
}

codes! {
    // Files and syntax.
    Io = "scale::io", Error, "a file could not be read";
    InvalidUtf8 = "scale::invalid-utf8", Error, "a file is not UTF-8 text";
    FileTooLarge = "scale::file-too-large", Error, "a file is larger than a policy file may be";
    Syntax = "scale::syntax", Error, "the text does not follow the grammar";
    TooComplex = "scale::too-complex", Error, "an expression is nested or chained too deeply";
    InvalidEscape = "scale::invalid-escape", Error, "a string holds an unknown escape";
    InvalidNumber = "scale::invalid-number", Error, "a number cannot be represented";
    UnknownUnit = "scale::unknown-unit", Error, "a number carries a suffix that is not a unit";
    // Names.
    UnknownName = "scale::unknown-name", Error, "a name is used that no `metric` or `let` defines";
    UnknownFunction = "scale::unknown-function", Error, "a function is called that does not exist";
    DuplicateName = "scale::duplicate-name", Error, "a `metric` or `let` name is defined twice";
    ReservedWord = "scale::reserved-word", Error, "a keyword is used as a name";
    DuplicatePolicy = "scale::duplicate-policy", Error, "two policies share a name";
    InvalidPolicyName = "scale::invalid-policy-name", Error, "a policy name has characters it may not have";
    DuplicateStatement = "scale::duplicate-statement", Error, "a statement that may appear once appears twice";
    DuplicateSchedule = "scale::duplicate-schedule", Error, "two schedules of a policy share a name";
    // Required statements and values.
    MissingTarget = "scale::missing-target", Error, "a policy has no `target`";
    MissingReplicas = "scale::missing-replicas", Error, "a policy has no `replicas`";
    InvalidBounds = "scale::invalid-bounds", Error, "a replica range has its minimum above its maximum";
    UnitMismatch = "scale::unit-mismatch", Error, "a number has the wrong unit for where it stands";
    NotAnInteger = "scale::not-an-integer", Error, "a count is not a whole number";
    OutOfRange = "scale::out-of-range", Error, "a value is outside what its statement accepts";
    EveryTooShort = "scale::every-too-short", Error, "`every` is under 1s";
    TypeMismatch = "scale::type-mismatch", Error, "a condition is used as a number, or a number as a condition";
    WrongArity = "scale::wrong-arity", Error, "a function is called with the wrong number of arguments";
    // Sources and queries.
    InvalidPromql = "scale::invalid-promql", Error, "a PromQL query does not parse";
    UnknownActuator = "scale::unknown-actuator", Error, "a `target` names an actuator the service configuration does not declare";
    UnknownSource = "scale::unknown-source", Error, "a `metric` names a source the service configuration does not declare";
    InvalidQuery = "scale::invalid-query", Error, "a query that its source cannot answer (an unknown host metric, a column the trace lacks)";
    // The service configuration.
    ConfigInvalid = "scale::config-invalid", Error, "the service configuration is not valid RON, or a value in it is wrong";
    PluginLoad = "scale::plugin-load", Error, "an actuator's plugin cannot be loaded, or does not export the actuator interface";
    // Schedules.
    UnknownZone = "scale::unknown-zone", Error, "a time zone is not in the IANA database";
    InvalidCron = "scale::invalid-cron", Error, "a cron expression does not parse";
    InvalidDate = "scale::invalid-date", Error, "a date or time of day does not exist";
    EmptyWindow = "scale::empty-window", Error, "a window's `from` equals its `to`";
    EmptySchedule = "scale::empty-schedule", Error, "a schedule has no window or no effect";
    ExactlyConflict = "scale::exactly-conflict", Error, "two `exactly` schedules that can overlap disagree";
    ScheduleConflict = "scale::schedule-conflict", Error, "schedules that can be active together put a floor above a ceiling";
    // Warnings.
    Flapping = "scale::flapping", Warning, "scale-up and scale-down thresholds on one metric leave no gap";
    WindowShorterThanEvery = "scale::window-shorter-than-every", Warning, "a sustained window is shorter than `every`";
    ScheduleOutsideBounds = "scale::schedule-outside-bounds", Warning, "a schedule floor is above MAX or a ceiling below MIN";
    ZeroLimit = "scale::zero-limit", Warning, "a rate limit allows no change at all";
    IneffectiveWindow = "scale::ineffective-window", Warning, "a cooldown or stabilisation window is shorter than `every`";
    PastSchedule = "scale::past-schedule", Warning, "a one-off schedule lies wholly in the past";
    NoRules = "scale::no-rules", Warning, "a policy has no rule and no schedule";
    UnusedName = "scale::unused-name", Warning, "a `metric` or `let` is never used";
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A secondary or primary location with a short note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    pub span: Span,
    pub message: String,
    /// Which source the label points into, when it is not the diagnostic's own file
    /// (e.g. "first defined here" in another file). `None` means the same file.
    pub file: Option<usize>,
}

/// One finding about one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub code: Code,
    pub severity: Severity,
    pub message: String,
    /// Index into the list of sources the diagnostic was produced for.
    pub file: usize,
    /// The first label is the primary location.
    pub labels: Vec<Label>,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn new(code: Code, file: usize, span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            code,
            severity: code.severity(),
            message: message.into(),
            file,
            labels: vec![Label {
                span,
                message: String::new(),
                file: None,
            }],
            help: None,
        }
    }

    /// Set the primary label's text.
    pub fn label(mut self, message: impl Into<String>) -> Self {
        if let Some(first) = self.labels.first_mut() {
            first.message = message.into();
        }
        self
    }

    pub fn secondary(mut self, span: Span, message: impl Into<String>) -> Self {
        self.labels.push(Label {
            span,
            message: message.into(),
            file: None,
        });
        self
    }

    pub fn secondary_in(mut self, file: usize, span: Span, message: impl Into<String>) -> Self {
        let file = (file != self.file).then_some(file);
        self.labels.push(Label {
            span,
            message: message.into(),
            file,
        });
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn span(&self) -> Span {
        self.labels.first().map(|l| l.span).unwrap_or_default()
    }
}

/// Where each line of a text starts: lines and columns of many offsets in one text,
/// each found in logarithmic time (so that 24,000 diagnostics cost no more than
/// reading the file once).
#[derive(Debug, Clone, Default)]
pub struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    pub fn new(text: &str) -> LineIndex {
        let mut starts = vec![0];
        starts.extend(
            text.bytes()
                .enumerate()
                .filter(|(_, b)| *b == b'\n')
                .map(|(i, _)| i + 1),
        );
        LineIndex { starts }
    }

    /// The 0-based line holding `offset`.
    pub fn line(&self, offset: usize) -> usize {
        self.starts
            .partition_point(|&s| s <= offset)
            .saturating_sub(1)
    }

    /// The byte offset where 0-based `line` starts (the end of the text past the last).
    pub fn start(&self, line: usize) -> Option<usize> {
        self.starts.get(line).copied()
    }

    /// What [`line_col`] says, for a text this index was built from.
    pub fn line_col(&self, text: &str, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.line(offset);
        let start = self.starts.get(line).copied().unwrap_or(0);
        let column = text.get(start..offset).map_or(0, |s| s.chars().count()) + 1;
        (line + 1, column)
    }
}

/// 1-based line and column (in characters) of a byte offset. Offsets inside a
/// character or past the end are clamped.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_namespaced() {
        let mut names: Vec<_> = Code::ALL.iter().map(|c| c.as_str()).collect();
        assert!(names.iter().all(|n| n.starts_with("scale::")));
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len(), "a diagnostic code is registered twice");
    }

    #[test]
    fn the_line_index_agrees_with_line_col() {
        let text = "ab\ncé\n\nlast";
        let index = LineIndex::new(text);
        for offset in 0..=text.len() + 2 {
            assert_eq!(
                index.line_col(text, offset),
                line_col(text, offset),
                "at {offset}"
            );
        }
    }

    #[test]
    fn line_col_counts_characters() {
        let text = "ab\ncé\nx";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 3), (2, 1));
        assert_eq!(line_col(text, 6), (2, 3)); // after the two-byte é
        assert_eq!(line_col(text, 5), (2, 2)); // inside é: clamped back
        assert_eq!(line_col(text, 100), (3, 2));
    }
}
