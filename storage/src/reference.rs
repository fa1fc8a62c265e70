//! Image references as Podman and Docker read them: the docker/distribution reference grammar
//! (`[domain[:port]/]path[:tag][@algo:hex]`) with Docker's normalisation, so `alpine` means
//! `docker.io/library/alpine:latest`, `localhost/x` names the registry `localhost`, and
//! `host:5000/repo:tag` keeps its port.
//!
//! This module only parses, validates and prints names. It does not resolve short names
//! through registries.conf (the registry crate does that with [`Reference::with_registry`]) and
//! does not look anything up in the store.
//!
//! Grammar (from distribution's `reference/reference.go`):
//!
//! ```text
//! reference        := name [ ":" tag ] [ "@" digest ]
//! name             := [domain '/'] path-component ['/' path-component]*
//! domain           := host [':' port-number]
//! host             := domain-name | '[' IPv6 ']'
//! domain-name      := domain-component ['.' domain-component]*
//! domain-component := /([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])/
//! path-component   := alpha-numeric [separator alpha-numeric]*
//! alpha-numeric    := /[a-z0-9]+/
//! separator        := /[_.]|__|[-]+/
//! tag              := /[\w][\w.-]{0,127}/
//! digest           := algorithm ":" hex
//! ```
//!
//! The first path element counts as a registry only when it contains a `.` or a `:`, is
//! `localhost`, or has an uppercase letter; otherwise the name is a short name on Docker Hub.

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;

/// The registry unqualified names are normalised to, as Docker and Podman print them.
pub const DOCKER_IO: &str = "docker.io";
/// Docker Hub's legacy registry name, normalised to [`DOCKER_IO`].
const LEGACY_DOCKER_IO: &str = "index.docker.io";
/// The namespace of Docker Hub's official images (`alpine` is `library/alpine`).
const DOCKER_LIBRARY: &str = "library";
/// The tag a reference without tag or digest stands for.
pub const DEFAULT_TAG: &str = "latest";
/// Longest name (registry and path) the grammar accepts.
const NAME_MAX: usize = 255;
/// Longest tag the grammar accepts.
const TAG_MAX: usize = 128;

/// Why a string is not a valid image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("invalid reference format: empty name")]
    Empty,
    #[error("invalid reference format `{input}`: repository name must be lowercase")]
    Uppercase { input: String },
    #[error(
        "invalid reference format `{input}`: repository name longer than {NAME_MAX} characters"
    )]
    NameTooLong { input: String },
    #[error(
        "invalid reference format `{input}`: a 64-character hex string is an image id, not a name"
    )]
    HexId { input: String },
    #[error("invalid reference format `{input}`: bad registry `{registry}`")]
    Registry { input: String, registry: String },
    #[error("invalid reference format `{input}`: bad repository path `{path}`")]
    Path { input: String, path: String },
    #[error("invalid reference format `{input}`: bad tag `{tag}`")]
    Tag { input: String, tag: String },
    #[error("invalid reference format `{input}`: bad digest `{digest}`: {reason}")]
    Digest {
        input: String,
        digest: String,
        reason: &'static str,
    },
}

/// A parsed, normalised image reference.
///
/// Equality and hashing use the full printed form, so `alpine` equals
/// `docker.io/library/alpine:latest` (only [`Reference::is_short_name`] tells them apart).
#[derive(Debug, Clone)]
pub struct Reference {
    /// Registry host with optional port, e.g. `docker.io`, `localhost:5000`, `[::1]:5000`.
    registry: String,
    /// Repository path inside the registry, e.g. `library/alpine`.
    repository: String,
    /// The path as the user typed it (before `library/` was added), for short-name resolution.
    given_path: String,
    tag: Option<String>,
    digest: Option<Digest>,
    /// No registry was given: the name is subject to unqualified-search-registries.
    short: bool,
}

