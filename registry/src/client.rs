//! A blocking client for one repository of one registry, speaking the OCI distribution API
//! (`/v2/`): the ping that learns the scheme and the auth challenge, Bearer tokens (fetched
//! from the challenge's realm with Basic credentials when there are any, refreshed on 401,
//! widened on `insufficient_scope`), Basic auth, retries with backoff for resets, timeouts,
//! 5xx and 429, and Range-resumed blob downloads.
//!
//! One [`Client`] is shared by the download threads of a pull (`&Client` is `Sync`). It does
//! not know about the store, manifests' meaning or registries.conf: callers hand it a host,
//! a repository and whether plain HTTP / unverified TLS is allowed.

use std::io::{self, Read};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use ureq::config::RedirectAuthHeaders;
use ureq::http::Response;
use ureq::{Agent, Body, SendBody};

use crate::auth::{self, Credentials};
use crate::challenge::{self, Challenge};
use crate::{Digest, Error, Result, TransportOptions, USER_AGENT};

/// Attempts after the first for idempotent requests and blob resumes.
const MAX_RETRIES: u32 = 4;
/// Largest manifest or token response read into memory.
pub const MANIFEST_LIMIT: u64 = 4 << 20;

/// The media types a manifest GET accepts, best first.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json";

#[derive(Debug, Clone)]
enum AuthState {
    Anonymous,
    Basic,
    Bearer {
        challenge: Challenge,
        token: Option<String>,
    },
}

/// A manifest as the registry served it.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    pub bytes: Vec<u8>,
    /// From Content-Type, or the body's `mediaType` when the header is generic.
    pub media_type: String,
    /// sha256 of `bytes` (verified against the requested digest or Docker-Content-Digest).
    pub digest: Digest,
}

/// Outcome of starting a blob upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadStart {
    /// A cross-repository mount succeeded: nothing to upload.
    Mounted,
    /// An upload session at this URL.
    Session(String),
}

/// A request body that can be produced again for a retry.
#[derive(Clone, Copy)]
pub enum ReqBody<'a> {
    None,
    Bytes(&'a [u8]),
    /// `len` bytes of `path` from `offset`; `progress` is told of every chunk read.
    File {
        path: &'a Path,
        offset: u64,
        len: u64,
        progress: Option<&'a (dyn Fn(u64) + Sync)>,
    },
}

/// Counts bytes read through it for progress reports.
struct Counting<'a, R> {
    inner: R,
    progress: Option<&'a (dyn Fn(u64) + Sync)>,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(p) = self.progress {
            p(n as u64);
        }
        Ok(n)
    }
}

/// A client for `registry/repository`.
pub struct Client {
    agent: Agent,
    /// `https://host` or `http://host`.
    base: String,
    /// The registry as references name it (`docker.io`, `127.0.0.1:5000`).
    registry: String,
    repository: String,
    creds: Option<Credentials>,
    auth: Mutex<AuthState>,
    scopes: Mutex<Vec<String>>,
}

/// The host to talk to for a registry name: Docker Hub's API lives at registry-1.docker.io.
pub fn api_host(registry: &str) -> &str {
    match registry {
        "docker.io" | "index.docker.io" => "registry-1.docker.io",
        r => r,
    }
}

fn build_agent(registry: &str, insecure: bool, opts: &TransportOptions) -> Result<Agent> {
    let tls = crate::tls::tls_config(registry, opts.cert_dir.as_deref(), !insecure)?;
    let config = Agent::config_builder()
        .http_status_as_error(false)
        .user_agent(USER_AGENT)
        .tls_config(tls)
        .redirect_auth_headers(RedirectAuthHeaders::SameHost)
        .max_redirects(10)
        .timeout_resolve(Some(Duration::from_secs(30)))
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(120)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .timeout_per_write(Some(Duration::from_secs(60)))
        .max_idle_connections_per_host(8)
        .build();
    Ok(config.into())
}

/// True for io errors worth a retry: resets, aborts, timeouts, truncated bodies; never once
/// the user asked rbox to stop (an interrupted read is not a flaky network).
pub(crate) fn transient_io(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    if rbox_storage::interrupt::requested() {
        return false;
    }
    if let Some(inner) = e.get_ref() {
        if let Some(u) = inner.downcast_ref::<ureq::Error>() {
            return transient_ureq(u);
        }
        if let Some(r) = inner.downcast_ref::<Error>() {
            return r.is_transient();
        }
    }
    matches!(
        e.kind(),
        ConnectionReset | ConnectionAborted | BrokenPipe | TimedOut | UnexpectedEof | Interrupted
    )
}

fn transient_ureq(e: &ureq::Error) -> bool {
    if rbox_storage::interrupt::requested() {
        return false;
    }
    match e {
        ureq::Error::Io(io) => transient_io(io),
        ureq::Error::Timeout(_) => true,
        _ => false,
    }
}

/// A TLS or connection failure that plain HTTP may avoid (for insecure registries).
fn tls_or_connect(e: &ureq::Error) -> bool {
    matches!(
        e,
        ureq::Error::Tls(_)
            | ureq::Error::Rustls(_)
            | ureq::Error::Io(_)
            | ureq::Error::ConnectionFailed
            | ureq::Error::Protocol(_)
            | ureq::Error::Timeout(_)
    )
}

fn backoff(attempt: u32) {
    // 250 ms, 500 ms, 1 s, 2 s: a pause before retrying, not a synchronisation.
    std::thread::sleep(Duration::from_millis(250u64 << attempt.min(4)));
}

