//! A HubSpot simulator for what the HubSpot connector calls, behaving as HubSpot documents
//! (developers.hubspot.com/docs/api-reference):
//!
//! - every request checked against `contract.json` first (400 `VALIDATION_ERROR` with an
//!   `errors` entry per field; 404 for an operation the contract lacks);
//! - a Bearer private-app token or OAuth access tokens (401 `INVALID_AUTHENTICATION`, or
//!   `EXPIRED_AUTHENTICATION` for an expired one); the OAuth consent page (a person who consents
//!   at once) and the token endpoint's authorization-code and refresh-token grants; token info
//!   for private apps and OAuth tokens, with the portal's scopes;
//! - contact property groups and properties (409 `OBJECT_ALREADY_EXISTS` for existing ones), and
//!   contacts refuse properties that do not exist (400 `PROPERTY_DOESNT_EXIST`);
//! - contacts (batch read and upsert by email), notes and tasks with associations (batch create),
//!   deals and their stages, contact-based workflows and enrolments, all with state, so reads
//!   reflect writes;
//! - the 10-second rolling limit with `X-HubSpot-RateLimit-*` headers and a 429 `RATE_LIMIT` body;
//! - the app's webhooks: deal moves and creations as HubSpot's events
//!   ([`FakeHubSpot::move_deal`]), sent to a target signed with `X-HubSpot-Signature-v3`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{json, Map, Value};

use crate::sandbox::contract::{fields_of, load_written_contract, Breach, WrittenContract};
use crate::sandbox::SchemaError;
use crate::sandbox::ScriptedResponse;
use crate::sandbox::{Faults, RecordedRequest, Recorder, Server};
use crate::vendors::{base_sample_notification, RunningSimulator, Simulation, SimulatorFuture};

/// Properties every HubSpot contact has before anyone adds custom ones.
const DEFAULT_CONTACT_PROPERTIES: &[&str] = &[
    "email",
    "firstname",
    "lastname",
    "phone",
    "company",
    "lifecyclestage",
];

pub struct FakeHubSpot {
    server: Server,
    pub recorder: Recorder,
    pub faults: Faults,
    state: Arc<Mutex<HubSpotState>>,
}

/// A contact as the simulator keeps it.
#[derive(Debug, Clone)]
pub struct Contact {
    pub id: String,
    pub properties: Map<String, Value>,
}

/// A note and the contacts it is associated with.
#[derive(Debug, Clone)]
pub struct Note {
    pub id: String,
    pub properties: Map<String, Value>,
    pub contact_ids: Vec<String>,
    pub deal_ids: Vec<String>,
    pub company_ids: Vec<String>,
}

/// The simulated portal's id.
const SANDBOX_HUB_ID: u64 = 62515;

/// The stages of HubSpot's default sales pipeline (their internal ids).
const DEFAULT_PIPELINE_STAGES: &[&str] = &[
    "appointmentscheduled",
    "qualifiedtobuy",
    "presentationscheduled",
    "decisionmakerboughtin",
    "contractsent",
    "closedwon",
    "closedlost",
];

struct HubSpotState {
    token: String,
    /// The OAuth app the portal installed, if any.
    oauth: Option<OAuthApp>,
    /// Issued access tokens and when they expire.
    access_tokens: HashMap<String, Instant>,
    groups: BTreeMap<String, Value>,
    properties: BTreeMap<String, Value>,
    contacts: BTreeMap<String, Contact>,
    /// Deals by id: their properties (`dealname`, `dealstage`...).
    deals: BTreeMap<String, Map<String, Value>>,
    companies: BTreeMap<String, Map<String, Value>>,
    notes: Vec<Note>,
    tasks: Vec<Note>,
    /// The scopes every token of the portal was granted.
    scopes: Vec<String>,
    /// Contacts whose new notes and tasks fail one by one (a 207 Multi-Status for the batch).
    refusing_activities: Vec<String>,
    /// Contact-based workflows by id, with the emails enrolled in them.
    workflows: BTreeMap<String, Vec<String>>,
    /// v4 flow ids and the v2 workflow id each has, if any (a flow made in the v4 editor has none).
    flows: BTreeMap<String, Option<String>>,
    next_id: u64,
    window: Duration,
    max_per_window: usize,
    recent: VecDeque<Instant>,
    /// Private-app requests the portal allows a day, and how many it has taken today (OAuth
    /// calls have no daily limit).
    daily_limit: usize,
    used_today: usize,
}

/// HubSpot's smallest daily allowance for private apps (Free and Starter).
const DAILY_LIMIT: usize = 250_000;

/// A public app installed in the portal: its credentials and its access tokens' lifetime.
struct OAuthApp {
    client_id: String,
    client_secret: String,
    /// The app's redirect URL, for installs through the consent page.
    redirect_uri: Option<String>,
    /// The portal's refresh token, once the app is installed.
    refresh_token: Option<String>,
    /// Authorization codes handed out by the consent page and not yet exchanged: the redirect
    /// URL each was issued for, and the PKCE challenge (S256) it was asked with, if any.
    codes: HashMap<String, (String, Option<String>)>,
    lifetime: Duration,
    /// Token requests answered so far.
    grants: usize,
}

