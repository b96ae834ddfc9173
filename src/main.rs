//! The `herald` command: parses the command line, sets up logging and hands over to the library.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use herald::store::{Actor, Role};
use serde_json::Value;

#[derive(Parser)]
#[command(
    name = "herald",
    version,
    about = "WedSync notification integration orchestrator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the daemon.
    Serve {
        /// Configuration file (TOML); HERALD_* environment variables override it.
        #[arg(long, default_value = "config/herald.toml")]
        config: PathBuf,
    },
    /// Runs Herald with local vendor simulators and routes sample notifications end to end.
    Demo {
        /// Routes one notification to every registered vendor through its simulator instead,
        /// one row per vendor; fails unless every vendor delivered.
        #[arg(long)]
        all: bool,
    },
    /// Runs the vendor simulators on fixed local ports, to try a configuration without real credentials.
    Sandbox {
        /// Each registered vendor's simulator listens on PORT_BASE+1 onwards, in the registry's order.
        #[arg(long, default_value_t = 9100)]
        port_base: u16,
        /// Writes a configuration that runs as it is to this file, its credentials into
        /// `sandbox-secrets/` beside it and an example notification (`sandbox-notification.json`).
        #[arg(long, value_name = "FILE")]
        write_config: Option<PathBuf>,
    },
    /// Lists the vendors this build delivers to: type, authentication, default rate, the seed
    /// operations each implements and what each sends Herald.
    Vendors {
        /// Prints the registry as JSON.
        #[arg(long, conflicts_with = "markdown")]
        json: bool,
        /// Prints the registry as the README's Markdown table.
        #[arg(long)]
        markdown: bool,
    },
    /// Prints the API's OpenAPI 3.1 document (what a running Herald serves at `/openapi.json`).
    Openapi,
    /// Checks a configuration file and says what is wrong and where.
    CheckConfig {
        #[arg(default_value = "config/herald.toml")]
        file: PathBuf,
    },
    /// Sends a notification, or a batch (`{"notifications": [...]}`), to a running Herald.
    ///
    /// The whole file is checked first, as Herald's API would check it (each problem named by
    /// its place in the file, `notifications[1200].priority`); if anything is wrong nothing is
    /// sent. A valid batch is then sent in requests of 1,000 notifications, each accepted whole
    /// by Herald; a failure part-way (the daemon stopping, say) says how many were accepted.
    Send {
        file: PathBuf,
        #[arg(long, env = "HERALD_URL", default_value = "http://127.0.0.1:8470")]
        url: String,
        #[arg(long, env = "HERALD_API_KEY", hide_env_values = true)]
        key: String,
        /// After sending, follows delivery to every target until everything settled, showing
        /// per target how many were delivered, are still in progress (pending or retrying),
        /// failed over and were dead-lettered; exits non-zero if any was dead-lettered.
        #[arg(long)]
        follow: bool,
    },
    /// Manages API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Checks the audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Manages the vault that seals kept credentials.
    Vault {
        #[command(subcommand)]
        command: VaultCommand,
    },
}

