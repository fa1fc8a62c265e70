//! Hostile archives: each must make `rbox load` exit 125 with one clear line, write nothing
//! outside the store, and leave the store without a half-loaded image. The canaries are paths
//! under /tmp that a buggy unpacker would create or change (see `fixtures::Hostile`).
//!
//! Two kinds may instead be defused, as the issue allows ("refused or skipped with a clear
//! message") and as Docker and Podman do: an absolute entry name may be taken relative to the
//! layer root (then the file must be found inside the store), and a device node may be skipped
//! with a message naming it (then no device node may exist anywhere in the store).

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use crate::fixtures::{self, Hostile};
use crate::util::for_each_user;

fn check(kind: Hostile) {
    let canary = kind.canary();
    let passwd_before = (
        std::fs::read("/etc/passwd").unwrap(),
        std::fs::metadata("/etc/passwd").unwrap().nlink(),
    );
    for_each_user(&format!("hostile_{}", kind.slug()), |env| {
        // Reset the canary: a directory or file anyone could write, so a buggy write succeeds
        // whoever runs rbox, and the test sees it.
        let _ = std::fs::remove_dir_all(&canary);
        let _ = std::fs::remove_file(&canary);
        match kind {
            Hostile::SymlinkAbsoluteEscape | Hostile::SymlinkRelativeEscape => {
                std::fs::create_dir(&canary).unwrap();
                std::fs::set_permissions(&canary, std::fs::Permissions::from_mode(0o1777)).unwrap();
            }
            Hostile::HardlinkWriteThrough => {
                std::fs::write(&canary, "canary\n").unwrap();
                std::fs::set_permissions(&canary, std::fs::Permissions::from_mode(0o666)).unwrap();
            }
            _ => {}
        }

        let out = env.load(&fixtures::hostile_archive(kind));
        let defused = out.code == 0 && matches!(kind, Hostile::Absolute | Hostile::DeviceNode);
        if defused {
            assert!(!out.stderr.contains("panicked"), "{out}");
            check_defused(env, kind, &out);
        } else {
            assert_eq!(
                out.code,
                125,
                "hostile archive `{}` was not refused:\n{out}",
                kind.slug()
            );
            out.assert_clean_error();
            assert_eq!(
                out.stderr.lines().filter(|l| !l.trim().is_empty()).count(),
                1,
                "the error is one line:\n{out}"
            );
        }

        match kind {
            Hostile::SymlinkAbsoluteEscape | Hostile::SymlinkRelativeEscape => {
                let entries: Vec<_> = std::fs::read_dir(&canary).unwrap().collect();
                assert!(
                    entries.is_empty(),
                    "a write went through a symlink out of the layer"
                );
            }
            Hostile::HardlinkWriteThrough => {
                assert_eq!(
                    std::fs::read_to_string(&canary).unwrap(),
                    "canary\n",
                    "wrote through a hard link"
                );
                assert_eq!(
                    std::fs::metadata(&canary).unwrap().nlink(),
                    1,
                    "a hard link to a host file was made"
                );
            }
            _ => assert!(
                !canary.exists(),
                "`{}` was written outside the store",
                canary.display()
            ),
        }
        let passwd_after = (
            std::fs::read("/etc/passwd").unwrap(),
            std::fs::metadata("/etc/passwd").unwrap().nlink(),
        );
        assert!(
            passwd_before == passwd_after,
            "/etc/passwd changed or gained a link"
        );

        if !defused {
            let out = env.rbox().args(["images", "-q"]).output().success();
            assert_eq!(out.text(), "", "a refused archive left an image behind");
        }
        // The store is still usable after the refusal.
        env.load(&fixtures::helper_docker_archive()).success();
        env.rbox()
            .args(["run", "--rm", "helper", "args", "ok"])
            .output()
            .success();
    });
    let _ = std::fs::remove_dir_all(&canary);
    let _ = std::fs::remove_file(&canary);
}

#[test]
fn hostile_dotdot_path() {
    check(Hostile::DotDot);
}

#[test]
fn hostile_absolute_path() {
    check(Hostile::Absolute);
}

#[test]
fn hostile_symlink_absolute_escape() {
    check(Hostile::SymlinkAbsoluteEscape);
}

#[test]
fn hostile_symlink_relative_escape() {
    check(Hostile::SymlinkRelativeEscape);
}

#[test]
fn hostile_hardlink_to_etc_passwd() {
    check(Hostile::HardlinkPasswd);
}

#[test]
fn hostile_hardlink_write_through() {
    check(Hostile::HardlinkWriteThrough);
}

#[test]
fn hostile_device_nodes() {
    check(Hostile::DeviceNode);
}

