//! OAuth 2 for connectors, once for every vendor: an app's session with one account.
//!
//! - Access tokens come from the refresh-token grant and are kept until a tenth of their life (at
//!   most a minute) is left, so a request never carries one about to expire; a refused one is
//!   forgotten ([`OAuthSession::forget_access_token`]) and the next request refreshes first.
//! - The refresh token is configured (an app installed elsewhere) or kept sealed in the vault by
//!   an install through Herald ([`OAuthSession::complete_install`]: the authorization-code grant).
//!   A refresh token the vendor rotates in a token answer replaces it (sealed in the vault for an
//!   installed app; in memory, with a warning, for a configured one).
//! - The app's secret and a configured refresh token are re-read on [`OAuthSession::reload`].
//! - The JWT bearer grant (RFC 7523) for server-to-server apps ([`JwtBearerSession`]): an RS256
//!   assertion signed with the app's private key, traded for an access token.
//! - The client-credentials grant (RFC 6749 section 4.4, [`ClientCredentialsSession`]): the app's
//!   id and secret and the resource's scope, Entra ID's server-to-server way.
//! - PKCE (RFC 7636, S256) for vendors that take it: a fresh [`pkce_verifier`] per install, its
//!   [`pkce_challenge`] on the consent page, the verifier with the authorization code.
//!
//! The vendor supplies its token endpoint, its name (for errors) and the vault name of the kept
//! refresh token; token answers and errors follow RFC 6749 (`access_token`, `expires_in`,
//! `refresh_token`; `error`, `error_description`), with a vendor's `message`/`status` fields read
//! where it answers with those instead.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Url;
use serde_json::Value;

use super::http::{transport_error, OutboundClient};
use super::ConnectorError;
use crate::secret::{ReloadableSecret, Secret};
use crate::store::AuditDraft;
use crate::vault::Vault;

/// What the vendor sent back to finish an install through Herald: the authorization code, the
/// install's PKCE verifier (for a vendor that takes PKCE), and the audit record of the refresh
/// token it brings (who started the install; the token is shown as its fingerprint).
#[derive(Debug, Clone)]
pub struct InstallGrant {
    pub code: String,
    pub code_verifier: Option<String>,
    pub audit: AuditDraft,
}

/// An app's OAuth 2 session with one account of a vendor.
pub struct OAuthSession {
    vendor: &'static str,
    token_url: Url,
    client_id: String,
    /// The app's secret; some vendors take grants without it when the app does not require it.
    client_secret: Option<ReloadableSecret>,
    refresh_token: RefreshToken,
    client_authentication: ClientAuthentication,
    access: KeptAccessToken,
    /// A refresh token the vendor rotated in a token answer, and the one it replaced: used while
    /// the configured (or kept) token is still the replaced one.
    rotated: Mutex<Option<(Secret, Secret)>>,
    /// Held while a refresh-token grant is in flight, so concurrent attempts wait for its token
    /// instead of spending a refresh token a rotating vendor has just replaced.
    refreshing: tokio::sync::Mutex<()>,
}

/// How the app proves itself to the token endpoint (RFC 6749 section 2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuthentication {
    /// `client_id` and `client_secret` in the form (`client_secret_post`).
    RequestBody,
    /// `Authorization: Basic` of `client_id:client_secret` (`client_secret_basic`), for vendors
    /// that take only that.
    HttpBasic,
}

/// Where the account's refresh token comes from.
pub enum RefreshToken {
    /// The configuration (an app installed outside Herald).
    Configured(ReloadableSecret),
    /// The vault, where an install through Herald put it under `name`.
    Kept {
        vault: Arc<Vault>,
        integration_id: String,
        name: &'static str,
        redirect_uri: String,
    },
}

impl RefreshToken {
    /// The configured refresh token, if the settings have one; otherwise the one an install
    /// through Herald keeps in the vault under `name`, which needs the app's `redirect_uri` and
    /// a vault.
    pub fn configured_or_kept(
        configured: Option<&crate::secret::SecretRef>,
        redirect_uri: Option<&String>,
        vault: Option<Arc<Vault>>,
        integration_id: &str,
        name: &'static str,
    ) -> Result<Self, ConnectorError> {
        match (configured, redirect_uri, vault) {
            (Some(token), _, _) => Ok(RefreshToken::Configured(
                ReloadableSecret::load(token).map_err(ConnectorError::Misconfigured)?,
            )),
            (None, Some(redirect_uri), Some(vault)) => Ok(RefreshToken::Kept {
                vault,
                integration_id: integration_id.to_owned(),
                name,
                redirect_uri: redirect_uri.clone(),
            }),
            _ => Err(ConnectorError::Misconfigured(
                "an app installed through Herald needs oauth.redirect_uri and security.credentials_key".into(),
            )),
        }
    }
}