impl Reference {
    /// Parse and normalise `input`. Without tag and digest the tag is `latest`.
    pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
        let mut r = Self::parse_bare(input)?;
        if r.tag.is_none() && r.digest.is_none() {
            r.tag = Some(DEFAULT_TAG.to_string());
        }
        Ok(r)
    }

    /// Parse and normalise `input` without adding the default tag: the tag and digest are
    /// exactly what the input carries (useful for `rbox push IMAGE DEST` where a missing tag
    /// in DEST means "the source's tag").
    pub fn parse_bare(input: &str) -> Result<Reference, ReferenceError> {
        if input.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if input.len() == 64
            && input
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(ReferenceError::HexId {
                input: input.to_string(),
            });
        }
        let (rest, digest) = match input.split_once('@') {
            Some((r, d)) => (r, Some(parse_digest(input, d)?)),
            None => (input, None),
        };
        // A ':' after the last '/' separates the tag; one before it is a registry port.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let (n, t) = rest.split_at(last_slash + i);
                (n, Some(&t[1..]))
            }
            None => (rest, None),
        };
        if name.is_empty() {
            return Err(ReferenceError::Path {
                input: input.to_string(),
                path: String::new(),
            });
        }
        if name.len() > NAME_MAX {
            return Err(ReferenceError::NameTooLong {
                input: input.to_string(),
            });
        }
        if let Some(t) = tag {
            if !valid_tag(t) {
                return Err(ReferenceError::Tag {
                    input: input.to_string(),
                    tag: t.to_string(),
                });
            }
        }

        let (registry, path, short) = split_registry(name);
        if !short && !valid_registry(registry) {
            return Err(ReferenceError::Registry {
                input: input.to_string(),
                registry: registry.to_string(),
            });
        }
        if !valid_path(path) {
            if valid_path(&path.to_ascii_lowercase()) {
                return Err(ReferenceError::Uppercase {
                    input: input.to_string(),
                });
            }
            return Err(ReferenceError::Path {
                input: input.to_string(),
                path: path.to_string(),
            });
        }
        let registry = if registry == LEGACY_DOCKER_IO {
            DOCKER_IO
        } else {
            registry
        };
        Ok(Reference {
            registry: registry.to_string(),
            repository: repository_in(registry, path),
            given_path: path.to_string(),
            tag: tag.map(str::to_string),
            digest,
            short,
        })
    }

    /// Registry host and optional port (`docker.io` for a short name).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// Repository path inside the registry, e.g. `library/alpine`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if any (`latest` was filled in by [`Reference::parse`] when neither tag nor
    /// digest was given).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// True when the input named no registry (`alpine`, `library/alpine`, `user/app:1`):
    /// such names are resolved through unqualified-search-registries.
    pub fn is_short_name(&self) -> bool {
        self.short
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// What a distribution API manifest URL takes: the digest when there is one, else the tag
    /// (`latest` when neither).
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => DEFAULT_TAG.to_string(),
        }
    }

    /// This name with `tag` as its tag (the digest, if any, is kept). `tag` is validated.
    pub fn with_tag(&self, tag: &str) -> Result<Reference, ReferenceError> {
        if !valid_tag(tag) {
            return Err(ReferenceError::Tag {
                input: self.to_string(),
                tag: tag.to_string(),
            });
        }
        let mut r = self.clone();
        r.tag = Some(tag.to_string());
        Ok(r)
    }

    /// This name with `digest` as its digest, the tag kept.
    pub fn with_digest(&self, digest: &Digest) -> Reference {
        let mut r = self.clone();
        r.digest = Some(digest.clone());
        r
    }

    /// This name without its digest (for a reference that also carries a tag, or to name a
    /// repository).
    pub fn without_digest(&self) -> Reference {
        let mut r = self.clone();
        r.digest = None;
        r
    }

    /// This name without its tag.
    pub fn without_tag(&self) -> Reference {
        let mut r = self.clone();
        r.tag = None;
        r
    }

    /// A short name qualified with `registry`, the way Podman expands unqualified-search
    /// registries: `alpine` becomes `quay.io/alpine` but `docker.io/library/alpine`.
    /// On a name that already has a registry it replaces the registry and keeps the path.
    pub fn with_registry(&self, registry: &str) -> Result<Reference, ReferenceError> {
        let registry = if registry == LEGACY_DOCKER_IO {
            DOCKER_IO
        } else {
            registry
        };
        if !valid_registry(registry) {
            return Err(ReferenceError::Registry {
                input: self.to_string(),
                registry: registry.to_string(),
            });
        }
        let mut r = self.clone();
        r.registry = registry.to_string();
        r.repository = repository_in(registry, &self.given_path);
        r.short = false;
        Ok(r)
    }

    /// The short form Docker prints: `alpine:latest` for `docker.io/library/alpine:latest`,
    /// `user/app:1` for `docker.io/user/app:1`, the full form for every other registry.
    pub fn familiar(&self) -> String {
        let name = if self.registry == DOCKER_IO {
            match self.repository.strip_prefix("library/") {
                Some(p) if !p.contains('/') => p.to_string(),
                _ => self.repository.clone(),
            }
        } else {
            self.name()
        };
        let mut s = name;
        self.push_suffix(&mut s);
        s
    }

    fn push_suffix(&self, s: &mut String) {
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
    }
}

