//! registries.conf (containers-registries.conf(5), version 2, with the version 1 tables still
//! read): the unqualified-search list, short-name aliases, and `[[registry]]` entries with
//! `prefix`, `location`, `insecure`, `blocked` and `[[registry.mirror]]`.
//!
//! Files are read as containers/image reads them: `$CONTAINERS_REGISTRIES_CONF` if set, else
//! `$XDG_CONFIG_HOME/containers/registries.conf` if it exists, else
//! `/etc/containers/registries.conf`; then the drop-ins `/etc/containers/registries.conf.d/*.conf`
//! and `$XDG_CONFIG_HOME/containers/registries.conf.d/*.conf` in name order. A later file
//! replaces the search list when it sets one, and replaces `[[registry]]` entries with the same
//! prefix. When no registries.conf exists at all the search list is `docker.io`, so a machine
//! without containers-common behaves like Docker.
//!
//! This module only reads and resolves; it makes no network requests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{Error, Reference, Result};

/// Where to pull from for one candidate: the rewritten reference and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The reference on this endpoint (after prefix -> location rewriting).
    pub reference: Reference,
    /// Plain HTTP and unverified TLS are allowed.
    pub insecure: bool,
    /// This is a mirror of the primary location.
    pub mirror: bool,
}

/// Which references a mirror serves (`pull-from-mirror`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullFromMirror {
    #[default]
    All,
    DigestOnly,
    TagOnly,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    pub location: String,
    pub insecure: bool,
    pub pull_from_mirror: PullFromMirror,
}

/// One `[[registry]]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryEntry {
    /// What names this entry applies to: `host[:port][/path]` or `*.domain`.
    pub prefix: String,
    /// Where those names really live (empty for a wildcard prefix: the name's own host).
    pub location: String,
    pub insecure: bool,
    pub blocked: bool,
    pub mirror_by_digest_only: bool,
    pub mirrors: Vec<Mirror>,
}

/// The merged configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistriesConf {
    pub unqualified_search_registries: Vec<String>,
    /// Short name (without tag) -> fully qualified name.
    pub aliases: BTreeMap<String, String>,
    pub registries: Vec<RegistryEntry>,
    /// The files that were read, in order.
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct FileToml {
    unqualified_search_registries: Option<Vec<String>>,
    #[serde(default)]
    registry: Vec<RegistryToml>,
    aliases: Option<BTreeMap<String, String>>,
    /// Version 1: `[registries.search] registries = [...]` and friends.
    registries: Option<V1Toml>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RegistryToml {
    prefix: Option<String>,
    location: Option<String>,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    blocked: bool,
    #[serde(default)]
    mirror_by_digest_only: bool,
    #[serde(default)]
    mirror: Vec<MirrorToml>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct MirrorToml {
    location: String,
    #[serde(default)]
    insecure: bool,
    pull_from_mirror: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct V1Toml {
    search: Option<V1List>,
    insecure: Option<V1List>,
    block: Option<V1List>,
}

#[derive(Debug, Default, Deserialize)]
struct V1List {
    #[serde(default)]
    registries: Vec<String>,
}

/// The files to read, in order, from the environment (see the module docs).
pub fn default_paths() -> (Vec<PathBuf>, bool) {
    let user_dir = config_home().map(|c| c.join("containers"));
    let mut main = Vec::new();
    if let Some(p) = std::env::var_os("CONTAINERS_REGISTRIES_CONF").filter(|p| !p.is_empty()) {
        main.push(PathBuf::from(p));
    } else {
        let user = user_dir.as_ref().map(|d| d.join("registries.conf"));
        match user {
            Some(u) if u.exists() => main.push(u),
            _ => main.push(PathBuf::from("/etc/containers/registries.conf")),
        }
    }
    let any_main = main.iter().any(|p| p.exists());
    let mut paths = main;
    let mut dirs = vec![PathBuf::from("/etc/containers/registries.conf.d")];
    if let Some(u) = &user_dir {
        dirs.push(u.join("registries.conf.d"));
    }
    for d in dirs {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        let mut v: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "conf"))
            .collect();
        v.sort();
        paths.extend(v);
    }
    (paths, any_main)
}

fn config_home() -> Option<PathBuf> {
    match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(v) => Some(PathBuf::from(v)),
        None => std::env::var_os("HOME")
            .filter(|v| !v.is_empty())
            .map(|h| PathBuf::from(h).join(".config")),
    }
}

