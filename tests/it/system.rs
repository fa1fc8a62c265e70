//! Podman's global options, its configuration files and the `rbox system` group (issue 9).
//! Where the text matters, the expected output was observed with podman 4.3.1 run as the test
//! user on this machine (with a store of its own) and is hard-coded here.

use crate::util::for_each_user;

/// `--syslog`: rbox's log messages go to the syslog daemon's socket too (here a socket of the
/// test's, bound on /var/run/syslog in a private mount namespace: the host has no daemon);
/// without a daemon rbox refuses the flag in Podman's words, as Podman does.
#[test]
fn syslog_flag() {
    for_each_user("system_syslog", |env| {
        env.import_busybox("bb");
        let no_daemon = ["/dev/log", "/var/run/syslog", "/var/run/log"]
            .iter()
            .all(|p| !std::path::Path::new(p).exists());
        if no_daemon {
            let out = env.rbox().args(["--syslog", "ps"]).output().rbox_error();
            assert!(
                out.stderr
                    .contains("Failed to initialize syslog hook: Unix syslog delivery error"),
                "{out}"
            );
        }
        use std::os::unix::fs::PermissionsExt;
        let path = env.path("log.sock");
        let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
        sock.set_nonblocking(true).unwrap();
        let out = env
            .rbox()
            .tmpfs_over(std::path::Path::new("/run"))
            .bind_over(&path, std::path::Path::new("/run/syslog"))
            .args([
                "--syslog",
                "--log-level=debug",
                "run",
                "--rm",
                "--network=none",
            ])
            .args(["bb", "echo", "ran"])
            .output()
            .success();
        assert_eq!(out.text(), "ran");
        // every line of stderr reached the daemon too, at debug severity under facility user
        let mut got = Vec::new();
        let mut buf = [0u8; 8192];
        while let Ok(n) = sock.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        let debug: Vec<&str> = out
            .stderr
            .lines()
            .filter_map(|l| l.strip_prefix("Debug: "))
            .collect();
        assert!(!debug.is_empty(), "{out}");
        for line in debug {
            // (the module in brackets is the stderr line's only)
            let text = line.split_once("] ").map_or(line, |(_, t)| t);
            assert!(
                got.iter()
                    .any(|m| m.starts_with("<15>rbox[") && m.ends_with(&format!("]: {text}"))),
                "{text} in {got:?}"
            );
        }
    });
}

