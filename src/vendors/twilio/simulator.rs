//! Twilio's REST API for what the Twilio connector calls, and Twilio calling back, behaving as
//! Twilio's documentation and its published OpenAPI description say:
//!
//! - HTTP Basic with the account SID and auth token on every request (401, error 20003
//!   "Authenticate", otherwise); another account's path is 404 (20404);
//! - `Messages.json` and `Calls.json` forms checked against `contract.json` (400 naming the
//!   parameter: 21604 for a missing `To`, 21211 for a `To` that is not E.164, 20001 for a
//!   parameter Twilio would ignore); a text from a number or Messaging Service the account does
//!   not have is 21606 (a call's is 21210), a `Body` over 1,600 characters 21617, missing 21602;
//!   a call's `Twiml` over 4,000 characters is 32018 and TwiML that does not parse, or uses a
//!   verb Herald has no business with, 12100 (Twilio would only find out when the call
//!   connects);
//! - each message or call kept with its SID (`SM...`, `CA...`) and status (`queued`, or
//!   `accepted` through a Messaging Service);
//! - Twilio calling Herald, each request signed with `X-Twilio-Signature`: status callbacks
//!   ([`FakeTwilio::report_status`]), a person texting the number ([`FakeTwilio::text_in`]) and a
//!   key pressed during a call ([`FakeTwilio::press_key`], to the call's `<Gather action>`).
//!
//! Twilio queues texts beyond a sender's throughput instead of refusing them, and publishes no
//! request rate that answers 429 (20429 comes from an account's concurrency): there is no limit
//! to hold it to.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde_json::{json, Value};

use super::connector::twiml_gather_action;
use super::inbound::twilio_signature;
use crate::sandbox::contract::{fields_of, load_written_contract, Breach, WrittenContract};
use crate::sandbox::{Faults, RecordedRequest, Recorder, ScriptedResponse, Server};
use crate::vendors::{base_sample_notification, RunningSimulator, Simulation, SimulatorFuture};

pub struct FakeTwilio {
    server: Server,
    pub recorder: Recorder,
    pub faults: Faults,
    state: Arc<Mutex<Account>>,
}

struct Account {
    sid: String,
    token: String,
    numbers: BTreeSet<String>,
    services: BTreeSet<String>,
    messages: Vec<Value>,
    calls: Vec<Value>,
    next: u64,
}

#[derive(Clone)]
struct AppState {
    state: Arc<Mutex<Account>>,
    recorder: Recorder,
    faults: Faults,
}

fn twilio_contract() -> &'static WrittenContract {
    static CONTRACT: std::sync::OnceLock<WrittenContract> = std::sync::OnceLock::new();
    CONTRACT.get_or_init(|| load_written_contract(include_str!("contract.json")))
}

/// Twilio's error body.
fn error(status: u16, code: u32, message: &str) -> (StatusCode, Value) {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        json!({
            "code": code,
            "message": message,
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
            "status": status,
        }),
    )
}