/// RFC 7636's S256 transformation, as the authorization server computes it.
fn s256(verifier: &str) -> String {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// The answer of the token endpoint to a grant it refuses, as HubSpot words them.
fn oauth_refusal(status: &str, message: &str) -> (StatusCode, Value) {
    (
        StatusCode::BAD_REQUEST,
        json!({"status": status, "message": message, "correlationId": uuid::Uuid::new_v4().to_string()}),
    )
}

#[derive(Clone)]
struct AppState {
    state: Arc<Mutex<HubSpotState>>,
    recorder: Recorder,
    faults: Faults,
}

impl FakeHubSpot {
    /// Starts a portal whose private-app token is `token`, limited to `max_per_10s` requests per
    /// rolling ten seconds (HubSpot: 100 on Free and Starter, 190 on Professional and Enterprise).
    pub async fn start(
        addr: std::net::SocketAddr,
        token: &str,
        max_per_10s: usize,
    ) -> std::io::Result<Self> {
        let state = Arc::new(Mutex::new(HubSpotState {
            token: token.to_owned(),
            oauth: None,
            access_tokens: HashMap::new(),
            groups: BTreeMap::new(),
            properties: DEFAULT_CONTACT_PROPERTIES
                .iter()
                .map(|name| (name.to_string(), json!({"name": name})))
                .collect(),
            contacts: BTreeMap::new(),
            deals: BTreeMap::new(),
            companies: BTreeMap::new(),
            notes: Vec::new(),
            tasks: Vec::new(),
            // What the install asks for, the optional scopes granted.
            scopes: super::HUBSPOT_SCOPES
                .iter()
                .chain(super::HUBSPOT_OPTIONAL_SCOPES)
                .map(|scope| scope.to_string())
                .collect(),
            workflows: BTreeMap::new(),
            flows: BTreeMap::new(),
            refusing_activities: Vec::new(),
            next_id: 1000,
            window: Duration::from_secs(10),
            max_per_window: max_per_10s,
            recent: VecDeque::new(),
            daily_limit: DAILY_LIMIT,
            used_today: 0,
        }));
        let (recorder, faults) = (Recorder::default(), Faults::default());
        let app_state = AppState {
            state: state.clone(),
            recorder: recorder.clone(),
            faults: faults.clone(),
        };
        let app = axum::Router::new()
            .route("/crm/v3/properties/contacts/groups", post(handle))
            .route("/crm/v3/properties/contacts/batch/create", post(handle))
            .route("/crm/v3/objects/contacts/batch/read", post(handle))
            .route("/crm/v3/objects/deals/batch/read", post(handle))
            .route("/oauth/v3/token", post(grant_token))
            .route("/oauth/v3/token/introspect", post(introspect_token))
            .route("/oauth/authorize", axum::routing::get(authorize))
            .route("/oauth/v2/private-apps/get/access-token-info", post(handle))
            .route("/crm/v3/objects/contacts/batch/upsert", post(handle))
            .route("/crm/v3/objects/notes/batch/create", post(handle))
            .route("/crm/v3/objects/tasks/batch/create", post(handle))
            .route("/crm/v3/objects/contacts", axum::routing::get(handle))
            .route("/crm/v3/objects/deals/{id}", axum::routing::patch(handle))
            .route(
                "/automation/v2/workflows/{workflow}/enrollments/contacts/{email}",
                post(handle),
            )
            .route(
                "/automation/v4/workflow-id-mappings/batch/read",
                post(handle),
            )
            .with_state(app_state);
        Ok(Self {
            server: Server::start(app, addr, faults.clone()).await?,
            recorder,
            faults,
            state,
        })
    }

    /// The URL to configure as the HubSpot connector's `base_url`.
    pub fn base_url(&self) -> String {
        self.server.url()
    }

    /// Installs a public app: `/oauth/v3/token` then trades this refresh token for access
    /// tokens that live `lifetime` (HubSpot: 30 minutes).
    pub fn install_oauth_app(
        &self,
        client_id: &str,
        client_secret: &str,
        refresh_token: &str,
        lifetime: Duration,
    ) {
        self.state.lock().expect("hubspot lock").oauth = Some(OAuthApp {
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            redirect_uri: None,
            refresh_token: Some(refresh_token.to_owned()),
            codes: HashMap::new(),
            lifetime,
            grants: 0,
        });
    }

    /// From now on, a note or task input associated with this contact fails on its own: the batch
    /// answers 207 Multi-Status with the others created and an `errors` entry for it, as HubSpot
    /// answers a batch whose inputs partly fail.
    pub fn refuse_activities_for(&self, contact_id: &str) {
        let mut state = self.state.lock().expect("hubspot lock");
        state.refusing_activities.push(contact_id.to_owned());
    }

    /// Grants every token of the portal exactly these scopes.
    pub fn set_scopes(&self, scopes: &[&str]) {
        self.state.lock().expect("hubspot lock").scopes =
            scopes.iter().map(|scope| scope.to_string()).collect();
    }

    /// Adds a contact-based workflow contacts can be enrolled in.
    pub fn add_workflow(&self, id: &str) {
        let mut state = self.state.lock().expect("hubspot lock");
        state.workflows.insert(id.to_owned(), Vec::new());
    }

    /// Adds a v4 flow: the v2 workflow it is (enrolments reach it), or none (made in the v4
    /// editor).
    pub fn add_flow(&self, flow_id: &str, workflow_id: Option<&str>) {
        let mut state = self.state.lock().expect("hubspot lock");
        state
            .flows
            .insert(flow_id.to_owned(), workflow_id.map(str::to_owned));
    }

    /// The emails enrolled in a workflow, in enrolment order.
    pub fn enrolled(&self, workflow: &str) -> Vec<String> {
        let state = self.state.lock().expect("hubspot lock");
        state.workflows.get(workflow).cloned().unwrap_or_default()
    }

    /// The portal's refresh token of the OAuth app, once installed.
    pub fn oauth_refresh_token(&self) -> Option<String> {
        let state = self.state.lock().expect("hubspot lock");
        state
            .oauth
            .as_ref()
            .and_then(|oauth| oauth.refresh_token.clone())
    }

    /// Registers an OAuth app that is not installed yet: its consent page (`GET
    /// /oauth/authorize`) plays a person who consents at once and sends the browser back to
    /// `redirect_uri` with an authorization code, which the token endpoint exchanges once.
    pub fn register_oauth_app(
        &self,
        client_id: &str,
        client_secret: &str,
        redirect_uri: &str,
        lifetime: Duration,
    ) {
        self.state.lock().expect("hubspot lock").oauth = Some(OAuthApp {
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            redirect_uri: Some(redirect_uri.to_owned()),
            refresh_token: None,
            codes: HashMap::new(),
            lifetime,
            grants: 0,
        });
    }

    /// How many access tokens the token endpoint has granted.
    pub fn oauth_grants(&self) -> usize {
        self.state
            .lock()
            .expect("hubspot lock")
            .oauth
            .as_ref()
            .map_or(0, |app| app.grants)
    }

    /// Invalidates every access token issued so far (as if the portal revoked them).
    pub fn revoke_access_tokens(&self) {
        let mut state = self.state.lock().expect("hubspot lock");
        let past = Instant::now() - Duration::from_secs(1);
        state
            .access_tokens
            .values_mut()
            .for_each(|expires| *expires = past);
    }

    /// Sets how many private-app requests the portal allows today (HubSpot: 250,000 to 1,000,000
    /// by plan); past it, private-app calls draw a 429 with `policyName: DAILY`.
    pub fn set_daily_limit(&self, limit: usize) {
        self.state.lock().expect("hubspot lock").daily_limit = limit;
    }

    /// Replaces the private app's token (a rotation): the old one is refused from now on.
    pub fn rotate_token(&self, token: &str) {
        self.state.lock().expect("hubspot lock").token = token.to_owned();
    }

    /// Adds a contact that exists before Herald talks to the portal.
    pub fn add_contact(&self, email: &str, properties: Value) -> String {
        let mut state = self.state.lock().expect("hubspot lock");
        let id = state.next_id();
        let mut properties = properties.as_object().cloned().unwrap_or_default();
        properties.insert("email".into(), json!(email));
        state.contacts.insert(
            id.clone(),
            Contact {
                id: id.clone(),
                properties,
            },
        );
        id
    }

    /// Adds a deal in the default pipeline; returns its id.
    pub fn add_deal(&self, name: &str, stage: &str) -> String {
        let mut state = self.state.lock().expect("hubspot lock");
        let id = state.next_id();
        let properties = json!({"dealname": name, "dealstage": stage, "pipeline": "default"});
        state.deals.insert(
            id.clone(),
            properties.as_object().cloned().unwrap_or_default(),
        );
        id
    }

    /// Adds a company; returns its id.
    pub fn add_company(&self, name: &str) -> String {
        let mut state = self.state.lock().expect("hubspot lock");
        let id = state.next_id();
        state.companies.insert(
            id.clone(),
            json!({"name": name})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        );
        id
    }

    /// Moves a deal to `stage`, as someone in HubSpot would, and answers the event HubSpot's
    /// webhooks send for it.
    pub fn move_deal(&self, id: &str, stage: &str) -> Value {
        let mut state = self.state.lock().expect("hubspot lock");
        if let Some(deal) = state.deals.get_mut(id) {
            deal.insert("dealstage".into(), json!(stage));
        }
        state.event("deal.propertyChange", id, Some(("dealstage", stage)))
    }

    /// The event HubSpot's webhooks send when the object `id` is created (`deal.creation`,
    /// `contact.creation`).
    pub fn creation_event(&self, subscription_type: &str, id: &str) -> Value {
        self.state
            .lock()
            .expect("hubspot lock")
            .event(subscription_type, id, None)
    }

    /// Sends `events` to an app's webhook target as HubSpot does: one POST of the JSON array,
    /// signed with `X-HubSpot-Signature-v3` under `client_secret` at `timestamp_ms`. Answers the
    /// status the target answered.
    pub async fn send_webhook(
        &self,
        target: &str,
        client_secret: &str,
        events: &[Value],
        timestamp_ms: u64,
    ) -> u16 {
        let body = Value::Array(events.to_vec()).to_string();
        let signature =
            super::inbound::sign_v3(client_secret, "POST", target, body.as_bytes(), timestamp_ms);
        match reqwest::Client::new()
            .post(target)
            .header("content-type", "application/json")
            .header("x-hubspot-signature-v3", signature)
            .header("x-hubspot-request-timestamp", timestamp_ms.to_string())
            .body(body)
            .send()
            .await
        {
            Ok(response) => response.status().as_u16(),
            Err(_) => 0,
        }
    }

    pub fn deal(&self, id: &str) -> Option<Map<String, Value>> {
        self.state
            .lock()
            .expect("hubspot lock")
            .deals
            .get(id)
            .cloned()
    }

    pub fn contact_by_email(&self, email: &str) -> Option<Contact> {
        self.state
            .lock()
            .expect("hubspot lock")
            .contact_by_email(email)
            .cloned()
    }

    /// The tasks created, as the simulator keeps them (the same shape as a note).
    pub fn tasks(&self) -> Vec<Note> {
        self.state.lock().expect("hubspot lock").tasks.clone()
    }

    pub fn notes(&self) -> Vec<Note> {
        self.state.lock().expect("hubspot lock").notes.clone()
    }

    /// The names of the contact properties in a property group.
    pub fn properties_in_group(&self, group: &str) -> Vec<String> {
        let state = self.state.lock().expect("hubspot lock");
        state
            .properties
            .values()
            .filter(|p| p["groupName"] == group)
            .filter_map(|p| p["name"].as_str().map(str::to_owned))
            .collect()
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.recorder.all()
    }
}

async fn handle(
    State(app): State<AppState>,
    method: axum::http::Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // A GET, or a POST without a body (a workflow enrolment), reads as an empty object.
    let parsed: Result<Value, _> = if method == axum::http::Method::GET || body.is_empty() {
        Ok(json!({}))
    } else {
        serde_json::from_slice(&body)
    };
    let recorded = parsed.as_ref().cloned().unwrap_or(Value::Null);
    let (status, response) = match app.faults.take().await {
        Some(scripted) => scripted.answer(),
        None => {
            let mut state = app.state.lock().expect("hubspot lock");
            state.answer(method.as_str(), &uri, &headers, parsed)
        }
    };
    // A token in the body is a secret: recordings keep everything else.
    let path = uri.path();
    let mut recorded = recorded;
    if recorded.get("tokenKey").is_some() {
        recorded["tokenKey"] = json!("<token>");
    }
    app.recorder
        .record(method.as_str(), path, &headers, recorded, status);
    response
}

/// `POST /oauth/v3/token` with `grant_type=refresh_token`, form-encoded, as HubSpot documents.
/// The consent page: a person who consents at once. Sends the browser back to the app's
/// redirect URL with a fresh authorization code and the `state` it was given.
async fn authorize(State(app): State<AppState>, uri: Uri, headers: HeaderMap) -> Response {
    let query: HashMap<String, String> =
        url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let redirect = {
        let mut state = app.state.lock().expect("hubspot lock");
        state.oauth.as_mut().and_then(|oauth| {
            let registered = oauth.redirect_uri.clone()?;
            if query.get("client_id") != Some(&oauth.client_id)
                || query.get("redirect_uri") != Some(&registered)
                || query.get("scope").is_none_or(|scope| scope.is_empty())
            {
                return None;
            }
            let code = format!("code-{}", uuid::Uuid::new_v4().simple());
            let challenge = match (
                query.get("code_challenge"),
                query.get("code_challenge_method"),
            ) {
                (Some(challenge), Some(method)) if method == "S256" => Some(challenge.clone()),
                (None, None) => None,
                // A plain or unknown method, or half the pair: refused like a bad request.
                _ => return None,
            };
            oauth
                .codes
                .insert(code.clone(), (registered.clone(), challenge));
            let mut back = url::Url::parse(&registered).ok()?;
            back.query_pairs_mut()
                .append_pair("code", &code)
                .append_pair("state", query.get("state").map_or("", String::as_str));
            Some(back.to_string())
        })
    };
    let recorded = json!({"client_id": query.get("client_id"), "scope": query.get("scope"), "optional_scope": query.get("optional_scope")});
    match redirect {
        Some(location) => {
            app.recorder.record(
                "GET",
                "/oauth/authorize",
                &headers,
                recorded,
                StatusCode::FOUND,
            );
            (StatusCode::FOUND, [("location", location)]).into_response()
        }
        None => {
            app.recorder.record(
                "GET",
                "/oauth/authorize",
                &headers,
                recorded,
                StatusCode::BAD_REQUEST,
            );
            (
                StatusCode::BAD_REQUEST,
                "Unknown client_id, or a redirect_uri the app does not have",
            )
                .into_response()
        }
    }
}

async fn grant_token(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let checked = hubspot_contract().check("POST", "/oauth/v3/token", &fields_of(&body));
    let (status, answer) = if let Err(Breach::Invalid(errors)) = checked {
        let listed: Vec<String> = errors.iter().map(ToString::to_string).collect();
        (
            StatusCode::BAD_REQUEST,
            json!({"status": "BAD_REQUEST", "message": listed.join("; ")}),
        )
    } else {
        let mut state = app.state.lock().expect("hubspot lock");
        state.grant(&form)
    };
    // The form carries the client secret and refresh token: the recording keeps only the grant type.
    app.recorder.record(
        "POST",
        "/oauth/v3/token",
        &headers,
        json!({"grant_type": form.get("grant_type")}),
        status,
    );
    (status, axum::Json(answer)).into_response()
}

/// `POST /oauth/v3/token/introspect`, form-encoded with the app's credentials and the token, as
/// HubSpot documents it (RFC 7662): `{"active": true, ...}` for a live access token of the app,
/// with the portal and the granted scopes; `{"active": false}` for any other token. (HubSpot's
/// reference shows only `active`; the metadata is the v1 endpoint's, which Herald reads if
/// present.)
async fn introspect_token(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let checked = hubspot_contract().check("POST", "/oauth/v3/token/introspect", &fields_of(&body));
    let (status, answer) = if let Err(Breach::Invalid(errors)) = checked {
        let listed: Vec<String> = errors.iter().map(ToString::to_string).collect();
        (
            StatusCode::BAD_REQUEST,
            json!({"status": "error", "category": "VALIDATION_ERROR", "message": listed.join("; ")}),
        )
    } else {
        app.state.lock().expect("hubspot lock").introspect(&form)
    };
    // The form carries the client secret and the token: the recording keeps neither.
    app.recorder.record(
        "POST",
        "/oauth/v3/token/introspect",
        &headers,
        json!({"token_type_hint": form.get("token_type_hint")}),
        status,
    );
    (status, axum::Json(answer)).into_response()
}

/// HubSpot's answer to a body that breaks the operation's contract: 400 VALIDATION_ERROR with
/// one entry per problem in `errors`, each naming the field in `in`.
fn contract_violation(errors: &[SchemaError]) -> (StatusCode, Response) {
    let listed: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let body = json!({
        "status": "error",
        "message": format!("Invalid input JSON: {}", listed.join("; ")),
        "correlationId": uuid::Uuid::new_v4().to_string(),
        "category": "VALIDATION_ERROR",
        "errors": errors.iter().map(|e| json!({"message": e.message, "in": e.at})).collect::<Vec<_>>(),
    });
    let status = StatusCode::BAD_REQUEST;
    (status, (status, axum::Json(body)).into_response())
}

/// The scope an operation needs, as HubSpot's reference lists them for the calls Herald makes.
/// (Notes and tasks are left unchecked: their pages name several scopes we could not confirm.)
fn required_scope(method: &str, path: &str) -> Option<&'static str> {
    Some(match (method, path) {
        ("GET", "/crm/v3/objects/contacts") | ("POST", "/crm/v3/objects/contacts/batch/read") => {
            "crm.objects.contacts.read"
        }
        ("POST", "/crm/v3/objects/contacts/batch/upsert") => "crm.objects.contacts.write",
        ("POST", "/crm/v3/properties/contacts/groups")
        | ("POST", "/crm/v3/properties/contacts/batch/create") => "crm.schemas.contacts.write",
        ("POST", "/crm/v3/objects/deals/batch/read") => "crm.objects.deals.read",
        ("PATCH", deal) if deal.starts_with("/crm/v3/objects/deals/") => "crm.objects.deals.write",
        ("POST", enrolment) if enrolment.starts_with("/automation/v2/workflows/") => "automation",
        ("POST", "/automation/v4/workflow-id-mappings/batch/read") => "automation",
        _ => return None,
    })
}