/// The global options rbox cannot honour are refused in one line that says why; the ones it
/// can are accepted; an option given twice takes the last value, as in Podman.
#[test]
fn global_flags_accepted_and_refused_clearly() {
    for_each_user("system_global_flags", |env| {
        env.import_busybox("bb");
        let rbox = std::fs::canonicalize(crate::util::RBOX).unwrap();
        for ok in [
            vec!["--runtime", "rbox"],
            vec!["--runtime", rbox.to_str().unwrap()],
            vec!["--events-backend", "file"],
            vec!["--events-backend", "none"],
            vec!["--cgroup-manager", "cgroupfs"],
            vec!["--tmpdir", "/tmp"],
            vec!["--storage-opt", ""],
            vec!["--log-level", "debug", "--log-level", "error"],
        ] {
            let out = env
                .rbox()
                .args(&ok)
                .args(["images", "-q"])
                .output()
                .success();
            assert_eq!(out.lines().len(), 1, "{out}");
            assert!(out.stderr.is_empty(), "{ok:?} logged: {out}");
        }
        for (bad, why) in [
            (vec!["--runtime", "crun"], "unsupported OCI runtime `crun`"),
            (
                vec!["--runtime-flag", "debug"],
                "unsupported runtime flag `debug`",
            ),
            (
                vec!["--events-backend", "journald"],
                "rbox writes no journal",
            ),
            // Podman's text for a value it does not know
            (
                vec!["--events-backend", "bogus"],
                "configuring runtime: \"bogus\" is not a valid events backend: invalid argument",
            ),
            (
                vec!["--cgroup-manager", "systemd"],
                "rbox does not talk to systemd",
            ),
            (
                vec!["--storage-opt", "overlay.size=1G"],
                "unsupported storage option",
            ),
            (vec!["--url", "unix:///x"], "rbox has no remote service"),
            (vec!["--connection", "x"], "rbox has no remote service"),
            (vec!["--remote"], "rbox has no remote service"),
            (vec!["-r"], "rbox has no remote service"),
        ] {
            let out = env.rbox().args(&bad).args(["images"]).output().rbox_error();
            assert!(out.stderr.contains(why), "{bad:?}: {out}");
            assert!(out.stdout.is_empty(), "{out}");
        }
        // --noout: nothing on stdout, the exit status kept
        let out = env.rbox().args(["--noout", "images"]).output().success();
        assert_eq!(out.stdout, "", "{out}");
        let out = env.rbox().args(["--noout", "rmi", "nosuch"]).output();
        assert_eq!((out.code, out.stdout.as_str()), (1, ""), "{out}");
        // ... but an attached container's output still shows, as Podman's
        let out = env
            .rbox()
            .args([
                "--noout",
                "run",
                "--rm",
                "--network=none",
                "bb",
                "echo",
                "hi",
            ])
            .output()
            .success();
        assert_eq!(out.text(), "hi");
        // the last value wins, in subcommands too
        assert_eq!(
            env.text(&["images", "--format", "x", "--format", "{{.Repository}}"]),
            "localhost/bb"
        );
    });
}

/// `rbox version` in Podman's shape: a `Client:` block, `--format` templates and JSON.
#[test]
fn version_as_podman() {
    for_each_user("system_version", |env| {
        let v = env!("CARGO_PKG_VERSION");
        let out = env.text(&["version"]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "Client:       rbox");
        assert_eq!(lines[1], format!("Version:      {v}"));
        assert!(lines[2].starts_with("OS/Arch:      linux/"), "{out}");
        assert_eq!(env.text(&["version", "--format", "{{.Client.Version}}"]), v);
        assert_eq!(
            env.text(&["system", "version", "--format", "{{.Client.Version}}"]),
            v
        );
        let j: serde_json::Value =
            serde_json::from_str(&env.text(&["version", "--format", "json"])).unwrap();
        assert_eq!(j["Client"]["Version"], v);
        assert_eq!(j["Client"]["Os"], "linux");
    });
}

