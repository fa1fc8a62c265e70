//! A container's cgroup: as root, an OCI bundle's `linux.cgroupsPath` and `linux.resources`
//! and `rbox run --memory/--pids-limit` become a cgroup of the container's own whose files
//! hold the limits, gone after `delete`/`rm`; rootless on a host that delegates no cgroup v2
//! subtree (this machine kind), one warning and the container runs without them.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::ociruntime::{bundle, edit, oci, oci_detached, state};
use crate::util::{self, Who};

/// Whether the host is cgroup v2 only (else v1 or hybrid: limits live in the v1 hierarchies).
pub fn pure_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// The file `file` of the cgroup process `pid` is in for `controller`, as /proc/PID/cgroup
/// names it (v1: the controller's hierarchy, mounted at /sys/fs/cgroup/CONTROLLER).
pub fn cgroup_file(pid: i32, controller: &str, file: &str) -> PathBuf {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let path = text
        .lines()
        .find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, names, path) = (f.next()?, f.next()?, f.next()?);
            let ok = if pure_v2() {
                names.is_empty()
            } else {
                names.split(',').any(|n| n == controller)
            };
            ok.then(|| path.trim_start_matches('/').to_string())
        })
        .unwrap_or_else(|| panic!("no {controller} cgroup in /proc/{pid}/cgroup:\n{text}"));
    let base = if pure_v2() {
        PathBuf::from("/sys/fs/cgroup")
    } else {
        Path::new("/sys/fs/cgroup").join(controller)
    };
    base.join(path).join(file)
}

pub fn read(p: &Path) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("read `{}`: {e}", p.display()))
        .trim()
        .to_string()
}

/// The (memory limit, pids limit) files of the cgroup of `pid`.
fn limit_files(pid: i32) -> (PathBuf, PathBuf) {
    let mem = if pure_v2() {
        "memory.max"
    } else {
        "memory.limit_in_bytes"
    };
    (
        cgroup_file(pid, "memory", mem),
        cgroup_file(pid, "pids", "pids.max"),
    )
}

pub(crate) const PODMAN_V1_WARNING: &str =
    "Resource limits are not supported and ignored on cgroups V1 rootless systems";

#[test]
fn cgroups_bundle_resources_applied_and_removed_at_delete() {
    util::for_each_user("cgroups_bundle", |env| {
        let b = bundle(env, "b", &["sleep", "60"]);
        // an absolute path (from the hierarchies' roots) and a relative one (below rbox's
        // own cgroup), as the runtime spec reads them
        let abs = format!("/rbox-it-{}", util::unique());
        let mut seen = 0;
        for (i, path) in [abs.clone(), format!("rbox-it-rel/{}", util::unique())]
            .iter()
            .enumerate()
        {
            edit(env, &b, |c| {
                c["linux"]["cgroupsPath"] = json!(path);
                c["linux"]["resources"]["memory"] = json!({"limit": 64 << 20});
                c["linux"]["resources"]["pids"] = json!({"limit": 50});
            });
            let id = format!("c{i}");
            let (code, all) = oci_detached(env, &["create", "--bundle", b.to_str().unwrap(), &id]);
            assert_eq!(code, 0, "{all}");
            // the log file collects every create's output: this one's is what is new
            let log = all[seen..].to_string();
            seen = all.len();
            let pid = state(env, &id)["pid"].as_i64().unwrap() as i32;
            if env.user.who == Who::Root {
                let (mem, pids) = limit_files(pid);
                assert!(log.is_empty(), "{log}");
                assert!(
                    mem.to_string_lossy().contains(path.trim_start_matches('/')),
                    "{mem:?}"
                );
                assert_eq!(read(&mem), (64u64 << 20).to_string());
                assert_eq!(read(&pids), "50");
                oci(env, &["start", &id]).success();
                oci(env, &["kill", &id, "KILL"]).success();
                util::eventually("the container stops", || {
                    state(env, &id)["status"] == "stopped"
                });
                oci(env, &["delete", &id]).success();
                assert!(!mem.parent().unwrap().exists(), "{mem:?} left behind");
                assert!(!pids.parent().unwrap().exists(), "{pids:?} left behind");
            } else {
                // nothing is delegated here: Podman's words, once, and the container runs
                let warnings: Vec<&str> = log.lines().filter(|l| l.contains("esource")).collect();
                assert_eq!(warnings.len(), 1, "{log}");
                if !pure_v2() {
                    assert!(warnings[0].contains(PODMAN_V1_WARNING), "{log}");
                }
                let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
                assert!(!own.contains("rbox-it"), "{own}");
                oci(env, &["start", &id]).success();
                assert_eq!(state(env, &id)["status"], "running");
                oci(env, &["delete", "--force", &id]).success();
            }
        }
        if env.user.who == Who::Root {
            // the parent rbox made for the relative path goes too; nothing under the
            // absolute one is left
            let pids_root = if pure_v2() {
                "/sys/fs/cgroup"
            } else {
                "/sys/fs/cgroup/pids"
            };
            assert!(!Path::new(pids_root).join(&abs[1..]).exists());
        }
    });
}

