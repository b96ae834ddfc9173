//! Intuit's OAuth and the QuickBooks Online Accounting API for what the QuickBooks connector
//! and its webhook handler call, behaving as Intuit's documentation says:
//!
//! - the consent page (`/connect/oauth2`, a person who consents at once, sent back with a code,
//!   the state and the `realmId`) and the token endpoint (`/oauth2/v1/tokens/bearer`, the app
//!   authenticated with HTTP Basic only): every refresh answers a new refresh token and the one
//!   spent stops working (`invalid_grant`);
//! - every call with a live bearer token for the company in the path; bodies checked against
//!   `contract.json` (400 `ValidationFault` naming the element); `DisplayName` unique (6240), a
//!   sparse update with a stale `SyncToken` refused (5010), items that exist; a `requestid` used
//!   before answered with its first answer;
//! - the query language for `select * from Customer where PrimaryEmailAddr = '...'`;
//! - 10 requests a second and 500 a minute per company, once held to them, refused with 429
//!   `ThrottleExceeded`;
//! - a payment made in QuickBooks ([`FakeQuickBooks::receive_payment`]) and Intuit's webhook
//!   ([`FakeQuickBooks::notify`]) signed with `intuit-signature`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use base64::Engine;
use serde_json::{json, Value};

use super::inbound::intuit_signature;
use crate::sandbox::contract::{fields_of, load_written_contract, Breach, WrittenContract};
use crate::sandbox::{Faults, RecordedRequest, Recorder, ScriptedResponse, Server};
use crate::vendors::{base_sample_notification, RunningSimulator, Simulation, SimulatorFuture};

const ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

pub struct FakeQuickBooks {
    server: Server,
    pub recorder: Recorder,
    pub faults: Faults,
    state: Arc<Mutex<Company>>,
}

struct Company {
    realm: String,
    client_id: String,
    client_secret: String,
    redirect_uri: Option<String>,
    codes: Vec<String>,
    refresh_token: Option<String>,
    access_tokens: HashMap<String, Instant>,
    items: Vec<String>,
    customers: Vec<Value>,
    invoices: Vec<Value>,
    payments: Vec<Value>,
    replies: HashMap<String, (StatusCode, Value)>,
    recent: VecDeque<Instant>,
    held_to_limits: bool,
    next: u64,
}

#[derive(Clone)]
struct AppState {
    state: Arc<Mutex<Company>>,
    recorder: Recorder,
    faults: Faults,
}

fn quickbooks_contract() -> &'static WrittenContract {
    static CONTRACT: OnceLock<WrittenContract> = OnceLock::new();
    CONTRACT.get_or_init(|| load_written_contract(include_str!("contract.json")))
}

fn fault(status: u16, kind: &str, code: &str, message: &str, detail: &str) -> (StatusCode, Value) {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        json!({"Fault": {"Error": [{"Message": message, "Detail": detail, "code": code}], "type": kind}, "time": "2027-06-12T09:00:00.000-07:00"}),
    )
}