impl RegistriesConf {
    /// Read the configuration the way Podman does (module docs), or only `path` when given.
    pub fn load(path: Option<&Path>) -> Result<RegistriesConf> {
        match path {
            Some(p) => {
                let mut c = RegistriesConf::default();
                c.merge_file(p)?;
                Ok(c)
            }
            None => {
                let (paths, any_main) = default_paths();
                let mut c = RegistriesConf::default();
                for p in &paths {
                    if p.exists() {
                        c.merge_file(p)?;
                    }
                }
                if !any_main && c.unqualified_search_registries.is_empty() {
                    c.unqualified_search_registries =
                        vec![rbox_storage::reference::DOCKER_IO.into()];
                }
                Ok(c)
            }
        }
    }

    /// Parse one file's text (no merging with anything else).
    pub fn parse(text: &str, path: &Path) -> Result<RegistriesConf> {
        let mut c = RegistriesConf::default();
        c.merge_text(text, path)?;
        Ok(c)
    }

    fn merge_file(&mut self, path: &Path) -> Result<()> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("read `{}`", path.display()), e))?;
        self.merge_text(&text, path)
    }

    fn merge_text(&mut self, text: &str, path: &Path) -> Result<()> {
        let bad = |message: String| Error::Config {
            path: path.to_path_buf(),
            message,
        };
        let f: FileToml = toml::from_str(text).map_err(|e| bad(e.message().to_string()))?;
        self.files.push(path.to_path_buf());
        if let Some(v1) = f.registries {
            if let Some(s) = v1.search {
                self.unqualified_search_registries = s.registries;
            }
            for (list, insecure) in [(v1.insecure, true), (v1.block, false)] {
                for host in list.map(|l| l.registries).unwrap_or_default() {
                    let entry = self.entry_mut(&host);
                    if insecure {
                        entry.insecure = true;
                    } else {
                        entry.blocked = true;
                    }
                }
            }
        }
        if let Some(s) = f.unqualified_search_registries {
            self.unqualified_search_registries = s;
        }
        if let Some(a) = f.aliases {
            for (k, v) in a {
                if v.is_empty() {
                    self.aliases.remove(&k);
                } else {
                    self.aliases.insert(k, v);
                }
            }
        }
        for r in f.registry {
            let location = r.location.unwrap_or_default();
            let prefix = match r.prefix {
                Some(p) if !p.is_empty() => p,
                _ => location.clone(),
            };
            if prefix.is_empty() {
                return Err(bad("a [[registry]] needs a prefix or a location".into()));
            }
            let wildcard = prefix.starts_with("*.");
            if wildcard && !location.is_empty() {
                return Err(bad(format!(
                    "[[registry]] with wildcard prefix `{prefix}` cannot have a location"
                )));
            }
            let mut mirrors = Vec::new();
            for m in r.mirror {
                let pull_from_mirror = match m.pull_from_mirror.as_deref() {
                    None | Some("") | Some("all") => PullFromMirror::All,
                    Some("digest-only") => PullFromMirror::DigestOnly,
                    Some("tag-only") => PullFromMirror::TagOnly,
                    Some(o) => return Err(bad(format!("unknown pull-from-mirror `{o}`"))),
                };
                mirrors.push(Mirror {
                    location: m.location,
                    insecure: m.insecure,
                    pull_from_mirror,
                });
            }
            let entry = RegistryEntry {
                prefix: prefix.clone(),
                location: if wildcard { String::new() } else { location },
                insecure: r.insecure,
                blocked: r.blocked,
                mirror_by_digest_only: r.mirror_by_digest_only,
                mirrors,
            };
            match self.registries.iter_mut().find(|e| e.prefix == prefix) {
                Some(e) => *e = entry,
                None => self.registries.push(entry),
            }
        }
        Ok(())
    }

    fn entry_mut(&mut self, host: &str) -> &mut RegistryEntry {
        if let Some(i) = self.registries.iter().position(|e| e.prefix == host) {
            return &mut self.registries[i];
        }
        self.registries.push(RegistryEntry {
            prefix: host.to_string(),
            location: host.to_string(),
            insecure: false,
            blocked: false,
            mirror_by_digest_only: false,
            mirrors: Vec::new(),
        });
        self.registries.last_mut().expect("just pushed")
    }

    /// The `[[registry]]` entry for `r` with the longest matching prefix.
    pub fn find(&self, r: &Reference) -> Option<&RegistryEntry> {
        let name = r.name();
        self.registries
            .iter()
            .filter_map(|e| prefix_match(&e.prefix, r.registry(), &name).map(|n| (n, e)))
            .max_by_key(|(n, _)| *n)
            .map(|(_, e)| e)
    }

    /// Whether plain HTTP / unverified TLS is allowed for `registry` (a host[:port]).
    pub fn is_insecure(&self, registry: &str) -> bool {
        let probe = Reference::parse(&format!("{registry}/x"));
        match probe {
            Ok(r) => self.find(&r).is_some_and(|e| e.insecure),
            Err(_) => false,
        }
    }

    /// The fully qualified names to try for `r`: itself when it names a registry; else its
    /// alias if one is configured; else one per unqualified-search registry, in order.
    pub fn candidates(&self, r: &Reference) -> Result<Vec<Reference>> {
        if !r.is_short_name() {
            return Ok(vec![r.clone()]);
        }
        if let Some(alias) = self.alias_for(r)? {
            return Ok(vec![alias]);
        }
        if self.unqualified_search_registries.is_empty() {
            let short = r.familiar();
            let short = short.strip_suffix(":latest").unwrap_or(&short);
            return Err(Error::NoSearchRegistries(short.to_string()));
        }
        self.unqualified_search_registries
            .iter()
            .map(|reg| r.with_registry(reg).map_err(Error::from))
            .collect()
    }

    fn alias_for(&self, r: &Reference) -> Result<Option<Reference>> {
        // Keys are written as the user types them: `alpine`, `library/alpine` is a different key.
        let bare = r.without_tag().without_digest().familiar();
        let keys = [bare.clone(), format!("docker.io/{bare}")];
        let Some(target) = keys.iter().find_map(|k| self.aliases.get(k)) else {
            return Ok(None);
        };
        let mut a = Reference::parse_bare(target)?;
        if let Some(t) = r.tag() {
            a = a.with_tag(t)?;
        }
        if let Some(d) = r.digest() {
            a = a.with_digest(d);
        }
        if a.tag().is_none() && a.digest().is_none() {
            a = a.with_tag(rbox_storage::reference::DEFAULT_TAG)?;
        }
        Ok(Some(a))
    }

    /// Where to pull `r` (fully qualified) from: its mirrors in order, then its location.
    /// `tls_verify` (`--tls-verify`) overrides every `insecure` setting when given.
    pub fn pull_sources(&self, r: &Reference, tls_verify: Option<bool>) -> Result<Vec<Endpoint>> {
        let insecure = |conf: bool| match tls_verify {
            Some(v) => !v,
            None => conf,
        };
        let Some(e) = self.find(r) else {
            return Ok(vec![Endpoint {
                reference: r.clone(),
                insecure: insecure(false),
                mirror: false,
            }]);
        };
        if e.blocked {
            return Err(Error::Blocked(r.registry().to_string()));
        }
        let mut out = Vec::new();
        let by_digest = r.digest().is_some();
        for m in &e.mirrors {
            let serve = match m.pull_from_mirror {
                PullFromMirror::All => !e.mirror_by_digest_only || by_digest,
                PullFromMirror::DigestOnly => by_digest,
                PullFromMirror::TagOnly => !by_digest,
            };
            if serve {
                out.push(Endpoint {
                    reference: rewrite(r, &e.prefix, &m.location)?,
                    insecure: insecure(m.insecure),
                    mirror: true,
                });
            }
        }
        let primary = if e.location.is_empty() {
            r.clone()
        } else {
            rewrite(r, &e.prefix, &e.location)?
        };
        out.push(Endpoint {
            reference: primary,
            insecure: insecure(e.insecure),
            mirror: false,
        });
        Ok(out)
    }

    /// Where to push `r`: its location (mirrors are for pulling only).
    pub fn push_endpoint(&self, r: &Reference, tls_verify: Option<bool>) -> Result<Endpoint> {
        let all = self.pull_sources(r, tls_verify)?;
        Ok(all
            .into_iter()
            .last()
            .expect("the primary location is always there"))
    }
}

