//! policyctl: the `.scale` policy language and the engine that runs it.
//! See ARCHITECTURE.md for the map of modules and the invariants between them.

pub mod actuate;
pub mod calendar;
pub mod check;
pub mod diagnostic;
pub mod engine;
pub mod import;
pub mod input;
pub mod lsp;
pub mod model;
pub mod serve;
pub mod sim;
pub mod syntax;
