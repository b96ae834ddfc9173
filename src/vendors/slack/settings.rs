//! Slack's settings: the bot token, the channel, templates, reminders and quiet hours, and
//! their validation.

use serde::Deserialize;

use crate::connectors::quiet_hours::QuietHours;
use crate::secret::SecretRef;
use crate::template::Template;
use crate::vendors::{check_quiet_hours, SettingsError};
use crate::wedsync::is_time_of_day;

/// Slack `chat.postMessage` with Block Kit.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackSettings {
    #[serde(default = "default_slack_base_url")]
    pub base_url: String,
    /// The bot token (`xoxb-...`).
    pub token: SecretRef,
    pub channel: String,
    /// A minijinja template for the message's fallback text; the notification's fields are in scope.
    pub text_template: Option<String>,
    /// The Slack app's signing secret. With it, button clicks on Herald's messages reach
    /// `POST /inbound/slack/{integration}/interactivity` and acknowledge the notification.
    pub signing_secret: Option<SecretRef>,
    /// Reminders scheduled in the channel (`chat.scheduleMessage`) relative to the wedding date
    /// when a notification of one of `reminder_types` is delivered.
    #[serde(default)]
    pub reminders: Vec<ReminderSettings>,
    #[serde(default = "default_reminder_types")]
    pub reminder_types: Vec<String>,
    /// Hours when the channel is not disturbed (the seed's manageNotificationPreferences).
    pub quiet_hours: Option<QuietHours>,
    /// How the Slack app behind the token is distributed, which sets the limits Slack applies
    /// to thread reads.
    #[serde(default)]
    pub app_distribution: AppDistribution,
}

/// Slack limits `conversations.history` and `conversations.replies` to 1 request a minute and
/// 15 messages a page for apps distributed commercially outside the Slack Marketplace (new
/// installations since 29 May 2025, existing ones since 3 March 2026); Marketplace apps and a
/// workspace's own internal apps keep Tier 3.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppDistribution {
    /// An app the workspace built for itself.
    #[default]
    Internal,
    /// An app approved for the Slack Marketplace.
    Marketplace,
    /// An app distributed to other workspaces without Marketplace approval.
    OutsideMarketplace,
}

/// One reminder of an automated message sequence.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReminderSettings {
    /// How many days before the wedding date.
    pub days_before: u32,
    /// Time of day in UTC, `HH:MM`.
    pub at: String,
    /// A minijinja template for the reminder's text; the notification's fields are in scope.
    pub text_template: String,
}

fn default_reminder_types() -> Vec<String> {
    vec!["booking_confirmed".to_owned()]
}

fn default_slack_base_url() -> String {
    "https://slack.com/api".to_owned()
}

/// Slack's templates compile and its reminder times are times of day.
pub(super) fn check_slack(slack: &SlackSettings) -> Result<(), SettingsError> {
    let compiles = |field: String, template: &str| {
        Template::compile(template)
            .map(drop)
            .map_err(|err| SettingsError::new(field, err.to_string()))
    };
    if let Some(template) = &slack.text_template {
        compiles("text_template".into(), template)?;
    }
    check_quiet_hours(&slack.quiet_hours)?;
    for (index, reminder) in slack.reminders.iter().enumerate() {
        compiles(
            format!("reminders[{index}].text_template"),
            &reminder.text_template,
        )?;
        if !is_time_of_day(&reminder.at) {
            return Err(SettingsError::new(
                format!("reminders[{index}].at"),
                format!("{:?} is not a time like 09:00", reminder.at),
            ));
        }
    }
    Ok(())
}
