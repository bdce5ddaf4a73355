//! The binary's own modules: file discovery, output formats, and the offline tools. The library never
//! prints; only these and `main.rs` know about terminals, JSON, GitHub and SARIF.

pub mod actuate;
pub mod files;
pub mod import;
pub mod report;
pub mod serve;
pub mod shadow;
pub mod sim;
