//! The vault: credentials Herald keeps (an OAuth install's refresh token, the secrets of
//! integrations created through the API), sealed with AES-256-GCM under the configured
//! `security.credentials_key` before they reach the store, and opened only in memory when a
//! connector needs them.
//!
//! A sealed value is `2 | key id (8 bytes) | nonce (12 bytes) | ciphertext and tag`, where the key
//! id is the start of the key's SHA-256, so the vault knows which key opens it; values sealed
//! before key ids (`1 | nonce | ...`) open by trying each key. The integration id and the
//! credential's name are authenticated with it, so a sealed value copied to another
//! integration's row does not open.
//!
//! The key rotates ([`Vault::rotate`], `herald vault rotate-key`): the new key becomes
//! `credentials_key` and the old one goes to `previous_credentials_keys`, which still open;
//! rotating re-seals every credential under the current key one row at a time, each row
//! replaced only if nobody changed it meanwhile, so a crash at any point leaves every credential
//! readable under one of the configured keys, and running it again finishes the job.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};

use crate::secret::Secret;
use crate::store::{Actor, AuditDraft, Store, StoreError};

/// The format byte of a value sealed with its key's id, and of one sealed before key ids.
const FORMAT: u8 = 2;
const FORMAT_WITHOUT_KEY_ID: u8 = 1;
const KEY_ID_LEN: usize = 8;

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

/// One key: its id (the start of its SHA-256) and the key.
struct SealingKey {
    id: [u8; KEY_ID_LEN],
    key: LessSafeKey,
}

impl SealingKey {
    fn new(key: &Secret) -> Result<Self, VaultError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(key.expose())
            .map_err(|_| VaultError::BadKey)?;
        let unbound = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| VaultError::BadKey)?;
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&Sha256::digest(&bytes)[..KEY_ID_LEN]);
        Ok(Self {
            id,
            key: LessSafeKey::new(unbound),
        })
    }

    fn open(&self, aad: &[u8], nonce: &[u8], ciphertext: &[u8]) -> Option<Secret> {
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut sealed = ciphertext.to_vec();
        let opened = self
            .key
            .open_in_place(nonce, Aad::from(aad), &mut sealed)
            .ok()?;
        String::from_utf8(opened.to_vec()).ok().map(Secret::new)
    }
}

/// What a rotation did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rotation {
    /// Credentials re-sealed under the current key now.
    pub resealed: usize,
    /// Credentials already under it.
    pub current: usize,
    /// Credentials changed by someone else while the rotation ran (sealed under the current
    /// key by whoever changed them): left as they are.
    pub changed_meanwhile: usize,
}

pub struct Vault {
    current: SealingKey,
    previous: Vec<SealingKey>,
    random: SystemRandom,
    store: Arc<dyn Store>,
}

impl Vault {
    /// A vault keeping credentials in `store`, sealing under `key` and opening under it or any of
    /// `previous` (each base64 of 32 bytes).
    pub fn new(
        key: &Secret,
        previous: &[Secret],
        store: Arc<dyn Store>,
    ) -> Result<Self, VaultError> {
        Ok(Self {
            current: SealingKey::new(key)?,
            previous: previous
                .iter()
                .map(SealingKey::new)
                .collect::<Result<_, _>>()?,
            random: SystemRandom::new(),
            store,
        })
    }

