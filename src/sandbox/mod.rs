//! Vendor simulators: local HTTP servers that behave like the vendors Herald talks to (their
//! paths, auth checks, error bodies and rate limits), record every request, and take scripted
//! faults. The test suite, the benches, `herald demo` and `herald sandbox` all use them.
//!
//! They are not mocks of Herald: Herald's real connectors talk to them over real HTTP.

pub mod contract;
mod faults;
pub mod hubspot;
mod schema;
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
/// The private-app token the sandbox's HubSpot accepts (not a real credential).
pub const SANDBOX_HUBSPOT_TOKEN: &str = "pat-na1-sandbox0-0000-0000-0000-000000000000";
/// The API key the sandbox's Tave accepts (not a real credential).
pub const SANDBOX_TAVE_API_KEY: &str = "tave-sandbox-0000000000000000";
/// The Tave job the sandbox's studio has.
pub const SANDBOX_TAVE_JOB: &str = "J-SANDBOX-1";

/// `herald sandbox`: the simulators on fixed local ports (`port_base` + 1 Slack, + 2 webhook
/// receiver, + 3 HubSpot, + 4 Tave), a configuration to paste, and a line for every request
/// they receive, until `shutdown` resolves.
pub async fn serve_sandbox(
    port_base: u16,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let local = |offset: u16| SocketAddr::from(([127, 0, 0, 1], port_base + offset));
    let slack = FakeSlack::start(
        local(1),
        SANDBOX_SLACK_TOKEN,
        &["weddings", "wedding-day", "studio-ops"],
    )
    .await?;
    let webhook = WebhookReceiver::start(local(2), SANDBOX_WEBHOOK_SECRET).await?;
    let hubspot = FakeHubSpot::start(local(3), SANDBOX_HUBSPOT_TOKEN, 100).await?;
    let tave = FakeTave::start(local(4), SANDBOX_TAVE_API_KEY).await?;
    tave.add_job(
        SANDBOX_TAVE_JOB,
        serde_json::json!({"name": "Sandbox wedding"}),
    );
    println!(
        r##"Herald sandbox: vendor simulators on this machine (no real credentials involved).

  Slack      {slack}  channels #weddings #wedding-day #studio-ops, bot token {token}
  Webhook    {hook}  verifies Standard Webhooks signatures with {secret}
  HubSpot    {hubspot}  private-app token {hubspot_token}
  Tave       {tave}  API key {tave_key}, job {job} (name it in metadata.taveJobId)

Put the credentials where the configuration points, e.g.
  export SANDBOX_SLACK_TOKEN={token} SANDBOX_WEBHOOK_SECRET={secret}
  export SANDBOX_HUBSPOT_TOKEN={hubspot_token} SANDBOX_TAVE_API_KEY={tave_key}
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

[[integrations]]
id = "sandbox-hubspot"
organization = "my-studio"
kind = "hubspot"
settings = {{ base_url = "{hubspot}", token = {{ env = "SANDBOX_HUBSPOT_TOKEN" }} }}

[[integrations]]
id = "sandbox-tave"
organization = "my-studio"
kind = "tave"
settings = {{ base_url = "{tave}", api_key = {{ env = "SANDBOX_TAVE_API_KEY" }} }}

[[routes]]
organization = "my-studio"
name = "everything to the sandbox"
targets = ["sandbox-slack", "sandbox-webhook", "sandbox-hubspot", "sandbox-tave"]

Requests appear below as they arrive. Ctrl-C stops the sandbox."##,
        slack = slack.base_url(),
        hook = webhook.url(),
        hubspot = hubspot.base_url(),
        tave = tave.base_url(),
        token = SANDBOX_SLACK_TOKEN,
        secret = SANDBOX_WEBHOOK_SECRET,
        hubspot_token = SANDBOX_HUBSPOT_TOKEN,
        tave_key = SANDBOX_TAVE_API_KEY,
        job = SANDBOX_TAVE_JOB,
    );
    type Describe = fn(&RecordedRequest) -> String;
    let simulators: [(&str, &Recorder, Describe); 4] = [
        ("slack", &slack.recorder, |r| {
            r.body["text"].as_str().unwrap_or("").to_owned()
        }),
        ("webhook", &webhook.recorder, |r| {
            format!(
                "{} ({})",
                r.body["type"].as_str().unwrap_or("?"),
                r.body["data"]["notificationId"].as_str().unwrap_or("?")
            )
        }),
        ("hubspot", &hubspot.recorder, |r| {
            format!("{} inputs", r.body["inputs"].as_array().map_or(0, Vec::len))
        }),
        ("tave", &tave.recorder, |r| {
            r.body["jobId"]
                .as_str()
                .map(|job| format!("job {job}"))
                .unwrap_or_default()
        }),
    ];
    let mut shown = [0usize; 4];
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(200));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            _ = tick.tick() => {}
        }
        for ((name, recorder, describe), shown) in simulators.iter().zip(shown.iter_mut()) {
            let requests = recorder.all();
            for request in &requests[*shown..] {
                println!(
                    "{name:<7} {} {} -> {}: {}",
                    request.method,
                    request.path,
                    request.status,
                    describe(request)
                );
            }
            *shown = requests.len();
        }
    }
}
