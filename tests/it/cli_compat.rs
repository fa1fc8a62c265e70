//! Podman's listing options and small group verbs (issue 9): `ps` filters, sorting, sizes and
//! namespaces; `images` filters and sorting; `image tree` and `image untag`; `container init`
//! and `container cleanup`; containers.conf. The expected texts, headers and exit codes were
//! observed with podman 4.3.1 (run as the test user on this machine) and are hard-coded here.

use crate::util::{for_each_user, Env};

/// c1 created with a label, c2 exited 3, c3 exited 0: the three containers the Podman
/// observations were made with (there c3 ran `sleep`).
fn three_containers(env: &Env) {
    env.import_busybox("bb");
    env.text(&[
        "create",
        "--network=none",
        "--name",
        "c1",
        "--label",
        "a=b",
        "bb",
        "true",
    ]);
    env.rbox()
        .args([
            "run",
            "--network=none",
            "--name",
            "c2",
            "bb",
            "sh",
            "-c",
            "exit 3",
        ])
        .output()
        .code_is(3);
    env.text(&[
        "run",
        "--network=none",
        "--name",
        "c3",
        "bb",
        "sh",
        "-c",
        "exit 0",
    ]);
}

#[test]
fn ps_filters_combine_as_podman() {
    for_each_user("compat_ps_filters", |env| {
        three_containers(env);
        let names = |filters: &[&str]| {
            let mut args = vec!["ps", "-a", "--sort", "names", "--format", "{{.Names}}"];
            for f in filters {
                args.extend(["--filter", f]);
            }
            env.text(&args)
        };
        // one key twice: either; two keys: both (podman: c1 c2, then nothing)
        assert_eq!(names(&["name=c1", "name=c2"]), "c1\nc2");
        assert_eq!(names(&["name=c1", "status=exited"]), "");
        assert_eq!(names(&["status=exited", "status=created"]), "c1\nc2\nc3");
        assert_eq!(names(&["name=^c", "exited=3"]), "c2");
        assert_eq!(names(&["label=a"]), "c1");
        assert_eq!(names(&["label=a=c"]), "");
        // since/before name a container; several of them: any
        assert_eq!(names(&["since=c1"]), "c2\nc3");
        assert_eq!(names(&["before=c3"]), "c1\nc2");
        assert_eq!(names(&["since=c1", "since=c2"]), "c2\nc3");
        // rbox has no pods and these containers no network: nothing, as podman
        assert_eq!(names(&["pod=x"]), "");
        assert_eq!(names(&["network=none"]), "");
        assert_eq!(names(&["health=healthy"]), "");
        // a status filter lists stopped containers without -a; others do not
        let out = env.text(&["ps", "--filter", "status=exited", "--format", "{{.Names}}"]);
        assert_eq!(out.lines().count(), 2, "{out}");
        assert_eq!(
            env.text(&["ps", "--filter", "name=c1", "--format", "{{.Names}}"]),
            ""
        );

        // podman 4.3's words, exit 125
        for (filter, err) in [
            ("bogus=x", "Error: bogus is an invalid filter"),
            ("label!=a", "Error: label! is an invalid filter"),
            (
                "status=bogus",
                "Error: unknown container state: bogus: invalid argument",
            ),
            (
                "restart-policy=bogus",
                "Error: bogus invalid restart policy",
            ),
            (
                "since=nonexist",
                "Error: no container with name or ID \"nonexist\" found: no such container",
            ),
        ] {
            let out = env
                .rbox()
                .args(["ps", "-a", "--filter", filter])
                .output()
                .rbox_error();
            assert_eq!(out.stderr.trim_end(), err, "{out}");
        }
    });
}

