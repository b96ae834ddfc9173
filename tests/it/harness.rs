//! Starts Herald in-process on 127.0.0.1:0 with a temporary data folder, and talks to it over
//! real HTTP. Simulators come from `herald::sandbox`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use herald::store::{Actor, Role};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const SLACK_TOKEN: &str = "xoxb-test-1111111111-herald";
/// Seals the credentials the daemon keeps (32 bytes, base64).
pub const CREDENTIALS_KEY: &str = "aGVyYWxkLXRlc3QtY3JlZGVudGlhbHMta2V5LTMyYnk=";
pub const WEBHOOK_SECRET: &str = "whsec_dGVzdC1zZWNyZXQtZm9yLWhlcmFsZC10ZXN0cy0wMDAw";

pub struct Harness {
    pub base: String,
    pub key: String,
    pub client: reqwest::Client,
    pub data: TempDir,
    /// The configuration and the organization it was started with, for [`Harness::restarted`].
    text: String,
    organization: String,
    stop: Option<oneshot::Sender<()>>,
    daemon: Option<JoinHandle<Result<(), herald::RunError>>>,
}

/// Writes the test secrets into `dir` and returns the folder.
pub fn write_secrets(dir: &std::path::Path) -> PathBuf {
    let secrets = dir.join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(secrets.join("slack"), SLACK_TOKEN).unwrap();
    std::fs::write(secrets.join("webhook"), WEBHOOK_SECRET).unwrap();
    std::fs::write(secrets.join("credentials_key"), CREDENTIALS_KEY).unwrap();
    secrets
}

/// Completes a test configuration: the store in `data`, loopback destinations allowed, and
/// `{secrets}` replaced by the secrets folder.
pub fn full_config(data: &std::path::Path, body: &str) -> String {
    let store = format!("[store]\ndata_dir = \"{}\"\n", data.join("store").display());
    config_with_store(data, &store, body)
}

/// Like [`full_config`], with the given `[store]` section.
pub fn config_with_store(data: &std::path::Path, store: &str, body: &str) -> String {
    let secrets = write_secrets(data).display().to_string();
    format!(
        "{}[security]\nallow_private_destinations = true\ncredentials_key = {{ file = \"{secrets}/credentials_key\" }}\n{}",
        store.replace("{secrets}", &secrets),
        body.replace("{secrets}", &secrets)
    )
}

/// A webhook integration of `organization` pointing at `url`, with extra TOML lines.
pub fn webhook_integration(id: &str, organization: &str, url: &str, extra: &str) -> String {
    format!(
        "[[integrations]]\nid = \"{id}\"\norganization = \"{organization}\"\nkind = \"webhook\"\nsettings = {{ url = \"{url}\", secret = {{ file = \"{{secrets}}/webhook\" }} }}\n{extra}\n"
    )
}

pub fn route(organization: &str, targets: &[&str], extra: &str) -> String {
    let targets: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
    format!("[[routes]]\norganization = \"{organization}\"\nname = \"test route\"\ntargets = [{}]\n{extra}\n", targets.join(", "))
}

impl Harness {
    /// Starts Herald with `body` (organizations, integrations, routes) and an API key for
    /// `organization`.
    pub async fn start(body: &str, organization: &str) -> Self {
        let data = tempfile::tempdir().unwrap();
        let text = full_config(data.path(), body);
        Self::start_with(data, &text, organization).await
    }

    /// Starts Herald with `body` on the store described by the `[store]` section `store`.
    pub async fn start_on_store(store: &str, body: &str, organization: &str) -> Self {
        let data = tempfile::tempdir().unwrap();
        let text = config_with_store(data.path(), store, body);
        Self::start_with(data, &text, organization).await
    }

