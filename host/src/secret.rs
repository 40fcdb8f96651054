//! Secrets read from the environment or a file, kept out of logs and debug output.

use anyhow::{Context as _, Result, bail};
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::Path;
use subtle::ConstantTimeEq as _;

/// A secret value. `Debug` and `Display` print `[redacted]`.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value (for tests and programmatic setups).
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// Reads the secret from environment variable `var`.
    pub fn from_env(var: &str) -> Result<Self> {
        match std::env::var(var) {
            Ok(value) if !value.trim().is_empty() => Ok(Self(value.trim().to_owned())),
            _ => bail!(
                "environment variable {var} is not set or empty; set it to the secret (for the admin API: a long random token)"
            ),
        }
    }

    /// Reads the secret from `path` (surrounding whitespace is ignored).
    pub fn from_file(path: &Path) -> Result<Self> {
        let value = std::fs::read_to_string(path)
            .with_context(|| format!("reading the secret file {}", path.display()))?;
        if value.trim().is_empty() {
            bail!("the secret file {} is empty", path.display());
        }
        Ok(Self(value.trim().to_owned()))
    }

    /// The secret itself. Callers must not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares with `candidate` in time independent of where they differ.
    pub fn matches(&self, candidate: &str) -> bool {
        // Comparing digests keeps the time independent of the lengths too (a prefix of the
        // secret takes as long as a stranger's guess), and `subtle` keeps the optimiser from
        // turning the byte comparison back into an early exit.
        let a = Sha256::digest(self.0.as_bytes());
        let b = Sha256::digest(candidate.as_bytes());
        a.as_slice().ct_eq(b.as_slice()).into()
    }
}

/// Writes `contents` to `path` so that no one but its owner can ever read it: the bytes go into
/// a new temporary file in the same directory, created 0600 before anything is written to it,
/// which then replaces `path` by a rename. Writing first and narrowing after would leave the
/// secret readable under the umask's mode for a moment, and an existing wider file's mode would
/// survive a truncating write.
pub fn write_owner_only(path: &Path, contents: &[u8]) -> Result<()> {
    use std::io::Write as _;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    // tempfile creates its files with mode 0600 on Unix.
    let mut file = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    file.write_all(contents)
        .and_then(|()| file.as_file().sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    file.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_and_never_print() {
        let secret = Secret::new("s3cret");
        assert!(secret.matches("s3cret"));
        assert!(!secret.matches("s3cre"));
        assert!(!secret.matches("s3crets"));
        assert!(!secret.matches(""));
        assert!(!format!("{secret:?}").contains("s3cret"));
    }

    #[cfg(unix)]
    #[test]
    fn secret_files_are_their_owners_only_from_the_first_byte_and_stay_so() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client-secret");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;

        write_owner_only(&path, b"first").unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(std::fs::read(&path).unwrap(), b"first");

        // A file someone widened is replaced by an owner-only one, not written in place.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_owner_only(&path, b"second").unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        // Nothing else is left behind in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