    /// Seals and keeps a credential of an integration, replacing one of the same name.
    /// With `audit`, the change is recorded in the same transaction, the credential shown as its
    /// fingerprint (the draft's `after`).
    pub async fn put(
        &self,
        integration_id: &str,
        name: &str,
        value: &Secret,
        audit: Option<AuditDraft>,
    ) -> Result<(), VaultError> {
        let sealed = self.seal(integration_id, name, value)?;
        let audit = audit.map(|draft| AuditDraft {
            after: Some(
                serde_json::json!({"credential": name, "fingerprint": value.fingerprint()})
                    .to_string(),
            ),
            ..draft
        });
        Ok(self
            .store
            .put_credential(integration_id, name, sealed, audit)
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

    /// Seals a credential of an integration for the store under the current key (authenticated
    /// with the integration's id and the credential's name, so it opens only as that).
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
        self.current
            .key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(associated_data(integration_id, name)),
                &mut sealed,
            )
            .map_err(|_| VaultError::Random)?;
        let mut framed = Vec::with_capacity(1 + KEY_ID_LEN + NONCE_LEN + sealed.len());
        framed.push(FORMAT);
        framed.extend_from_slice(&self.current.id);
        framed.extend_from_slice(&nonce);
        framed.extend_from_slice(&sealed);
        Ok(framed)
    }

    /// Opens a credential sealed by [`Vault::seal`] as the same integration's same name, under
    /// whichever configured key sealed it.
    pub fn open(
        &self,
        integration_id: &str,
        name: &str,
        framed: Vec<u8>,
    ) -> Result<Secret, VaultError> {
        let aad = associated_data(integration_id, name);
        let keys = || std::iter::once(&self.current).chain(&self.previous);
        let opened = match framed.first() {
            Some(&FORMAT) if framed.len() > 1 + KEY_ID_LEN + NONCE_LEN => {
                let (id, rest) = framed[1..].split_at(KEY_ID_LEN);
                let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
                keys()
                    .find(|key| key.id == id)
                    .and_then(|key| key.open(&aad, nonce, ciphertext))
            }
            Some(&FORMAT_WITHOUT_KEY_ID) if framed.len() > 1 + NONCE_LEN => {
                let (nonce, ciphertext) = framed[1..].split_at(NONCE_LEN);
                keys().find_map(|key| key.open(&aad, nonce, ciphertext))
            }
            _ => None,
        };
        opened.ok_or(VaultError::Unsealable)
    }

    /// Whether a sealed value is under the current key.
    fn is_current(&self, framed: &[u8]) -> bool {
        framed.first() == Some(&FORMAT)
            && framed.get(1..1 + KEY_ID_LEN) == Some(&self.current.id[..])
    }

    /// Re-seals every kept credential under the current key, one at a time; a credential that
    /// does not open under any configured key stops the rotation with an error (nothing about
    /// it is changed). Each re-sealed credential of an integration `organizations` knows (its
    /// id to its organization) is recorded in that organization's audit log, by the operator,
    /// in the same transaction.
    pub async fn rotate(
        &self,
        organizations: &HashMap<String, String>,
    ) -> Result<Rotation, VaultError> {
        let mut rotation = Rotation::default();
        for (integration_id, name, sealed) in self.store.all_credentials().await? {
            if self.is_current(&sealed) {
                rotation.current += 1;
                continue;
            }
            let secret = self.open(&integration_id, &name, sealed.clone())?;
            let resealed = self.seal(&integration_id, &name, &secret)?;
            let audit = organizations
                .get(&integration_id)
                .map(|organization| AuditDraft {
                    organization: organization.clone(),
                    actor: Actor::operator(),
                    action: "credential.resealed".to_owned(),
                    resource_type: "integration".to_owned(),
                    resource_id: integration_id.clone(),
                    before: None,
                    after: Some(
                        serde_json::json!({
                            "credential": name,
                            "fingerprint": secret.fingerprint(),
                            "keyId": hex::encode(self.current.id),
                        })
                        .to_string(),
                    ),
                });
            if self
                .store
                .replace_credential(&integration_id, &name, sealed, resealed, audit)
                .await?
            {
                rotation.resealed += 1;
            } else {
                rotation.changed_meanwhile += 1;
            }
        }
        Ok(rotation)
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
        Vault::new(&Secret::new(key.into()), &[], store).unwrap()
    }

