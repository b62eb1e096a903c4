//! Compiles the XDP program with clang (clang-19 by default, `CLANG` to
//! override). A missing compiler or header stops the build with the Debian
//! packages to install.
use std::path::PathBuf;
use std::process::Command;

const SOURCE: &str = "src/bpf/steer.bpf.c";

fn main() {
    println!("cargo:rerun-if-changed={SOURCE}");
    println!("cargo:rerun-if-env-changed=CLANG");
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang-19".into());
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("steer.bpf.o");
    let arch_include = format!(
        "-I/usr/include/{}-linux-gnu",
        std::env::var("CARGO_CFG_TARGET_ARCH").unwrap()
    );
    let status = Command::new(&clang)
        .args([
            "-O2",
            "-g",
            "-target",
            "bpf",
            "-Wall",
            "-Werror",
            &arch_include,
            "-c",
            SOURCE,
            "-o",
        ])
        .arg(&out)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!(
            "{clang} failed ({s}) compiling {SOURCE}; it needs the BPF headers: apt-get install libbpf-dev linux-libc-dev"
        ),
        Err(e) => panic!("cannot run {clang} ({e}): apt-get install clang-19 libbpf-dev (or set CLANG)"),
    }
}