#[test]
fn cgroups_run_memory_and_pids_limits() {
    util::for_each_user("cgroups_run", |env| {
        env.import_busybox("busybox");
        let out = env
            .rbox()
            .args(["run", "-d", "--name", "lim", "--network=none"])
            .args(["--memory", "64m", "--pids-limit", "50"])
            .args(["busybox", "sleep", "60"])
            .output()
            .success();
        let pid: i32 = env.inspect("lim", "{{.State.Pid}}").parse().unwrap();
        if env.user.who == Who::Root {
            let (mem, pids) = limit_files(pid);
            assert!(!out.stderr.contains("esource limits"), "{out}");
            assert_eq!(read(&mem), (64u64 << 20).to_string());
            assert_eq!(read(&pids), "50");
            // the container's own cgroup, not rbox's
            assert!(mem.to_string_lossy().contains("/rbox/"), "{mem:?}");
            env.rbox().args(["rm", "-f", "lim"]).output().success();
            assert!(!mem.parent().unwrap().exists(), "{mem:?} left behind");
            assert!(!pids.parent().unwrap().exists(), "{pids:?} left behind");
        } else {
            let warnings: Vec<&str> = out
                .stderr
                .lines()
                .filter(|l| l.contains("esource limits"))
                .collect();
            assert_eq!(warnings.len(), 1, "{out}");
            if !pure_v2() {
                assert!(warnings[0].contains(PODMAN_V1_WARNING), "{out}");
            }
            let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
            assert!(!own.contains("/rbox/"), "{own}");
            assert_eq!(env.inspect("lim", "{{.State.Status}}"), "running");
            env.rbox().args(["rm", "-f", "lim"]).output().success();
        }
    });
}

/// A block I/O weight the host's v1 blkio hierarchy has no file for (no weighing scheduler:
/// this machine kind) is discarded at create with Podman's warning, and the container's other
/// limits still apply; where the file exists, the weight is written.
#[test]
fn cgroups_missing_blkio_weight_is_discarded_not_the_other_limits() {
    util::for_each_user("cgroups_weight", |env| {
        if env.user.who != Who::Root || pure_v2() {
            return;
        }
        env.import_busybox("busybox");
        let out = env
            .rbox()
            .args(["run", "-d", "--name", "w", "--network=none"])
            .args(["--memory", "64m", "--blkio-weight", "300"])
            .args(["busybox", "sleep", "60"])
            .output()
            .success();
        let pid: i32 = env.inspect("w", "{{.State.Pid}}").parse().unwrap();
        let (mem, _) = limit_files(pid);
        assert_eq!(read(&mem), (64u64 << 20).to_string(), "{out}");
        let weight = cgroup_file(pid, "blkio", "blkio.weight");
        let discarded = "Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded.";
        if Path::new("/sys/fs/cgroup/blkio/blkio.weight").exists() {
            assert!(!out.stderr.contains(discarded), "{out}");
            assert_eq!(read(&weight), "300");
            assert_eq!(env.inspect("w", "{{.HostConfig.BlkioWeight}}"), "300");
        } else {
            assert!(out.stderr.contains(discarded), "{out}");
            assert!(!out.stderr.contains("esource limits"), "{out}");
            assert_eq!(env.inspect("w", "{{.HostConfig.BlkioWeight}}"), "0");
        }
        env.rbox().args(["rm", "-f", "-t0", "w"]).output().success();
    });
}

