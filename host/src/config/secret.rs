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
}
