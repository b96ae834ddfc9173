//! A local SMTP server that plays the studio's mail server for tests, `herald demo` and
//! `herald sandbox`, and keeps every message it takes: greeting, EHLO (`AUTH PLAIN`), `AUTH
//! PLAIN` checked against its accounts (535 5.7.8 otherwise), `MAIL`, `RCPT` checked against its
//! mailboxes (550 5.1.1 for an unknown one), `DATA` read to the lone dot, dot-unstuffed, and the
//! message parsed (headers, encoded subject, the plain and HTML parts decoded from
//! quoted-printable or base64) into [`SmtpSink::messages`].
//!
//! It speaks plain SMTP, so it takes connections from this machine only (`tls = "none"`). Faults
//! come from the same script every simulator takes (on an HTTP control port, [`SmtpSink::control_url`])
//! and are read as SMTP replies: a scripted 421 at the greeting, 535 at sign-in, 451 4.7.x
//! (throttling) or 550 at the end of the message; an HTTP-style status is mapped (429 to 451
//! 4.7.1, 401 and 403 to 535, other 5xx to 421, other 4xx to 550). Once held to limits it takes
//! 30 messages a minute, Exchange Online's per-mailbox sending limit, and answers
//! `451 4.7.500 Server busy` past it.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::sandbox::{Faults, RecordedRequest, Recorder, ScriptedResponse, Server};
use crate::vendors::{base_sample_notification, RunningSimulator};

const MINUTE_LIMIT: usize = 30;
const LONGEST_MESSAGE: usize = 10 * 1024 * 1024;

/// The mail server's state: accounts, mailboxes, what it took.
#[derive(Default)]
struct Mailroom {
    accounts: BTreeMap<String, String>,
    mailboxes: Vec<String>,
    messages: Vec<Value>,
    recent: VecDeque<Instant>,
    held_to_limits: bool,
    next_queue_id: u64,
}

pub struct SmtpSink {
    addr: SocketAddr,
    control: Server,
    pub recorder: Recorder,
    pub faults: Faults,
    state: Arc<Mutex<Mailroom>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// An SMTP reply a fault stands for: its code and text, and where in the session it is given.
#[derive(Debug, Clone, PartialEq)]
struct FaultReply {
    code: u16,
    text: String,
}

impl FaultReply {
    fn from_script(scripted: &ScriptedResponse) -> Self {
        let said = scripted.body["reply"].as_str().map(str::to_owned);
        let (code, default) = match scripted.status {
            code @ (421 | 450 | 451 | 452 | 454 | 530 | 535 | 550 | 551 | 552 | 553 | 554) => {
                (code, "Requested action not taken")
            }
            429 => (451, "4.7.1 Too many messages, try again later"),
            401 | 403 => (535, "5.7.8 Authentication credentials invalid"),
            500..=599 => (
                421,
                "4.3.2 Service not available, closing transmission channel",
            ),
            _ => (550, "5.7.1 Message refused"),
        };
        Self {
            code,
            text: said.unwrap_or_else(|| default.to_owned()),
        }
    }
}

impl SmtpSink {
    /// Listens for SMTP on `addr` (port 0 picks one) and for fault scripts on another port.
    pub async fn start(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (recorder, faults) = (Recorder::default(), Faults::default());
        let control = Server::start(
            axum::Router::new(),
            SocketAddr::new(addr.ip(), 0),
            faults.clone(),
        )
        .await?;
        let state = Arc::new(Mutex::new(Mailroom {
            next_queue_id: 0x4F3A_0001,
            ..Mailroom::default()
        }));
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let session = Session {
            state: state.clone(),
            recorder: recorder.clone(),
            faults: faults.clone(),
        };
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let session = session.clone();
                        tokio::spawn(async move {
                            if let Err(err) = session.serve(stream).await {
                                tracing::debug!(error = %err, "smtp sink session ended");
                            }
                        });
                    }
                }
            }
        });
        Ok(Self {
            addr,
            control,
            recorder,
            faults,
            state,
            _stop: stop,
        })
    }

    /// The SMTP server's host and port.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where fault scripts are posted (`/_herald/faults` on the control port).
    pub fn control_url(&self) -> String {
        format!("{}{}", self.control.url(), crate::sandbox::FAULTS_PATH)
    }

    /// An account that may sign in.
    pub fn add_account(&self, username: &str, password: &str) {
        self.lock()
            .accounts
            .insert(username.to_owned(), password.to_owned());
    }

    /// A mailbox the server delivers to; any other recipient is unknown.
    pub fn add_mailbox(&self, address: &str) {
        self.lock().mailboxes.push(address.to_lowercase());
    }

    /// Every message taken, oldest first: `from`, `to`, `subject`, `messageId`, `headers`,
    /// `text`, `html`.
    pub fn messages(&self) -> Vec<Value> {
        self.lock().messages.clone()
    }

    pub fn hold_to_limits(&self) {
        self.lock().held_to_limits = true;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Mailroom> {
        self.state.lock().expect("smtp sink lock")
    }
}

