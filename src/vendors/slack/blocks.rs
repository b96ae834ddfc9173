//! A WedSync notification as Slack Block Kit: what Slack's text parsing and block limits allow.
//!
//! Every string from WedSync is escaped before it reaches Slack's mrkdwn (`&`, `<` and `>` are
//! Slack's control characters: `<!channel>` in a message would ping the whole channel and
//! `<https://...|label>` would disguise a link). Nothing is cut silently: a long message is spread
//! over as many sections as it needs, buttons over as many `actions` blocks as they need (no block
//! repeats an `action_id`, which Slack refuses), and an action Slack cannot show is listed in the
//! receipt's `droppedActions` with the reason.

use serde_json::{json, Value};

use crate::connectors::cut_marked;
use crate::wedsync::{Priority, WeddingNotification};

/// Slack's limits (Block Kit reference): characters in a section's text, blocks in a message,
/// elements in an `actions` block, characters in a button's url, a header's and a button's text.
const SECTION_CHARS: usize = 3000;
pub(super) const MAX_BLOCKS: usize = 50;
const BUTTONS_PER_BLOCK: usize = 25;
const BUTTON_URL_CHARS: usize = 3000;
const HEADER_CHARS: usize = 150;
const BUTTON_TEXT_CHARS: usize = 75;
/// The fallback `text` Herald sends: Slack truncates beyond 40,000 characters and advises 4,000.
pub(super) const FALLBACK_TEXT_CHARS: usize = 4000;

/// A notification's action buttons, and those Slack could not take.
#[derive(Debug, Default)]
pub struct ActionBlocks {
    pub blocks: Vec<Value>,
    /// `{actionId, reason}` for each action left out.
    pub dropped: Vec<Value>,
}