/// HubSpot's 403 for a token without the scope a call needs.
fn missing_scope(scope: &str) -> (StatusCode, Response) {
    let body = json!({
        "status": "error",
        "message": "This app hasn't been granted all required scopes to make this call.",
        "correlationId": uuid::Uuid::new_v4().to_string(),
        "category": "MISSING_SCOPES",
        "errors": [{"message": "One or more of the following scopes are required.", "context": {"requiredGranularScopes": [scope]}}],
    });
    (
        StatusCode::FORBIDDEN,
        (StatusCode::FORBIDDEN, axum::Json(body)).into_response(),
    )
}

fn hubspot_error(status: StatusCode, category: &str, message: &str) -> (StatusCode, Response) {
    let body = json!({
        "status": "error",
        "message": message,
        "correlationId": uuid::Uuid::new_v4().to_string(),
        "category": category,
    });
    (status, (status, axum::Json(body)).into_response())
}

// === impl HubSpotState ===

impl HubSpotState {
    /// Token introspection: the app's credentials must be right; the token is active while it
    /// is an unexpired access token of the portal.
    fn introspect(&self, form: &HashMap<String, String>) -> (StatusCode, Value) {
        let Some(oauth) = &self.oauth else {
            return oauth_refusal("BAD_CLIENT_ID", "no app is installed in this portal");
        };
        if form.get("client_id") != Some(&oauth.client_id)
            || form.get("client_secret") != Some(&oauth.client_secret)
        {
            return oauth_refusal("BAD_CLIENT_ID", "missing or unknown client id or secret");
        }
        let now = Instant::now();
        let token = form.get("token").map(String::as_str).unwrap_or_default();
        match self.access_tokens.get(token) {
            Some(expires) if *expires > now => (
                StatusCode::OK,
                json!({
                    "active": true, "token_type": "access_token", "client_id": oauth.client_id,
                    "hub_id": SANDBOX_HUB_ID, "app_id": 3001, "user_id": 7001,
                    "scopes": self.scopes, "expires_in": expires.duration_since(now).as_secs(),
                }),
            ),
            _ => (StatusCode::OK, json!({"active": false})),
        }
    }

