//! Registry credentials where Podman and Docker keep them.
//!
//! Read, in order (the first file with a matching entry wins): `--authfile` or
//! `$REGISTRY_AUTH_FILE` alone when given; otherwise `$XDG_RUNTIME_DIR/containers/auth.json`,
//! `$XDG_CONFIG_HOME/containers/auth.json`, `$DOCKER_CONFIG/config.json` or
//! `~/.docker/config.json`, and the legacy `~/.dockercfg`. Within a file the most specific key
//! wins: `host/ns/repo`, then `host/ns`, then `host` (legacy `https://host/v1/` keys count as
//! `host`). Entries are `{"auth": base64("user:password")}`. Docker's credential helpers are
//! asked too: `credHelpers` (per registry, first) and `credsStore` (after the file's entries),
//! through `docker-credential-<name> get`.
//!
//! `login` writes to `--authfile`, `$REGISTRY_AUTH_FILE`, or `$XDG_RUNTIME_DIR/containers/
//! auth.json` (`$XDG_CONFIG_HOME/containers/auth.json` when there is no usable runtime dir),
//! keeping every other entry and field, with mode 0600, replaced by rename. Verifying the
//! credentials against the registry is the caller's job ([`crate::login`] does it).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::{Error, Result, TransportOptions};

/// A user name and password (or token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    /// An OAuth2 refresh token (`identitytoken` in docker's config, or a credential helper's
    /// `<token>` answer): exchanged at the token realm instead of sending the password.
    pub identity_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the password.
        write!(f, "Credentials({:?}, ***)", self.username)
    }
}

impl Credentials {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Credentials {
        Credentials {
            username: username.into(),
            password: password.into(),
            identity_token: None,
        }
    }

    /// Credentials that are only an OAuth2 refresh token.
    pub fn identity_token(username: impl Into<String>, token: impl Into<String>) -> Credentials {
        Credentials {
            username: username.into(),
            password: String::new(),
            identity_token: Some(token.into()),
        }
    }

    /// `USER:PASSWORD` as `--creds` takes it (the password may contain `:`).
    pub fn parse_user_pass(s: &str) -> Option<Credentials> {
        let (u, p) = s.split_once(':')?;
        (!u.is_empty()).then(|| Credentials::new(u, p))
    }

    /// The `auth` field: base64 of `user:password`.
    pub fn encode(&self) -> String {
        base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", self.username, self.password))
    }

    /// Decode an `auth` field.
    pub fn decode(auth: &str) -> Option<Credentials> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .ok()?;
        let s = String::from_utf8(raw).ok()?;
        Credentials::parse_user_pass(&s)
    }
}

/// Normalise what a user types or a file holds as a key: no scheme, no trailing `/` or
/// `/v1/` / `/v2/` API path, Docker Hub's aliases as `docker.io`.
pub fn normalize_key(key: &str) -> String {
    let had_scheme = key.starts_with("http://") || key.starts_with("https://");
    let k = key
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    // A legacy key with a scheme names a host, whatever path follows.
    let k = if had_scheme {
        k.split('/').next().unwrap_or(k)
    } else {
        k
    };
    let (host, rest) = match k.split_once('/') {
        Some((h, r)) => (h, Some(r)),
        None => (k, None),
    };
    let host = match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io",
        h => h,
    };
    match rest {
        Some(r) if !r.is_empty() => format!("{host}/{r}"),
        _ => host.to_string(),
    }
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn home() -> Option<PathBuf> {
    env_path("HOME")
}

fn config_home() -> Option<PathBuf> {
    env_path("XDG_CONFIG_HOME").or_else(|| home().map(|h| h.join(".config")))
}

/// `$XDG_RUNTIME_DIR` when it is a directory owned by us (after `su` it often is not).
fn runtime_dir() -> Option<PathBuf> {
    let d = env_path("XDG_RUNTIME_DIR")?;
    let me = fs::metadata("/proc/self").ok()?.uid();
    let m = fs::metadata(&d).ok()?;
    (m.is_dir() && m.uid() == me).then_some(d)
}

