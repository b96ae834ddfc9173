//! The README's first command: `herald demo` routes every scenario end to end and succeeds.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_delivers_every_scenario() {
    let summary = herald::demo::run_demo()
        .await
        .expect("the demo delivers every notification to every target");
    // Counted per target (a failover is the same target's delivery): the timeline change to
    // HubSpot, Tave and Slack; the emergency to the down Slack, delivered by its on-call
    // failover; the booking from Tave to Slack; 200 client messages to Slack and Tave.
    assert_eq!(
        summary,
        herald::demo::DemoSummary {
            deliveries: 3 + 1 + 1 + 400,
            delivered: 3 + 1 + 1 + 400,
            slack_messages: 1 + 1 + 200 + 1,
            tave_notes: 1 + 200,
            pager_messages: 1,
            hubspot_notes: 2,
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_all_delivers_to_every_registered_vendor() {
    let rows = herald::demo::run_every_vendor()
        .await
        .expect("every vendor delivers");
    let kinds: Vec<&str> = rows.iter().map(|row| row.kind).collect();
    let registered: Vec<&str> = herald::vendors::all()
        .iter()
        .map(|vendor| vendor.kind())
        .collect();
    assert_eq!(kinds, registered);
    for row in &rows {
        assert_eq!(
            (row.state.as_str(), row.attempts),
            ("delivered", 1),
            "{row:?}"
        );
        assert!(!row.receipt.is_empty(), "{row:?}");
    }
}
