//! The containers/storage configuration file (`storage.conf`), read so that a Podman user's
//! existing setup points rbox at the same places: `$CONTAINERS_STORAGE_CONF`, else
//! `$XDG_CONFIG_HOME/containers/storage.conf` (`~/.config/...`), else
//! `/etc/containers/storage.conf`. Keys honoured, all in `[storage]`: `driver`, `graphroot`,
//! `runroot`, and `rootless_storage_path` (with `$HOME`, `$UID` and `$USER` expanded), and in
//! `[storage.options]` `additionalimagestores` (read-only rbox stores, see
//! `rbox_storage::Store::open_read_only`) and `auto-userns-min-size`, `auto-userns-max-size`,
//! `root-auto-userns-user` (`--userns=auto`, see `runtime::userns_auto`). The system file speaks for root: a user reads only
//! its `driver`, `rootless_storage_path` and `additionalimagestores` from it, as Podman does. Command-line flags win over the file, the file over rbox's
//! defaults; unknown keys are ignored (the file is Podman's too).
//!
//! rbox's store format is not containers/storage's: a root that holds containers/storage's
//! own files (`storage.lock`, `overlay-images/`, `vfs-images/`) gets rbox's store in its
//! subdirectory `rbox/` (see [`own_root`]), so Podman's store is never written.
//!
//! `containers.conf` ([`containers`]): `$CONTAINERS_CONF` alone when set, else
//! `/usr/share/containers/containers.conf`, `/etc/containers/containers.conf` and
//! `$XDG_CONFIG_HOME/containers/containers.conf` in that order, a later file's key over an
//! earlier one's. Keys honoured: `[containers]` `dns_servers`, `dns_searches`, `dns_options`,
//! `log_driver`, `log_size_max`, rbox's own `fakeroot` (true, false or "auto", as
//! `--security-opt fakeroot=`; Podman ignores the key) and `nv_libraries`, `nv_library_dirs`,
//! `nv_binaries`, `nv_devices` (what `--nv` binds), `[engine]` `hooks_dir`,
//! `cdi_spec_dirs` and `detach_keys` (of `run`, `start -a`, `attach`), and `[network]` `default_rootless_network_cmd` (pasta or
//! slirp4netns), each a default that the command line overrides. Also in `[containers]`,
//! the defaults of `run` and `create` that Podman 4.3 rootless honours, each under its flag
//! (see `cmd::run::with_containers_conf`): `env` (under the image's ENV), `http_proxy`,
//! `tz`, `umask`, `shm_size` (in powers of 1000, as Podman reads it), `default_ulimits`,
//! `no_hosts`, `annotations`, `volumes`, `devices`, `default_sysctls`,
//! `default_capabilities`, `seccomp_profile`, `pids_limit`, and `pidns`, `utsns`, `ipcns`,
//! `cgroupns`, `userns`, `netns`. Others are ignored (the files are Podman's too), among
//! them those Podman 4.3 ignores as well: `env_host`, `init`, `read_only`, `oom_score_adj`.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde::Deserialize;

/// What storage.conf says, for this user.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Storage {
    pub driver: Option<String>,
    pub graphroot: Option<PathBuf>,
    pub runroot: Option<PathBuf>,
    /// `[storage.options] additionalimagestores`: read-only image stores, in order
    pub additional_image_stores: Vec<PathBuf>,
    /// `[storage.options] auto-userns-min-size`, `auto-userns-max-size` and
    /// `root-auto-userns-user`: `--userns=auto`'s sizes and root's range owner
    pub auto_userns_min_size: Option<u32>,
    pub auto_userns_max_size: Option<u32>,
    pub root_auto_userns_user: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct File {
    #[serde(default)]
    storage: Section,
}

#[derive(Debug, Default, Deserialize)]
struct Section {
    driver: Option<String>,
    graphroot: Option<String>,
    runroot: Option<String>,
    rootless_storage_path: Option<String>,
    #[serde(default)]
    options: Options,
}

#[derive(Debug, Default, Deserialize)]
struct Options {
    #[serde(default)]
    additionalimagestores: Vec<String>,
    #[serde(rename = "auto-userns-min-size")]
    auto_userns_min_size: Option<u32>,
    #[serde(rename = "auto-userns-max-size")]
    auto_userns_max_size: Option<u32>,
    #[serde(rename = "root-auto-userns-user")]
    root_auto_userns_user: Option<String>,
}