/// Escapes the characters Slack parses in text, as Slack's formatting reference asks.
pub fn escape_mrkdwn(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// `text` escaped in pieces of at most `max_chars` characters each, never splitting an entity.
fn escaped_pieces(text: &str, max_chars: usize) -> Vec<String> {
    let mut pieces = Vec::new();
    let (mut piece, mut length) = (String::new(), 0);
    for c in text.chars() {
        let escaped = escape_mrkdwn(c.encode_utf8(&mut [0; 4]));
        let width = escaped.chars().count();
        if length + width > max_chars {
            pieces.push(std::mem::take(&mut piece));
            length = 0;
        }
        piece.push_str(&escaped);
        length += width;
    }
    if !piece.is_empty() {
        pieces.push(piece);
    }
    pieces
}

/// `text` escaped and cut to `max_chars` characters (the cut marked with an ellipsis): for the
/// fallback `text` that notifications show, where a cut is expected and the blocks hold it all.
pub fn escaped_within(text: &str, max_chars: usize) -> String {
    let mut pieces = escaped_pieces(text, max_chars.saturating_sub(1)).into_iter();
    let first = pieces.next().unwrap_or_default();
    match pieces.next() {
        None => first,
        Some(_) => first + "…",
    }
}

/// The notification's blocks: a header marked by priority, the message over as many sections as
/// it needs, and the wedding's details as context. The actions come apart
/// ([`action_blocks`]): in the message's thread, or after these when the message is scheduled.
pub fn slack_blocks(notification: &WeddingNotification) -> Vec<Value> {
    let marker = match notification.priority {
        Priority::Emergency => ":rotating_light: ",
        Priority::High => ":warning: ",
        Priority::Normal | Priority::Low => "",
    };
    let mut blocks = vec![json!({
        "type": "header",
        "text": {"type": "plain_text", "text": cut_marked(&format!("{marker}{}", notification.title), HEADER_CHARS), "emoji": true}
    })];
    blocks.extend(
        escaped_pieces(&notification.message, SECTION_CHARS)
            .into_iter()
            .map(|text| json!({"type": "section", "text": {"type": "mrkdwn", "text": text}})),
    );
    if let Some(context) = &notification.wedding_context {
        let mut details = vec![format!(
            "*Wedding* {}",
            escape_mrkdwn(&context.wedding_date)
        )];
        for (label, value) in [
            ("Venue", &context.venue),
            ("Couple", &context.couple_names),
            ("Vendor", &context.vendor_name),
        ] {
            if let Some(value) = value {
                details.push(format!(
                    "*{label}* {}",
                    escaped_within(value, SECTION_CHARS - label.len() - 3)
                ));
            }
        }
        let elements: Vec<Value> = details
            .into_iter()
            .map(|text| json!({"type": "mrkdwn", "text": text}))
            .collect();
        blocks.push(json!({"type": "context", "elements": elements}));
    }
    blocks
}

/// The notification's actions as buttons (each button's value is the notification id, which
/// interactivity acknowledges), in at most `block_budget` `actions` blocks. A button goes in the
/// first block that has room and does not yet hold its `action_id`, so two actions WedSync gave
/// the same id both show, in different blocks, and a click on either acknowledges that id.
pub fn action_blocks(notification: &WeddingNotification, block_budget: usize) -> ActionBlocks {
    let mut rows: Vec<Vec<Value>> = Vec::new();
    let mut dropped = Vec::new();
    for action in &notification.actions {
        if action
            .url
            .as_ref()
            .is_some_and(|url| url.chars().count() > BUTTON_URL_CHARS)
        {
            dropped.push(json!({"actionId": action.action_id, "reason": format!("its url is longer than the {BUTTON_URL_CHARS} characters Slack takes")}));
            continue;
        }
        let mut button = json!({
            "type": "button",
            "text": {"type": "plain_text", "text": cut_marked(&action.label, BUTTON_TEXT_CHARS)},
            "action_id": action.action_id,
            "value": notification.notification_id,
        });
        if let Some(url) = &action.url {
            button["url"] = json!(url);
        }
        if let Some(style @ ("primary" | "danger")) = action.style.as_deref() {
            button["style"] = json!(style);
        }
        let room = rows.iter().position(|row| {
            row.len() < BUTTONS_PER_BLOCK
                && row
                    .iter()
                    .all(|other| other["action_id"] != button["action_id"])
        });
        match room {
            Some(index) => rows[index].push(button),
            None if rows.len() < block_budget => rows.push(vec![button]),
            None => dropped.push(json!({"actionId": action.action_id, "reason": format!("no room left in the message: Slack allows {MAX_BLOCKS} blocks of {BUTTONS_PER_BLOCK} buttons")})),
        }
    }
    let blocks = rows
        .into_iter()
        .enumerate()
        .map(|(index, elements)| {
            let block_id = match index {
                0 => "herald_actions".to_owned(),
                n => format!("herald_actions_{}", n + 1),
            };
            json!({"type": "actions", "block_id": block_id, "elements": elements})
        })
        .collect();
    ActionBlocks { blocks, dropped }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wedsync::{NotificationAction, WeddingContext};

    fn notification() -> WeddingNotification {
        WeddingNotification {
            notification_id: "n-1".into(),
            organization_id: Some("org".into()),
            notification_type: "emergency_alert".into(),
            priority: Priority::Emergency,
            title: "Marquee wind warning".into(),
            message: "Gusts of 50 mph expected at 14:00".into(),
            wedding_context: Some(WeddingContext {
                wedding_id: Some("w-1".into()),
                wedding_date: "2027-06-12".into(),
                venue: Some("Kew Gardens".into()),
                vendor_name: None,
                couple_names: Some("Sam & Alex".into()),
                guest_count: None,
                timezone: None,
                venue_location: None,
            }),
            contacts: vec![],
            actions: vec![action("ack", "Acknowledge")],
            metadata: Default::default(),
            created_at: None,
            booking_id: None,
            tave_job_id: None,
        }
    }

    fn action(id: &str, label: &str) -> NotificationAction {
        NotificationAction {
            action_id: id.into(),
            notification_id: None,
            action_type: None,
            label: label.into(),
            url: None,
            style: Some("danger".into()),
        }
    }

    #[test]
    fn blocks_carry_priority_message_and_escaped_context() {
        let blocks = slack_blocks(&notification());
        assert_eq!(blocks.len(), 3, "the buttons go apart");
        assert_eq!(
            blocks[0]["text"]["text"],
            ":rotating_light: Marquee wind warning"
        );
        assert_eq!(
            blocks[1]["text"]["text"],
            "Gusts of 50 mph expected at 14:00"
        );
        assert_eq!(blocks[2]["elements"][1]["text"], "*Venue* Kew Gardens");
        assert_eq!(blocks[2]["elements"][2]["text"], "*Couple* Sam &amp; Alex");
    }

    #[test]
    fn slack_control_sequences_in_wedsync_strings_are_escaped() {
        let mut hostile = notification();
        hostile.message = "<!channel> see <https://evil.example|the timeline> & more".into();
        hostile.wedding_context.as_mut().unwrap().venue = Some("<@U123>".into());
        let blocks = slack_blocks(&hostile);
        assert_eq!(
            blocks[1]["text"]["text"],
            "&lt;!channel&gt; see &lt;https://evil.example|the timeline&gt; &amp; more"
        );
        assert_eq!(blocks[2]["elements"][1]["text"], "*Venue* &lt;@U123&gt;");
        assert_eq!(
            escaped_within("a <b> & c", 4000),
            "a &lt;b&gt; &amp; c",
            "the fallback text too"
        );
    }

    #[test]
    fn a_long_message_spreads_over_sections_without_losing_a_character() {
        let mut long = notification();
        long.message = format!("{}&{}", "x".repeat(2998), "y".repeat(17_000));
        let blocks = slack_blocks(&long);
        let sections: Vec<&str> = blocks
            .iter()
            .filter(|block| block["type"] == "section")
            .map(|block| block["text"]["text"].as_str().unwrap())
            .collect();
        assert_eq!(sections.len(), 7);
        assert!(sections.iter().all(|text| text.chars().count() <= 3000));
        assert!(
            sections[0].ends_with('x') && sections[1].starts_with("&amp;"),
            "an entity is never split"
        );
        assert_eq!(
            sections.concat(),
            format!("{}&amp;{}", "x".repeat(2998), "y".repeat(17_000))
        );
        let header = cut_marked(&"t".repeat(400), 150);
        assert_eq!(header.chars().count(), 150);
        assert!(header.ends_with('…'));
        let fallback = escaped_within(&"&".repeat(1000), 4000);
        assert!(fallback.chars().count() <= 4000 && fallback.ends_with("&amp;…"));
    }

    #[test]
    fn repeated_action_ids_go_in_separate_blocks_and_nothing_is_dropped_silently() {
        let mut many = notification();
        many.actions = vec![
            action("confirm", "Confirm"),
            action("confirm", "Confirm for the venue"),
            action("call", "Call the planner"),
        ];
        let mut long_link = action("open", "Open the plan");
        long_link.url = Some(format!("https://example.com/{}", "p".repeat(3000)));
        many.actions.push(long_link);
        let built = action_blocks(&many, MAX_BLOCKS);
        let ids: Vec<Vec<&str>> = built
            .blocks
            .iter()
            .map(|block| {
                block["elements"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|button| button["action_id"].as_str().unwrap())
                    .collect()
            })
            .collect();
        assert_eq!(ids, vec![vec!["confirm", "call"], vec!["confirm"]]);
        assert_eq!(built.blocks[0]["block_id"], "herald_actions");
        assert_eq!(built.blocks[1]["block_id"], "herald_actions_2");
        assert_eq!(built.blocks[0]["elements"][0]["value"], "n-1");
        assert_eq!(built.dropped.len(), 1);
        assert_eq!(built.dropped[0]["actionId"], "open");

        // 30 actions fit two blocks; with room for one block, five are dropped and named.
        many.actions = (0..30).map(|n| action(&format!("a{n}"), "Do it")).collect();
        assert_eq!(action_blocks(&many, MAX_BLOCKS).blocks.len(), 2);
        let squeezed = action_blocks(&many, 1);
        assert_eq!(squeezed.blocks.len(), 1);
        let dropped: Vec<&str> = squeezed
            .dropped
            .iter()
            .map(|d| d["actionId"].as_str().unwrap())
            .collect();
        assert_eq!(dropped, ["a25", "a26", "a27", "a28", "a29"]);
        many.actions.clear();
        assert!(action_blocks(&many, MAX_BLOCKS).blocks.is_empty());
    }
}
