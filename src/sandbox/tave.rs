//! A Tave / VSCO Workspace API v2 simulator for what the Tave connector calls, as the vendor's
//! OpenAPI (served at `/api/v2/openapi.json`) describes it: `X-API-KEY` auth, jobs (`PUT
//! /job/{id}` with the job's documented fields only), notes (`POST /note`, `contentHtml`
//! required with `jobId` or `contactId`), problem documents `{type, title, detail, status}` for
//! errors, and a 429 of type `quota-limit` with `Retry-After`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use serde_json::{json, Map, Value};

use super::{Faults, RecordedRequest, Recorder, Server};

/// The job fields the Workspace API documents as writable.
const JOB_FIELDS: &[&str] = &[
    "name",
    "eventDate",
    "bookingDate",
    "jobTypeId",
    "leadStatusId",
    "leadStatusName",
    "closed",
    "closedReasonId",
    "primarySessionId",
    "customFields",
];

pub struct FakeTave {
    server: Server,
    pub recorder: Recorder,
    pub faults: Faults,
    state: Arc<Mutex<TaveState>>,
}

/// A note as the simulator keeps it.
#[derive(Debug, Clone)]
pub struct Note {
    pub id: String,
    pub job_id: Option<String>,
    pub content_html: String,
}

struct TaveState {
    api_key: String,
    jobs: BTreeMap<String, Map<String, Value>>,
    notes: Vec<Note>,
    next_id: u64,
    min_interval: Duration,
    last_request: Option<Instant>,
}

#[derive(Clone)]
struct AppState {
    state: Arc<Mutex<TaveState>>,
    recorder: Recorder,
    faults: Faults,
}

impl FakeTave {
    /// Starts a studio whose API key is `api_key`.
    pub async fn start(addr: std::net::SocketAddr, api_key: &str) -> std::io::Result<Self> {
        let state = Arc::new(Mutex::new(TaveState {
            api_key: api_key.to_owned(),
            jobs: BTreeMap::new(),
            notes: Vec::new(),
            next_id: 5000,
            min_interval: Duration::ZERO,
            last_request: None,
        }));
        let (recorder, faults) = (Recorder::default(), Faults::default());
        let app_state = AppState {
            state: state.clone(),
            recorder: recorder.clone(),
            faults: faults.clone(),
        };
        let app = axum::Router::new()
            .route("/api/v2/job/{id}", put(update_job))
            .route("/api/v2/note", post(create_note))
            .route("/api/v2/studio/me", axum::routing::get(studio_me))
            .with_state(app_state);
        Ok(Self {
            server: Server::start(app, addr).await?,
            recorder,
            faults,
            state,
        })
    }

    /// The URL to configure as the Tave connector's `base_url`.
    pub fn base_url(&self) -> String {
        format!("{}/api/v2", self.server.url())
    }

    /// Adds a job that exists in the studio.
    pub fn add_job(&self, id: &str, fields: Value) {
        self.state.lock().expect("tave lock").jobs.insert(
            id.to_owned(),
            fields.as_object().cloned().unwrap_or_default(),
        );
    }

    pub fn job(&self, id: &str) -> Option<Map<String, Value>> {
        self.state.lock().expect("tave lock").jobs.get(id).cloned()
    }

    pub fn notes(&self) -> Vec<Note> {
        self.state.lock().expect("tave lock").notes.clone()
    }

    /// Answers 429 `quota-limit` to requests closer together than `interval`.
    pub fn limit_rate(&self, interval: Duration) {
        self.state.lock().expect("tave lock").min_interval = interval;
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.recorder.all()
    }
}

fn problem(status: StatusCode, kind: &str, title: &str, detail: &str) -> (StatusCode, Response) {
    let body = json!({"type": kind, "title": title, "detail": detail, "status": status.as_u16()});
    let mut response = (status, axum::Json(body)).into_response();
    response.headers_mut().insert(
        "content-type",
        axum::http::HeaderValue::from_static("application/problem+json"),
    );
    (status, response)
}

