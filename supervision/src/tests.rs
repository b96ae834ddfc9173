//! The supervisor with toy children: each strategy, the intensity limit, escalation, transient
//! children, and children added and removed at runtime.

use std::sync::atomic::{AtomicU32, Ordering};

use ractor::call;

use super::*;

/// A toy child that counts its starts and panics on `Crash`.
struct Toy;

enum ToyMsg {
    Crash,
}

impl Actor for Toy {
    type Msg = ToyMsg;
    type State = ();
    type Arguments = Arc<AtomicU32>;

    async fn pre_start(
        &self,
        _: ActorRef<ToyMsg>,
        starts: Arc<AtomicU32>,
    ) -> Result<(), ActorProcessingErr> {
        starts.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<ToyMsg>,
        message: ToyMsg,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ToyMsg::Crash => panic!("toy crashed on purpose"),
        }
    }
}

fn toy_spec(id: &'static str, restart: Restart, starts: Arc<AtomicU32>) -> ChildSpec {
    ChildSpec::new(id, restart, move |supervisor| {
        let starts = starts.clone();
        Box::pin(async move {
            let (actor, _) = Actor::spawn_linked(None, Toy, starts, supervisor).await?;
            Ok(actor.get_cell())
        })
    })
}

fn args(strategy: Strategy, on_exhausted: OnExhausted, children: Vec<ChildSpec>) -> SupervisorArgs {
    SupervisorArgs {
        strategy,
        intensity: Intensity {
            max_restarts: 3,
            within: Duration::from_secs(10),
        },
        backoff: RestartBackoff {
            initial: Duration::from_millis(5),
            max: Duration::from_millis(40),
        },
        on_exhausted,
        children,
    }
}

/// Crashes the child at `child_index` in start order.
async fn crash(supervisor: &ActorRef<SupervisorMsg>, child_index: usize) {
    let cell = reports(supervisor).await[child_index]
        .cell
        .clone()
        .expect("child is running");
    cell.send_message(ToyMsg::Crash).expect("child is alive");
}

/// Gives a supervisor time to (wrongly) act, for checks that something did *not* happen.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(150)).await;
}

/// Polls `check` until it holds; fails the test naming `what` after five seconds. Restarts are
/// waited for this way, not by sleeping, so a loaded machine cannot outrun the test.
async fn eventually<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until `starts` reached `count` and every child runs again.
async fn restarted(supervisor: &ActorRef<SupervisorMsg>, starts: &[&Arc<AtomicU32>], count: u32) {
    eventually("the children restarted", || async {
        starts.iter().all(|s| s.load(Ordering::SeqCst) >= count)
            && reports(supervisor)
                .await
                .iter()
                .all(|r| r.status == ChildStatus::Running && r.cell.is_some())
    })
    .await;
}

async fn reports(supervisor: &ActorRef<SupervisorMsg>) -> Vec<ChildReport> {
    call!(supervisor, SupervisorMsg::Children).expect("supervisor answers")
}

#[test]
fn backoff_doubles_up_to_its_cap() {
    let backoff = RestartBackoff {
        initial: Duration::from_millis(10),
        max: Duration::from_millis(50),
    };
    assert_eq!(backoff.delay_for(1), Duration::from_millis(10));
    assert_eq!(backoff.delay_for(2), Duration::from_millis(20));
    assert_eq!(backoff.delay_for(3), Duration::from_millis(40));
    assert_eq!(backoff.delay_for(4), Duration::from_millis(50));
    assert_eq!(backoff.delay_for(400), Duration::from_millis(50));
}

#[tokio::test]
async fn one_for_one_restarts_only_the_failed_child() {
    let (a, b) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let children = vec![
        toy_spec("a", Restart::Permanent, a.clone()),
        toy_spec("b", Restart::Permanent, b.clone()),
    ];
    let (supervisor, _) = Actor::spawn(
        None,
        Supervisor,
        args(Strategy::OneForOne, OnExhausted::GiveUp, children),
    )
    .await
    .unwrap();
    crash(&supervisor, 0).await;
    restarted(&supervisor, &[&a], 2).await;
    settle().await;
    assert_eq!(a.load(Ordering::SeqCst), 2, "crashed child started twice");
    assert_eq!(b.load(Ordering::SeqCst), 1, "sibling untouched");
    let reports = reports(&supervisor).await;
    assert_eq!(reports[0].status, ChildStatus::Running);
    assert_eq!(reports[0].total_restarts, 1);
    supervisor.stop(None);
}

#[tokio::test]
async fn one_for_all_restarts_every_child() {
    let (a, b) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let children = vec![
        toy_spec("a", Restart::Permanent, a.clone()),
        toy_spec("b", Restart::Permanent, b.clone()),
    ];
    let (supervisor, _) = Actor::spawn(
        None,
        Supervisor,
        args(Strategy::OneForAll, OnExhausted::GiveUp, children),
    )
    .await
    .unwrap();
    crash(&supervisor, 1).await;
    restarted(&supervisor, &[&a, &b], 2).await;
    settle().await;
    assert_eq!(a.load(Ordering::SeqCst), 2);
    assert_eq!(b.load(Ordering::SeqCst), 2);
    assert!(reports(&supervisor)
        .await
        .iter()
        .all(|r| r.status == ChildStatus::Running));
    supervisor.stop(None);
}

