//! Intake: any bytes as a notification and as a batch, parsed and validated.
#![no_main]

use herald::wedsync::{parse_json, NotificationBatch, WeddingNotification};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    if let Ok(notification) = parse_json::<WeddingNotification>(body) {
        let _ = notification.validate("", "studio");
    }
    if let Ok(batch) = parse_json::<NotificationBatch>(body) {
        for (index, notification) in batch.notifications.iter().enumerate() {
            let _ = notification.validate(&format!("notifications[{index}]"), "studio");
        }
    }
});
