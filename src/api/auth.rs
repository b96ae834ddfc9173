//! API keys: `Authorization: Bearer <key>`, where each key belongs to one organization. Keys are
//! random 256-bit values shown once at creation; the store keeps only their SHA-256, so a leaked
//! data folder leaks no key. Lookups are cached by hash for [`KEY_CACHE_TTL`], so a revoked key
//! stops working within that time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::{ApiError, AppState};
use crate::store::{Store, StoreError};

/// How long a key lookup is trusted before the store is asked again.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(30);

const API_KEY_REFUSED: ApiError = ApiError::Unauthorized("API key");

/// The organization the request's API key belongs to.
#[derive(Debug, Clone)]
pub struct Organization(pub String);

/// Returns the hex SHA-256 of a key, the form the store keeps.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Creates a key for `organization`, stores its hash, and returns the key (the only time it is seen).
pub async fn create_api_key(
    store: &dyn Store,
    organization: &str,
    label: &str,
) -> Result<String, StoreError> {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    let key = format!("hk_{}", hex::encode(bytes));
    store
        .create_api_key(organization, &hash_key(&key), label)
        .await?;
    Ok(key)
}

/// Middleware: resolves the bearer key to its organization or answers 401.
pub async fn require_api_key(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let key = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|key| !key.is_empty())
        .ok_or(API_KEY_REFUSED)?;
    let hash = hash_key(key);
    let cached = state
        .key_cache
        .get(&hash)
        .filter(|entry| entry.1.elapsed() < KEY_CACHE_TTL)
        .map(|entry| entry.0.clone());
    let organization = match cached {
        Some(organization) => organization,
        None => {
            let Some(organization) = state.store.organization_for_key(&hash).await? else {
                state.key_cache.remove(&hash);
                return Err(API_KEY_REFUSED);
            };
            state
                .key_cache
                .insert(hash, (organization.clone(), Instant::now()));
            organization
        }
    };
    request.extensions_mut().insert(Organization(organization));
    Ok(next.run(request).await)
}