impl OAuthSession {
    /// `vendor` names the vendor in errors.
    pub fn new(
        vendor: &'static str,
        token_url: Url,
        client_id: String,
        client_secret: Option<ReloadableSecret>,
        refresh_token: RefreshToken,
    ) -> Self {
        Self {
            vendor,
            token_url,
            client_id,
            client_secret,
            refresh_token,
            client_authentication: ClientAuthentication::RequestBody,
            access: KeptAccessToken::default(),
            rotated: Mutex::new(None),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    /// The session, proving the app to the token endpoint as `authentication` says.
    pub fn with_client_authentication(mut self, authentication: ClientAuthentication) -> Self {
        self.client_authentication = authentication;
        self
    }

    /// A live access token: the kept one, or a fresh one from the refresh-token grant.
    pub async fn access_token(
        &self,
        client: &OutboundClient,
        timeout: Duration,
    ) -> Result<String, ConnectorError> {
        if let Some(token) = self.access.live() {
            return Ok(token);
        }
        let _refreshing = self.refreshing.lock().await;
        if let Some(token) = self.access.live() {
            return Ok(token);
        }
        let refresh_token = match &self.refresh_token {
            RefreshToken::Configured(token) => token.get(),
            RefreshToken::Kept {
                vault,
                integration_id,
                name,
                ..
            } => vault
                .get(integration_id, name)
                .await
                .map_err(|err| ConnectorError::Misconfigured(err.to_string()))?
                .ok_or_else(|| ConnectorError::Rejected {
                    code: "not_installed".into(),
                    message: format!(
                        "the {} app is not installed yet: POST /v1/integrations/{integration_id}/oauth/authorize and open the address it answers",
                        self.vendor
                    ),
                })?,
        };
        let current = self.current_refresh_token(&refresh_token);
        let answer = self
            .grant(
                client,
                timeout,
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", current.expose()),
                ],
            )
            .await?;
        if let Some(issued) = answer["refresh_token"]
            .as_str()
            .filter(|issued| *issued != current.expose())
        {
            self.keep_rotated(refresh_token, Secret::new(issued.to_owned()))
                .await;
        }
        Ok(self.access.keep(&answer))
    }

    /// The refresh token to grant with: the one the vendor rotated to, while `source` (the
    /// configured or kept one) is still the one it replaced.
    fn current_refresh_token(&self, source: &Secret) -> Secret {
        match &*self.rotated.lock().expect("oauth lock") {
            Some((replaced, issued)) if replaced.expose() == source.expose() => issued.clone(),
            _ => source.clone(),
        }
    }

    /// The vendor answered a refresh with a new refresh token (rotation: the old one may no
    /// longer work). It is used from now on; an installed app's is sealed in the vault in its
    /// place, while a configured one can only be held in memory, so the operator is told.
    async fn keep_rotated(&self, replaced: Secret, issued: Secret) {
        *self.rotated.lock().expect("oauth lock") = Some((replaced, issued.clone()));
        match &self.refresh_token {
            RefreshToken::Kept {
                vault,
                integration_id,
                name,
                ..
            } => {
                if let Err(err) = vault.put(integration_id, name, &issued, None).await {
                    tracing::error!(vendor = self.vendor, integration = %integration_id, error = %err, "the rotated refresh token was not sealed; it is held in memory until a restart");
                }
            }
            RefreshToken::Configured(_) => {
                tracing::warn!(
                    vendor = self.vendor,
                    "the vendor rotated the configured refresh token: Herald uses the new one until it restarts; install the app through Herald to have it kept"
                );
            }
        }
    }

    /// Exchanges the authorization code of an install through Herald for the account's tokens
    /// and keeps the refresh token in the vault, recorded in the audit log as the grant says.
    pub async fn complete_install(
        &self,
        client: &OutboundClient,
        timeout: Duration,
        grant: &InstallGrant,
    ) -> Result<(), ConnectorError> {
        let RefreshToken::Kept {
            vault,
            integration_id,
            name,
            redirect_uri,
        } = &self.refresh_token
        else {
            return Err(ConnectorError::Rejected {
                code: "not_installable".into(),
                message: format!(
                    "this integration's {} app is not installed through Herald (it has a configured refresh token)",
                    self.vendor
                ),
            });
        };
        let mut exchange = vec![
            ("grant_type", "authorization_code"),
            ("redirect_uri", redirect_uri.as_str()),
            ("code", grant.code.as_str()),
        ];
        exchange.extend(
            grant
                .code_verifier
                .as_deref()
                .map(|verifier| ("code_verifier", verifier)),
        );
        let answer = self.grant(client, timeout, &exchange).await?;
        let Some(refresh_token) = answer["refresh_token"].as_str() else {
            return Err(ConnectorError::Unavailable(format!(
                "{}'s token answer has no refresh_token",
                self.vendor
            )));
        };
        vault
            .put(
                integration_id,
                name,
                &Secret::new(refresh_token.to_owned()),
                Some(grant.audit.clone()),
            )
            .await
            .map_err(|err| {
                ConnectorError::Unavailable(format!("keeping the refresh token: {err}"))
            })?;
        self.access.keep(&answer);
        Ok(())
    }

    /// A text field of the token answer the current access token came in, for vendors that
    /// name there where the account lives (the API host of the account's data center).
    pub fn granted(&self, field: &str) -> Option<String> {
        self.access.granted(field)
    }

    /// Forgets the access token (the vendor refused it): the next request refreshes first.
    pub fn forget_access_token(&self) {
        self.access.forget();
    }

    /// Forgets the access token and reads the app's secret and a configured refresh token again
    /// (they may have been rotated); a kept refresh token is read from the vault at every refresh.
    pub fn reload(&self) -> Result<(), ConnectorError> {
        self.forget_access_token();
        if let Some(secret) = &self.client_secret {
            secret.reload().map_err(ConnectorError::Misconfigured)?;
        }
        match &self.refresh_token {
            RefreshToken::Configured(token) => {
                token.reload().map_err(ConnectorError::Misconfigured)
            }
            RefreshToken::Kept { .. } => Ok(()),
        }
    }

    /// One request to the token endpoint with the app's credentials added to `grant`.
    /// What the vendor says about the current access token (RFC 7662 introspection at
    /// `introspection_url`, the app's credentials in the form): `active`, and whatever metadata the
    /// vendor adds (scopes, account).
    pub async fn introspect(
        &self,
        client: &OutboundClient,
        timeout: Duration,
        introspection_url: Url,
    ) -> Result<Value, ConnectorError> {
        let token = self.access_token(client, timeout).await?;
        let form = [
            ("token", token.as_str()),
            ("token_type_hint", "access_token"),
        ];
        let (status, answer) = self
            .post_form(client, timeout, introspection_url, &form)
            .await?;
        if !status.is_success() {
            return Err(ConnectorError::Rejected {
                code: status.as_u16().to_string(),
                message: format!(
                    "{}'s token introspection answered {status}: {answer}",
                    self.vendor
                ),
            });
        }
        Ok(answer)
    }

    /// Posts `params` with the app's credentials, form-encoded, as OAuth endpoints take them.
    async fn post_form(
        &self,
        client: &OutboundClient,
        timeout: Duration,
        url: Url,
        params: &[(&str, &str)],
    ) -> Result<(reqwest::StatusCode, Value), ConnectorError> {
        let secret = self.client_secret.as_ref().map(ReloadableSecret::get);
        match self.client_authentication {
            ClientAuthentication::RequestBody => {
                let mut form = vec![("client_id", self.client_id.as_str())];
                form.extend(
                    secret
                        .as_ref()
                        .map(|secret| ("client_secret", secret.expose())),
                );
                form.extend_from_slice(params);
                post_token_form(client, timeout, url, &form, None).await
            }
            ClientAuthentication::HttpBasic => {
                let basic = (
                    self.client_id.as_str(),
                    secret.as_ref().map(|secret| secret.expose()),
                );
                post_token_form(client, timeout, url, params, Some(basic)).await
            }
        }
    }

    async fn grant(
        &self,
        client: &OutboundClient,
        timeout: Duration,
        grant: &[(&str, &str)],
    ) -> Result<Value, ConnectorError> {
        let (status, answer) = self
            .post_form(client, timeout, self.token_url.clone(), grant)
            .await?;
        token_answer(self.vendor, status, answer)
    }
}

/// A token endpoint's answer to a grant: the answer with its `access_token`, or the refusal
/// classified (a 5xx is retried; `invalid_grant`, a bad code and friends need a person). Some
/// token endpoints refuse with a 200 that carries `error` (such as `invalid_code`): a refusal too.
fn token_answer(
    vendor: &str,
    status: reqwest::StatusCode,
    answer: Value,
) -> Result<Value, ConnectorError> {
    if !status.is_success() || answer["error"].is_string() {
        let message = answer["error_description"]
            .as_str()
            .or(answer["message"].as_str())
            .unwrap_or("the token endpoint refused the grant");
        return Err(if status.is_server_error() {
            ConnectorError::Unavailable(format!("{status}: {message}"))
        } else {
            ConnectorError::Rejected {
                code: answer["error"]
                    .as_str()
                    .or(answer["status"].as_str())
                    .unwrap_or("oauth")
                    .to_owned(),
                message: message.to_owned(),
            }
        });
    }
    if answer["access_token"].as_str().is_none() {
        return Err(ConnectorError::Unavailable(format!(
            "{vendor}'s token answer has no access_token"
        )));
    }
    Ok(answer)
}

/// Posts a grant, form-encoded, as token endpoints take them; with `basic`, the app's
/// credentials as HTTP Basic authentication.
async fn post_token_form(
    client: &OutboundClient,
    timeout: Duration,
    url: Url,
    form: &[(&str, &str)],
    basic: Option<(&str, Option<&str>)>,
) -> Result<(reqwest::StatusCode, Value), ConnectorError> {
    let mut request = client.client().post(url).timeout(timeout).form(form);
    if let Some((user, password)) = basic {
        request = request.basic_auth(user, password);
    }
    let response = request.send().await.map_err(transport_error)?;
    let status = response.status();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

/// The current access token, when to get another, and the rest of the token answer it came in
/// (tokens removed).
#[derive(Default)]
struct KeptAccessToken(Mutex<Option<KeptAnswer>>);

struct KeptAnswer {
    token: String,
    refresh_at: Instant,
    granted: Value,
}

impl KeptAccessToken {
    /// The token, while it has more than its margin left.
    fn live(&self) -> Option<String> {
        let kept = self.0.lock().expect("oauth lock");
        kept.as_ref()
            .filter(|kept| Instant::now() < kept.refresh_at)
            .map(|kept| kept.token.clone())
    }

    /// A text field of the token answer the kept token came in.
    fn granted(&self, field: &str) -> Option<String> {
        let kept = self.0.lock().expect("oauth lock");
        kept.as_ref()
            .and_then(|kept| kept.granted[field].as_str().map(str::to_owned))
    }

    /// Keeps the access token of a token answer until a tenth of its life (at most a minute) is
    /// left, and returns it. Without `expires_in` (some vendors state none), half an hour.
    fn keep(&self, answer: &Value) -> String {
        let token = answer["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let lifetime = Duration::from_secs(answer["expires_in"].as_u64().unwrap_or(1800));
        let margin = (lifetime / 10).min(Duration::from_secs(60));
        let mut granted = answer.clone();
        if let Some(fields) = granted.as_object_mut() {
            fields.remove("access_token");
            fields.remove("refresh_token");
            fields.remove("id_token");
        }
        *self.0.lock().expect("oauth lock") = Some(KeptAnswer {
            token: token.clone(),
            refresh_at: Instant::now() + lifetime - margin,
            granted,
        });
        token
    }

    fn forget(&self) {
        *self.0.lock().expect("oauth lock") = None;
    }
}

/// The client-credentials grant (RFC 6749 section 4.4) for server-to-server apps, Entra ID's way:
/// the app's id and secret in the form with the `scope` of the resource, traded for an access
/// token kept until near expiry and got again when the vendor refuses it. No refresh token, no
/// person.
pub struct ClientCredentialsSession {
    vendor: &'static str,
    token_url: Url,
    client_id: String,
    client_secret: ReloadableSecret,
    scope: String,
    access: KeptAccessToken,
}

impl ClientCredentialsSession {
    pub fn new(
        vendor: &'static str,
        token_url: Url,
        client_id: String,
        client_secret: ReloadableSecret,
        scope: String,
    ) -> Self {
        Self {
            vendor,
            token_url,
            client_id,
            client_secret,
            scope,
            access: KeptAccessToken::default(),
        }
    }

    pub async fn access_token(
        &self,
        client: &OutboundClient,
        timeout: Duration,
    ) -> Result<String, ConnectorError> {
        if let Some(token) = self.access.live() {
            return Ok(token);
        }
        let secret = self.client_secret.get();
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", secret.expose()),
            ("scope", self.scope.as_str()),
        ];
        let (status, answer) =
            post_token_form(client, timeout, self.token_url.clone(), &form, None).await?;
        let answer = token_answer(self.vendor, status, answer)?;
        Ok(self.access.keep(&answer))
    }

    /// Forgets the access token and reads the app's secret again (it may have been rotated).
    pub fn reload(&self) -> Result<(), ConnectorError> {
        self.access.forget();
        self.client_secret
            .reload()
            .map_err(ConnectorError::Misconfigured)
    }
}

/// The JWT bearer grant (RFC 7523) for server-to-server apps: Herald signs a short-lived
/// assertion (RS256) with the app's private key and trades it for an access token, kept until
/// near expiry and got again when the vendor refuses it. No refresh token, no person.
pub struct JwtBearerSession {
    vendor: &'static str,
    token_url: Url,
    /// `iss`, `sub`, `aud` and whatever else the vendor asks for (`scope`).
    claims: serde_json::Map<String, Value>,
    /// The app's private key, PEM (PKCS#8, `BEGIN PRIVATE KEY`).
    private_key: ReloadableSecret,
    access: KeptAccessToken,
}

/// How long an assertion is good for: three minutes, the shortest ceiling vendors set.
const ASSERTION_LIFETIME: Duration = Duration::from_secs(180);

impl JwtBearerSession {
    /// Checks now that the key signs, so a bad key stops the integration at start, named.
    pub fn new(
        vendor: &'static str,
        token_url: Url,
        claims: serde_json::Map<String, Value>,
        private_key: ReloadableSecret,
    ) -> Result<Self, ConnectorError> {
        let session = Self {
            vendor,
            token_url,
            claims,
            private_key,
            access: KeptAccessToken::default(),
        };
        session.assertion()?;
        Ok(session)
    }

    pub async fn access_token(
        &self,
        client: &OutboundClient,
        timeout: Duration,
    ) -> Result<String, ConnectorError> {
        if let Some(token) = self.access.live() {
            return Ok(token);
        }
        let assertion = self.assertion()?;
        let form = [
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", assertion.as_str()),
        ];
        let (status, answer) =
            post_token_form(client, timeout, self.token_url.clone(), &form, None).await?;
        let answer = token_answer(self.vendor, status, answer)?;
        Ok(self.access.keep(&answer))
    }

    /// Forgets the access token and reads the private key again (it may have been rotated).
    pub fn reload(&self) -> Result<(), ConnectorError> {
        self.access.forget();
        self.private_key
            .reload()
            .map_err(ConnectorError::Misconfigured)
    }

    /// A signed assertion good for [`ASSERTION_LIFETIME`] from now.
    fn assertion(&self) -> Result<String, ConnectorError> {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine;
        let misconfigured = |reason: String| {
            ConnectorError::Misconfigured(format!("{}'s private key: {reason}", self.vendor))
        };
        let der = pkcs8_from_pem(self.private_key.get().expose()).map_err(misconfigured)?;
        let key = ring::signature::RsaKeyPair::from_pkcs8(&der)
            .map_err(|err| misconfigured(format!("not an RSA key in PKCS#8 ({err})")))?;
        let expires = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            + ASSERTION_LIFETIME;
        let mut claims = self.claims.clone();
        claims.insert("exp".into(), Value::from(expires.as_secs()));
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#),
            URL_SAFE_NO_PAD.encode(Value::Object(claims).to_string())
        );
        let mut signature = vec![0; key.public().modulus_len()];
        key.sign(
            &ring::signature::RSA_PKCS1_SHA256,
            &ring::rand::SystemRandom::new(),
            signing_input.as_bytes(),
            &mut signature,
        )
        .map_err(|_| misconfigured("could not sign".into()))?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }
}

/// The DER inside a PEM `PRIVATE KEY` block.
pub fn pkcs8_from_pem(pem: &str) -> Result<Vec<u8>, String> {
    use base64::Engine;
    let body = pem
        .trim()
        .strip_prefix("-----BEGIN PRIVATE KEY-----")
        .and_then(|rest| rest.trim_end().strip_suffix("-----END PRIVATE KEY-----"))
        .ok_or("not a PEM PRIVATE KEY block (PKCS#8; convert an RSA PRIVATE KEY with `openssl pkcs8 -topk8 -nocrypt`)")?;
    let joined: String = body.split_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(joined)
        .map_err(|err| format!("its base64 does not decode: {err}"))
}

/// A vendor's consent page for an install through Herald: the authorization-code request with
/// the app's client id, the callback, the scopes (space-separated, RFC 6749; none for a vendor
/// whose app declares its scopes itself) and `state`.
pub fn authorization_url(
    authorize_url: &str,
    client_id: &str,
    redirect_uri: &str,
    scopes: &[String],
    state: &str,
    code_challenge: Option<&str>,
) -> Option<String> {
    let mut url = Url::parse(authorize_url).ok()?;
    url.query_pairs_mut()
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect_uri);
    if !scopes.is_empty() {
        url.query_pairs_mut()
            .append_pair("scope", &scopes.join(" "));
    }
    url.query_pairs_mut().append_pair("state", state);
    if let Some(challenge) = code_challenge {
        url.query_pairs_mut()
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", "S256");
    }
    Some(url.into())
}