#[derive(Clone)]
struct Session {
    state: Arc<Mutex<Mailroom>>,
    recorder: Recorder,
    faults: Faults,
}

impl Session {
    fn record(&self, body: Value, code: u16) {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        self.recorder
            .record("SMTP", "DATA", &HeaderMap::new(), body, status);
    }

    async fn serve(&self, stream: TcpStream) -> std::io::Result<()> {
        let scripted = self.faults.take().await;
        if scripted.as_ref().is_some_and(|s| s.drop_connection) {
            return Ok(());
        }
        let fault = scripted.as_ref().map(FaultReply::from_script);
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read);
        if let Some(fault) = fault.as_ref().filter(|f| f.code == 421) {
            self.record(json!({"refused": fault.text}), fault.code);
            write
                .write_all(format!("421 {}\r\n", fault.text).as_bytes())
                .await?;
            return Ok(());
        }
        write
            .write_all(b"220 sink.herald.test ESMTP ready\r\n")
            .await?;
        let mut from = String::new();
        let mut recipients: Vec<String> = Vec::new();
        let mut line = String::new();
        loop {
            line.clear();
            if lines.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let command = line.trim_end().to_owned();
            let upper = command.to_ascii_uppercase();
            let reply = if upper.starts_with("EHLO") {
                "250-sink.herald.test\r\n250-AUTH PLAIN\r\n250-SIZE 10485760\r\n250 ENHANCEDSTATUSCODES".to_owned()
            } else if upper.starts_with("HELO") {
                "250 sink.herald.test".to_owned()
            } else if upper.starts_with("AUTH PLAIN") {
                let given = command.get(10..).unwrap_or_default().trim().to_owned();
                let given = if given.is_empty() {
                    write.write_all(b"334 \r\n").await?;
                    line.clear();
                    lines.read_line(&mut line).await?;
                    line.trim().to_owned()
                } else {
                    given
                };
                if let Some(fault) = fault.as_ref().filter(|f| f.code == 535) {
                    self.record(json!({"refused": fault.text}), fault.code);
                    format!("535 {}", fault.text)
                } else if self.signs_in(&given) {
                    "235 2.7.0 Authentication successful".to_owned()
                } else {
                    self.record(
                        json!({"refused": "5.7.8 Authentication credentials invalid"}),
                        535,
                    );
                    "535 5.7.8 Authentication credentials invalid".to_owned()
                }
            } else if upper.starts_with("MAIL FROM:") {
                from = address_of(&command[10..]);
                recipients.clear();
                "250 2.1.0 Ok".to_owned()
            } else if upper.starts_with("RCPT TO:") {
                let to = address_of(&command[8..]);
                let known = self
                    .state
                    .lock()
                    .expect("smtp sink lock")
                    .mailboxes
                    .contains(&to.to_lowercase());
                if known {
                    recipients.push(to);
                    "250 2.1.5 Ok".to_owned()
                } else {
                    self.record(
                        json!({"from": from, "to": [to], "refused": "5.1.1 User unknown"}),
                        550,
                    );
                    format!("550 5.1.1 <{to}>: Recipient address rejected: User unknown")
                }
            } else if upper == "DATA" {
                if recipients.is_empty() {
                    "554 5.5.1 No valid recipients".to_owned()
                } else {
                    write
                        .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                        .await?;
                    let raw = read_data(&mut lines).await?;
                    self.take_message(&from, &recipients, &raw, fault.as_ref())
                }
            } else if upper == "RSET" {
                from.clear();
                recipients.clear();
                "250 2.0.0 Ok".to_owned()
            } else if upper == "NOOP" {
                "250 2.0.0 Ok".to_owned()
            } else if upper == "QUIT" {
                write.write_all(b"221 2.0.0 Bye\r\n").await?;
                return Ok(());
            } else {
                "502 5.5.2 Command not recognized".to_owned()
            };
            write.write_all(format!("{reply}\r\n").as_bytes()).await?;
        }
    }

    fn signs_in(&self, given: &str) -> bool {
        let Ok(decoded) = BASE64.decode(given) else {
            return false;
        };
        let parts: Vec<&[u8]> = decoded.split(|b| *b == 0).collect();
        let [_, user, password] = parts.as_slice() else {
            return false;
        };
        let (user, password) = (
            String::from_utf8_lossy(user),
            String::from_utf8_lossy(password),
        );
        self.state
            .lock()
            .expect("smtp sink lock")
            .accounts
            .get(user.as_ref())
            .is_some_and(|expected| *expected == password)
    }

    /// The reply to a message's end: a scripted refusal, the throttle, or the message kept.
    fn take_message(
        &self,
        from: &str,
        recipients: &[String],
        raw: &str,
        fault: Option<&FaultReply>,
    ) -> String {
        let mut message = parse_message(raw);
        message["from"] = json!(from);
        message["to"] = json!(recipients);
        if let Some(fault) = fault.filter(|f| f.code != 535) {
            self.record(message, fault.code);
            return format!("{} {}", fault.code, fault.text);
        }
        let mut room = self.state.lock().expect("smtp sink lock");
        let now = Instant::now();
        while room
            .recent
            .front()
            .is_some_and(|at| now.duration_since(*at) >= Duration::from_secs(60))
        {
            room.recent.pop_front();
        }
        if room.held_to_limits && room.recent.len() >= MINUTE_LIMIT {
            drop(room);
            self.record(message, 451);
            return "451 4.7.500 Server busy. Please try again later.".to_owned();
        }
        room.recent.push_back(now);
        let queue_id = room.next_queue_id;
        room.next_queue_id += 1;
        room.messages.push(message.clone());
        drop(room);
        self.record(message, 250);
        format!("250 2.0.0 Ok: queued as {queue_id:X}")
    }
}

