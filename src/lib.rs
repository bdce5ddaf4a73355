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

/// mimalloc, for every binary built on this crate (the `policyctl` binary, its tests
/// and benchmarks alike). A service keeps one model, state and last tick per policy
/// for its whole life and allocates around them at every tick; glibc's allocator left
/// those long-lived pieces scattered among freed ones. With 100,000 policies, mimalloc
/// keeps the resident set lower and a tick's memory closer together (docs/serve.md,
/// "Performance", has the figures).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
