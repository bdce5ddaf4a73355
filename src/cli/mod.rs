//! The binary's own modules: file discovery and output formats. The library never
//! prints; only these and `main.rs` know about terminals, JSON, GitHub and SARIF.

pub mod files;
pub mod report;