/// `--oom-kill-disable`: as root in the container's memory cgroup (`memory.oom_control` on
/// v1, no group kill on v2); rootless without delegation Podman's one warning, and the run
/// goes on. Inspect shows it.
#[test]
fn cgroups_oom_kill_disable() {
    util::for_each_user("cgroups_oom", |env| {
        env.import_busybox("busybox");
        let out = env
            .rbox()
            .args(["run", "-d", "--name", "o", "--network=none"])
            .args(["--memory", "64m", "--oom-kill-disable"])
            .args(["busybox", "sleep", "60"])
            .output()
            .success();
        assert_eq!(env.inspect("o", "{{.HostConfig.OomKillDisable}}"), "true");
        let pid: i32 = env.inspect("o", "{{.State.Pid}}").parse().unwrap();
        if env.user.who == Who::Root {
            if pure_v2() {
                assert_eq!(read(&cgroup_file(pid, "memory", "memory.oom.group")), "0");
            } else {
                let f = cgroup_file(pid, "memory", "memory.oom_control");
                assert!(read(&f).contains("oom_kill_disable 1"), "{out}");
            }
        } else if !pure_v2() {
            assert!(out.stderr.contains(PODMAN_V1_WARNING), "{out}");
        }
        assert_eq!(env.inspect("o", "{{.State.Status}}"), "running");
        env.rbox().args(["rm", "-f", "-t0", "o"]).output().success();
    });
}

/// `rbox update`: new limits recorded for any container (inspect, the next start), applied at
/// once to a running one as root (one started without limits gets a cgroup, its processes
/// moved in, removed with it); rootless on cgroup v1 refused in one line, the record left as
/// it was. It prints the id, as Podman.
#[test]
fn cgroups_update_changes_a_containers_limits() {
    util::for_each_user("cgroups_update", |env| {
        env.import_busybox("busybox");
        let id = env
            .rbox()
            .args([
                "create",
                "--name",
                "c",
                "--network=none",
                "busybox",
                "sleep",
                "60",
            ])
            .output()
            .success()
            .text();
        let out = env
            .rbox()
            .args(["update", "--memory", "64m", "--pids-limit", "30", "c"])
            .output()
            .success();
        assert_eq!(out.text(), id);
        let limits = |n: &str| env.inspect(n, "{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}}");
        assert_eq!(limits("c"), format!("{} 30", 64u64 << 20));
        // --cpus and --cpu-quota are one limit: the later spelling replaces the other
        env.rbox()
            .args(["container", "update", "--cpus", "1.5", "c"])
            .output()
            .success();
        env.rbox()
            .args(["update", "--cpu-quota", "50000", "c"])
            .output()
            .success();
        assert_eq!(
            env.inspect("c", "{{.HostConfig.NanoCpus}} {{.HostConfig.CpuQuota}}"),
            "0 50000"
        );
        let bad = env
            .rbox()
            .args(["update", "--memory", "x", "c"])
            .output()
            .rbox_error();
        assert!(bad.stderr.contains("invalid size: 'x'"), "{bad}");
        env.rbox()
            .args(["update", "-m", "1g", "nosuch"])
            .output()
            .rbox_error();
        assert_eq!(limits("c"), format!("{} 30", 64u64 << 20));

        env.rbox()
            .args([
                "run",
                "-d",
                "--name",
                "r",
                "--network=none",
                "busybox",
                "sleep",
                "60",
            ])
            .output()
            .success();
        let pid: i32 = env.inspect("r", "{{.State.Pid}}").parse().unwrap();
        let update = |m: &str| env.rbox().args(["update", "--memory", m, "r"]).output();
        if env.user.who == Who::Root && !pure_v2() {
            update("64m").success();
            let (mem, _) = limit_files(pid);
            assert!(mem.to_string_lossy().contains("/rbox/"), "{mem:?}");
            assert_eq!(read(&mem), (64u64 << 20).to_string());
            update("128m").success();
            assert_eq!(read(&mem), (128u64 << 20).to_string());
            assert_eq!(
                env.inspect("r", "{{.HostConfig.Memory}}"),
                (128u64 << 20).to_string()
            );
            env.rbox().args(["rm", "-f", "-t0", "r"]).output().success();
            assert!(!mem.parent().unwrap().exists(), "{mem:?} left behind");
            // recorded limits apply at start
            env.rbox().args(["start", "c"]).output().success();
            let pid: i32 = env.inspect("c", "{{.State.Pid}}").parse().unwrap();
            let (mem, pids) = limit_files(pid);
            assert_eq!(read(&mem), (64u64 << 20).to_string());
            assert_eq!(read(&pids), "30");
        } else if !pure_v2() {
            let out = update("64m").rbox_error();
            assert!(
                out.stderr
                    .contains("Resource limits are not supported on cgroups V1 rootless systems"),
                "{out}"
            );
            assert_eq!(env.inspect("r", "{{.HostConfig.Memory}}"), "0");
            env.rbox().args(["rm", "-f", "-t0", "r"]).output().success();
        } else {
            env.rbox().args(["rm", "-f", "-t0", "r"]).output().success();
        }
        env.rbox().args(["rm", "-f", "-t0", "c"]).output().success();
    });
}