#[derive(Subcommand)]
enum VaultCommand {
    /// Re-seals every kept credential under `security.credentials_key`. Rotate by moving the old
    /// key to `security.previous_credentials_keys`, setting the new one as `credentials_key`,
    /// restarting Herald, then running this (Herald may keep running); once it reports nothing
    /// left under an old key, remove the old key from the configuration.
    RotateKey {
        #[arg(long, default_value = "config/herald.toml")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Checks every organization's audit chain: exits non-zero naming the first record that was
    /// changed, or that follows a deleted one.
    Verify {
        #[arg(long, default_value = "config/herald.toml")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Creates an API key for an organization and prints it once.
    Create {
        #[arg(long)]
        organization: String,
        #[arg(long, default_value = "default")]
        label: String,
        /// What the key may do: `admin` (integrations, routes, keys, credentials, and
        /// everything a sender may), `sender` (notifications, routings, replays, and reading),
        /// `viewer` (reading).
        #[arg(long, default_value = "admin", value_parser = parse_role)]
        role: Role,
        #[arg(long, default_value = "config/herald.toml")]
        config: PathBuf,
    },
    /// Lists an organization's API keys (ids, labels, roles, creation times; never the keys).
    List {
        #[arg(long)]
        organization: String,
        #[arg(long, default_value = "config/herald.toml")]
        config: PathBuf,
    },
    /// Revokes an API key by the id `keys list` shows; it stops working within 30 seconds.
    Revoke {
        #[arg(long)]
        organization: String,
        id: String,
        #[arg(long, default_value = "config/herald.toml")]
        config: PathBuf,
    },
}

fn main() {
    let cli = Cli::parse();
    if let Err(err) = run(cli) {
        // The error chain in one line, never a debug dump.
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve { config } => serve(&config).await,
            Command::Demo { all } => {
                herald::telemetry::init_logging("error");
                if all {
                    herald::demo::run_every_vendor().await.map(drop)?;
                } else {
                    herald::demo::run_demo().await.map(drop)?;
                }
                Ok(())
            }
            Command::Sandbox {
                port_base,
                write_config,
            } => {
                herald::telemetry::init_logging("warn");
                herald::sandbox_command::serve_sandbox(
                    port_base,
                    write_config.as_deref(),
                    shutdown_signal(),
                )
                .await
                .context("the sandbox could not start")
            }
            Command::Vendors { json, markdown } => {
                if json {
                    let described: Vec<_> = herald::vendors::all()
                        .iter()
                        .map(|vendor| vendor.describe())
                        .collect();
                    println!("{}", serde_json::to_string_pretty(&described)?);
                } else if markdown {
                    print!("{}", herald::vendors::markdown_table());
                } else {
                    print!("{}", herald::vendors::describe_all());
                }
                Ok(())
            }
            Command::Openapi => {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&herald::api::openapi_document())?
                );
                Ok(())
            }
            Command::CheckConfig { file } => check_config(&file),
            Command::Send {
                file,
                url,
                key,
                follow,
            } => send(&file, &url, &key, follow).await,
            Command::Keys { command } => manage_keys(command).await,
            Command::Audit {
                command: AuditCommand::Verify { config },
            } => verify_audit(&config).await,
            Command::Vault {
                command: VaultCommand::RotateKey { config },
            } => rotate_vault_key(&config).await,
        }
    })
}

async fn serve(path: &Path) -> anyhow::Result<()> {
    herald::telemetry::init_logging("info");
    let config = herald::config::load(Some(path))?;
    let stop = shutdown_signal();
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    herald::run(config, listener, stop).await?;
    Ok(())
}

/// Resolves when the daemon is asked to stop. The signal handlers are installed now, before
/// the daemon listens, so a signal sent once it answers is never met by the default action.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).ok();
    // SIGHUP is what operators send after editing a daemon's configuration. Herald does not
    // reload in place yet; it shuts down cleanly (nothing accepted is lost) so the process
    // supervisor starts it again on the new configuration, and says so.
    let mut hangup = signal(SignalKind::hangup()).ok();
    async move {
        let terminated = async {
            match terminate.as_mut() {
                Some(signal) => drop(signal.recv().await),
                None => std::future::pending::<()>().await,
            }
        };
        let hung_up = async {
            match hangup.as_mut() {
                Some(signal) => drop(signal.recv().await),
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("shutdown requested"),
            _ = terminated => tracing::info!("shutdown requested"),
            _ = hung_up => tracing::warn!("SIGHUP: configuration reload is not supported; shutting down cleanly so the process supervisor restarts herald on the new configuration"),
        }
    }
}

fn check_config(path: &Path) -> anyhow::Result<()> {
    let config = herald::config::load(Some(path))?;
    if let Some(Err(err)) = config.credentials_key.as_ref().map(|key| key.read()) {
        eprintln!(
            "{}: warning: security.credentials_key: {err} (serve will refuse to start)",
            path.display()
        );
    }
    for warning in config.warnings() {
        eprintln!("{}: warning: {warning}", path.display());
    }
    for integration in &config.integrations {
        for secret in integration.settings.secrets() {
            if let Err(err) = secret.read() {
                eprintln!(
                    "{}: warning: integration {:?}: {err} (serve will refuse to start)",
                    path.display(),
                    integration.id
                );
            }
        }
    }
    println!(
        "{}: ok ({} organizations, {} integrations, {} routes; store {:?})",
        path.display(),
        config.organizations.len(),
        config.integrations.len(),
        config.routes.len(),
        config.store
    );
    Ok(())
}