/// The address inside `<...>` of a MAIL or RCPT argument.
fn address_of(argument: &str) -> String {
    let argument = argument.trim();
    match (argument.find('<'), argument.find('>')) {
        (Some(start), Some(end)) if start < end => argument[start + 1..end].to_owned(),
        _ => argument
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned(),
    }
}

/// The message's lines up to the lone dot, dot-unstuffed.
async fn read_data<R: tokio::io::AsyncBufRead + Unpin>(lines: &mut R) -> std::io::Result<String> {
    let mut raw = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 || raw.len() > LONGEST_MESSAGE {
            return Ok(raw);
        }
        let content = line.trim_end_matches(['\r', '\n']);
        if content == "." {
            return Ok(raw);
        }
        raw.push_str(content.strip_prefix('.').unwrap_or(content));
        raw.push_str("\r\n");
    }
}

/// A message's headers (unfolded, names lowercased) and its body.
fn split_headers(raw: &str) -> (BTreeMap<String, String>, &str) {
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
    let mut headers = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = current.as_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = current.take() {
            headers.insert(name, value);
        }
        if let Some((name, value)) = line.split_once(':') {
            current = Some((name.trim().to_lowercase(), value.trim().to_owned()));
        }
    }
    if let Some((name, value)) = current {
        headers.insert(name, value);
    }
    (headers, body)
}