impl FakeQuickBooks {
    /// Starts QuickBooks for company `realm`, whose Intuit app is `client_id`/`client_secret`
    /// and which holds `refresh_token` already (empty: none yet), with one service item `1`.
    pub async fn start(
        addr: std::net::SocketAddr,
        realm: &str,
        client_id: &str,
        client_secret: &str,
        refresh_token: &str,
    ) -> std::io::Result<Self> {
        let state = Arc::new(Mutex::new(Company {
            realm: realm.to_owned(),
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            redirect_uri: None,
            codes: Vec::new(),
            refresh_token: (!refresh_token.is_empty()).then(|| refresh_token.to_owned()),
            access_tokens: HashMap::new(),
            items: vec!["1".to_owned()],
            customers: Vec::new(),
            invoices: Vec::new(),
            payments: Vec::new(),
            replies: HashMap::new(),
            recent: VecDeque::new(),
            held_to_limits: false,
            next: 0,
        }));
        let (recorder, faults) = (Recorder::default(), Faults::default());
        let app = axum::Router::new()
            .route("/connect/oauth2", get(authorize))
            .route("/oauth2/v1/tokens/bearer", post(grant))
            .route("/v3/company/{*rest}", any(api))
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

    /// Intuit's address: Herald's `api_url`, `oauth.authorize_url` and `oauth.token_url`
    /// under it.
    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn register_redirect_uri(&self, uri: &str) {
        self.lock().redirect_uri = Some(uri.to_owned());
    }

    /// The refresh token the company holds now (Intuit rotates it on every refresh).
    pub fn refresh_token(&self) -> Option<String> {
        self.lock().refresh_token.clone()
    }

    pub fn customers(&self) -> Vec<Value> {
        self.lock().customers.clone()
    }

    pub fn invoices(&self) -> Vec<Value> {
        self.lock().invoices.clone()
    }

    pub fn payments(&self) -> Vec<Value> {
        self.lock().payments.clone()
    }

    /// Someone records a payment from customer `customer_id` in QuickBooks; its id.
    pub fn receive_payment(&self, customer_id: &str, amount: f64) -> String {
        let mut company = self.lock();
        company.next += 1;
        let id = (100 + company.next).to_string();
        let name = company
            .customers
            .iter()
            .find(|customer| customer["Id"] == customer_id)
            .map(|customer| customer["DisplayName"].clone())
            .unwrap_or(Value::Null);
        company.payments.push(json!({"Id": id, "SyncToken": "0", "CustomerRef": {"value": customer_id, "name": name}, "TotalAmt": amount, "CurrencyRef": {"value": "USD"}, "TxnDate": "2027-06-01"}));
        id
    }

    /// Intuit's webhook for `entities` (`(name, id, operation)`) of `realm`, signed with
    /// `verifier`. Answers Herald's status and JSON.
    pub async fn notify(
        &self,
        url: &str,
        realm: &str,
        entities: &[(&str, &str, &str)],
        verifier: &str,
    ) -> (u16, Value) {
        let entities: Vec<Value> = entities
            .iter()
            .map(|(name, id, operation)| json!({"name": name, "id": id, "operation": operation, "lastUpdated": "2027-06-01T10:00:00.000Z"}))
            .collect();
        let body = json!({"eventNotifications": [{"realmId": realm, "dataChangeEvent": {"entities": entities}}]}).to_string();
        match reqwest::Client::new()
            .post(url)
            .header("content-type", "application/json")
            .header(
                "intuit-signature",
                intuit_signature(verifier, body.as_bytes()),
            )
            .body(body)
            .send()
            .await
        {
            Ok(response) => {
                let status = response.status().as_u16();
                (status, response.json().await.unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Company> {
        self.state.lock().expect("quickbooks lock")
    }
}

fn query_of(uri: &Uri) -> HashMap<String, String> {
    url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

async fn authorize(State(app): State<AppState>, uri: Uri) -> Response {
    let query = query_of(&uri);
    let mut company = app.state.lock().expect("quickbooks lock");
    let valid = query.get("client_id") == Some(&company.client_id)
        && company.redirect_uri.is_some()
        && query.get("redirect_uri") == company.redirect_uri.as_ref()
        && query.get("response_type").map(String::as_str) == Some("code")
        && query.get("scope").map(String::as_str) == Some("com.intuit.quickbooks.accounting");
    if !valid {
        return (StatusCode::BAD_REQUEST, "invalid_request").into_response();
    }
    company.next += 1;
    let code = format!("AB1170000{:08}", company.next);
    company.codes.push(code.clone());
    let Some(Ok(mut back)) = company.redirect_uri.as_deref().map(url::Url::parse) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    back.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", query.get("state").map_or("", String::as_str))
        .append_pair("realmId", &company.realm);
    (StatusCode::FOUND, [("location", back.to_string())]).into_response()
}

/// Token grants are not Accounting API requests: they are not recorded (nor charged by Herald).
async fn grant(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let (status, answer) = app
        .state
        .lock()
        .expect("quickbooks lock")
        .grant(&headers, &form);
    (status, axum::Json(answer)).into_response()
}

async fn api(
    State(app): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let recorded = if method == Method::GET {
        fields_of(uri.query().unwrap_or_default().as_bytes())
    } else {
        parsed.clone()
    };
    if let Some(scripted) = app.faults.take().await {
        let (status, response) = scripted.answer();
        app.recorder
            .record(method.as_str(), uri.path(), &headers, recorded, status);
        return response;
    }
    let (status, answer) = app
        .state
        .lock()
        .expect("quickbooks lock")
        .answer(&method, &uri, &headers, parsed);
    app.recorder
        .record(method.as_str(), uri.path(), &headers, recorded, status);
    (status, axum::Json(answer)).into_response()
}

impl Company {
    fn grant(
        &mut self,
        headers: &HeaderMap,
        form: &HashMap<String, String>,
    ) -> (StatusCode, Value) {
        let basic = headers
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Basic "))
            .and_then(|encoded| {
                base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .ok()
            })
            .and_then(|decoded| String::from_utf8(decoded).ok());
        if basic != Some(format!("{}:{}", self.client_id, self.client_secret)) {
            return (StatusCode::UNAUTHORIZED, json!({"error": "invalid_client"}));
        }
        let invalid = (StatusCode::BAD_REQUEST, json!({"error": "invalid_grant"}));
        match form.get("grant_type").map(String::as_str) {
            Some("refresh_token") => {
                if form.get("refresh_token") != self.refresh_token.as_ref()
                    || self.refresh_token.is_none()
                {
                    return invalid;
                }
            }
            Some("authorization_code") => {
                let code = form.get("code").cloned().unwrap_or_default();
                let Some(at) = self.codes.iter().position(|issued| *issued == code) else {
                    return invalid;
                };
                if form.get("redirect_uri") != self.redirect_uri.as_ref() {
                    return invalid;
                }
                self.codes.remove(at);
            }
            _ => {
                return (
                    StatusCode::BAD_REQUEST,
                    json!({"error": "unsupported_grant_type"}),
                )
            }
        }
        self.next += 1;
        let refresh = format!("RT1-{:08}-rotated", self.next);
        self.refresh_token = Some(refresh.clone());
        let access = format!("eyJlbmMiOiJBMTI4Q0JDLUhTMjU2-simulated-{:08}", self.next);
        self.access_tokens
            .insert(access.clone(), Instant::now() + ACCESS_TOKEN_LIFETIME);
        (
            StatusCode::OK,
            json!({"token_type": "bearer", "access_token": access, "expires_in": ACCESS_TOKEN_LIFETIME.as_secs(), "refresh_token": refresh, "x_refresh_token_expires_in": 8_726_400}),
        )
    }

    fn answer(
        &mut self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: Value,
    ) -> (StatusCode, Value) {
        let live = headers
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .and_then(|token| self.access_tokens.get(token))
            .is_some_and(|expires| Instant::now() < *expires);
        if !live {
            return fault(
                401,
                "AUTHENTICATION",
                "3200",
                "message=AuthenticationFailed; errorCode=003200; statusCode=401",
                "Token expired",
            );
        }
        let now = Instant::now();
        while self
            .recent
            .front()
            .is_some_and(|at| now.duration_since(*at) >= Duration::from_secs(60))
        {
            self.recent.pop_front();
        }
        let last_second = self
            .recent
            .iter()
            .filter(|at| now.duration_since(**at) < Duration::from_secs(1))
            .count();
        if self.held_to_limits && (self.recent.len() >= 500 || last_second >= 10) {
            return fault(
                429,
                "SERVICE",
                "3001",
                "message=ThrottleExceeded; errorCode=003001; statusCode=429",
                "The request limit was reached.",
            );
        }
        self.recent.push_back(now);
        let segments: Vec<&str> = uri
            .path()
            .trim_start_matches("/v3/company/")
            .split('/')
            .collect();
        if segments[0] != self.realm {
            return fault(
                403,
                "AuthorizationFault",
                "3100",
                "message=ApplicationAuthorizationFailed; errorCode=003100; statusCode=403",
                "The token is not for this company",
            );
        }
        let query = query_of(uri);
        if let Some(reply) = query.get("requestid").and_then(|id| self.replies.get(id)) {
            return reply.clone();
        }
        let answer = match (method.as_str(), &segments[1..]) {
            ("GET", ["query"]) => {
                self.select(query.get("query").map(String::as_str).unwrap_or_default())
            }
            ("GET", ["companyinfo", _]) => (
                StatusCode::OK,
                json!({"CompanyInfo": {"CompanyName": "Kew Wedding Films LLC", "Country": "US", "Id": "1"}}),
            ),
            ("GET", ["payment", id]) => {
                match self.payments.iter().find(|payment| payment["Id"] == *id) {
                    Some(payment) => (StatusCode::OK, json!({"Payment": payment})),
                    None => fault(
                        400,
                        "ValidationFault",
                        "610",
                        "Object Not Found",
                        "Something you're trying to use has been made inactive or is not found.",
                    ),
                }
            }
            ("POST", [resource]) => {
                let template = format!("/v3/company/{{realm}}/{resource}");
                match quickbooks_contract().check("POST", &template, &body) {
                    Err(Breach::UnknownOperation(_)) => {
                        return fault(
                            400,
                            "ValidationFault",
                            "4001",
                            "Invalid query",
                            "Unsupported operation",
                        )
                    }
                    Err(Breach::Invalid(problems)) => {
                        let first = &problems[0];
                        return fault(
                            400,
                            "ValidationFault",
                            "2010",
                            "Request has invalid or unsupported property",
                            &format!("{}: {}", first.at, first.message),
                        );
                    }
                    Ok(()) => {}
                }
                match *resource {
                    "customer" => self.customer(body),
                    "invoice" => self.invoice(body),
                    _ => self.payment(body),
                }
            }
            _ => fault(
                400,
                "ValidationFault",
                "4001",
                "Invalid query",
                "Unsupported operation",
            ),
        };
        if let Some(id) = query.get("requestid") {
            if method == Method::POST {
                self.replies.insert(id.clone(), answer.clone());
            }
        }
        answer
    }

    fn select(&self, query: &str) -> (StatusCode, Value) {
        let prefix = "select * from Customer where PrimaryEmailAddr = '";
        let Some(email) = query
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix('\''))
        else {
            return fault(
                400,
                "ValidationFault",
                "4000",
                "Error parsing query",
                &format!("QueryParserError: {query}"),
            );
        };
        let email = email.replace("\\'", "'").replace("\\\\", "\\");
        let found: Vec<&Value> = self
            .customers
            .iter()
            .filter(|customer| customer["PrimaryEmailAddr"]["Address"] == email.as_str())
            .collect();
        (
            StatusCode::OK,
            json!({"QueryResponse": if found.is_empty() { json!({}) } else { json!({"Customer": found, "startPosition": 1, "maxResults": found.len()}) }, "time": "2027-06-12T09:00:00.000-07:00"}),
        )
    }

    fn customer(&mut self, body: Value) -> (StatusCode, Value) {
        if body["sparse"] == true {
            let Some(customer) = self
                .customers
                .iter_mut()
                .find(|customer| customer["Id"] == body["Id"])
            else {
                return fault(
                    400,
                    "ValidationFault",
                    "610",
                    "Object Not Found",
                    "Customer not found",
                );
            };
            if customer["SyncToken"] != body["SyncToken"] {
                return fault(
                    400,
                    "ValidationFault",
                    "5010",
                    "Stale Object Error",
                    "You and someone else are editing the same customer",
                );
            }
            for (key, value) in body.as_object().into_iter().flatten() {
                if !matches!(key.as_str(), "Id" | "SyncToken" | "sparse") {
                    customer[key] = value.clone();
                }
            }
            let token = customer["SyncToken"]
                .as_str()
                .and_then(|t| t.parse::<u64>().ok())
                .unwrap_or(0)
                + 1;
            customer["SyncToken"] = json!(token.to_string());
            return (StatusCode::OK, json!({"Customer": customer.clone()}));
        }
        let Some(name) = body["DisplayName"].as_str() else {
            return fault(
                400,
                "ValidationFault",
                "2020",
                "Required param missing, need to supply the required value for the API",
                "Required parameter DisplayName is missing",
            );
        };
        if self
            .customers
            .iter()
            .any(|customer| customer["DisplayName"] == name)
        {
            return fault(
                400,
                "ValidationFault",
                "6240",
                "Duplicate Name Exists Error",
                "The name supplied already exists.",
            );
        }
        self.next += 1;
        let mut customer = body.clone();
        customer["Id"] = json!((self.next + 50).to_string());
        customer["SyncToken"] = json!("0");
        customer["Active"] = json!(true);
        self.customers.push(customer.clone());
        (StatusCode::OK, json!({"Customer": customer}))
    }

    fn known_customer(&self, body: &Value) -> bool {
        self.customers
            .iter()
            .any(|customer| customer["Id"] == body["CustomerRef"]["value"])
    }

    fn invoice(&mut self, body: Value) -> (StatusCode, Value) {
        if !self.known_customer(&body) {
            return fault(
                400,
                "ValidationFault",
                "2500",
                "Invalid Reference Id",
                "Invalid Reference Id : Customer assigned to this transaction has been deleted.",
            );
        }
        let items_exist = body["Line"].as_array().into_iter().flatten().all(|line| {
            self.items
                .iter()
                .any(|item| line["SalesItemLineDetail"]["ItemRef"]["value"] == item.as_str())
        });
        if !items_exist {
            return fault(
                400,
                "ValidationFault",
                "2500",
                "Invalid Reference Id",
                "Invalid Reference Id : Item assigned to this transaction has been deleted.",
            );
        }
        self.next += 1;
        let mut invoice = body;
        invoice["Id"] = json!((self.next + 1000).to_string());
        invoice["TotalAmt"] = json!(invoice["Line"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|line| line["Amount"].as_f64())
            .sum::<f64>());
        self.invoices.push(invoice.clone());
        (StatusCode::OK, json!({"Invoice": invoice}))
    }

    fn payment(&mut self, body: Value) -> (StatusCode, Value) {
        if !self.known_customer(&body) {
            return fault(
                400,
                "ValidationFault",
                "2500",
                "Invalid Reference Id",
                "Invalid Reference Id : Customer assigned to this transaction has been deleted.",
            );
        }
        self.next += 1;
        let mut payment = body;
        payment["Id"] = json!((self.next + 2000).to_string());
        self.payments.push(payment.clone());
        (StatusCode::OK, json!({"Payment": payment}))
    }
}

// === the conformance suite's view ===

const SIMULATED_REALM: &str = "9130000000000042";
const SIMULATED_CLIENT: &str = "ABsimulatedIntuitClientId";
/// The app's secret and the company's first refresh token, one credential for the suite.
const SIMULATED_SECRET: &str = "simulated-intuit-secret";

impl Simulation for super::QuickBooks {
    fn start(&self, addr: std::net::SocketAddr) -> SimulatorFuture<'_> {
        Box::pin(async move {
            let quickbooks = FakeQuickBooks::start(
                addr,
                SIMULATED_REALM,
                SIMULATED_CLIENT,
                SIMULATED_SECRET,
                SIMULATED_SECRET,
            )
            .await?;
            Ok(Box::new(quickbooks) as Box<dyn RunningSimulator>)
        })
    }
}

impl RunningSimulator for FakeQuickBooks {
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
        format!(
            "realm_id = \"{SIMULATED_REALM}\", oauth = {{ client_id = \"{SIMULATED_CLIENT}\", client_secret = {secret}, refresh_token = {secret}, token_url = \"{url}/oauth2/v1/tokens/bearer\", authorize_url = \"{url}/connect/oauth2\" }}, api_url = \"{url}\"",
            url = self.url()
        )
    }

    /// The couple, a contact of their own per notification: each is a new customer.
    fn sample_notification(&self, notification_id: &str) -> Value {
        let mut notification = base_sample_notification(notification_id);
        notification["contacts"] = json!([{"name": "Sam", "email": format!("sam+{notification_id}@example.com"), "role": "couple"}]);
        notification
    }

    fn address(&self) -> String {
        self.url()
    }

    fn about(&self) -> String {
        "a studio's company: customers, invoices, payments".to_owned()
    }

    fn describe_request(&self, request: &RecordedRequest) -> String {
        format!("{} {}", request.method, request.path)
    }

    fn hold_to_published_limits(&self) {
        self.lock().held_to_limits = true;
    }

    fn outage(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            503,
            &[],
            json!({"Fault": {"Error": [{"Message": "Service Unavailable", "code": "10000"}], "type": "SERVICE"}}),
        )
    }

    fn credential_refused(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            401,
            &[],
            json!({"Fault": {"Error": [{"Message": "message=AuthenticationFailed; errorCode=003200; statusCode=401", "code": "3200"}], "type": "AUTHENTICATION"}}),
        )
    }

    fn rate_limited(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            429,
            &[("retry-after", "1")],
            json!({"Fault": {"Error": [{"Message": "message=ThrottleExceeded; errorCode=003001; statusCode=429", "code": "3001"}], "type": "SERVICE"}}),
        )
    }

    fn validation_error(&self) -> (ScriptedResponse, &'static str) {
        (
            ScriptedResponse::json(
                400,
                &[],
                json!({"Fault": {"Error": [{"Message": "Duplicate Name Exists Error", "Detail": "The name supplied already exists.", "code": "6240"}], "type": "ValidationFault"}}),
            ),
            "Duplicate Name Exists",
        )
    }
}