#[test]
fn ps_sorts_sizes_and_namespaces_as_podman() {
    for_each_user("compat_ps_sort", |env| {
        three_containers(env);
        let sorted = |key: &str, fmt: &str| env.text(&["ps", "-a", "--sort", key, "--format", fmt]);
        assert_eq!(sorted("created", "{{.Names}}"), "c1\nc2\nc3");
        assert_eq!(sorted("names", "{{.Names}}"), "c1\nc2\nc3");
        // by the status text: Created < Exited (0) < Exited (3)
        assert_eq!(sorted("status", "{{.Names}}"), "c1\nc3\nc2");
        assert_eq!(sorted("command", "{{.Names}}"), "c3\nc2\nc1");
        let out = env
            .rbox()
            .args(["ps", "--sort", "bogus"])
            .output()
            .rbox_error();
        assert_eq!(
            out.stderr.trim_end(),
            "Error: invalid argument \"bogus\" for \"--sort\" flag: \"bogus\" is not a valid \
             value.  Choose from: \"command, created, id, image, names, runningfor, size, status\""
        );
        // --latest and --last pick the newest
        assert_eq!(
            env.text(&["ps", "--latest", "--format", "{{.Names}}"]),
            "c3"
        );
        assert_eq!(
            env.text(&["ps", "-n", "2", "--sort", "names", "--format", "{{.Names}}"]),
            "c2\nc3"
        );

        // --size: a SIZE column "12B (virtual 1.99MB)" after NAMES
        let out = env.text(&["ps", "-a", "--size", "--filter", "name=c1"]);
        let header = out.lines().next().unwrap();
        assert!(header.ends_with("NAMES       SIZE"), "{out}");
        let row = out.lines().nth(1).unwrap_or_else(|| panic!("{out}"));
        // (after the NAMES column: the id may contain "c1" too)
        let size = row
            .split_once(" c1 ")
            .map(|(_, rest)| rest)
            .unwrap_or_else(|| panic!("{out}"))
            .trim();
        let (rw, virt) = size
            .split_once(" (virtual ")
            .unwrap_or_else(|| panic!("{out}"));
        let unit = |s: &str| {
            let n = s.trim_end_matches(['B', 'k', 'M', 'G']);
            s.ends_with('B') && n.parse::<f64>().is_ok()
        };
        assert!(unit(rw) && unit(virt.trim_end_matches(')')), "{out}");
        // --ns: podman's columns, empty for a container that does not run
        let out = env.text(&["ps", "-a", "--ns", "--filter", "name=c1"]);
        assert_eq!(
            out.lines()
                .next()
                .unwrap()
                .split_whitespace()
                .collect::<Vec<_>>(),
            [
                "CONTAINER",
                "ID",
                "NAMES",
                "PID",
                "CGROUPNS",
                "IPC",
                "MNT",
                "NET",
                "PIDNS",
                "USERNS",
                "UTS"
            ]
        );
        env.text(&["ps", "--external"]);
    });
}

#[test]
fn ps_json_has_podmans_keys() {
    for_each_user("compat_ps_json", |env| {
        three_containers(env);
        let out = env.text(&["ps", "-a", "--filter", "name=c2", "--format", "json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let o = v[0].as_object().unwrap();
        // `podman ps -a --format json` of an exited container printed exactly these keys
        let mut keys: Vec<&str> = o.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "AutoRemove",
                "Command",
                "Created",
                "CreatedAt",
                "ExitCode",
                "Exited",
                "ExitedAt",
                "Id",
                "Image",
                "ImageID",
                "IsInfra",
                "Labels",
                "Mounts",
                "Names",
                "Namespaces",
                "Networks",
                "Pid",
                "Pod",
                "PodName",
                "Ports",
                "Size",
                "StartedAt",
                "State",
                "Status"
            ]
        );
        assert_eq!(v[0]["ExitCode"], 3);
        assert_eq!(v[0]["Exited"], true);
        assert_eq!(v[0]["Labels"], serde_json::Value::Null);
        assert_eq!(v[0]["Ports"], serde_json::Value::Null);
        assert_eq!(v[0]["Size"], serde_json::Value::Null);
        assert!(
            v[0]["CreatedAt"].as_str().unwrap().ends_with(" ago"),
            "{out}"
        );
        // a created container never started nor exited: Go's zero time, as podman prints it
        let out = env.text(&[
            "ps", "-a", "--filter", "name=c1", "--format", "json", "--size",
        ]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v[0]["StartedAt"], -62135596800i64);
        assert_eq!(v[0]["ExitedAt"], -62135596800i64);
        assert_eq!(v[0]["Labels"]["a"], "b");
        assert!(v[0]["Size"]["rootFsSize"].as_u64().unwrap() > 0, "{out}");
        // the template placeholders podman documents
        let out = env.text(&[
            "ps",
            "-a",
            "--filter",
            "name=c2",
            "--format",
            "{{.Networks}}|{{.Pid}}|{{.Exited}}|{{.ExitCode}}|{{.Mounts}}|{{.Labels}}|{{.ImageID}}",
        ]);
        // podman: `|0|true|3|[]|map[]|63d8b78d3eb7`
        let id = env.text(&["image", "inspect", "--format", "{{.Id}}", "bb"]);
        assert_eq!(out, format!("|0|true|3|[]|map[]|{}", &id[..12]));
    });
}