impl FakeTwilio {
    /// Starts Twilio for account `sid` with auth token `token`.
    pub async fn start(
        addr: std::net::SocketAddr,
        sid: &str,
        token: &str,
    ) -> std::io::Result<Self> {
        let state = Arc::new(Mutex::new(Account {
            sid: sid.to_owned(),
            token: token.to_owned(),
            numbers: BTreeSet::new(),
            services: BTreeSet::new(),
            messages: Vec::new(),
            calls: Vec::new(),
            next: 1,
        }));
        let (recorder, faults) = (Recorder::default(), Faults::default());
        let app = axum::Router::new()
            .route("/2010-04-01/Accounts/{account}", get(fetch_account))
            .route("/2010-04-01/Accounts/{account}/{resource}", post(create))
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

    /// The API's address, Herald's `api_url`.
    pub fn api_url(&self) -> String {
        self.server.url()
    }

    /// Gives the account a phone number to send from.
    pub fn add_number(&self, number: &str) {
        self.lock().numbers.insert(number.to_owned());
    }

    /// Gives the account a Messaging Service.
    pub fn add_messaging_service(&self, sid: &str) {
        self.lock().services.insert(sid.to_owned());
    }

    pub fn messages(&self) -> Vec<Value> {
        self.lock().messages.clone()
    }

    pub fn calls(&self) -> Vec<Value> {
        self.lock().calls.clone()
    }

    /// Twilio reports `status` (and an error code) of message or call `sid` to its
    /// `StatusCallback`. Answers the status Herald gave (0 when there is no callback).
    pub async fn report_status(&self, sid: &str, status: &str, error_code: Option<&str>) -> u16 {
        let (url, mut form) = {
            let account = self.lock();
            let Some(resource) = account
                .messages
                .iter()
                .chain(&account.calls)
                .find(|resource| resource["sid"] == sid)
            else {
                return 0;
            };
            let Some(url) = resource["status_callback"].as_str() else {
                return 0;
            };
            let is_call = sid.starts_with("CA");
            let mut form = vec![
                ("AccountSid", account.sid.clone()),
                (
                    "From",
                    resource["from"].as_str().unwrap_or_default().to_owned(),
                ),
                ("To", resource["to"].as_str().unwrap_or_default().to_owned()),
                ("ApiVersion", "2010-04-01".to_owned()),
            ];
            if is_call {
                form.push(("CallSid", sid.to_owned()));
                form.push(("CallStatus", status.to_owned()));
                form.push(("Direction", "outbound-api".to_owned()));
            } else {
                form.push(("MessageSid", sid.to_owned()));
                form.push(("SmsSid", sid.to_owned()));
                form.push(("MessageStatus", status.to_owned()));
                form.push(("SmsStatus", status.to_owned()));
            }
            (url.to_owned(), form)
        };
        if let Some(code) = error_code {
            form.push(("ErrorCode", code.to_owned()));
        }
        self.call_back(&url, &form).await.0
    }

    /// `from` texts `body` to the account's number `to`, which Twilio posts to `url` (the
    /// number's "A message comes in" webhook). Answers Herald's status and TwiML.
    pub async fn text_in(&self, url: &str, from: &str, to: &str, body: &str) -> (u16, String) {
        let form = {
            let mut account = self.lock();
            let sid = account.next_sid("SM");
            vec![
                ("MessageSid", sid.clone()),
                ("SmsSid", sid),
                ("AccountSid", account.sid.clone()),
                ("From", from.to_owned()),
                ("To", to.to_owned()),
                ("Body", body.to_owned()),
                ("NumMedia", "0".to_owned()),
                ("NumSegments", "1".to_owned()),
                ("ApiVersion", "2010-04-01".to_owned()),
            ]
        };
        self.call_back(url, &form).await
    }

    /// The person called in call `sid` presses `digits`: Twilio posts them to the call's
    /// `<Gather action>`. Answers Herald's status and TwiML (0 when the call gathers nothing).
    pub async fn press_key(&self, sid: &str, digits: &str) -> (u16, String) {
        let (url, form) = {
            let account = self.lock();
            let Some(call) = account.calls.iter().find(|call| call["sid"] == sid) else {
                return (0, String::new());
            };
            let Some(url) = call["twiml"].as_str().and_then(twiml_gather_action) else {
                return (0, String::new());
            };
            (
                url,
                vec![
                    ("CallSid", sid.to_owned()),
                    ("AccountSid", account.sid.clone()),
                    ("From", call["from"].as_str().unwrap_or_default().to_owned()),
                    ("To", call["to"].as_str().unwrap_or_default().to_owned()),
                    ("Direction", "outbound-api".to_owned()),
                    ("CallStatus", "in-progress".to_owned()),
                    ("Digits", digits.to_owned()),
                    ("FinishedOnKey", String::new()),
                    ("ApiVersion", "2010-04-01".to_owned()),
                ],
            )
        };
        self.call_back(&url, &form).await
    }

    /// Posts `form` to `url` signed as Twilio signs.
    async fn call_back(&self, url: &str, form: &[(&str, String)]) -> (u16, String) {
        let owned: Vec<(String, String)> = form
            .iter()
            .map(|(name, value)| ((*name).to_owned(), value.clone()))
            .collect();
        let token = self.lock().token.clone();
        let signature = twilio_signature(&token, url, &owned);
        match reqwest::Client::new()
            .post(url)
            .header("x-twilio-signature", signature)
            .form(&owned)
            .send()
            .await
        {
            Ok(response) => {
                let status = response.status().as_u16();
                (status, response.text().await.unwrap_or_default())
            }
            Err(_) => (0, String::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Account> {
        self.state.lock().expect("twilio lock")
    }
}

/// The account SID and token of an HTTP Basic header.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let encoded = headers
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

async fn fetch_account(
    State(app): State<AppState>,
    Path(account): Path<String>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/2010-04-01/Accounts/{account}");
    if let Some(scripted) = app.faults.take().await {
        let (status, response) = scripted.answer();
        app.recorder
            .record("GET", &path, &headers, Value::Null, status);
        return response;
    }
    let (status, answer) = {
        let state = app.state.lock().expect("twilio lock");
        match state.authenticate(&headers, account.strip_suffix(".json").unwrap_or("")) {
            Err(refusal) => refusal,
            Ok(()) => (
                StatusCode::OK,
                json!({
                    "sid": state.sid,
                    "friendly_name": "Wedding emergency desk",
                    "status": "active",
                    "type": "Full",
                    "date_created": "Tue, 01 Jun 2027 09:00:00 +0000",
                }),
            ),
        }
    };
    app.recorder
        .record("GET", &path, &headers, Value::Null, status);
    (status, axum::Json(answer)).into_response()
}

async fn create(
    State(app): State<AppState>,
    Path((account, resource)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = format!("/2010-04-01/Accounts/{account}/{resource}");
    let form = fields_of(&body);
    if let Some(scripted) = app.faults.take().await {
        let (status, response) = scripted.answer();
        app.recorder.record("POST", &path, &headers, form, status);
        return response;
    }
    let (status, answer) = app
        .state
        .lock()
        .expect("twilio lock")
        .create(&headers, &account, &resource, &form);
    app.recorder.record("POST", &path, &headers, form, status);
    (status, axum::Json(answer)).into_response()
}

impl Account {
    fn next_sid(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}{:032x}", self.next)
    }

    fn authenticate(&self, headers: &HeaderMap, account: &str) -> Result<(), (StatusCode, Value)> {
        match basic_credentials(headers) {
            Some((user, password)) if user == self.sid && password == self.token => {}
            _ => return Err(error(401, 20003, "Authenticate")),
        }
        if account != self.sid {
            return Err(error(
                404,
                20404,
                &format!("The requested resource /2010-04-01/Accounts/{account} was not found"),
            ));
        }
        Ok(())
    }

    fn create(
        &mut self,
        headers: &HeaderMap,
        account: &str,
        resource: &str,
        form: &Value,
    ) -> (StatusCode, Value) {
        if let Err(refusal) = self.authenticate(headers, account) {
            return refusal;
        }
        let template = format!("/2010-04-01/Accounts/{{AccountSid}}/{resource}");
        match twilio_contract().check("POST", &template, form) {
            Ok(()) => {}
            Err(Breach::UnknownOperation(_)) => {
                return error(
                    404,
                    20404,
                    &format!("The requested resource {resource} was not found"),
                )
            }
            Err(Breach::Invalid(problems)) => {
                let first = &problems[0];
                let named = |name: &str| first.at.contains(name) || first.message.contains(name);
                return if form.get("To").is_none() {
                    error(400, 21604, "A 'To' phone number is required.")
                } else if named("To") && !named("Body") {
                    error(
                        400,
                        21211,
                        &format!(
                            "Invalid 'To' Phone Number: {}",
                            form["To"].as_str().unwrap_or_default()
                        ),
                    )
                } else {
                    error(
                        400,
                        20001,
                        &format!(
                            "Unknown or invalid parameters: {}: {}",
                            first.at, first.message
                        ),
                    )
                };
            }
        }
        let field = |name: &str| form[name].as_str().unwrap_or_default().to_owned();
        if resource == "Messages.json" {
            self.create_message(form, &field("To"))
        } else {
            self.create_call(form, &field("To"))
        }
    }

    fn create_message(&mut self, form: &Value, to: &str) -> (StatusCode, Value) {
        let from = form["From"].as_str();
        let service = form["MessagingServiceSid"].as_str();
        let known = match (service, from) {
            (Some(service), _) => self.services.contains(service),
            (None, Some(from)) => self.numbers.contains(from),
            (None, None) => false,
        };
        if !known {
            return error(
                400,
                21606,
                &format!(
                    "The From phone number {} is not a valid, SMS-capable inbound phone number or short code for your account.",
                    from.or(service).unwrap_or("(none)")
                ),
            );
        }
        let body = form["Body"].as_str().unwrap_or_default();
        if body.trim().is_empty() {
            return error(400, 21602, "Message body is required.");
        }
        if body.chars().count() > 1600 {
            return error(
                400,
                21617,
                "The concatenated message body exceeds the 1600 character limit.",
            );
        }
        let sid = self.next_sid("SM");
        let message = json!({
            "sid": sid,
            "account_sid": self.sid,
            "to": to,
            "from": from,
            "messaging_service_sid": service,
            "body": body,
            "status": if service.is_some() { "accepted" } else { "queued" },
            "num_segments": body.chars().count().div_ceil(153).to_string(),
            "direction": "outbound-api",
            "api_version": "2010-04-01",
            "status_callback": form["StatusCallback"],
            "validity_period": form["ValidityPeriod"],
            "uri": format!("/2010-04-01/Accounts/{}/Messages/{sid}.json", self.sid),
        });
        self.messages.push(message.clone());
        (StatusCode::CREATED, message)
    }

    fn create_call(&mut self, form: &Value, to: &str) -> (StatusCode, Value) {
        let from = form["From"].as_str().unwrap_or_default();
        if !self.numbers.contains(from) {
            return error(
                400,
                21210,
                &format!("The source phone number provided, {from}, is not yet verified for your account."),
            );
        }
        let twiml = match (form["Twiml"].as_str(), form["Url"].as_str()) {
            (Some(twiml), _) => twiml,
            (None, Some(_)) => "",
            (None, None) => return error(400, 21205, "Url or Twiml is required."),
        };
        if twiml.chars().count() > 4000 {
            return error(
                400,
                32018,
                "Twiml size exceeded maximum allowed value of 4000 characters",
            );
        }
        if !twiml.is_empty() {
            if let Err(problem) = check_twiml(twiml) {
                return error(400, 12100, &format!("Document parse failure: {problem}"));
            }
        }
        let sid = self.next_sid("CA");
        let call = json!({
            "sid": sid,
            "account_sid": self.sid,
            "to": to,
            "from": from,
            "status": "queued",
            "direction": "outbound-api",
            "api_version": "2010-04-01",
            "twiml": twiml,
            "status_callback": form["StatusCallback"],
            "uri": format!("/2010-04-01/Accounts/{}/Calls/{sid}.json", self.sid),
        });
        self.calls.push(call.clone());
        (StatusCode::CREATED, call)
    }
}

/// The TwiML verbs (and their nouns) a call from Herald may use.
const VERBS: &[&str] = &["Response", "Say", "Gather", "Pause", "Hangup"];

/// Whether `twiml` is well-formed XML of Herald's verbs with text escaped, as Twilio parses it.
fn check_twiml(twiml: &str) -> Result<(), String> {
    let mut open: Vec<String> = Vec::new();
    let mut rest = twiml.trim_start_matches("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    if !rest.trim_start().starts_with("<Response") {
        return Err("the document is not a <Response>".into());
    }
    while let Some(at) = rest.find(['<', '&']) {
        let tail = &rest[at..];
        if open.is_empty() && !rest[..at].trim().is_empty() {
            return Err("text outside <Response>".into());
        }
        if let Some(entity) = tail.strip_prefix('&') {
            let known = ["amp;", "lt;", "gt;", "quot;", "apos;"]
                .iter()
                .any(|name| entity.starts_with(name));
            if !known {
                return Err("an unescaped '&'".into());
            }
            rest = &tail[1..];
            continue;
        }
        let end = tail.find('>').ok_or("an unclosed tag")?;
        let tag = &tail[1..end];
        rest = &tail[end + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            match open.pop() {
                Some(opened) if opened == name.trim() => continue,
                _ => return Err(format!("</{name}> closes nothing open")),
            }
        }
        let self_closing = tag.ends_with('/');
        let tag = tag.trim_end_matches('/');
        let name = tag.split_whitespace().next().unwrap_or_default();
        if !VERBS.contains(&name) {
            return Err(format!("<{name}> is not a verb Herald uses"));
        }
        let attributes = &tag[name.len()..];
        if attributes.contains('<') || attributes.matches('"').count() % 2 != 0 {
            return Err(format!("<{name}> has a malformed attribute"));
        }
        if !self_closing {
            open.push(name.to_owned());
        }
    }
    if !open.is_empty() || !rest.trim().is_empty() {
        return Err("the document ends inside an element".into());
    }
    Ok(())
}

// === the conformance suite's view ===

/// The account, token and numbers of the simulated Twilio (not real ones).
const SIMULATED_ACCOUNT: &str = "AC5e0a1bb0c0ffee00d15ea5e0000000aa";
const SIMULATED_TOKEN: &str = "simulated-twilio-auth-token-7d1f";
pub const SIMULATED_NUMBER: &str = "+15005550006";
const SIMULATED_PERSON: &str = "+447700900123";

impl Simulation for super::Twilio {
    fn start(&self, addr: std::net::SocketAddr) -> SimulatorFuture<'_> {
        Box::pin(async move {
            let twilio = FakeTwilio::start(addr, SIMULATED_ACCOUNT, SIMULATED_TOKEN).await?;
            twilio.add_number(SIMULATED_NUMBER);
            Ok(Box::new(twilio) as Box<dyn RunningSimulator>)
        })
    }
}

impl RunningSimulator for FakeTwilio {
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
        format!(
            "account_sid = \"{SIMULATED_ACCOUNT}\", auth_token = {secret}, channel = \"sms\", from = \"{SIMULATED_NUMBER}\", to = [\"{SIMULATED_PERSON}\"], api_url = \"{}\"",
            self.api_url()
        )
    }

    fn sample_notification(&self, notification_id: &str) -> Value {
        base_sample_notification(notification_id)
    }

    fn address(&self) -> String {
        self.api_url()
    }

    fn about(&self) -> String {
        "an account with one number texting the wedding's planner".to_owned()
    }

    fn describe_request(&self, request: &RecordedRequest) -> String {
        let to = request.body["To"].as_str().unwrap_or_default();
        match request.body["Body"].as_str() {
            Some(body) => format!("text to {to}: {body:.50}"),
            None if request.method == "POST" => format!("call to {to}"),
            None => "account check".to_owned(),
        }
    }

    fn hold_to_published_limits(&self) {
        // Twilio queues what a sender cannot send at once; nothing is refused.
    }

    fn outage(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            503,
            &[],
            json!({"code": 20500, "message": "An internal server error has occurred", "more_info": "https://www.twilio.com/docs/errors/20500", "status": 503}),
        )
    }

    fn credential_refused(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            401,
            &[],
            json!({"code": 20003, "message": "Authenticate", "more_info": "https://www.twilio.com/docs/errors/20003", "status": 401}),
        )
    }

