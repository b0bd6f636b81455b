//! Tests of [`super`].
use super::*;
use crate::decide::nodegroup::fixtures::*;
use crate::decide::nodegroup::*;

#[test]
fn scheduled_runs_warm_their_group_up_ahead_of_time() {
    let mut g = group("small", req(4, 16, 0), 0.2, 3);
    let nightly = crate::schedule::Schedule::parse("0 3 * * *", chrono_tz::UTC).unwrap();
    let mut runs = [Scheduled {
        datajob: "analytics/nightly".into(),
        request: req(2, 8, 0),
        schedule: &nightly,
        last_run: None,
        last_run_in_flight: false,
        since: None,
    }];
    let at = |s: &str| crate::labels::parse_rfc3339(s).unwrap();
    let warm =
        |g: &Group, runs: &[Scheduled<'_>], t: DateTime<Utc>| warm_up(g, &next_runs(runs, t), t);
    // No warmUpBefore: nothing ahead of time.
    assert_eq!(warm(&g, &runs, at("2026-11-25T02:59:00Z")), (vec![], None));
    g.warm_up_before = Some(Duration::from_secs(180));
    // Before the window: nothing yet, and when it opens.
    assert_eq!(
        warm(&g, &runs, at("2026-11-25T02:00:00Z")),
        (vec![], Some(at("2026-11-25T02:57:00Z")))
    );
    // In the window, and for a minute after the run is due.
    for t in [
        "2026-11-25T02:57:00Z",
        "2026-11-25T03:00:00Z",
        "2026-11-25T03:00:59Z",
    ] {
        assert_eq!(warm(&g, &runs, at(t)).0, vec![req(2, 8, 0)], "{t}");
    }
    assert_eq!(
        warm(&g, &runs, at("2026-11-25T03:01:01Z")),
        (vec![], Some(at("2026-11-26T02:57:00Z")))
    );
    // Started and its pod not there yet: still due (the node waits for it).
    runs[0].last_run = Some(at("2026-11-25T03:00:00Z"));
    runs[0].last_run_in_flight = true;
    assert_eq!(
        next_runs(&runs, at("2026-11-25T03:00:30Z"))[0].due,
        at("2026-11-25T03:00:00Z")
    );
    assert_eq!(
        next_runs(&runs, at("2026-11-25T03:01:30Z"))[0].due,
        at("2026-11-26T03:00:00Z"),
        "not for longer than the grace"
    );
    // Once the due run has run, it is not warmed for any more: the next one is due.
    runs[0].last_run_in_flight = false;
    assert_eq!(
        next_runs(&runs, at("2026-11-25T03:00:30Z")),
        vec![due(
            "analytics/nightly",
            req(2, 8, 0),
            at("2026-11-26T03:00:00Z")
        )]
    );
    assert_eq!(warm(&g, &runs, at("2026-11-25T03:00:30Z")).0, vec![]);
    // A DataJob made after a due time never runs it (the CronJob starts later).
    runs[0].last_run = None;
    runs[0].since = Some(at("2026-11-25T03:00:10Z"));
    assert_eq!(
        next_runs(&runs, at("2026-11-25T03:00:30Z"))[0].due,
        at("2026-11-26T03:00:00Z")
    );

    // The decision: a node from zero, said as a warm-up, and no scale-down meanwhile.
    let state = GroupState {
        desired: 0,
        nodes: vec![],
        pending: vec![],
        active: 0,
        due: vec![due(
            "analytics/nightly",
            req(2, 8, 0),
            now() + chrono::Duration::seconds(60),
        )],
        idle_since: None,
        last_scale: None,
    };
    let d = decide(&g, &state, now());
    assert_eq!(d.desired, 1);
    assert_eq!(
        d.reason.as_deref(),
        Some("warm-up: 1 scheduled run(s) due soon need 1 more node(s)")
    );
    let warmed = GroupState {
        desired: 1,
        nodes: vec![NodeView {
            name: "a".into(),
            ready: true,
            free: req(4, 16, 0),
            datajob_pods: 0,
            foreign_pods: 0,
            frees_at: None,
        }],
        idle_since: Some(now() - chrono::Duration::hours(1)),
        ..state
    };
    let d = decide(&g, &warmed, now());
    assert_eq!(
        (d.desired, d.reason),
        (1, None),
        "kept for the run, not a second node"
    );
    // Once the run is gone from the due list and the group idles, it shrinks as usual.
    let idle = GroupState {
        due: vec![],
        ..warmed
    };
    assert_eq!(decide(&g, &idle, now()).desired, 0);
}

#[test]
fn warm_up_and_the_schedule_rule_work_together() {
    // Boot 90 s, warm-up 2 minutes: a node is made 2 minutes ahead of a run, kept
    // for a next run due within 2 minutes, and removed when the next is later.
    let g = Group {
        warm_up_before: Some(Duration::from_secs(120)),
        ..scheduled_group()
    };
    let empty = |due_in: i64| GroupState {
        desired: 1,
        nodes: vec![node("a", true, req(4, 16, 0), 0)],
        due: vec![due("analytics/next", req(2, 8, 0), now() + secs(due_in))],
        ..GroupState::default()
    };
    let d = decide(&g, &empty(110), now());
    assert_eq!((d.desired, d.idle_since), (1, None), "within the warm-up");
    let d = decide(&g, &empty(130), now());
    assert_eq!(d.desired, 0, "a warm-up will start one in 10 s, on time");
    assert_eq!(d.recheck_at, Some(now() + secs(10)), "when it begins");
    // From zero, the warm-up makes it again.
    let zero = GroupState {
        nodes: vec![],
        desired: 0,
        ..empty(120)
    };
    assert_eq!(decide(&g, &zero, now()).desired, 1);
}
