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