/// The device-node warnings are log lines at warn level: `--log-level error` hides them (the
/// archive still loads, without the nodes).
#[test]
fn hostile_device_warnings_follow_the_log_level() {
    for_each_user("hostile_device_quiet", |env| {
        let archive = fixtures::hostile_archive(Hostile::DeviceNode);
        let p = env.copy_in(&archive, "devices.tar");
        let out = env
            .rbox()
            .args(["--log-level", "error", "load", "-i"])
            .arg(&p)
            .output()
            .success();
        assert!(!out.stderr.contains("Warning"), "{out}");
        assert!(!out.stderr.contains("device"), "{out}");
    });
}

#[test]
fn hostile_bad_diff_id() {
    check(Hostile::BadDiffId);
}

#[test]
fn hostile_bad_layer_digest() {
    check(Hostile::BadLayerDigest);
}

#[test]
fn hostile_bad_config_digest() {
    check(Hostile::BadConfigDigest);
}

/// A defused archive loaded: the hostile entry must have stayed inside the store.
fn check_defused(env: &crate::util::Env, kind: Hostile, out: &crate::util::Output) {
    use std::os::unix::fs::FileTypeExt;
    let store = env.store();
    let paths = crate::util::tree(&store);
    match kind {
        Hostile::Absolute => {
            let inside = kind
                .canary()
                .to_str()
                .unwrap()
                .trim_start_matches('/')
                .to_string();
            assert!(
                paths.iter().any(|p| p.ends_with(&inside)),
                "the absolute entry was neither refused nor found inside the store:\n{out}"
            );
        }
        Hostile::DeviceNode => {
            for p in &paths {
                let m = std::fs::symlink_metadata(store.join(p)).unwrap();
                let ft = m.file_type();
                if ft.is_block_device() || (ft.is_char_device() && m.rdev() != 0) {
                    panic!("device node `{p}` made it into the store:\n{out}");
                }
            }
            assert!(
                out.stderr.contains("mem") && out.stderr.contains("disk"),
                "skipped device nodes are named on stderr:\n{out}"
            );
        }
        _ => unreachable!(),
    }
}

// ---- resource limits and cleanup (issue 6) ----

/// `dir/big`: an 8 GiB sparse file made with `truncate` plus a few bytes, and `dir/sparse.tar`
/// holding it as GNU tar writes sparse files (`--sparse`: an 'S' entry with a sparse map).
fn sparse_tar(env: &crate::util::Env) -> std::path::PathBuf {
    use std::os::unix::fs::FileExt;
    let src = env.path("sparse-src");
    std::fs::create_dir_all(&src).unwrap();
    let f = std::fs::File::create(src.join("big")).unwrap();
    f.set_len(8 << 30).unwrap();
    f.write_all_at(b"HEAD", 0).unwrap();
    f.write_all_at(b"MIDDLE", 3_000_000_000).unwrap();
    f.write_all_at(b"TAIL", (8 << 30) - 4).unwrap();
    drop(f);
    let tar = env.path("sparse.tar");
    let st = std::process::Command::new("tar")
        .args(["--sparse", "--format=gnu", "-C"])
        .arg(&src)
        .arg("-cf")
        .arg(&tar)
        .arg("big")
        .status()
        .unwrap();
    assert!(st.success(), "GNU tar --sparse");
    std::fs::remove_dir_all(&src).unwrap();
    env.give_to_user(&tar);
    tar
}

/// The unpacked `big` of every layer in the store: its size and allocated bytes, after
/// checking its contents at the written offsets.
fn unpacked_big(env: &crate::util::Env) -> Vec<(u64, u64)> {
    use std::os::unix::fs::FileExt;
    let mut out = Vec::new();
    for l in std::fs::read_dir(env.store().join("layers")).unwrap() {
        let p = l.unwrap().path().join("diff/big");
        let f = std::fs::File::open(&p).unwrap();
        for (off, want) in [
            (0u64, &b"HEAD"[..]),
            (3_000_000_000, b"MIDDLE"),
            ((8 << 30) - 4, b"TAIL"),
        ] {
            let mut got = vec![0u8; want.len()];
            f.read_exact_at(&mut got, off).unwrap();
            assert_eq!(got, want, "`{}` at {off}", p.display());
        }
        let mut zeros = vec![1u8; 1 << 16];
        f.read_exact_at(&mut zeros, 1 << 30).unwrap();
        assert!(zeros.iter().all(|b| *b == 0));
        let md = f.metadata().unwrap();
        out.push((md.len(), md.blocks() * 512));
    }
    out
}

fn tmp_entries(env: &crate::util::Env) -> Vec<String> {
    crate::util::tree(&env.store().join("tmp"))
}

