//! Secrets a client offers a build (`--secret id=…,src=…|env=…`), read only when a step
//! mounts one, as BuildKit's session secrets provider does.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

/// BuildKit's limit on one secret's size.
pub const MAX_SECRET_SIZE: u64 = 500 * 1024;

/// Where a secret's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    /// An environment variable of the client.
    Env(String),
}

/// The secrets of one build, by id.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    sources: BTreeMap<String, SecretSource>,
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret {id}: {path}: {source}")]
    Read {
        id: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("secret {id} too big. max size {MAX_SECRET_SIZE} bytes")]
    TooBig { id: String },
}

impl Secrets {
    pub fn insert(&mut self, id: &str, source: SecretSource) {
        self.sources.insert(id.to_string(), source);
    }

    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// The value of secret `id`; `None` when the client offers no such secret.
    pub fn get(&self, id: &str) -> Result<Option<Vec<u8>>, SecretError> {
        match self.sources.get(id) {
            None => Ok(None),
            Some(SecretSource::Env(name)) => {
                let value = std::env::var_os(name).unwrap_or_default();
                let bytes = std::os::unix::ffi::OsStrExt::as_bytes(value.as_os_str()).to_vec();
                if bytes.len() as u64 > MAX_SECRET_SIZE {
                    return Err(SecretError::TooBig { id: id.into() });
                }
                Ok(Some(bytes))
            }
            Some(SecretSource::File(path)) => {
                let read = |source| SecretError::Read {
                    id: id.into(),
                    path: path.clone(),
                    source,
                };
                let file = std::fs::File::open(path).map_err(read)?;
                let mut data = Vec::new();
                // One byte past the limit tells a file that is too big without reading it all.
                file.take(MAX_SECRET_SIZE + 1)
                    .read_to_end(&mut data)
                    .map_err(read)?;
                if data.len() as u64 > MAX_SECRET_SIZE {
                    return Err(SecretError::TooBig { id: id.into() });
                }
                Ok(Some(data))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_env_missing_and_too_big() {
        let dir = std::env::temp_dir().join(format!("kiln-secrets-{:x}", rand::random::<u64>()));
        std::fs::create_dir(&dir).unwrap();
        let small = dir.join("small");
        std::fs::write(&small, b"s3cret").unwrap();
        let big = dir.join("big");
        std::fs::write(&big, vec![b'x'; MAX_SECRET_SIZE as usize + 1]).unwrap();
        let mut s = Secrets::default();
        s.insert("a", SecretSource::File(small));
        s.insert("big", SecretSource::File(big));
        s.insert("gone", SecretSource::File(dir.join("nope")));
        s.insert("path", SecretSource::Env("PATH".into()));
        assert_eq!(s.get("a").unwrap().unwrap(), b"s3cret");
        assert_eq!(s.get("nothing").unwrap(), None);
        assert!(matches!(s.get("big"), Err(SecretError::TooBig { .. })));
        let e = s.get("gone").unwrap_err().to_string();
        assert!(e.starts_with("secret gone: ") && e.contains("nope"), "{e}");
        let path = std::env::var("PATH").unwrap_or_default();
        assert_eq!(s.get("path").unwrap().unwrap(), path.as_bytes());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
