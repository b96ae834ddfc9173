//! Property tests over what any caller can send: whatever the bytes, parsing and validating a
//! notification, compiling and rendering a template or a condition, and checking an inbound
//! signature answer with an error of the documented shape and never panic.

use std::sync::OnceLock;

use herald::condition::Condition;
use herald::template::{Template, TemplateError};
use herald::vendors::slack::{sign_slack_request, verify_slack_request};
use herald::wedsync::{parse_json, NotificationBatch, ParseError, WeddingNotification};
use proptest::prelude::*;
use serde_json::{json, Value};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    })
}

fn valid_notification() -> Value {
    json!({
        "notificationId": "n-1", "type": "timeline_change", "priority": "high",
        "title": "Ceremony moved", "message": "Now at 15:30",
        "weddingContext": {"weddingId": "w-1", "weddingDate": "2027-06-12", "venue": "Kew Gardens", "timezone": "Europe/London"},
        "contacts": [{"email": "sam@example.com", "phone": "+447700900123"}],
        "actions": [{"actionId": "ack", "label": "On it"}],
        "metadata": {"affectsDeal": true}
    })
}

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(Value::from),
        "\\PC{0,20}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-zA-Z]{1,8}", inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// The field paths of a valid notification that a mutation may replace.
const PATHS: &[&[&str]] = &[
    &["notificationId"],
    &["type"],
    &["priority"],
    &["title"],
    &["message"],
    &["createdAt"],
    &["weddingContext"],
    &["weddingContext", "weddingId"],
    &["weddingContext", "weddingDate"],
    &["weddingContext", "guestCount"],
    &["weddingContext", "timezone"],
    &["contacts"],
    &["actions"],
    &["metadata"],
];

/// A field error must name a field: a path such as `weddingContext.weddingDate`.
fn assert_error_shape(error: &ParseError) {
    if let ParseError::Invalid(field) = error {
        assert!(!field.reason.is_empty(), "{field:?}");
        assert!(!field.field.contains(' '), "{field:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_are_parsed_or_refused(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        match parse_json::<WeddingNotification>(&bytes) {
            Ok(notification) => drop(notification.validate("", "studio")),
            Err(error) => assert_error_shape(&error),
        }
        if let Err(error) = parse_json::<NotificationBatch>(&bytes) {
            assert_error_shape(&error);
        }
    }

    #[test]
    fn a_mutated_notification_is_accepted_or_refused_naming_a_field(
        path in prop::sample::select(PATHS),
        value in any_json(),
    ) {
        let mut notification = valid_notification();
        let mut target = &mut notification;
        for key in &path[..path.len() - 1] {
            target = &mut target[*key];
        }
        target[path[path.len() - 1]] = value;
        let body = notification.to_string();
        match parse_json::<WeddingNotification>(body.as_bytes()) {
            Ok(parsed) => {
                if let Err(error) = parsed.validate("notifications[0]", "studio") {
                    prop_assert!(error.field.starts_with("notifications[0]."), "{error:?}");
                }
            }
            Err(ParseError::Malformed(message)) => {
                prop_assert!(false, "well-formed JSON called malformed: {message}");
            }
            Err(ParseError::Invalid(error)) => {
                prop_assert!(error.field.starts_with(path[0]), "{path:?} -> {error:?}");
            }
        }
    }

    #[test]
    fn any_template_compiles_or_is_refused_and_renders_within_bounds(
        source in prop::collection::vec(
            prop_oneof![
                Just("{{"), Just("}}"), Just("{%"), Just("%}"), Just("{#"), Just("#}"),
                Just(" if "), Just(" for x in contacts "), Just(" endif "), Just(" endfor "),
                Just(" else "), Just(" set "), Just("|upper"), Just("|length"), Just("-"),
                Just(" not "), Just("("), Just(")"), Just("["), Just("]"), Just("*"),
                Just(" title "), Just(" weddingContext.venue "), Just("'x'"), Just("\""),
                Just("\\"), Just(" ~ "), Just(" + "), Just("1"), Just("text "), Just("é"), Just("燇"),
            ],
            0..40,
        ).prop_map(|parts| parts.concat()),
    ) {
        match Template::compile(&source) {
            Ok(template) => {
                let rendered = runtime().block_on(template.render(&valid_notification()));
                if let Ok(text) = rendered {
                    prop_assert!(text.len() <= herald::template::MAX_OUTPUT_BYTES);
                }
            }
            Err(TemplateError::Busy | TemplateError::Timeout) => {
                prop_assert!(false, "compiling does not wait for renderers");
            }
            Err(refused) => prop_assert!(!refused.to_string().is_empty()),
        }
    }

    #[test]
    fn any_condition_compiles_or_is_refused_and_evaluates_without_panicking(
        source in prop::collection::vec(
            prop_oneof![
                Just("notification.type"), Just("wedding.venue"), Just("metadata.x"),
                Just(" == "), Just(" && "), Just(" || "), Just("!"), Just("-"), Just("("),
                Just(")"), Just("["), Just("]"), Just("\"a\""), Just("1"), Just("has("),
                Just(".exists(c, "), Just(".size()"), Just(" in "), Just("true"),
            ],
            0..30,
        ).prop_map(|parts| parts.concat()),
    ) {
        let notification: WeddingNotification =
            serde_json::from_value(valid_notification()).unwrap();
        if let Ok(condition) = Condition::compile(&source) {
            drop(condition.evaluate(&notification));
            drop(condition.unknown_fields());
        }
    }

    #[test]
    fn slack_signatures_verify_only_the_signed_request(
        secret in "[a-f0-9]{8,40}",
        body in prop::collection::vec(any::<u8>(), 0..256),
        flip in any::<prop::sample::Index>(),
        timestamp_header in prop::option::of("\\PC{0,24}"),
        signature_header in prop::option::of("\\PC{0,80}"),
    ) {
        let now = 1_800_000_000u64;
        let signature = sign_slack_request(&secret, now, &body);
        let timestamp = now.to_string();
        prop_assert!(verify_slack_request(&secret, Some(&timestamp), Some(&signature), &body, now).is_ok());
        if !body.is_empty() {
            let mut tampered = body.clone();
            tampered[flip.index(body.len())] ^= 1;
            prop_assert!(verify_slack_request(&secret, Some(&timestamp), Some(&signature), &tampered, now).is_err());
        }
        prop_assert!(verify_slack_request(&secret, Some(&timestamp), Some(&signature), &body, now + 301).is_err());
        // Whatever arrives in the headers, the answer is a refusal or, only for the real
        // signature, acceptance; never a panic.
        let forged = verify_slack_request(
            &secret,
            timestamp_header.as_deref(),
            signature_header.as_deref(),
            &body,
            now,
        );
        if signature_header.as_deref() != Some(signature.as_str()) {
            prop_assert!(forged.is_err());
        }
    }
}
