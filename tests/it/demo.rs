//! The README's first command: `herald demo` routes every scenario end to end and succeeds.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_delivers_every_scenario() {
    herald::demo::run_demo()
        .await
        .expect("the demo delivers every notification to every target");
}