    /// The token endpoint: a refresh-token grant, or an authorization code from the consent
    /// page exchanged (once) for the portal's refresh token.
    fn grant(&mut self, form: &HashMap<String, String>) -> (StatusCode, Value) {
        let Some(oauth) = self.oauth.as_mut() else {
            return oauth_refusal("BAD_CLIENT_ID", "missing or invalid client id");
        };
        if form.get("client_id") != Some(&oauth.client_id)
            || form.get("client_secret") != Some(&oauth.client_secret)
        {
            return oauth_refusal("BAD_CLIENT_ID", "missing or invalid client id or secret");
        }
        match form.get("grant_type").map(String::as_str) {
            Some("authorization_code") => {
                let code = form.get("code").map_or("", String::as_str);
                match oauth.codes.get(code) {
                    None => return oauth_refusal("BAD_AUTH_CODE", "missing or invalid auth code"),
                    Some((redirect, _)) if form.get("redirect_uri") != Some(redirect) => {
                        return oauth_refusal(
                            "BAD_REDIRECT_URI",
                            "redirect_uri does not match the one the code was issued for",
                        )
                    }
                    // PKCE: the verifier must hash to the challenge the consent page was given.
                    Some((_, Some(challenge)))
                        if form
                            .get("code_verifier")
                            .map(|verifier| s256(verifier))
                            .as_ref()
                            != Some(challenge) =>
                    {
                        return oauth_refusal(
                            "BAD_AUTH_CODE",
                            "code_verifier does not match the code_challenge",
                        )
                    }
                    Some(_) => {}
                }
                oauth.codes.remove(code);
                oauth.refresh_token = Some(format!("rt-{}", uuid::Uuid::new_v4().simple()));
            }
            _ if oauth.refresh_token.is_some()
                && form.get("refresh_token") == oauth.refresh_token.as_ref() => {}
            _ => return oauth_refusal("BAD_REFRESH_TOKEN", "missing or unknown refresh token"),
        }
        oauth.grants += 1;
        let (lifetime, refresh) = (oauth.lifetime, oauth.refresh_token.clone());
        let token = format!("oat-{}", uuid::Uuid::new_v4().simple());
        self.access_tokens
            .insert(token.clone(), Instant::now() + lifetime);
        (
            StatusCode::OK,
            json!({"token_type": "bearer", "access_token": token, "refresh_token": refresh, "expires_in": lifetime.as_secs()}),
        )
    }