/// The files credentials are read from, in order.
pub fn read_paths(authfile: Option<&Path>) -> Vec<PathBuf> {
    if let Some(p) = authfile {
        return vec![p.to_path_buf()];
    }
    if let Some(p) = env_path("REGISTRY_AUTH_FILE") {
        return vec![p];
    }
    let mut v = Vec::new();
    if let Some(r) = runtime_dir() {
        v.push(r.join("containers/auth.json"));
    }
    if let Some(c) = config_home() {
        v.push(c.join("containers/auth.json"));
    }
    match env_path("DOCKER_CONFIG") {
        Some(d) => v.push(d.join("config.json")),
        None => {
            if let Some(h) = home() {
                v.push(h.join(".docker/config.json"));
            }
        }
    }
    if let Some(h) = home() {
        v.push(h.join(".dockercfg"));
    }
    v
}

/// The file `login` writes and `logout` edits.
pub fn write_path(authfile: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = authfile {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = env_path("REGISTRY_AUTH_FILE") {
        return Ok(p);
    }
    if let Some(r) = runtime_dir() {
        return Ok(r.join("containers/auth.json"));
    }
    match config_home() {
        Some(c) => Ok(c.join("containers/auth.json")),
        None => Err(Error::io(
            "find a place for auth.json: set $XDG_RUNTIME_DIR or $HOME, or pass --authfile",
            std::io::Error::from(std::io::ErrorKind::NotFound),
        )),
    }
}

/// Read one auth file; a missing file is empty.
fn read_file(path: &Path) -> Result<Option<Map<String, Value>>> {
    let data = match fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("read `{}`", path.display()), e)),
    };
    if data.iter().all(u8::is_ascii_whitespace) {
        return Ok(Some(Map::new()));
    }
    match serde_json::from_slice::<Value>(&data) {
        Ok(Value::Object(m)) => Ok(Some(m)),
        Ok(_) => Err(Error::AuthFile {
            path: path.to_path_buf(),
            message: "not a JSON object".into(),
        }),
        Err(e) => Err(Error::AuthFile {
            path: path.to_path_buf(),
            message: e.to_string(),
        }),
    }
}

/// The `auths` map of a file (`~/.dockercfg` has the entries at the top level).
fn auths_of(path: &Path, m: &Map<String, Value>) -> Map<String, Value> {
    if path.file_name().is_some_and(|n| n == ".dockercfg") {
        return m.clone();
    }
    match m.get("auths") {
        Some(Value::Object(a)) => a.clone(),
        _ => Map::new(),
    }
}

fn entry_credentials(v: &Value) -> Option<Credentials> {
    let o = v.as_object()?;
    if let Some(t) = o
        .get("identitytoken")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        let user = o
            .get("auth")
            .and_then(Value::as_str)
            .and_then(Credentials::decode)
            .map(|c| c.username)
            .unwrap_or_else(|| "<token>".into());
        return Some(Credentials::identity_token(user, t));
    }
    if let Some(a) = o
        .get("auth")
        .and_then(Value::as_str)
        .filter(|a| !a.is_empty())
    {
        return Credentials::decode(a);
    }
    let u = o.get("username").and_then(Value::as_str)?;
    let p = o.get("password").and_then(Value::as_str)?;
    Some(Credentials::new(u, p))
}

/// Keys to try for `registry`/`repository`, most specific first.
fn lookup_keys(registry: &str, repository: &str) -> Vec<String> {
    let registry = normalize_key(registry);
    let mut keys = Vec::new();
    let mut path = repository.trim_matches('/').to_string();
    while !path.is_empty() {
        keys.push(format!("{registry}/{path}"));
        match path.rfind('/') {
            Some(i) => path.truncate(i),
            None => path.clear(),
        }
    }
    keys.push(registry);
    keys
}

/// Credentials for `registry` (host[:port]) and `repository`, from the first file that has
/// an entry. `Ok(None)` means anonymous.
pub fn lookup(
    registry: &str,
    repository: &str,
    authfile: Option<&Path>,
) -> Result<Option<Credentials>> {
    lookup_in(&read_paths(authfile), registry, repository)
}

