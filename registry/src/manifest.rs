//! Manifests as registries serve them: Docker schema 2 and OCI image manifests, Docker manifest
//! lists and OCI indexes. Parsing is deliberately tolerant of unknown fields and strict about
//! what rbox relies on: schema version 2, sha256 digests, sizes, and media types of configs
//! and layers that are container images (not artifacts, not encrypted).
//! Pure functions over bytes; fetching is the client's, choosing a platform is [`crate::platform`]'s.

use serde::Deserialize;

use crate::platform::Platform;
use crate::{Digest, Error, Result};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// Most layers an image may have (the kernel's overlay stacks at most 500).
pub const MAX_LAYERS: usize = 500;

/// A descriptor as manifests and indexes hold them.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default)]
    pub platform: Option<PlatformJson>,
    #[serde(default)]
    pub urls: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct PlatformJson {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
}

impl PlatformJson {
    pub fn to_platform(&self) -> Platform {
        Platform {
            os: self.os.clone(),
            architecture: self.architecture.clone(),
            variant: self.variant.clone().filter(|v| !v.is_empty()),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ImageManifestJson {
    schema_version: u32,
    #[serde(default)]
    media_type: Option<String>,
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IndexJson {
    schema_version: u32,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

/// How a layer blob is compressed, from its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerCompression {
    None,
    Gzip,
    Zstd,
}

/// A checked blob reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
}

/// A checked image manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageManifest {
    pub media_type: String,
    pub config: Blob,
    pub layers: Vec<Blob>,
}

/// One entry of an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    pub platform: Option<Platform>,
}

/// A parsed manifest or index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manifest {
    Image(ImageManifest),
    Index(Vec<IndexEntry>),
}