    fn next_id(&mut self) -> String {
        self.next_id += 1;
        self.next_id.to_string()
    }

    fn contact_by_email(&self, email: &str) -> Option<&Contact> {
        self.contacts.values().find(|c| {
            c.properties
                .get("email")
                .and_then(Value::as_str)
                .is_some_and(|e| e.eq_ignore_ascii_case(email))
        })
    }

    fn answer(
        &mut self,
        method: &str,
        uri: &Uri,
        headers: &HeaderMap,
        body: Result<Value, serde_json::Error>,
    ) -> (StatusCode, Response) {
        let path = uri.path();
        let token = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let now = Instant::now();
        let private_app = token == Some(self.token.as_str());
        if let Some(expires) = token.and_then(|t| self.access_tokens.get(t)) {
            if now >= *expires {
                let ago = now.duration_since(*expires).as_secs();
                return hubspot_error(
                    StatusCode::UNAUTHORIZED,
                    "EXPIRED_AUTHENTICATION",
                    &format!("The OAuth token used to make this call expired {ago} second(s) ago."),
                );
            }
        } else if token != Some(self.token.as_str()) {
            return hubspot_error(
                StatusCode::UNAUTHORIZED,
                "INVALID_AUTHENTICATION",
                "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
            );
        }
        while self
            .recent
            .front()
            .is_some_and(|at| now.duration_since(*at) >= self.window)
        {
            self.recent.pop_front();
        }
        let policy = if private_app && self.used_today >= self.daily_limit {
            Some(("daily", "DAILY"))
        } else if self.recent.len() >= self.max_per_window {
            Some(("ten_secondly_rolling", "TEN_SECONDLY_ROLLING"))
        } else {
            None
        };
        if let Some((limit, policy)) = policy {
            let body = json!({
                "status": "error",
                "message": format!("You have reached your {limit} limit."),
                "errorType": "RATE_LIMIT",
                "correlationId": uuid::Uuid::new_v4().to_string(),
                "policyName": policy,
            });
            let mut response = (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
            self.rate_headers(&mut response, private_app);
            return (StatusCode::TOO_MANY_REQUESTS, response);
        }
        self.recent.push_back(now);
        if private_app {
            self.used_today += 1;
        }
        let body = match body {
            Ok(body) if body.is_object() => body,
            Ok(_) => {
                return hubspot_error(
                    StatusCode::BAD_REQUEST,
                    "VALIDATION_ERROR",
                    "Invalid input JSON: expected an object",
                )
            }
            Err(err) => {
                return hubspot_error(
                    StatusCode::BAD_REQUEST,
                    "VALIDATION_ERROR",
                    &format!(
                        "Invalid input JSON on line {}, column {}: {err}",
                        err.line(),
                        err.column()
                    ),
                )
            }
        };
        let instance = match method {
            "GET" => fields_of(uri.query().unwrap_or_default().as_bytes()),
            _ => body.clone(),
        };
        match hubspot_contract().check(method, path, &instance) {
            Ok(()) => {}
            Err(Breach::UnknownOperation(message)) => {
                return hubspot_error(StatusCode::NOT_FOUND, "OBJECT_NOT_FOUND", &message)
            }
            Err(Breach::Invalid(errors)) => return contract_violation(&errors),
        }
        if let Some(scope) = required_scope(method, path) {
            if !self.scopes.iter().any(|granted| granted == scope) {
                return missing_scope(scope);
            }
        }
        let (status, answer) = match path {
            "/crm/v3/properties/contacts/groups" => self.create_group(&body),
            "/crm/v3/properties/contacts/batch/create" => self.create_properties(&body),
            "/crm/v3/objects/contacts/batch/read" => self.read_contacts(&body),
            "/crm/v3/objects/deals/batch/read" => self.read_deals(&body),
            "/crm/v3/objects/contacts/batch/upsert" => self.upsert_contacts(&body),
            "/crm/v3/objects/notes/batch/create" => self.create_activities(Activity::Note, &body),
            "/crm/v3/objects/tasks/batch/create" => self.create_activities(Activity::Task, &body),
            "/automation/v4/workflow-id-mappings/batch/read" => self.map_flows(&body),
            "/oauth/v2/private-apps/get/access-token-info" => {
                if body["tokenKey"] != self.token.as_str() {
                    return hubspot_error(
                        StatusCode::NOT_FOUND,
                        "OBJECT_NOT_FOUND",
                        "No private app access token matches tokenKey",
                    );
                }
                (
                    StatusCode::OK,
                    json!({"userId": 7001, "hubId": SANDBOX_HUB_ID, "appId": 3001, "scopes": self.scopes}),
                )
            }
            enrolment if enrolment.starts_with("/automation/v2/workflows/") => {
                self.enroll(enrolment)
            }
            deal if deal.starts_with("/crm/v3/objects/deals/") => {
                self.update_deal(deal.trim_start_matches("/crm/v3/objects/deals/"), &body)
            }
            "/crm/v3/objects/contacts" => {
                let first: Vec<Value> = self
                    .contacts
                    .values()
                    .take(1)
                    .map(|c| contact_json(c, &["email"]))
                    .collect();
                (StatusCode::OK, json!({"results": first}))
            }
            _ => return hubspot_error(StatusCode::NOT_FOUND, "OBJECT_NOT_FOUND", "not found"),
        };
        let mut response = if status == StatusCode::NO_CONTENT {
            status.into_response()
        } else {
            (status, axum::Json(answer)).into_response()
        };
        self.rate_headers(&mut response, private_app);
        (status, response)
    }

    /// HubSpot's `X-HubSpot-RateLimit-*` headers: the rolling window (`-Max`, `-Remaining`,
    /// `-Interval-Milliseconds`), the same per second (`-Secondly`, `-Secondly-Remaining`), and
    /// for a private app the day (`-Daily`, `-Daily-Remaining`; OAuth calls have no daily limit,
    /// so they carry none).
    fn rate_headers(&self, response: &mut Response, private_app: bool) {
        let now = Instant::now();
        let secondly = self.max_per_window / self.window.as_secs().max(1) as usize;
        let this_second = self
            .recent
            .iter()
            .filter(|at| now.duration_since(**at) < Duration::from_secs(1))
            .count();
        let headers = response.headers_mut();
        headers.insert("x-hubspot-ratelimit-max", self.max_per_window.into());
        headers.insert(
            "x-hubspot-ratelimit-remaining",
            self.max_per_window.saturating_sub(self.recent.len()).into(),
        );
        headers.insert(
            "x-hubspot-ratelimit-interval-milliseconds",
            (self.window.as_millis() as u64).into(),
        );
        headers.insert("x-hubspot-ratelimit-secondly", secondly.into());
        headers.insert(
            "x-hubspot-ratelimit-secondly-remaining",
            secondly.saturating_sub(this_second).into(),
        );
        if private_app {
            headers.insert("x-hubspot-ratelimit-daily", self.daily_limit.into());
            headers.insert(
                "x-hubspot-ratelimit-daily-remaining",
                self.daily_limit.saturating_sub(self.used_today).into(),
            );
        }
    }

    fn create_group(&mut self, body: &Value) -> (StatusCode, Value) {
        // The contract check made sure of the shape of every body below.
        let name = body["name"].as_str().unwrap_or_default();
        if self.groups.contains_key(name) {
            return (
                StatusCode::CONFLICT,
                json!({"status": "error", "message": format!("A property group named '{name}' already exists."), "category": "OBJECT_ALREADY_EXISTS"}),
            );
        }
        self.groups.insert(name.to_owned(), body.clone());
        (
            StatusCode::CREATED,
            json!({"name": name, "label": body["label"], "displayOrder": body["displayOrder"], "archived": false}),
        )
    }

    fn create_properties(&mut self, body: &Value) -> (StatusCode, Value) {
        let (mut results, mut errors) = (Vec::new(), Vec::new());
        for input in inputs_of(body) {
            let [name, group] =
                ["name", "groupName"].map(|key| input[key].as_str().unwrap_or_default());
            if !self.groups.contains_key(group) {
                return validation(&format!("property group {group:?} does not exist"));
            }
            if self.properties.contains_key(name) {
                errors.push(json!({"status": "error", "category": "OBJECT_ALREADY_EXISTS", "message": format!("Property named '{name}' already exists."), "context": {"name": [name]}}));
                continue;
            }
            self.properties.insert(name.to_owned(), input.clone());
            results.push(input.clone());
        }
        // A batch create that made everything answers 201 Created, as the reference says.
        match batch_answer(results, errors) {
            (StatusCode::OK, answer) => (StatusCode::CREATED, answer),
            partial => partial,
        }
    }

    /// One event of HubSpot's webhook payload, with the next event id.
    fn event(&mut self, subscription_type: &str, id: &str, change: Option<(&str, &str)>) -> Value {
        let event_id = self.next_id();
        let occurred_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as u64);
        let mut event = json!({
            "eventId": event_id.parse::<u64>().unwrap_or_default(),
            "subscriptionId": 4_105_001,
            "portalId": SANDBOX_HUB_ID,
            "appId": 3001,
            "occurredAt": occurred_at,
            "subscriptionType": subscription_type,
            "attemptNumber": 0,
            "objectId": id.parse::<u64>().unwrap_or_default(),
            "changeSource": "CRM",
        });
        if let Some((name, value)) = change {
            event["propertyName"] = json!(name);
            event["propertyValue"] = json!(value);
        }
        event
    }

