//! A Teams Workflows flow's trigger for what the Teams connector calls, behaving as Microsoft's
//! documentation says the "Send webhook alerts to a channel" flow does:
//!
//! - the trigger URL's query (`api-version=1`, `sp=/triggers/manual/run`, `sv=1.0` and the flow's
//!   `sig`) checked: a wrong or missing signature is refused with 401 and Power Automate's
//!   `{error: {code, message}}`, an unknown flow with 404;
//! - the body checked against `contract.json` (a `message` whose attachments are Adaptive Cards)
//!   and every card against Microsoft's published card schema (`contract/`), a card newer than
//!   1.5 refused, a message over Teams' 28 KB refused: 400 naming the field. Teams itself accepts
//!   such a request and its flow run fails later, unseen by the caller; the simulator refuses it
//!   up front so a test sees it;
//! - an accepted request answered 202 with an empty body and the run's id in
//!   `x-ms-workflow-run-id`, and the card posted to the flow's channel ([`FakeTeams::posts`]);
//! - once held to limits, at most 4 requests a second per flow (Graph's per-channel figure; the
//!   flow's own is unpublished), refused with 429 and `Retry-After`.
//!
//! The error codes are Power Automate's as public client code reports them (unverified).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{json, Value};

use crate::sandbox::contract::{fields_of, load_written_contract, Breach, WrittenContract};
use crate::sandbox::{Faults, RecordedRequest, Recorder, Schema, ScriptedResponse, Server};
use crate::vendors::{base_sample_notification, RunningSimulator, Simulation, SimulatorFuture};

const TRIGGER_PATH: &str =
    "/powerautomate/automations/direct/workflows/{workflow_id}/triggers/manual/paths/invoke";
const CHANNEL_LIMIT: usize = 4;
const CHANNEL_PERIOD: Duration = Duration::from_secs(1);
const MESSAGE_LIMIT_BYTES: usize = 28 * 1024;
/// The newest card version the bundled schema (and Teams) knows.
const NEWEST_CARD: (u64, u64) = (1, 5);

pub struct FakeTeams {
    server: Server,
    pub recorder: Recorder,
    pub faults: Faults,
    state: Arc<Mutex<Environment>>,
}

struct Flow {
    sig: String,
    posts: Vec<Value>,
    recent: VecDeque<Instant>,
}

struct Environment {
    flows: BTreeMap<String, Flow>,
    next_run: u64,
    held_to_limits: bool,
}

#[derive(Clone)]
struct AppState {
    state: Arc<Mutex<Environment>>,
    recorder: Recorder,
    faults: Faults,
}

fn envelope_contract() -> &'static WrittenContract {
    static CONTRACT: OnceLock<WrittenContract> = OnceLock::new();
    CONTRACT.get_or_init(|| load_written_contract(include_str!("contract.json")))
}

/// Microsoft's Adaptive Card schema, read once; a bundled schema that does not load is a bug in
/// this build, so it panics.
fn card_schema() -> &'static Schema<'static> {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    static SCHEMA: OnceLock<Schema<'static>> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let document = DOCUMENT.get_or_init(|| {
            serde_json::from_str(include_str!("contract/adaptive-card-1.5.schema.json"))
                .expect("the bundled card schema is JSON")
        });
        let definitions = document["definitions"]
            .as_object()
            .expect("the card schema has definitions");
        Schema::new(document, definitions)
            .unwrap_or_else(|err| panic!("the bundled card schema is valid: {err}"))
    })
}

fn error(status: StatusCode, code: &str, message: &str) -> (StatusCode, Value) {
    (status, json!({"error": {"code": code, "message": message}}))
}

impl FakeTeams {
    pub async fn start(addr: std::net::SocketAddr) -> std::io::Result<Self> {
        let state = Arc::new(Mutex::new(Environment {
            flows: BTreeMap::new(),
            next_run: 1,
            held_to_limits: false,
        }));
        let (recorder, faults) = (Recorder::default(), Faults::default());
        let app = axum::Router::new()
            .route(TRIGGER_PATH, any(handle))
            .with_state(AppState {
                state: state.clone(),
                recorder: recorder.clone(),
                faults: faults.clone(),
            });
        Ok(Self {
            server: Server::start(app, addr, faults.clone()).await?,
            recorder,
            faults,
            state,
        })
    }

    /// Adds a flow `id` posting to a channel, signed with `sig`, and answers its trigger URL as
    /// the flow's editor shows it.
    pub fn add_flow(&self, id: &str, sig: &str) -> String {
        self.lock().flows.insert(
            id.to_owned(),
            Flow {
                sig: sig.to_owned(),
                posts: Vec::new(),
                recent: VecDeque::new(),
            },
        );
        format!(
            "{}/powerautomate/automations/direct/workflows/{id}/triggers/manual/paths/invoke?api-version=1&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={sig}",
            self.server.url()
        )
    }

