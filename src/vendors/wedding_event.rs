//! A wedding as a calendar holds it: one all-day event on the wedding's day in its time zone,
//! what it is called, where it is, what the latest notification said, and who is invited. The
//! calendar vendors turn it into their own event bodies; this module owns what a notification
//! means for the event (a moved date, a new venue, a cancellation).

use crate::connectors::{cut_marked, ConnectorError};
use crate::wedsync::WeddingNotification;

/// The notification types that cancel the wedding's event.
pub const CANCELLING: &[&str] = &["wedding_cancelled", "booking_cancelled"];
/// The longest description written.
const DESCRIPTION_CHARS: usize = 8000;

/// The wedding's event as a notification leaves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeddingEvent {
    pub wedding_id: String,
    /// The wedding's day and the day after (all-day events end on the next day).
    pub day: jiff::civil::Date,
    pub next_day: jiff::civil::Date,
    /// IANA.
    pub time_zone: String,
    pub summary: String,
    pub description: String,
    pub location: Option<String>,
    /// (email, name) of the contacts with the invited roles.
    pub attendees: Vec<(String, Option<String>)>,
}

/// Whether the notification cancels the wedding.
pub fn cancels(notification: &WeddingNotification) -> bool {
    CANCELLING.contains(&notification.notification_type.as_str())
}

/// The wedding a notification is about, by its id; a notification about no wedding is refused.
pub fn wedding_id(notification: &WeddingNotification) -> Result<String, ConnectorError> {
    notification
        .wedding_context
        .as_ref()
        .and_then(|context| context.wedding_id.clone())
        .ok_or_else(|| ConnectorError::Rejected {
            code: "no_wedding".into(),
            message: "the notification is about no wedding: it has no weddingContext.weddingId"
                .into(),
        })
}

impl WeddingEvent {
    /// The event: the date from `metadata.timelineChanges.newWeddingDate`, else
    /// `weddingContext.weddingDate`; the zone from `weddingContext.timezone`, else
    /// `default_time_zone`; the contacts whose role is in `invite_roles` (lowercase) as
    /// attendees.
    pub fn of(
        notification: &WeddingNotification,
        default_time_zone: &str,
        invite_roles: &[String],
    ) -> Result<Self, ConnectorError> {
        let wedding_id = wedding_id(notification)?;
        let context = notification
            .wedding_context
            .as_ref()
            .expect("a wedding id is in a wedding context");
        let changes = notification.timeline_changes().unwrap_or_default();
        let date = changes
            .new_wedding_date
            .clone()
            .unwrap_or_else(|| context.wedding_date.clone());
        let invalid = |why: &str| ConnectorError::Rejected {
            code: "invalid_date".into(),
            message: format!("the wedding date {date:?} {why}"),
        };
        let day: jiff::civil::Date = date
            .parse()
            .map_err(|_| invalid("is not a calendar date"))?;
        let next_day = day.tomorrow().map_err(|_| invalid("has no day after it"))?;
        let time_zone = context
            .timezone
            .clone()
            .unwrap_or_else(|| default_time_zone.to_owned());
        let location = changes.new_venue.clone().or_else(|| context.venue.clone());
        let summary = match (&context.couple_names, &location) {
            (Some(couple), Some(venue)) => format!("Wedding: {couple} at {venue}"),
            (Some(couple), None) => format!("Wedding: {couple}"),
            (None, Some(venue)) => format!("Wedding at {venue}"),
            (None, None) => "Wedding".to_owned(),
        };
        let mut description = format!("{}\n{}", notification.title, notification.message);
        if let Some(time) = &changes.new_wedding_time {
            description.push_str(&format!("\nCeremony: {time} ({time_zone})"));
        }
        let attendees = notification
            .contacts
            .iter()
            .filter(|contact| {
                contact
                    .role
                    .as_ref()
                    .is_some_and(|role| invite_roles.contains(&role.to_lowercase()))
            })
            .filter_map(|contact| {
                contact
                    .email
                    .clone()
                    .map(|email| (email, contact.name.clone()))
            })
            .collect();
        Ok(Self {
            wedding_id,
            day,
            next_day,
            time_zone,
            summary: cut_marked(&summary, 255),
            description: cut_marked(&description, DESCRIPTION_CHARS),
            location,
            attendees,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn notification(extra: serde_json::Value) -> WeddingNotification {
        let mut n = json!({
            "notificationId": "n-1", "type": "timeline_change", "priority": "normal",
            "title": "Moved", "message": "New date",
            "weddingContext": {"weddingId": "w-1", "weddingDate": "2027-06-12", "venue": "Kew Gardens", "coupleNames": "Sam & Alex"},
            "contacts": [{"name": "Sam", "email": "sam@example.com", "role": "Couple"}, {"email": "jo@example.com", "role": "planner"}]
        });
        for (key, value) in extra.as_object().unwrap() {
            n[key] = value.clone();
        }
        serde_json::from_value(n).unwrap()
    }

    #[test]
    fn a_timeline_change_moves_the_day_and_the_venue() {
        let event = WeddingEvent::of(
            &notification(json!({"metadata": {"timelineChanges": {"newWeddingDate": "2027-12-31", "newVenue": "Orangery", "newWeddingTime": "14:00"}}})),
            "Europe/London",
            &["couple".to_owned()],
        )
        .unwrap();
        assert_eq!(event.day.to_string(), "2027-12-31");
        assert_eq!(event.next_day.to_string(), "2028-01-01");
        assert_eq!(event.time_zone, "Europe/London");
        assert_eq!(event.summary, "Wedding: Sam & Alex at Orangery");
        assert_eq!(
            event.description,
            "Moved\nNew date\nCeremony: 14:00 (Europe/London)"
        );
        assert_eq!(
            event.attendees,
            [("sam@example.com".to_owned(), Some("Sam".to_owned()))]
        );
        let none = WeddingEvent::of(&notification(json!({})), "UTC", &[]).unwrap();
        assert!(none.attendees.is_empty());
        assert_eq!(none.day.to_string(), "2027-06-12");
    }

    #[test]
    fn a_notification_about_no_wedding_is_refused() {
        let n = notification(json!({"weddingContext": {"weddingDate": "2027-06-12"}}));
        assert!(matches!(
            WeddingEvent::of(&n, "UTC", &[]),
            Err(ConnectorError::Rejected { code, .. }) if code == "no_wedding"
        ));
    }
}
