//! `rbox inspect` and `rbox image inspect`: the configuration and state of containers and
//! images as JSON shaped like `podman inspect` (so `--format '{{.State.Running}}'` and
//! `{{json .Config}}` scripts keep working). Containers are looked up first, then images.
//! Read-only: no user namespace, no lock.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{bail, Result};
use rbox_storage::{ContainerDir, ImageRecord, Store};
use serde_json::{json, Map, Value};

use super::common::read_store;
use crate::cli::complete;
use crate::context::Context;
use crate::format::{self, Row};
use crate::state::{self, ContainerRecord, MountKind, Status};

#[derive(Debug, Clone, clap::Args)]
pub struct InspectArgs {
    /// What NAME refers to: container, image, volume, or all (containers, then images, then
    /// volumes)
    #[arg(short = 't', long = "type", value_name = "TYPE", default_value = "all",
          value_parser = ["all", "container", "image", "volume"])]
    pub kind: String,
    /// Output format: json, or a Go template such as '{{.State.Running}}'
    #[arg(short = 'f', long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// Add each container's sizes: SizeRw (its writable layer) and SizeRootFs (that and its
    /// image's layers), in bytes
    #[arg(short = 's', long)]
    pub size: bool,
    /// Containers or images to inspect
    #[arg(value_name = "NAME", required_unless_present = "latest", add = complete::object_candidates())]
    pub names: Vec<String>,
    /// The container created last
    #[arg(short = 'l', long)]
    pub latest: bool,
}

pub fn run(g: &Context, a: InspectArgs) -> Result<ExitCode> {
    let names = super::targets::with_latest(g, a.latest, &a.names, "arguments")?;
    inspect(g, &a.kind, a.format.as_deref(), &names, a.size)
}

/// Inspect `names` of `kind` ("all", "container", "image") and print them; containers with
/// their sizes when `size` (`-s`).
pub fn inspect(
    g: &Context,
    kind: &str,
    fmt: Option<&str>,
    names: &[String],
    size: bool,
) -> Result<ExitCode> {
    let mut store: Option<Store> = None;
    let mut items = Vec::new();
    let mut missing = Vec::new();
    for name in names {
        if kind == "all" || kind == "container" {
            if let Ok(rec) = state::lookup(g, name) {
                if store.is_none() {
                    store = Some(read_store(g)?);
                }
                let s = store.as_ref().expect("opened above");
                let dir = s.container_dir(&rec.id).ok();
                let mut v = container_json(s.root(), &rec, dir.as_ref());
                // paused is live state, which the record alone does not tell
                if state::is_paused(g, &rec) {
                    v["State"]["Status"] = "paused".into();
                    v["State"]["Running"] = false.into();
                    v["State"]["Paused"] = true.into();
                }
                if state::is_running(&rec) {
                    v["ExecIDs"] = state::exec_session_ids(g, &rec).into();
                }
                items.push(with_live_keys(g, s, &rec, v, size));
                continue;
            }
        }
        if kind == "all" || kind == "image" {
            if store.is_none() {
                store = Some(read_store(g)?);
            }
            let s = store.as_ref().expect("opened above");
            match s.lookup_image(name) {
                Ok(rec) => {
                    let json = image_json(s, &rec)?;
                    let view = image_view(&json);
                    items.push(Row { json, view });
                    continue;
                }
                Err(rbox_storage::Error::ImageNotFound(_)) => {}
                Err(e) => return Err(anyhow::Error::new(e).context(format!("inspect `{name}`"))),
            }
        }
        if kind == "all" || kind == "volume" {
            if store.is_none() {
                store = Some(read_store(g)?);
            }
            let s = store.as_ref().expect("opened above");
            if let Some(v) = super::volume::inspect_value(g, s, name)? {
                items.push(plain(v));
                continue;
            }
        }
        missing.push(name.clone());
    }
    // Like podman: print what was found (an empty JSON list when nothing was, without
    // --format), then fail naming what was not.
    if !items.is_empty() || missing.is_empty() || fmt.is_none() {
        print!("{}", format::render_inspect_rows(fmt, &items)?);
    }
    if !missing.is_empty() {
        // Podman's words for each kind, which scripts match.
        let each: Vec<String> = missing
            .iter()
            .map(|n| match kind {
                "container" => format!("no such container {n}"),
                "image" => format!("{n}: image not known"),
                "volume" => format!("no such volume {n}"),
                _ => format!("no such object: \"{n}\""),
            })
            .collect();
        bail!("inspecting object: {}", each.join("; "));
    }
    Ok(ExitCode::SUCCESS)
}

