//! One email per notification to the studio's inbox, through its SMTP server (lettre).
//!
//! - The message: the subject is the title (marked `[Emergency]` or `[High]` when it is), the
//!   body a plain-text and an HTML part (WedSync's text escaped in the HTML) with the wedding's
//!   date, couple and venue and the notification's links; its `Message-ID` is the delivery's, the
//!   same on every retry, so a mail client shows a message sent twice (a reply lost after the
//!   server took it) once.
//! - The connection: the host resolved and checked against the outbound policy before anything
//!   is sent, STARTTLS required by default (implicit TLS or, to this machine only, none), signed in
//!   with the configured account. A connection per message: nothing is held open between
//!   notifications.
//! - Replies: 535 (and 530, 534) is a refused credential, read again and tried once more; a
//!   transient 4.7.x reply is throttling (SMTP gives no wait: `throttle_wait`); other transient
//!   replies and lost connections are retried; permanent replies (550 5.1.1 unknown mailbox) are
//!   dead-lettered with the server's words.

use std::sync::Arc;
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::{json, Value};

use super::{SmtpSettings, TlsMode};
use crate::connectors::http::OutboundClient;
use crate::connectors::{
    engagement_unsupported, escape_html, CheckFuture, Connector, ConnectorError, ConnectorKit,
    Delivery, DeliveryFuture, Receipt,
};
use crate::secret::ReloadableSecret;
use crate::wedsync::{Priority, WeddingNotification};

pub struct SmtpConnector {
    kind: &'static str,
    host: String,
    port: u16,
    tls: TlsMode,
    username: Option<String>,
    password: Option<ReloadableSecret>,
    from: Mailbox,
    to: Vec<Mailbox>,
    reply_to: Option<Mailbox>,
    throttle_wait: Duration,
    installation_id: Arc<str>,
    client: OutboundClient,
    timeout: Duration,
}

fn mailbox(address: &str, field: &str) -> Result<Mailbox, ConnectorError> {
    address
        .parse()
        .map_err(|err| ConnectorError::Misconfigured(format!("{field}: {address:?}: {err}")))
}

impl SmtpConnector {
    pub fn new(
        kind: &'static str,
        settings: &SmtpSettings,
        kit: &ConnectorKit,
        timeout: Duration,
    ) -> Result<Self, ConnectorError> {
        let password = settings
            .password
            .as_ref()
            .map(|secret| ReloadableSecret::load(secret).map_err(ConnectorError::Misconfigured))
            .transpose()?;
        Ok(Self {
            kind,
            host: settings.smtp_host.trim().to_owned(),
            port: settings.port(),
            tls: settings.tls,
            username: settings.username.clone(),
            password,
            from: mailbox(&settings.from, "from")?,
            to: settings
                .to
                .iter()
                .map(|address| mailbox(address, "to"))
                .collect::<Result<_, _>>()?,
            reply_to: settings
                .reply_to
                .as_deref()
                .map(|address| mailbox(address, "reply_to"))
                .transpose()?,
            throttle_wait: settings.throttle_wait(),
            installation_id: kit.installation_id.clone(),
            client: kit.client.clone(),
            timeout,
        })
    }

    /// A transport to the server's checked address, secured as configured, signed in.
    async fn transport(&self) -> Result<AsyncSmtpTransport<Tokio1Executor>, ConnectorError> {
        let address = self.client.resolve_checked(&self.host, self.port).await?;
        let tls = || {
            TlsParameters::new(self.host.clone()).map_err(|err| {
                ConnectorError::Misconfigured(format!("TLS for {}: {err}", self.host))
            })
        };
        let tls = match self.tls {
            TlsMode::Starttls => Tls::Required(tls()?),
            TlsMode::Tls => Tls::Wrapper(tls()?),
            TlsMode::None => Tls::None,
        };
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(address.ip().to_string())
                .port(self.port)
                .tls(tls)
                .timeout(Some(self.timeout))
                .hello_name(ClientId::Domain(self.from.email.domain().to_owned()));
        if let (Some(username), Some(password)) = (&self.username, &self.password) {
            builder = builder.credentials(Credentials::new(
                username.clone(),
                password.get().expose().to_owned(),
            ));
        }
        Ok(builder.build())
    }

    /// The email a notification becomes; its Message-ID is the delivery's.
    fn message(&self, delivery: &Delivery) -> Result<Message, ConnectorError> {
        let notification = &delivery.notification;
        let subject = match notification.priority {
            Priority::Emergency => format!("[Emergency] {}", notification.title),
            Priority::High => format!("[High] {}", notification.title),
            Priority::Normal | Priority::Low => notification.title.clone(),
        };
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(subject)
            .message_id(Some(format!(
                "<herald.{}.{}@{}>",
                self.installation_id,
                delivery.delivery_id,
                self.from.email.domain()
            )));
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        if let Some(reply_to) = &self.reply_to {
            builder = builder.reply_to(reply_to.clone());
        }
        let (plain, html) = bodies(notification);
        builder
            .multipart(MultiPart::alternative_plain_html(plain, html))
            .map_err(|err| ConnectorError::Misconfigured(format!("cannot build the email: {err}")))
    }

    async fn send(&self, delivery: &Delivery) -> Result<Receipt, ConnectorError> {
        let message = self.message(delivery)?;
        let message_id = message
            .headers()
            .get_raw("Message-ID")
            .unwrap_or_default()
            .to_owned();
        let reply = self
            .transport()
            .await?
            .send(message)
            .await
            .map_err(|err| self.classify(&err))?;
        let said: Vec<&str> = reply.message().collect();
        Ok(Receipt {
            id: message_id.clone(),
            details: Some(json!({
                "messageId": message_id,
                "to": self.to.iter().map(|to| to.email.to_string()).collect::<Vec<_>>(),
                "serverReply": format!("{} {}", reply.code(), said.join(" ")),
            })),
        })
    }

