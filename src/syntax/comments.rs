//! Comments, found by a lexical scan: the grammar drops them, the formatter puts them
//! back. Strings and raw strings are skipped, so a `#` inside a query is no comment.

use crate::diagnostic::Span;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comment {
    /// From `#` to the end of the line, newline excluded.
    pub span: Span,
}

pub fn scan(text: &str) -> Vec<Comment> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    while i < bytes.len() {
        match bytes[i] {
            b'#' => {
                let start = i;
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                let end = if i > start && bytes[i - 1] == b'\r' {
                    i - 1
                } else {
                    i
                };
                out.push(Comment {
                    span: Span::new(start, end),
                });
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'r' if (i == 0 || !ident(bytes[i - 1]))
                && matches!(bytes.get(i + 1), Some(b'"' | b'#')) =>
            {
                let hashes = bytes[i + 1..].iter().take_while(|&&b| b == b'#').count();
                let open = i + 1 + hashes;
                if bytes.get(open) != Some(&b'"') {
                    i += 1;
                    continue;
                }
                let mut close = String::from("\"");
                close.push_str(&"#".repeat(hashes));
                i = match text.get(open + 1..).and_then(|rest| rest.find(&close)) {
                    Some(at) => open + 1 + at + close.len(),
                    None => bytes.len(),
                };
            }
            _ => i += 1,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_hashes_inside_strings() {
        let text = "a \"x # y\" # one\nr#\"q # \"# # two\n";
        let found: Vec<&str> = scan(text)
            .iter()
            .map(|c| &text[c.span.start..c.span.end])
            .collect();
        assert_eq!(found, vec!["# one", "# two"]);
    }
}
