//! `cutover`: a deterministic simulator that proves a double-write migration plan safe.
#![forbid(unsafe_code)]

pub mod anomaly;
pub mod data;
pub mod domain;
pub mod exhaustive;
pub mod explore;
pub mod export;
pub mod extension;
pub mod keycode;
pub mod output;
pub mod plan;
pub mod replay;
pub mod review;
pub mod schema;
pub mod sim;
pub mod store;
pub mod sweep;
pub mod validator;
pub mod value;
pub mod world;
