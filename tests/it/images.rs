//! The image store seen from the command line: `import`, `load` (docker-archive and
//! oci-archive; gzip, zstd and plain layers), ownership folding and whiteouts, concurrent loads,
//! `images`/`ps`/`inspect` with `--format`, `tag`, and `rmi` refusing an image in use.

use serde_json::Value;

use crate::fixtures::{self, sha256_hex};
use crate::util::{for_each_user, Env, Who};

fn image_names(env: &Env) -> Vec<String> {
    let out = env
        .rbox()
        .args(["images", "--format", "{{.Repository}}:{{.Tag}}"])
        .output()
        .success();
    let mut v: Vec<String> = out.lines().into_iter().map(str::to_string).collect();
    v.sort();
    v
}

/// The config digest (the image id) of the helper image, computed from the fixture itself.
fn helper_image_id() -> String {
    let archive = std::fs::read(fixtures::helper_docker_archive()).unwrap();
    let mut a = tar::Archive::new(&archive[..]);
    for e in a.entries().unwrap() {
        let e = e.unwrap();
        let p = e.path().unwrap().display().to_string();
        if p.ends_with(".json") && p != "manifest.json" {
            return p.trim_end_matches(".json").to_string();
        }
    }
    panic!("no config in the helper archive");
}

#[test]
fn images_listing_and_formats() {
    for_each_user("images", |env| {
        env.import_busybox("busybox");
        env.load(&fixtures::helper_docker_archive()).success();
        assert_eq!(
            image_names(env),
            vec!["localhost/busybox:latest", "localhost/helper:latest"]
        );

        let out = env.rbox().arg("images").output().success();
        let header: Vec<&str> = out.lines()[0].split_whitespace().collect();
        assert_eq!(
            header,
            ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"],
            "{out}"
        );

        let id = helper_image_id();
        let out = env.rbox().args(["images", "-q"]).output().success();
        let ids = out.lines();
        assert_eq!(ids.len(), 2, "{out}");
        assert!(
            ids.iter()
                .all(|i| i.len() == 12 && i.chars().all(|c| c.is_ascii_hexdigit())),
            "{out}"
        );
        assert!(
            ids.contains(&&id[..12]),
            "the image id is the config digest {id}:\n{out}"
        );

        let out = env
            .rbox()
            .args(["image", "inspect", "--format", "{{.Id}}", "helper"])
            .output()
            .success();
        assert_eq!(out.text(), id);
        let out = env
            .rbox()
            .args(["image", "inspect", "helper"])
            .output()
            .success();
        let v: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}:\n{out}"));
        let entry = &v[0];
        assert_eq!(entry["Id"].as_str(), Some(id.as_str()), "{out}");
        assert_eq!(
            entry["Config"]["Entrypoint"][0].as_str(),
            Some("/helper"),
            "{out}"
        );
        assert_eq!(
            entry["RootFS"]["Layers"].as_array().map(Vec::len),
            Some(2),
            "{out}"
        );

        let out = env
            .rbox()
            .args(["images", "--format", "json"])
            .output()
            .success();
        let v: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}:\n{out}"));
        assert_eq!(v.as_array().map(Vec::len), Some(2), "{out}");

        // Short names, full names and id prefixes all find the image.
        for name in [
            "helper",
            "helper:latest",
            "localhost/helper:latest",
            &id[..12],
            id.as_str(),
        ] {
            env.rbox()
                .args(["image", "inspect", "--format", "{{.Id}}", name])
                .output()
                .success();
        }
        env.rbox()
            .args(["image", "inspect", "no-such-image"])
            .output()
            .rbox_error();

        env.rbox()
            .args(["tag", "helper", "localhost/helper:v2", "other/name:1"])
            .output()
            .success();
        assert_eq!(
            image_names(env),
            vec![
                "localhost/busybox:latest",
                "localhost/helper:latest",
                "localhost/helper:v2",
                "localhost/other/name:1"
            ]
        );
        let out = env
            .rbox()
            .args(["run", "--rm", "helper:v2"])
            .output()
            .success();
        assert_eq!(out.text(), "from-cmd");
        // rmi of one of several names only untags.
        env.rbox()
            .args(["rmi", "localhost/helper:v2", "other/name:1"])
            .output()
            .success();
        assert_eq!(
            image_names(env),
            vec!["localhost/busybox:latest", "localhost/helper:latest"]
        );

        let out = env.rbox().args(["history", "helper"]).output().success();
        assert!(out.stdout.contains("rbox tests: layer 1"), "{out}");
    });
}

