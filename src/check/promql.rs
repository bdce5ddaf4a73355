//! PromQL syntax checks without compiling regular expressions.
//!
//! promql-parser compiles every `=~` and `!~` matcher into a `regex::Regex`, and a
//! compile costs about 100 µs (an NFA each way, a one-pass DFA, a 10,000-entry UTF-8
//! map cleared each time): a fifth of `check` on a typical repository, for a result
//! `check` throws away. Of a matcher's regex the parser uses two facts only: that it
//! compiles, and whether it matches the empty string (a selector whose matchers all
//! match "" is refused). So `parse` decides both here, from the regex's syntax tree,
//! and hands the parser the query with each such matcher replaced by an equality
//! matcher that has the same answer on "": `=~ "a.*"` becomes `="x"`, `=~ ".*"`
//! becomes `=""`, and `!~` the same with `!=`. Nothing else in the query changes, so it
//! parses exactly when the original does; when it does not, the original is parsed
//! again for the parser's own message.
//!
//! A matcher is left to the parser whenever this module is not sure: a string with
//! escapes (promql-parser reads them even between backquotes), a regex `regex_syntax` refuses (promql-parser retries those with `{`
//! escaped), or one whose compiled size could approach the regex crate's limit, or
//! that uses look-arounds other than `^` and `$`.

use regex_syntax::hir::{Class, Hir, HirKind, Look};

/// Parse a query as promql-parser does, with its regex matchers judged here.
pub fn parse(query: &str) -> Result<(), String> {
    if let Some(rewritten) = without_regexes(query)
        && promql_parser::parser::parse(&rewritten).is_ok()
    {
        return Ok(());
    }
    promql_parser::parser::parse(query).map(|_| ())
}

/// The query with every regex matcher this module can judge replaced by an equality
/// matcher of the same emptiness; None when there is none.
fn without_regexes(query: &str) -> Option<String> {
    if !query.contains('~') {
        return None;
    }
    let bytes = query.as_bytes();
    let mut out = String::with_capacity(query.len());
    let mut copied = 0;
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'#' => i = query[i..].find('\n').map_or(bytes.len(), |n| i + n),
            quote @ (b'"' | b'\'' | b'`') => i = string_end(bytes, i, quote)?,
            b'{' => {
                depth += 1;
                i += 1;
            }
            b'}' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            // A match operator follows a label name (or a quoted one): `a!=~"x"` is no
            // `=~`, and must stay as wrong as it is.
            op @ (b'=' | b'!')
                if depth > 0
                    && bytes.get(i + 1) == Some(&b'~')
                    && query[..i].trim_end().bytes().next_back().is_some_and(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'_' | b'"' | b'\'' | b'`')
                    }) =>
            {
                let literal = i + 2 + query[i + 2..].len() - query[i + 2..].trim_start().len();
                let Some(&quote @ (b'"' | b'\'' | b'`')) = bytes.get(literal) else {
                    i += 2;
                    continue;
                };
                let end = string_end(bytes, literal, quote)?;
                let body = &query[literal + 1..end - 1];
                // An escape is left to the parser, which reads them even between
                // backquotes.
                if let Some(empty) = (!body.contains(['\\', '\n']))
                    .then(|| matches_empty(body))
                    .flatten()
                {
                    out.push_str(&query[copied..i]);
                    // `=~ re` matches "" when re does, as `=""` does and `="x"` does
                    // not; `!~ re` when re does not, as `!="x"` does and `!=""` not.
                    out.push_str(if op == b'=' { "=" } else { "!=" });
                    out.push_str(if empty { "\"\"" } else { "\"x\"" });
                    copied = end;
                }
                i = end;
            }
            _ => i += 1,
        }
    }
    (copied > 0).then(|| {
        out.push_str(&query[copied..]);
        out
    })
}

