//! Compiles the XDP programs (steering, and the benchmark rig's) with clang (clang-19 by default, `CLANG` to
//! override). A missing compiler or header stops the build with the Debian
//! packages to install.
use std::path::PathBuf;
use std::process::Command;

const PROGRAMS: [&str; 2] = ["steer", "bench"];

fn main() {
    println!("cargo:rerun-if-env-changed=CLANG");
    for name in PROGRAMS {
        compile(name);
    }
}

fn compile(name: &str) {
    let source = format!("src/bpf/{name}.bpf.c");
    let source = source.as_str();
    println!("cargo:rerun-if-changed={source}");
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang-19".into());
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join(format!("{name}.bpf.o"));
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
            source,
            "-o",
        ])
        .arg(&out)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!(
            "{clang} failed ({s}) compiling {source}; it needs the BPF headers: apt-get install libbpf-dev linux-libc-dev"
        ),
        Err(e) => panic!("cannot run {clang} ({e}): apt-get install clang-19 libbpf-dev (or set CLANG)"),
    }
}
