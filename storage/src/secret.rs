//! Secrets of the `file` driver: a directory per secret, `secrets/<id>/`, holding its record
//! (`secret.json`, a [`SecretRecord`]) and its data (`data`, mode 0600), the directory 0700.
//!
//! Owns the secret names (Podman's grammar), ids (25 hex digits, as Podman makes them), lookup
//! by name, id or unique id prefix, creating a secret in one rename (so no half-made secret
//! is ever visible, and a reader never sees a record without its data) and removal through
//! `tmp/`. Names are unique: create and remove hold `locks/secrets`. It does not own which
//! containers use a secret: a container keeps its own copy of the data from its create, so a
//! secret may go while containers that had it still start (as in Podman 4.3).

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::store::{create_new, Store};
use crate::{bt, Error, IoContext, Result};

/// The one driver there is, as Podman names it.
pub const FILE_DRIVER: &str = "file";

/// Podman's bound on a secret's data: more than 0 bytes and less than this.
pub const MAX_DATA: usize = 512_000;

/// One secret, as `secret.json` holds it; never its data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRecord {
    /// 25 hex digits
    pub id: String,
    pub name: String,
    /// always [`FILE_DRIVER`]
    pub driver: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// RFC 3339 with nanoseconds, as Podman shows it
    pub created: String,
}

impl SecretRecord {
    /// A new secret's record: a fresh id, created now.
    pub fn new(name: &str) -> Result<SecretRecord> {
        let mut b = [0u8; 13];
        fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut b))
            .ctx(|| "read /dev/urandom".to_string())?;
        let mut id = hex::encode(b);
        id.truncate(25);
        Ok(SecretRecord {
            id,
            name: name.to_string(),
            driver: FILE_DRIVER.to_string(),
            labels: BTreeMap::new(),
            created: crate::volume::now_nanos(),
        })
    }
}

/// Valid secret names, as Podman takes them: at most 64 of `[a-zA-Z0-9_.-]`, starting and
/// ending with a letter or digit.
pub fn validate_secret_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidSecretName(name.to_string()))
    }
}

/// `secrets/` under a store root: a pure function, for the lock-free listing that completion
/// does without a [`Store`].
pub fn secrets_dir_in(root: &Path) -> PathBuf {
    root.join("secrets")
}

/// Every secret of the store at `root`, by creation time (see [`Store::secrets`]).
pub fn secrets_in(root: &Path) -> Result<Vec<SecretRecord>> {
    let dir = secrets_dir_in(root);
    let rd = match fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("read {}", bt(&dir)), e)),
    };
    let mut out = Vec::new();
    for ent in rd {
        let ent = ent.ctx(|| format!("read {}", bt(&dir)))?;
        let p = ent.path().join("secret.json");
        let bytes = match fs::read(&p) {
            Ok(b) => b,
            // removed meanwhile
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(format!("read {}", bt(&p)), e)),
        };
        out.push(
            serde_json::from_slice(&bytes)
                .map_err(|e| Error::io(format!("parse {}", bt(&p)), io::Error::other(e)))?,
        );
    }
    out.sort_by(|a: &SecretRecord, b| a.created.cmp(&b.created));
    Ok(out)
}

impl Store {
    /// `secrets/`.
    pub fn secrets_dir(&self) -> PathBuf {
        secrets_dir_in(self.root())
    }