fn header(resp: &Response<Body>, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The message of a distribution error body (`{"errors":[{"code","message","detail"}]}`),
/// or the start of a text body.
/// The token in a token server's answer to `method realm`: a 2xx status and a JSON body with a
/// non-empty string under the first of `keys` present (Bearer servers say "token", OAuth2
/// servers "access_token"; many say both).
fn token_from_answer(
    resp: Response<Body>,
    method: &'static str,
    realm: &str,
    keys: [&str; 2],
) -> Result<String> {
    let status = resp.status().as_u16();
    if !(200..300).contains(&status) {
        return Err(Error::Status {
            url: realm.to_string(),
            status,
            detail: error_detail(resp),
        });
    }
    let data = resp
        .into_body()
        .with_config()
        .limit(MANIFEST_LIMIT)
        .read_to_vec()
        .map_err(|e| http_err(method, realm, &e))?;
    let v: serde_json::Value = serde_json::from_slice(&data)
        .map_err(|e| Error::Protocol(format!("token from `{realm}` is not JSON: {e}")))?;
    keys.iter()
        .find_map(|k| v.get(k).and_then(|t| t.as_str()).filter(|t| !t.is_empty()))
        .map(str::to_string)
        .ok_or_else(|| Error::Protocol(format!("no {} in the answer of `{realm}`", keys[0])))
}

fn error_detail(resp: Response<Body>) -> String {
    let mut body = resp.into_body();
    let data = body
        .with_config()
        .limit(64 << 10)
        .read_to_vec()
        .unwrap_or_default();
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&data) {
        if let Some(errs) = v.get("errors").and_then(|e| e.as_array()) {
            let msgs: Vec<String> = errs
                .iter()
                .map(|e| {
                    let code = e.get("code").and_then(|c| c.as_str()).unwrap_or("");
                    let msg = e.get("message").and_then(|c| c.as_str()).unwrap_or("");
                    match (code, msg) {
                        ("", m) => m.to_string(),
                        (c, "") => c.to_lowercase(),
                        (_, m) => m.to_string(),
                    }
                })
                .filter(|s| !s.is_empty())
                .collect();
            if !msgs.is_empty() {
                return msgs.join("; ");
            }
        }
        if let Some(d) = v
            .get("details")
            .or(v.get("message"))
            .and_then(|d| d.as_str())
        {
            return d.to_string();
        }
    }
    let text = String::from_utf8_lossy(&data);
    let line = text.lines().next().unwrap_or("").trim();
    line.chars().take(200).collect()
}

fn http_err(method: &'static str, url: &str, e: &ureq::Error) -> Error {
    let message = match e {
        ureq::Error::Io(io) => io.to_string(),
        other => other.to_string(),
    };
    Error::Http {
        method,
        url: url.to_string(),
        message,
        transient: transient_ureq(e),
    }
}

/// The body of `GET /v2/NAME/tags/list`; `tags` is null for a repository without tags.
#[derive(serde::Deserialize)]
struct TagList {
    tags: Option<Vec<String>>,
}

/// One result of a registry search.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SearchResult {
    /// the repository, without the registry
    pub name: String,
    pub description: String,
    pub stars: u64,
    pub official: bool,
    pub automated: bool,
}

/// The body of Docker Hub's `GET /v1/search?q=TERM&n=N`.
#[derive(serde::Deserialize)]
struct V1Search {
    #[serde(default)]
    results: Vec<V1Result>,
}

#[derive(serde::Deserialize)]
struct V1Result {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    star_count: u64,
    #[serde(default)]
    is_official: bool,
    #[serde(default)]
    is_automated: bool,
}

/// The results in a `/v1/search` answer.
pub fn parse_v1_search(bytes: &[u8]) -> Option<Vec<SearchResult>> {
    let page: V1Search = serde_json::from_slice(bytes).ok()?;
    Some(
        page.results
            .into_iter()
            .map(|r| SearchResult {
                name: r.name,
                description: r.description.unwrap_or_default(),
                stars: r.star_count,
                official: r.is_official,
                automated: r.is_automated,
            })
            .collect(),
    )
}

/// The body of a GET answer that holds a listing (at most a manifest's size).
fn small_body(resp: Response<Body>, url: &str) -> Result<Vec<u8>> {
    resp.into_body()
        .with_config()
        .limit(MANIFEST_LIMIT)
        .read_to_vec()
        .map_err(|e| http_err("GET", url, &e))
}

/// The body of `GET /v2/_catalog`.
#[derive(serde::Deserialize)]
struct Catalog {
    repositories: Option<Vec<String>>,
}

/// The target of the `rel="next"` entry of a Link header (RFC 8288):
/// `</v2/x/tags/list?n=100&last=b>; rel="next"`.
fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|entry| {
        let (target, params) = entry.trim().split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim();
            p.strip_prefix("rel=")
                .map(|v| v.trim_matches('"').split_whitespace().any(|r| r == "next"))
                .unwrap_or(false)
        });
        is_next.then(|| target.to_string())
    })
}

/// Append `k=v` to `url`'s query, percent-encoding the value.
fn with_query(url: &str, k: &str, v: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{k}={}", encode(v))
}

fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Client {
    /// Connect to `registry` for `repository`: ping `/v2/` over HTTPS (and plain HTTP when
    /// `insecure` and HTTPS fails) and learn how to authenticate. `push` asks for push
    /// access in tokens.
    pub fn connect(
        registry: &str,
        repository: &str,
        insecure: bool,
        push: bool,
        opts: &TransportOptions,
    ) -> Result<Client> {
        let creds = match &opts.credentials {
            Some(c) => Some(c.clone()),
            None => auth::lookup(registry, repository, opts.authfile.as_deref())?,
        };
        let agent = build_agent(registry, insecure, opts)?;
        let host = api_host(registry);
        let actions = if push { "pull,push" } else { "pull" };
        let mut client = Client {
            agent,
            base: format!("https://{host}"),
            registry: registry.to_string(),
            repository: repository.to_string(),
            creds,
            auth: Mutex::new(AuthState::Anonymous),
            // no repository (a catalog search): the caller adds its scope
            scopes: Mutex::new(if repository.is_empty() {
                Vec::new()
            } else {
                vec![format!("repository:{repository}:{actions}")]
            }),
        };
        client.ping(host, insecure)?;
        Ok(client)
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }

    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// `https://host` or `http://host`, as the ping found it.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Ask for `scope` (e.g. `repository:other/repo:pull`) in future tokens too.
    pub fn add_scope(&self, scope: String) {
        let mut s = self.scopes.lock().unwrap_or_else(|p| p.into_inner());
        if !s.contains(&scope) {
            s.push(scope);
            // The current token lacks it: get a new one before the next request.
            if let AuthState::Bearer { token, .. } =
                &mut *self.auth.lock().unwrap_or_else(|p| p.into_inner())
            {
                *token = None;
            }
        }
    }

    fn ping(&mut self, host: &str, insecure: bool) -> Result<()> {
        let https = format!("https://{host}/v2/");
        let resp = match self.get_with_retry(&https) {
            Ok(r) => r,
            Err(e) if insecure && tls_or_connect(&e) => {
                let http = format!("http://{host}/v2/");
                let r = self
                    .get_with_retry(&http)
                    .map_err(|e2| http_err("GET", &http, &e2))?;
                self.base = format!("http://{host}");
                r
            }
            Err(e) => {
                let mut err = http_err("GET", &https, &e);
                if let Error::Http { message, .. } = &mut err {
                    if matches!(e, ureq::Error::Tls(_) | ureq::Error::Rustls(_))
                        || message.contains("certificate")
                        || message.contains("InvalidContentType")
                        || message.contains("CorruptMessage")
                    {
                        message.push_str(
                            " (for a registry with a private CA use --cert-dir or certs.d; \
                             for plain HTTP use --tls-verify=false or insecure = true in \
                             registries.conf)",
                        );
                    }
                }
                return Err(err);
            }
        };
        let status = resp.status().as_u16();
        match status {
            200..=299 => Ok(()),
            401 => {
                let chs = resp
                    .headers()
                    .get_all("www-authenticate")
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .flat_map(challenge::parse)
                    .collect::<Vec<_>>();
                let state = if let Some(b) = chs.iter().find(|c| c.is_bearer()) {
                    AuthState::Bearer {
                        challenge: b.clone(),
                        token: None,
                    }
                } else if chs.iter().any(|c| c.is_basic()) {
                    AuthState::Basic
                } else {
                    return Err(Error::Protocol(format!(
                        "{}/v2/: http 401 without a usable WWW-Authenticate challenge",
                        self.base
                    )));
                };
                *self.auth.lock().unwrap_or_else(|p| p.into_inner()) = state;
                Ok(())
            }
            _ => Err(Error::Status {
                url: format!("{}/v2/", self.base),
                status,
                detail: format!("not an OCI distribution registry? {}", error_detail(resp))
                    .trim_end_matches("? ")
                    .to_string(),
            }),
        }
    }

    fn get_with_retry(&self, url: &str) -> std::result::Result<Response<Body>, ureq::Error> {
        let mut attempt = 0;
        loop {
            match self.agent.get(url).call() {
                Err(e) if transient_ureq(&e) && attempt < MAX_RETRIES => {
                    backoff(attempt);
                    attempt += 1;
                }
                Ok(r) if r.status().as_u16() >= 500 && attempt < MAX_RETRIES => {
                    backoff(attempt);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// The Authorization header for the next request, fetching a token when needed.
    fn authorization(&self) -> Result<Option<String>> {
        let state = self.auth.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match state {
            AuthState::Anonymous => Ok(None),
            AuthState::Basic => Ok(self.creds.as_ref().map(|c| format!("Basic {}", c.encode()))),
            AuthState::Bearer { token: Some(t), .. } => Ok(Some(format!("Bearer {t}"))),
            AuthState::Bearer {
                challenge,
                token: None,
            } => {
                let t = self.fetch_token(&challenge)?;
                let mut st = self.auth.lock().unwrap_or_else(|p| p.into_inner());
                if let AuthState::Bearer { token, .. } = &mut *st {
                    *token = Some(t.clone());
                }
                Ok(Some(format!("Bearer {t}")))
            }
        }
    }

    /// GET the challenge's realm for a token covering our scopes.
    fn fetch_token(&self, ch: &Challenge) -> Result<String> {
        let Some(realm) = ch.param("realm") else {
            return Err(Error::Protocol(format!(
                "{}: Bearer challenge without a realm",
                self.registry
            )));
        };
        if !(realm.starts_with("https://") || realm.starts_with("http://")) {
            return Err(Error::Protocol(format!(
                "{}: token realm `{realm}` is not an http(s) URL",
                self.registry
            )));
        }
        let scopes = self
            .scopes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(rt) = self
            .creds
            .as_ref()
            .and_then(|c| c.identity_token.as_deref())
        {
            return self.fetch_oauth_token(realm, ch.param("service"), &scopes, rt);
        }
        let mut url = realm.to_string();
        if let Some(s) = ch.param("service") {
            url = with_query(&url, "service", s);
        }
        for s in &scopes {
            url = with_query(&url, "scope", s);
        }
        if let Some(c) = &self.creds {
            url = with_query(&url, "account", &c.username);
        }
        let mut attempt = 0;
        let resp = loop {
            let mut req = self.agent.get(&url);
            if let Some(c) = &self.creds {
                req = req.header("Authorization", format!("Basic {}", c.encode()));
            }
            match req.call() {
                Err(e) if transient_ureq(&e) && attempt < MAX_RETRIES => {
                    backoff(attempt);
                    attempt += 1;
                }
                Err(e) => return Err(http_err("GET", realm, &e)),
                Ok(r) if r.status().as_u16() >= 500 && attempt < MAX_RETRIES => {
                    backoff(attempt);
                    attempt += 1;
                }
                Ok(r) => break r,
            }
        };
        let status = resp.status().as_u16();
        if status == 401 || status == 403 {
            let detail = if self.creds.is_some() {
                "invalid username or password".to_string()
            } else {
                error_detail(resp)
            };
            return Err(Error::Unauthorized {
                registry: self.registry.clone(),
                detail,
            });
        }
        token_from_answer(resp, "GET", realm, ["token", "access_token"])
    }

    /// Exchange an OAuth2 refresh token (an identity token) for an access token: the POST
    /// form of the distribution token protocol.
    fn fetch_oauth_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
        refresh_token: &str,
    ) -> Result<String> {
        let mut form = format!(
            "grant_type=refresh_token&client_id=rbox&refresh_token={}",
            encode(refresh_token)
        );
        if let Some(s) = service {
            form.push_str(&format!("&service={}", encode(s)));
        }
        if !scopes.is_empty() {
            form.push_str(&format!("&scope={}", encode(&scopes.join(" "))));
        }
        let mut attempt = 0;
        let resp = loop {
            let res = self
                .agent
                .post(realm)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .send(form.as_bytes());
            match res {
                Err(e) if transient_ureq(&e) && attempt < MAX_RETRIES => {
                    backoff(attempt);
                    attempt += 1;
                }
                Err(e) => return Err(http_err("POST", realm, &e)),
                Ok(r) if r.status().as_u16() >= 500 && attempt < MAX_RETRIES => {
                    backoff(attempt);
                    attempt += 1;
                }
                Ok(r) => break r,
            }
        };
        let status = resp.status().as_u16();
        if matches!(status, 400 | 401 | 403) {
            return Err(Error::Unauthorized {
                registry: self.registry.clone(),
                detail: format!("the identity token was refused: {}", error_detail(resp)),
            });
        }
        token_from_answer(resp, "POST", realm, ["access_token", "token"])
    }

    /// After a 401: adopt the new challenge (a wider scope, an expired token) and say whether
    /// trying again can help.
    fn reauthenticate(&self, resp: &Response<Body>) -> bool {
        let chs: Vec<Challenge> = resp
            .headers()
            .get_all("www-authenticate")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(challenge::parse)
            .collect();
        if let Some(b) = chs.iter().find(|c| c.is_bearer()) {
            if let Some(scope) = b.param("scope") {
                let mut s = self.scopes.lock().unwrap_or_else(|p| p.into_inner());
                for one in scope.split(' ') {
                    if !one.is_empty() && !s.iter().any(|x| x == one) {
                        s.push(one.to_string());
                    }
                }
            }
            *self.auth.lock().unwrap_or_else(|p| p.into_inner()) = AuthState::Bearer {
                challenge: b.clone(),
                token: None,
            };
            return true;
        }
        if chs.iter().any(|c| c.is_basic()) && self.creds.is_some() {
            let mut st = self.auth.lock().unwrap_or_else(|p| p.into_inner());
            if !matches!(*st, AuthState::Basic) {
                *st = AuthState::Basic;
                return true;
            }
        }
        false
    }

    /// Absolute URL for an API path (`/v2/...`) or a Location header.
    pub fn url(&self, path_or_url: &str) -> String {
        if path_or_url.starts_with("http://") || path_or_url.starts_with("https://") {
            path_or_url.to_string()
        } else if path_or_url.starts_with('/') {
            format!("{}{path_or_url}", self.base)
        } else {
            format!("{}/{path_or_url}", self.base)
        }
    }

    /// Send one request with auth, retrying transient failures when `retry`, and trying again
    /// once with fresh credentials after a 401. Returns the response whatever its status
    /// (but 401 becomes [`Error::Unauthorized`]).
    pub fn send(
        &self,
        method: &'static str,
        url: &str,
        headers: &[(&str, String)],
        body: ReqBody<'_>,
        retry: bool,
    ) -> Result<Response<Body>> {
        let mut attempt = 0;
        let mut reauthed = false;
        loop {
            let auth = self.authorization()?;
            let res = self.send_once(method, url, headers, body, auth.as_deref());
            match res {
                Err(e) => {
                    if retry && transient_ureq(&e) && attempt < MAX_RETRIES {
                        backoff(attempt);
                        attempt += 1;
                        continue;
                    }
                    return Err(http_err(method, url, &e));
                }
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    if status == 401 {
                        if !reauthed && self.reauthenticate(&resp) {
                            reauthed = true;
                            continue;
                        }
                        let detail = if self.creds.is_some() {
                            error_detail(resp)
                        } else {
                            let d = error_detail(resp);
                            if d.is_empty() {
                                "log in with rbox login".into()
                            } else {
                                format!("{d} (log in with rbox login)")
                            }
                        };
                        return Err(Error::Unauthorized {
                            registry: self.registry.clone(),
                            detail,
                        });
                    }
                    if retry && (status >= 500 || status == 429) && attempt < MAX_RETRIES {
                        backoff(attempt);
                        attempt += 1;
                        continue;
                    }
                    return Ok(resp);
                }
            }
        }
    }

    fn send_once(
        &self,
        method: &'static str,
        url: &str,
        headers: &[(&str, String)],
        body: ReqBody<'_>,
        auth: Option<&str>,
    ) -> std::result::Result<Response<Body>, ureq::Error> {
        macro_rules! with_headers {
            ($req:expr) => {{
                let mut r = $req;
                for (k, v) in headers {
                    r = r.header(*k, v.as_str());
                }
                if let Some(a) = auth {
                    r = r.header("Authorization", a);
                }
                r
            }};
        }
        match method {
            "GET" => with_headers!(self.agent.get(url)).call(),
            "HEAD" => with_headers!(self.agent.head(url)).call(),
            "DELETE" => with_headers!(self.agent.delete(url)).call(),
            m => {
                let req = match m {
                    "POST" => self.agent.post(url),
                    "PUT" => self.agent.put(url),
                    _ => self.agent.patch(url),
                };
                let req = with_headers!(req);
                match body {
                    ReqBody::None => req.header("Content-Length", "0").send_empty(),
                    ReqBody::Bytes(b) => req.send(b),
                    ReqBody::File {
                        path,
                        offset,
                        len,
                        progress,
                    } => {
                        use std::io::Seek;
                        let mut f = std::fs::File::open(path)?;
                        f.seek(io::SeekFrom::Start(offset))?;
                        let mut limited = Counting {
                            inner: f.take(len),
                            progress,
                        };
                        req.header("Content-Length", len.to_string())
                            .send(SendBody::from_reader(&mut limited))
                    }
                }
            }
        }
    }

    fn manifest_url(&self, reference: &str) -> String {
        format!("{}/v2/{}/manifests/{reference}", self.base, self.repository)
    }

    fn blob_url(&self, digest: &Digest) -> String {
        format!("{}/v2/{}/blobs/{digest}", self.base, self.repository)
    }

    fn display_ref(&self, reference: &str) -> String {
        let sep = if reference.contains(':') { '@' } else { ':' };
        format!("{}/{}{sep}{reference}", self.registry, self.repository)
    }

    fn status_error(&self, url: &str, resp: Response<Body>) -> Error {
        let status = resp.status().as_u16();
        let detail = error_detail(resp);
        if status == 403 {
            return Error::Denied {
                registry: self.registry.clone(),
                repository: self.repository.clone(),
                detail,
            };
        }
        Error::Status {
            url: url.to_string(),
            status,
            detail,
        }
    }

    /// GET a manifest (or index) by tag or digest, verified: by digest the body must hash to
    /// it; by tag it must match Docker-Content-Digest when the registry sends one.
    pub fn get_manifest(&self, reference: &str) -> Result<FetchedManifest> {
        let url = self.manifest_url(reference);
        let resp = self.send(
            "GET",
            &url,
            &[("Accept", MANIFEST_ACCEPT.to_string())],
            ReqBody::None,
            true,
        )?;
        let status = resp.status().as_u16();
        if status == 404 {
            return Err(Error::ManifestUnknown {
                reference: self.display_ref(reference),
            });
        }
        if status != 200 {
            return Err(self.status_error(&url, resp));
        }
        let content_type = header(&resp, "content-type").unwrap_or_default();
        let header_digest = header(&resp, "docker-content-digest");
        let bytes = resp
            .into_body()
            .with_config()
            .limit(MANIFEST_LIMIT)
            .read_to_vec()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(_) => Error::TooLarge {
                    what: format!("manifest {}", self.display_ref(reference)),
                    limit: MANIFEST_LIMIT,
                },
                e => http_err("GET", &url, &e),
            })?;
        let digest = Digest::of(&bytes);
        let expected = if reference.contains(':') {
            Some(reference.to_string())
        } else {
            header_digest.filter(|d| d.starts_with("sha256:"))
        };
        if let Some(exp) = expected {
            let exp = Digest::parse(&exp).map_err(|_| {
                Error::Protocol(format!(
                    "invalid manifest digest `{exp}` from {}",
                    self.registry
                ))
            })?;
            if exp != digest {
                return Err(Error::DigestMismatch {
                    what: format!("manifest {}", self.display_ref(reference)),
                    expected: exp,
                    actual: digest,
                });
            }
        }
        let media_type = crate::manifest::media_type_of(&content_type, &bytes);
        Ok(FetchedManifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// Every tag of the repository (`GET /v2/NAME/tags/list`), following the `Link: <...>;
    /// rel="next"` pages registries send when they cap a page (distribution's pagination).
    pub fn list_tags(&self) -> Result<Vec<String>> {
        let url = format!("{}/v2/{}/tags/list", self.base, self.repository);
        let unknown = || Error::RepositoryUnknown {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
        };
        self.pages(url, usize::MAX, "tag list", Some(&unknown), |p: TagList| {
            p.tags.unwrap_or_default()
        })
    }

    /// The registry's repositories (`GET /v2/_catalog`, the `registry:catalog:*` scope),
    /// following `Link` pages as [`Client::list_tags`] does, at most `max` of them.
    pub fn list_catalog(&self, max: usize) -> Result<Vec<String>> {
        self.add_scope("registry:catalog:*".to_string());
        let url = format!("{}/v2/_catalog", self.base);
        self.pages(url, max, "catalog", None, |p: Catalog| {
            p.repositories.unwrap_or_default()
        })
    }

    /// The names of a listing from `url` on, page by page (`Link: <...>; rel="next"`, as
    /// distribution paginates), at most `max`; `items` takes a page's names (`what` names the
    /// page in errors), `not_found` is the error for a 404 when it has its own.
    fn pages<T: serde::de::DeserializeOwned>(
        &self,
        mut url: String,
        max: usize,
        what: &str,
        not_found: Option<&dyn Fn() -> Error>,
        items: impl Fn(T) -> Vec<String>,
    ) -> Result<Vec<String>> {
        let mut out = Vec::new();
        // A registry that keeps answering with a next page it already sent would loop forever.
        let mut seen = Vec::new();
        loop {
            let resp = self.send("GET", &url, &[], ReqBody::None, true)?;
            let status = resp.status().as_u16();
            if let (404, Some(e)) = (status, not_found) {
                return Err(e());
            }
            if status != 200 {
                return Err(self.status_error(&url, resp));
            }
            let next = header(&resp, "link").and_then(|l| next_link(&l));
            let bytes = small_body(resp, &url)?;
            let page: T = serde_json::from_slice(&bytes)
                .map_err(|e| Error::Protocol(format!("invalid {what} from `{url}`: {e}")))?;
            out.extend(items(page));
            seen.push(url);
            match next.map(|n| self.url(&n)) {
                Some(n) if !seen.contains(&n) && out.len() < max => url = n,
                _ => {
                    out.truncate(max);
                    return Ok(out);
                }
            }
        }
    }

    /// Docker Hub's search API (`GET /v1/search?q=TERM&n=LIMIT`, on index.docker.io for
    /// docker.io): `None` where the registry does not answer it (a v2 registry: 404), so
    /// that the caller searches the catalog instead.
    pub fn v1_search(&self, term: &str, limit: usize) -> Result<Option<Vec<SearchResult>>> {
        let base = if api_host(&self.registry) == api_host("docker.io") {
            "https://index.docker.io".to_string()
        } else {
            self.base.clone()
        };
        let url = with_query(&format!("{base}/v1/search"), "q", term);
        let url = with_query(&url, "n", &limit.to_string());
        let resp = match self.send("GET", &url, &[], ReqBody::None, false) {
            Ok(r) => r,
            Err(_) => return Ok(None),
        };
        if resp.status().as_u16() != 200 {
            return Ok(None);
        }
        Ok(parse_v1_search(&small_body(resp, &url)?))
    }

    /// HEAD a manifest: its digest and media type, `None` when unknown.
    pub fn head_manifest(&self, reference: &str) -> Result<Option<(Digest, String)>> {
        let url = self.manifest_url(reference);
        let resp = self.send(
            "HEAD",
            &url,
            &[("Accept", MANIFEST_ACCEPT.to_string())],
            ReqBody::None,
            true,
        )?;
        match resp.status().as_u16() {
            200 => {
                let d = header(&resp, "docker-content-digest").and_then(|d| Digest::parse(&d).ok());
                let mt = header(&resp, "content-type").unwrap_or_default();
                match d {
                    Some(d) => Ok(Some((d, mt))),
                    // No digest header: fall back to a GET.
                    None => self
                        .get_manifest(reference)
                        .map(|m| Some((m.digest, m.media_type))),
                }
            }
            404 => Ok(None),
            _ => Err(self.status_error(&url, resp)),
        }
    }

    /// GET a small blob (an image config) into memory, verifying size and digest.
    pub fn get_blob_bytes(
        &self,
        digest: &Digest,
        size: Option<u64>,
        limit: u64,
    ) -> Result<Vec<u8>> {
        if let Some(s) = size {
            if s > limit {
                return Err(Error::TooLarge {
                    what: format!("blob {digest}"),
                    limit,
                });
            }
        }
        let mut r = self.blob_reader(digest, size, None)?;
        let mut data = Vec::new();
        (&mut r)
            .take(limit + 1)
            .read_to_end(&mut data)
            .map_err(|e| Error::io(format!("read blob {digest}"), e))?;
        if data.len() as u64 > limit {
            return Err(Error::TooLarge {
                what: format!("blob {digest}"),
                limit,
            });
        }
        if let Some(s) = size {
            if data.len() as u64 != s {
                return Err(Error::SizeMismatch {
                    what: format!("blob {digest}"),
                    expected: s,
                    actual: data.len() as u64,
                });
            }
        }
        let actual = Digest::of(&data);
        if &actual != digest {
            return Err(Error::DigestMismatch {
                what: format!("blob from {}/{}", self.registry, self.repository),
                expected: digest.clone(),
                actual,
            });
        }
        Ok(data)
    }

    /// Open a blob for streaming from `offset`. A registry that ignores Range gets the
    /// skipped bytes read and dropped.
    fn open_blob(&self, digest: &Digest, offset: u64) -> Result<ureq::BodyReader<'static>> {
        let url = self.blob_url(digest);
        let mut headers = Vec::new();
        if offset > 0 {
            headers.push(("Range", format!("bytes={offset}-")));
        }
        let resp = self.send("GET", &url, &headers, ReqBody::None, true)?;
        let status = resp.status().as_u16();
        match status {
            200 => {
                let mut r = resp.into_body().into_reader();
                if offset > 0 {
                    let skipped = io::copy(&mut (&mut r).take(offset), &mut io::sink())
                        .map_err(|e| Error::io(format!("read blob {digest}"), e))?;
                    if skipped != offset {
                        return Err(Error::Http {
                            method: "GET",
                            url,
                            message: "blob shorter than on the first attempt".into(),
                            transient: true,
                        });
                    }
                }
                Ok(r)
            }
            206 if offset > 0 => {
                let start = header(&resp, "content-range").and_then(|cr| {
                    let rest = cr.strip_prefix("bytes ")?;
                    rest.split('-').next()?.parse::<u64>().ok()
                });
                if start.is_some_and(|s| s != offset) {
                    return Err(Error::Protocol(format!(
                        "{url}: range answer does not start at byte {offset}"
                    )));
                }
                Ok(resp.into_body().into_reader())
            }
            404 => Err(Error::BlobUnknown {
                registry: self.registry.clone(),
                repository: self.repository.clone(),
                digest: digest.clone(),
            }),
            _ => Err(self.status_error(&url, resp)),
        }
    }

    /// A reader over a blob that resumes with Range requests after resets and timeouts.
    /// `on_bytes` is told how many bytes each read returned (progress).
    pub fn blob_reader<'a>(
        &'a self,
        digest: &Digest,
        size: Option<u64>,
        on_bytes: Option<&'a (dyn Fn(u64) + Sync)>,
    ) -> Result<BlobReader<'a>> {
        let inner = self.open_blob(digest, 0)?;
        Ok(BlobReader {
            client: self,
            digest: digest.clone(),
            size,
            pos: 0,
            inner: Some(inner),
            resumes: 0,
            on_bytes,
        })
    }

    /// HEAD a blob in this repository.
    pub fn blob_exists(&self, digest: &Digest) -> Result<bool> {
        let url = self.blob_url(digest);
        let resp = self.send("HEAD", &url, &[], ReqBody::None, true)?;
        match resp.status().as_u16() {
            200..=299 => Ok(true),
            404 => Ok(false),
            _ => Err(self.status_error(&url, resp)),
        }
    }

    /// POST an upload session, or a cross-repository mount of `digest` from `from`.
    pub fn start_upload(&self, mount: Option<(&Digest, &str)>) -> Result<UploadStart> {
        let mut url = format!("{}/v2/{}/blobs/uploads/", self.base, self.repository);
        if let Some((d, from)) = mount {
            url = with_query(&url, "mount", &d.to_string());
            url = with_query(&url, "from", from);
        }
        let resp = self.send("POST", &url, &[], ReqBody::None, true)?;
        let status = resp.status().as_u16();
        match status {
            201 if mount.is_some() => Ok(UploadStart::Mounted),
            202 => match header(&resp, "location") {
                Some(l) => Ok(UploadStart::Session(self.url(&l))),
                None => Err(Error::Protocol(format!(
                    "{url}: upload session without a Location"
                ))),
            },
            _ => Err(self.status_error(&url, resp)),
        }
    }

    /// PATCH one chunk (`len` bytes of `path` at `offset`) into an upload session; returns
    /// the session's next URL.
    pub fn patch_chunk(
        &self,
        location: &str,
        path: &Path,
        offset: u64,
        len: u64,
        progress: Option<&(dyn Fn(u64) + Sync)>,
    ) -> Result<String> {
        let end = offset + len - 1;
        let resp = self.send(
            "PATCH",
            location,
            &[
                ("Content-Type", "application/octet-stream".into()),
                ("Content-Range", format!("{offset}-{end}")),
            ],
            ReqBody::File {
                path,
                offset,
                len,
                progress,
            },
            false,
        )?;
        match resp.status().as_u16() {
            202 | 204 => match header(&resp, "location") {
                Some(l) => Ok(self.url(&l)),
                None => Ok(location.to_string()),
            },
            _ => Err(self.status_error(location, resp)),
        }
    }

    /// PUT to close an upload session with the blob's digest and the last bytes (or none).
    pub fn finish_upload(&self, location: &str, digest: &Digest, body: ReqBody<'_>) -> Result<()> {
        let url = with_query(location, "digest", &digest.to_string());
        let headers = [("Content-Type", "application/octet-stream".to_string())];
        let resp = self.send("PUT", &url, &headers, body, false)?;
        match resp.status().as_u16() {
            201 | 204 => Ok(()),
            _ => Err(self.status_error(location, resp)),
        }
    }

    /// PUT a manifest under `reference` (a tag or its digest); returns its digest.
    pub fn put_manifest(&self, reference: &str, media_type: &str, bytes: &[u8]) -> Result<Digest> {
        let url = self.manifest_url(reference);
        let resp = self.send(
            "PUT",
            &url,
            &[("Content-Type", media_type.to_string())],
            ReqBody::Bytes(bytes),
            true,
        )?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(self.status_error(&url, resp));
        }
        let digest = Digest::of(bytes);
        if let Some(h) = header(&resp, "docker-content-digest") {
            if let Ok(d) = Digest::parse(&h) {
                if d != digest {
                    return Err(Error::DigestMismatch {
                        what: format!("manifest stored at {}", self.display_ref(reference)),
                        expected: digest,
                        actual: d,
                    });
                }
            }
        }
        Ok(digest)
    }
}