/// The message as the tests read it: headers, the decoded subject and the decoded parts.
fn parse_message(raw: &str) -> Value {
    let (headers, body) = split_headers(raw);
    let mut parts = BTreeMap::new();
    collect_parts(&headers, body, &mut parts);
    json!({
        "subject": headers.get("subject").map(|subject| decode_words(subject)),
        "messageId": headers.get("message-id"),
        "headers": headers,
        "text": parts.get("text/plain"),
        "html": parts.get("text/html"),
    })
}

/// The decoded text of each leaf part, by content type.
fn collect_parts(
    headers: &BTreeMap<String, String>,
    body: &str,
    parts: &mut BTreeMap<String, String>,
) {
    let content_type = headers
        .get("content-type")
        .map_or("text/plain", String::as_str);
    let kind = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_lowercase();
    if kind.starts_with("multipart/") {
        let Some(boundary) = content_type.split(';').find_map(|parameter| {
            parameter
                .trim()
                .strip_prefix("boundary=")
                .map(|value| value.trim_matches('"').to_owned())
        }) else {
            return;
        };
        let delimiter = format!("--{boundary}");
        for section in body.split(&delimiter).skip(1) {
            if section.starts_with("--") {
                break;
            }
            let section = section.trim_start_matches("\r\n");
            let (part_headers, part_body) = split_headers(section);
            // The line break before a delimiter belongs to the delimiter.
            collect_parts(
                &part_headers,
                part_body.strip_suffix("\r\n").unwrap_or(part_body),
                parts,
            );
        }
        return;
    }
    let encoding = headers
        .get("content-transfer-encoding")
        .map(|value| value.to_lowercase())
        .unwrap_or_default();
    let decoded = match encoding.as_str() {
        "base64" => BASE64
            .decode(body.split_whitespace().collect::<String>())
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default(),
        "quoted-printable" => decode_quoted_printable(body),
        _ => body.to_owned(),
    };
    parts.insert(kind, decoded.replace("\r\n", "\n"));
}

