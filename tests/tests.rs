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
mod region_tables;
mod shvar_tool;
mod spy;
mod spy_fresh;
mod spy_hostile;
mod spy_kloe;
mod spy_onecopy;
mod spy_seed;
mod spyctl;
mod svcshare;
mod tools_cli;
