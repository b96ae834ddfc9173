//! What every simulator shares: the request recorder and the fault script.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::Value;

/// Headers that carry credentials; a recording never keeps them.
const SECRET_HEADERS: &[&str] = &["authorization", "x-api-key", "x-api-token"];

/// One request as a simulator received it. Credential headers are not kept.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Value,
    pub at: Instant,
    /// The status the simulator answered.
    pub status: u16,
}

impl RecordedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

#[derive(Clone, Default)]
pub struct Recorder(Arc<Mutex<Vec<RecordedRequest>>>);

impl Recorder {
    pub fn record(
        &self,
        method: &str,
        path: &str,
        headers: &HeaderMap,
        body: Value,
        status: StatusCode,
    ) {
        let headers = headers
            .iter()
            .filter(|(name, _)| !SECRET_HEADERS.contains(&name.as_str()))
            .map(|(name, value)| {
                (
                    name.to_string(),
                    value.to_str().unwrap_or("<binary>").to_owned(),
                )
            })
            .collect();
        self.0.lock().expect("recorder lock").push(RecordedRequest {
            method: method.to_owned(),
            path: path.to_owned(),
            headers,
            body,
            at: Instant::now(),
            status: status.as_u16(),
        });
    }

    /// How many requests were recorded (without copying them).
    pub fn len(&self) -> usize {
        self.0.lock().expect("recorder lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn all(&self) -> Vec<RecordedRequest> {
        self.0.lock().expect("recorder lock").clone()
    }
}

/// A scripted answer that replaces the simulator's normal behaviour for one request.
#[derive(Debug, Clone)]
pub struct ScriptedResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
    /// Drop the connection instead of answering: the response breaks off before its body.
    pub drop_connection: bool,
}

/// Faults a test or the demo scripts into a simulator.
#[derive(Clone, Default)]
pub struct Faults(Arc<Mutex<FaultScript>>);

#[derive(Default)]
struct FaultScript {
    next: VecDeque<ScriptedResponse>,
    down: Option<ScriptedResponse>,
    latency: Duration,
}

impl Faults {
    /// Answers the next request with this instead of the normal behaviour.
    pub fn respond_next(&self, status: u16, headers: &[(&str, &str)], body: Value) {
        self.script_next(ScriptedResponse::json(status, headers, body));
    }

    /// Answers the next request with a prepared answer (a vendor's own error, say).
    pub fn script_next(&self, response: ScriptedResponse) {
        self.0.lock().expect("faults lock").next.push_back(response);
    }

    /// Drops the connection of each of the next `count` requests: the client sees the
    /// connection close before a complete answer (a reset mid-response), not an HTTP error.
    pub fn drop_next(&self, count: usize) {
        let mut script = self.0.lock().expect("faults lock");
        for _ in 0..count {
            script.next.push_back(ScriptedResponse {
                status: 200,
                headers: vec![],
                body: Value::Null,
                drop_connection: true,
            });
        }
    }

    /// Answers every request with `status` until [`come_back`](Self::come_back).
    pub fn go_down(&self, status: u16, body: Value) {
        self.0.lock().expect("faults lock").down = Some(ScriptedResponse {
            status,
            headers: vec![],
            body,
            drop_connection: false,
        });
    }

    pub fn come_back(&self) {
        self.0.lock().expect("faults lock").down = None;
    }

    pub fn set_latency(&self, latency: Duration) {
        self.0.lock().expect("faults lock").latency = latency;
    }

    /// Returns the scripted answer for this request, if any, after the scripted latency.
    pub async fn take(&self) -> Option<ScriptedResponse> {
        let (latency, scripted) = {
            let mut script = self.0.lock().expect("faults lock");
            let scripted = script.next.pop_front().or_else(|| script.down.clone());
            (script.latency, scripted)
        };
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        scripted
    }
}

impl ScriptedResponse {
    /// A JSON answer with these headers.
    pub fn json(status: u16, headers: &[(&str, &str)], body: Value) -> Self {
        Self {
            status,
            headers: headers
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
            body,
            drop_connection: false,
        }
    }

    /// The status to record and the response to send.
    pub fn answer(self) -> (StatusCode, axum::response::Response) {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if self.drop_connection {
            let broken = axum::body::Body::from_stream(BrokenOff);
            return (status, (status, broken).into_response());
        }
        let mut response = (status, axum::Json(self.body)).into_response();
        for (name, value) in self.headers {
            if let (Ok(name), Ok(value)) = (
                axum::http::HeaderName::try_from(name),
                axum::http::HeaderValue::try_from(value),
            ) {
                response.headers_mut().insert(name, value);
            }
        }
        (status, response)
    }
}

/// A response body that fails at once, so the server aborts the connection mid-response.
struct BrokenOff;

impl futures_core::Stream for BrokenOff {
    type Item = Result<axum::body::Bytes, std::io::Error>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::task::Poll::Ready(Some(Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "connection dropped by the fault script",
        ))))
    }
}

/// A fault script sent to a simulator's [`super::FAULTS_PATH`].
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct FaultCommand {
    respond_next: Option<ScriptedAnswer>,
    go_down: Option<ScriptedAnswer>,
    #[serde(default)]
    come_back: bool,
    drop_next: Option<usize>,
    latency_ms: Option<u64>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptedAnswer {
    status: u16,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    body: Value,
}

/// Applies a fault script sent from outside; answers what the script now holds.
pub(super) async fn control(
    axum::extract::State(faults): axum::extract::State<Faults>,
    axum::Json(command): axum::Json<FaultCommand>,
) -> axum::Json<Value> {
    if let Some(answer) = command.respond_next {
        let headers: Vec<(&str, &str)> = answer
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        faults.respond_next(answer.status, &headers, answer.body);
    }
    if let Some(answer) = command.go_down {
        faults.go_down(answer.status, answer.body);
    }
    if command.come_back {
        faults.come_back();
    }
    if let Some(count) = command.drop_next {
        faults.drop_next(count);
    }
    if let Some(latency) = command.latency_ms {
        faults.set_latency(Duration::from_millis(latency));
    }
    let script = faults.0.lock().expect("faults lock");
    axum::Json(serde_json::json!({
        "scripted": script.next.len(),
        "down": script.down.as_ref().map(|answer| answer.status),
        "latencyMs": script.latency.as_millis() as u64,
    }))
}
