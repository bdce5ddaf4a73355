//! Text → syntax tree (with spans), and the formatter that prints a tree back in the
//! one canonical layout. The parser module is the only one that knows pest.

pub mod ast;
pub mod format;
mod comments;
mod parser;

pub use parser::{MAX_EXPR_TERMS, MAX_NESTING, parse};
