//! Link the `rbox` binary as a position-dependent executable (`-no-pie`), as Debian builds
//! Podman, runc and skopeo (`readelf -h`: Type EXEC). A PIE's 24,000 relative relocations
//! make the dynamic loader write to ~110 pages of the binary's data at every start, each a
//! copy-on-write fault: 0.3 ms of `rbox run --rm`'s own 7 ms on the benchmark's machine (exec
//! of rbox to its setns into the pause process's namespaces, bench/run-startup-phases.sh:
//! 2.01 -> 1.69 ms). The code stays position-independent; only the
//! executable's own load address is fixed (libraries, stack, heap and mmap stay randomised).
//! `RBOX_PIE=1 cargo build` keeps a PIE, for distributions whose policy asks for one.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=RBOX_PIE");
    let target = std::env::var("TARGET").unwrap_or_default();
    let pie = std::env::var_os("RBOX_PIE").is_some_and(|v| !v.is_empty() && v != "0");
    if !pie && target.contains("linux") {
        println!("cargo:rustc-link-arg-bin=rbox=-no-pie");
    }
}
