//! Integration tests: the real binaries, as separate processes, over real FIFOs, each test in
//! its own runtime directory.

mod util;

mod cagateway;
mod circ_tools;
mod ecosystem;
mod event_loop;
mod framework;
mod hostile;
mod isectd;
mod lvsmon;
mod readme;
mod shvar_tool;
mod spy;
mod spyctl;
mod tools_cli;