/// The file that applies, and whether it is the system one.
fn storage_conf_path() -> Option<(PathBuf, bool)> {
    if let Some(p) = std::env::var_os("CONTAINERS_STORAGE_CONF") {
        return Some((PathBuf::from(p), false));
    }
    let user = dirs::config_dir().map(|d| d.join("containers/storage.conf"));
    if let Some(u) = user.filter(|u| u.exists()) {
        return Some((u, false));
    }
    let sys = PathBuf::from("/etc/containers/storage.conf");
    sys.exists().then_some((sys, true))
}

/// The storage.conf that applies, or where the user's would be (as Podman's `info` names
/// it: root's is the system one).
pub fn storage_conf_file() -> PathBuf {
    match storage_conf_path() {
        Some((p, _)) => p,
        None if nix::unistd::geteuid().is_root() => "/etc/containers/storage.conf".into(),
        None => dirs::config_dir()
            .unwrap_or_default()
            .join("containers/storage.conf"),
    }
}

/// Read storage.conf, if there is one. A file that exists but does not parse is an error
/// (silently using other directories would split the user's images between two stores).
pub fn storage() -> Result<Storage> {
    let Some((path, system)) = storage_conf_path() else {
        return Ok(Storage::default());
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Storage::default()),
        Err(e) => return Err(e).with_context(|| format!("read `{}`", path.display())),
    };
    let uid = nix::unistd::geteuid().as_raw();
    let vars = Vars {
        home: dirs::home_dir().unwrap_or_default(),
        uid,
        user: crate::runtime::userns::user_name(uid).unwrap_or_else(|| uid.to_string()),
    };
    parse(&text, system, uid == 0, &vars).with_context(|| format!("parse `{}`", path.display()))
}

struct Vars {
    home: PathBuf,
    uid: u32,
    user: String,
}

fn parse(text: &str, system: bool, root: bool, vars: &Vars) -> Result<Storage> {
    let f: File = from_toml(text).map_err(|e| anyhow::anyhow!("{}", e.message()))?;
    let s = f.storage;
    let nonempty = |v: Option<String>| v.filter(|v| !v.is_empty());
    let expand = |v: String| {
        PathBuf::from(
            v.replace("$HOME", &vars.home.to_string_lossy())
                .replace("$UID", &vars.uid.to_string())
                .replace("$USER", &vars.user),
        )
    };
    let mut out = Storage {
        driver: nonempty(s.driver),
        // shared stores are for everyone: the system file's apply to users too
        additional_image_stores: s
            .options
            .additionalimagestores
            .into_iter()
            .filter(|p| !p.is_empty())
            .map(expand)
            .collect(),
        auto_userns_min_size: s.options.auto_userns_min_size,
        auto_userns_max_size: s.options.auto_userns_max_size,
        root_auto_userns_user: s.options.root_auto_userns_user,
        ..Storage::default()
    };
    if root || !system {
        out.graphroot = nonempty(s.graphroot).map(expand);
        out.runroot = nonempty(s.runroot).map(expand);
    }
    if !root {
        if let Some(p) = nonempty(s.rootless_storage_path) {
            out.graphroot = Some(expand(p));
        }
    }
    Ok(out)
}

/// `text` with each line that holds only a comment made empty (its line number kept for the
/// parser's errors). The files as distributions ship them are mostly comments (Debian's
/// containers.conf: 24 KB, 20 lines of settings), which the TOML parser reads character by
/// character on every `rbox run`: a tenth of a millisecond of the start-up. Left whole when
/// the file has a multi-line string, where such a line could be part of a value.
fn blank_comment_lines(text: &str) -> std::borrow::Cow<'_, str> {
    without_comment_lines(text, true)
}

/// `text` as [`blank_comment_lines`] makes it, or with the lines it blanks dropped
/// (`keep_lines` false), empty ones too: what the parser reads on the way that succeeds.
fn without_comment_lines(text: &str, keep_lines: bool) -> std::borrow::Cow<'_, str> {
    let mut out = String::with_capacity(text.len() / 8);
    for line in text.split_inclusive('\n') {
        let body = line.trim_start();
        if body.starts_with('#') || (!keep_lines && body.is_empty()) {
            if keep_lines && line.ends_with('\n') {
                out.push('\n');
            }
        } else if line.contains(['"', '\'']) && (line.contains("\"\"\"") || line.contains("'''")) {
            // (a multi-line string opens on a line that is not a comment: one pass finds it)
            return text.into();
        } else {
            out.push_str(line);
        }
    }
    out.into()
}