    fn read_contacts(&mut self, body: &Value) -> (StatusCode, Value) {
        let by_email = body["idProperty"] == "email";
        let wanted: Vec<&str> = body["properties"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let (mut results, mut missing) = (Vec::new(), Vec::new());
        for input in inputs_of(body) {
            let id = input["id"].as_str().unwrap_or_default();
            let found = if by_email {
                self.contact_by_email(id)
            } else {
                self.contacts.get(id)
            };
            match found {
                Some(contact) => results.push(contact_json(contact, &wanted)),
                None => missing.push(id.to_owned()),
            }
        }
        let errors = if missing.is_empty() {
            vec![]
        } else {
            vec![
                json!({"status": "error", "category": "OBJECT_NOT_FOUND", "message": "Could not get some CONTACT objects, they may be deleted or not exist.", "context": {"ids": missing}}),
            ]
        };
        batch_answer(results, errors)
    }

    /// Deals by id with the properties asked for (those a deal has); missing ones in `errors`.
    fn read_deals(&self, body: &Value) -> (StatusCode, Value) {
        let wanted: Vec<&str> = body["properties"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let (mut results, mut missing) = (Vec::new(), Vec::new());
        for input in inputs_of(body) {
            let id = input["id"].as_str().unwrap_or_default();
            match self.deals.get(id) {
                Some(deal) => {
                    let properties: Map<String, Value> = deal
                        .iter()
                        .filter(|(name, _)| wanted.contains(&name.as_str()))
                        .map(|(name, value)| (name.clone(), value.clone()))
                        .collect();
                    results.push(json!({"id": id, "properties": properties, "archived": false}));
                }
                None => missing.push(id.to_owned()),
            }
        }
        let errors = if missing.is_empty() {
            vec![]
        } else {
            vec![
                json!({"status": "error", "category": "OBJECT_NOT_FOUND", "message": "Could not get some DEAL objects, they may be deleted or not exist.", "context": {"ids": missing}}),
            ]
        };
        batch_answer(results, errors)
    }

    fn upsert_contacts(&mut self, body: &Value) -> (StatusCode, Value) {
        // HubSpot validates the whole batch's properties before writing any of it.
        for input in inputs_of(body) {
            if let Some(unknown) = input["properties"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(name, _)| name)
                .find(|name| !self.properties.contains_key(*name))
            {
                let detail = json!([{"isValid": false, "message": format!("Property \"{unknown}\" does not exist"), "error": "PROPERTY_DOESNT_EXIST", "name": unknown}]);
                return (
                    StatusCode::BAD_REQUEST,
                    json!({"status": "error", "message": format!("Property values were not valid: {detail}"), "category": "VALIDATION_ERROR"}),
                );
            }
            if input["idProperty"] != "email" {
                return validation("this simulator upserts contacts by idProperty \"email\"");
            }
        }
        let mut results = Vec::new();
        for input in inputs_of(body) {
            let email = input["id"].as_str().unwrap_or_default().to_owned();
            let properties = input["properties"].as_object().cloned().unwrap_or_default();
            let existing = self.contact_by_email(&email).map(|c| c.id.clone());
            let (id, new) = match existing {
                Some(id) => (id, false),
                None => {
                    let id = self.next_id();
                    let mut fresh = Map::new();
                    fresh.insert("email".into(), json!(email));
                    self.contacts.insert(
                        id.clone(),
                        Contact {
                            id: id.clone(),
                            properties: fresh,
                        },
                    );
                    (id, true)
                }
            };
            let contact = self.contacts.get_mut(&id).expect("just found or inserted");
            contact.properties.extend(properties);
            let mut answer = contact_json(contact, &[]);
            answer["new"] = json!(new);
            results.push(answer);
        }
        batch_answer(results, vec![])
    }

    /// `POST /automation/v4/workflow-id-mappings/batch/read`: `{flowId, workflowId}` (numbers, as
    /// HubSpot's reference shows them) for each flow that has a v2 id; the others are `errors`.
    fn map_flows(&mut self, body: &Value) -> (StatusCode, Value) {
        let (mut results, mut errors) = (Vec::new(), Vec::new());
        for input in inputs_of(body) {
            let flow = input["flowId"].as_str().unwrap_or_default();
            match self.flows.get(flow).cloned().flatten() {
                Some(workflow) => results.push(json!({
                    "flowId": flow.parse::<u64>().map(Value::from).unwrap_or_else(|_| json!(flow)),
                    "workflowId": workflow.parse::<u64>().map(Value::from).unwrap_or_else(|_| json!(workflow)),
                })),
                None => errors.push(json!({"status": "error", "category": "OBJECT_NOT_FOUND", "message": format!("No workflow id mapping for flow {flow}")})),
            }
        }
        let (status, mut answer) = batch_answer(results, errors);
        answer["startedAt"] = json!("2027-01-01T00:00:00Z");
        answer["completedAt"] = json!("2027-01-01T00:00:00Z");
        (status, answer)
    }

    /// `POST /crm/v3/objects/{notes|tasks}/batch/create`: activities associated with contacts,
    /// companies and deals by the association types HubSpot defines for that activity.
    fn create_activities(&mut self, kind: Activity, body: &Value) -> (StatusCode, Value) {
        let (to_contact, to_company, to_deal) = kind.association_types();
        let mut results = Vec::new();
        let mut created = Vec::new();
        let mut errors = Vec::new();
        for input in inputs_of(body) {
            let properties = input["properties"].as_object().cloned().unwrap_or_default();
            if !properties.contains_key("hs_timestamp") {
                return validation("Property \"hs_timestamp\" is required");
            }
            let (mut contact_ids, mut deal_ids, mut company_ids) =
                (Vec::new(), Vec::new(), Vec::new());
            for association in input["associations"].as_array().into_iter().flatten() {
                let to = association["to"]["id"].as_str().unwrap_or_default();
                let type_id = association["types"][0]["associationTypeId"].as_u64();
                if association["types"][0]["associationCategory"] != "HUBSPOT_DEFINED" {
                    return validation("only HUBSPOT_DEFINED associations are simulated");
                }
                // The target must exist.
                let (exists, ids) = match type_id {
                    Some(id) if id == to_contact => {
                        (self.contacts.contains_key(to), &mut contact_ids)
                    }
                    Some(id) if id == to_company => {
                        (self.companies.contains_key(to), &mut company_ids)
                    }
                    Some(id) if id == to_deal => (self.deals.contains_key(to), &mut deal_ids),
                    _ => {
                        return validation(&format!(
                            "association type {type_id:?} is not a {} association HubSpot defines",
                            kind.name()
                        ))
                    }
                };
                if !exists {
                    return validation(&format!(
                        "object {to} does not exist for association type {}",
                        type_id.unwrap_or_default()
                    ));
                }
                ids.push(to.to_owned());
            }
            if let Some(refused) = contact_ids
                .iter()
                .find(|id| self.refusing_activities.contains(id))
            {
                errors.push(json!({
                    "status": "error", "category": "VALIDATION_ERROR",
                    "message": format!("Contact {refused} cannot take a new {}", kind.name()),
                    "context": {"toObjectId": [refused]}
                }));
                continue;
            }
            let id = self.next_id();
            results.push(json!({"id": id, "properties": properties, "archived": false}));
            created.push(Note {
                id,
                properties,
                contact_ids,
                deal_ids,
                company_ids,
            });
        }
        match kind {
            Activity::Note => self.notes.extend(created),
            Activity::Task => self.tasks.extend(created),
        }
        match batch_answer(results, errors) {
            (StatusCode::OK, answer) => (StatusCode::CREATED, answer),
            partial => partial,
        }
    }
}

/// The activities the simulator keeps.
#[derive(Clone, Copy)]
enum Activity {
    Note,
    Task,
}

impl Activity {
    /// HubSpot's default association type ids to a contact, a company and a deal.
    fn association_types(self) -> (u64, u64, u64) {
        match self {
            Activity::Note => (202, 190, 214),
            Activity::Task => (204, 192, 216),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Activity::Note => "note",
            Activity::Task => "task",
        }
    }
}

// === workflows ===

impl HubSpotState {
    /// `POST /automation/v2/workflows/{id}/enrollments/contacts/{email}`: 204, or 404 for a
    /// workflow or contact the portal does not have.
    fn enroll(&mut self, path: &str) -> (StatusCode, Value) {
        let segments: Vec<&str> = path.split('/').collect();
        let (Some(workflow), Some(email)) = (segments.get(4), segments.get(7)) else {
            return (StatusCode::NOT_FOUND, json!({}));
        };
        let email = percent_encoding::percent_decode_str(email)
            .decode_utf8_lossy()
            .to_lowercase();
        if !self.workflows.contains_key(*workflow) {
            return (
                StatusCode::NOT_FOUND,
                json!({"status": "error", "message": format!("Workflow {workflow} not found"), "category": "OBJECT_NOT_FOUND", "correlationId": uuid::Uuid::new_v4().to_string()}),
            );
        }
        if self.contact_by_email(&email).is_none() {
            return (
                StatusCode::NOT_FOUND,
                json!({"status": "error", "message": format!("Contact {email} does not exist"), "category": "OBJECT_NOT_FOUND", "correlationId": uuid::Uuid::new_v4().to_string()}),
            );
        }
        if let Some(enrolled) = self.workflows.get_mut(*workflow) {
            enrolled.push(email);
        }
        (StatusCode::NO_CONTENT, Value::Null)
    }
}

// === deals ===

impl HubSpotState {
    fn update_deal(&mut self, id: &str, body: &Value) -> (StatusCode, Value) {
        let properties = body["properties"].as_object().cloned().unwrap_or_default();
        if let Some(stage) = properties.get("dealstage") {
            if !stage
                .as_str()
                .is_some_and(|s| DEFAULT_PIPELINE_STAGES.contains(&s))
            {
                return validation(&format!("Property values were not valid: dealstage {stage} is not a stage of the deal's pipeline"));
            }
        }
        let Some(deal) = self.deals.get_mut(id) else {
            return (
                StatusCode::NOT_FOUND,
                json!({"status": "error", "message": format!("Object not found. objectId are usually numeric. {id}"), "category": "OBJECT_NOT_FOUND"}),
            );
        };
        deal.extend(properties);
        (
            StatusCode::OK,
            json!({"id": id, "properties": deal, "archived": false}),
        )
    }
}

fn contact_json(contact: &Contact, wanted: &[&str]) -> Value {
    let properties: Map<String, Value> = if wanted.is_empty() {
        contact.properties.clone()
    } else {
        wanted
            .iter()
            .filter_map(|name| {
                contact
                    .properties
                    .get(*name)
                    .map(|v| (name.to_string(), v.clone()))
            })
            .collect()
    };
    json!({"id": contact.id, "properties": properties, "archived": false})
}

/// The `inputs` of a batch body.
fn inputs_of(body: &Value) -> impl Iterator<Item = &Value> {
    body["inputs"].as_array().into_iter().flatten()
}

/// HubSpot's batch answer: 200 when everything worked, 207 Multi-Status with `errors` otherwise.
fn batch_answer(results: Vec<Value>, errors: Vec<Value>) -> (StatusCode, Value) {
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::MULTI_STATUS
    };
    // HubSpot stamps every batch answer with when it was asked, started and completed.
    let now = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    let mut answer = json!({"status": "COMPLETE", "results": results, "requestedAt": now, "startedAt": now, "completedAt": now});
    if !errors.is_empty() {
        answer["numErrors"] = json!(errors.len());
        answer["errors"] = json!(errors);
    }
    (status, answer)
}

fn validation(message: &str) -> (StatusCode, Value) {
    (
        StatusCode::BAD_REQUEST,
        json!({"status": "error", "message": message, "correlationId": uuid::Uuid::new_v4().to_string(), "category": "VALIDATION_ERROR"}),
    )
}

/// Counts requests by path, for tests that check batching.
pub fn requests_by_path(requests: &[RecordedRequest]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for request in requests {
        *counts.entry(request.path.clone()).or_default() += 1;
    }
    counts
}

/// HubSpot's contract (`contract.json`, written from HubSpot's API reference), parsed once.
fn hubspot_contract() -> &'static WrittenContract {
    static CONTRACT: std::sync::OnceLock<WrittenContract> = std::sync::OnceLock::new();
    CONTRACT.get_or_init(|| load_written_contract(include_str!("contract.json")))
}

