//! `--nv`: the host's NVIDIA driver in a container without a CDI spec, as Apptainer's `--nv`
//! does it: the driver's user-space libraries (found in `ldconfig -p`, by name) bound into
//! [`LIB_DIR`] with `LD_LIBRARY_PATH` naming it, the driver's programs (`nvidia-smi`, ...)
//! from the host's `PATH` bound into /usr/bin, and the device nodes `/dev/nvidia*` bound at
//! their own paths. What it looks for can be changed in containers.conf (`[containers]`
//! `nv_libraries`, `nv_library_dirs`: directories searched instead of `ldconfig -p`,
//! `nv_binaries`: names or absolute paths, `nv_devices`: `HOST[:CONTAINER]`), so that a
//! host with the driver in odd places, and a test with synthetic files, say where.
//! The result is [`Edits`] that `cdi` applies like a CDI device's.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use super::cdi::{DeviceNode, Edits, Mount};

/// Where the libraries go in the container: the directory NVIDIA's CUDA images already
/// name in their `LD_LIBRARY_PATH`.
pub const LIB_DIR: &str = "/usr/local/nvidia/lib64";

/// The driver's user-space libraries (names as `ldconfig -p` lists them; a listed name
/// `NAME.VERSION` matches `NAME`).
pub const LIBRARIES: &[&str] = &[
    "libcuda.so.1",
    "libcudadebugger.so.1",
    "libnvidia-ml.so.1",
    "libnvidia-ptxjitcompiler.so.1",
    "libnvidia-nvvm.so.4",
    "libnvidia-opencl.so.1",
    "libnvidia-cfg.so.1",
    "libnvidia-allocator.so.1",
    "libnvidia-encode.so.1",
    "libnvcuvid.so.1",
    "libnvidia-opticalflow.so.1",
    "libnvidia-gpucomp.so",
    "libnvidia-eglcore.so",
    "libnvidia-glcore.so",
    "libnvidia-glsi.so",
    "libnvidia-tls.so",
    "libnvidia-rtcore.so",
    "libnvidia-glvkspirv.so",
    "libnvidia-fbc.so.1",
    "libnvoptix.so.1",
    "libEGL_nvidia.so.0",
    "libGLESv1_CM_nvidia.so.1",
    "libGLESv2_nvidia.so.2",
    "libGLX_nvidia.so.0",
];

/// The driver's programs, looked up in `PATH`.
pub const BINARIES: &[&str] = &[
    "nvidia-smi",
    "nvidia-debugdump",
    "nvidia-persistenced",
    "nvidia-cuda-mps-control",
    "nvidia-cuda-mps-server",
];

/// containers.conf's say on what `--nv` looks for (absent: the defaults above).
#[derive(Debug, Clone, Default)]
pub struct Conf {
    pub libraries: Option<Vec<String>>,
    pub library_dirs: Option<Vec<String>>,
    pub binaries: Option<Vec<String>>,
    pub devices: Option<Vec<String>>,
}

/// Whether `listed` (a library file name) is the wanted `name` or a version of it.
fn name_matches(listed: &str, name: &str) -> bool {
    listed == name
        || listed
            .strip_prefix(name)
            .is_some_and(|rest| rest.starts_with('.'))
}

/// The libraries of `names` in `ldconfig -p` output `text`: (file name, host path), the
/// first listing of each name for this machine's word size (`x86-64`, `AArch64`, ... in the
/// flags; `arch` empty takes the first listing).
pub fn from_ldconfig(text: &str, names: &[String], arch: &str) -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = Vec::new();
    for line in text.lines() {
        // "\tlibnvidia-ml.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1"
        let Some((left, path)) = line.trim().split_once(" => ") else {
            continue;
        };
        let Some((file, flags)) = left.split_once(' ') else {
            continue;
        };
        if !arch.is_empty() && flags.contains(',') && !flags.contains(arch) {
            continue;
        }
        if names.iter().any(|n| name_matches(file, n)) && !out.iter().any(|(f, _)| f == file) {
            out.push((file.to_string(), PathBuf::from(path)));
        }
    }
    out
}

/// The libraries of `names` in `dirs` (the first directory that has a name wins).
pub fn from_dirs(dirs: &[String], names: &[String]) -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = Vec::new();
    for d in dirs {
        let Ok(rd) = std::fs::read_dir(d) else {
            continue;
        };
        let mut files: Vec<String> = rd
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        files.sort();
        for f in files {
            if names.iter().any(|n| name_matches(&f, n)) && !out.iter().any(|(g, _)| *g == f) {
                out.push((f.clone(), Path::new(d).join(&f)));
            }
        }
    }
    out
}

/// `ldconfig -p` as the host's ldconfig prints it (empty when there is none).
fn ldconfig_listing() -> String {
    for prog in ["/sbin/ldconfig", "/usr/sbin/ldconfig", "ldconfig"] {
        if let Ok(o) = std::process::Command::new(prog)
            .arg("-p")
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
        {
            if o.status.success() {
                return String::from_utf8_lossy(&o.stdout).into_owned();
            }
        }
    }
    String::new()
}

/// The word-size flag ldconfig writes for this machine's libraries.
fn ldconfig_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "x86-64",
        "aarch64" => "AArch64",
        "powerpc64" => "64bit",
        _ => "",
    }
}

