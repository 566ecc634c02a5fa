//! Test kit: the library's local fleet (`pgfleet::localfleet`).

#![allow(unused_imports)]

pub use pgfleet::localfleet::{eventually, resolve, wait_ha_settled, Fleet};
