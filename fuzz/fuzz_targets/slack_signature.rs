//! Slack's inbound signature check: any headers and body, never a panic, and never accepted
//! unless the signature is the one Herald would compute.
#![no_main]

use herald::vendors::slack::{sign_slack_request, verify_slack_request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&str, &str, &[u8])| {
    let (timestamp, signature, body) = input;
    let now = 1_800_000_000;
    let accepted = verify_slack_request(
        "signing-secret",
        Some(timestamp),
        Some(signature),
        body,
        now,
    )
    .is_ok();
    if accepted {
        let timestamp: u64 = timestamp.trim().parse().expect("accepted timestamps parse");
        let expected = sign_slack_request("signing-secret", timestamp, body);
        let digest = signature
            .strip_prefix("v0=")
            .expect("accepted signatures start v0=");
        assert!(digest.eq_ignore_ascii_case(&expected["v0=".len()..]));
    }
});