#[test]
fn ps_and_inspect_containers() {
    for_each_user("ps", |env| {
        env.import_busybox("busybox");
        let out = env
            .rbox()
            .args(["create", "--name", "c1", "busybox", "true"])
            .output()
            .success();
        let id = out.text();
        assert!(
            id.len() >= 12 && id.chars().all(|c| c.is_ascii_hexdigit()),
            "create prints the id:\n{out}"
        );

        assert_eq!(
            env.rbox().args(["ps", "-q"]).output().success().text(),
            "",
            "c1 is not running"
        );
        let out = env
            .rbox()
            .args(["ps", "-a", "--format", "{{.ID}} {{.Names}} {{.Image}}"])
            .output()
            .success();
        let line = out.text();
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f.len(), 3, "{out}");
        assert!(id.starts_with(f[0]), "{out}");
        assert_eq!(f[1], "c1");
        assert!(f[2].contains("busybox"), "{out}");
        let out = env.rbox().args(["ps", "-a"]).output().success();
        assert!(out.lines()[0].starts_with("CONTAINER ID"), "{out}");

        let out = env
            .rbox()
            .args(["inspect", "--format", "{{.State.Running}}", "c1"])
            .output()
            .success();
        assert_eq!(out.text(), "false");
        let out = env
            .rbox()
            .args(["inspect", "--format", "{{.Name}}", "c1"])
            .output()
            .success();
        assert_eq!(out.text().trim_start_matches('/'), "c1");
        let out = env.rbox().args(["inspect", "c1"]).output().success();
        let v: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}:\n{out}"));
        assert_eq!(v[0]["Id"].as_str(), Some(id.as_str()), "{out}");
        let out = env
            .rbox()
            .args(["inspect", "--format", "{{json .Config}}", "c1"])
            .output()
            .success();
        let _: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}:\n{out}"));

        // start -a runs a created container attached and exits with its status.
        env.rbox().args(["start", "-a", "c1"]).output().success();
        let out = env
            .rbox()
            .args(["ps", "-a", "--format", "{{.Status}}"])
            .output()
            .success();
        assert!(out.text().starts_with("Exited (0)"), "{out}");
        env.rbox().args(["rm", "c1"]).output().success();
        env.rbox().args(["inspect", "c1"]).output().rbox_error();
        // exit 1 for an unknown container, as podman-rm(1)
        let out = env.rbox().args(["rm", "c1"]).output().code_is(1);
        out.assert_clean_error();
        // A name can be reused once free, never twice at once.
        env.rbox()
            .args(["create", "--name", "c1", "busybox", "true"])
            .output()
            .success();
        env.rbox()
            .args(["create", "--name", "c1", "busybox", "true"])
            .output()
            .rbox_error();
        env.rbox().args(["rm", "-a"]).output().success();
        assert_eq!(
            env.rbox()
                .args(["ps", "-a", "-q"])
                .output()
                .success()
                .text(),
            ""
        );
    });
}

