//! `shvars`: everything of the daqproc framework that lives in shared memory.
//!
//! - [`dir`]: the runtime directory and the rules for names.
//! - [`region`]: the variable region of a process (`NAME.shv`): typed shared variables that any
//!   local tool reads without a lock and without disturbing the owner.
//! - [`circ`]: the circular event buffer, one producer and many readers in other processes.
//! - [`alloc`]: a global allocator that counts each thread's allocations (to prove a hot loop
//!   allocates nothing).
//! - [`open`]: opening runtime files that another local user may have planted (never blocking
//!   on a FIFO, never following a link, only regular files).
//! - [`sys`]: the few process-level system calls the framework needs (detaching a daemon).
//!
//! All of the workspace's `unsafe` code lives in this crate; every block says why it holds.
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod alloc;
pub mod circ;
pub mod dir;
pub mod lean;
pub mod open;
pub mod region;
pub mod sys;

pub use dir::{check_var_name, DirError, NameError, ProcName, RuntimeDir};