/// The media type of a served manifest: the Content-Type when it names a manifest type, else
/// the body's `mediaType`, else a guess from its shape.
pub fn media_type_of(content_type: &str, body: &[u8]) -> String {
    let ct = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if [
        OCI_MANIFEST,
        OCI_INDEX,
        DOCKER_MANIFEST,
        DOCKER_LIST,
        DOCKER_SCHEMA1,
        DOCKER_SCHEMA1_SIGNED,
    ]
    .contains(&ct.as_str())
    {
        return ct;
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Sniff {
        #[serde(default)]
        media_type: Option<String>,
        #[serde(default)]
        schema_version: Option<u32>,
        #[serde(default)]
        manifests: Option<serde_json::Value>,
        #[serde(default)]
        config: Option<serde_json::Value>,
    }
    match serde_json::from_slice::<Sniff>(body) {
        Ok(s) => match (s.media_type, s.schema_version) {
            (Some(m), _) if !m.is_empty() => m,
            (_, Some(1)) => DOCKER_SCHEMA1.to_string(),
            _ if s.manifests.is_some() => OCI_INDEX.to_string(),
            _ if s.config.is_some() => OCI_MANIFEST.to_string(),
            _ => ct,
        },
        Err(_) => ct,
    }
}

fn invalid(reference: &str, message: impl Into<String>) -> Error {
    Error::InvalidManifest {
        reference: reference.to_string(),
        message: message.into(),
    }
}

fn digest_of(reference: &str, d: &str) -> Result<Digest> {
    Digest::parse(d).map_err(|_| invalid(reference, format!("unsupported digest `{d}`")))
}

/// Compression of a layer media type; refuses non-layer and encrypted types.
pub fn layer_compression(media_type: &str) -> Result<LayerCompression, String> {
    if media_type.ends_with("+encrypted") {
        return Err(format!("encrypted layer `{media_type}` is not supported"));
    }
    match media_type {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar"
        | "application/vnd.docker.image.rootfs.diff.tar" => Ok(LayerCompression::None),
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Ok(LayerCompression::Gzip),
        "application/vnd.oci.image.layer.v1.tar+zstd"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => {
            Ok(LayerCompression::Zstd)
        }
        other => Err(format!("`{other}` is not a container image layer")),
    }
}

/// Parse a manifest or index of `media_type` served for `reference` (for messages).
pub fn parse(bytes: &[u8], media_type: &str, reference: &str) -> Result<Manifest> {
    match media_type {
        OCI_INDEX | DOCKER_LIST => {
            let ix: IndexJson =
                serde_json::from_slice(bytes).map_err(|e| invalid(reference, e.to_string()))?;
            if ix.schema_version != 2 {
                return Err(invalid(
                    reference,
                    format!("schemaVersion {}", ix.schema_version),
                ));
            }
            if let Some(m) = ix.media_type.filter(|m| !m.is_empty() && m != media_type) {
                return Err(invalid(
                    reference,
                    format!("served as `{media_type}` but says `{m}`"),
                ));
            }
            let mut out = Vec::with_capacity(ix.manifests.len());
            for d in ix.manifests {
                out.push(IndexEntry {
                    digest: digest_of(reference, &d.digest)?,
                    size: d.size,
                    platform: d.platform.as_ref().map(PlatformJson::to_platform),
                    media_type: d.media_type,
                });
            }
            Ok(Manifest::Index(out))
        }
        OCI_MANIFEST | DOCKER_MANIFEST => {
            let m: ImageManifestJson =
                serde_json::from_slice(bytes).map_err(|e| invalid(reference, e.to_string()))?;
            if m.schema_version != 2 {
                return Err(invalid(
                    reference,
                    format!("schemaVersion {}", m.schema_version),
                ));
            }
            if let Some(t) = m.media_type.filter(|t| !t.is_empty() && t != media_type) {
                return Err(invalid(
                    reference,
                    format!("served as `{media_type}` but says `{t}`"),
                ));
            }
            if m.config.media_type != OCI_CONFIG && m.config.media_type != DOCKER_CONFIG {
                return Err(invalid(
                    reference,
                    format!(
                        "config type `{}`: not a container image (an OCI artifact?)",
                        m.config.media_type
                    ),
                ));
            }
            if m.layers.len() > MAX_LAYERS {
                return Err(invalid(
                    reference,
                    format!("{} layers (at most {MAX_LAYERS})", m.layers.len()),
                ));
            }
            let config = Blob {
                digest: digest_of(reference, &m.config.digest)?,
                size: m.config.size,
                media_type: m.config.media_type,
            };
            let mut layers = Vec::with_capacity(m.layers.len());
            for l in m.layers {
                layer_compression(&l.media_type).map_err(|e| invalid(reference, e))?;
                layers.push(Blob {
                    digest: digest_of(reference, &l.digest)?,
                    size: l.size,
                    media_type: l.media_type,
                });
            }
            Ok(Manifest::Image(ImageManifest {
                media_type: media_type.to_string(),
                config,
                layers,
            }))
        }
        DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED => Err(Error::UnsupportedMediaType(format!(
            "{media_type} (Docker schema 1 is deprecated; ask the publisher for a schema 2 image)"
        ))),
        other => Err(Error::UnsupportedMediaType(other.to_string())),
    }
}

/// The diff ids (`rootfs.diff_ids`) and platform of an image config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSummary {
    pub diff_ids: Vec<Digest>,
    pub platform: Platform,
}