/// A container as `podman inspect` shows it; `root` is the store it lives in, `dir` the
/// container's layer directories there (none when they cannot be read).
pub fn container_json(
    root: &std::path::Path,
    rec: &ContainerRecord,
    dir: Option<&ContainerDir>,
) -> Value {
    let s = &rec.spec;
    let st = &rec.state;
    let (path, args) = match s.args.split_first() {
        Some((p, rest)) => (p.clone(), rest.to_vec()),
        None => (String::new(), Vec::new()),
    };
    let mut binds = Vec::new();
    let mut tmpfs = Map::new();
    let mut mounts = Vec::new();
    for m in &s.mounts {
        let rw = !m.options.iter().any(|o| o == "ro");
        if m.kind == MountKind::Tmpfs {
            tmpfs.insert(m.destination.clone(), Value::String(m.options.join(",")));
        } else if m.kind == MountKind::Bind {
            let opts = if m.options.is_empty() {
                String::new()
            } else {
                format!(":{}", m.options.join(","))
            };
            binds.push(format!("{}:{}{opts}", m.source, m.destination));
        }
        // a volume, as Podman shows one: its name, the local driver, a recursive bind
        if let Some(v) = s.volumes.iter().find(|v| v.destination == m.destination) {
            let mut options = m.options.clone();
            options.retain(|o| o != "ro");
            options.push("rbind".into());
            mounts.push(json!({
                "Type": "volume",
                "Name": v.name,
                "Source": m.source,
                "Destination": m.destination,
                "Driver": "local",
                "Mode": "",
                "Options": options,
                "RW": rw,
                "Propagation": "rprivate",
            }));
            continue;
        }
        // an image as Podman shows one: no options (rbox's are its layer directories),
        // read-only unless `rw`
        let (options, rw) = match m.kind {
            MountKind::Image => (Value::Null, m.options.iter().any(|o| o == "rw")),
            _ => (json!(m.options), rw),
        };
        mounts.push(json!({
            "Type": m.kind,
            "Source": m.source,
            "Destination": m.destination,
            "Driver": "",
            "Mode": "",
            "Options": options,
            "RW": rw,
            "Propagation": if m.kind == MountKind::Bind { "rprivate" } else { "" },
        }));
    }
    let running = st.status == Status::Running;
    // {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}, as Podman shows published ports
    let mut ports = Map::new();
    for p in &s.ports {
        let key = format!("{}/{}", p.container_port, p.protocol);
        let binding = json!({"HostIp": p.host_ip, "HostPort": p.host_port.to_string()});
        match ports.entry(key).or_insert_with(|| json!([])) {
            Value::Array(a) => a.push(binding),
            _ => unreachable!("inserted as an array"),
        }
    }
    let mut security_opts: Vec<String> = Vec::new();
    if s.no_new_privileges {
        security_opts.push("no-new-privileges".into());
    }
    security_opts.extend(s.seccomp.security_opt());
    security_opts.extend(s.opts.fakeroot.security_opt());
    let mut v = json!({
        "Id": rec.id,
        "Created": rec.created,
        "Path": path,
        "Args": args,
        "State": {
            "Status": st.status.as_str(),
            "Running": running,
            "Paused": false,
            "Restarting": false,
            "OOMKilled": false,
            "Dead": false,
            "Pid": if running { st.pid } else { 0 },
            "ExitCode": st.exit_code.unwrap_or(0),
            "Error": st.error,
            "StartedAt": st.started_at,
            "FinishedAt": st.finished_at,
            // an object even without a healthcheck, as Podman 4.3 shows it, so that
            // `{{.State.Health.Status}}` prints "" rather than failing
            "Health": s
                .healthcheck
                .as_ref()
                .and_then(|_| crate::runtime::health::load(root, &rec.id))
                .and_then(|h| serde_json::to_value(h).ok())
                .unwrap_or_else(|| json!({"Status": "", "FailingStreak": 0, "Log": Value::Null})),
        },
        "Image": rec.image_id.strip_prefix("sha256:").unwrap_or(&rec.image_id),
        "ImageDigest": rec.image_digest,
        "ImageName": rec.image_name,
        "Name": rec.name,
        "RestartCount": st.restart_count,
        "Driver": rec.driver,
        // the OCI runtime spec the container runs from (rbox is its own OCI runtime)
        "OCIConfigPath": crate::layout::oci_config(root, &rec.id),
        "OCIRuntime": "rbox",
        "Mounts": mounts,
        "Config": {
            "Hostname": s.hostname,
            "Domainname": "",
            "User": s.user,
            "AttachStdin": s.interactive,
            "AttachStdout": true,
            "AttachStderr": true,
            "Tty": s.tty,
            "OpenStdin": s.interactive,
            "StdinOnce": false,
            "Env": s.env,
            "Cmd": s.cmd,
            "Image": rec.image_name,
            "Volumes": Value::Null,
            "WorkingDir": s.workdir,
            "Entrypoint": s.entrypoint,
            "Labels": s.labels,
            "Annotations": {},
            "StopSignal": s.stop_signal.clone().unwrap_or_else(|| "SIGTERM".into()),
            "ExposedPorts": s.exposed_ports.iter().map(|p| (p.clone(), json!({}))).collect::<Map<String, Value>>(),
            "Healthcheck": s.healthcheck.as_ref().map(|h| json!({
                "Test": h.test,
                "Interval": h.interval.as_nanos() as u64,
                "Timeout": h.timeout.as_nanos() as u64,
                "StartPeriod": h.start_period.as_nanos() as u64,
                "Retries": h.retries,
            })),
            "HealthcheckOnFailureAction": s.healthcheck.as_ref().map(|h| h.on_failure.as_str()).unwrap_or("none"),
        },
        "HostConfig": {
            "Binds": binds,
            "PortBindings": ports,
            // Podman shows a joined namespace with what it joins: `container:<id>`, `ns:PATH`
            "NetworkMode": if s.network.joins() {
                format!("{}:{}", s.network, s.network_options)
            } else {
                s.network.to_string()
            },
            "UsernsMode": s.userns,
            "Privileged": s.privileged,
            "ReadonlyRootfs": s.read_only,
            "CapAdd": s.cap_add,
            "CapDrop": s.cap_drop,
            "SecurityOpt": security_opts,
            "AutoRemove": rec.auto_remove,
            "Tmpfs": tmpfs,
            "Init": s.init,
            "LogConfig": {
                "Type": s.log.driver(),
                "Config": {},
                "Path": s.log.file(root, &rec.id),
                "Tag": "",
                "Size": s.log.max_size.map(rbox_storage::human_size).unwrap_or_else(|| "0B".into()),
            },
            "RestartPolicy": {
                "Name": s.restart.name,
                "MaximumRetryCount": s.restart.max_retries,
            },
        },
        "NetworkSettings": network_settings(rec, ports.clone()),
    });
    v["Config"]["CreateCommand"] = json!(rec.create_command);
    // rootless, a --device is a bind mount (in `Mounts`), as rootless Podman shows it
    v["HostConfig"]["Devices"] = json!([]);
    v["HostConfig"]["ContainerIDFile"] = json!(s
        .opts
        .cidfile
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default());
    v["HostConfig"]["PublishAllPorts"] = json!(s.opts.publish_all);
    // ONBUILD triggers are for builds on the image; a container has none (null, as Podman)
    v["Config"]["OnBuild"] = Value::Null;
    v["HostConfig"]["VolumesFrom"] = if s.volumes_from.is_empty() {
        Value::Null
    } else {
        json!(s.volumes_from)
    };
    run_opts_json(&mut v, s);
    if let Value::Object(top) = &mut v {
        // keys Podman always shows; rbox has no pods, infra or service containers and no
        // exec sessions, so these are what Podman shows for a container without them
        top.extend([
            (
                "Rootfs".to_string(),
                json!(rec
                    .rootfs
                    .as_ref()
                    .map(|r| r.display().to_string())
                    .unwrap_or_default()),
            ),
            ("Pod".to_string(), json!("")),
            ("Namespace".to_string(), json!("")),
            ("IsInfra".to_string(), json!(false)),
            ("IsService".to_string(), json!(false)),
            // `--requires`, by id
            ("Dependencies".to_string(), json!(s.opts.requires)),
            // (the `exec -d` sessions of the current start: live state, set by the caller)
            ("ExecIDs".to_string(), json!([])),
            // `--pidfile` (rbox writes the init's pid nowhere else)
            (
                "PidFile".to_string(),
                json!(s
                    .opts
                    .pidfile
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()),
            ),
        ]);
        // the files rbox binds over /etc in the container, once a start has written them
        // (Podman's are "" before the first start too); hosts is the image's own with
        // --no-hosts
        let [hosts, hostname, resolv] = crate::runtime::launch::etc_sources(root, rec);
        let shown = |p: std::path::PathBuf, used: bool| {
            json!(if used && p.exists() {
                p.display().to_string()
            } else {
                String::new()
            })
        };
        let caps = crate::runtime::caps::kept(
            &s.cap_add,
            &s.cap_drop,
            s.privileged,
            crate::runtime::caps::last_cap(),
        )
        .map(crate::runtime::caps::names)
        .unwrap_or_default();
        top.extend([
            ("ResolvConfPath".to_string(), shown(resolv, true)),
            ("HostnamePath".to_string(), shown(hostname, true)),
            ("HostsPath".to_string(), shown(hosts, !s.no_hosts)),
            (
                "StaticDir".to_string(),
                json!(crate::layout::container_dir(root, &rec.id)),
            ),
            // rbox's OCI spec gives the process one set: bounding = effective = permitted
            ("EffectiveCaps".to_string(), json!(caps)),
            ("BoundingCaps".to_string(), json!(caps)),
            ("GraphDriver".to_string(), graph_driver(root, rec, dir)),
            // rbox applies no SELinux or AppArmor label: Podman's values without them
            ("AppArmorProfile".to_string(), json!("")),
            ("MountLabel".to_string(), json!("")),
            ("ProcessLabel".to_string(), json!("")),
        ]);
        // the version of the OCI runtime spec rbox writes for the container
        v["State"]["OciVersion"] = json!(oci_spec::runtime::VERSION);
    }
    v
}

