//! The vault: credentials Herald keeps itself (today, the refresh token an OAuth app install
//! yields), sealed with AES-256-GCM under the configured `security.credentials_key` before they
//! reach the store, and opened only in memory when a connector needs them.
//!
//! A sealed value is `1 | nonce (12 bytes) | ciphertext and tag`; the integration id and the
//! credential's name are authenticated with it, so a sealed value copied to another integration's
//! row does not open.

use std::sync::Arc;

use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

use crate::secret::Secret;
use crate::store::{Store, StoreError};

/// The format byte of a sealed value.
const FORMAT: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(
        "security.credentials_key must be 32 random bytes in base64 (openssl rand -base64 32)"
    )]
    BadKey,
    #[error("a kept credential does not open: the credentials key changed, or the store was tampered with")]
    Unsealable,
    #[error("no randomness for a nonce")]
    Random,
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Vault {
    key: LessSafeKey,
    random: SystemRandom,
    store: Arc<dyn Store>,
}

impl Vault {
    /// A vault keeping credentials in `store` under `key` (base64 of 32 bytes).
    pub fn new(key: &Secret, store: Arc<dyn Store>) -> Result<Self, VaultError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(key.expose())
            .map_err(|_| VaultError::BadKey)?;
        let unbound = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| VaultError::BadKey)?;
        Ok(Self {
            key: LessSafeKey::new(unbound),
            random: SystemRandom::new(),
            store,
        })
    }

    /// Seals and keeps a credential of an integration, replacing one of the same name.
    pub async fn put(
        &self,
        integration_id: &str,
        name: &str,
        value: &Secret,
    ) -> Result<(), VaultError> {
        let sealed = self.seal(integration_id, name, value)?;
        Ok(self
            .store
            .put_credential(integration_id, name, sealed)
            .await?)
    }

    /// The kept credential, opened; `None` if none was kept.
    pub async fn get(
        &self,
        integration_id: &str,
        name: &str,
    ) -> Result<Option<Secret>, VaultError> {
        match self.store.credential(integration_id, name).await? {
            Some(sealed) => self.open(integration_id, name, sealed).map(Some),
            None => Ok(None),
        }
    }

    /// Seals a credential of an integration for the store (authenticated with the integration's
    /// id and the credential's name, so it opens only as that).
    pub fn seal(
        &self,
        integration_id: &str,
        name: &str,
        value: &Secret,
    ) -> Result<Vec<u8>, VaultError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .map_err(|_| VaultError::Random)?;
        let mut sealed = value.expose().as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(associated_data(integration_id, name)),
                &mut sealed,
            )
            .map_err(|_| VaultError::Random)?;
        let mut framed = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        framed.push(FORMAT);
        framed.extend_from_slice(&nonce);
        framed.extend_from_slice(&sealed);
        Ok(framed)
    }

    /// Opens a credential sealed by [`Vault::seal`] as the same integration's same name.
    pub fn open(
        &self,
        integration_id: &str,
        name: &str,
        framed: Vec<u8>,
    ) -> Result<Secret, VaultError> {
        let (Some(&FORMAT), Some(nonce)) = (framed.first(), framed.get(1..1 + NONCE_LEN)) else {
            return Err(VaultError::Unsealable);
        };
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| VaultError::Unsealable)?;
        let mut sealed = framed[1 + NONCE_LEN..].to_vec();
        let opened = self
            .key
            .open_in_place(
                nonce,
                Aad::from(associated_data(integration_id, name)),
                &mut sealed,
            )
            .map_err(|_| VaultError::Unsealable)?;
        let text = String::from_utf8(opened.to_vec()).map_err(|_| VaultError::Unsealable)?;
        Ok(Secret::new(text))
    }
}

fn associated_data(integration_id: &str, name: &str) -> Vec<u8> {
    format!("herald-credential:{integration_id}:{name}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // 32 bytes

    fn vault(key: &str, store: Arc<dyn Store>) -> Vault {
        Vault::new(&Secret::new(key.into()), store).unwrap()
    }

    #[tokio::test]
    async fn a_credential_is_sealed_in_the_store_and_opens_only_where_it_belongs() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).unwrap());
        let kept = vault(KEY, store.clone());
        let token = Secret::new("na1-refresh-0f9e8d7c".into());
        kept.put("crm", "refresh_token", &token).await.unwrap();

        let sealed = store
            .credential("crm", "refresh_token")
            .await
            .unwrap()
            .unwrap();
        assert!(
            !sealed.windows(8).any(|w| w == b"na1-refr"),
            "the store never holds the credential in the clear"
        );
        assert_eq!(
            kept.get("crm", "refresh_token")
                .await
                .unwrap()
                .unwrap()
                .expose(),
            token.expose()
        );
        assert!(kept.get("crm", "other").await.unwrap().is_none());

        // Moved to another integration's row, it does not open.
        store
            .put_credential("other-crm", "refresh_token", sealed.clone())
            .await
            .unwrap();
        assert!(matches!(
            kept.get("other-crm", "refresh_token").await,
            Err(VaultError::Unsealable)
        ));
        // Nor under another key.
        let other_key = vault(
            "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=",
            store.clone(),
        );
        assert!(matches!(
            other_key.get("crm", "refresh_token").await,
            Err(VaultError::Unsealable)
        ));
    }

    #[test]
    fn a_key_that_is_not_32_bytes_of_base64_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).unwrap());
        for bad in ["not base64!", "c2hvcnQ="] {
            assert!(matches!(
                Vault::new(&Secret::new(bad.into()), store.clone()),
                Err(VaultError::BadKey)
            ));
        }
    }
}