/// A TOML file `text` parsed from its settings alone ([`without_comment_lines`]); where that
/// fails, parsed again with its comments blanked, so that the error names the file's line.
fn from_toml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, toml::de::Error> {
    toml::from_str(&without_comment_lines(text, false))
        .or_else(|_| toml::from_str(&blank_comment_lines(text)))
}

/// What containers.conf says (the keys rbox honours).
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
pub struct Containers {
    pub dns_servers: Option<Vec<String>>,
    pub dns_searches: Option<Vec<String>>,
    pub dns_options: Option<Vec<String>>,
    pub log_driver: Option<String>,
    /// bytes; -1 (or absent) for no limit
    pub log_size_max: Option<i64>,
    /// `[network] default_rootless_network_cmd`
    #[serde(skip)]
    pub network_cmd: Option<String>,
    /// rbox's own `fakeroot`: the `--security-opt fakeroot=` of containers that give none
    pub fakeroot: Option<FakerootSetting>,
    /// `[engine] hooks_dir`: the OCI hooks directories (see `runtime::ocihooks`)
    #[serde(skip)]
    pub hooks_dir: Option<Vec<String>>,
    /// `[engine] cdi_spec_dirs`: where CDI specs are read (see `runtime::cdi`)
    #[serde(skip)]
    pub cdi_spec_dirs: Option<Vec<String>>,
    /// `[engine] detach_keys`: the detach keys when `--detach-keys` is not given
    #[serde(skip)]
    pub detach_keys: Option<String>,
    /// rbox's own `nv_libraries`, `nv_library_dirs`, `nv_binaries`, `nv_devices`: what
    /// `--nv` binds (see `runtime::nvidia`)
    pub nv_libraries: Option<Vec<String>>,
    pub nv_library_dirs: Option<Vec<String>>,
    pub nv_binaries: Option<Vec<String>>,
    pub nv_devices: Option<Vec<String>>,
    /// `run`/`create` defaults, each under its flag (see `cmd::run::with_containers_conf`):
    /// `env` (KEY=VALUE, under the image's ENV), `http_proxy`, `tz`, `umask`, `shm_size`,
    /// `default_ulimits`, `no_hosts`, `annotations`, `volumes`, `devices`
    pub env: Option<Vec<String>>,
    pub http_proxy: Option<bool>,
    pub tz: Option<String>,
    pub umask: Option<String>,
    pub shm_size: Option<String>,
    pub default_ulimits: Option<Vec<String>>,
    pub no_hosts: Option<bool>,
    pub annotations: Option<Vec<String>>,
    pub volumes: Option<Vec<String>>,
    pub devices: Option<Vec<String>>,
    /// `default_sysctls` (under `--sysctl`) and `default_capabilities` (the set that
    /// `--cap-add` and `--cap-drop` change)
    pub default_sysctls: Option<Vec<String>>,
    pub default_capabilities: Option<Vec<String>>,
    /// `seccomp_profile`: the `--security-opt seccomp=` of containers that give none
    pub seccomp_profile: Option<String>,
    /// `pids_limit`: the `--pids-limit` of containers that give none (0 or less: none)
    pub pids_limit: Option<i64>,
    /// the namespace modes of `--pid`, `--uts`, `--ipc`, `--cgroupns`, `--userns` and
    /// `--network` (`private`: the default)
    pub pidns: Option<String>,
    pub utsns: Option<String>,
    pub ipcns: Option<String>,
    pub cgroupns: Option<String>,
    pub userns: Option<String>,
    pub netns: Option<String>,
}

/// `fakeroot = true|false|"auto"` in containers.conf.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum FakerootSetting {
    Bool(bool),
    Word(String),
}