// === the conformance suite's view ===

/// The private-app token the simulated portal accepts (not a real credential).
const SIMULATED_TOKEN: &str = "pat-na1-simulated-0000-0000-0000-000000000000";

impl Simulation for super::HubSpot {
    fn start(&self, addr: std::net::SocketAddr) -> SimulatorFuture<'_> {
        Box::pin(async move {
            let hubspot = FakeHubSpot::start(addr, SIMULATED_TOKEN, 100).await?;
            Ok(Box::new(hubspot) as Box<dyn RunningSimulator>)
        })
    }
}

impl RunningSimulator for FakeHubSpot {
    fn faults(&self) -> &Faults {
        &self.faults
    }

    fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    fn credential(&self) -> String {
        SIMULATED_TOKEN.to_owned()
    }

    fn settings(&self, secret: &str) -> String {
        format!("base_url = \"{}\", token = {secret}", self.base_url())
    }

    /// With the couple as contacts: HubSpot syncs people.
    fn sample_notification(&self, notification_id: &str) -> Value {
        let mut notification = base_sample_notification(notification_id);
        notification["contacts"] = json!([
            {"name": "Sam", "email": "sam@example.com", "role": "couple"},
            {"name": "Alex", "email": "alex@example.com", "role": "couple"}
        ]);
        notification
    }

