//! Platforms (`os/arch[/variant]`) and the choice of one manifest from an image index or a
//! Docker manifest list, as containers/image does it: same os and architecture; the wanted
//! variant first, then older compatible variants (arm v7 runs v6 and v5 images), then entries
//! without a variant. Pure functions, no I/O.

use std::fmt;

use crate::Error;

/// A platform as OCI writes it (`GOOS`/`GOARCH` names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    /// `v7`, `v8`, ...; `None` when unspecified.
    pub variant: Option<String>,
}

impl Platform {
    /// The platform this binary runs on.
    pub fn host() -> Platform {
        let (arch, variant) = host_arch(std::env::consts::ARCH);
        Platform {
            os: host_os(std::env::consts::OS).to_string(),
            architecture: arch.to_string(),
            variant: variant.map(str::to_string),
        }
    }

    /// Parse `os/arch[/variant]` (as `--platform` takes it). An empty os or arch means the
    /// host's.
    pub fn parse(s: &str) -> Result<Platform, Error> {
        let parts: Vec<&str> = s.split('/').collect();
        if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.contains(char::is_whitespace))
        {
            return Err(Error::InvalidPlatform(s.to_string()));
        }
        let host = Platform::host();
        let os = if parts[0].is_empty() {
            host.os.clone()
        } else {
            parts[0].to_ascii_lowercase()
        };
        let architecture = if parts[1].is_empty() {
            host.architecture.clone()
        } else {
            normalize_arch(&parts[1].to_ascii_lowercase()).to_string()
        };
        let variant = parts
            .get(2)
            .filter(|v| !v.is_empty())
            .map(|v| v.to_ascii_lowercase());
        Ok(Platform {
            os,
            architecture,
            variant,
        })
    }

    /// The host platform with `--os`, `--arch` and `--variant` overrides applied; with
    /// `--platform` those are applied on top of it.
    pub fn from_flags(
        platform: Option<&str>,
        os: Option<&str>,
        arch: Option<&str>,
        variant: Option<&str>,
    ) -> Result<Platform, Error> {
        let mut p = match platform {
            Some(s) => Platform::parse(s)?,
            None => Platform::host(),
        };
        if let Some(o) = os {
            p.os = o.to_ascii_lowercase();
        }
        if let Some(a) = arch {
            let a = a.to_ascii_lowercase();
            if a != p.architecture {
                // A different architecture: the host's variant no longer applies.
                p.variant = None;
            }
            p.architecture = normalize_arch(&a).to_string();
        }
        if let Some(v) = variant {
            p.variant = Some(v.to_ascii_lowercase());
        }
        Ok(p)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

fn host_os(os: &str) -> &str {
    match os {
        "macos" => "darwin",
        o => o,
    }
}

/// Rust's architecture name to GOARCH, with the variant the host implies.
fn host_arch(arch: &str) -> (&str, Option<&str>) {
    match arch {
        "x86_64" => ("amd64", None),
        "x86" => ("386", None),
        "aarch64" => ("arm64", Some("v8")),
        "arm" => ("arm", Some("v7")),
        "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
        "powerpc64" => ("ppc64", None),
        "s390x" => ("s390x", None),
        "riscv64" => ("riscv64", None),
        "loongarch64" => ("loong64", None),
        "mips64" if cfg!(target_endian = "little") => ("mips64le", None),
        a => (a, None),
    }
}

/// Common spellings users type for GOARCH names.
fn normalize_arch(a: &str) -> &str {
    match a {
        "x86_64" | "x86-64" => "amd64",
        "aarch64" => "arm64",
        "i386" | "i686" => "386",
        a => a,
    }
}

/// The variants an image for `arch` may have to run on a `variant` machine, best first.
/// arm64 images are `v8` or unspecified; arm is backwards compatible (v7 runs v6, v5).
fn compatible_variants(arch: &str, variant: Option<&str>) -> Vec<Option<String>> {
    let mut out: Vec<Option<String>> = Vec::new();
    let push = |out: &mut Vec<Option<String>>, v: Option<&str>| {
        let v = v.map(str::to_string);
        if !out.contains(&v) {
            out.push(v);
        }
    };
    match (arch, variant) {
        ("arm64", None | Some("v8")) => {
            push(&mut out, Some("v8"));
            push(&mut out, None);
        }
        ("arm", Some(v)) => {
            let n: u32 = v.trim_start_matches('v').parse().unwrap_or(7);
            for k in (5..=n).rev() {
                push(&mut out, Some(&format!("v{k}")));
            }
            push(&mut out, None);
        }
        ("arm", None) => {
            for k in [7, 6, 5] {
                push(&mut out, Some(&format!("v{k}")));
            }
            push(&mut out, None);
        }
        (_, Some(v)) => {
            push(&mut out, Some(v));
            push(&mut out, None);
        }
        (_, None) => push(&mut out, None),
    }
    out
}

/// Index of the best entry of `candidates` for `want`, `None` when nothing fits.
/// With no variant wanted, any variant is accepted after the preferred ones.
pub fn choose(want: &Platform, candidates: &[Option<Platform>]) -> Option<usize> {
    let order = compatible_variants(&want.architecture, want.variant.as_deref());
    let mut best: Option<(usize, usize)> = None; // (rank, index)
    for (i, c) in candidates.iter().enumerate() {
        let Some(c) = c else { continue };
        if c.os != want.os || normalize_arch(&c.architecture) != want.architecture {
            continue;
        }
        let rank = match order
            .iter()
            .position(|v| v.as_deref() == c.variant.as_deref())
        {
            Some(r) => r,
            // An explicitly wanted variant excludes others; otherwise they are a last resort.
            None if want.variant.is_none() => order.len(),
            None => continue,
        };
        if best.is_none_or(|(r, _)| rank < r) {
            best = Some((rank, i));
        }
    }
    best.map(|(_, i)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        Platform::parse(s).unwrap()
    }

    fn some(v: &[&str]) -> Vec<Option<Platform>> {
        v.iter().map(|s| Some(p(s))).collect()
    }

    #[test]
    fn parse_and_display() {
        assert_eq!(p("linux/amd64").to_string(), "linux/amd64");
        assert_eq!(p("linux/arm/v7").variant.as_deref(), Some("v7"));
        assert_eq!(p("linux/x86_64").architecture, "amd64");
        assert_eq!(p("Linux/ARM64/V8").to_string(), "linux/arm64/v8");
        assert!(Platform::parse("linux").is_err());
        assert!(Platform::parse("a/b/c/d").is_err());
        assert!(Platform::parse("linux/ amd64").is_err());
        assert_eq!(p("/arm64").os, Platform::host().os);
    }

    #[test]
    fn from_flags_overrides() {
        let q = Platform::from_flags(None, None, Some("arm"), Some("v6")).unwrap();
        assert_eq!(
            (q.architecture.as_str(), q.variant.as_deref()),
            ("arm", Some("v6"))
        );
        let q = Platform::from_flags(Some("linux/arm64"), None, None, None).unwrap();
        assert_eq!(q.to_string(), "linux/arm64");
        let q = Platform::from_flags(None, Some("freebsd"), Some("amd64"), None).unwrap();
        assert_eq!(q.to_string(), "freebsd/amd64");
    }

    #[test]
    fn exact_match_and_unknown_entries() {
        let mut c = vec![None];
        c.extend(some(&[
            "linux/arm64/v8",
            "linux/amd64",
            "unknown/unknown",
            "windows/amd64",
        ]));
        assert_eq!(choose(&p("linux/amd64"), &c), Some(2));
        assert_eq!(choose(&p("linux/arm64"), &c), Some(1));
        assert_eq!(choose(&p("linux/s390x"), &c), None);
        assert_eq!(choose(&p("windows/amd64"), &c), Some(4));
    }

    #[test]
    fn arm_variants() {
        let c = some(&[
            "linux/arm/v5",
            "linux/arm/v6",
            "linux/arm/v7",
            "linux/arm64",
        ]);
        assert_eq!(choose(&p("linux/arm/v7"), &c), Some(2));
        assert_eq!(choose(&p("linux/arm/v6"), &c), Some(1));
        assert_eq!(choose(&p("linux/arm"), &c), Some(2));
        let c = some(&["linux/arm/v5", "linux/arm/v6"]);
        assert_eq!(choose(&p("linux/arm/v7"), &c), Some(1), "v7 runs v6");
        let c = some(&["linux/arm/v7"]);
        assert_eq!(choose(&p("linux/arm/v6"), &c), None, "v6 cannot run v7");
        // arm64 images usually carry v8 or nothing.
        let c = some(&["linux/arm64"]);
        assert_eq!(choose(&p("linux/arm64/v8"), &c), Some(0));
        let c = some(&["linux/arm64/v8", "linux/arm64"]);
        assert_eq!(choose(&p("linux/arm64"), &c), Some(0));
    }

    #[test]
    fn unwanted_variant_is_last_resort() {
        let c = some(&["linux/amd64/v3", "linux/amd64"]);
        assert_eq!(choose(&p("linux/amd64"), &c), Some(1));
        let c = some(&["linux/amd64/v3"]);
        assert_eq!(choose(&p("linux/amd64"), &c), Some(0));
        assert_eq!(choose(&p("linux/amd64/v2"), &c), None);
    }

    #[test]
    fn host_is_sane() {
        let h = Platform::host();
        assert_eq!(h.os, "linux");
        assert!(!h.architecture.is_empty());
        if cfg!(target_arch = "x86_64") {
            assert_eq!(h.to_string(), "linux/amd64");
        }
    }
}