/// `rbox update --restart` (Docker's and Podman 5's): the policy recorded, and followed by
/// the monitor of the running container at its command's next exit; refused for a `--rm`
/// container in Podman's words.
#[test]
fn update_restart_policy_reaches_the_running_monitor() {
    util::for_each_user("update_restart", |env| {
        env.import_busybox("busybox");
        env.rbox()
            .args(["run", "-d", "--name", "p", "--network=none", "busybox"])
            .args(["sh", "-c", "sleep 2; exit 3"])
            .output()
            .success();
        let out = env
            .rbox()
            .args(["update", "--restart=on-failure:2", "p"])
            .output()
            .success();
        assert_eq!(out.text(), env.inspect("p", "{{.Id}}"));
        assert_eq!(
            env.inspect(
                "p",
                "{{.HostConfig.RestartPolicy.Name}} {{.HostConfig.RestartPolicy.MaximumRetryCount}}"
            ),
            "on-failure 2"
        );
        util::eventually("two restarts, then exited", || {
            env.inspect("p", "{{.RestartCount}} {{.State.Status}}") == "2 exited"
        });
        assert_eq!(env.inspect("p", "{{.State.ExitCode}}"), "3");
        env.rbox().args(["rm", "-f", "p"]).output().success();
        env.rbox()
            .args([
                "run",
                "-d",
                "--rm",
                "--name",
                "q",
                "--network=none",
                "busybox",
                "sleep",
                "60",
            ])
            .output()
            .success();
        let bad = env
            .rbox()
            .args(["update", "--restart=always", "q"])
            .output()
            .rbox_error();
        assert!(
            bad.stderr
                .contains("the --rm option conflicts with --restart"),
            "{bad}"
        );
        env.rbox().args(["rm", "-f", "-t0", "q"]).output().success();
    });
}

