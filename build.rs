//! Links `shvar` as a static PIE (issue 19, goal 4: a cold `shvar get` is mostly the dynamic
//! loader's work on this kind of machine), and every other binary as before.
//!
//! Cargo has no per-binary `crt-static`: `-C target-feature=+crt-static` in RUSTFLAGS reaches
//! proc-macros and build scripts too, and works only with `--target`, which moves every output
//! to `target/<triple>/`. So this script gives the linker of `shvar` alone `-static-pie` and a
//! directory of its own searched first, in which each library rustc names (`-lgcc_s -lutil -lrt
//! -lpthread -lm -ldl -lc`) is a one-line linker script, `libc.so` = `GROUP(/path/libc.a)`:
//! rustc's `-Bdynamic` then still finds the static archives. ASLR is kept (position
//! independent), nothing outside cargo and the C toolchain rustc links with is needed.
//!
//! When an archive is missing (no `libc.a`, another libc, not Linux/glibc), or
//! `DAQPROC_DYNAMIC_SHVAR` is set, `shvar` is linked like the others. The tests run `shvar`
//! all the time, so a binary this leaves broken cannot pass them.

use std::path::PathBuf;
use std::process::Command;

/// The libraries rustc's std asks for on x86_64/aarch64 Linux with glibc, and where each
/// comes from statically (a library of libgcc's may be two archives).
const LIBS: &[(&str, &[&str])] = &[
    ("gcc_s", &["libgcc_eh.a", "libgcc.a"]),
    ("util", &["libutil.a"]),
    ("rt", &["librt.a"]),
    ("pthread", &["libpthread.a"]),
    ("m", &["libm.a"]),
    ("dl", &["libdl.a"]),
    ("c", &["libc.a"]),
];

fn archive(cc: &str, name: &str) -> Option<PathBuf> {
    let out = Command::new(cc)
        .arg(format!("-print-file-name={name}"))
        .output()
        .ok()?;
    let p = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    // An archive the compiler does not know is printed back as its bare name.
    (p.is_absolute() && p.is_file()).then_some(p)
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=DAQPROC_DYNAMIC_SHVAR");
    println!("cargo:rerun-if-env-changed=CC");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    // A cross build would need the target's archives, which `cc` does not know.
    let cross = std::env::var("TARGET").ok() != std::env::var("HOST").ok();
    if os != "linux" || env != "gnu" || cross || std::env::var_os("DAQPROC_DYNAMIC_SHVAR").is_some()
    {
        return;
    }
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("static-shvar");
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    for (lib, parts) in LIBS {
        let mut paths = Vec::new();
        for part in *parts {
            let Some(p) = archive(&cc, part) else {
                println!(
                    "cargo:warning=shvar is linked dynamically: {cc} has no {part} (install the C library's static archives, e.g. libc6-dev, for a faster cold start)"
                );
                return;
            };
            paths.push(p.display().to_string());
        }
        let script = format!("GROUP({})\n", paths.join(" "));
        if std::fs::write(dir.join(format!("lib{lib}.so")), script).is_err() {
            return;
        }
    }
    println!("cargo:rustc-link-arg-bin=shvar=-static-pie");
    println!("cargo:rustc-link-arg-bin=shvar=-L{}", dir.display());
}