    #[tokio::test]
    async fn a_credential_is_sealed_in_the_store_and_opens_only_where_it_belongs() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).unwrap());
        let kept = vault(KEY, store.clone());
        let token = Secret::new("na1-refresh-0f9e8d7c".into());
        kept.put("crm", "refresh_token", &token, None)
            .await
            .unwrap();

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
            .put_credential("other-crm", "refresh_token", sealed.clone(), None)
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

    const NEW_KEY: &str = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";

    #[tokio::test]
    async fn rotating_reseals_everything_under_the_new_key_and_a_crash_leaves_all_readable() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).unwrap());
        let old = vault(KEY, store.clone());
        for (integration, value) in [
            ("crm", "refresh-a"),
            ("chat", "xoxb-b"),
            ("hook", "whsec-c"),
        ] {
            old.put(integration, "token", &Secret::new(value.into()), None)
                .await
                .unwrap();
        }
        // A value sealed before key ids (format 1) still opens, and rotates like the rest.
        let legacy = {
            let sealed = old
                .seal("legacy", "token", &Secret::new("legacy-d".into()))
                .unwrap();
            let mut framed = vec![FORMAT_WITHOUT_KEY_ID];
            framed.extend_from_slice(&sealed[1 + KEY_ID_LEN..]);
            framed
        };
        store
            .put_credential("legacy", "token", legacy, None)
            .await
            .unwrap();
        assert_eq!(
            old.get("legacy", "token").await.unwrap().unwrap().expose(),
            "legacy-d"
        );

        let rotating = Vault::new(
            &Secret::new(NEW_KEY.into()),
            &[Secret::new(KEY.into())],
            store.clone(),
        )
        .unwrap();
        // A crash part way: one credential re-sealed, the others not. Everything opens with the
        // configured keys, and the new key alone does not open the rest yet.
        let (integration, name, sealed) = store.all_credentials().await.unwrap().remove(0);
        let secret = rotating.open(&integration, &name, sealed.clone()).unwrap();
        let resealed = rotating.seal(&integration, &name, &secret).unwrap();
        assert!(store
            .replace_credential(&integration, &name, sealed.clone(), resealed, None)
            .await
            .unwrap());
        assert!(
            !store
                .replace_credential(&integration, &name, sealed, vec![FORMAT], None)
                .await
                .unwrap(),
            "a row changed since it was read is not replaced"
        );
        let new_only = vault(NEW_KEY, store.clone());
        for (integration, value) in [
            ("chat", "xoxb-b"),
            ("crm", "refresh-a"),
            ("hook", "whsec-c"),
            ("legacy", "legacy-d"),
        ] {
            assert_eq!(
                rotating
                    .get(integration, "token")
                    .await
                    .unwrap()
                    .unwrap()
                    .expose(),
                value
            );
        }
        assert!(new_only.get("legacy", "token").await.is_err());

        // Running it finishes the job; again, there is nothing left to do.
        assert_eq!(
            rotating.rotate(&HashMap::new()).await.unwrap(),
            Rotation {
                resealed: 3,
                current: 1,
                changed_meanwhile: 0
            }
        );
        assert_eq!(
            rotating.rotate(&HashMap::new()).await.unwrap(),
            Rotation {
                resealed: 0,
                current: 4,
                changed_meanwhile: 0
            }
        );
        for (integration, value) in [
            ("chat", "xoxb-b"),
            ("crm", "refresh-a"),
            ("hook", "whsec-c"),
            ("legacy", "legacy-d"),
        ] {
            assert_eq!(
                new_only
                    .get(integration, "token")
                    .await
                    .unwrap()
                    .unwrap()
                    .expose(),
                value
            );
        }
        assert!(
            old.get("crm", "token").await.is_err(),
            "the old key alone no longer opens them"
        );
    }

    #[test]
    fn a_key_that_is_not_32_bytes_of_base64_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).unwrap());
        for bad in ["not base64!", "c2hvcnQ="] {
            assert!(matches!(
                Vault::new(&Secret::new(bad.into()), &[], store.clone()),
                Err(VaultError::BadKey)
            ));
        }
    }
}