#[test]
fn rmi_refuses_an_image_in_use() {
    for_each_user("rmi", |env| {
        env.import_busybox("busybox");
        env.rbox()
            .args(["create", "--name", "user1", "busybox", "true"])
            .output()
            .success();
        let out = env.rbox().args(["rmi", "busybox"]).output();
        assert_ne!(out.code, 0, "rmi removed an image a container uses:\n{out}");
        out.assert_clean_error();
        assert!(
            out.stderr.contains("user1") || out.stderr.contains("container"),
            "{out}"
        );
        assert_eq!(image_names(env), vec!["localhost/busybox:latest"]);
        // The container still runs from it.
        env.rbox().args(["start", "-a", "user1"]).output().success();
        env.rbox().args(["rm", "user1"]).output().success();
        env.rbox().args(["rmi", "busybox"]).output().success();
        assert_eq!(image_names(env), Vec::<String>::new());
        // exit 1 for an unknown image, as podman-rmi(1)
        let out = env.rbox().args(["rmi", "busybox"]).output().code_is(1);
        out.assert_clean_error();
        // Force removes the image and the containers using it.
        env.import_busybox("busybox");
        env.rbox()
            .args(["create", "--name", "user2", "busybox", "true"])
            .output()
            .success();
        env.rbox().args(["rmi", "-f", "busybox"]).output().success();
        assert_eq!(image_names(env), Vec::<String>::new());
    });
}

#[test]
fn rmi_during_run_is_refused() {
    for_each_user("rmi_during_run", |env| {
        env.import_busybox("busybox");
        let mut r = env
            .rbox()
            .args([
                "run",
                "--rm",
                "-i",
                "busybox",
                "sh",
                "-c",
                "echo ready; read x; echo got $x",
            ])
            .spawn();
        assert_eq!(r.read_line().trim_end(), "ready");
        // The image of a running container cannot be removed, and the attempt does not wait
        // for the container.
        let out = env.rbox().args(["rmi", "busybox"]).output();
        assert_ne!(
            out.code, 0,
            "rmi removed the image of a running container:\n{out}"
        );
        out.assert_clean_error();
        r.write_stdin(b"go\n");
        let out = r.wait().success();
        assert_eq!(out.text(), "got go");
        // Once the --rm container is gone, the image can go.
        env.rbox().args(["rmi", "busybox"]).output().success();
    });
}

#[test]
fn load_oci_archive_with_gzip_layers() {
    for_each_user("load_oci", |env| {
        let out = env.load(&fixtures::helper_oci_archive()).success();
        assert!(
            out.stdout.contains("helper-oci"),
            "load names what it loaded:\n{out}"
        );
        let out = env
            .rbox()
            .args(["run", "--rm", "helper-oci"])
            .output()
            .success();
        assert_eq!(out.text(), "from-cmd");
    });
}

/// What `stat` must show for each file of the multi-id image, by identity.
fn expected_owners(who: Who, many_ids: bool) -> Vec<(&'static str, String)> {
    let high = match who {
        // Real root maps every id: nothing folds.
        Who::Root => fixtures::HIGH_ID.to_string(),
        _ => "0".to_string(),
    };
    let id = |n: &str| {
        if many_ids {
            n.to_string()
        } else {
            "0".to_string()
        }
    };
    vec![
        ("/data/root-file", "0:0".to_string()),
        (
            "/data/tester-file",
            format!("{}:{}", id("1000"), id("1000")),
        ),
        (
            "/data/nobody-file",
            format!("{}:{}", id("65534"), id("65534")),
        ),
        ("/data/high-file", format!("{high}:{high}")),
        ("/data/tester-dir", format!("{}:{}", id("1000"), id("2000"))),
        ("/data/new-file", format!("{}:{}", id("1000"), id("1000"))),
    ]
}

fn check_multiid(env: &Env, image: &str) {
    check_multiid_with(env, image, "overlay");
}

