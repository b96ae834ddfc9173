//! `herald sandbox`: every registered vendor's simulator on fixed local ports, the configuration
//! that runs Herald against them as it is, and an example notification that reaches them all.
//!
//! It reads the registry (`vendors::all()`): each vendor's simulator, the settings that reach it,
//! its sample notification and the notifications it can act on (`takes`, a route condition), so
//! a new vendor appears here by being registered.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::vendors::{self, RunningSimulator, Vendor};

/// A registered vendor's simulator, running for the sandbox.
struct Simulated {
    vendor: &'static dyn Vendor,
    simulator: Box<dyn RunningSimulator>,
}

impl Simulated {
    fn integration_id(&self) -> String {
        format!("sandbox-{}", self.vendor.kind())
    }

    /// The environment variable the printed configuration reads the credential from.
    fn credential_variable(&self) -> String {
        format!("SANDBOX_{}_CREDENTIAL", self.vendor.kind().to_uppercase())
    }
}

/// Where a configuration the sandbox describes reads its credentials from.
enum SecretsAt<'a> {
    /// Environment variables the user exports (the printed configuration).
    Environment,
    /// Files written into this folder (the configuration written with `--write-config`).
    Folder(&'a Path),
}

impl SecretsAt<'_> {
    /// The TOML reference to a vendor's credential.
    fn reference(&self, simulated: &Simulated) -> String {
        match self {
            SecretsAt::Environment => {
                format!("{{ env = \"{}\" }}", simulated.credential_variable())
            }
            SecretsAt::Folder(dir) => format!(
                "{{ file = \"{}\" }}",
                dir.join(simulated.vendor.kind()).display()
            ),
        }
    }
}

/// A complete configuration for Herald against the sandbox: it runs as it is. Each vendor has
/// a route of the notifications it can act on (a CRM only those about people, a booking system
/// only those naming a job), so a minimal notification is delivered where it fits rather than
/// refused elsewhere.
fn sandbox_configuration(
    simulated: &[Simulated],
    data_dir: &Path,
    secrets: &SecretsAt<'_>,
) -> String {
    let mut text = format!(
        r##"# Herald against `herald sandbox`: runs as it is (`herald serve --config THIS_FILE`).
[server]
listen = "127.0.0.1:8470"

[store]
kind = "sqlite"
data_dir = "{}"

[security]
# The simulators listen on this machine.
allow_private_destinations = true

[[organizations]]
id = "my-studio"
name = "My studio (sandbox)"
"##,
        data_dir.display()
    );
    for entry in simulated {
        let description = entry.vendor.describe();
        text.push_str(&format!(
            "\n[[integrations]]\nid = \"{}\"\norganization = \"my-studio\"\nkind = \"{}\"\nsettings = {{ {} }}\n",
            entry.integration_id(),
            description.kind,
            entry.simulator.settings(&secrets.reference(entry))
        ));
    }
    for entry in simulated {
        let description = entry.vendor.describe();
        text.push_str(&format!(
            "\n[[routes]]\norganization = \"my-studio\"\nname = \"what {} can act on\"\n{}targets = [\"{}\"]\n",
            description.name,
            description
                .takes
                .map(|condition| format!("when = {condition:?}\n"))
                .unwrap_or_default(),
            entry.integration_id()
        ));
    }
    text
}

/// A notification every simulator acts on: the vendors' sample notifications merged (the later
/// vendor's value wins where two set the same field).
fn sandbox_example_notification(simulated: &[Simulated]) -> Value {
    let mut example = Value::Object(Default::default());
    for entry in simulated {
        if let (Value::Object(example), Value::Object(sample)) = (
            &mut example,
            entry.simulator.sample_notification("sandbox-1"),
        ) {
            for (field, value) in sample {
                match (example.get_mut(&field), value) {
                    (Some(Value::Object(existing)), Value::Object(more)) => existing.extend(more),
                    (_, value) => {
                        example.insert(field, value);
                    }
                }
            }
        }
    }
    example
}

/// Writes the configuration (credentials in a folder beside it, readable by the owner only)
/// and the example notification beside it; answers the example's path.
fn write_sandbox_files(config: &Path, simulated: &[Simulated]) -> std::io::Result<PathBuf> {
    let folder = config
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(folder)?;
    let folder = std::fs::canonicalize(folder)?;
    let secrets = folder.join("sandbox-secrets");
    std::fs::create_dir_all(&secrets)?;
    for entry in simulated {
        let path = secrets.join(entry.vendor.kind());
        std::fs::write(&path, entry.simulator.credential())?;
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    }
    let text = sandbox_configuration(
        simulated,
        &folder.join("sandbox-data"),
        &SecretsAt::Folder(&secrets),
    );
    std::fs::write(config, text)?;
    let example = folder.join("sandbox-notification.json");
    std::fs::write(
        &example,
        serde_json::to_string_pretty(&sandbox_example_notification(simulated))?,
    )?;
    Ok(example)
}