fn decode_quoted_printable(text: &str) -> String {
    let text = text.replace("=\r\n", "");
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'=' && index + 2 < bytes.len() {
            if let Ok(byte) = u8::from_str_radix(&text[index + 1..(index + 3).min(text.len())], 16)
            {
                out.push(byte);
                index += 3;
                continue;
            }
        }
        out.push(bytes[index]);
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A header with RFC 2047 encoded words (`=?utf-8?b?...?=`, `=?utf-8?q?...?=`) decoded.
fn decode_words(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    let mut last_was_word = false;
    while let Some(start) = rest.find("=?") {
        let between = &rest[..start];
        if !(last_was_word && between.trim().is_empty()) {
            out.push_str(between);
        }
        let word = &rest[start + 2..];
        let parts: Vec<&str> = word.splitn(3, '?').collect();
        let (Some(encoding), Some(tail)) = (parts.get(1), parts.get(2)) else {
            out.push_str(&rest[start..]);
            return out;
        };
        let Some(end) = tail.find("?=") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let encoded = &tail[..end];
        let decoded = if encoding.eq_ignore_ascii_case("b") {
            BASE64
                .decode(encoded)
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                .unwrap_or_default()
        } else {
            decode_quoted_printable(&encoded.replace('_', " "))
        };
        out.push_str(&decoded);
        rest = &tail[end + 2..];
        last_was_word = true;
    }
    out.push_str(rest);
    out
}

// === the conformance suite's view ===

/// The account and inbox of the simulated mail server (not real ones).
pub const SIMULATED_ACCOUNT: &str = "desk@studio.example";
pub const SIMULATED_PASSWORD: &str = "simulated-smtp-password-9d2e";
pub const SIMULATED_INBOX: &str = "team@studio.example";

impl SmtpSink {
    /// Starts a simulated mail server with the conformance suite's account and inbox.
    pub async fn simulated(addr: SocketAddr) -> std::io::Result<Box<dyn RunningSimulator>> {
        let sink = SmtpSink::start(addr).await?;
        sink.add_account(SIMULATED_ACCOUNT, SIMULATED_PASSWORD);
        sink.add_mailbox(SIMULATED_INBOX);
        Ok(Box::new(sink))
    }
}

impl RunningSimulator for SmtpSink {
    fn faults(&self) -> &Faults {
        &self.faults
    }

    fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    fn credential(&self) -> String {
        SIMULATED_PASSWORD.to_owned()
    }

    fn settings(&self, secret: &str) -> String {
        format!(
            "smtp_host = \"{}\", smtp_port = {}, tls = \"none\", username = \"{SIMULATED_ACCOUNT}\", password = {secret}, from = \"Wedding desk <{SIMULATED_ACCOUNT}>\", to = [\"{SIMULATED_INBOX}\"], throttle_wait = \"1s\"",
            self.addr.ip(),
            self.addr.port()
        )
    }

    fn sample_notification(&self, notification_id: &str) -> Value {
        base_sample_notification(notification_id)
    }

    fn address(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    fn about(&self) -> String {
        format!(
            "a mail server keeping every message (plain SMTP; faults at {})",
            self.control_url()
        )
    }

    fn describe_request(&self, request: &RecordedRequest) -> String {
        request.body["subject"]
            .as_str()
            .map(|subject| format!("{subject:.60}"))
            .unwrap_or_default()
    }

    fn hold_to_published_limits(&self) {
        self.hold_to_limits();
    }

    fn outage(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            421,
            &[],
            json!({"reply": "4.3.2 Service not available, closing transmission channel"}),
        )
    }

    fn credential_refused(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            535,
            &[],
            json!({"reply": "5.7.8 Authentication credentials invalid"}),
        )
    }

    fn rate_limited(&self) -> ScriptedResponse {
        ScriptedResponse::json(
            451,
            &[],
            json!({"reply": "4.7.500 Server busy. Please try again later."}),
        )
    }

    fn validation_error(&self) -> (ScriptedResponse, &'static str) {
        (
            ScriptedResponse::json(
                550,
                &[],
                json!({"reply": "5.7.1 Message rejected as spam by Content Filtering"}),
            ),
            "Message rejected as spam",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_subjects_and_parts_are_decoded() {
        assert_eq!(decode_words("=?utf-8?b?Q2Fmw6k=?= ok"), "Café ok");
        assert_eq!(
            decode_words("=?utf-8?q?Caf=C3=A9_au?= =?utf-8?q?_lait?="),
            "Café au lait"
        );
        assert_eq!(decode_quoted_printable("a=3Db =\r\nc=C3=A9"), "a=b cé");
        let raw = "Subject: Hi\r\nContent-Type: multipart/alternative;\r\n boundary=\"XYZ\"\r\n\r\n--XYZ\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\nplain\r\n--XYZ\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\nPGI+aHRtbDwvYj4=\r\n--XYZ--\r\n";
        let message = parse_message(raw);
        assert_eq!(message["subject"], "Hi");
        assert_eq!(message["text"], "plain");
        assert_eq!(message["html"], "<b>html</b>");
    }

    #[test]
    fn faults_read_as_smtp_replies() {
        let reply = |status: u16| {
            FaultReply::from_script(&ScriptedResponse::json(status, &[], Value::Null))
        };
        assert_eq!(reply(429).code, 451);
        assert_eq!(reply(401).code, 535);
        assert_eq!(reply(503).code, 421);
        assert_eq!(reply(400).code, 550);
        assert_eq!(reply(452).code, 452);
        let said = FaultReply::from_script(&ScriptedResponse::json(
            550,
            &[],
            json!({"reply": "5.1.1 User unknown"}),
        ));
        assert_eq!(said.text, "5.1.1 User unknown");
    }
}