#[test]
fn a_sparse_layer_keeps_its_holes_on_import_and_load() {
    for_each_user("sparse_layer", |env| {
        let tar = sparse_tar(env);
        assert!(std::fs::metadata(&tar).unwrap().len() < 1 << 20);
        env.rbox()
            .arg("import")
            .arg(&tar)
            .arg("sparse")
            .output()
            .success();
        let files = unpacked_big(env);
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].0, 8 << 30);
        assert!(files[0].1 < 1 << 20, "{} bytes allocated", files[0].1);

        // The same layer through a docker-archive: save, remove, load.
        let ar = env.path("sparse-archive.tar");
        env.rbox()
            .args(["save", "-o"])
            .arg(&ar)
            .arg("sparse")
            .output()
            .success();
        env.rbox().args(["rmi", "sparse"]).output().success();
        assert_eq!(
            std::fs::read_dir(env.store().join("layers"))
                .unwrap()
                .count(),
            0
        );
        env.rbox().arg("load").arg("-i").arg(&ar).output().success();
        let files = unpacked_big(env);
        assert_eq!(files.len(), 1);
        assert!(files[0].1 < 1 << 20, "{} bytes allocated", files[0].1);
        assert_eq!(tmp_entries(env), Vec::<String>::new());
    });
}

#[test]
fn a_layer_over_the_size_limit_is_refused() {
    for_each_user("layer_limit", |env| {
        let tar = sparse_tar(env);
        let out = env
            .rbox()
            .env("RBOX_MAX_LAYER_SIZE", "1G")
            .arg("import")
            .arg(&tar)
            .arg("sparse")
            .output()
            .rbox_error();
        assert_eq!(
            out.stderr.trim_end(),
            format!(
                "Error: import `{}`: layer unpacks to more than 1 GiB (at `big`): raise the \
                 limit with RBOX_MAX_LAYER_SIZE (0 for none)",
                tar.display()
            )
        );
        assert_eq!(
            env.rbox().args(["images", "-q"]).output().success().text(),
            ""
        );
        assert_eq!(
            std::fs::read_dir(env.store().join("layers"))
                .unwrap()
                .count(),
            0
        );
        assert_eq!(tmp_entries(env), Vec::<String>::new());
        // A load names the layer.
        env.rbox()
            .env("RBOX_MAX_LAYER_SIZE", "0")
            .arg("import")
            .arg(&tar)
            .arg("sparse")
            .output()
            .success();
        let ar = env.path("sparse-archive.tar");
        env.rbox()
            .args(["save", "-o"])
            .arg(&ar)
            .arg("sparse")
            .output()
            .success();
        env.rbox().args(["rmi", "sparse"]).output().success();
        let out = env
            .rbox()
            .env("RBOX_MAX_LAYER_SIZE", "4g")
            .arg("load")
            .arg("-i")
            .arg(&ar)
            .output()
            .rbox_error();
        assert!(out.stderr.contains("layer sha256:"), "{out}");
        assert!(out.stderr.contains("unpacks to more than 4 GiB"), "{out}");
        assert_eq!(out.stderr.lines().count(), 1, "{out}");
        assert_eq!(
            env.rbox().args(["images", "-q"]).output().success().text(),
            ""
        );
        assert_eq!(tmp_entries(env), Vec::<String>::new());
        let out = env
            .rbox()
            .env("RBOX_MAX_LAYER_SIZE", "lots")
            .arg("import")
            .arg(&tar)
            .output()
            .rbox_error();
        assert!(
            out.stderr.contains("invalid RBOX_MAX_LAYER_SIZE `lots`"),
            "{out}"
        );
    });
}

/// A layer tar of `depth` nested directories; with `fail`, a last entry the unpacker refuses
/// (a hard link to a file that is not in the layer), after the whole tree is on disk.
fn deep_tar(env: &crate::util::Env, depth: usize, fail: bool) -> std::path::PathBuf {
    let mut b = tar::Builder::new(Vec::new());
    let mut path = String::new();
    for _ in 0..depth {
        path.push_str("d/");
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o555);
        h.set_size(0);
        b.append_data(&mut h, &path, std::io::empty()).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o444);
        h.set_size(1);
        b.append_data(&mut h, format!("{path}f"), &b"x"[..])
            .unwrap();
    }
    if fail {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Link);
        h.set_mode(0o644);
        h.set_size(0);
        b.append_link(&mut h, "bad", "no/such/file").unwrap();
    }
    let name = format!("deep-{depth}-{fail}.tar");
    env.write(&name, b.into_inner().unwrap())
}

/// rbox under `ulimit -n 256`.
fn rbox_low_fds(env: &crate::util::Env, args: &[&std::ffi::OsStr]) -> crate::util::Output {
    let mut c = env.cmd("sh");
    c.args([
        "-c",
        "ulimit -n 256 && exec \"$0\" \"$@\"",
        crate::util::RBOX,
    ])
    .arg("--root")
    .arg(env.store())
    .arg("--runroot")
    .arg(env.runroot())
    .args(args);
    c.output()
}