    /// The cards flow `id` posted to its channel, oldest first.
    pub fn posts(&self, id: &str) -> Vec<Value> {
        self.lock()
            .flows
            .get(id)
            .map(|flow| flow.posts.clone())
            .unwrap_or_default()
    }

    /// The flow's owner deletes the flow.
    pub fn delete_flow(&self, id: &str) {
        self.lock().flows.remove(id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Environment> {
        self.state.lock().expect("teams lock")
    }
}

async fn handle(
    State(app): State<AppState>,
    Path(workflow_id): Path<String>,
    method: axum::http::Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if let Some(scripted) = app.faults.take().await {
        let (status, response) = scripted.answer();
        app.recorder
            .record(method.as_str(), uri.path(), &headers, parsed, status);
        return response;
    }
    let query = fields_of(uri.query().unwrap_or_default().as_bytes());
    let (status, answer) = app.state.lock().expect("teams lock").answer(
        method.as_str(),
        uri.path(),
        &workflow_id,
        &query,
        &parsed,
        body.len(),
    );
    app.recorder
        .record(method.as_str(), uri.path(), &headers, parsed, status);
    match (status, answer) {
        (StatusCode::ACCEPTED, run) => {
            let mut response = StatusCode::ACCEPTED.into_response();
            if let Some(value) = run.as_str().and_then(|run| HeaderValue::from_str(run).ok()) {
                response.headers_mut().insert("x-ms-workflow-run-id", value);
            }
            response
        }
        (StatusCode::TOO_MANY_REQUESTS, answer) => {
            let mut response = (StatusCode::TOO_MANY_REQUESTS, axum::Json(answer)).into_response();
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from_static("1"));
            response
        }
        (status, answer) => (status, axum::Json(answer)).into_response(),
    }
}

impl Environment {
    /// The trigger's answer: 202 with the run id (as a JSON string), or the error.
    fn answer(
        &mut self,
        method: &str,
        path: &str,
        workflow_id: &str,
        query: &Value,
        body: &Value,
        size: usize,
    ) -> (StatusCode, Value) {
        let Some(flow) = self.flows.get_mut(workflow_id) else {
            return error(
                StatusCode::NOT_FOUND,
                "WorkflowNotFound",
                &format!("The workflow '{workflow_id}' could not be found."),
            );
        };
        if query["sig"] != json!(flow.sig) {
            return error(
                StatusCode::UNAUTHORIZED,
                "DirectApiAuthorizationRequired",
                "The request must be authenticated only by Shared Access scheme.",
            );
        }
        if query["api-version"] != "1"
            || query["sp"] != "/triggers/manual/run"
            || query["sv"] != "1.0"
        {
            return error(
                StatusCode::BAD_REQUEST,
                "InvalidRequestParameters",
                "The query must carry api-version=1, sp=/triggers/manual/run and sv=1.0.",
            );
        }
        let now = Instant::now();
        while flow
            .recent
            .front()
            .is_some_and(|at| now.duration_since(*at) >= CHANNEL_PERIOD)
        {
            flow.recent.pop_front();
        }
        if self.held_to_limits && flow.recent.len() >= CHANNEL_LIMIT {
            return error(
                StatusCode::TOO_MANY_REQUESTS,
                "WorkflowTriggerIsThrottled",
                "Rate limit is exceeded. Try again in 1 seconds.",
            );
        }
        flow.recent.push_back(now);
        match envelope_contract().check(method, path, body) {
            Ok(()) => {}
            Err(Breach::UnknownOperation(message)) => {
                return error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "TriggerRequestMethodNotValid",
                    &message,
                )
            }
            Err(Breach::Invalid(problems)) => {
                return invalid(problems.iter().map(ToString::to_string).collect())
            }
        }
        if size > MESSAGE_LIMIT_BYTES {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "MessageSizeTooBig",
                &format!("The message is {size} bytes; Teams takes at most {MESSAGE_LIMIT_BYTES}."),
            );
        }
        let attachments = body["attachments"].as_array().cloned().unwrap_or_default();
        let mut problems = Vec::new();
        for (index, attachment) in attachments.iter().enumerate() {
            let card = &attachment["content"];
            for problem in card_schema().validate(card) {
                problems.push(format!("attachments[{index}].content.{problem}"));
            }
            if !card["version"].as_str().is_some_and(is_known_version) {
                problems.push(format!(
                    "attachments[{index}].content.version: {} is not a card version Teams renders (1.0 to 1.5)",
                    card["version"]
                ));
            }
        }
        if !problems.is_empty() {
            return invalid(problems);
        }
        flow.posts.extend(
            attachments
                .into_iter()
                .map(|attachment| attachment["content"].clone()),
        );
        let run = format!("0858{:016}CU{:02}", self.next_run, self.next_run % 100);
        self.next_run += 1;
        (StatusCode::ACCEPTED, json!(run))
    }
}

fn invalid(problems: Vec<String>) -> (StatusCode, Value) {
    error(
        StatusCode::BAD_REQUEST,
        "InvalidRequestContent",
        &format!("The request content is not valid: {}", problems.join("; ")),
    )
}

