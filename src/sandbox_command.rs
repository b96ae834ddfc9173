//! `herald sandbox`: every vendor's simulator on fixed local ports, the configuration that runs
//! Herald against them as it is, and an example notification to send.
//!
//! Above the vendors in the dependency order (it starts their simulators); the simulators share
//! what `sandbox` holds.

use std::net::SocketAddr;

use crate::sandbox::{RecordedRequest, Recorder};

use crate::vendors::hubspot::FakeHubSpot;
use crate::vendors::slack::FakeSlack;
use crate::vendors::tave::FakeTave;
use crate::vendors::webhook::WebhookReceiver;

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

/// Where a configuration the sandbox describes reads its credentials from.
enum SecretsAt<'a> {
    /// Environment variables the user exports (the printed configuration).
    Environment,
    /// Files written into this folder (the configuration written with `--write-config`).
    Folder(&'a std::path::Path),
}

impl SecretsAt<'_> {
    /// The TOML reference to one secret, named like `SANDBOX_SLACK_TOKEN`.
    fn reference(&self, name: &str) -> String {
        match self {
            SecretsAt::Environment => format!("{{ env = \"{name}\" }}"),
            SecretsAt::Folder(dir) => format!(
                "{{ file = \"{}\" }}",
                dir.join(name.to_lowercase()).display()
            ),
        }
    }
}

/// The sandbox's credentials by the name they are kept under.
const SANDBOX_SECRETS: [(&str, &str); 4] = [
    ("SANDBOX_SLACK_TOKEN", SANDBOX_SLACK_TOKEN),
    ("SANDBOX_WEBHOOK_SECRET", SANDBOX_WEBHOOK_SECRET),
    ("SANDBOX_HUBSPOT_TOKEN", SANDBOX_HUBSPOT_TOKEN),
    ("SANDBOX_TAVE_API_KEY", SANDBOX_TAVE_API_KEY),
];

/// A complete configuration for Herald against the sandbox: it runs as it is. Every
/// notification goes to Slack and the webhook; HubSpot only takes notifications about people
/// (it syncs contacts) and Tave only those naming a job (`metadata.taveJobId`), so a minimal
/// notification is delivered rather than refused by the CRM and the booking system.
fn sandbox_configuration(
    urls: [&str; 4],
    data_dir: &std::path::Path,
    secrets: &SecretsAt<'_>,
) -> String {
    let [slack, hook, hubspot, tave] = urls;
    let secret = |name: &str| secrets.reference(name);
    format!(
        r##"# Herald against `herald sandbox`: runs as it is (`herald serve --config THIS_FILE`).
[server]
listen = "127.0.0.1:8470"

[store]
kind = "sqlite"
data_dir = "{data}"

[security]
# The simulators listen on this machine.
allow_private_destinations = true

[[organizations]]
id = "my-studio"
name = "My studio (sandbox)"

[[integrations]]
id = "sandbox-slack"
organization = "my-studio"
kind = "slack"
settings = {{ base_url = "{slack}", channel = "#weddings", token = {slack_token} }}

[[integrations]]
id = "sandbox-webhook"
organization = "my-studio"
kind = "webhook"
settings = {{ url = "{hook}", secret = {webhook_secret} }}

[[integrations]]
id = "sandbox-hubspot"
organization = "my-studio"
kind = "hubspot"
settings = {{ base_url = "{hubspot}", token = {hubspot_token} }}

[[integrations]]
id = "sandbox-tave"
organization = "my-studio"
kind = "tave"
settings = {{ base_url = "{tave}", api_key = {tave_key} }}

[[routes]]
organization = "my-studio"
name = "everything to chat and the webhook"
targets = ["sandbox-slack", "sandbox-webhook"]

[[routes]]
organization = "my-studio"
name = "notifications about people to the CRM"
when = "has(notification.contacts)"
targets = ["sandbox-hubspot"]

[[routes]]
organization = "my-studio"
name = "notifications naming a Tave job to the booking system"
when = "has(metadata.taveJobId)"
targets = ["sandbox-tave"]
"##,
        data = data_dir.display(),
        slack_token = secret("SANDBOX_SLACK_TOKEN"),
        webhook_secret = secret("SANDBOX_WEBHOOK_SECRET"),
        hubspot_token = secret("SANDBOX_HUBSPOT_TOKEN"),
        tave_key = secret("SANDBOX_TAVE_API_KEY"),
    )
}

