//! The Jepsen-style chaos run (`bench/chaos`): fault kinds and what each
//! should do (`kinds`), the seeded round plan (`plan`), writers in the
//! clients' namespace that log every acknowledged write (`writer`), the
//! fault injection on a netns fleet (`inject`; `io_stall`, the blkio
//! cgroup that throttles the primary's disk), and the checker that reads
//! the history and says what broke (`checker`, pure, unit-tested), and one
//! whole run (`run`).

pub mod checker;
pub mod inject;
pub mod io_stall;
pub mod kinds;
pub mod plan;
pub mod run;
pub mod writer;
