//! Secrets: where one lives ([`SecretRef`], an environment variable, a file, or the value itself
//! for an integration WedSync created through the API), the value read from there ([`Secret`],
//! whose `Debug` never shows it and which refuses to be serialized), and a secret a connector can
//! read again while it runs ([`ReloadableSecret`], for rotated tokens).
//!
//! A leaf: configuration, connectors and the vault all use it. Sealing secrets at rest is the
//! vault's job, not this module's.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Where a secret lives. Herald reads it when it builds the connector and never logs it.
///
/// `Value` is the secret itself: how an integration created through the API carries its
/// credentials (the API takes no `env` or `file` reference, which would let a caller have Herald
/// send the daemon's own variables or files to an address of the caller's choice). Such a value
/// is sealed by the vault before it reaches the store and exists in the clear only in memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum SecretRef {
    Env(String),
    File(PathBuf),
    Value(Secret),
}

/// A secret read from where its [`SecretRef`] points. Its `Debug` never shows the value, and
/// serializing it is an error, so it cannot leak into an answer, a log line or a stored record.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("a secret is never serialized"))
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = String::deserialize(deserializer)?;
        let value = value.trim();
        if value.is_empty() {
            return Err(serde::de::Error::custom("the secret is empty"));
        }
        Ok(Secret(value.to_owned()))
    }
}

impl Secret {
    /// A secret Herald obtained itself (a token from a vendor), not read from configuration.
    pub fn new(value: String) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What an audit record shows for the secret: `sha256:` and the first 12 hex digits of its
    /// SHA-256, enough to tell two secrets apart and nothing to recover one.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest;
        let digest = hex::encode(sha2::Sha256::digest(self.0.as_bytes()));
        format!("sha256:{}", &digest[..12])
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl SecretRef {
    /// Reads the secret now; the error says where it looked, never what it found.
    pub fn read(&self) -> Result<Secret, String> {
        let value = match self {
            SecretRef::Env(name) => std::env::var(name)
                .map_err(|_| format!("environment variable {name} is not set"))?,
            SecretRef::File(path) => std::fs::read_to_string(path)
                .map_err(|err| format!("cannot read secret file {}: {err}", path.display()))?,
            SecretRef::Value(secret) => return Ok(secret.clone()),
        };
        let value = value.trim().to_owned();
        if value.is_empty() {
            return Err("the secret is empty".into());
        }
        Ok(Secret(value))
    }
}

/// A secret that can be reloaded while the connector runs (token rotation).
pub struct ReloadableSecret {
    reference: SecretRef,
    current: std::sync::RwLock<Secret>,
}

impl ReloadableSecret {
    pub fn load(reference: &SecretRef) -> Result<Self, String> {
        Ok(Self {
            reference: reference.clone(),
            current: std::sync::RwLock::new(reference.read()?),
        })
    }

    pub fn get(&self) -> Secret {
        self.current.read().expect("secret lock").clone()
    }

    /// Reads the secret again from where its reference points.
    pub fn reload(&self) -> Result<(), String> {
        let fresh = self.reference.read()?;
        *self.current.write().expect("secret lock") = fresh;
        Ok(())
    }
}

/// Compares two secrets in time that does not depend on where they differ.
pub fn same_secret(given: &str, expected: &str) -> bool {
    let (given, expected) = (Sha256::digest(given), Sha256::digest(expected));
    given
        .iter()
        .zip(expected.iter())
        .fold(0u8, |difference, (a, b)| difference | (a ^ b))
        == 0
}