/// `system df`, `system prune` (prompt, -f, -a) and `system reset`, with Podman's texts.
#[test]
fn system_df_prune_reset() {
    for_each_user("system_df_prune", |env| {
        env.import_busybox("bb");
        env.text(&["tag", "bb", "localhost/bb2"]);
        env.text(&["run", "--network=none", "--name", "c1", "bb", "true"]);
        let df = env.text(&["system", "df"]);
        let lines: Vec<&str> = df.lines().collect();
        // podman 4.3.1: `TYPE           TOTAL       ACTIVE      SIZE        RECLAIMABLE`
        assert_eq!(
            lines[0],
            "TYPE           TOTAL       ACTIVE      SIZE        RECLAIMABLE"
        );
        // one row per image name, as Podman counts; c1 uses the image
        assert!(
            lines[1].starts_with("Images         2           2   "),
            "{df}"
        );
        assert!(
            lines[2].starts_with("Containers     1           0   "),
            "{df}"
        );
        assert_eq!(
            lines[3],
            "Local Volumes  0           0           0B          0B (0%)"
        );
        let rows = env.text(&[
            "system",
            "df",
            "--format",
            "{{.Type}}|{{.Total}}|{{.Active}}",
        ]);
        assert_eq!(rows, "Images|2|2\nContainers|1|0\nLocal Volumes|0|0");
        let v = env.text(&["system", "df", "-v"]);
        assert!(v.starts_with("Images space usage:\n\nREPOSITORY "), "{v}");
        assert!(
            v.contains("\nContainers space usage:\n\nCONTAINER ID  IMAGE "),
            "{v}"
        );
        assert!(v.contains(" exited      c1"), "{v}");
        assert!(
            v.ends_with("Local Volumes space usage:\n\nVOLUME NAME  LINKS       SIZE"),
            "{v}"
        );

        // the prompt, word for word; "n" keeps everything, end of input is an error
        let warning = "WARNING! This command removes:\n\t- all stopped containers\n\t- all \
                       networks not used by at least one container\n\t- all dangling images\n\t- \
                       all dangling build cache\n\nAre you sure you want to continue? [y/N] ";
        let out = env
            .rbox()
            .args(["system", "prune"])
            .stdin("n\n")
            .output()
            .success();
        assert_eq!(out.stdout, warning);
        let out = env.rbox().args(["system", "prune"]).output().rbox_error();
        assert_eq!(out.stderr.trim_end(), "Error: EOF");
        assert_eq!(env.text(&["ps", "-aq"]).lines().count(), 1);

        let id = env.text(&["ps", "-aq", "--no-trunc"]);
        let out = env
            .rbox()
            .args(["system", "prune"])
            .stdin("y\n")
            .output()
            .success();
        let report = out.stdout.strip_prefix(warning).unwrap();
        assert!(
            report.starts_with(&format!(
                "Deleted Containers\n{id}\nTotal reclaimed space: "
            )),
            "{out}"
        );
        // named images are not dangling; -a removes every unused one
        assert_eq!(
            env.text(&["system", "prune", "-f"]),
            "Total reclaimed space: 0B"
        );
        let image = env.text(&["images", "-q", "--no-trunc"]);
        let image = image.trim_start_matches("sha256:");
        let out = env.text(&["system", "prune", "-a", "-f", "--volumes"]);
        assert!(
            out.starts_with(&format!("Deleted Images\n{image}\nTotal reclaimed space: ")),
            "{out}"
        );
        assert_eq!(env.text(&["images", "-q"]), "");

        // reset: asks as Podman, then removes the store and the runtime directory, killing
        // running containers
        env.import_busybox("bb");
        env.text(&["run", "-d", "--network=none", "bb", "sleep", "1000"]);
        let out = env
            .rbox()
            .args(["system", "reset"])
            .stdin("n\n")
            .output()
            .success();
        assert!(
            out.stdout
                .starts_with("WARNING! This will remove:\n        - all containers\n"),
            "{out}"
        );
        assert!(
            out.stdout.ends_with(&format!(
                "        - the graphRoot directory: \"{}\"\n        - the runRoot directory: \"{}\"\nAre you sure you want to continue? [y/N] ",
                env.store().display(),
                env.runroot().display()
            )),
            "{out}"
        );
        assert!(env.store().exists());
        let out = env
            .rbox()
            .args(["system", "reset", "-f"])
            .output()
            .success();
        assert_eq!(out.stdout, "");
        assert!(!env.store().exists() && !env.runroot().exists());
        assert_eq!(env.text(&["ps", "-aq"]), "");

        // migrate: nothing to do, said only at --log-level info
        let out = env.rbox().args(["system", "migrate"]).output().success();
        assert_eq!((out.stdout.as_str(), out.stderr.as_str()), ("", ""));
        let out = env
            .rbox()
            .args(["--log-level", "info", "system", "migrate"])
            .output()
            .success();
        assert!(out.stderr.contains("nothing to migrate"), "{out}");
    });
}