/// A container's JSON `v` with what its live state and its storage tell: State.ConmonPid (the
/// pid of the rbox process that monitors the running container: the detached monitor, or
/// the `rbox run` attached to it), ConmonPidFile (`--conmon-pidfile`, else where a detached
/// monitor writes its pid) and, with `size`, SizeRw and SizeRootFs. As Podman's, the JSON
/// leaves out a ConmonPid of 0 and, without `-s`, the sizes, where templates see 0 and, for
/// SizeRw, null (Podman's is a nil pointer).
fn with_live_keys(
    g: &Context,
    store: &Store,
    rec: &ContainerRecord,
    mut v: Value,
    size: bool,
) -> Row {
    let monitor = if rec.state.status == Status::Running {
        state::live_pids(g, rec).map_or(0, |(_, m)| m)
    } else {
        0
    };
    let pidfile = rec.spec.opts.conmon_pidfile.clone().or_else(|| {
        state::live_runtime_dir(g, rec).map(|d| crate::layout::monitor_pid(&d, &rec.id))
    });
    v["ConmonPidFile"] = json!(pidfile.map(|p| p.display().to_string()).unwrap_or_default());
    if size {
        let (rw, rootfs) = super::ps::container_sizes(store, rec);
        v["SizeRw"] = json!(rw);
        v["SizeRootFs"] = json!(rootfs);
    }
    let mut view = v.clone();
    view["State"]["ConmonPid"] = json!(monitor);
    if !size {
        view["SizeRootFs"] = json!(0);
        view["SizeRw"] = Value::Null;
    }
    if monitor != 0 {
        v["State"]["ConmonPid"] = json!(monitor);
    }
    Row { json: v, view }
}

