//! Text → syntax tree (with spans), and the formatter that prints a tree back in the
//! one canonical layout. The parser module is the only one that knows pest.

pub mod ast;
mod comments;
mod fast;
pub mod format;
mod parser;

pub use parser::{MAX_EXPR_TERMS, MAX_NESTING, MAX_RULE_CALLS, parse};
