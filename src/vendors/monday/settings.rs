//! monday.com's settings: the API token, the weddings board and the columns Herald writes, the
//! optional contacts board, the people notified, and their validation.

use serde::Deserialize;

use crate::secret::SecretRef;
use crate::vendors::{is_http_url, SettingsError};

/// One monday.com account's board of weddings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MondaySettings {
    /// A personal API token (Developers > My access tokens) or an app's token: monday's tokens
    /// do not expire.
    pub api_token: SecretRef,
    /// The board holding one item per wedding.
    pub board_id: String,
    /// The text column of `board_id` holding the wedding's id: how Herald finds a wedding's item
    /// again.
    pub wedding_column: String,
    /// The group new items go into; the board's first group without it.
    pub group_id: Option<String>,
    /// A date column set to the wedding date (a timeline change moves it).
    pub date_column: Option<String>,
    /// A status column whose label a notification's `metadata.mondayStatus` sets: the item's
    /// stage in the board's pipeline.
    pub status_column: Option<String>,
    /// A board with one item per person (a monday CRM contacts board), where contacts are found
    /// by `contacts_email_column` or created.
    pub contacts_board_id: Option<String>,
    /// The email column of `contacts_board_id`.
    pub contacts_email_column: Option<String>,
    /// The people (monday user ids) told of high and emergency notifications through monday's
    /// own notifications (the bell).
    #[serde(default)]
    pub notify_user_ids: Vec<String>,
    /// The GraphQL endpoint.
    #[serde(default = "default_api_url")]
    pub api_url: String,
}

fn default_api_url() -> String {
    "https://api.monday.com/v2".to_owned()
}

fn is_monday_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit())
}

/// Column ids are lowercase letters, digits and underscores (`status`, `date4`, `text_mkq1`).
fn is_column_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 100
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Ids are monday's (digits), column ids monday's, and the contacts board comes with its email
/// column.
pub(super) fn check_monday(settings: &MondaySettings) -> Result<(), SettingsError> {
    if !is_http_url(&settings.api_url) {
        return Err(SettingsError::new(
            "api_url",
            format!("{:?} is not an http(s) address", settings.api_url),
        ));
    }
    let ids = [
        ("board_id", Some(&settings.board_id)),
        ("contacts_board_id", settings.contacts_board_id.as_ref()),
    ];
    for (field, id) in ids {
        if let Some(id) = id.filter(|id| !is_monday_id(id)) {
            return Err(SettingsError::new(
                field,
                format!("{id:?} is not a board id (its digits, from the board's address)"),
            ));
        }
    }
    let columns = [
        ("wedding_column", Some(&settings.wedding_column)),
        ("date_column", settings.date_column.as_ref()),
        ("status_column", settings.status_column.as_ref()),
        (
            "contacts_email_column",
            settings.contacts_email_column.as_ref(),
        ),
    ];
    for (field, column) in columns {
        if let Some(column) = column.filter(|column| !is_column_id(column)) {
            return Err(SettingsError::new(
                field,
                format!("{column:?} is not a column id (lowercase letters, digits and _; shown by the column's menu)"),
            ));
        }
    }
    if settings.contacts_board_id.is_some() != settings.contacts_email_column.is_some() {
        return Err(SettingsError::new(
            "contacts_email_column",
            "contacts_board_id and contacts_email_column come together: the board of people and its email column",
        ));
    }
    if let Some((index, id)) = settings
        .notify_user_ids
        .iter()
        .enumerate()
        .find(|(_, id)| !is_monday_id(id))
    {
        return Err(SettingsError::new(
            format!("notify_user_ids[{index}]"),
            format!("{id:?} is not a user id (digits)"),
        ));
    }
    Ok(())
}