impl fmt::Display for Reference {
    /// The full form: `registry/repository[:tag][@digest]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = self.name();
        self.push_suffix(&mut s);
        f.write_str(&s)
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

impl PartialEq for Reference {
    fn eq(&self, other: &Self) -> bool {
        self.registry == other.registry
            && self.repository == other.repository
            && self.tag == other.tag
            && self.digest == other.digest
    }
}

impl Eq for Reference {}

impl std::hash::Hash for Reference {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.registry.hash(state);
        self.repository.hash(state);
        self.tag.hash(state);
        self.digest.hash(state);
    }
}

/// Split `name` into (registry, path, short) with Docker's rule: the first element is a
/// registry only if it has a `.` or `:`, is `localhost`, has an uppercase letter, or is a
/// bracketed IPv6 address. `short`: no registry named (Docker Hub's then).
pub fn split_registry(name: &str) -> (&str, &str, bool) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.starts_with('[')
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (first, rest, false)
        }
        _ => (DOCKER_IO, name, true),
    }
}

/// The repository path of `path` on `registry`: Docker Hub puts single-element names under
/// `library/`.
fn repository_in(registry: &str, path: &str) -> String {
    if registry == DOCKER_IO && !path.contains('/') {
        format!("{DOCKER_LIBRARY}/{path}")
    } else {
        path.to_string()
    }
}

/// `host[:port]` where host is a dotted DNS name or a bracketed IPv6 address.
fn valid_registry(domain: &str) -> bool {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.is_empty() || !v6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(port) => ("x", Some(port)),
                None => return false,
            },
        }
    } else {
        match domain.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (domain, None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    !host.is_empty() && host.split('.').all(valid_domain_component)
}

fn valid_domain_component(c: &str) -> bool {
    let b = c.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|&x| x.is_ascii_alphanumeric() || x == b'-')
}

fn valid_path(path: &str) -> bool {
    !path.is_empty() && path.split('/').all(valid_path_component)
}

/// `[a-z0-9]+` runs joined by `.`, `_`, `__` or one or more `-`.
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: '.', '_', '__', or '-'+, followed by an alphanumeric.
        let start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start || i >= b.len() || !alnum(b[i]) {
            return false;
        }
    }
    true
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    !b.is_empty()
        && b.len() <= TAG_MAX
        && word(b[0])
        && b[1..].iter().all(|&x| word(x) || x == b'.' || x == b'-')
}