/// `herald sandbox`: every registered vendor's simulator on a fixed local port (`port_base` + 1
/// onwards, in the registry's order), a complete configuration for them (printed, or written to
/// `write_config` with its credentials and an example notification beside it), and a line for
/// every request they receive, until `shutdown` resolves.
pub async fn serve_sandbox(
    port_base: u16,
    write_config: Option<&Path>,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let mut simulated = Vec::new();
    for (offset, vendor) in (1u16..).zip(vendors::all()) {
        let Some(simulation) = vendor.simulation() else {
            continue;
        };
        let address = SocketAddr::from(([127, 0, 0, 1], port_base + offset));
        simulated.push(Simulated {
            vendor: *vendor,
            simulator: simulation.start(address).await?,
        });
    }
    println!("Herald sandbox: vendor simulators on this machine (no real credentials involved).\n");
    for entry in &simulated {
        println!(
            "  {:<10} {}  {}",
            entry.vendor.describe().name,
            entry.simulator.address(),
            entry.simulator.about()
        );
    }
    if let Some(control) = simulated.first().and_then(|entry| {
        url::Url::parse(&entry.simulator.address())
            .and_then(|address| address.join(crate::sandbox::FAULTS_PATH))
            .ok()
    }) {
        println!(
            "\nEach simulator takes faults at {} on its own port, e.g.\n  curl -X POST {control} -H 'content-type: application/json' -d '{{\"goDown\": {{\"status\": 503}}}}'\n  (also respondNext {{status, headers, body}}, comeBack, dropNext, latencyMs)",
            crate::sandbox::FAULTS_PATH
        );
    }
    println!();
    match write_config {
        Some(path) => {
            let example = write_sandbox_files(path, &simulated)?;
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
            let exports: Vec<String> = simulated
                .iter()
                .map(|entry| {
                    format!(
                        "{}={}",
                        entry.credential_variable(),
                        entry.simulator.credential()
                    )
                })
                .collect();
            println!(
                "A complete configuration follows (or run `herald sandbox --write-config FILE`, \
                 which also writes the credentials and an example notification). It reads the \
                 credentials from the environment:\n  export {}\n\n{}\nAn example notification \
                 that reaches every simulator:\n{}\n",
                exports.join(" "),
                sandbox_configuration(
                    &simulated,
                    Path::new("sandbox-data"),
                    &SecretsAt::Environment
                ),
                sandbox_example_notification(&simulated),
            );
        }
    }
    println!("Requests appear below as they arrive. Ctrl-C stops the sandbox.");
    let mut shown = vec![0usize; simulated.len()];
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(200));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            _ = tick.tick() => {}
        }
        for (entry, shown) in simulated.iter().zip(shown.iter_mut()) {
            let requests = entry.simulator.recorder().all();
            for request in &requests[*shown..] {
                println!(
                    "{:<8} {} {} -> {}: {}",
                    entry.vendor.kind(),
                    request.method,
                    request.path,
                    request.status,
                    entry.simulator.describe_request(request)
                );
            }
            *shown = requests.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn every_simulator() -> Vec<Simulated> {
        let mut simulated = Vec::new();
        for vendor in vendors::all() {
            let simulator = vendor
                .simulation()
                .unwrap()
                .start(crate::sandbox::any_local_port())
                .await
                .unwrap();
            simulated.push(Simulated {
                vendor: *vendor,
                simulator,
            });
        }
        simulated
    }

    #[tokio::test]
    async fn the_printed_configuration_is_a_complete_file() {
        let simulated = every_simulator().await;
        let text = sandbox_configuration(
            &simulated,
            Path::new("sandbox-data"),
            &SecretsAt::Environment,
        );
        let config = crate::config::parse(&text, "printed sandbox configuration").unwrap();
        assert_eq!(config.integrations.len(), vendors::all().len());
        assert_eq!(config.routes.len(), vendors::all().len());
        assert!(config.allow_private_destinations);
        assert!(config.warnings().is_empty(), "{:?}", config.warnings());
    }

    #[tokio::test]
    async fn the_example_carries_what_every_vendor_needs() {
        let simulated = every_simulator().await;
        let example = sandbox_example_notification(&simulated);
        let notification: crate::wedsync::WeddingNotification =
            serde_json::from_value(example.clone()).unwrap();
        notification.validate("", "my-studio").unwrap();
        for entry in &simulated {
            if let Some(takes) = entry.vendor.describe().takes {
                let condition = crate::condition::Condition::compile(takes).unwrap();
                assert_eq!(
                    condition.evaluate(&notification),
                    Ok(true),
                    "{}: {example}",
                    entry.vendor.kind()
                );
            }
        }
    }
}