#[tokio::test]
async fn rest_for_one_restarts_the_child_and_those_after_it() {
    let starts: Vec<_> = (0..3).map(|_| Arc::new(AtomicU32::new(0))).collect();
    let children = vec![
        toy_spec("a", Restart::Permanent, starts[0].clone()),
        toy_spec("b", Restart::Permanent, starts[1].clone()),
        toy_spec("c", Restart::Permanent, starts[2].clone()),
    ];
    let (supervisor, _) = Actor::spawn(
        None,
        Supervisor,
        args(Strategy::RestForOne, OnExhausted::GiveUp, children),
    )
    .await
    .unwrap();
    crash(&supervisor, 1).await;
    restarted(&supervisor, &[&starts[1], &starts[2]], 2).await;
    settle().await;
    let counts: Vec<u32> = starts.iter().map(|s| s.load(Ordering::SeqCst)).collect();
    assert_eq!(counts, vec![1, 2, 2]);
    supervisor.stop(None);
}

#[tokio::test]
async fn crash_loop_is_given_up_after_the_intensity_limit() {
    let a = Arc::new(AtomicU32::new(0));
    let (supervisor, _) = Actor::spawn(
        None,
        Supervisor,
        args(
            Strategy::OneForOne,
            OnExhausted::GiveUp,
            vec![toy_spec("a", Restart::Permanent, a.clone())],
        ),
    )
    .await
    .unwrap();
    for restart in 1..=3 {
        crash(&supervisor, 0).await;
        restarted(&supervisor, &[&a], restart + 1).await;
    }
    crash(&supervisor, 0).await;
    eventually("the child is given up", || async {
        matches!(
            reports(&supervisor).await[0].status,
            ChildStatus::Failed { .. }
        )
    })
    .await;
    settle().await;
    assert_eq!(
        a.load(Ordering::SeqCst),
        4,
        "one start plus three restarts, then no more"
    );
    let report = &reports(&supervisor).await[0];
    assert!(
        matches!(&report.status, ChildStatus::Failed { reason } if reason.contains("toy crashed"))
    );
    assert!(
        supervisor.get_children().is_empty(),
        "the given-up child is not running"
    );
    supervisor.stop(None);
}

#[tokio::test]
async fn exhausted_intensity_escalates_to_the_parent() {
    let a = Arc::new(AtomicU32::new(0));
    let (supervisor, handle) = Actor::spawn(
        None,
        Supervisor,
        args(
            Strategy::OneForOne,
            OnExhausted::Escalate,
            vec![toy_spec("a", Restart::Permanent, a.clone())],
        ),
    )
    .await
    .unwrap();
    for restart in 1..=3 {
        crash(&supervisor, 0).await;
        restarted(&supervisor, &[&a], restart + 1).await;
    }
    crash(&supervisor, 0).await;
    tokio::time::timeout(Duration::from_secs(2), handle)
        .await
        .expect("supervisor exits")
        .unwrap();
    assert_eq!(supervisor.get_status(), ractor::ActorStatus::Stopped);
}

#[tokio::test]
async fn transient_child_that_stops_normally_is_not_restarted() {
    let a = Arc::new(AtomicU32::new(0));
    let (supervisor, _) = Actor::spawn(
        None,
        Supervisor,
        args(
            Strategy::OneForOne,
            OnExhausted::GiveUp,
            vec![toy_spec("a", Restart::Transient, a.clone())],
        ),
    )
    .await
    .unwrap();
    reports(&supervisor).await[0]
        .cell
        .clone()
        .unwrap()
        .stop(None);
    settle().await;
    assert_eq!(a.load(Ordering::SeqCst), 1);
    assert_eq!(reports(&supervisor).await[0].status, ChildStatus::Stopped);
    // A stopped child starts again when asked, in its place.
    let again = call!(
        supervisor,
        SupervisorMsg::StartChild,
        toy_spec("a", Restart::Transient, a.clone())
    )
    .unwrap();
    assert_eq!(again, Ok(()));
    assert_eq!(a.load(Ordering::SeqCst), 2);
    let children = reports(&supervisor).await;
    assert_eq!(
        (children.len(), &children[0].status),
        (1, &ChildStatus::Running)
    );
    supervisor.stop(None);
}

#[tokio::test]
async fn children_can_be_added_and_removed_at_runtime() {
    let (supervisor, _) = Actor::spawn(
        None,
        Supervisor,
        args(Strategy::OneForOne, OnExhausted::GiveUp, vec![]),
    )
    .await
    .unwrap();
    let a = Arc::new(AtomicU32::new(0));
    let added = call!(
        supervisor,
        SupervisorMsg::StartChild,
        toy_spec("a", Restart::Permanent, a.clone())
    )
    .unwrap();
    assert_eq!(added, Ok(()));
    let duplicate = call!(
        supervisor,
        SupervisorMsg::StartChild,
        toy_spec("a", Restart::Permanent, a.clone())
    )
    .unwrap();
    assert!(duplicate.unwrap_err().contains("exists already"));
    supervisor
        .cast(SupervisorMsg::RemoveChild("a".into()))
        .unwrap();
    settle().await;
    assert!(reports(&supervisor).await.is_empty());
    assert_eq!(
        a.load(Ordering::SeqCst),
        1,
        "a removed child is not restarted"
    );
    supervisor.stop(None);
}