async fn update_job(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = format!("/api/v2/job/{id}");
    respond(app, "PUT", &path, headers, body, move |state, body| {
        let Some(fields) = body.as_object() else {
            return problem(
                StatusCode::BAD_REQUEST,
                "bad-request",
                "Bad Request",
                "the body must be a JSON object",
            );
        };
        if let Some(unknown) = fields
            .keys()
            .find(|key| !JOB_FIELDS.contains(&key.as_str()))
        {
            return problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation-error",
                "Validation Failed",
                &format!("{unknown}: This field is not a job field."),
            );
        }
        if let Some(date) = fields.get("eventDate") {
            if !date.as_str().is_some_and(|d| {
                d.len() == 10 && d.as_bytes()[4] == b'-' && d.as_bytes()[7] == b'-'
            }) {
                return problem(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "validation-error",
                    "Validation Failed",
                    "eventDate: This value is not a valid date.",
                );
            }
        }
        let Some(job) = state.jobs.get_mut(&id) else {
            return problem(
                StatusCode::NOT_FOUND,
                "not-found",
                "Not Found",
                &format!("Job {id} was not found."),
            );
        };
        job.extend(fields.clone());
        let mut answer = job.clone();
        answer.insert("id".into(), json!(id));
        (
            StatusCode::OK,
            (StatusCode::OK, axum::Json(Value::Object(answer))).into_response(),
        )
    })
    .await
}

async fn studio_me(State(app): State<AppState>, headers: HeaderMap) -> Response {
    respond(app, "GET", "/api/v2/studio/me", headers, Bytes::new(), |_, _| {
        let studio = json!({"id": "S-1", "name": "Herald Sandbox Studio", "timezone": "Europe/London", "plan": "pro"});
        (StatusCode::OK, (StatusCode::OK, axum::Json(studio)).into_response())
    })
    .await
}

async fn create_note(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    respond(app, "POST", "/api/v2/note", headers, body, |state, body| {
        let content = body["contentHtml"].as_str().unwrap_or_default();
        if content.trim().is_empty() {
            return problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation-error",
                "Validation Failed",
                "contentHtml: This value should not be blank.",
            );
        }
        let job_id = body["jobId"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| body["jobId"].as_i64().map(|id| id.to_string()));
        if job_id.is_none() && body["contactId"].is_null() {
            return problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation-error",
                "Validation Failed",
                "jobId: A note needs a jobId or a contactId.",
            );
        }
        if let Some(job) = &job_id {
            if !state.jobs.contains_key(job) {
                return problem(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "validation-error",
                    "Validation Failed",
                    &format!("jobId: Job {job} does not exist."),
                );
            }
        }
        state.next_id += 1;
        let id = state.next_id.to_string();
        state.notes.push(Note {
            id: id.clone(),
            job_id: job_id.clone(),
            content_html: content.to_owned(),
        });
        let answer = json!({"id": id, "jobId": job_id, "contentHtml": content});
        (
            StatusCode::CREATED,
            (StatusCode::CREATED, axum::Json(answer)).into_response(),
        )
    })
    .await
}

/// Auth, rate limit, faults and recording around an operation.
async fn respond(
    app: AppState,
    method: &str,
    path: &str,
    headers: HeaderMap,
    body: Bytes,
    operation: impl FnOnce(&mut TaveState, &Value) -> (StatusCode, Response),
) -> Response {
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (status, response) = match app.faults.take().await {
        Some(scripted) => (
            StatusCode::from_u16(scripted.status).unwrap_or(StatusCode::OK),
            scripted.into_response(),
        ),
        None => {
            let mut state = app.state.lock().expect("tave lock");
            let key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
            if key != Some(state.api_key.as_str()) {
                problem(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "Unauthorized",
                    "A valid X-API-KEY header is required.",
                )
            } else if state
                .last_request
                .is_some_and(|last| last.elapsed() < state.min_interval)
            {
                let (status, mut response) = problem(
                    StatusCode::TOO_MANY_REQUESTS,
                    "quota-limit",
                    "Too Many Requests",
                    "API quota exceeded; retry later.",
                );
                response
                    .headers_mut()
                    .insert("retry-after", axum::http::HeaderValue::from_static("1"));
                (status, response)
            } else {
                state.last_request = Some(Instant::now());
                operation(&mut state, &parsed)
            }
        }
    };
    app.recorder.record(method, path, &headers, parsed, status);
    response
}
