//! A Standard Webhooks receiver: verifies `webhook-signature` against the shared secret and a
//! five-minute timestamp tolerance, answers 401 when either fails, and records what it accepted.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde_json::{json, Value};

use crate::connectors::standard_webhooks::sign_standard_webhook;
use crate::sandbox::ScriptedResponse;
use crate::sandbox::{Faults, RecordedRequest, Recorder, Server};
use crate::vendors::{base_sample_notification, RunningSimulator, Simulation, SimulatorFuture};

const TOLERANCE: Duration = Duration::from_secs(300);

pub struct WebhookReceiver {
    server: Server,
    pub recorder: Recorder,
    pub faults: Faults,
}

#[derive(Clone)]
struct ReceiverState {
    key: Vec<u8>,
    recorder: Recorder,
    faults: Faults,
}

impl WebhookReceiver {
    /// Starts a receiver on `addr` that accepts messages signed with `secret` (`whsec_<base64>`).
    pub async fn start(addr: std::net::SocketAddr, secret: &str) -> std::io::Result<Self> {
        let key = BASE64
            .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
            .map_err(|err| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("secret is not base64: {err}"),
                )
            })?;
        let (recorder, faults) = (Recorder::default(), Faults::default());
        let state = ReceiverState {
            key,
            recorder: recorder.clone(),
            faults: faults.clone(),
        };
        let app = axum::Router::new()
            .route("/hooks", post(receive))
            .with_state(state);
        Ok(Self {
            server: Server::start(app, addr, faults.clone()).await?,
            recorder,
            faults,
        })
    }

    /// The URL to configure as the webhook's `url`.
    pub fn url(&self) -> String {
        format!("{}/hooks", self.server.url())
    }

    /// The messages accepted (2xx), in arrival order.
    pub fn received(&self) -> Vec<RecordedRequest> {
        self.recorder
            .all()
            .into_iter()
            .filter(|r| (200..300).contains(&r.status))
            .collect()
    }
}

async fn receive(State(state): State<ReceiverState>, headers: HeaderMap, body: Bytes) -> Response {
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (status, response) = match state.faults.take().await {
        Some(scripted) => scripted.answer(),
        None => match verify(&state.key, &headers, &body) {
            Ok(()) => (
                StatusCode::NO_CONTENT,
                StatusCode::NO_CONTENT.into_response(),
            ),
            Err(reason) => (
                StatusCode::UNAUTHORIZED,
                (
                    StatusCode::UNAUTHORIZED,
                    axum::Json(json!({"error": reason})),
                )
                    .into_response(),
            ),
        },
    };
    state
        .recorder
        .record("POST", "/hooks", &headers, parsed, status);
    response
}

fn verify(key: &[u8], headers: &HeaderMap, body: &[u8]) -> Result<(), &'static str> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let id = header("webhook-id").ok_or("missing webhook-id")?;
    let timestamp: u64 = header("webhook-timestamp")
        .and_then(|t| t.parse().ok())
        .ok_or("missing or invalid webhook-timestamp")?;
    let signatures = header("webhook-signature").ok_or("missing webhook-signature")?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    if now.abs_diff(timestamp) > TOLERANCE.as_secs() {
        return Err("timestamp outside the tolerance");
    }
    let expected = sign_standard_webhook(key, id, timestamp, body);
    if signatures.split(' ').any(|candidate| candidate == expected) {
        Ok(())
    } else {
        Err("no matching signature")
    }
}

// === the conformance suite's view ===

/// The secret the simulated receiver verifies with (not a real credential).
const SIMULATED_SECRET: &str = "whsec_c2ltdWxhdGVkLXdlYmhvb2stc2VjcmV0LWZvci1oZXJhbGQ=";

impl Simulation for super::Webhook {
    fn start(&self, addr: std::net::SocketAddr) -> SimulatorFuture<'_> {
        Box::pin(async move {
            let receiver = WebhookReceiver::start(addr, SIMULATED_SECRET).await?;
            Ok(Box::new(receiver) as Box<dyn RunningSimulator>)
        })
    }
}

impl RunningSimulator for WebhookReceiver {
    fn faults(&self) -> &Faults {
        &self.faults
    }

    fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    fn credential(&self) -> String {
        SIMULATED_SECRET.to_owned()
    }

    fn settings(&self, secret: &str) -> String {
        format!("url = \"{}\", secret = {secret}", self.url())
    }

    fn sample_notification(&self, notification_id: &str) -> Value {
        base_sample_notification(notification_id)
    }

    fn address(&self) -> String {
        self.url()
    }

    fn about(&self) -> String {
        "verifies Standard Webhooks signatures".to_owned()
    }

    fn describe_request(&self, request: &RecordedRequest) -> String {
        format!(
            "{} ({})",
            request.body["type"].as_str().unwrap_or("?"),
            request.body["data"]["notificationId"]
                .as_str()
                .unwrap_or("?")
        )
    }

    fn hold_to_published_limits(&self) {
        // A receiver Herald knows nothing about publishes no limits.
    }

    fn outage(&self) -> ScriptedResponse {
        ScriptedResponse::json(503, &[], json!({"error": "unavailable"}))
    }

    fn credential_refused(&self) -> ScriptedResponse {
        ScriptedResponse::json(401, &[], json!({"error": "invalid signature"}))
    }

    fn rate_limited(&self) -> ScriptedResponse {
        ScriptedResponse::json(429, &[("retry-after", "1")], json!({"error": "slow down"}))
    }

    fn validation_error(&self) -> (ScriptedResponse, &'static str) {
        (
            ScriptedResponse::json(
                422,
                &[],
                json!({"error": "weddingDate is not a date we know"}),
            ),
            "weddingDate is not a date we know",
        )
    }
}
