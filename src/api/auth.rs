//! API keys and roles: `Authorization: Bearer <key>`, where each key belongs to one organization
//! and has a role ([`Role`]). Keys are random 256-bit values shown once at creation; the store
//! keeps only their SHA-256, so a leaked data folder leaks no key. Lookups are cached by hash for
//! [`KEY_CACHE_TTL`]; a key revoked through the API is dropped from this node's cache at once,
//! one revoked elsewhere stops working within that time.
//!
//! Which role each `/v1` route needs is one table, [`required_role`]: reading needs `viewer`,
//! sending needs `sender`, everything else (and reading keys or the audit log) needs `admin`,
//! and a route missing from the table needs `admin`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::{ApiError, AppState};
use crate::store::{Actor, KeyHolder, Role, Store, StoreError};

/// How long a key lookup is trusted before the store is asked again.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(30);

const API_KEY_REFUSED: ApiError = ApiError::Unauthorized("API key");

/// The organization the request's API key belongs to.
#[derive(Debug, Clone)]
pub struct Organization(pub String);

/// The key a request was made with: who did it, for the audit and for key management.
#[derive(Debug, Clone)]
pub struct Caller(pub KeyHolder);

/// Returns the hex SHA-256 of a key, the form the store keeps.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Creates a key for `organization` with `role` (audited as made `by`), stores its hash, and
/// returns the key (the only time it is seen) and its id.
pub async fn create_api_key(
    store: &dyn Store,
    organization: &str,
    label: &str,
    role: Role,
    by: &Actor,
) -> Result<(String, String), StoreError> {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    let key = format!("hk_{}", hex::encode(bytes));
    let hash = hash_key(&key);
    store
        .create_api_key(organization, &hash, label, role, by)
        .await?;
    let id = hash[..crate::store::API_KEY_ID_LEN].to_owned();
    Ok((key, id))
}

/// The role a `/v1` call needs: `viewer` to read, `sender` to send notifications and routings,
/// acknowledge notifications and replay dead letters, `admin` for the rest (integrations,
/// routes, keys, credentials, and any route not named here).
pub fn required_role(method: &Method, route: &str) -> Role {
    let route = route.strip_prefix("/v1").unwrap_or(route);
    let admin_only = route.starts_with("/keys") || route.starts_with("/audit");
    match *method {
        Method::GET | Method::HEAD if !admin_only => Role::Viewer,
        Method::POST
            if matches!(
                route,
                "/notifications"
                    | "/notifications/batch"
                    | "/notifications/{notificationId}/acknowledge"
                    | "/routings"
                    | "/dead-letters/{deliveryId}/replay"
            ) =>
        {
            Role::Sender
        }
        _ => Role::Admin,
    }
}

/// Middleware: resolves the bearer key to its holder (401 otherwise) and checks the holder's role
/// against what the route needs (403 naming the role otherwise).
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
    let holder = match cached {
        Some(holder) => holder,
        None => {
            let Some(holder) = state.store.key_holder(&hash).await? else {
                state.key_cache.remove(&hash);
                return Err(API_KEY_REFUSED);
            };
            state
                .key_cache
                .insert(hash, (holder.clone(), Instant::now()));
            holder
        }
    };
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_default();
    let needed = required_role(request.method(), &route);
    if holder.role < needed {
        return Err(ApiError::Forbidden {
            needed,
            held: holder.role,
        });
    }
    request
        .extensions_mut()
        .insert(Organization(holder.organization.clone()));
    request.extensions_mut().insert(Caller(holder));
    Ok(next.run(request).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_needs_a_viewer_sending_a_sender_and_the_rest_an_admin() {
        let cases = [
            (
                Method::GET,
                "/v1/notifications/{notificationId}",
                Role::Viewer,
            ),
            (Method::GET, "/v1/integrations", Role::Viewer),
            (Method::POST, "/v1/notifications", Role::Sender),
            (Method::POST, "/v1/notifications/batch", Role::Sender),
            (
                Method::POST,
                "/v1/notifications/{notificationId}/acknowledge",
                Role::Sender,
            ),
            (Method::POST, "/v1/routings", Role::Sender),
            (
                Method::POST,
                "/v1/dead-letters/{deliveryId}/replay",
                Role::Sender,
            ),
            (
                Method::POST,
                "/v1/integrations/{integrationId}/connection-check",
                Role::Admin,
            ),
            (
                Method::POST,
                "/v1/integrations/{integrationId}/oauth/authorize",
                Role::Admin,
            ),
            (Method::POST, "/v1/keys", Role::Admin),
            (Method::GET, "/v1/keys", Role::Admin),
            (Method::DELETE, "/v1/keys/{keyId}", Role::Admin),
            (Method::GET, "/v1/audit", Role::Admin),
            (Method::PUT, "/v1/anything/new", Role::Admin),
        ];
        for (method, route, role) in cases {
            assert_eq!(required_role(&method, route), role, "{method} {route}");
        }
    }
}
