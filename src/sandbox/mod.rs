//! Vendor simulators: local HTTP servers that behave like the vendors Herald talks to (their
//! paths, auth checks, error bodies and rate limits), record every request, and take scripted
//! faults. The test suite, the benches, `herald demo` and `herald sandbox` all use them.
//!
//! They are not mocks of Herald: Herald's real connectors talk to them over real HTTP.

pub mod contract;
mod faults;
pub mod hubspot;
mod slack;
pub mod tave;
mod webhook;

pub use faults::{Faults, RecordedRequest, Recorder};
pub use hubspot::FakeHubSpot;
pub use slack::FakeSlack;
pub use tave::FakeTave;
pub use webhook::WebhookReceiver;

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// A simulator's HTTP server; stops when dropped.
pub struct Server {
    pub addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

impl Server {
    /// Serves `app` on `addr` (port 0 picks a free one).
    pub async fn start(app: axum::Router, addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            if let Err(err) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(error = %err, "simulator server failed");
            }
        });
        Ok(Self { addr, _stop: stop })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// The loopback address with a free port, for simulators in tests.
pub fn any_local_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// The bot token the sandbox's Slack accepts (not a real credential).
pub const SANDBOX_SLACK_TOKEN: &str = "xoxb-sandbox-0000000000-herald";
/// The signing secret the sandbox's webhook receiver verifies with (not a real credential).
pub const SANDBOX_WEBHOOK_SECRET: &str = "whsec_c2FuZGJveC1zZWNyZXQtZm9yLWhlcmFsZC10cmlhbHM=";

/// `herald sandbox`: the simulators on fixed local ports (`port_base + 1` Slack,
/// `port_base + 2` webhook receiver), a configuration to paste, and a line for every request
/// they receive, until `shutdown` resolves.
pub async fn serve_sandbox(
    port_base: u16,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let slack = FakeSlack::start(
        SocketAddr::from(([127, 0, 0, 1], port_base + 1)),
        SANDBOX_SLACK_TOKEN,
        &["weddings", "wedding-day", "studio-ops"],
    )
    .await?;
    let webhook = WebhookReceiver::start(
        SocketAddr::from(([127, 0, 0, 1], port_base + 2)),
        SANDBOX_WEBHOOK_SECRET,
    )
    .await?;
    println!(
        r##"Herald sandbox: vendor simulators on this machine (no real credentials involved).

  Slack      {slack}  channels #weddings #wedding-day #studio-ops, bot token {token}
  Webhook    {hook}  verifies Standard Webhooks signatures with {secret}

Put the credentials where the configuration points, e.g.
  export SANDBOX_SLACK_TOKEN={token} SANDBOX_WEBHOOK_SECRET={secret}
and add to your configuration:

[security]
allow_private_destinations = true

[[integrations]]
id = "sandbox-slack"
organization = "my-studio"
kind = "slack"
settings = {{ base_url = "{slack}", channel = "#weddings", token = {{ env = "SANDBOX_SLACK_TOKEN" }} }}

[[integrations]]
id = "sandbox-webhook"
organization = "my-studio"
kind = "webhook"
settings = {{ url = "{hook}", secret = {{ env = "SANDBOX_WEBHOOK_SECRET" }} }}

[[routes]]
organization = "my-studio"
name = "everything to the sandbox"
targets = ["sandbox-slack", "sandbox-webhook"]

Requests appear below as they arrive. Ctrl-C stops the sandbox."##,
        slack = slack.base_url(),
        hook = webhook.url(),
        token = SANDBOX_SLACK_TOKEN,
        secret = SANDBOX_WEBHOOK_SECRET,
    );
    let mut shown = (0, 0);
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(200));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            _ = tick.tick() => {}
        }
        let slack_requests = slack.recorder.all();
        for request in &slack_requests[shown.0..] {
            println!(
                "slack   {} {} -> {}: {}",
                request.method,
                request.path,
                request.status,
                request.body["text"].as_str().unwrap_or("")
            );
        }
        let hook_requests = webhook.recorder.all();
        for request in &hook_requests[shown.1..] {
            let id = request.body["data"]["notificationId"]
                .as_str()
                .unwrap_or("?");
            println!(
                "webhook {} {} -> {}: {} ({id})",
                request.method,
                request.path,
                request.status,
                request.body["type"].as_str().unwrap_or("?")
            );
        }
        shown = (slack_requests.len(), hook_requests.len());
    }
}
