//! How the `rbox` binary is linked, for the few milliseconds of a container's start.
//!
//! - Position-dependent (`-no-pie`), as Debian builds Podman, runc and skopeo (`readelf -h`:
//!   Type EXEC). A PIE's 24,000 relative relocations make the dynamic loader write to ~110
//!   pages of the binary's data at every start, each a copy-on-write fault: 0.3 ms of `rbox
//!   run --rm`'s own 7 ms on the benchmark's machine (exec of rbox to its setns into the pause
//!   process's namespaces, bench/run-startup-phases.sh: 2.01 -> 1.69 ms). The code stays
//!   position-independent; only the executable's own load address is fixed (libraries,
//!   stack, heap and mmap stay randomised). `RBOX_PIE=1` keeps a PIE, for distributions whose
//!   policy asks for one.
//! - libseccomp and libgcc's unwinder linked in from their archives where the C compiler
//!   finds them (`cc -print-file-name`), so that the dynamic loader maps libc and libm only:
//!   each shared library costs every exec 65-110 us on that machine (mapping, relocations,
//!   and libgcc_s's constructor, whose CPUID probes trap in a VM). libc stays shared, so that
//!   user and host lookups go through the host's NSS modules (LDAP and SSSD on clusters).
//!   `RBOX_SHARED_LIBS=1` links both shared, as does a missing archive or a cross build.
//!   libm is not needed either: the two functions rbox calls are defined in src/mathsyms.rs
//!   (test startup::the_binary_needs_libc_alone).
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    for v in ["RBOX_PIE", "RBOX_SHARED_LIBS", "CC"] {
        println!("cargo:rerun-if-env-changed={v}");
    }
    let target = std::env::var("TARGET").unwrap_or_default();
    if !target.contains("linux") {
        return;
    }
    if !set("RBOX_PIE") {
        println!("cargo:rustc-link-arg-bin=rbox=-no-pie");
    }
    if set("RBOX_SHARED_LIBS") || std::env::var("HOST").ok().as_deref() != Some(&target) {
        return;
    }
    if archive("libseccomp.a").is_some() {
        // linked before libseccomp-sys's own `-lseccomp`, which --as-needed then drops
        println!("cargo:rustc-link-lib=static:+whole-archive,-bundle=seccomp");
    }
    if let Some(eh) = archive("libgcc_eh.a") {
        // std asks for `-lgcc_s`: a linker script of that name, found first, gives it the
        // archive of the same unwinder instead (what `gcc -static-libgcc` links)
        let dir = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("link");
        std::fs::create_dir_all(&dir).expect("create the link directory");
        std::fs::write(
            dir.join("libgcc_s.so"),
            format!("INPUT({})\n", eh.display()),
        )
        .expect("write the libgcc_s linker script");
        println!("cargo:rustc-link-search=native={}", dir.display());
    }
}

fn set(var: &str) -> bool {
    std::env::var_os(var).is_some_and(|v| !v.is_empty() && v != "0")
}

/// Where the C compiler finds archive `name`, if it does.
fn archive(name: &str) -> Option<PathBuf> {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = Command::new(cc)
        .arg(format!("-print-file-name={name}"))
        .output()
        .ok()?;
    let path = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    (path.is_absolute() && path.is_file()).then_some(path)
}