impl FakerootSetting {
    /// The `--security-opt` it stands for.
    pub fn security_opt(&self) -> Result<String> {
        match self {
            FakerootSetting::Bool(b) => Ok(format!("fakeroot={b}")),
            FakerootSetting::Word(w) if w == "auto" => Ok("fakeroot=auto".into()),
            FakerootSetting::Word(w) => {
                anyhow::bail!(
                    "invalid fakeroot {w:?} in containers.conf: give true, false or \"auto\""
                )
            }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct ContainersFile {
    #[serde(default)]
    containers: Containers,
    #[serde(default)]
    network: NetworkSection,
    #[serde(default)]
    engine: EngineSection,
}

#[derive(Debug, Default, Deserialize)]
struct EngineSection {
    hooks_dir: Option<Vec<String>>,
    cdi_spec_dirs: Option<Vec<String>>,
    detach_keys: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct NetworkSection {
    default_rootless_network_cmd: Option<String>,
}

/// Read containers.conf (see the module's doc). A file that exists but does not parse is an
/// error, as for storage.conf.
pub fn containers() -> Result<Containers> {
    let paths: Vec<PathBuf> = match std::env::var_os("CONTAINERS_CONF") {
        Some(p) => vec![PathBuf::from(p)],
        None => {
            let mut v = vec![
                PathBuf::from("/usr/share/containers/containers.conf"),
                PathBuf::from("/etc/containers/containers.conf"),
            ];
            v.extend(dirs::config_dir().map(|d| d.join("containers/containers.conf")));
            v
        }
    };
    let mut out = Containers::default();
    for p in paths {
        let text = match std::fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("read `{}`", p.display())),
        };
        let f: ContainersFile =
            from_toml(&text).with_context(|| format!("parse `{}`", p.display()))?;
        let mut c = f.containers;
        c.hooks_dir = f.engine.hooks_dir;
        c.cdi_spec_dirs = f.engine.cdi_spec_dirs;
        c.detach_keys = f.engine.detach_keys;
        c.network_cmd = f.network.default_rootless_network_cmd;
        out = c.over(out);
    }
    Ok(out)
}

impl Containers {
    /// This file's keys over an earlier file's (`earlier`): a key set here wins.
    fn over(self, earlier: Containers) -> Containers {
        macro_rules! later_wins {
            ($($k:ident),* $(,)?) => {
                Containers { $($k: self.$k.or(earlier.$k)),* }
            };
        }
        later_wins!(
            dns_servers,
            dns_searches,
            dns_options,
            log_driver,
            log_size_max,
            network_cmd,
            fakeroot,
            hooks_dir,
            cdi_spec_dirs,
            detach_keys,
            nv_libraries,
            nv_library_dirs,
            nv_binaries,
            nv_devices,
            env,
            http_proxy,
            tz,
            umask,
            shm_size,
            default_ulimits,
            no_hosts,
            annotations,
            volumes,
            devices,
            default_sysctls,
            default_capabilities,
            seccomp_profile,
            pids_limit,
            pidns,
            utsns,
            ipcns,
            cgroupns,
            userns,
            netns,
        )
    }
}

/// Where rbox keeps its store given the root `dir`: `dir` itself, or `dir/rbox` when `dir`
/// holds containers/storage's own store (Podman's), which rbox must never write.
pub fn own_root(dir: &Path) -> PathBuf {
    let podmans = ["storage.lock", "overlay-images", "vfs-images"]
        .iter()
        .any(|f| dir.join(f).exists());
    if podmans {
        tracing::debug!(
            "`{}` holds containers/storage's store: rbox keeps its own in `rbox/` there",
            dir.display()
        );
        dir.join("rbox")
    } else {
        dir.to_path_buf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        Vars {
            home: "/home/u".into(),
            uid: 1000,
            user: "u".into(),
        }
    }

    const CONF: &str = r#"
[storage]
driver = "overlay"
graphroot = "/var/lib/containers/storage"
runroot = "/run/containers/storage"
rootless_storage_path = "$HOME/.local/share/containers/$USER-$UID"

[storage.options]
additionalimagestores = []
"#;

    #[test]
    fn fakeroot_setting() {
        let read = |t: &str| {
            toml::from_str::<ContainersFile>(t)
                .unwrap()
                .containers
                .fakeroot
        };
        let opt = |t: &str| read(t).unwrap().security_opt();
        assert_eq!(
            opt("[containers]\nfakeroot = true\n").unwrap(),
            "fakeroot=true"
        );
        assert_eq!(
            opt("[containers]\nfakeroot = false\n").unwrap(),
            "fakeroot=false"
        );
        assert_eq!(
            opt("[containers]\nfakeroot = \"auto\"\n").unwrap(),
            "fakeroot=auto"
        );
        assert!(opt("[containers]\nfakeroot = \"yes\"\n").is_err());
        assert_eq!(read("[containers]\n"), None);
    }

    #[test]
    fn engine_detach_keys() {
        let read = |t: &str| {
            toml::from_str::<ContainersFile>(t)
                .unwrap()
                .engine
                .detach_keys
        };
        assert_eq!(
            read("[engine]\ndetach_keys = \"ctrl-a\"\n").as_deref(),
            Some("ctrl-a")
        );
        assert_eq!(read("[engine]\ndetach_keys = \"\"\n").as_deref(), Some(""));
        assert_eq!(read("[engine]\n"), None);
    }

    #[test]
    fn comment_lines_are_blanked_where_they_cannot_be_values() {
        let text = "# head\n[containers]\n  # indented\ndns_servers = [\n  # in an array\n  \"1.1.1.1\", # after\n]\r\n#last";
        let blanked = blank_comment_lines(text);
        assert_eq!(
            blanked,
            "\n[containers]\n\ndns_servers = [\n\n  \"1.1.1.1\", # after\n]\r\n"
        );
        // the same lines, so a parse error names the line of the file
        assert_eq!(blanked.matches('\n').count(), text.matches('\n').count());
        let read = |t: &str| toml::from_str::<ContainersFile>(t).unwrap().containers;
        assert_eq!(read(&blanked), read(text));
        assert_eq!(read(text).dns_servers, Some(vec!["1.1.1.1".to_string()]));
        // a multi-line string may hold a line that starts with '#': left whole
        let multi = "[containers]\nenv = [\"\"\"A=1\n# not a comment\"\"\"]\n";
        assert_eq!(blank_comment_lines(multi), multi);
        let literal = "[containers]\nenv = ['''A=1\n# not a comment''']\n";
        assert_eq!(blank_comment_lines(literal), literal);
        let bad = "# one\n# two\n[containers]\ndns_servers = 1\n";
        let e = toml::from_str::<ContainersFile>(&blank_comment_lines(bad)).unwrap_err();
        assert!(e.to_string().contains("line 4"), "{e}");
        // read from its settings alone, the same; an error still names the file's line
        assert_eq!(
            without_comment_lines(text, false),
            "[containers]\ndns_servers = [\n  \"1.1.1.1\", # after\n]\r\n"
        );
        assert_eq!(
            from_toml::<ContainersFile>(text).unwrap().containers,
            read(text)
        );
        let e = from_toml::<ContainersFile>(bad).unwrap_err();
        assert!(e.to_string().contains("line 4"), "{e}");
        assert_eq!(without_comment_lines(multi, false), multi);
    }

    #[test]
    fn the_system_file_speaks_for_root() {
        let s = parse(CONF, true, true, &vars()).unwrap();
        assert_eq!(s.driver.as_deref(), Some("overlay"));
        assert_eq!(s.graphroot, Some("/var/lib/containers/storage".into()));
        assert_eq!(s.runroot, Some("/run/containers/storage".into()));
        let s = parse(CONF, true, false, &vars()).unwrap();
        assert_eq!(
            s.graphroot,
            Some("/home/u/.local/share/containers/u-1000".into())
        );
        assert_eq!(s.runroot, None);
    }

    #[test]
    fn a_users_file_applies_whole() {
        let conf = "[storage]\ndriver = \"vfs\"\ngraphroot = \"$HOME/store\"\nrunroot = \"\"\n";
        let s = parse(conf, false, false, &vars()).unwrap();
        assert_eq!(
            s,
            Storage {
                driver: Some("vfs".into()),
                graphroot: Some("/home/u/store".into()),
                runroot: None,
                additional_image_stores: Vec::new(),
                ..Storage::default()
            }
        );
        assert_eq!(
            parse("", false, false, &vars()).unwrap(),
            Storage::default()
        );
        assert!(parse("[storage\n", false, false, &vars()).is_err());
    }

    #[test]
    fn additional_image_stores_apply_to_everyone() {
        let conf = "[storage]\n[storage.options]\nadditionalimagestores = [\"/shared/a\", \"\", \"$HOME/b\"]\n";
        for (system, root) in [(true, false), (true, true), (false, false)] {
            let s = parse(conf, system, root, &vars()).unwrap();
            assert_eq!(
                s.additional_image_stores,
                vec![PathBuf::from("/shared/a"), PathBuf::from("/home/u/b")]
            );
        }
    }

    #[test]
    fn auto_userns_options() {
        let conf = "[storage]\n[storage.options]\nauto-userns-min-size = 2000\nauto-userns-max-size = 3000\nroot-auto-userns-user = \"c\"\n";
        let s = parse(conf, false, false, &vars()).unwrap();
        assert_eq!(s.auto_userns_min_size, Some(2000));
        assert_eq!(s.auto_userns_max_size, Some(3000));
        assert_eq!(s.root_auto_userns_user.as_deref(), Some("c"));
    }

    #[test]
    fn podmans_store_is_left_alone() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(own_root(d.path()), d.path());
        std::fs::create_dir(d.path().join("vfs-images")).unwrap();
        assert_eq!(own_root(d.path()), d.path().join("rbox"));
    }
}