/// `GraphDriver` as Podman fills it: the driver's name and, for an overlay, the directories
/// of the root's union (`LowerDir` top-most first, joined with `:` as in overlay's
/// `lowerdir=`); null data for a copy (Podman's `vfs`) or when the directories are unknown.
fn graph_driver(
    root: &std::path::Path,
    rec: &ContainerRecord,
    dir: Option<&ContainerDir>,
) -> Value {
    let data = dir
        .filter(|_| rec.driver != rbox_storage::Driver::Copy)
        .map(|d| {
            let lower: Vec<String> = d
                .overlay_lowers()
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            json!({
                "LowerDir": lower.join(":"),
                "UpperDir": d.upper,
                "WorkDir": d.work,
                // every container's root is assembled there, each in its own mount namespace
                "MergedDir": crate::layout::mount_point(root),
            })
        });
    json!({"Name": rec.driver.as_str(), "Data": data})
}

/// `NetworkSettings` as Podman 4.3 shows it for a rootless container: slirp4netns and pasta
/// give the container no address of a bridge, so the address keys are empty; `SandboxKey` is
/// the running container's own network namespace (none for `none`, `host` or a joined one,
/// as in Podman).
fn network_settings(rec: &ContainerRecord, ports: Map<String, Value>) -> Value {
    let own_net = rec.spec.network.is_bridge() && rec.state.status == Status::Running;
    json!({
        "EndpointID": "",
        "Gateway": "",
        "IPAddress": "",
        "IPPrefixLen": 0,
        "IPv6Gateway": "",
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "MacAddress": "",
        "Bridge": "",
        "SandboxID": "",
        "HairpinMode": false,
        "LinkLocalIPv6Address": "",
        "LinkLocalIPv6PrefixLen": 0,
        "Ports": ports,
        "SandboxKey": if own_net { format!("/proc/{}/ns/net", rec.state.pid) } else { String::new() },
    })
}