/// A fresh PKCE code verifier: 32 random bytes, base64url (43 characters, RFC 7636 section 4.1).
pub fn pkce_verifier() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut random = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut random);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random)
}

/// The S256 challenge of a verifier: base64url(SHA-256(verifier)), without padding.
pub fn pkce_challenge(verifier: &str) -> String {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_consent_page_carries_the_app_the_callback_the_scopes_and_the_state() {
        let url = authorization_url(
            "https://app.example.com/oauth/authorize",
            "client-1",
            "https://herald.example.com/oauth/crm/callback",
            &["crm.read".to_owned(), "crm.write".to_owned()],
            "s-1",
            None,
        )
        .unwrap();
        assert_eq!(
            url,
            "https://app.example.com/oauth/authorize?client_id=client-1&redirect_uri=https%3A%2F%2Fherald.example.com%2Foauth%2Fcrm%2Fcallback&scope=crm.read+crm.write&state=s-1"
        );
        assert_eq!(
            authorization_url("not a url", "c", "r", &[], "s", None),
            None
        );
        let with_pkce =
            authorization_url("https://a.example/o", "c", "r", &[], "s", Some("x-y")).unwrap();
        assert!(
            with_pkce.ends_with("&code_challenge=x-y&code_challenge_method=S256"),
            "{with_pkce}"
        );
    }

    #[test]
    fn a_token_answer_is_taken_or_refused_and_its_other_fields_kept() {
        let refused = token_answer(
            "Example CRM",
            reqwest::StatusCode::OK,
            serde_json::json!({"error": "invalid_code"}),
        );
        assert!(
            matches!(&refused, Err(ConnectorError::Rejected { code, .. }) if code == "invalid_code"),
            "{refused:?}"
        );
        let down = token_answer(
            "Example CRM",
            reqwest::StatusCode::BAD_GATEWAY,
            serde_json::json!({"error": "server_error"}),
        );
        assert!(
            matches!(down, Err(ConnectorError::Unavailable(_))),
            "{down:?}"
        );
        let answer = serde_json::json!({"access_token": "a-1", "refresh_token": "r-1", "account_url": "https://eu.api.example", "expires_in": 3600});
        let kept = KeptAccessToken::default();
        assert_eq!(
            kept.keep(&token_answer("Example CRM", reqwest::StatusCode::OK, answer).unwrap()),
            "a-1"
        );
        assert_eq!(kept.live().as_deref(), Some("a-1"));
        assert_eq!(
            kept.granted("account_url").as_deref(),
            Some("https://eu.api.example")
        );
        assert_eq!(
            kept.granted("refresh_token"),
            None,
            "tokens are not kept twice"
        );
    }

    #[test]
    fn a_pkce_challenge_is_rfc_7636s_s256() {
        // RFC 7636, appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let verifier = pkce_verifier();
        assert_eq!(verifier.len(), 43);
        assert_ne!(verifier, pkce_verifier(), "fresh each time");
    }
}
