//! Conditions: any text compiled as CEL, and when it compiles, evaluated and inspected.
#![no_main]

use herald::condition::Condition;
use herald::wedsync::WeddingNotification;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|source: &str| {
    if let Ok(condition) = Condition::compile(source) {
        let notification: WeddingNotification = serde_json::from_value(serde_json::json!({
            "notificationId": "n", "type": "timeline_change", "priority": "high",
            "title": "t", "message": "m",
            "weddingContext": {"weddingId": "w", "weddingDate": "2027-06-12", "venue": "Kew"},
            "metadata": {"affectsDeal": true}
        }))
        .expect("the sample notification parses");
        let _ = condition.evaluate(&notification);
        let _ = condition.unknown_fields();
    }
});
