//! Devices beyond `--device /dev/X` (issue 11), end to end as every test user: CDI devices
//! from synthetic specs (YAML and JSON) in a directory the test's containers.conf names,
//! OCI hooks directories, `--gpus` (CDI `nvidia.com/gpu`) and `--nv`. No GPU exists here:
//! every spec, library and device below is synthetic and named so; the "device nodes" are
//! the host's /dev/null and /dev/zero under other names.

use crate::util::{for_each_user, Env};

/// The test's containers.conf (read through its XDG_CONFIG_HOME).
fn containers_conf(env: &Env, text: &str) {
    env.write("config/containers/containers.conf", text);
}

/// A synthetic CDI spec `rbox-test.example/synthetic` whose `dev0` brings a device node, an
/// env var, a read-only mount and hooks that write their state into `hooks/`; `dev1` another
/// node. Returns the spec directory.
fn synthetic_spec(env: &Env) -> String {
    let d = env.path("").display().to_string();
    env.write("shared/f", "hello\n");
    std::fs::create_dir_all(env.path("hooks")).unwrap();
    env.give_to_user(&env.path("hooks"));
    let yaml = format!(
        r#"cdiVersion: "0.5.0"
kind: rbox-test.example/synthetic
containerEdits:
  env:
  - SYNTH_ALL=1
devices:
- name: dev0
  containerEdits:
    env:
    - SYNTH0=yes
    deviceNodes:
    - path: /dev/synthetic0
      hostPath: /dev/null
      type: c
      major: 1
      minor: 3
    mounts:
    - hostPath: {d}/shared
      containerPath: /synthetic
      options: [ro, nosuid, nodev, bind]
    hooks:
    - hookName: createRuntime
      path: /bin/sh
      args: [sh, -c, "cat > {d}/hooks/createRuntime"]
    - hookName: startContainer
      path: /bin/touch
      args: [touch, /tmp/started]
    - hookName: poststop
      path: /bin/sh
      args: [sh, -c, "cat > {d}/hooks/poststop"]
- name: dev1
  containerEdits:
    deviceNodes:
    - path: /dev/synthetic1
      hostPath: /dev/zero
"#
    );
    env.write("cdi/synthetic.yaml", yaml);
    env.write(
        "cdi/other.json",
        r#"{"cdiVersion":"0.3.0","kind":"rbox-test.example/json",
            "devices":[{"name":"one","containerEdits":{"env":["FROM_JSON=1"]}}]}"#,
    );
    format!("{d}/cdi")
}

/// `--device vendor/class=name` applies the device's and its spec's edits (a bound node, env,
/// a mount, hooks at createRuntime, startContainer and poststop); `=all` gives every device
/// of the kind; an unknown one fails with Podman's text.
#[test]
fn cdi_devices_apply_their_edits() {
    for_each_user("cdi-devices", |env| {
        env.import_busybox("busybox");
        let dir = synthetic_spec(env);
        containers_conf(env, &format!("[engine]\ncdi_spec_dirs = [\"{dir}\"]\n"));
        let out = env
            .rbox()
            .args(["run", "--name", "c0", "--network=none"])
            .args(["--device", "rbox-test.example/synthetic=dev0"])
            .args([
                "--device",
                "rbox-test.example/json=one",
                "busybox",
                "sh",
                "-c",
            ])
            .arg(
                "stat -c %t:%T /dev/synthetic0; echo $SYNTH0 $SYNTH_ALL $FROM_JSON; \
                 cat /synthetic/f; touch /synthetic/g 2>/dev/null || echo read-only; \
                 test -e /tmp/started && echo started",
            )
            .output()
            .success();
        assert_eq!(
            out.text(),
            "1:3\nyes 1 1\nhello\nread-only\nstarted",
            "{out}"
        );
        let id = env.inspect("c0", "{{.Id}}");
        let created = std::fs::read_to_string(env.path("hooks/createRuntime")).unwrap();
        let st: serde_json::Value = serde_json::from_str(&created).unwrap();
        assert_eq!(st["id"], id.as_str(), "{created}");
        assert_eq!(st["status"], "created", "{created}");
        assert!(st["pid"].as_i64().unwrap() > 0, "{created}");
        let stopped = std::fs::read_to_string(env.path("hooks/poststop")).unwrap();
        let st: serde_json::Value = serde_json::from_str(&stopped).unwrap();
        assert_eq!(st["status"], "stopped", "{stopped}");
        // the hooks are in the container's OCI spec
        let cfg = env.store().join(format!("containers/{id}/config.json"));
        let cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(cfg).unwrap()).unwrap();
        assert_eq!(cfg["hooks"]["createRuntime"][0]["path"], "/bin/sh", "{cfg}");
        // recorded with the container: a later start has the same devices and hooks
        std::fs::remove_file(env.path("hooks/createRuntime")).unwrap();
        let again = env.rbox().args(["start", "-a", "c0"]).output().success();
        assert_eq!(again.text(), out.text(), "{again}");
        assert!(env.path("hooks/createRuntime").exists());

        let out = env
            .rbox()
            .args(["run", "--rm", "--network=none"])
            .args(["--device", "rbox-test.example/synthetic=all", "busybox"])
            .args([
                "stat",
                "-c",
                "%n %t:%T",
                "/dev/synthetic0",
                "/dev/synthetic1",
            ])
            .output()
            .success();
        assert_eq!(
            out.text(),
            "/dev/synthetic0 1:3\n/dev/synthetic1 1:5",
            "{out}"
        );

        let out = env
            .rbox()
            .args(["run", "--rm", "--network=none"])
            .args([
                "--device",
                "rbox-test.example/synthetic=nope",
                "busybox",
                "true",
            ])
            .output()
            .rbox_error();
        assert!(
            out.stderr.contains(
                "Error: setting up CDI devices: unresolvable CDI devices rbox-test.example/synthetic=nope"
            ),
            "{out}"
        );
    });
}