/// Where a PromQL string that opens at `start` ends (one past its closing quote); None
/// when it does not close.
fn string_end(bytes: &[u8], start: usize, quote: u8) -> Option<usize> {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quote != b'`' => i += 2,
            b if b == quote => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Some(whether the anchored regex matches "") when it compiles for certain and its
/// compiled size is surely far below the regex crate's limit; None when unsure.
fn matches_empty(regex: &str) -> Option<bool> {
    // The pattern promql-parser compiles, with the regex crate's default syntax.
    let hir = regex_syntax::parse(&format!("^(?:{regex})$")).ok()?;
    let mut budget = SIZE_BUDGET;
    judge(&hir, &mut budget)
}

/// A rough count of NFA states, kept far below what the regex crate's 10 MB limit
/// allows (hundreds of thousands).
const SIZE_BUDGET: usize = 20_000;

fn judge(hir: &Hir, budget: &mut usize) -> Option<bool> {
    let spend = |budget: &mut usize, n: usize| -> Option<()> {
        *budget = budget.checked_sub(n)?;
        Some(())
    };
    match hir.kind() {
        HirKind::Empty => Some(true),
        HirKind::Literal(l) => spend(budget, l.0.len()).map(|()| l.0.is_empty()),
        HirKind::Class(c) => {
            let ranges = match c {
                Class::Unicode(u) => u.ranges().len(),
                Class::Bytes(b) => b.ranges().len(),
            };
            // A Unicode range is at most a few UTF-8 sequences of up to four bytes.
            spend(budget, ranges.saturating_mul(16)).map(|()| false)
        }
        // On "" the only position is both the start and the end.
        HirKind::Look(Look::Start | Look::End) => spend(budget, 1).map(|()| true),
        HirKind::Look(_) => None,
        HirKind::Repetition(r) => {
            let copies = r.max.unwrap_or(r.min).max(r.min).max(1) as usize;
            let mut inner = (*budget).checked_div(copies)?;
            let before = inner;
            let sub = judge(&r.sub, &mut inner)?;
            spend(budget, (before - inner).checked_mul(copies)?)?;
            Some(r.min == 0 || sub)
        }
        HirKind::Capture(c) => judge(&c.sub, budget),
        HirKind::Concat(parts) => parts
            .iter()
            .try_fold(true, |all, p| Some(judge(p, budget)? && all)),
        HirKind::Alternation(parts) => parts
            .iter()
            .try_fold(false, |any, p| Some(judge(p, budget)? || any)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What promql-parser itself says of a query: parses or not.
    fn reference(query: &str) -> bool {
        promql_parser::parser::parse(query).is_ok()
    }

    #[test]
    fn a_regex_matcher_is_judged_as_the_parser_would() {
        let regexes = [
            "web-7-.*",
            ".*",
            "",
            ".+",
            "a|",
            "(a|b)*",
            "x?",
            "[0-9]+",
            "[0-9]{2}",
            "(?i)web",
            "a{1,3}",
            "a{3,}b",
            "[a&&b]",
            "[a&&b]*",
            "^$",
            "^a$",
            "(",
            "[",
            "a{",
            "a{1",
            "{1}",
            "a**",
            "a!=~",
            "(?P<x>a)",
            "\\d+",
            "\\bfoo",
            "(?m)^a",
            "é.*",
            "a{100}{300}",
            "x{2,1}",
        ];
        for re in regexes {
            for op in ["=~", "!~"] {
                for quote in ['"', '\'', '`'] {
                    // With and without a metric name: a selector of names only must
                    // have a matcher that refuses "".
                    for query in [
                        format!("up{{job{op}{quote}{re}{quote}}}"),
                        format!("{{job{op} {quote}{re}{quote}}}"),
                        format!("sum(rate(x{{a=\"b\", job{op}{quote}{re}{quote}}}[5m]))"),
                        format!("{{job{op}{quote}{re}{quote} or a=\"\"}}"),
                    ] {
                        assert_eq!(
                            parse(&query).is_ok(),
                            reference(&query),
                            "{query} (rewritten: {:?})",
                            without_regexes(&query)
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn only_matchers_inside_braces_and_outside_strings_are_rewritten() {
        assert_eq!(
            without_regexes(r#"x{a="=~", b=~"c.*"} # {d=~"e"}"#).as_deref(),
            Some(r#"x{a="=~", b="x"} # {d=~"e"}"#)
        );
        assert_eq!(without_regexes(r#"x{a="b"}"#), None);
        assert_eq!(without_regexes(r#"x =~ "a""#), None);
        assert_eq!(without_regexes(r#"x{a!=~"b"}"#), None);
        assert!(parse(r#"x{a!=~"b"}"#).is_err());
        // A string with escapes is left to the parser.
        assert_eq!(without_regexes(r#"x{a=~"b\\.c"}"#), None);
        assert_eq!(
            without_regexes(r#"x{a!~".*", b=~`d+`, c=~`\d`}"#).as_deref(),
            Some(r#"x{a!="", b="x", c=~`\d`}"#)
        );
        // Unclosed strings: the parser's error, not ours.
        assert_eq!(without_regexes(r#"x{a=~"b}"#), None);
        assert!(parse(r#"x{a=~"b}"#).is_err());
    }

    #[test]
    fn a_regex_too_large_to_compile_is_left_to_the_parser() {
        assert_eq!(matches_empty("a{1000}{1000}"), None);
        assert_eq!(matches_empty("\\w+"), Some(false));
        assert_eq!(matches_empty("\\w{100}"), None);
        assert_eq!(matches_empty("[a&&b]*"), Some(true));
        assert_eq!(matches_empty("[a&&b]"), Some(false));
        assert_eq!(matches_empty("(?m)^a"), None);
        assert!(!reference("up{a=~\"a{1000}{1000}\"}"));
        assert!(parse("up{a=~\"a{1000}{1000}\"}").is_err());
    }
}
