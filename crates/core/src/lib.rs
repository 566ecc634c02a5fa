//! Types shared by the control plane, the host agents and the CLI, plus the
//! pure decision functions (name validation, placement) that have no I/O.

pub mod api;
pub mod backup;
pub mod errors;
#[cfg(any(test, feature = "fixtures"))]
mod fixtures;
pub mod model;
pub mod names;
pub mod placement;
pub mod protocol;
pub mod secrets;
pub mod settings;
pub mod time;
pub mod zone;

pub use model::*;