/// The `run` flags of `state::RunOpts` (and the name resolution ones) where Podman shows them
/// in `Config` and `HostConfig`.
fn run_opts_json(v: &mut Value, s: &crate::state::Spec) {
    let o = &s.opts;
    // Podman shows an unlimited rlimit as -1
    let limit = |n: u64| if n == u64::MAX { -1 } else { n as i64 };
    let ulimits: Vec<Value> = o
        .ulimits
        .iter()
        .map(|(n, soft, hard)| {
            json!({
                "Name": format!("RLIMIT_{}", n.to_ascii_uppercase()),
                "Soft": limit(*soft),
                "Hard": limit(*hard),
            })
        })
        .collect();
    let umask = o.umask.unwrap_or(crate::runtime::oci::DEFAULT_UMASK);
    let mut config = json!({
        "StopTimeout": o.stop_timeout().as_secs(),
        "Timeout": o.timeout.unwrap_or(0),
        "Umask": format!("{umask:04o}"),
        "Annotations": o.annotations,
        "Passwd": !o.no_passwd,
        "Timezone": o.timezone.clone().unwrap_or_default(),
    });
    // Podman 4.3 lists the file secrets only, and only when there are any; never the data
    let secrets: Vec<Value> = s
        .secrets
        .iter()
        .filter(|x| !x.env)
        .map(|x| json!({"Name": x.name, "ID": x.id, "UID": x.uid, "GID": x.gid, "Mode": x.mode}))
        .collect();
    if !secrets.is_empty() {
        config["Secrets"] = Value::Array(secrets);
    }
    // Podman 4.3's JSON leaves both out when unset, but its templates see false and []
    // (struct fields): rbox's templates read the JSON, so both are always there
    config["SystemdMode"] = json!(o.systemd);
    config["sdNotifyMode"] = json!(o.sdnotify.as_deref().unwrap_or("container"));
    config["ChrootDirs"] = json!(o.chrootdirs);
    let r = &o.resources;
    let map = |m: &[(u32, u32, u32)]| -> Vec<String> {
        m.iter().map(|(c, h, n)| format!("{c}:{h}:{n}")).collect()
    };
    let host = json!({
        // as Podman: the container's own id maps, in ids of the rootless namespace
        "IDMappings": {"UidMap": map(&o.uid_map), "GidMap": map(&o.gid_map)},
        "Ulimits": ulimits,
        "ShmSize": o.shm_size.unwrap_or(64 << 20),
        "Memory": r.memory.unwrap_or(0),
        "MemorySwap": r.memory_swap.unwrap_or(0),
        "MemoryReservation": r.memory_reservation.unwrap_or(0),
        "MemorySwappiness": r.memory_swappiness.unwrap_or(0),
        "NanoCpus": r.nano_cpus.unwrap_or(0),
        "CpuShares": r.cpu_shares.unwrap_or(0),
        "CpusetCpus": r.cpuset_cpus.clone().unwrap_or_default(),
        "CpusetMems": r.cpuset_mems.clone().unwrap_or_default(),
        "CpuQuota": r.cpu_quota.unwrap_or(0),
        "CpuPeriod": r.cpu_period.unwrap_or(0),
        "BlkioWeight": r.blkio_weight.unwrap_or(0),
        "PidsLimit": r.pids_limit.unwrap_or(0),
        "OomScoreAdj": o.oom_score_adj.unwrap_or(0),
        "OomKillDisable": r.oom_kill_disable,
        "Cgroups": if o.cgroups_disabled { "disabled" } else { "default" },
        "CgroupConf": (!r.cgroup_conf.is_empty()).then_some(&r.cgroup_conf),
        "Dns": s.dns,
        "DnsSearch": s.dns_search,
        "DnsOptions": s.dns_options,
        "ExtraHosts": s.add_hosts.iter().map(|(n, a)| format!("{n}:{a}")).collect::<Vec<_>>(),
        "GroupAdd": o.group_add,
        // rbox gives every container pid, uts and ipc namespaces of its own
        "PidMode": "private",
        "UTSMode": "private",
        "IpcMode": "private",
    });
    for (key, add) in [("Config", config), ("HostConfig", host)] {
        if let (Some(Value::Object(to)), Value::Object(add)) = (v.get_mut(key), add) {
            to.extend(add);
        }
    }
}

