//! `lvsmon`: the health-check daemon (seed 003, LVSmon).

pub mod config;
pub mod engine;
pub mod plan;
pub mod probe;
pub mod reason;
pub mod rows;
pub mod verdict;

#[cfg(test)]
mod tests;