/// [`lookup`] over explicit files.
pub fn lookup_in(
    paths: &[PathBuf],
    registry: &str,
    repository: &str,
) -> Result<Option<Credentials>> {
    let keys = lookup_keys(registry, repository);
    let host = normalize_key(registry);
    for p in paths {
        let Some(m) = read_file(p)? else { continue };
        // docker's credential helpers: a per-registry helper wins over everything in the file.
        if let Some(h) = m
            .get("credHelpers")
            .and_then(Value::as_object)
            .and_then(|hs| hs.iter().find(|(k, _)| normalize_key(k) == host))
            .and_then(|(_, v)| v.as_str())
        {
            if let Some(c) = helper_get(h, &host) {
                return Ok(Some(c));
            }
        }
        let auths = auths_of(p, &m);
        let normalized: Vec<(String, &Value)> =
            auths.iter().map(|(k, v)| (normalize_key(k), v)).collect();
        for k in &keys {
            if let Some((_, v)) = normalized.iter().find(|(nk, _)| nk == k) {
                if let Some(c) = entry_credentials(v) {
                    return Ok(Some(c));
                }
            }
        }
        // `credsStore`: the credentials live in a helper (desktop, pass, secretservice).
        if let Some(h) = m.get("credsStore").and_then(Value::as_str) {
            if let Some(c) = helper_get(h, &host) {
                return Ok(Some(c));
            }
        }
    }
    Ok(None)
}

/// Ask `docker-credential-<helper> get` for `host`'s credentials (the docker credential
/// helper protocol: server URL on stdin, `{"Username","Secret"}` on stdout). A missing helper,
/// a failure or "not found" all mean no credentials.
fn helper_get(helper: &str, host: &str) -> Option<Credentials> {
    use std::process::{Command, Stdio};
    if helper.is_empty() || helper.contains('/') {
        return None;
    }
    let server = if host == "docker.io" {
        "https://index.docker.io/v1/".to_string()
    } else {
        host.to_string()
    };
    let mut child = Command::new(format!("docker-credential-{helper}"))
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(server.as_bytes());
    }
    let out = child.wait_with_output().ok()?;
    if !out.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    let user = v.get("Username").and_then(Value::as_str)?;
    let secret = v.get("Secret").and_then(Value::as_str)?;
    if user.is_empty() || secret.is_empty() {
        return None;
    }
    // "<token>" marks an identity token: an OAuth2 refresh token, not a password.
    if user == "<token>" {
        return Some(Credentials::identity_token(user, secret));
    }
    Some(Credentials::new(user, secret))
}

/// Write `creds` under `key` into `path`, keeping everything else in the file.
pub fn store(path: &Path, key: &str, creds: &Credentials) -> Result<()> {
    let mut m = read_file(path)?.unwrap_or_default();
    let auths = m
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()));
    if !auths.is_object() {
        *auths = Value::Object(Map::new());
    }
    let auths = auths.as_object_mut().expect("made an object above");
    let key = normalize_key(key);
    // Drop legacy spellings of the same key so lookups cannot find stale ones first.
    auths.retain(|k, _| normalize_key(k) != key);
    let mut entry = Map::new();
    entry.insert("auth".into(), Value::String(creds.encode()));
    auths.insert(key, Value::Object(entry));
    write_file(path, &m)
}

/// Remove `key` from `path`. Returns false when it was not there.
pub fn remove(path: &Path, key: &str) -> Result<bool> {
    let Some(mut m) = read_file(path)? else {
        return Ok(false);
    };
    let key = normalize_key(key);
    let Some(Value::Object(auths)) = m.get_mut("auths") else {
        return Ok(false);
    };
    let before = auths.len();
    auths.retain(|k, _| normalize_key(k) != key);
    if auths.len() == before {
        return Ok(false);
    }
    write_file(path, &m)?;
    Ok(true)
}

/// Remove every credential from `path` (`logout --all`): the file is deleted.
pub fn remove_all(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("remove `{}`", path.display()), e)),
    }
}

fn write_file(path: &Path, m: &Map<String, Value>) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io(format!("create `{}`", dir.display()), e))?;
    let mut data = serde_json::to_vec_pretty(&Value::Object(m.clone()))
        .map_err(|e| Error::io("encode auth.json", e.into()))?;
    data.push(b'\n');
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("auth.json"),
        std::process::id()
    ));
    let res = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = res {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(format!("write `{}`", path.display()), e));
    }
    Ok(())
}

/// What `logout` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogoutOutcome {
    Removed(PathBuf),
    RemovedAll(PathBuf),
}

/// Verify `creds` against `registry` (`host[:port][/repo]`) and store them. Returns the file
/// written.
pub fn login(registry: &str, creds: &Credentials, opts: &TransportOptions) -> Result<PathBuf> {
    let key = normalize_key(registry);
    let host = key.split('/').next().unwrap_or(&key).to_string();
    crate::client::verify_credentials(&host, creds, opts)?;
    let path = write_path(opts.authfile.as_deref())?;
    store(&path, &key, creds)?;
    Ok(path)
}