/// A notification that reaches all four simulators through [`sandbox_configuration`]'s routes.
pub fn sandbox_example_notification() -> serde_json::Value {
    serde_json::json!({
        "notificationId": "sandbox-1",
        "type": "timeline_change",
        "priority": "high",
        "title": "Ceremony moved",
        "message": "The ceremony now starts at 15:30",
        "weddingContext": {"weddingId": "w-sandbox", "weddingDate": "2027-06-12", "venue": "Kew Gardens"},
        "contacts": [{"name": "Sam", "email": "sam@example.com"}],
        "metadata": {"taveJobId": SANDBOX_TAVE_JOB}
    })
}

/// Writes the configuration (credentials in a folder beside it, readable by the owner only)
/// and the example notification beside it; answers the example's path.
fn write_sandbox_files(
    config: &std::path::Path,
    urls: [&str; 4],
) -> std::io::Result<std::path::PathBuf> {
    let folder = config
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(folder)?;
    let folder = std::fs::canonicalize(folder)?;
    let secrets = folder.join("sandbox-secrets");
    std::fs::create_dir_all(&secrets)?;
    for (name, value) in SANDBOX_SECRETS {
        let path = secrets.join(name.to_lowercase());
        std::fs::write(&path, value)?;
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    }
    let text = sandbox_configuration(
        urls,
        &folder.join("sandbox-data"),
        &SecretsAt::Folder(&secrets),
    );
    std::fs::write(config, text)?;
    let example = folder.join("sandbox-notification.json");
    std::fs::write(
        &example,
        serde_json::to_string_pretty(&sandbox_example_notification())?,
    )?;
    Ok(example)
}

/// `herald sandbox`: the simulators on fixed local ports (`port_base` + 1 Slack, + 2 webhook
/// receiver, + 3 HubSpot, + 4 Tave), a complete configuration for them (printed, or written
/// to `write_config` with its credentials and an example notification beside it), and a line
/// for every request they receive, until `shutdown` resolves.
pub async fn serve_sandbox(
    port_base: u16,
    write_config: Option<&std::path::Path>,
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
    let (slack_url, hook_url, hubspot_url, tave_url) = (
        slack.base_url(),
        webhook.url(),
        hubspot.base_url(),
        tave.base_url(),
    );
    let urls = [
        slack_url.as_str(),
        hook_url.as_str(),
        hubspot_url.as_str(),
        tave_url.as_str(),
    ];
    println!(
        "Herald sandbox: vendor simulators on this machine (no real credentials involved).\n\n  \
         Slack      {slack_url}  channels #weddings #wedding-day #studio-ops\n  \
         Webhook    {hook_url}  verifies Standard Webhooks signatures\n  \
         HubSpot    {hubspot_url}  private-app CRM\n  \
         Tave       {tave_url}  job {SANDBOX_TAVE_JOB} (name it in metadata.taveJobId)\n"
    );
    match write_config {
        Some(path) => {
            let example = write_sandbox_files(path, urls)?;
            println!(
                "Wrote {config}, a configuration that runs as it is (credentials beside it in \
                 sandbox-secrets/), and {example}. In another terminal:\n  \
                 herald keys create --organization my-studio --config {config}\n  \
                 herald serve --config {config}\n  \
                 herald send {example} --key <the key>\n",
                config = path.display(),
                example = example.display(),
            );
        }
        None => {
            let exports: Vec<String> = SANDBOX_SECRETS
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect();
            println!(
                "A complete configuration follows (or run `herald sandbox --write-config FILE`, \
                 which also writes the credentials and an example notification). It reads the \
                 credentials from the environment:\n  export {}\n\n{}\nAn example notification \
                 that reaches every simulator:\n{}\n",
                exports.join(" "),
                sandbox_configuration(
                    urls,
                    std::path::Path::new("sandbox-data"),
                    &SecretsAt::Environment
                ),
                sandbox_example_notification(),
            );
        }
    }
    println!("Requests appear below as they arrive. Ctrl-C stops the sandbox.");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_printed_configuration_is_a_complete_file() {
        let urls = [
            "http://127.0.0.1:9101/api",
            "http://127.0.0.1:9102/hooks",
            "http://127.0.0.1:9103",
            "http://127.0.0.1:9104/api/v2",
        ];
        let text = sandbox_configuration(
            urls,
            std::path::Path::new("sandbox-data"),
            &SecretsAt::Environment,
        );
        let config = crate::config::parse(&text, "printed sandbox configuration").unwrap();
        assert_eq!(config.integrations.len(), 4);
        assert_eq!(config.routes.len(), 3);
        assert!(config.allow_private_destinations);
        assert!(config.warnings().is_empty(), "{:?}", config.warnings());
    }
}