/// The same checks with the root filesystem made by `driver` (overlay, or vfs: the copy
/// driver used where overlayfs cannot be mounted).
pub(crate) fn check_multiid_with(env: &Env, image: &str, driver: &str) {
    let many = env.user.has_many_ids();
    // under a single-id map the FUSE overlay shows the image's owners, as real root sees
    // them (its owner supervisor, see owners.rs)
    let who = if driver == "fuse-overlay" && !many {
        Who::Root
    } else {
        env.user.who
    };
    let mut args = vec![
        "run",
        "--storage-driver",
        driver,
        "--rm",
        image,
        "stat",
        "-c",
        "%n %u:%g",
    ];
    let expected = expected_owners(who, many || who == Who::Root);
    args.extend(expected.iter().map(|(p, _)| *p));
    let out = env.rbox().args(&args).output().success();
    let got: Vec<String> = out.lines().into_iter().map(str::to_string).collect();
    let want: Vec<String> = expected.iter().map(|(p, o)| format!("{p} {o}")).collect();
    assert_eq!(
        got, want,
        "ownership through the id map ({}):\n{out}",
        env.user
    );

    let run = |cmd: &[&str]| {
        let mut c = env.rbox();
        c.args(["run", "--storage-driver", driver, "--rm", image])
            .args(cmd);
        c.output().success().text()
    };
    // Modes, setuid bit included; hard links share an inode; symlinks stay symlinks.
    assert_eq!(
        run(&["stat", "-c", "%a", "/data/setuid-file", "/data/tester-file"]),
        "4755\n640"
    );
    assert_eq!(
        run(&[
            "sh",
            "-c",
            "[ /data/hardlink -ef /data/root-file ] && stat -c %h /data/root-file"
        ]),
        "2"
    );
    assert_eq!(run(&["readlink", "/data/symlink"]), "root-file");
    assert_eq!(run(&["cat", "/data/symlink"]), "root");
    assert_eq!(
        run(&["stat", "-c", "%Y", "/data/root-file"]),
        "1700000000",
        "mtimes are kept"
    );
    // The whiteout removes a lower file; the opaque dir hides the lower contents.
    assert_eq!(run(&["ls", "-a", "/data/opq"]), ".\n..\nc");
    assert!(
        !run(&["ls", "/data"]).lines().any(|l| l == "gone"),
        "whiteout ignored"
    );
    let out = env
        .rbox()
        .args([
            "run",
            "--storage-driver",
            driver,
            "--rm",
            image,
            "ls",
            "/data/.wh.gone",
        ])
        .output();
    assert_ne!(out.code, 0, "the whiteout file itself is visible:\n{out}");
    // Deleting and recreating lower files works in the container (runtime whiteouts).
    assert_eq!(
        run(&[
            "sh",
            "-c",
            "rm /data/root-file && ls /data/root-file 2>&1 || echo removed"
        ])
        .lines()
        .last(),
        Some("removed")
    );
    if many {
        // chown to a mapped id works inside.
        assert_eq!(
            run(&[
                "sh",
                "-c",
                "chown 1000:1000 /data/root-file && stat -c %u /data/root-file"
            ]),
            "1000"
        );
    }
}

#[test]
fn multi_layer_ownership_and_whiteouts_oci() {
    for_each_user("multiid_oci", |env| {
        env.load(&fixtures::multiid_oci_archive()).success();
        check_multiid(env, "multiid");
    });
}

#[test]
fn multi_layer_through_the_copy_driver() {
    for_each_user("multiid_vfs", |env| {
        env.load(&fixtures::multiid_oci_archive()).success();
        check_multiid_with(env, "multiid", "vfs");
        // The copy is the container's own: a change does not reach the next container.
        env.rbox()
            .args(["run", "--storage-driver", "vfs", "--name", "c1", "multiid"])
            .args(["sh", "-c", "echo changed > /data/root-file"])
            .output()
            .success();
        let out = env
            .rbox()
            .args(["run", "--storage-driver", "vfs", "--rm", "multiid"])
            .args(["cat", "/data/root-file"])
            .output()
            .success();
        assert_eq!(out.text(), "root");
        env.rbox().args(["rm", "c1"]).output().success();
    });
}