/// Hooks directories: a hook with `when.always` runs for every container, one with
/// `when.annotations` only for a container whose annotation matches; `--hooks-dir` and
/// containers.conf's `hooks_dir` both name them.
#[test]
fn hooks_dirs_inject_matching_hooks() {
    for_each_user("cdi-hooksdir", |env| {
        env.import_busybox("busybox");
        let d = env.path("").display().to_string();
        let log = format!("{d}/hooks.log");
        env.write("hooks.log", "");
        env.write(
            "hooks.d/01-always.json",
            format!(
                r#"{{"version":"1.0.0","hook":{{"path":"/bin/sh","args":["sh","-c","echo always >> {log}"]}},
                    "when":{{"always":true}},"stages":["prestart"]}}"#
            ),
        );
        env.write(
            "hooks.d/02-annotated.json",
            format!(
                r#"{{"version":"1.0.0","hook":{{"path":"/bin/sh","args":["sh","-c","echo annotated >> {log}"]}},
                    "when":{{"annotations":{{"^rbox\\.test$":"^yes$"}}}},"stages":["createRuntime","poststop"]}}"#
            ),
        );
        let run = |flags: &[&str], annotation: &str| {
            std::fs::write(&log, "").unwrap();
            env.rbox()
                .args(flags)
                .args(["run", "--rm", "--network=none", "--annotation", annotation])
                .args(["busybox", "true"])
                .output()
                .success();
            std::fs::read_to_string(&log).unwrap()
        };
        let hooks_dir = format!("{d}/hooks.d");
        assert_eq!(
            run(&["--hooks-dir", &hooks_dir], "rbox.test=yes"),
            "always\nannotated\nannotated\n"
        );
        assert_eq!(
            run(&["--hooks-dir", &hooks_dir], "rbox.test=no"),
            "always\n"
        );
        containers_conf(env, &format!("[engine]\nhooks_dir = [\"{hooks_dir}\"]\n"));
        assert_eq!(run(&[], "rbox.test=yes"), "always\nannotated\nannotated\n");
        // a hook file that does not parse stops the create
        env.write("bad.d/x.json", "{");
        let out = env
            .rbox()
            .args(["--hooks-dir", &format!("{d}/bad.d")])
            .args(["run", "--rm", "--network=none", "busybox", "true"])
            .output()
            .rbox_error();
        assert!(
            out.stderr
                .contains("Error: setting up OCI Hooks: parsing hook \""),
            "{out}"
        );
    });
}

/// A prestart hook gets the init's pid while the init waits: the network namespace it finds
/// there is the container's (a `--network=none` start that has no hook makes that namespace
/// ahead, and the init joins it: with a hook the clone makes it, see runtime::prenet).
#[test]
fn a_prestart_hook_finds_the_containers_network_namespace() {
    for_each_user("cdi-hook-netns", |env| {
        env.import_busybox("busybox");
        let d = env.path("").display().to_string();
        let seen = format!("{d}/hook-netns");
        env.write(
            "hooks.d/01-netns.json",
            format!(
                r#"{{"version":"1.0.0","hook":{{"path":"/bin/sh","args":["sh","-c","pid=$(tr , '\n' | sed -n 's/^ *\"pid\": *//p'); readlink /proc/$pid/ns/net > {seen}"]}},
                    "when":{{"always":true}},"stages":["prestart"]}}"#
            ),
        );
        env.write("hook-netns", "");
        let out = env
            .rbox()
            .args(["--hooks-dir", &format!("{d}/hooks.d")])
            .args(["run", "--rm", "--network=none", "busybox"])
            .args(["readlink", "/proc/self/ns/net"])
            .output()
            .success();
        let hook = std::fs::read_to_string(&seen).unwrap();
        assert!(hook.starts_with("net:["), "{hook:?}");
        assert_eq!(hook.trim(), out.text(), "{out}");
    });
}