/// A blob body that resumes after transient failures (see [`Client::blob_reader`]).
pub struct BlobReader<'a> {
    client: &'a Client,
    digest: Digest,
    size: Option<u64>,
    pos: u64,
    inner: Option<ureq::BodyReader<'static>>,
    resumes: u32,
    on_bytes: Option<&'a (dyn Fn(u64) + Sync)>,
}

impl BlobReader<'_> {
    /// Bytes delivered so far.
    pub fn position(&self) -> u64 {
        self.pos
    }
}

impl Read for BlobReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Never read past the size the manifest gives: a registry that keeps sending cannot
        // fill the disk, and the digest check decides about the bytes promised.
        let buf = match self.size {
            Some(s) if self.pos >= s => return Ok(0),
            Some(s) => {
                let room = usize::try_from(s - self.pos).unwrap_or(usize::MAX);
                let n = buf.len().min(room);
                &mut buf[..n]
            }
            None => buf,
        };
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let res = match &mut self.inner {
                Some(r) => r.read(buf),
                None => Err(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "no connection",
                )),
            };
            let err = match res {
                Ok(0) if self.size.is_some_and(|s| self.pos < s) => io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "blob {} ended after {} of {} bytes",
                        self.digest,
                        self.pos,
                        self.size.unwrap_or(0)
                    ),
                ),
                Ok(n) => {
                    self.pos += n as u64;
                    if let Some(f) = self.on_bytes {
                        f(n as u64);
                    }
                    return Ok(n);
                }
                Err(e) => e,
            };
            // A Ctrl-C interrupts a read that waits for the registry (EINTR): stop with the
            // error the store's streams give, not one that readers retry.
            if rbox_storage::interrupt::requested() {
                return Err(rbox_storage::interrupt::error());
            }
            if !transient_io(&err) || self.resumes >= MAX_RETRIES {
                return Err(err);
            }
            // Resume where the stream broke.
            self.inner = None;
            backoff(self.resumes);
            self.resumes += 1;
            match self.client.open_blob(&self.digest, self.pos) {
                Ok(r) => self.inner = Some(r),
                Err(e) if e.is_transient() => {}
                Err(e) => return Err(io::Error::other(e)),
            }
        }
    }
}