/// Remove the credentials for `registry` (or all of them) from the file login writes.
pub fn logout(registry: Option<&str>, all: bool, opts: &TransportOptions) -> Result<LogoutOutcome> {
    let path = write_path(opts.authfile.as_deref())?;
    if all {
        remove_all(&path)?;
        return Ok(LogoutOutcome::RemovedAll(path));
    }
    let Some(registry) = registry else {
        return Err(Error::Protocol("logout needs a registry or --all".into()));
    };
    let key = normalize_key(registry);
    if remove(&path, &key)? {
        return Ok(LogoutOutcome::Removed(path));
    }
    // Say where the credentials are when another tool stored them.
    let (host, repo) = key.split_once('/').unwrap_or((&key, ""));
    for p in read_paths(opts.authfile.as_deref()) {
        if p != path && lookup_in(std::slice::from_ref(&p), host, repo)?.is_some() {
            return Err(Error::Protocol(format!(
                "not logged into {key} with rbox: the credentials in `{}` were stored by \
                 another tool (docker logout removes them)",
                p.display()
            )));
        }
    }
    Err(Error::Protocol(format!("not logged into {key}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode() {
        let c = Credentials::new("tester", "s3:cret");
        assert_eq!(Credentials::decode(&c.encode()), Some(c.clone()));
        assert_eq!(
            Credentials::decode("dGVzdGVyOnMzY3JldA=="),
            Some(Credentials::new("tester", "s3cret"))
        );
        assert_eq!(Credentials::decode("!!!"), None);
        assert_eq!(Credentials::decode("bm9jb2xvbg=="), None, "no colon");
        assert!(!format!("{c:?}").contains("s3:cret"));
    }

    #[test]
    fn keys() {
        assert_eq!(normalize_key("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(normalize_key("http://reg:5000/v2/"), "reg:5000");
        assert_eq!(normalize_key("reg:5000/"), "reg:5000");
        assert_eq!(normalize_key("quay.io/ns/repo"), "quay.io/ns/repo");
        assert_eq!(normalize_key("registry-1.docker.io"), "docker.io");
        assert_eq!(
            lookup_keys("quay.io", "a/b/c"),
            ["quay.io/a/b/c", "quay.io/a/b", "quay.io/a", "quay.io"]
        );
    }

    #[test]
    fn lookup_order_and_specificity() {
        let dir = tempfile::tempdir().unwrap();
        let podman = dir.path().join("auth.json");
        let docker = dir.path().join("config.json");
        let c = |u: &str| Credentials::new(u, "pw").encode();
        fs::write(
            &podman,
            format!(
                r#"{{"auths":{{"quay.io":{{"auth":"{}"}},"quay.io/team/app":{{"auth":"{}"}}}}}}"#,
                c("host"),
                c("repo")
            ),
        )
        .unwrap();
        fs::write(
            &docker,
            format!(
                r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{}"}},"quay.io":{{"auth":"{}"}}}},"credsStore":"x"}}"#,
                c("hub"),
                c("docker-quay")
            ),
        )
        .unwrap();
        let paths = [
            dir.path().join("missing.json"),
            podman.clone(),
            docker.clone(),
        ];
        let user =
            |reg: &str, repo: &str| lookup_in(&paths, reg, repo).unwrap().map(|c| c.username);
        assert_eq!(user("quay.io", "team/app").as_deref(), Some("repo"));
        assert_eq!(user("quay.io", "team/other").as_deref(), Some("host"));
        assert_eq!(user("docker.io", "library/alpine").as_deref(), Some("hub"));
        assert_eq!(user("ghcr.io", "x"), None);
        fs::write(&podman, "{not json").unwrap();
        let e = lookup_in(&paths, "quay.io", "x").unwrap_err();
        assert!(e.to_string().contains("auth.json"), "{e}");
    }

    #[test]
    fn store_and_remove_keep_other_entries() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/auth.json");
        store(&p, "a.io", &Credentials::new("u1", "p1")).unwrap();
        store(&p, "https://b.io/v1/", &Credentials::new("u2", "p2")).unwrap();
        store(&p, "a.io", &Credentials::new("u3", "p3")).unwrap();
        let mode = fs::metadata(&p).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let paths = [p.clone()];
        assert_eq!(
            lookup_in(&paths, "a.io", "x").unwrap().unwrap().username,
            "u3"
        );
        assert_eq!(
            lookup_in(&paths, "b.io", "x").unwrap().unwrap().username,
            "u2"
        );
        // Unknown fields survive.
        let mut v: Value = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
        v["credHelpers"] = serde_json::json!({"c.io": "helper"});
        fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
        assert!(remove(&p, "a.io").unwrap());
        assert!(!remove(&p, "a.io").unwrap());
        let v: Value = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
        assert_eq!(v["credHelpers"]["c.io"], "helper");
        assert!(v["auths"].get("a.io").is_none());
        assert!(v["auths"].get("b.io").is_some());
        remove_all(&p).unwrap();
        assert!(!p.exists());
        remove_all(&p).unwrap();
    }

    #[test]
    fn credential_helpers() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        fs::create_dir(&bin).unwrap();
        // A helper that knows one server and answers like docker-credential-pass does.
        let helper = bin.join("docker-credential-rboxtest");
        fs::write(
            &helper,
            "#!/bin/sh\nread s\nif [ \"$1 $s\" = \"get helped.io\" ]; then\n\
             echo '{\"ServerURL\":\"helped.io\",\"Username\":\"hu\",\"Secret\":\"hs\"}'\n\
             else echo 'credentials not found in native keychain'; exit 1; fi\n",
        )
        .unwrap();
        fs::set_permissions(&helper, fs::Permissions::from_mode(0o755)).unwrap();
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let cfg = dir.path().join("config.json");
        fs::write(
            &cfg,
            r#"{"auths":{"helped.io":{}},"credsStore":"rboxtest","credHelpers":{"other.io":"missing-helper"}}"#,
        )
        .unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg("echo helped.io | docker-credential-rboxtest get")
            .env("PATH", &path)
            .output()
            .unwrap();
        assert!(out.status.success(), "the fake helper works");
        // No other test of this crate spawns programs by name, so changing PATH briefly is safe.
        let old = std::env::var_os("PATH");
        std::env::set_var("PATH", &path);
        let got = lookup_in(std::slice::from_ref(&cfg), "helped.io", "x").unwrap();
        let none = lookup_in(std::slice::from_ref(&cfg), "other.io", "x").unwrap();
        let unknown = lookup_in(std::slice::from_ref(&cfg), "third.io", "x").unwrap();
        match old {
            Some(o) => std::env::set_var("PATH", o),
            None => std::env::remove_var("PATH"),
        }
        assert_eq!(got, Some(Credentials::new("hu", "hs")));
        assert_eq!(none, None, "a missing helper means no credentials");
        assert_eq!(unknown, None, "the helper said not found");
    }

    #[test]
    fn identity_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        fs::write(
            &p,
            format!(
                r#"{{"auths":{{"acr.io":{{"auth":"{}","identitytoken":"refresh-me"}},"b.io":{{"identitytoken":"t2"}}}}}}"#,
                Credentials::new("00000000-0000-0000-0000-000000000000", "").encode()
            ),
        )
        .unwrap();
        let c = lookup_in(std::slice::from_ref(&p), "acr.io", "x")
            .unwrap()
            .unwrap();
        assert_eq!(c.identity_token.as_deref(), Some("refresh-me"));
        assert_eq!(c.username, "00000000-0000-0000-0000-000000000000");
        let c = lookup_in(std::slice::from_ref(&p), "b.io", "x")
            .unwrap()
            .unwrap();
        assert_eq!(c.identity_token.as_deref(), Some("t2"));
        assert!(!format!("{c:?}").contains("t2"));
    }

    #[test]
    fn dockercfg_legacy_layout() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(".dockercfg");
        fs::write(
            &p,
            format!(
                r#"{{"https://r.io":{{"auth":"{}","email":"x"}}}}"#,
                Credentials::new("old", "pw").encode()
            ),
        )
        .unwrap();
        assert_eq!(
            lookup_in(&[p], "r.io", "a").unwrap().unwrap().username,
            "old"
        );
    }

    #[test]
    fn explicit_authfile_is_the_only_file() {
        let p = PathBuf::from("/x/auth.json");
        assert_eq!(read_paths(Some(&p)), vec![p.clone()]);
        assert_eq!(write_path(Some(&p)).unwrap(), p);
    }
}