    /// `{herald}` in the configuration becomes the daemon's own address (for addresses Herald
    /// gives vendors to call back).
    async fn start_with(data: TempDir, text: &str, organization: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let config = herald::config::parse(&text.replace("{herald}", &base), "test config")
            .unwrap_or_else(|err| panic!("test config is invalid: {err}"));
        let store = herald::open_store(&config).await.unwrap();
        let (key, _) = herald::api::create_api_key(
            &*store,
            organization,
            "test",
            Role::Admin,
            &Actor::operator(),
        )
        .await
        .unwrap();
        drop(store);
        let (stop, stopped) = oneshot::channel::<()>();
        let daemon = tokio::spawn(herald::run(config, listener, async move {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap();
        Self {
            base,
            key,
            client,
            data,
            text: text.to_owned(),
            organization: organization.to_owned(),
            stop: Some(stop),
            daemon: Some(daemon),
        }
    }

    /// Starts Herald like [`Harness::start`] with no `security.credentials_key`: a Herald that
    /// keeps no secrets.
    pub async fn start_without_vault(body: &str, organization: &str) -> Self {
        let data = tempfile::tempdir().unwrap();
        let text: String = full_config(data.path(), body)
            .lines()
            .filter(|line| !line.starts_with("credentials_key"))
            .map(|line| format!("{line}\n"))
            .collect();
        Self::start_with(data, &text, organization).await
    }

    /// Stops the daemon cleanly and starts it again on the same data folder and configuration
    /// (with a new API key).
    pub async fn restarted(mut self) -> Self {
        let _ = self.stop.take().unwrap().send(());
        self.daemon.take().unwrap().await.unwrap().unwrap();
        let (data, text, organization) = (
            std::mem::replace(&mut self.data, tempfile::tempdir().unwrap()),
            self.text.clone(),
            self.organization.clone(),
        );
        Self::start_with(data, &text, &organization).await
    }

    /// Creates another admin API key, for `organization`, in the running daemon's store.
    pub async fn key_for(&self, organization: &str) -> String {
        self.key_with_role(organization, Role::Admin).await
    }

    /// Creates an API key with `role` for `organization`, in the running daemon's store.
    pub async fn key_with_role(&self, organization: &str, role: Role) -> String {
        let store = herald::store::SqliteStore::open(&self.data.path().join("store")).unwrap();
        herald::api::create_api_key(&store, organization, "test", role, &Actor::operator())
            .await
            .unwrap()
            .0
    }

    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.post_as(&self.key, path, body).await
    }

    pub async fn post_as(&self, key: &str, path: &str, body: &Value) -> (StatusCode, Value) {
        self.post_raw_as(key, path, body.to_string()).await
    }

    pub async fn post_raw_as(&self, key: &str, path: &str, body: String) -> (StatusCode, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Sends `method path` with `key`, `headers` and a JSON body: the status, the `ETag` and the
    /// JSON answer (null when there is none).
    pub async fn request(
        &self,
        key: &str,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Value,
    ) -> (StatusCode, Option<String>, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(key)
            .json(&body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let etag = response
            .headers()
            .get("etag")
            .map(|v| v.to_str().unwrap().to_owned());
        (status, etag, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.get_as(&self.key, path).await
    }

    /// What `/metrics` answers now (no metrics token configured).
    /// Starts installing `integration`'s OAuth app through Herald and answers the vendor's
    /// consent page: its address and its query.
    pub async fn start_install(
        &self,
        integration: &str,
    ) -> (String, std::collections::HashMap<String, String>) {
        let (status, started) = self
            .post(
                &format!("/v1/integrations/{integration}/oauth/authorize"),
                &json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{started}");
        let consent = started["authorizationUrl"].as_str().unwrap().to_owned();
        let query = url::Url::parse(&consent)
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect();
        (consent, query)
    }

    /// Opens the consent page as the installing person (a simulator's person consents at once),
    /// who lands on Herald's `/oauth/{kind}/callback` and is told the app is connected; then
    /// checks the refresh token the vendor issued is in no file of the store and the audit log's
    /// latest record of `integration` is its install, kept as `credential`.
    pub async fn consent_and_check_sealed(
        &self,
        consent: &str,
        kind: &str,
        integration: &str,
        credential: &str,
        issued_refresh_token: impl FnOnce() -> Option<String>,
    ) {
        let finished = reqwest::get(consent).await.unwrap();
        assert_eq!(finished.url().path(), format!("/oauth/{kind}/callback"));
        assert_eq!(finished.status(), StatusCode::OK);
        let refresh_token = issued_refresh_token().expect("the app is installed");
        for file in std::fs::read_dir(self.data.path().join("store")).unwrap() {
            let bytes = std::fs::read(file.unwrap().path()).unwrap();
            assert!(!bytes
                .windows(refresh_token.len())
                .any(|w| w == refresh_token.as_bytes()));
        }
        let (_, audit) = self
            .get(&format!(
                "/v1/audit?resourceType=integration&resourceId={integration}"
            ))
            .await;
        assert_eq!(audit["records"][0]["action"], "credential.installed");
        assert_eq!(audit["records"][0]["after"]["credential"], credential);
    }

    pub async fn metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The value of the Prometheus series `name` whose labels include every one of `labels`
    /// (`integration="crm"`), as `/metrics` shows it now.
    pub async fn gauge(&self, name: &str, labels: &[&str]) -> Option<String> {
        self.metrics()
            .await
            .lines()
            .find(|line| {
                line.starts_with(&format!("{name}{{"))
                    && labels.iter().all(|label| line.contains(label))
            })
            .map(|line| line.rsplit(' ').next().unwrap().to_owned())
    }

    pub async fn get_as(&self, key: &str, path: &str) -> (StatusCode, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Sends `notification` (accepted: 202) and waits up to ten seconds until `done` holds for
    /// its record, which it answers.
    pub async fn notify(&self, notification: &Value, done: impl Fn(&Value) -> bool) -> Value {
        let (status, answer) = self.post("/v1/notifications", notification).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
        let id = notification["notificationId"].as_str().unwrap();
        self.wait_for_notification(id, Duration::from_secs(10), done)
            .await
    }

    /// Polls the notification until `done` holds for it, or panics after `timeout`.
    pub async fn wait_for_notification(
        &self,
        id: &str,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let (status, record) = self.get(&format!("/v1/notifications/{id}")).await;
            if status == StatusCode::OK && done(&record) {
                return record;
            }
            assert!(
                Instant::now() < deadline,
                "notification {id} did not reach the expected state in {timeout:?}: {record}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Stops the daemon cleanly and returns its result.
    pub async fn stop(mut self) -> Result<(), herald::RunError> {
        let _ = self.stop.take().unwrap().send(());
        self.daemon.take().unwrap().await.unwrap()
    }
}

/// A valid notification with the given id and priority.
pub fn notification(id: &str, priority: &str) -> Value {
    json!({
        "notificationId": id,
        "type": "timeline_change",
        "priority": priority,
        "title": "Ceremony moved",
        "message": "The ceremony now starts at 15:30",
        "weddingContext": {"weddingId": "wed-1", "weddingDate": "2027-06-12", "venue": "Kew Gardens"}
    })
}

/// Whether every target of a notification record is delivered.
pub fn all_delivered(record: &Value) -> bool {
    record["targets"].as_array().is_some_and(|targets| {
        !targets.is_empty() && targets.iter().all(|t| t["state"] == "delivered")
    })
}

/// Whether the record's first target was dead-lettered.
pub fn dead_lettered(record: &Value) -> bool {
    record["targets"][0]["state"] == "dead_lettered"
}

/// Waits until `check` holds, polling, or panics with `what` after `timeout`.
pub async fn eventually(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
