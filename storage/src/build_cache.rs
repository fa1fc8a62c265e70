//! The build cache index and build scratch directories.
//!
//! Owns `build-cache/mounts/<hex>` (the directories of `RUN --mount=type=cache`, by the digest
//! of their id) and `build-cache/<key-hex>`: one small file per cached build step, holding the id (hex) of
//! the image that step produced; the key is a digest the builder computes from the parent
//! image, the instruction and its inputs. Entries are replaced by rename, so readers take no
//! lock; an entry whose image was removed is simply a miss. Also hands out scratch directories
//! under `tmp/` for the builder's staging (removed when dropped, or by the next sweep when the
//! builder was killed). It does not decide what goes into a key (the `rbox` binary's build
//! module does).

use std::fs;
use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::store::{Store, TmpPath};
use crate::{bt, IoContext, Result};

/// A directory under the store's `tmp/`, removed with everything in it when dropped.
pub struct ScratchDir {
    tmp: TmpPath,
}

impl ScratchDir {
    pub fn path(&self) -> &Path {
        &self.tmp.path
    }
}

impl Store {
    fn cache_entry(&self, key: &Digest) -> PathBuf {
        self.root().join("build-cache").join(key.hex())
    }

    /// The image a build step with this key produced earlier, if that image still exists.
    pub fn build_cache_get(&self, key: &Digest) -> Option<Digest> {
        let s = fs::read_to_string(self.cache_entry(key)).ok()?;
        let id = Digest::from_hex(s.trim()).ok()?;
        self.lookup_image(&id.to_string()).ok().map(|r| r.id)
    }

    /// Records that the step `key` produced `image`.
    pub fn build_cache_put(&self, key: &Digest, image: &Digest) -> Result<()> {
        let p = self.cache_entry(key);
        let dir = p.parent().expect("entry has a parent");
        fs::create_dir_all(dir).ctx(|| format!("create {}", bt(dir)))?;
        self.write_atomic(&p, image.hex().as_bytes())
    }

    /// The note `name` the builder keeps in `build-cache/notes/` (such as the digests of
    /// context files it read), if there is one.
    pub fn build_cache_note(&self, name: &str) -> Option<Vec<u8>> {
        fs::read(self.root().join("build-cache/notes").join(name)).ok()
    }

    /// Replaces the note `name` (atomically: readers see the old or the new one).
    pub fn build_cache_set_note(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let dir = self.root().join("build-cache/notes");
        fs::create_dir_all(&dir).ctx(|| format!("create {}", bt(&dir)))?;
        self.write_atomic(&dir.join(name), bytes)
    }

    /// The directory of the `RUN --mount=type=cache` of this id (`build-cache/mounts/<hex of
    /// the id's sha256>`), made when missing; kept across builds.
    pub fn build_cache_mount(&self, id: &str) -> Result<PathBuf> {
        let d = self
            .root()
            .join("build-cache/mounts")
            .join(Digest::of(id.as_bytes()).hex());
        fs::create_dir_all(&d).ctx(|| format!("create {}", bt(&d)))?;
        Ok(d)
    }

    /// A new empty scratch directory on the store's filesystem.
    pub fn scratch_dir(&self, what: &str) -> Result<ScratchDir> {
        let tmp = self.tmp_path(what);
        fs::create_dir_all(&tmp.path).ctx(|| format!("create {}", bt(&tmp.path)))?;
        Ok(ScratchDir { tmp })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::tests::make_image;
    use crate::layer::tests::store_in;

    #[test]
    fn entries_name_images_and_go_stale_with_them() {
        let d = tempfile::tempdir().unwrap();
        let s = store_in(d.path());
        let img = make_image(&s, &[&[("a", b"1")]], &[], "2024-01-01T00:00:00Z");
        let key = Digest::of(b"step");
        assert_eq!(s.build_cache_get(&key), None);
        s.build_cache_put(&key, &img.id).unwrap();
        assert_eq!(s.build_cache_get(&key), Some(img.id.clone()));
        // an entry whose image is gone is a miss
        s.remove_image(&img.id, false).unwrap();
        assert_eq!(s.build_cache_get(&key), None);
    }

    #[test]
    fn cache_mounts_persist_and_scratch_dirs_go() {
        let d = tempfile::tempdir().unwrap();
        let s = store_in(d.path());
        let m = s.build_cache_mount("/root/.cache").unwrap();
        fs::write(m.join("f"), "x").unwrap();
        assert_eq!(s.build_cache_mount("/root/.cache").unwrap(), m);
        assert!(m.join("f").exists());
        assert_ne!(s.build_cache_mount("other").unwrap(), m);
        let p = {
            let sc = s.scratch_dir("t").unwrap();
            fs::write(sc.path().join("x"), "y").unwrap();
            sc.path().to_path_buf()
        };
        assert!(!p.exists());
    }
}