/// Length of the match of `prefix` against a name, `None` when it does not apply.
/// A prefix matches the whole name or a leading part that ends at a `/`; `*.domain` matches
/// any host under that domain.
fn prefix_match(prefix: &str, host: &str, name: &str) -> Option<usize> {
    if let Some(domain) = prefix.strip_prefix("*.") {
        let h = host.split(':').next().unwrap_or(host);
        return h.ends_with(&format!(".{domain}")).then_some(prefix.len());
    }
    if name == prefix {
        return Some(prefix.len());
    }
    let rest = name.strip_prefix(prefix)?;
    rest.starts_with('/').then_some(prefix.len())
}

/// Replace the `prefix` part of `r`'s name by `location`, keeping tag and digest.
fn rewrite(r: &Reference, prefix: &str, location: &str) -> Result<Reference> {
    let name = r.name();
    let rest = if prefix.starts_with("*.") {
        // A wildcard entry has no location; mirrors of it keep the path.
        name.split_once('/')
            .map(|(_, p)| format!("/{p}"))
            .unwrap_or_default()
    } else {
        name.strip_prefix(prefix).unwrap_or("").to_string()
    };
    let mut out = Reference::parse_bare(&format!("{location}{rest}"))?;
    if let Some(t) = r.tag() {
        out = out.with_tag(t)?;
    }
    if let Some(d) = r.digest() {
        out = out.with_digest(d);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(s: &str) -> RegistriesConf {
        RegistriesConf::parse(s, Path::new("/test/registries.conf")).unwrap()
    }

    fn r(s: &str) -> Reference {
        Reference::parse(s).unwrap()
    }

    fn names(v: &[Reference]) -> Vec<String> {
        v.iter().map(|r| r.to_string()).collect()
    }

    const SAMPLE: &str = r#"
unqualified-search-registries = ["registry.fedoraproject.org", "quay.io", "docker.io"]
short-name-mode = "enforcing"

[[registry]]
prefix = "example.com/foo"
location = "internal.example.com/bar"
insecure = true

[[registry.mirror]]
location = "mirror-1.local/mirror-for-foo"

[[registry.mirror]]
location = "mirror-2.local:5000/foo"
insecure = true
pull-from-mirror = "digest-only"

[[registry]]
location = "127.0.0.1:5000"
insecure = true

[[registry]]
prefix = "*.blocked.io"
blocked = true

[[registry]]
prefix = "docker.io"
location = "docker.io"
[[registry.mirror]]
location = "hub-mirror.local"

[aliases]
"alpine" = "docker.io/library/alpine"
"fedora" = "registry.fedoraproject.org/fedora"
"#;

    #[test]
    fn parse_sample() {
        let c = conf(SAMPLE);
        assert_eq!(
            c.unqualified_search_registries,
            ["registry.fedoraproject.org", "quay.io", "docker.io"]
        );
        assert_eq!(c.registries.len(), 4);
        let e = &c.registries[0];
        assert_eq!(e.prefix, "example.com/foo");
        assert_eq!(e.location, "internal.example.com/bar");
        assert!(e.insecure && !e.blocked);
        assert_eq!(e.mirrors.len(), 2);
        assert_eq!(e.mirrors[1].pull_from_mirror, PullFromMirror::DigestOnly);
        assert!(e.mirrors[1].insecure);
        // No prefix: the location is the prefix.
        assert_eq!(c.registries[1].prefix, "127.0.0.1:5000");
        assert_eq!(c.aliases.get("alpine").unwrap(), "docker.io/library/alpine");
    }

    #[test]
    fn rewriting_and_mirrors() {
        let c = conf(SAMPLE);
        let src = c.pull_sources(&r("example.com/foo/app:1"), None).unwrap();
        let got: Vec<(String, bool, bool)> = src
            .iter()
            .map(|e| (e.reference.to_string(), e.insecure, e.mirror))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "mirror-1.local/mirror-for-foo/app:1".to_string(),
                    false,
                    true
                ),
                ("internal.example.com/bar/app:1".to_string(), true, false),
            ]
        );
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let src = c
            .pull_sources(&r(&format!("example.com/foo@{d}")), None)
            .unwrap();
        assert_eq!(src.len(), 3);
        assert_eq!(
            src[1].reference.to_string(),
            format!("mirror-2.local:5000/foo@{d}")
        );
        // The prefix must end at a path boundary.
        let src = c.pull_sources(&r("example.com/foobar:1"), None).unwrap();
        assert_eq!(
            names(&src.iter().map(|e| e.reference.clone()).collect::<Vec<_>>()),
            ["example.com/foobar:1"]
        );
        // --tls-verify overrides insecure in both directions.
        let src = c.pull_sources(&r("127.0.0.1:5000/x"), Some(true)).unwrap();
        assert!(!src[0].insecure);
        let src = c.pull_sources(&r("quay.io/x"), Some(false)).unwrap();
        assert!(src[0].insecure);
        assert!(c.is_insecure("127.0.0.1:5000"));
        assert!(!c.is_insecure("127.0.0.1:5001"));
        // Docker Hub mirror keeps library/.
        let src = c.pull_sources(&r("alpine"), None).unwrap();
        assert_eq!(
            src[0].reference.to_string(),
            "hub-mirror.local/library/alpine:latest"
        );
        assert_eq!(
            src[1].reference.to_string(),
            "docker.io/library/alpine:latest"
        );
        assert_eq!(
            c.push_endpoint(&r("example.com/foo/app:1"), None)
                .unwrap()
                .reference
                .to_string(),
            "internal.example.com/bar/app:1"
        );
    }

    #[test]
    fn blocked_wildcard() {
        let c = conf(SAMPLE);
        assert!(matches!(
            c.pull_sources(&r("a.blocked.io/x"), None),
            Err(Error::Blocked(_))
        ));
        assert!(c.pull_sources(&r("blocked.io/x"), None).is_ok());
    }

    #[test]
    fn short_names() {
        let c = conf(SAMPLE);
        assert_eq!(
            names(&c.candidates(&r("busybox:1")).unwrap()),
            [
                "registry.fedoraproject.org/busybox:1",
                "quay.io/busybox:1",
                "docker.io/library/busybox:1"
            ]
        );
        assert_eq!(
            names(&c.candidates(&r("alpine:3")).unwrap()),
            ["docker.io/library/alpine:3"]
        );
        assert_eq!(
            names(&c.candidates(&r("fedora")).unwrap()),
            ["registry.fedoraproject.org/fedora:latest"]
        );
        assert_eq!(
            names(&c.candidates(&r("quay.io/a/b")).unwrap()),
            ["quay.io/a/b:latest"]
        );
        let empty = conf("");
        assert!(matches!(
            empty.candidates(&r("busybox")),
            Err(Error::NoSearchRegistries(n)) if n == "busybox"
        ));
    }

    #[test]
    fn version_1_tables() {
        let c = conf(
            "[registries.search]\nregistries = ['a.io', 'b.io']\n\
             [registries.insecure]\nregistries = ['c.io:5000']\n\
             [registries.block]\nregistries = ['d.io']\n",
        );
        assert_eq!(c.unqualified_search_registries, ["a.io", "b.io"]);
        assert!(c.is_insecure("c.io:5000"));
        assert!(c.pull_sources(&r("d.io/x"), None).is_err());
    }

    #[test]
    fn later_files_override() {
        let mut c = conf(SAMPLE);
        c.merge_text(
            "unqualified-search-registries = ['only.io']\n\
             [[registry]]\nlocation = '127.0.0.1:5000'\ninsecure = false\n\
             [aliases]\nalpine = ''\n",
            Path::new("/test/registries.conf.d/99.conf"),
        )
        .unwrap();
        assert_eq!(c.unqualified_search_registries, ["only.io"]);
        assert!(!c.is_insecure("127.0.0.1:5000"));
        assert!(!c.aliases.contains_key("alpine"));
        assert_eq!(c.files.len(), 2);
    }

    #[test]
    fn errors_name_the_file() {
        let e = RegistriesConf::parse("unqualified-search-registries = 3", Path::new("/x.conf"))
            .unwrap_err();
        assert!(e.to_string().starts_with("parse `/x.conf`: "), "{e}");
        assert!(RegistriesConf::parse("[[registry]]\ninsecure = true\n", Path::new("/x")).is_err());
        assert!(RegistriesConf::parse(
            "[[registry]]\nprefix = '*.a.io'\nlocation = 'b.io'\n",
            Path::new("/x")
        )
        .is_err());
    }

    #[test]
    fn load_from_explicit_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("registries.conf");
        std::fs::write(&p, "unqualified-search-registries = ['x.io']\n").unwrap();
        let c = RegistriesConf::load(Some(&p)).unwrap();
        assert_eq!(c.unqualified_search_registries, ["x.io"]);
        assert!(RegistriesConf::load(Some(&dir.path().join("missing"))).is_err());
    }
}