    fn address(&self) -> String {
        self.base_url()
    }

    fn about(&self) -> String {
        "a private-app portal: contacts, notes, deals".to_owned()
    }

    fn describe_request(&self, request: &RecordedRequest) -> String {
        format!(
            "{} inputs",
            request.body["inputs"].as_array().map_or(0, Vec::len)
        )
    }

    fn hold_to_published_limits(&self) {
        // The ten-second window is always enforced.
    }

    fn outage(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            503,
            &[],
            json!({"status": "error", "message": "internal error", "category": "INTERNAL_ERROR", "correlationId": "00000000-0000-0000-0000-000000000503"}),
        )
    }

    fn credential_refused(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            401,
            &[],
            json!({"status": "error", "message": "Authentication credentials not found.", "category": "INVALID_AUTHENTICATION", "correlationId": "00000000-0000-0000-0000-000000000401"}),
        )
    }

    fn rate_limited(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            429,
            &[("retry-after", "1")],
            json!({"status": "error", "message": "You have reached your ten_secondly_rolling limit.", "errorType": "RATE_LIMIT", "category": "RATE_LIMITS", "policyName": "TEN_SECONDLY_ROLLING", "correlationId": "00000000-0000-0000-0000-000000000429"}),
        )
    }

    fn validation_error(&self) -> (ScriptedResponse, &'static str) {
        (
            ScriptedResponse::json(
                400,
                &[],
                json!({"status": "error", "message": "Property values were not valid", "category": "VALIDATION_ERROR", "correlationId": "00000000-0000-0000-0000-000000000400"}),
            ),
            "Property values were not valid",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contract_loads_and_matches_path_templates() {
        let hubspot = hubspot_contract();
        assert_eq!(
            hubspot.check(
                "PATCH",
                "/crm/v3/objects/deals/42",
                &json!({"properties": {"dealstage": "closedwon"}})
            ),
            Ok(())
        );
        assert!(matches!(
            hubspot.check("PATCH", "/crm/v3/objects/deals/", &json!({})),
            Err(Breach::UnknownOperation(_))
        ));
        assert!(matches!(
            hubspot.check("DELETE", "/crm/v3/objects/deals/42", &json!({})),
            Err(Breach::UnknownOperation(_))
        ));
        let Err(Breach::Invalid(errors)) = hubspot.check(
            "POST",
            "/oauth/v3/token",
            &fields_of(b"grant_type=authorization_code&client_id=a&client_secret=b&code=c"),
        ) else {
            panic!("an authorization-code grant without its redirect_uri breaks the contract");
        };
        assert_eq!(errors[0].to_string(), "redirect_uri: is required");
        // HubSpot's v1 token endpoints are sunset: the simulator takes none of them.
        assert!(matches!(
            hubspot.check("POST", "/oauth/v1/token", &json!({})),
            Err(Breach::UnknownOperation(_))
        ));
    }
}