    fn rate_limited(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            429,
            &[("retry-after", "1")],
            json!({"code": 20429, "message": "Too Many Requests", "more_info": "https://www.twilio.com/docs/errors/20429", "status": 429}),
        )
    }

    fn validation_error(&self) -> (ScriptedResponse, &'static str) {
        (
            ScriptedResponse::json(
                400,
                &[],
                json!({"code": 21211, "message": "Invalid 'To' Phone Number: +4477009", "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400}),
            ),
            "Invalid 'To' Phone Number",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twiml_is_parsed_as_twilio_parses_it() {
        assert_eq!(
            check_twiml("<Response><Gather numDigits=\"1\" action=\"https://h/x?n=1&amp;y=2\"><Say language=\"en-GB\">Tom &amp; Jo</Say></Gather><Pause length=\"1\"/></Response>"),
            Ok(())
        );
        for (bad, problem) in [
            ("<Response><Say>Tom & Jo</Say></Response>", "unescaped"),
            ("<Response><Say>hi</Response>", "closes nothing"),
            ("<Response><Dial>+1</Dial></Response>", "not a verb"),
            ("<Response><Say>hi</Say>", "ends inside"),
            ("Say hi", "not a <Response>"),
        ] {
            let err = check_twiml(bad).unwrap_err();
            assert!(err.contains(problem), "{bad}: {err}");
        }
    }
}