    /// The server's greeting and EHLO, and the sign-in when one is configured: the seed's
    /// authenticateConnection, sending nothing.
    async fn check(&self) -> Result<Value, ConnectorError> {
        let connected = self
            .transport()
            .await?
            .test_connection()
            .await
            .map_err(|err| self.classify(&err))?;
        if !connected {
            return Err(ConnectorError::Unavailable(format!(
                "{}:{} did not answer as an SMTP server",
                self.host, self.port
            )));
        }
        Ok(json!({
            "server": self.host,
            "port": self.port,
            "tls": format!("{:?}", self.tls).to_lowercase(),
            "signedIn": self.username.is_some(),
        }))
    }

    /// An SMTP failure as Herald acts on it (the server's code and words kept).
    fn classify(&self, err: &lettre::transport::smtp::Error) -> ConnectorError {
        let said = err.to_string();
        let code = err.status().map(|code| code.to_string());
        match code.as_deref() {
            Some("530" | "534" | "535") => ConnectorError::Unauthorized(said),
            Some(_) if err.is_transient() && said.contains("4.7.") => ConnectorError::RateLimited {
                retry_after: Some(self.throttle_wait),
            },
            Some(_) if err.is_transient() => ConnectorError::Unavailable(said),
            Some(code) => ConnectorError::Rejected {
                code: code.to_owned(),
                message: said,
            },
            None if err.is_client() => ConnectorError::Misconfigured(said),
            None => ConnectorError::Unavailable(said),
        }
    }
}

/// The plain-text and HTML bodies of a notification's email.
fn bodies(notification: &WeddingNotification) -> (String, String) {
    let mut facts = Vec::new();
    if let Some(context) = &notification.wedding_context {
        facts.push(("Wedding", context.wedding_date.clone()));
        if let Some(couple) = &context.couple_names {
            facts.push(("Couple", couple.clone()));
        }
        if let Some(venue) = &context.venue {
            facts.push(("Venue", venue.clone()));
        }
    }
    let links: Vec<(&str, &str)> = notification
        .actions
        .iter()
        .filter_map(|action| {
            action
                .url
                .as_deref()
                .map(|url| (action.label.as_str(), url))
        })
        .collect();
    let footer = format!(
        "Sent by Herald for WedSync · {} · {}",
        notification.notification_type, notification.notification_id
    );
    let mut plain = format!("{}\n\n{}\n", notification.title, notification.message);
    for (name, value) in &facts {
        plain.push_str(&format!("\n{name}: {value}"));
    }
    for (label, url) in &links {
        plain.push_str(&format!("\n{label}: {url}"));
    }
    plain.push_str(&format!("\n\n-- \n{footer}\n"));
    let mut html = format!(
        "<h2>{}</h2>\n<p>{}</p>\n",
        escape_html(&notification.title),
        escape_html(&notification.message).replace('\n', "<br>")
    );
    if !facts.is_empty() {
        html.push_str("<table>\n");
        for (name, value) in &facts {
            html.push_str(&format!(
                "<tr><th align=\"left\">{name}</th><td>{}</td></tr>\n",
                escape_html(value)
            ));
        }
        html.push_str("</table>\n");
    }
    for (label, url) in &links {
        html.push_str(&format!(
            "<p><a href=\"{}\">{}</a></p>\n",
            escape_html(url).replace('"', "&quot;"),
            escape_html(label)
        ));
    }
    html.push_str(&format!("<p><small>{}</small></p>\n", escape_html(&footer)));
    (plain, html)
}

impl Connector for SmtpConnector {
    fn vendor(&self) -> &'static str {
        self.kind
    }

    fn deliver<'a>(&'a self, delivery: &'a Delivery) -> DeliveryFuture<'a> {
        Box::pin(self.send(delivery))
    }

    fn requests_per_delivery(&self, _: &WeddingNotification) -> u32 {
        1
    }

    fn engagement<'a>(&'a self, _: &'a Value) -> CheckFuture<'a> {
        Box::pin(async { Err(engagement_unsupported("email")) })
    }

    fn check_connection(&self) -> CheckFuture<'_> {
        Box::pin(self.check())
    }

    /// A changed password is a new value where the secret lives.
    fn refresh_credentials(&self) -> Result<(), ConnectorError> {
        match &self.password {
            Some(password) => password.reload().map_err(ConnectorError::Misconfigured),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wedsync_text_cannot_write_html() {
        let notification: WeddingNotification = serde_json::from_value(json!({
            "notificationId": "n-1", "type": "client_message", "priority": "normal",
            "title": "<b>Sam</b> & Alex", "message": "See <script>x</script>",
            "actions": [{"actionId": "a", "label": "Open \"it\"", "url": "https://x.example/?a=1&b=\"2\""}]
        }))
        .unwrap();
        let (plain, html) = bodies(&notification);
        assert!(plain.starts_with("<b>Sam</b> & Alex\n\nSee <script>x</script>\n"));
        assert!(
            html.contains("<h2>&lt;b&gt;Sam&lt;/b&gt; &amp; Alex</h2>"),
            "{html}"
        );
        assert!(
            html.contains("<p>See &lt;script&gt;x&lt;/script&gt;</p>"),
            "{html}"
        );
        assert!(
            html.contains("<a href=\"https://x.example/?a=1&amp;b=&quot;2&quot;\">Open \"it\"</a>"),
            "{html}"
        );
    }
}