/// storage.conf points rbox at the user's places (flags win over it), and a graphroot that is
/// Podman's own store gets rbox's store in its `rbox/` subdirectory, leaving Podman's alone.
#[test]
fn storage_conf_is_honoured() {
    for_each_user("system_storage_conf", |env| {
        let rbox = crate::util::RBOX;
        let graph = |c: &mut crate::util::Cmd| {
            c.args([
                "info",
                "--format",
                "{{.Store.GraphRoot}}|{{.Store.RunRoot}}",
            ])
            .output()
            .success()
            .text()
        };
        let conf = format!(
            "[storage]\ndriver = \"vfs\"\ngraphroot = \"{0}/confstore\"\nrunroot = \"{0}/confrun\"\n\n[storage.options]\nmount_program = \"\"\n",
            env.dir.display()
        );
        env.write("config/containers/storage.conf", &conf);
        let want = format!("{0}/confstore|{0}/confrun", env.dir.display());
        assert_eq!(graph(&mut env.cmd(rbox)), want);
        // the flags win
        assert_eq!(
            graph(&mut env.rbox()),
            format!("{}|{}", env.store().display(), env.runroot().display())
        );
        // $CONTAINERS_STORAGE_CONF wins over the user's file
        let other = env.write(
            "other.conf",
            format!(
                "[storage]\ngraphroot = \"{}/otherstore\"\n",
                env.dir.display()
            ),
        );
        let mut c = env.cmd(rbox);
        c.env("CONTAINERS_STORAGE_CONF", &other);
        assert!(graph(&mut c).starts_with(&format!("{}/otherstore|", env.dir.display())));
        // the configured driver is used
        let tar = env.copy_in(&crate::fixtures::busybox_rootfs_tar(), "bb.tar");
        env.cmd(rbox)
            .arg("import")
            .arg(&tar)
            .arg("bb")
            .output()
            .success();
        let drv = env
            .cmd(rbox)
            .args(["create", "--network=none", "bb", "true"])
            .output()
            .success()
            .text();
        let out = env
            .cmd(rbox)
            .args(["inspect", "--format", "{{.Driver}}", &drv])
            .output()
            .success();
        assert_eq!(out.text(), "vfs");

        // a Podman store as graphroot: rbox's goes to rbox/ and Podman's files are untouched
        env.write("pstore/storage.lock", "");
        env.write("pstore/vfs-images/images.json", "[]");
        env.give_to_user(&env.path("pstore"));
        env.write(
            "config/containers/storage.conf",
            format!(
                "[storage]\ngraphroot = \"{0}/pstore\"\nrunroot = \"{0}/confrun\"\n",
                env.dir.display()
            ),
        );
        assert!(
            graph(&mut env.cmd(rbox)).starts_with(&format!("{}/pstore/rbox|", env.dir.display()))
        );
        env.cmd(rbox)
            .arg("import")
            .arg(&tar)
            .arg("bb")
            .output()
            .success();
        let mut names: Vec<String> = std::fs::read_dir(env.path("pstore"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["rbox", "storage.lock", "vfs-images"]);
        // a file that does not parse is an error, not another store
        env.write("config/containers/storage.conf", "[storage\n");
        let out = env.cmd(rbox).args(["images"]).output().rbox_error();
        assert!(out.stderr.contains("storage.conf`"), "{out}");
    });
}

/// `rbox info` (and `system info`) answers Podman's template keys, rbox's own kept beside them.
#[test]
fn info_answers_podmans_keys() {
    for_each_user("system_info", |env| {
        let rbox = std::fs::canonicalize(crate::util::RBOX).unwrap();
        let f = "{{.Host.OCIRuntime.Path}}|{{.Store.GraphRoot}}|{{.Store.RunRoot}}|{{.Host.Security.Rootless}}|{{.Host.RemoteSocket.Path}}|{{.Version.Version}}";
        let want = format!(
            "{}|{}|{}|{}||{}",
            rbox.display(),
            env.store().display(),
            env.runroot().display(),
            env.user.uid != 0,
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(env.text(&["info", "--format", f]), want);
        assert_eq!(env.text(&["system", "info", "--format", f]), want);
        let j: serde_json::Value =
            serde_json::from_str(&env.text(&["info", "--format", "json"])).unwrap();
        for key in ["host", "store", "registries", "version"] {
            assert!(j.get(key).is_some(), "{key}: {j}");
        }
        // rbox's own diagnostics stay
        assert!(j["host"]["idMappings"]["mode"].is_string(), "{j}");
        assert!(j["problems"].is_array(), "{j}");
    });
}

/// containers.conf gives the defaults rbox honours (DNS servers, the log driver, the rootless
/// network command); the command line overrides them.
#[test]
fn containers_conf_sets_defaults() {
    for_each_user("containers_conf", |env| {
        env.import_busybox("busybox");
        let conf = env.write(
            "containers.conf",
            "[containers]\ndns_servers = [\"192.0.2.1\"]\nlog_driver = \"none\"\n\n[network]\ndefault_rootless_network_cmd = \"slirp4netns\"\n",
        );
        let rbox = || {
            let mut c = env.rbox();
            c.env("CONTAINERS_CONF", &conf);
            c
        };
        let out = rbox()
            .args(["run", "--name", "c1", "busybox", "cat", "/etc/resolv.conf"])
            .output()
            .success();
        assert!(out.stdout.contains("nameserver 192.0.2.1"), "{out}");
        let f = |name: &str, what: &str| {
            rbox()
                .args(["inspect", "--format", what, name])
                .output()
                .success()
                .text()
        };
        assert_eq!(f("c1", "{{.HostConfig.NetworkMode}}"), "slirp4netns");
        assert_eq!(f("c1", "{{.HostConfig.LogConfig.Type}}"), "none");
        let out = rbox()
            .args([
                "run",
                "--name",
                "c2",
                "--dns",
                "192.0.2.9",
                "--network=none",
            ])
            .args([
                "--log-driver=k8s-file",
                "busybox",
                "cat",
                "/etc/resolv.conf",
            ])
            .output()
            .success();
        assert!(
            out.stdout.contains("nameserver 192.0.2.9") && !out.stdout.contains("192.0.2.1"),
            "{out}"
        );
        assert_eq!(f("c2", "{{.HostConfig.LogConfig.Type}}"), "k8s-file");
        let bad = env.write("bad.conf", "[containers\n");
        let mut c = env.rbox();
        c.env("CONTAINERS_CONF", &bad);
        c.args(["run", "--rm", "busybox", "true"])
            .output()
            .rbox_error();
        rbox().args(["rm", "c1", "c2"]).output().success();
    });
}

/// The `[containers]` keys that set `run`/`create` defaults, as Podman 4.3.1 rootless takes
/// them (observed as rboxsub with the same file): `env` goes under the image's ENV and -e
/// (an entry without `=` is skipped), `http_proxy = false` keeps the caller's proxy variables
/// out, `shm_size` counts in powers of 1000 (70m: 70000000 bytes) where `--shm-size` counts
/// in powers of 1024, `default_ulimits`, `tz`, `umask`, `no_hosts`, `annotations`,
/// `volumes`, `devices` and the namespace keys apply; each flag overrides its key.
#[test]
fn containers_conf_run_defaults_and_their_flags() {
    for_each_user("containers_conf_run", |env| {
        env.import_busybox("busybox");
        let tar = env.copy_in(&crate::fixtures::busybox_rootfs_tar(), "bb.tar");
        env.rbox()
            .args(["import", "-c", "ENV FOO=image", "-c", "ENV IMG=1"])
            .arg(&tar)
            .arg("bbenv")
            .output()
            .success();
        let vol = env.write("vol/f", "from conf\n");
        let vol = vol.parent().unwrap().display().to_string();
        let other = env.write("other/f", "from -v\n");
        let other = other.parent().unwrap().display().to_string();
        env.give_to_user(&env.path("vol"));
        env.give_to_user(&env.path("other"));
        let conf = env.write(
            "containers.conf",
            format!(
                "[containers]\n\
                 env = [\"FOO=conf\", \"BAR=conf\", \"PATH=/confpath:/bin\", \"NOEQ\"]\n\
                 http_proxy = false\ntz = \"Asia/Tokyo\"\numask = \"0077\"\n\
                 shm_size = \"70m\"\ndefault_ulimits = [\"nofile=500:600\"]\n\
                 no_hosts = true\nannotations = [\"a.b=c\", \"noeq\"]\n\
                 volumes = [\"{vol}:/mnt/v:ro\"]\ndevices = [\"/dev/null:/dev/mynull\"]\n\
                 utsns = \"host\"\nnetns = \"none\"\npidns = \"host\"\ncgroupns = \"host\"\n\
                 default_capabilities = [\"CHOWN\", \"NET_RAW\"]\n\
                 default_sysctls = [\"net.ipv4.ping_group_range=0 0\"]\n\
                 seccomp_profile = \"unconfined\"\npids_limit = 100\n"
            ),
        );
        let rbox = || {
            let mut c = env.rbox();
            c.env("CONTAINERS_CONF", &conf)
                .env("http_proxy", "http://proxy.example:3128");
            c
        };
        let script = "env | sort; umask; ulimit -Sn; ulimit -Hn; cat /mnt/v/f; \
                      test -c /dev/mynull && echo device; hostname; df -k /dev/shm | tail -1; \
                      date +%Z; sed 's/^/hosts: /' /etc/hosts 2>/dev/null; ls /sys/class/net; \
                      grep -E 'CapBnd|Seccomp:' /proc/self/status; \
                      echo ping $(cat /proc/sys/net/ipv4/ping_group_range); \
                      [ $$ -gt 100 ] && echo host pids; readlink /proc/self/ns/cgroup";
        let cgroupns = std::fs::read_link("/proc/self/ns/cgroup").unwrap();
        let cgroupns = cgroupns.to_str().unwrap();
        let out = rbox()
            .args([
                "run", "--name", "c1", "-e", "BAR=cli", "bbenv", "sh", "-c", script,
            ])
            .output()
            .success();
        let host = nix::unistd::gethostname().unwrap();
        let lines = out.lines();
        for want in [
            "FOO=image",
            "BAR=cli",
            "IMG=1",
            "PATH=/confpath:/bin",
            "0077",
            "500",
            "600",
            "from conf",
            "device",
            host.to_str().unwrap(),
            "JST",
            "lo",
            "CapBnd:\t0000000000002001",
            "ping 0 0",
            "host pids",
            cgroupns,
        ] {
            assert!(lines.contains(&want), "{want} in {out}");
        }
        // as with --security-opt seccomp=unconfined: a single-id map keeps fakeroot's filter
        if env.user.has_many_ids() {
            assert!(lines.contains(&"Seccomp:\t0"), "{out}");
        }
        assert!(
            !out.stdout.contains("NOEQ")
                && !out.stdout.contains("proxy")
                && !lines.contains(&"hosts"),
            "{out}"
        );
        // 70000000 bytes in KiB
        assert!(out.stdout.contains(" 68360 "), "{out}");
        assert_eq!(
            env.inspect("c1", "{{index .Config.Annotations \"a.b\"}}"),
            "c"
        );
        // Podman drops the file's pids_limit rootless on cgroup v1 (this machine's hybrid),
        // where no limit applies, and keeps it as root (observed: 0 and 100)
        let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
        let root = env.user.who == crate::util::Who::Root;
        assert_eq!(
            env.inspect("c1", "{{.HostConfig.PidsLimit}}"),
            if root || v2 { "100" } else { "0" }
        );
        // each flag over its key
        let out = rbox()
            .args([
                "run",
                "--name",
                "c2",
                "--http-proxy",
                "--tz=UTC",
                "--umask=0022",
            ])
            .args([
                "--shm-size=70m",
                "--ulimit=nofile=100:200",
                "--no-hosts=false",
            ])
            .args(["--annotation=a.b=d", "-v", &format!("{other}:/mnt/v")])
            .args(["--uts=private", "--hostname=inbox", "--network=host"])
            .args(["--pid=private", "--cgroupns=private"])
            .args([
                "--cap-add=KILL",
                "--cap-drop=NET_RAW",
                "busybox",
                "sh",
                "-c",
                script,
            ])
            .output()
            .success();
        let lines = out.lines();
        for want in [
            "http_proxy=http://proxy.example:3128",
            "0022",
            "100",
            "200",
            "from -v",
            "device",
            "inbox",
            "UTC",
            "CapBnd:\t0000000000000021",
        ] {
            assert!(lines.contains(&want), "{want} in {out}");
        }
        assert!(out.stdout.contains(" 71680 "), "{out}");
        assert!(out.stdout.contains("hosts: "), "{out}");
        // the file's net.* sysctls are not for the host's network namespace
        assert!(!lines.contains(&"ping 0 0"), "{out}");
        assert!(
            !lines.contains(&"host pids") && !lines.contains(&cgroupns),
            "{out}"
        );
        assert_eq!(
            env.inspect("c2", "{{index .Config.Annotations \"a.b\"}}"),
            "d"
        );
        // --ulimit host keeps the caller's limits, --privileged every capability (Podman's)
        let out = rbox()
            .args([
                "run",
                "--rm",
                "--ulimit=host",
                "--privileged",
                "busybox",
                "sh",
                "-c",
            ])
            .arg("ulimit -Hn; grep CapBnd /proc/self/status")
            .output()
            .success();
        let lines = out.lines();
        assert_ne!(lines[0], "600", "{out}");
        let bnd = lines[1].strip_prefix("CapBnd:\t").unwrap();
        let sys_admin = 1u64 << 21;
        assert!(
            u64::from_str_radix(bnd, 16).unwrap() & sys_admin != 0,
            "{out}"
        );
        // Podman's: no_hosts from the file and --add-host do not go together either
        let out = rbox()
            .args(["create", "--add-host", "a:192.0.2.3", "busybox", "true"])
            .output()
            .rbox_error();
        assert!(
            out.stderr
                .contains("--no-hosts and --add-host cannot be set together"),
            "{out}"
        );
        // the system file's "0 0" names group 0, which a single-id map with keep-id lacks:
        // the file's default is left out there (a --sysctl would fail), Podman never runs so
        if env.user.who != crate::util::Who::Root {
            let out = rbox()
                .args(["run", "--rm", "--userns=keep-id", "busybox", "sh", "-c"])
                .arg("echo ping $(cat /proc/sys/net/ipv4/ping_group_range)")
                .output()
                .success();
            if env.user.has_many_ids() {
                assert_eq!(out.text(), "ping 0 0");
            }
            // userns: the caller's own uid inside, as --userns=keep-id gives it
            let keep = env.write("keep-id.conf", "[containers]\nuserns = \"keep-id\"\n");
            let out = env
                .rbox()
                .env("CONTAINERS_CONF", &keep)
                .args(["run", "--rm", "busybox", "id", "-u"])
                .output()
                .success();
            assert_eq!(out.text(), env.user.uid.to_string(), "{out}");
        }
        rbox().args(["rm", "c1", "c2"]).output().success();
    });
}

/// The same keys side by side with Podman 4.3.1 as the user with a range (Podman does not
/// run without one): what the container sees matches, line for line.
#[test]
fn containers_conf_run_defaults_as_podman() {
    if !crate::podman::prerequisites() {
        return;
    }
    for_each_user("containers_conf_podman", |env| {
        if !crate::podman::podman_users(env) {
            return;
        }
        if env.user.who == crate::util::Who::Root {
            // root's Podman raises RLIMIT_NPROC for every container beside default_ulimits,
            // which root on this machine may not (no CAP_SYS_RESOURCE, PLATFORM.md)
            eprintln!("skip: root's podman cannot set its RLIMIT_NPROC here");
            return;
        }
        let keys = "env = [\"FOO=conf\", \"BAR=conf\", \"ONLY=conf\", \"NOEQ\"]\n\
                    tz = \"Asia/Tokyo\"\numask = \"0077\"\nshm_size = \"70m\"\n\
                    default_ulimits = [\"nofile=500:600\"]\n\
                    default_sysctls = [\"net.ipv4.ping_group_range=0 0\"]\n\
                    default_capabilities = [\"CHOWN\", \"NET_RAW\"]\n";
        let p = crate::podman::Podman::with_containers_keys(env, keys);
        let conf = env.write("containers.conf", format!("[containers]\n{keys}"));
        let tar = env.copy_in(&crate::fixtures::busybox_rootfs_tar(), "bb.tar");
        for mut c in [p.cmd(), env.rbox()] {
            c.args(["import", "-c", "ENV FOO=image", "-c", "ENV IMG=1"])
                .arg(&tar)
                .arg("localhost/bbenv")
                .output()
                .success();
        }
        let script = "env | grep -E '^(FOO|BAR|IMG|ONLY|NOEQ)' | sort; umask; ulimit -Sn; \
                      ulimit -Hn; df -k /dev/shm | tail -1; date +%Z; \
                      cat /proc/sys/net/ipv4/ping_group_range; grep CapBnd /proc/self/status";
        let args = [
            "run",
            "--rm",
            "--network=none",
            "-e",
            "BAR=cli",
            "localhost/bbenv",
            "sh",
            "-c",
            script,
        ];
        let podman = p.cmd().args(args).output().success();
        let rbox = env
            .rbox()
            .env("CONTAINERS_CONF", &conf)
            .args(args)
            .output()
            .success();
        assert!(podman.stdout.contains("ONLY=conf\n"), "{podman}");
        assert_eq!(rbox.stdout, podman.stdout, "rbox: {rbox}\npodman: {podman}");
    });
}

/// A bad value of one of those keys fails `run` and `create` in Podman's words (its exit
/// status is 1 there; rbox's is 125 as for every error of its own).
#[test]
fn containers_conf_bad_run_defaults() {
    for_each_user("containers_conf_bad", |env| {
        env.import_busybox("busybox");
        for (key, text) in [
            (
                "shm_size = \"x\"",
                "validating containers config: invalid --shm-size x, \"invalid size: 'x'\"",
            ),
            (
                "umask = \"abc\"",
                "validating containers config: not a valid umask abc",
            ),
            (
                "tz = \"Nowhere/X\"",
                "validating containers config: find timezone Nowhere/X in paths: /usr/share/zoneinfo, /etc/zoneinfo",
            ),
            (
                "default_ulimits = [\"bogus=1\"]",
                "validating containers config: unrecognized ulimit bogus=1: invalid ulimit type: bogus",
            ),
            ("pidns = \"bogus\"", "unrecognized namespace mode bogus passed"),
            ("ipcns = \"host\"", "--ipc=host is not supported"),
            ("default_sysctls = [\"vm.x=1\"]", "sysctl 'vm.x' is not allowed"),
            (
                "default_capabilities = [\"BOGUS\"]",
                "\"CAP_BOGUS\": unknown capability",
            ),
            ("env = \"FOO=1\"", "invalid type"),
            (
                "netns = \"bridge\"",
                "containers.conf sets netns = \"bridge\": network mode `bridge` is not supported: rbox has no bridge networks",
            ),
        ] {
            let conf = env.write("bad.conf", format!("[containers]\n{key}\n"));
            for verb in ["run", "create"] {
                let out = env
                    .rbox()
                    .env("CONTAINERS_CONF", &conf)
                    .args([verb, "--rm", "busybox", "true"])
                    .output()
                    .rbox_error();
                assert!(out.stderr.contains(text), "{key}: {out}");
            }
        }
    });
}