/// A program in `PATH` (or the absolute path given).
fn find_program(name: &str) -> Option<PathBuf> {
    if name.starts_with('/') {
        return Path::new(name).exists().then(|| PathBuf::from(name));
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The host's `/dev/nvidia*` (files and directories such as `/dev/nvidia-caps`).
fn default_devices() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/dev")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with("nvidia"))
        .map(|n| format!("/dev/{n}"))
        .collect();
    v.sort();
    v
}

/// What `--nv` binds on this host, and whether it found libraries (then the container's
/// `LD_LIBRARY_PATH` needs [`LIB_DIR`]: see [`with_lib_dir`]).
pub fn edits(c: &Conf) -> Result<(Edits, bool)> {
    let names: Vec<String> = c
        .libraries
        .clone()
        .unwrap_or_else(|| LIBRARIES.iter().map(|s| s.to_string()).collect());
    let libs = match &c.library_dirs {
        Some(dirs) => from_dirs(dirs, &names),
        None => from_ldconfig(&ldconfig_listing(), &names, ldconfig_arch()),
    };
    let mut e = Edits::default();
    for (file, host) in &libs {
        e.mounts.push(Mount {
            host_path: host.to_string_lossy().into_owned(),
            container_path: format!("{LIB_DIR}/{file}"),
            options: vec!["ro".into(), "nosuid".into(), "nodev".into(), "bind".into()],
            typ: None,
        });
    }
    let bins: Vec<String> = c
        .binaries
        .clone()
        .unwrap_or_else(|| BINARIES.iter().map(|s| s.to_string()).collect());
    for b in &bins {
        if let Some(p) = find_program(b) {
            let file = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            e.mounts.push(Mount {
                host_path: p.to_string_lossy().into_owned(),
                container_path: format!("/usr/bin/{file}"),
                options: vec!["ro".into(), "nosuid".into(), "nodev".into(), "bind".into()],
                typ: None,
            });
        }
    }
    let devices = c.devices.clone().unwrap_or_else(default_devices);
    for d in &devices {
        let (host, inside) = d.split_once(':').unwrap_or((d, d));
        if !host.starts_with('/') || !inside.starts_with('/') {
            bail!("invalid nv_devices entry `{d}` in containers.conf: expected HOST[:CONTAINER], both absolute");
        }
        e.device_nodes.push(DeviceNode {
            path: inside.to_string(),
            host_path: Some(host.to_string()),
            ..Default::default()
        });
    }
    if libs.is_empty() {
        tracing::warn!("--nv: no NVIDIA driver libraries found on the host");
    }
    if devices.is_empty() {
        tracing::warn!("--nv: no NVIDIA device nodes (/dev/nvidia*) found on the host");
    }
    Ok((e, !libs.is_empty()))
}

/// `LD_LIBRARY_PATH` of `env` with [`LIB_DIR`] first (kept once; set when missing).
pub fn with_lib_dir(env: &mut Vec<String>) {
    match env.iter_mut().find(|e| e.starts_with("LD_LIBRARY_PATH=")) {
        Some(e) => {
            let v = &e["LD_LIBRARY_PATH=".len()..];
            if v.is_empty() {
                *e = format!("LD_LIBRARY_PATH={LIB_DIR}");
            } else if !v.split(':').any(|p| p == LIB_DIR) {
                *e = format!("LD_LIBRARY_PATH={LIB_DIR}:{v}");
            }
        }
        None => env.push(format!("LD_LIBRARY_PATH={LIB_DIR}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldconfig_lines_give_the_libraries_of_this_word_size() {
        let text = "1234 libs found in cache `/etc/ld.so.cache'\n\
            \tlibnvidia-ml.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1\n\
            \tlibnvidia-ml.so.1 (libc6) => /usr/lib/i386-linux-gnu/libnvidia-ml.so.1\n\
            \tlibnvidia-glcore.so.535.104.05 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libnvidia-glcore.so.535.104.05\n\
            \tlibnvidia-mlx.so.1 (libc6,x86-64) => /usr/lib/libnvidia-mlx.so.1\n\
            \tlibc.so.6 (libc6,x86-64, OS ABI: Linux 3.2.0) => /lib/x86_64-linux-gnu/libc.so.6\n";
        let names: Vec<String> = LIBRARIES.iter().map(|s| s.to_string()).collect();
        let got = from_ldconfig(text, &names, "x86-64");
        assert_eq!(
            got,
            [
                (
                    "libnvidia-ml.so.1".to_string(),
                    PathBuf::from("/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1")
                ),
                (
                    "libnvidia-glcore.so.535.104.05".to_string(),
                    PathBuf::from("/usr/lib/x86_64-linux-gnu/libnvidia-glcore.so.535.104.05")
                ),
            ]
        );
    }

    #[test]
    fn the_library_dir_goes_first_in_the_images_path() {
        let mut env = vec!["LD_LIBRARY_PATH=/opt/lib".to_string(), "A=1".into()];
        with_lib_dir(&mut env);
        assert_eq!(env[0], format!("LD_LIBRARY_PATH={LIB_DIR}:/opt/lib"));
        with_lib_dir(&mut env);
        assert_eq!(env[0], format!("LD_LIBRARY_PATH={LIB_DIR}:/opt/lib"));
        let mut env = vec!["A=1".to_string()];
        with_lib_dir(&mut env);
        assert_eq!(env[1], format!("LD_LIBRARY_PATH={LIB_DIR}"));
    }
}