#[test]
fn images_filters_sort_tree_and_untag_as_podman() {
    for_each_user("compat_images", |env| {
        env.import_busybox("bb");
        env.text(&["tag", "bb", "localhost/x1", "localhost/x2"]);
        let repos = |args: &[&str]| {
            let mut a = vec!["images", "--format", "{{.Repository}}"];
            a.extend(args);
            env.text(&a)
        };
        assert_eq!(
            repos(&["--sort", "repository"]),
            "localhost/bb\nlocalhost/x1\nlocalhost/x2"
        );
        assert_eq!(repos(&["--filter", "before=bb"]), "");
        assert_eq!(repos(&["--filter", "since=bb"]), "");
        assert_eq!(repos(&["--filter", "intermediate=true"]), "");
        assert_eq!(repos(&["--filter", "readonly=true"]), "");
        assert_eq!(repos(&["--filter", "readonly=false"]).lines().count(), 3);
        // podman 4.3's words, exit 125
        for (args, err) in [
            (&["--sort", "bogus"][..], "Error: \"bogus\" is not a valid field for sorting. Choose from: created, id, repository, size, tag"),
            (&["--filter", "bogus=1"], "Error: unsupported image filter \"bogus\""),
            (&["--filter", "nokey"], "Error: invalid image filter \"nokey\": must be in the format \"filter=value or filter!=value\""),
            (&["--filter", "since=nope"], "Error: could not find local image for filter filter \"since\"=\"nope\": nope: image not known"),
        ] {
            let out = env.rbox().arg("images").args(args).output().rbox_error();
            assert_eq!(out.stderr.trim_end(), err, "{out}");
        }
        // --format json: podman's keys (RepoTags null, History the names)
        let v: serde_json::Value =
            serde_json::from_str(&env.text(&["images", "--format", "json"])).unwrap();
        let mut keys: Vec<&str> = v[0]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "Containers",
                "Created",
                "CreatedAt",
                "Digest",
                "History",
                "Id",
                "Labels",
                "Names",
                "ParentId",
                "RepoDigests",
                "RepoTags",
                "SharedSize",
                "Size",
                "VirtualSize"
            ]
        );
        assert_eq!(v[0]["RepoTags"], serde_json::Value::Null);

        // image tree: podman 4.3 drew `localhost/bb` (one layer) as
        //   Image ID: 63d8b78d3eb7 / Tags:     [localhost/bb:latest] / Size:     17.05MB /
        //   Image Layers / └── ID: cabafcd55ae8 Size: 2.131MB Top Layer of: [localhost/bb:latest]
        let id = env.text(&["image", "inspect", "--format", "{{.Id}}", "bb"]);
        let tree = env.text(&["image", "tree", "x1"]);
        let lines: Vec<&str> = tree.lines().collect();
        let names = "[localhost/bb:latest localhost/x1:latest localhost/x2:latest]";
        assert_eq!(lines[0], format!("Image ID: {}", &id[..12]), "{tree}");
        assert_eq!(lines[1], format!("Tags:     {names}"), "{tree}");
        assert!(
            lines[2].starts_with("Size:     ") && lines[2].ends_with("B"),
            "{tree}"
        );
        assert_eq!(lines[3], "Image Layers");
        let top = lines.last().unwrap();
        assert!(
            top.starts_with("└── ID: ") && top.ends_with(&format!("Top Layer of: {names}")),
            "{tree}"
        );
        let out = env
            .rbox()
            .args(["image", "tree", "nope"])
            .output()
            .rbox_error();
        assert_eq!(out.stderr.trim_end(), "Error: nope: image not known");

        // image untag: silent; a name the image lacks is refused with podman's words
        assert_eq!(env.text(&["image", "untag", "bb", "localhost/x1"]), "");
        assert_eq!(
            repos(&["--sort", "repository"]),
            "localhost/bb\nlocalhost/x2"
        );
        let out = env
            .rbox()
            .args(["image", "untag", "bb", "nothere"])
            .output()
            .rbox_error();
        assert_eq!(
            out.stderr.trim_end(),
            "Error: localhost/nothere:latest: tag not known"
        );
        // no names: all of them go, the image stays (dangling)
        env.text(&["image", "untag", "x2"]);
        assert_eq!(repos(&[]), "<none>");
        assert_eq!(repos(&["--filter", "dangling=true"]), "<none>");
    });
}

#[test]
fn container_init_and_cleanup_as_podman() {
    for_each_user("compat_init_cleanup", |env| {
        env.import_busybox("bb");
        env.text(&["create", "--network=none", "--name", "ci", "bb", "true"]);
        // podman printed the name as given (`ccinit`); rbox's container stays created
        assert_eq!(env.text(&["container", "init", "ci"]), "ci");
        assert_eq!(
            env.text(&["ps", "-a", "--filter", "name=ci", "--format", "{{.State}}"]),
            "created"
        );
        // (a name that is not all hex digits: `exists ce` also matched any container whose id
        // began with ce, as `ci`'s does once in 256)
        env.text(&["run", "--network=none", "--name", "cln", "bb", "true"]);
        assert_eq!(env.text(&["container", "cleanup", "cln"]), "cln");
        assert_eq!(env.text(&["container", "cleanup", "--rm", "cln"]), "cln");
        env.rbox()
            .args(["container", "exists", "cln"])
            .output()
            .code_is(1);
        for verb in ["init", "cleanup"] {
            let out = env
                .rbox()
                .args(["container", verb, "nope"])
                .output()
                .rbox_error();
            assert_eq!(
                out.stderr.trim_end(),
                "Error: no container with name or ID \"nope\" found: no such container"
            );
        }
        let id = env.text(&[
            "run",
            "-d",
            "--network=none",
            "--name",
            "cr",
            "bb",
            "sleep",
            "600",
        ]);
        let out = env
            .rbox()
            .args(["container", "init", "cr"])
            .output()
            .rbox_error();
        assert_eq!(
            out.stderr.trim_end(),
            format!(
                "Error: container {id} has already been created in runtime: container state improper"
            )
        );
        env.rbox()
            .args(["container", "cleanup", "cr"])
            .output()
            .rbox_error();
        env.text(&["rm", "-f", "-t", "0", "cr"]);
    });
}