/// Docker's image config keys as the image config JSON spells them (`config` object of the
/// OCI config), with null lists turned into Podman's defaults.
fn image_config_value(store: &Store, rec: &ImageRecord) -> Result<Value> {
    let cfg = store.image_config(rec)?;
    Ok(serde_json::to_value(&cfg)?)
}

/// What the typed OCI config has no field for, from the raw config: its top-level `comment`
/// (a docker-format commit's `-m`) and the docker format's `config.Healthcheck`.
fn raw_extras(store: &Store, rec: &ImageRecord) -> (String, Option<Value>) {
    let raw = store
        .read_blob(&rec.id)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
    // as Podman: the config's own comment, else its first history entry's (an import's
    // "imported from tarball")
    let comment = raw
        .as_ref()
        .and_then(|v| {
            let own = v
                .get("comment")
                .and_then(Value::as_str)
                .filter(|c| !c.is_empty());
            own.or_else(|| v.get("history")?.get(0)?.get("comment")?.as_str())
                .map(String::from)
        })
        .unwrap_or_default();
    let health = raw
        .as_ref()
        .and_then(|v| v.get("config")?.get("Healthcheck").cloned())
        .filter(|h| !h.is_null());
    (comment, health)
}

/// An item whose templates see what its JSON shows.
fn plain(v: Value) -> Row {
    Row {
        json: v.clone(),
        view: v,
    }
}

/// What templates see of an image: its JSON, with the config fields the image leaves out
/// as Go's zero values, so that `{{.Config.Cmd}}` of an image without one prints `[]` as
/// Podman's does instead of failing.
fn image_view(json: &Value) -> Value {
    let mut view = json.clone();
    if let Some(Value::Object(cfg)) = view.get_mut("Config") {
        for (key, zero) in [
            ("User", json!("")),
            ("ExposedPorts", json!({})),
            ("Env", json!([])),
            ("Entrypoint", json!([])),
            ("Cmd", json!([])),
            ("Volumes", json!({})),
            ("WorkingDir", json!("")),
            ("Labels", json!({})),
            ("StopSignal", json!("")),
        ] {
            cfg.entry(key).or_insert(zero);
        }
    }
    view
}

/// An image as `podman image inspect` shows it.
pub fn image_json(store: &Store, rec: &ImageRecord) -> Result<Value> {
    let cfg = image_config_value(store, rec)?;
    let get = |k: &str| cfg.get(k).cloned().unwrap_or(Value::Null);
    let config = cfg.get("config").cloned().unwrap_or_else(|| json!({}));
    let labels: BTreeMap<String, String> = config
        .get("Labels")
        .and_then(|l| serde_json::from_value(l.clone()).ok())
        .unwrap_or_default();
    let layers: Vec<String> = rec.layers.iter().map(|l| l.diff_id.to_string()).collect();
    let created = rec.created.clone().unwrap_or_default();
    let (comment, health) = raw_extras(store, rec);
    let mut out = json!({
        "Id": rec.id.hex(),
        "Digest": rec.digest.to_string(),
        "RepoTags": rec.names,
        "RepoDigests": super::images::repo_digests(rec),
        "Parent": "",
        "Comment": comment,
        "Created": created,
        "Config": config,
        "Version": "",
        "Author": get("author").as_str().unwrap_or(""),
        "Architecture": get("architecture"),
        "Os": get("os"),
        "Size": rec.size,
        "VirtualSize": rec.size,
        "GraphDriver": {"Name": "overlay", "Data": {"LowerDirs": rec.layers.iter().map(|l| store.layer_path(&l.diff_id).display().to_string()).collect::<Vec<_>>()}},
        "RootFS": {"Type": "layers", "Layers": layers},
        "Labels": labels,
        "Annotations": {},
        "ManifestType": rec.manifest_media_type,
        "User": config.get("User").and_then(Value::as_str).unwrap_or(""),
        "History": cfg.get("history").cloned().unwrap_or_else(|| json!([])),
        "NamesHistory": super::images::names_history(rec),
    });
    // as Podman: only an image with a healthcheck has the key
    if let Some(h) = health {
        out["Healthcheck"] = h;
    }
    Ok(out)
}