/// Digests the store can hold: `sha256:` + 64 lowercase hex digits (the only algorithm
/// registries use in practice; the store cannot hold others).
fn parse_digest(input: &str, d: &str) -> Result<Digest, ReferenceError> {
    let err = |reason| ReferenceError::Digest {
        input: input.to_string(),
        digest: d.to_string(),
        reason,
    };
    match d.split_once(':') {
        None => Err(err("expected algorithm:hex")),
        Some(("sha256", _)) => {
            Digest::parse(d).map_err(|_| err("expected 64 lowercase hex digits"))
        }
        Some(_) => Err(err("unsupported algorithm")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn full(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn docker_hub_normalisation() {
        assert_eq!(full("alpine"), "docker.io/library/alpine:latest");
        assert_eq!(full("alpine:3.19"), "docker.io/library/alpine:3.19");
        assert_eq!(full("library/alpine"), "docker.io/library/alpine:latest");
        assert_eq!(full("user/app:v1"), "docker.io/user/app:v1");
        assert_eq!(full("docker.io/alpine"), "docker.io/library/alpine:latest");
        assert_eq!(
            full("index.docker.io/alpine"),
            "docker.io/library/alpine:latest"
        );
        assert_eq!(full("docker.io/a/b/c"), "docker.io/a/b/c:latest");
    }

    #[test]
    fn registries_and_ports() {
        let r = Reference::parse("localhost:5000/team/app:1.2").unwrap();
        assert_eq!(r.registry(), "localhost:5000");
        assert_eq!(r.repository(), "team/app");
        assert_eq!(r.tag(), Some("1.2"));
        assert!(!r.is_short_name());

        let r = Reference::parse("localhost/x").unwrap();
        assert_eq!(r.registry(), "localhost");
        assert_eq!(r.repository(), "x");
        assert_eq!(r.to_string(), "localhost/x:latest");

        let r = Reference::parse("127.0.0.1:5000/x:y").unwrap();
        assert_eq!(
            (r.registry(), r.repository(), r.tag()),
            ("127.0.0.1:5000", "x", Some("y"))
        );

        let r = Reference::parse("quay.io/podman/hello").unwrap();
        assert_eq!(r.registry(), "quay.io");
        assert_eq!(r.repository(), "podman/hello");

        let r = Reference::parse("[::1]:5000/x").unwrap();
        assert_eq!(r.registry(), "[::1]:5000");
        let r = Reference::parse("[fe80::1]/x").unwrap();
        assert_eq!(r.registry(), "[fe80::1]");

        // An uppercase first element is a registry, as in Docker.
        let r = Reference::parse("Registry/x").unwrap();
        assert_eq!(r.registry(), "Registry");
        assert_eq!(r.repository(), "x");

        // No slash: the colon is a tag, not a port.
        let r = Reference::parse("localhost:5000").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/localhost:5000");
    }

    #[test]
    fn digests() {
        let r = Reference::parse(&format!("alpine@{D}")).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest().map(|d| d.to_string()).as_deref(), Some(D));
        assert_eq!(r.manifest_reference(), D);
        assert_eq!(r.to_string(), format!("docker.io/library/alpine@{D}"));

        let r = Reference::parse(&format!("host:5000/a/b:t@{D}")).unwrap();
        assert_eq!(r.tag(), Some("t"));
        assert_eq!(r.digest(), Some(&Digest::parse(D).unwrap()));
        assert_eq!(r.manifest_reference(), D);
        assert_eq!(r.without_digest().to_string(), "host:5000/a/b:t");

        for bad in [
            "alpine@sha256:abc",
            "alpine@md5:d41d8cd98f00b204e9800998ecf8427e",
            "alpine@sha512:abcd",
            "alpine@sha256",
            &format!("alpine@{}", D.to_uppercase().replace("SHA256", "sha256")),
        ] {
            assert!(
                matches!(Reference::parse(bad), Err(ReferenceError::Digest { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn short_names() {
        assert!(Reference::parse("alpine").unwrap().is_short_name());
        assert!(Reference::parse("library/alpine:1")
            .unwrap()
            .is_short_name());
        assert!(Reference::parse("user/app").unwrap().is_short_name());
        assert!(!Reference::parse("docker.io/alpine")
            .unwrap()
            .is_short_name());
        assert!(!Reference::parse("localhost/alpine")
            .unwrap()
            .is_short_name());
        assert!(!Reference::parse("host:1/alpine").unwrap().is_short_name());
    }

    #[test]
    fn with_registry_expands_like_podman() {
        let r = Reference::parse("alpine:3").unwrap();
        assert_eq!(
            r.with_registry("quay.io").unwrap().to_string(),
            "quay.io/alpine:3"
        );
        assert_eq!(
            r.with_registry("docker.io").unwrap().to_string(),
            "docker.io/library/alpine:3"
        );
        let q = r.with_registry("localhost:5000").unwrap();
        assert!(!q.is_short_name());
        assert_eq!(q.to_string(), "localhost:5000/alpine:3");
        let r = Reference::parse("library/alpine").unwrap();
        assert_eq!(
            r.with_registry("quay.io").unwrap().to_string(),
            "quay.io/library/alpine:latest"
        );
        assert!(r.with_registry("bad_host").is_err());
    }

    #[test]
    fn tags_and_helpers() {
        let r = Reference::parse("alpine").unwrap();
        assert_eq!(r.tag(), Some("latest"));
        assert_eq!(
            r.with_tag("edge").unwrap().to_string(),
            "docker.io/library/alpine:edge"
        );
        assert!(r.with_tag("-bad").is_err());
        assert!(r.with_tag(&"a".repeat(129)).is_err());
        assert!(r.with_tag(&"a".repeat(128)).is_ok());
        assert_eq!(
            r.with_digest(&Digest::parse(D).unwrap())
                .manifest_reference(),
            D
        );
        assert_eq!(r.without_tag().to_string(), "docker.io/library/alpine");
        assert_eq!(r.name(), "docker.io/library/alpine");
        let bare = Reference::parse_bare("alpine").unwrap();
        assert_eq!(bare.tag(), None);
        assert_eq!(bare.manifest_reference(), "latest");
    }

    #[test]
    fn familiar_form() {
        assert_eq!(
            Reference::parse("alpine").unwrap().familiar(),
            "alpine:latest"
        );
        assert_eq!(
            Reference::parse("user/app:1").unwrap().familiar(),
            "user/app:1"
        );
        assert_eq!(
            Reference::parse("docker.io/library/a/b")
                .unwrap()
                .familiar(),
            "library/a/b:latest"
        );
        assert_eq!(
            Reference::parse("localhost/x").unwrap().familiar(),
            "localhost/x:latest"
        );
    }

    #[test]
    fn equality_uses_full_form() {
        assert_eq!(
            Reference::parse("alpine").unwrap(),
            Reference::parse("docker.io/library/alpine:latest").unwrap()
        );
        assert_ne!(
            Reference::parse("alpine").unwrap(),
            Reference::parse("alpine:3").unwrap()
        );
        let r: Reference = "busybox".parse().unwrap();
        assert_eq!(r.repository(), "library/busybox");
    }

    #[test]
    fn path_components() {
        for ok in [
            "a",
            "a.b",
            "a_b",
            "a__b",
            "a-b",
            "a---b",
            "a0/b1/c2",
            "a.b_c__d-e",
        ] {
            assert!(valid_path(ok), "{ok}");
        }
        for bad in [
            "", "-a", "a-", "a..b", "a___b", "a/", "/a", "a//b", "a.-b", "a_.b", "A",
        ] {
            assert!(!valid_path(bad), "{bad}");
        }
    }

    #[test]
    fn errors() {
        assert_eq!(Reference::parse(""), Err(ReferenceError::Empty));
        assert!(matches!(
            Reference::parse("Alpine"),
            Err(ReferenceError::Uppercase { .. })
        ));
        assert!(matches!(
            Reference::parse("docker.io/Library/alpine"),
            Err(ReferenceError::Uppercase { .. })
        ));
        assert!(matches!(
            Reference::parse(&"e".repeat(64)),
            Err(ReferenceError::HexId { .. })
        ));
        assert!(matches!(
            Reference::parse("a:b:c"),
            Err(ReferenceError::Path { .. })
        ));
        assert!(matches!(
            Reference::parse("alpine:"),
            Err(ReferenceError::Tag { .. })
        ));
        assert!(matches!(
            Reference::parse("alpine:-x"),
            Err(ReferenceError::Tag { .. })
        ));
        assert!(matches!(
            Reference::parse(":tag"),
            Err(ReferenceError::Path { .. })
        ));
        assert!(matches!(
            Reference::parse("a b"),
            Err(ReferenceError::Path { .. })
        ));
        assert!(matches!(
            Reference::parse("host:port/x"),
            Err(ReferenceError::Registry { .. })
        ));
        assert!(matches!(
            Reference::parse("-host.io/x"),
            Err(ReferenceError::Registry { .. })
        ));
        assert!(matches!(
            Reference::parse("localhost/"),
            Err(ReferenceError::Path { .. })
        ));
        assert!(matches!(
            Reference::parse("[zz]/x"),
            Err(ReferenceError::Registry { .. })
        ));
        let long = format!("a/{}", "b".repeat(254));
        assert!(matches!(
            Reference::parse(&long),
            Err(ReferenceError::NameTooLong { .. })
        ));
        let msg = Reference::parse("Alpine").unwrap_err().to_string();
        assert_eq!(
            msg,
            "invalid reference format `Alpine`: repository name must be lowercase"
        );
    }
}