/// Check `creds` against `registry` the way `login` must: with Basic auth the `/v2/` ping
/// must succeed with them; with a Bearer challenge the token endpoint must accept them.
pub fn verify_credentials(
    registry: &str,
    creds: &Credentials,
    opts: &TransportOptions,
) -> Result<()> {
    let insecure = match opts.tls_verify {
        Some(v) => !v,
        None => crate::config::RegistriesConf::load(opts.registries_conf.as_deref())?
            .is_insecure(registry),
    };
    let mut o = opts.clone();
    o.credentials = Some(creds.clone());
    let agent = build_agent(registry, insecure, &o)?;
    let host = api_host(registry);
    let mut client = Client {
        agent,
        base: format!("https://{host}"),
        registry: registry.to_string(),
        repository: String::new(),
        creds: Some(creds.clone()),
        auth: Mutex::new(AuthState::Anonymous),
        scopes: Mutex::new(Vec::new()),
    };
    client.ping(host, insecure)?;
    let state = client
        .auth
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    match state {
        // The registry lets anyone in: nothing to check against, as podman does.
        AuthState::Anonymous => Ok(()),
        AuthState::Bearer { challenge, .. } => client.fetch_token(&challenge).map(|_| ()),
        AuthState::Basic => {
            let url = format!("{}/v2/", client.base);
            let resp = client
                .agent
                .get(&url)
                .header("Authorization", format!("Basic {}", creds.encode()))
                .call()
                .map_err(|e| http_err("GET", &url, &e))?;
            match resp.status().as_u16() {
                200..=299 => Ok(()),
                401 | 403 => Err(Error::Unauthorized {
                    registry: registry.to_string(),
                    detail: "invalid username or password".into(),
                }),
                _ => Err(client.status_error(&url, resp)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_search_results_parse() {
        let body = br#"{"num_results":2,"query":"x","results":[
            {"name":"library/x","description":"The X","star_count":12,"is_official":true,"is_automated":false},
            {"name":"me/x","description":null}]}"#;
        let r = parse_v1_search(body).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(
            r[0],
            SearchResult {
                name: "library/x".into(),
                description: "The X".into(),
                stars: 12,
                official: true,
                automated: false,
            }
        );
        assert_eq!(r[1].description, "");
        assert!(parse_v1_search(b"not json").is_none());
    }

    #[test]
    fn link_header_next_page() {
        assert_eq!(
            next_link(r#"</v2/a/tags/list?n=2&last=b>; rel="next""#).as_deref(),
            Some("/v2/a/tags/list?n=2&last=b")
        );
        assert_eq!(
            next_link(r#"<https://r/v2/a/tags/list?last=c>; rel=next"#).as_deref(),
            Some("https://r/v2/a/tags/list?last=c")
        );
        assert_eq!(
            next_link(r#"</first>; rel="prev", </second>; type="x"; rel="next""#).as_deref(),
            Some("/second")
        );
        assert_eq!(next_link(r#"</v2/a/tags/list>; rel="prev""#), None);
        assert_eq!(next_link("garbage"), None);
    }

    #[test]
    fn query_encoding() {
        assert_eq!(
            with_query("https://a/token", "scope", "repository:x/y:pull,push"),
            "https://a/token?scope=repository%3Ax%2Fy%3Apull%2Cpush"
        );
        assert_eq!(
            with_query("https://a/t?x=1", "service", "r.io"),
            "https://a/t?x=1&service=r.io"
        );
    }

    #[test]
    fn docker_hub_api_host() {
        assert_eq!(api_host("docker.io"), "registry-1.docker.io");
        assert_eq!(api_host("quay.io"), "quay.io");
    }

    #[test]
    fn transient_classification() {
        assert!(transient_io(&io::Error::from(
            io::ErrorKind::ConnectionReset
        )));
        assert!(transient_io(&io::Error::from(io::ErrorKind::UnexpectedEof)));
        assert!(!transient_io(&io::Error::from(
            io::ErrorKind::PermissionDenied
        )));
        assert!(!transient_io(&io::Error::from(
            io::ErrorKind::ConnectionRefused
        )));
        let wrapped = io::Error::other(ureq::Error::Timeout(ureq::Timeout::Global));
        assert!(transient_io(&wrapped));
        let e = Error::Status {
            url: "u".into(),
            status: 503,
            detail: String::new(),
        };
        assert!(e.is_transient());
        let e = Error::Status {
            url: "u".into(),
            status: 404,
            detail: String::new(),
        };
        assert!(!e.is_transient());
    }
}
