//! The images a build makes: an image from a config and layer descriptors (manifest made
//! here, stored with `Store::commit_image`), an image's config, layers and unpacked layer
//! directories read back, `--squash` / `--squash-all`, and the final commit with its names,
//! `--label`s, Podman's closing lines and `--iidfile`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, Context as _, Result};
use rbox_storage::{Digest, ImageRecord};
use serde_json::{json, Value};

use super::{copy, short, Builder, Img, DOCKER_CONFIG, DOCKER_MANIFEST, OCI_CONFIG, OCI_MANIFEST};

impl Builder<'_> {
    /// `FROM scratch` (and the stand-in for a stage a build skips): an image without layers,
    /// stored because a step's container and cache key need an image id; [`super::build`]
    /// removes it again unless it is the result or had a name.
    pub(super) fn scratch_img(&self) -> Result<Img> {
        self.commit(scratch_config(), Vec::new(), &[], "scratch")
    }

    pub(super) fn load(&self, rec: &ImageRecord, shown: String) -> Result<Img> {
        let config: Value = serde_json::from_slice(
            &self
                .store
                .read_blob(&rec.id)
                .with_context(|| format!("read the config of image {}", rec.id))?,
        )
        .context("parse image config")?;
        let manifest: Value = serde_json::from_slice(&self.store.image_manifest(rec)?)
            .context("parse image manifest")?;
        let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
        let dirs = rec
            .layers
            .iter()
            .rev()
            .map(|l| self.store.layer_path(&l.diff_id))
            .collect();
        Ok(Img {
            id: rec.id.clone(),
            config,
            layers,
            dirs,
            shown,
        })
    }

    /// Stores an image of `config` and `layers` (descriptors, bottom first).
    pub(super) fn commit(
        &self,
        config: Value,
        layers: Vec<Value>,
        names: &[String],
        shown: &str,
    ) -> Result<Img> {
        let docker = self.o.format == "docker";
        let cfg_bytes = serde_json::to_vec(&config).expect("json");
        let mut manifest = json!({
            "schemaVersion": 2,
            "mediaType": if docker { DOCKER_MANIFEST } else { OCI_MANIFEST },
            "config": {
                "mediaType": if docker { DOCKER_CONFIG } else { OCI_CONFIG },
                "size": cfg_bytes.len(),
                "digest": Digest::of(&cfg_bytes).to_string(),
            },
            "layers": layers,
        });
        if !docker {
            manifest["annotations"] = json!({});
            manifest.as_object_mut().unwrap().remove("annotations");
        }
        let m = serde_json::to_vec(&manifest).expect("json");
        let rec = self
            .store
            .commit_image(&m, &cfg_bytes, names)
            .context("commit image")?;
        self.load(&rec, shown.to_string())
    }

    /// `--squash` (keep = the base's layers) and `--squash-all` (keep = 0): the layers above
    /// the first `keep` as one.
    pub(super) fn squash(&self, img: Img, keep: usize) -> Result<Img> {
        let bottom_first: Vec<PathBuf> = img.dirs.iter().rev().cloned().collect();
        if bottom_first.len() <= keep + 1 {
            return Ok(img);
        }
        let s = self.store.scratch_dir("build-squash")?;
        let dest = s.path().join("layer");
        if keep == 0 {
            // nothing below to delete from: whiteouts are dropped
            rbox_storage::mount::copy::copy_layers(&bottom_first, &dest)?;
        } else {
            std::fs::create_dir(&dest).context("create the squash directory")?;
            copy::squash(&bottom_first[keep..], &dest)?;
        }
        if let Some(t) = self.o.timestamp {
            rbox_storage::changes::set_times_under(&dest, t as i64)?;
        }
        let info = self.store.layer_from_upper(&dest, self.compression)?;
        let mut config = img.config.clone();
        let mut layers = img.layers[..keep].to_vec();
        layers.push(self.descriptor(&info)?);
        let mut ids: Vec<Value> = config["rootfs"]["diff_ids"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        ids.truncate(keep);
        ids.push(json!(info.diff_id.to_string()));
        config["rootfs"]["diff_ids"] = json!(ids);
        let mut seen = 0;
        if let Some(h) = config["history"].as_array_mut() {
            for e in h.iter_mut() {
                if e["empty_layer"].as_bool() != Some(true) {
                    seen += 1;
                    if seen > keep {
                        e["empty_layer"] = json!(true);
                    }
                }
            }
            let now = self.created();
            h.push(json!({
                "created": now,
                "created_by": "/bin/sh -c #(nop) squashed",
                "comment": if keep == 0 { "rbox build --squash-all" } else { "rbox build --squash" },
            }));
            config["created"] = json!(now);
        }
        self.commit(config, layers, &[], "")
    }

    /// The manifest descriptor of a stored layer.
    pub(super) fn descriptor(&self, info: &rbox_storage::LayerInfo) -> Result<Value> {
        let docker = self.o.format == "docker";
        Ok(json!({
            "mediaType": if docker { info.compression.docker_media_type() } else { info.compression.oci_media_type() },
            "digest": info.blob.as_ref().ok_or_else(|| anyhow!("the layer has no blob"))?.to_string(),
            "size": info.blob_size.unwrap_or(0),
        }))
    }

    /// The final image: `--label`s, the names, the output Podman prints, `--iidfile`.
    pub(super) fn finish(&self, img: Img, prefix: &str, base_layers: usize) -> Result<ExitCode> {
        let names: Vec<String> = self
            .o
            .tags
            .iter()
            .map(|t| rbox_storage::images::normalize_name(t))
            .collect::<std::result::Result<_, _>>()?;
        self.say(&format!(
            "{prefix}COMMIT{}",
            self.o
                .tags
                .first()
                .map(|t| format!(" {t}"))
                .unwrap_or_default()
        ));
        let img = if self.o.squash || self.o.squash_all {
            self.squash(img, if self.o.squash_all { 0 } else { base_layers })?
        } else {
            img
        };
        let img = if self.o.labels.is_empty() {
            img
        } else {
            let mut config = img.config.clone();
            if !config["config"]["Labels"].is_object() {
                config["config"]["Labels"] = json!({});
            }
            for l in &self.o.labels {
                let (k, v) = l.split_once('=').unwrap_or((l, ""));
                config["config"]["Labels"][k] = json!(v);
            }
            self.commit(config, img.layers.clone(), &[], "")?
        };
        for n in &names {
            self.store
                .tag_image(&img.id.to_string(), n)
                .with_context(|| format!("tag image {n}"))?;
        }
        self.say(&format!("--> {}", short(&img.id)));
        for n in &names {
            self.say(&format!("Successfully tagged {n}"));
        }
        let unused: Vec<&str> = self
            .build_args
            .keys()
            .filter(|k| !self.consumed.contains(*k))
            .map(String::as_str)
            .collect();
        if !unused.is_empty() {
            // Podman's words
            eprintln!(
                "[Warning] one or more build args were not consumed: [{}]",
                unused.join(" ")
            );
        }
        {
            use std::io::Write;
            let _ = writeln!(std::io::stdout(), "{}", img.id.hex());
        }
        if let Some(p) = &self.o.iidfile {
            std::fs::write(p, img.id.to_string())
                .with_context(|| format!("write `{}`", p.display()))?;
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// The config of [`Builder::scratch_img`]'s image (always the same: its id is its digest).
pub(super) fn scratch_config() -> Value {
    json!({
        "architecture": rbox_storage::archive::host_arch(),
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": []},
        "history": [],
    })
}