/// `--nv` with a synthetic driver: a library named as the driver's in a directory the
/// test's containers.conf names instead of `ldconfig -p`, a program, and /dev/null as a
/// synthetic device node.
#[test]
fn nv_binds_the_driver_files_containers_conf_names() {
    for_each_user("cdi-nv", |env| {
        env.import_busybox("busybox");
        let d = env.path("").display().to_string();
        env.write("nvlib/libnvidia-ml.so.1", "synthetic library\n");
        env.write("nvlib/libunrelated.so.1", "not the driver's\n");
        let smi = env.write(
            "nvbin/nvidia-smi-synthetic",
            "#!/bin/sh\necho synthetic nvidia-smi\n",
        );
        std::fs::set_permissions(&smi, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        containers_conf(
            env,
            &format!(
                "[containers]\nnv_library_dirs = [\"{d}/nvlib\"]\n\
                 nv_binaries = [\"{d}/nvbin/nvidia-smi-synthetic\"]\n\
                 nv_devices = [\"/dev/null:/dev/nvidia-synthetic0\"]\n"
            ),
        );
        let out = env
            .rbox()
            .args([
                "run",
                "--rm",
                "--network=none",
                "--nv",
                "-e",
                "LD_LIBRARY_PATH=/opt/lib",
            ])
            .args(["busybox", "sh", "-c"])
            .arg(
                "cat /usr/local/nvidia/lib64/libnvidia-ml.so.1; ls /usr/local/nvidia/lib64; \
                 echo $LD_LIBRARY_PATH; stat -c %t:%T /dev/nvidia-synthetic0; \
                 nvidia-smi-synthetic",
            )
            .output()
            .success();
        assert_eq!(
            out.text(),
            "synthetic library\nlibnvidia-ml.so.1\n/usr/local/nvidia/lib64:/opt/lib\n1:3\nsynthetic nvidia-smi",
            "{out}"
        );
    });
}

/// `--gpus` asks for the CDI devices `nvidia.com/gpu`: all, a count, or by id; without a
/// spec of that kind, a clear error. The spec here is synthetic (its nodes are /dev/null and
/// /dev/zero).
#[test]
fn gpus_are_nvidia_gpu_cdi_devices() {
    for_each_user("cdi-gpus", |env| {
        env.import_busybox("busybox");
        let d = env.path("").display().to_string();
        containers_conf(env, &format!("[engine]\ncdi_spec_dirs = [\"{d}/cdi\"]\n"));
        let out = env
            .rbox()
            .args([
                "run",
                "--rm",
                "--network=none",
                "--gpus",
                "all",
                "busybox",
                "true",
            ])
            .output()
            .rbox_error();
        assert!(
            out.stderr
                .contains("--gpus: no CDI spec of nvidia.com/gpu in "),
            "{out}"
        );
        env.write(
            "cdi/synthetic-nvidia-gpu.json",
            r#"{"cdiVersion":"0.6.0","kind":"nvidia.com/gpu",
                "containerEdits":{"env":["RBOX_SYNTHETIC_GPU_SPEC=1"]},
                "devices":[
                  {"name":"0","containerEdits":{"deviceNodes":[{"path":"/dev/synthetic-gpu0","hostPath":"/dev/null"}]}},
                  {"name":"1","containerEdits":{"deviceNodes":[{"path":"/dev/synthetic-gpu1","hostPath":"/dev/zero"}]}}]}"#,
        );
        let gpus = |g: &str| {
            env.rbox()
                .args([
                    "run",
                    "--rm",
                    "--network=none",
                    "--gpus",
                    g,
                    "busybox",
                    "sh",
                    "-c",
                ])
                .arg("echo $RBOX_SYNTHETIC_GPU_SPEC; ls /dev | grep synthetic-gpu")
                .output()
                .success()
                .text()
        };
        assert_eq!(gpus("all"), "1\nsynthetic-gpu0\nsynthetic-gpu1");
        assert_eq!(gpus("1"), "1\nsynthetic-gpu0");
        assert_eq!(gpus("device=1"), "1\nsynthetic-gpu1");
        let out = env
            .rbox()
            .args([
                "run",
                "--rm",
                "--network=none",
                "--gpus",
                "3",
                "busybox",
                "true",
            ])
            .output()
            .rbox_error();
        assert!(
            out.stderr
                .contains("unresolvable CDI devices nvidia.com/gpu=2"),
            "{out}"
        );
    });
}