#[test]
fn a_deep_tree_is_unpacked_and_removed_with_few_fds() {
    use std::ffi::OsStr;
    for_each_user("deep_tree", |env| {
        let depth = 2000;
        let bad = deep_tar(env, depth, true);
        let out = rbox_low_fds(env, &[OsStr::new("import"), bad.as_os_str()]).rbox_error();
        assert!(
            out.stderr.contains("hard link target is not in the layer"),
            "{out}"
        );
        assert_eq!(
            tmp_entries(env),
            Vec::<String>::new(),
            "a failed import left its temp dir"
        );
        assert_eq!(
            std::fs::read_dir(env.store().join("layers"))
                .unwrap()
                .count(),
            0
        );

        let good = deep_tar(env, depth, false);
        rbox_low_fds(
            env,
            &[OsStr::new("import"), good.as_os_str(), OsStr::new("deep")],
        )
        .success();
        assert_eq!(
            std::fs::read_dir(env.store().join("layers"))
                .unwrap()
                .count(),
            1
        );
        rbox_low_fds(env, &[OsStr::new("rmi"), OsStr::new("deep")]).success();
        assert_eq!(
            std::fs::read_dir(env.store().join("layers"))
                .unwrap()
                .count(),
            0
        );
        assert_eq!(tmp_entries(env), Vec::<String>::new());
    });
}

#[test]
fn a_stale_tmp_entry_of_a_dead_process_goes_with_the_next_write() {
    for_each_user("stale_tmp", |env| {
        env.rbox().args(["images"]).output().success();
        // What a killed rbox leaves: `<pid>.<start>.<n>.<what>` of a process that is gone
        // (the pid is above any pid_max), holding a tree with read-only directories.
        let stale = env.store().join("tmp/4194999.12345.0.layer");
        std::fs::create_dir_all(stale.join("diff/usr/lib")).unwrap();
        std::fs::write(stale.join("diff/usr/lib/libc.so"), b"x").unwrap();
        env.give_to_user(&stale);
        for d in ["diff/usr/lib", "diff/usr", "diff"] {
            std::fs::set_permissions(stale.join(d), std::fs::Permissions::from_mode(0o555))
                .unwrap();
        }
        // Reading leaves it; the next write sweeps it.
        env.rbox().args(["images"]).output().success();
        assert!(stale.exists());
        env.import_busybox("busybox");
        assert!(!stale.exists(), "the stale temp entry is still there");
        assert_eq!(tmp_entries(env), Vec::<String>::new());
    });
}

#[test]
fn a_file_that_is_no_archive_is_named_not_printed() {
    for_each_user("not_an_archive", |env| {
        let out = env
            .rbox()
            .args(["load", "-i", "/etc/passwd"])
            .output()
            .rbox_error();
        assert_eq!(
            out.stderr.trim_end(),
            "Error: load `/etc/passwd`: not a docker-archive or oci-archive: expected a tar \
             (plain, gzip or zstd compressed) holding manifest.json or index.json"
        );
        let passwd = std::fs::read("/etc/passwd").unwrap();
        let out = env
            .rbox()
            .arg("load")
            .stdin(passwd.clone())
            .output()
            .rbox_error();
        assert!(!out.stderr.contains("root:"), "{out}");
        assert!(out.stderr.contains("expected a tar"), "{out}");
        let out = env
            .rbox()
            .args(["import", "/etc/passwd"])
            .output()
            .rbox_error();
        assert_eq!(
            out.stderr.trim_end(),
            "Error: import `/etc/passwd`: invalid layer: not a tar archive (plain, gzip or zstd \
             compressed)"
        );
        assert_eq!(tmp_entries(env), Vec::<String>::new());
    });
}

#[test]
fn oversized_json_in_an_archive_is_refused() {
    for_each_user("oversized_json", |env| {
        // Valid JSON of 5 MiB, over the 4 MiB allowed for manifest.json.
        let mut big = b"[".to_vec();
        big.resize(5 << 20, b' ');
        big.push(b']');
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(big.len() as u64);
        b.append_data(&mut h, "manifest.json", &big[..]).unwrap();
        let ar = env.write("big.tar", b.into_inner().unwrap());
        let out = env
            .rbox()
            .arg("load")
            .arg("-i")
            .arg(&ar)
            .output()
            .rbox_error();
        assert_eq!(
            out.stderr.trim_end(),
            format!(
                "Error: load `{}`: `manifest.json` in the archive is too large: 5242881 bytes, \
                 at most 4 MiB allowed",
                ar.display()
            )
        );
        assert_eq!(tmp_entries(env), Vec::<String>::new());
    });
}