async fn rotate_vault_key(config: &Path) -> anyhow::Result<()> {
    let loaded = herald::config::load(Some(config))?;
    let store = herald::open_store(&loaded).await?;
    let Some(vault) = herald::open_vault(&loaded, store.clone())? else {
        bail!(
            "{}: security.credentials_key is not set: there is no key to rotate to",
            config.display()
        );
    };
    // Each re-sealed credential is recorded in its integration's organization's audit log.
    let mut organizations: HashMap<String, String> = loaded
        .integrations
        .iter()
        .map(|integration| (integration.id.clone(), integration.organization.clone()))
        .collect();
    organizations.extend(
        store
            .managed_integrations()
            .await?
            .into_iter()
            .map(|stored| (stored.id, stored.organization)),
    );
    let rotation = vault.rotate(&organizations).await?;
    store.flush().await?;
    println!(
        "{} credentials re-sealed under the current key, {} already under it, {} changed meanwhile (sealed under it by Herald)",
        rotation.resealed, rotation.current, rotation.changed_meanwhile
    );
    println!("every credential now opens with security.credentials_key alone: previous_credentials_keys can go");
    Ok(())
}

async fn verify_audit(config: &Path) -> anyhow::Result<()> {
    let loaded = herald::config::load(Some(config))?;
    let store = herald::open_store(&loaded).await?;
    let records = store.audit_chains().await?;
    let mut organizations = 0;
    for chain in records.chunk_by(|a, b| a.organization == b.organization) {
        herald::store::verify_chain(chain)?;
        organizations += 1;
    }
    println!(
        "{} audit records of {organizations} organizations: every chain is intact",
        records.len()
    );
    Ok(())
}

fn parse_role(text: &str) -> Result<Role, String> {
    Role::parse(text).ok_or_else(|| format!("{text:?} is not a role: admin, sender or viewer"))
}

async fn manage_keys(command: KeysCommand) -> anyhow::Result<()> {
    let (KeysCommand::Create {
        organization,
        config,
        ..
    }
    | KeysCommand::List {
        organization,
        config,
    }
    | KeysCommand::Revoke {
        organization,
        config,
        ..
    }) = &command;
    let loaded = herald::config::load(Some(config))?;
    if !loaded.organizations.iter().any(|org| org == organization) {
        bail!(
            "{}: organization {organization:?} is not listed in [[organizations]]",
            config.display()
        );
    }
    let store = herald::open_store(&loaded).await?;
    match &command {
        KeysCommand::Create { label, role, .. } => {
            let (key, id) = herald::api::create_api_key(
                &*store,
                organization,
                label,
                *role,
                &Actor::operator(),
            )
            .await?;
            println!("{key}");
            eprintln!("key {id} ({role}); this key is shown once; Herald keeps only its SHA-256");
        }
        KeysCommand::List { .. } => {
            for key in store.api_keys(organization).await? {
                let created = humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + Duration::from_millis(key.created_at.max(0) as u64),
                );
                println!("{}  {created}  {:<6}  {}", key.id, key.role, key.label);
            }
        }
        KeysCommand::Revoke { id, .. } => {
            if !store
                .revoke_api_key(organization, id, &Actor::operator())
                .await?
            {
                bail!("organization {organization:?} has no API key with id {id:?} (see `herald keys list`)");
            }
            println!("revoked {id}; running daemons stop accepting it within 30 seconds");
        }
    }
    store.flush().await?;
    Ok(())
}

/// How many notifications `herald send` puts in one request.
const SEND_CHUNK: usize = 1000;

async fn send(file: &Path, url: &str, key: &str, follow: bool) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let body: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?;
    check_before_sending(&text, &body).with_context(|| {
        format!(
            "{} was not sent: it does not hold valid notifications",
            file.display()
        )
    })?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let url = url.trim_end_matches('/');
    let Some(notifications) = body.get("notifications").and_then(Value::as_array) else {
        let answer = post(&client, &format!("{url}/v1/notifications"), key, &body).await?;
        println!("{}", serde_json::to_string_pretty(&answer)?);
        if follow {
            let id = body["notificationId"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            follow_deliveries(&client, url, key, vec![id]).await?;
        }
        return Ok(());
    };
    let total = notifications.len();
    let mut sent = 0;
    let (mut accepted, mut duplicates) = (0, 0);
    for chunk in notifications.chunks(SEND_CHUNK) {
        let answer = post(
            &client,
            &format!("{url}/v1/notifications/batch"),
            key,
            &serde_json::json!({"notifications": chunk}),
        )
        .await
        .with_context(|| {
            format!("after {sent} of {total} notifications were sent ({accepted} accepted)")
        })?;
        accepted += answer["accepted"].as_u64().unwrap_or(0);
        duplicates += answer["duplicates"].as_u64().unwrap_or(0);
        sent += chunk.len();
        eprint!(
            "\r[{:<40}] {sent}/{total}",
            "#".repeat(sent * 40 / total.max(1))
        );
    }
    eprintln!();
    println!("{accepted} accepted, {duplicates} duplicates");
    if follow {
        let ids = notifications
            .iter()
            .filter_map(|n| n["notificationId"].as_str().map(str::to_owned))
            .collect();
        follow_deliveries(&client, url, key, ids).await?;
    }
    Ok(())
}