    /// Creates secret `rec` holding `data`: its directory appears with record and data by
    /// one rename. [`Error::SecretExists`] when a secret has that name, [`Error::SecretSize`]
    /// when `data` is empty or too large.
    pub fn create_secret(&self, rec: &SecretRecord, data: &[u8]) -> Result<()> {
        validate_secret_name(&rec.name)?;
        if data.is_empty() || data.len() >= MAX_DATA {
            return Err(Error::SecretSize);
        }
        let dir = self.secrets_dir();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .ctx(|| format!("create {}", bt(&dir)))?;
        let _g = self.lock("secrets")?;
        if self.secrets()?.iter().any(|s| s.name == rec.name) {
            return Err(Error::SecretExists(rec.name.clone()));
        }
        let tmp = self.tmp_path("secret");
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&tmp.path)
            .ctx(|| format!("create {}", bt(&tmp.path)))?;
        for (file, bytes, mode) in [
            ("data", data.to_vec(), 0o600),
            (
                "secret.json",
                serde_json::to_vec_pretty(rec).expect("plain struct"),
                0o600,
            ),
        ] {
            let p = tmp.path.join(file);
            let mut f = create_new(&p, mode)?;
            f.write_all(&bytes)
                .and_then(|_| f.sync_all())
                .ctx(|| format!("write {}", bt(&p)))?;
        }
        let dst = dir.join(&rec.id);
        fs::rename(&tmp.path, &dst).ctx(|| format!("rename into {}", bt(&dst)))?;
        tmp.keep();
        Ok(())
    }

    /// Every secret, by creation time.
    pub fn secrets(&self) -> Result<Vec<SecretRecord>> {
        secrets_in(self.root())
    }

    /// The secret named `key`, else the one whose id is or starts with `key` (Podman's
    /// lookup); [`Error::SecretNotFound`], or [`Error::SecretAmbiguous`] for a prefix of
    /// several ids.
    pub fn secret(&self, key: &str) -> Result<SecretRecord> {
        let all = self.secrets()?;
        if let Some(s) = all.iter().find(|s| s.name == key || s.id == key) {
            return Ok(s.clone());
        }
        let mut by_prefix = all.into_iter().filter(|s| s.id.starts_with(key));
        match (by_prefix.next(), by_prefix.next()) {
            (Some(s), None) if !key.is_empty() => Ok(s),
            (Some(_), Some(_)) => Err(Error::SecretAmbiguous(key.to_string())),
            _ => Err(Error::SecretNotFound(key.to_string())),
        }
    }

    /// The data of the secret with id `id`.
    pub fn secret_data(&self, id: &str) -> Result<Vec<u8>> {
        let p = self.secrets_dir().join(id).join("data");
        match fs::read(&p) {
            Ok(b) => Ok(b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(Error::SecretNotFound(id.to_string()))
            }
            Err(e) => Err(Error::io(format!("read {}", bt(&p)), e)),
        }
    }

    /// Removes the secret named (or with the id, or id prefix) `key`, data and record
    /// together; returns its record.
    pub fn remove_secret(&self, key: &str) -> Result<SecretRecord> {
        let _g = self.lock("secrets")?;
        let rec = self.secret(key)?;
        let dir = self.secrets_dir().join(&rec.id);
        // the data is the user's password: not readable in tmp/ on its way out either
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
            .ctx(|| format!("chmod {}", bt(&dir)))?;
        self.remove_dir_atomic(&dir)?;
        Ok(rec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::IdMap;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn names_follow_podman() {
        for ok in ["a", "db-pass", "v1.2_x-y", "0abc9"] {
            assert!(validate_secret_name(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(65);
        for bad in ["", "-a", "a-", ".a", "a b", "a/b", "é", long.as_str()] {
            assert!(validate_secret_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn create_lookup_remove() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::open(&t.path().join("s"), IdMap::full()).unwrap();
        let mut rec = SecretRecord::new("pw").unwrap();
        assert_eq!(rec.id.len(), 25);
        rec.labels.insert("a".into(), "b".into());
        store.create_secret(&rec, b"hunter2").unwrap();
        assert!(matches!(
            store.create_secret(&SecretRecord::new("pw").unwrap(), b"x"),
            Err(Error::SecretExists(_))
        ));
        assert!(matches!(
            store.create_secret(&SecretRecord::new("empty").unwrap(), b""),
            Err(Error::SecretSize)
        ));
        assert_eq!(store.secret("pw").unwrap(), rec);
        assert_eq!(store.secret(&rec.id).unwrap(), rec);
        assert_eq!(store.secret(&rec.id[..5]).unwrap(), rec);
        assert!(matches!(
            store.secret("nope"),
            Err(Error::SecretNotFound(_))
        ));
        assert_eq!(store.secret_data(&rec.id).unwrap(), b"hunter2");
        let data = store.secrets_dir().join(&rec.id).join("data");
        assert_eq!(fs::metadata(&data).unwrap().mode() & 0o777, 0o600);
        let dir = store.secrets_dir().join(&rec.id);
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        assert_eq!(store.remove_secret("pw").unwrap(), rec);
        assert!(store.secrets().unwrap().is_empty());
        assert!(matches!(
            store.remove_secret("pw"),
            Err(Error::SecretNotFound(_))
        ));
    }
}