/// Whether `version` is an Adaptive Card version from 1.0 to the newest the schema knows.
fn is_known_version(version: &str) -> bool {
    let Some((major, minor)) = version.split_once('.') else {
        return false;
    };
    match (major.parse::<u64>(), minor.parse::<u64>()) {
        (Ok(major), Ok(minor)) => major == 1 && (major, minor) <= NEWEST_CARD,
        _ => false,
    }
}

// === the conformance suite's view ===

/// The flow the simulated environment has for the conformance suite (not a real one).
const SIMULATED_FLOW: &str = "5c7a2f0e9b6d4e1f8a3c2b1d0e9f8a7b";
const SIMULATED_SIG: &str = "simulated-teams-flow-signature-3f9c";

impl Simulation for super::Teams {
    fn start(&self, addr: std::net::SocketAddr) -> SimulatorFuture<'_> {
        Box::pin(async move {
            let teams = FakeTeams::start(addr).await?;
            teams.add_flow(SIMULATED_FLOW, SIMULATED_SIG);
            Ok(Box::new(teams) as Box<dyn RunningSimulator>)
        })
    }
}

impl RunningSimulator for FakeTeams {
    fn faults(&self) -> &Faults {
        &self.faults
    }

    fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    fn credential(&self) -> String {
        format!(
            "{}/powerautomate/automations/direct/workflows/{SIMULATED_FLOW}/triggers/manual/paths/invoke?api-version=1&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={SIMULATED_SIG}",
            self.server.url()
        )
    }

    fn settings(&self, secret: &str) -> String {
        format!("workflow_url = {secret}")
    }

    fn sample_notification(&self, notification_id: &str) -> Value {
        base_sample_notification(notification_id)
    }

    fn address(&self) -> String {
        format!(
            "{}/powerautomate/automations/direct/workflows",
            self.server.url()
        )
    }

    fn about(&self) -> String {
        "a channel's Workflows flow: cards checked against the Adaptive Card schema, posted to the channel".to_owned()
    }

    fn describe_request(&self, request: &RecordedRequest) -> String {
        request.body["attachments"][0]["content"]["body"][0]["items"][0]["text"]
            .as_str()
            .map(|title| format!("{title:.60}"))
            .unwrap_or_default()
    }

    fn hold_to_published_limits(&self) {
        self.lock().held_to_limits = true;
    }

    fn outage(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            502,
            &[],
            json!({"error": {"code": "BadGateway", "message": "The service is temporarily unavailable."}}),
        )
    }

    fn credential_refused(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            401,
            &[],
            json!({"error": {"code": "DirectApiAuthorizationRequired", "message": "The request must be authenticated only by Shared Access scheme."}}),
        )
    }

    fn rate_limited(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            429,
            &[("retry-after", "1")],
            json!({"error": {"code": "WorkflowTriggerIsThrottled", "message": "Rate limit is exceeded. Try again in 1 seconds."}}),
        )
    }

    fn validation_error(&self) -> (ScriptedResponse, &'static str) {
        (
            ScriptedResponse::json(
                400,
                &[],
                json!({"error": {"code": "InvalidRequestContent", "message": "The request content is not valid: attachments[0].content.body[0].type: must be one of [\"TextBlock\"]"}}),
            ),
            "The request content is not valid",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_card_schema_loads_and_judges_cards() {
        let schema = card_schema();
        let good = json!({"type": "AdaptiveCard", "version": "1.4", "body": [
            {"type": "TextBlock", "text": "hi", "weight": "Bolder", "wrap": true},
            {"type": "FactSet", "facts": [{"title": "Wedding", "value": "2027-06-12"}]}
        ], "actions": [{"type": "Action.OpenUrl", "title": "Open", "url": "https://x.example"}]});
        assert_eq!(schema.validate(&good), vec![]);
        let unknown_property = json!({"type": "AdaptiveCard", "version": "1.4", "body": [
            {"type": "TextBlock", "text": "hi", "colour": "red"}
        ]});
        assert_eq!(
            schema
                .validate(&unknown_property)
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["body[0].colour: is not a known field"]
        );
        let fact_without_value = json!({"type": "AdaptiveCard", "version": "1.4", "body": [
            {"type": "FactSet", "facts": [{"title": "Wedding"}]}
        ]});
        assert!(!schema.validate(&fact_without_value).is_empty());
        let open_url_without_url = json!({"type": "AdaptiveCard", "version": "1.4", "body": [],
            "actions": [{"type": "Action.OpenUrl", "title": "Open"}]});
        assert!(!schema.validate(&open_url_without_url).is_empty());
    }

    #[test]
    fn card_versions_are_from_1_0_to_1_5() {
        assert!(is_known_version("1.0"));
        assert!(is_known_version("1.5"));
        assert!(!is_known_version("1.6"));
        assert!(!is_known_version("2.0"));
        assert!(!is_known_version("latest"));
    }
}