#[test]
fn multi_layer_ownership_and_whiteouts_docker() {
    for_each_user("multiid_docker", |env| {
        env.load(&fixtures::multiid_docker_archive()).success();
        check_multiid(env, "multiid-docker");
    });
}

#[test]
fn concurrent_loads_of_one_image() {
    for_each_user("concurrent_load", |env| {
        let archive = env.copy_in(&fixtures::helper_docker_archive(), "helper.tar");
        let outs: Vec<_> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..3)
                .map(|_| s.spawn(|| env.rbox().arg("load").arg("-i").arg(&archive).output()))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for o in outs {
            o.success();
        }
        assert_eq!(image_names(env), vec!["localhost/helper:latest"]);
        env.rbox()
            .args(["run", "--rm", "helper", "args", "ok"])
            .output()
            .success();
        // A second load of a present image is a no-op that succeeds.
        env.rbox()
            .arg("load")
            .arg("-i")
            .arg(&archive)
            .output()
            .success();
        assert_eq!(image_names(env), vec!["localhost/helper:latest"]);
    });
}

#[test]
fn import_from_stdin_and_gzip() {
    for_each_user("import_stdin", |env| {
        let raw = std::fs::read(fixtures::busybox_rootfs_tar()).unwrap();
        env.rbox()
            .args(["import", "-", "bb-stdin:1"])
            .stdin(raw.clone())
            .output()
            .success();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &raw).unwrap();
        let gz = env.write("busybox.tar.gz", gz.finish().unwrap());
        env.rbox()
            .arg("import")
            .arg(&gz)
            .arg("bb-gz")
            .output()
            .success();
        assert_eq!(
            image_names(env),
            vec!["localhost/bb-gz:latest", "localhost/bb-stdin:1"]
        );
        let out = env
            .rbox()
            .args(["run", "--rm", "bb-stdin:1", "echo", "ok"])
            .output()
            .success();
        assert_eq!(out.text(), "ok");
        // The same rootfs gives the same layer: one unpacked copy shared by both images.
        let a = env
            .rbox()
            .args([
                "image",
                "inspect",
                "--format",
                "{{json .RootFS.Layers}}",
                "bb-gz",
            ])
            .output()
            .success();
        let b = env
            .rbox()
            .args([
                "image",
                "inspect",
                "--format",
                "{{json .RootFS.Layers}}",
                "bb-stdin:1",
            ])
            .output()
            .success();
        assert_eq!(a.text(), b.text());
        assert!(
            a.text().contains(&sha256_hex(&raw)),
            "the diff id is the tar's digest:\n{a}"
        );
        // Garbage is refused cleanly.
        env.rbox()
            .args(["import", "-", "junk"])
            .stdin(b"not a tarball at all".to_vec())
            .output()
            .rbox_error();
    });
}

#[test]
fn save_then_load_round_trip() {
    for_each_user("save_load", |env| {
        env.load(&fixtures::helper_docker_archive()).success();
        for (format, file) in [
            ("docker-archive", "saved.docker.tar"),
            ("oci-archive", "saved.oci.tar"),
        ] {
            let out_path = env.path(file);
            env.rbox()
                .args(["save", "--format", format, "-o"])
                .arg(&out_path)
                .arg("helper")
                .output()
                .success();
            let other = Env::new(&format!("save_load_{format}"), &env.user);
            let p = other.copy_in(&out_path, file);
            other
                .rbox()
                .arg("load")
                .arg("-i")
                .arg(&p)
                .output()
                .success();
            let out = other
                .rbox()
                .args(["run", "--rm", "helper"])
                .output()
                .success();
            assert_eq!(out.text(), "from-cmd");
            let id = other
                .rbox()
                .args(["image", "inspect", "--format", "{{.Id}}", "helper"])
                .output()
                .success();
            assert_eq!(
                id.text(),
                helper_image_id(),
                "the image id survives a {format} round trip"
            );
        }
    });
}