/// Read what pulling needs from an image config.
pub fn config_summary(bytes: &[u8], reference: &str) -> Result<ConfigSummary> {
    #[derive(Deserialize)]
    struct RootFs {
        #[serde(default)]
        diff_ids: Vec<String>,
    }
    #[derive(Deserialize)]
    struct Config {
        #[serde(default)]
        architecture: String,
        #[serde(default)]
        os: String,
        #[serde(default)]
        variant: Option<String>,
        rootfs: RootFs,
    }
    let c: Config = serde_json::from_slice(bytes)
        .map_err(|e| invalid(reference, format!("image config: {e}")))?;
    let diff_ids = c
        .rootfs
        .diff_ids
        .iter()
        .map(|d| digest_of(reference, d))
        .collect::<Result<Vec<_>>>()?;
    Ok(ConfigSummary {
        diff_ids,
        platform: Platform {
            os: c.os,
            architecture: c.architecture,
            variant: c.variant.filter(|v| !v.is_empty()),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn manifest(layer_type: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}",
               "config":{{"mediaType":"{DOCKER_CONFIG}","digest":"{D1}","size":7}},
               "layers":[{{"mediaType":"{layer_type}","digest":"{D2}","size":9}}]}}"#
        )
    }

    #[test]
    fn docker_manifest() {
        let m = parse(
            manifest("application/vnd.docker.image.rootfs.diff.tar.gzip").as_bytes(),
            DOCKER_MANIFEST,
            "r",
        )
        .unwrap();
        let Manifest::Image(m) = m else { panic!() };
        assert_eq!(m.config.digest.to_string(), D1);
        assert_eq!(m.layers[0].size, 9);
    }

    #[test]
    fn refused_layers_and_configs() {
        for t in [
            "application/vnd.oci.image.layer.v1.tar+gzip+encrypted",
            "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
        ] {
            let e = parse(manifest(t).as_bytes(), DOCKER_MANIFEST, "r").unwrap_err();
            assert!(matches!(e, Error::InvalidManifest { .. }), "{e}");
        }
        let artifact = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.cncf.helm.config.v1+json","digest":"{D1}","size":1}},"layers":[]}}"#
        );
        assert!(parse(artifact.as_bytes(), OCI_MANIFEST, "r").is_err());
        let bad_digest = manifest("application/vnd.oci.image.layer.v1.tar").replace(D2, "md5:abc");
        assert!(parse(bad_digest.as_bytes(), DOCKER_MANIFEST, "r").is_err());
        assert!(parse(b"{}", OCI_MANIFEST, "r").is_err());
        assert!(matches!(
            parse(b"{\"schemaVersion\":1}", DOCKER_SCHEMA1_SIGNED, "r"),
            Err(Error::UnsupportedMediaType(_))
        ));
        // A manifest that claims another type than it was served as.
        assert!(parse(
            manifest("application/vnd.oci.image.layer.v1.tar").as_bytes(),
            OCI_MANIFEST,
            "r"
        )
        .is_err());
    }

    #[test]
    fn index_entries() {
        let ix = format!(
            r#"{{"schemaVersion":2,"manifests":[
                {{"mediaType":"{OCI_MANIFEST}","digest":"{D1}","size":5,"platform":{{"architecture":"arm","os":"linux","variant":"v7"}}}},
                {{"mediaType":"{OCI_MANIFEST}","digest":"{D2}","size":6}}]}}"#
        );
        let Manifest::Index(v) = parse(ix.as_bytes(), OCI_INDEX, "r").unwrap() else {
            panic!()
        };
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].platform.as_ref().unwrap().to_string(), "linux/arm/v7");
        assert_eq!(v[1].platform, None);
    }

    #[test]
    fn media_type_detection() {
        assert_eq!(
            media_type_of(
                "application/vnd.oci.image.index.v1+json; charset=utf-8",
                b""
            ),
            OCI_INDEX
        );
        assert_eq!(
            media_type_of("application/json", br#"{"mediaType":"x/y"}"#),
            "x/y"
        );
        assert_eq!(
            media_type_of("", br#"{"schemaVersion":2,"manifests":[]}"#),
            OCI_INDEX
        );
        assert_eq!(
            media_type_of("", br#"{"schemaVersion":2,"config":{}}"#),
            OCI_MANIFEST
        );
        assert_eq!(
            media_type_of("text/plain", br#"{"schemaVersion":1}"#),
            DOCKER_SCHEMA1
        );
    }

    #[test]
    fn compression_of_layers() {
        assert_eq!(
            layer_compression("application/vnd.oci.image.layer.v1.tar+zstd"),
            Ok(LayerCompression::Zstd)
        );
        assert_eq!(
            layer_compression("application/vnd.docker.image.rootfs.diff.tar.gzip"),
            Ok(LayerCompression::Gzip)
        );
        assert_eq!(
            layer_compression("application/vnd.oci.image.layer.v1.tar"),
            Ok(LayerCompression::None)
        );
    }

    #[test]
    fn config_fields() {
        let c = config_summary(
            format!(r#"{{"architecture":"arm64","os":"linux","variant":"v8","rootfs":{{"type":"layers","diff_ids":["{D1}"]}}}}"#).as_bytes(),
            "r",
        )
        .unwrap();
        assert_eq!(c.diff_ids.len(), 1);
        assert_eq!(c.platform.to_string(), "linux/arm64/v8");
        assert!(config_summary(b"{\"rootfs\":{\"diff_ids\":[\"x\"]}}", "r").is_err());
        assert!(config_summary(b"[]", "r").is_err());
    }
}