/// Checks a file the way Herald's API checks what it receives, naming each problem by its
/// place in the file. The organization is the API key's, which only the daemon knows, so a
/// notification's `organizationId` is checked there.
fn check_before_sending(text: &str, body: &Value) -> anyhow::Result<()> {
    use herald::wedsync::{parse_json, NotificationBatch, WeddingNotification};
    let notifications: Vec<(String, WeddingNotification)> = if body.get("notifications").is_some() {
        let batch: NotificationBatch = parse_json(text.as_bytes())?;
        if batch.notifications.is_empty() {
            bail!("notifications: must hold at least one notification");
        }
        batch
            .notifications
            .into_iter()
            .enumerate()
            .map(|(index, n)| (format!("notifications[{index}]"), n))
            .collect()
    } else {
        vec![(String::new(), parse_json(text.as_bytes())?)]
    };
    for (place, notification) in &notifications {
        let organization = notification.organization_id.clone().unwrap_or_default();
        notification.validate(place, &organization)?;
    }
    Ok(())
}

/// How a target's deliveries stand.
#[derive(Default, Clone, Copy)]
struct TargetCounts {
    delivered: usize,
    in_progress: usize,
    failed_over: usize,
    dead_lettered: usize,
}

type CountsByTarget = std::collections::BTreeMap<String, TargetCounts>;

/// Adds a notification's targets to the counts.
fn tally(counts: &mut CountsByTarget, targets: &[Value]) {
    for target in targets {
        let entry = counts
            .entry(target["integrationId"].as_str().unwrap_or("?").to_owned())
            .or_default();
        match target["state"].as_str() {
            Some("delivered") => entry.delivered += 1,
            Some("dead_lettered") => entry.dead_lettered += 1,
            Some("failed_over") => entry.failed_over += 1,
            _ => entry.in_progress += 1,
        }
    }
}

/// Follows the notifications until every delivery settled: each round reads the ones not yet
/// settled (16 requests at a time) and shows, per target, where their deliveries stand.
async fn follow_deliveries(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    mut open: Vec<String>,
) -> anyhow::Result<()> {
    // Settled notifications are counted once, here, and not read again.
    let mut settled = CountsByTarget::new();
    loop {
        let mut records = Vec::with_capacity(open.len());
        for ids in open.chunks(16) {
            let mut reads = tokio::task::JoinSet::new();
            for id in ids {
                let request = client
                    .get(format!("{url}/v1/notifications/{id}"))
                    .bearer_auth(key)
                    .send();
                let id = id.clone();
                reads.spawn(async move {
                    let record = match request.await {
                        Ok(response) => response.json::<Value>().await,
                        Err(err) => Err(err),
                    };
                    (id, record)
                });
            }
            while let Some(read) = reads.join_next().await {
                records.push(read?);
            }
        }
        let mut shown = settled.clone();
        let mut still_open = Vec::new();
        for (id, record) in records {
            let record = record.with_context(|| format!("cannot read notification {id}"))?;
            let targets = record["targets"].as_array().cloned().unwrap_or_default();
            let done = targets.iter().all(|t| {
                matches!(
                    t["state"].as_str(),
                    Some("delivered" | "dead_lettered" | "failed_over")
                )
            });
            tally(&mut shown, &targets);
            if done {
                tally(&mut settled, &targets);
            } else {
                still_open.push(id);
            }
        }
        let lines: Vec<String> = shown
            .iter()
            .map(|(target, c)| {
                format!(
                    "{target}: {} delivered, {} in progress, {} failed over, {} dead-lettered",
                    c.delivered, c.in_progress, c.failed_over, c.dead_lettered
                )
            })
            .collect();
        open = still_open;
        if open.is_empty() {
            eprintln!();
            for line in &lines {
                println!("{line}");
            }
            let dead: usize = shown.values().map(|c| c.dead_lettered).sum();
            if dead > 0 {
                bail!("{dead} deliveries were dead-lettered (GET /v1/dead-letters says why)");
            }
            return Ok(());
        }
        eprint!("\r{}", lines.join(" | "));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    body: &Value,
) -> anyhow::Result<Value> {
    let response = client
        .post(url)
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = response.status();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let message = answer["error"]["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| answer.to_string());
        bail!("Herald answered {status}: {message}");
    }
    Ok(answer)
}