/// A deny-all device rule (every `runc spec` bundle has one) leaves the spec's own device
/// nodes allowed, so root can make and list them (a FIFO is no device to the cgroup), and
/// lists them after the spec's rules; rootless, the rules are not applied and the container
/// runs.
#[test]
fn cgroups_device_rules_keep_the_spec_devices() {
    util::for_each_user("cgroups_devices", |env| {
        let b = bundle(
            env,
            "b",
            &["sh", "-c", "ls -ln /dev/test1 /dev/test3 | cut -c1-1"],
        );
        let path = format!("/rbox-it-dev-{}", util::unique());
        edit(env, &b, |c| {
            c["linux"]["cgroupsPath"] = json!(path);
            c["linux"]["resources"]["devices"] = json!([
                {"allow": false, "access": "rwm"},
                {"allow": true, "type": "c", "major": 1, "minor": 11, "access": "r"}
            ]);
            c["linux"]["devices"] = json!([
                {"path": "/dev/test1", "type": "c", "major": 10, "minor": 666, "fileMode": 0o640},
                {"path": "/dev/test3", "type": "p", "major": 0, "minor": 0, "fileMode": 0o620}
            ]);
            if env.user.who != Who::Root {
                // only root may make a device node
                c["linux"]["devices"].as_array_mut().unwrap().remove(0);
                c["process"]["args"] = json!(["sh", "-c", "ls -ln /dev/test3 | cut -c1-1"]);
            }
        });
        let (code, log) = oci_detached(env, &["create", "--bundle", b.to_str().unwrap(), "d"]);
        assert_eq!(code, 0, "{log}");
        let pid = state(env, "d")["pid"].as_i64().unwrap() as i32;
        if env.user.who == Who::Root && !pure_v2() {
            let list = read(&cgroup_file(pid, "devices", "devices.list"));
            let lines: Vec<&str> = list.lines().collect();
            // the spec's rule first, then its own device, then the default nodes
            assert_eq!(lines[..2], ["c 1:11 r", "c 10:666 rwm"], "{list}");
        }
        oci(env, &["start", "d"]).success();
        util::eventually("the container stops", || {
            state(env, "d")["status"] == "stopped"
        });
        oci(env, &["delete", "d"]).success();
        let out = oci(env, &["run", "--bundle", b.to_str().unwrap(), "d2"]).success();
        let want = if env.user.who == Who::Root {
            "c\np"
        } else {
            "p"
        };
        assert_eq!(out.text(), want, "{out}");
    });
}

/// `rbox oci update --resources`: new limits in the running container's cgroup (a memory
/// limit above the old memory+swap limit too); rootless, the warning and no error.
#[test]
fn cgroups_oci_update_changes_the_limits() {
    util::for_each_user("cgroups_update", |env| {
        let b = bundle(env, "b", &["sleep", "60"]);
        let path = format!("/rbox-it-upd-{}", util::unique());
        edit(env, &b, |c| {
            c["linux"]["cgroupsPath"] = json!(path);
            c["linux"]["resources"]["memory"] = json!({"limit": 64 << 20, "swap": 64 << 20});
            c["linux"]["resources"]["pids"] = json!({"limit": 50});
        });
        let (code, log) = oci_detached(env, &["create", "--bundle", b.to_str().unwrap(), "u"]);
        assert_eq!(code, 0, "{log}");
        oci(env, &["start", "u"]).success();
        let res = env.write(
            "res.json",
            r#"{"memory": {"limit": 134217728, "swap": 268435456}, "pids": {"limit": 70}}"#,
        );
        let out = oci(env, &["update", "--resources", res.to_str().unwrap(), "u"]).success();
        if env.user.who == Who::Root {
            let pid = state(env, "u")["pid"].as_i64().unwrap() as i32;
            let (mem, pids) = limit_files(pid);
            assert_eq!(read(&mem), "134217728");
            assert_eq!(read(&pids), "70");
            if !pure_v2() {
                let memsw = mem.with_file_name("memory.memsw.limit_in_bytes");
                assert_eq!(read(&memsw), "268435456");
            }
        } else {
            assert!(out.stderr.contains("esource limits"), "{out}");
        }
        oci(env, &["delete", "--force", "u"]).success();
        let gone = oci(env, &["update", "--resources", res.to_str().unwrap(), "u"]);
        assert_eq!(gone.code, 1, "{gone}");
        assert!(
            gone.stderr.contains("container `u` does not exist"),
            "{gone}"
        );
    });
}
