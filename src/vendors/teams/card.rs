//! The Adaptive Card a notification becomes, whichever way it reaches the channel (a Workflows
//! flow or Microsoft Graph): the title in a container coloured by priority, the priority and
//! type, the message, the wedding as facts, the notification id, and its links as
//! `Action.OpenUrl` buttons. WedSync's text is escaped so it cannot format anything; lengths keep
//! a card well inside Teams' 28 KB message limit.

use serde_json::{json, Value};

use crate::connectors::{backslash_escape, cut_marked};
use crate::wedsync::{Priority, WeddingNotification};

/// The card schema version Herald writes: what Teams renders on desktop, web and mobile.
pub(super) const CARD_VERSION: &str = "1.4";
/// The buttons Teams shows on a card; more are hidden.
const MOST_BUTTONS: usize = 6;
/// Lengths that keep a card well inside Teams' 28 KB message limit even in four-byte characters.
const TITLE_LENGTH: usize = 300;
const MESSAGE_LENGTH: usize = 5000;
const FACT_LENGTH: usize = 300;
const BUTTON_LENGTH: usize = 100;
/// Adaptive Card markdown (a CommonMark subset) characters.
const MARKDOWN_SPECIALS: &[char] = &[
    '\\', '*', '_', '~', '`', '[', ']', '(', ')', '#', '>', '-', '+', '!', '|',
];

/// The Adaptive Card a notification becomes, and the labels of the actions it could not carry.
pub(super) fn card(notification: &WeddingNotification) -> (Value, Vec<String>) {
    let escape =
        |text: &str, length: usize| cut_marked(&backslash_escape(text, MARKDOWN_SPECIALS), length);
    let style = match notification.priority {
        Priority::Emergency => "attention",
        Priority::High => "warning",
        Priority::Normal => "accent",
        Priority::Low => "default",
    };
    let mut body = vec![
        json!({
            "type": "Container",
            "style": style,
            "bleed": true,
            "items": [
                {"type": "TextBlock", "text": escape(&notification.title, TITLE_LENGTH), "weight": "Bolder", "size": "Medium", "wrap": true},
                {"type": "TextBlock", "text": format!("{} · {}", notification.priority.as_str(), escape(&notification.notification_type, FACT_LENGTH)), "isSubtle": true, "size": "Small", "spacing": "None", "wrap": true},
            ],
        }),
        json!({"type": "TextBlock", "text": escape(&notification.message, MESSAGE_LENGTH), "wrap": true}),
    ];
    if let Some(context) = &notification.wedding_context {
        let mut facts =
            vec![json!({"title": "Wedding", "value": escape(&context.wedding_date, FACT_LENGTH)})];
        for (title, value) in [("Couple", &context.couple_names), ("Venue", &context.venue)] {
            if let Some(value) = value {
                facts.push(json!({"title": title, "value": escape(value, FACT_LENGTH)}));
            }
        }
        body.push(json!({"type": "FactSet", "facts": facts}));
    }
    body.push(json!({
        "type": "TextBlock",
        "text": format!("WedSync · {}", escape(&notification.notification_id, FACT_LENGTH)),
        "isSubtle": true,
        "size": "Small",
        "wrap": true,
    }));
    let mut buttons = Vec::new();
    let mut left_out = Vec::new();
    for action in &notification.actions {
        match &action.url {
            Some(url) if buttons.len() < MOST_BUTTONS => buttons.push(json!({
                "type": "Action.OpenUrl",
                "title": cut_marked(&action.label, BUTTON_LENGTH),
                "url": url,
            })),
            _ => left_out.push(action.label.clone()),
        }
    }
    let mut card = json!({
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": CARD_VERSION,
        "fallbackText": cut_marked(&format!("{}: {}", notification.title, notification.message), 1000),
        "body": body,
    });
    if !buttons.is_empty() {
        card["actions"] = json!(buttons);
    }
    (card, left_out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wedsync_text_cannot_format_the_card() {
        let notification: WeddingNotification = serde_json::from_value(json!({
            "notificationId": "n-1", "type": "timeline_change", "priority": "emergency",
            "title": "**Rain** plan", "message": "- move [inside](x)",
            "actions": [
                {"actionId": "open", "label": "Open", "url": "https://wedsync.example/t"},
                {"actionId": "ack", "label": "Acknowledge"}
            ]
        }))
        .unwrap();
        let (card, left_out) = card(&notification);
        assert_eq!(card["body"][0]["style"], "attention");
        assert_eq!(card["body"][0]["items"][0]["text"], "\\*\\*Rain\\*\\* plan");
        assert_eq!(card["body"][1]["text"], "\\- move \\[inside\\]\\(x\\)");
        assert_eq!(
            card["actions"],
            json!([{"type": "Action.OpenUrl", "title": "Open", "url": "https://wedsync.example/t"}])
        );
        assert_eq!(left_out, ["Acknowledge"]);
    }
}
