//! An external checker against the FUSE overlay: fsx (crates.io's fsx-rs, the fsx
//! random-operation checker: pread/pwrite, mmap reads and writes, truncate, fallocate, punch
//! hole, copy_file_range, sendfile, fsync, close and reopen, page cache invalidation, every
//! read checked against its model of the file) inside a container on
//! `--storage-driver=fuse-overlay`, as every test user. The full suites (fsx and pjdfstest)
//! against the three overlays are bench/run-fssuite.sh; this is the short run CI affords.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::util::{for_each_user, require, Env};

/// fsx-rs's operation weights: every operation it has, so each FUSE request kind is hit.
const CONFIG: &str = "flen = 1048576
[weights]
close_open = 1
read = 10
write = 10
mapread = 10
mapwrite = 10
invalidate = 1
truncate = 2
fsync = 1
fdatasync = 1
posix_fallocate = 1
punch_hole = 1
sendfile = 1
posix_fadvise = 1
copy_file_range = 1
";

/// The fsx binary: $RBOX_FSX, else target/tools/bin/fsx (where .ci/run installs it), else
/// fsx on the PATH.
fn fsx() -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(p) = std::env::var_os("RBOX_FSX") {
        candidates.push(PathBuf::from(p));
    }
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tools/bin/fsx"));
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        candidates.push(Path::new(&home).join("bin/fsx"));
    }
    candidates.extend(
        ["/usr/local/bin/fsx", "/usr/bin/fsx"]
            .iter()
            .map(PathBuf::from),
    );
    candidates.into_iter().find(|p| p.is_file())
}

/// The directories of the host's dynamic loader and of the libraries `bin` needs (fsx is
/// not static; the busybox image has no libc): bound read-only into the container, where
/// the loader runs the binary.
fn loader_and_libs(bin: &Path) -> (PathBuf, Vec<PathBuf>) {
    let out = std::process::Command::new("ldd")
        .arg(bin)
        .output()
        .expect("run ldd");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut loader = None;
    let mut dirs: Vec<PathBuf> = Vec::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let path = match words.as_slice() {
            [_, "=>", p, ..] if p.starts_with('/') => *p,
            [p, ..] if p.starts_with('/') => {
                loader = Some(PathBuf::from(p));
                *p
            }
            _ => continue,
        };
        let real = std::fs::canonicalize(path).unwrap();
        let dir = real.parent().unwrap().to_path_buf();
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    let loader = std::fs::canonicalize(loader.expect("ldd names the loader")).unwrap();
    (loader, dirs)
}

#[test]
fn fuse_overlay_passes_fsx_in_a_container() {
    if !crate::fuse::fuse_usable() {
        return;
    }
    let Some(bin) = fsx() else {
        require(
            false,
            "fsx (cargo install --root target/tools fsx, as .ci/run does)",
        );
        return;
    };
    let (loader, dirs) = loader_and_libs(&bin);
    for_each_user("fusefsx", |env: &Env| {
        env.import_busybox("busybox");
        let fsx = env.copy_in(&bin, "fsx");
        let conf = env.write("fsx.toml", CONFIG);
        let mut binds = Vec::new();
        let mut libpath = Vec::new();
        for (i, d) in dirs.iter().enumerate() {
            binds.push("-v".to_string());
            binds.push(format!("{}:/hostlib{i}:ro", d.display()));
            libpath.push(format!("/hostlib{i}"));
        }
        let i = dirs
            .iter()
            .position(|d| Some(d.as_path()) == loader.parent())
            .expect("the loader's directory is bound");
        let ld = format!(
            "/hostlib{i}/{}",
            loader.file_name().unwrap().to_string_lossy()
        );
        let fsx_cmd = format!(
            "{ld} --library-path {} /fsx/fsx -f /fsx/fsx.toml -N 2000 -P /w",
            libpath.join(":")
        );
        // two runs at once (the server's threads), then one on a file of the image (copied
        // up by fsx's open for writing)
        let script = format!(
            "set -e; mkdir /w
            {fsx_cmd} -S 11 /w/a >/w/a.log 2>&1 & a=$!
            {fsx_cmd} -S 12 /w/b >/w/b.log 2>&1 & b=$!
            ok=0; wait $a || ok=1; wait $b || ok=$((ok + 2))
            {fsx_cmd} -S 13 /etc/passwd >/w/c.log 2>&1 || ok=$((ok + 4))
            tail -n 3 /w/a.log /w/b.log /w/c.log; echo status=$ok"
        );
        let out = env
            .rbox()
            .args([
                "--storage-driver=fuse-overlay",
                "run",
                "--rm",
                "--network=none",
                "--name",
                "fsx",
            ])
            .arg("-v")
            .arg(format!("{}:/fsx/fsx:ro", fsx.display()))
            .arg("-v")
            .arg(format!("{}:/fsx/fsx.toml:ro", conf.display()))
            .args(&binds)
            .args(["busybox", "sh", "-c", &script])
            .timeout(Duration::from_secs(240))
            .output();
        let text = out.text();
        assert!(
            text.contains("status=0"),
            "fsx found a difference (or did not run):\n{text}"
        );
        assert_eq!(
            text.matches("All operations completed A-OK!").count(),
            3,
            "{text}"
        );
        out.success();
    });
}
