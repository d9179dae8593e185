//! Table tests for lifecycle hooks: a stage's hook holds its point until it decides (the
//! step's own event changes nothing, the route sleeps until the next call); `SUCCEEDED`
//! moves on, `IN_PROGRESS` is called again after the callback delay until the timeout and
//! its declared action, `FAILED` aborts before traffic and reverts after it (or holds); an
//! `after_revert` hook keeps green until it decided and a failure there asks for attention;
//! late and duplicate answers change nothing.

use super::*;
use crate::config::OnFailure;
use crate::hook::{Call, Hook, HookEnd, Observation, OnTimeout, Stage, Status};
use crate::model::HoldCause;
use crate::plan::Step;

const DELAY: u64 = 30;
/// The wait after `IN_PROGRESS`: the delay, and the second that times are rounded down by.
const AGAIN: u64 = DELAY + 1;
const TIMEOUT: u64 = 120;

fn hook(name: &str, stage: Stage, on_timeout: OnTimeout) -> Hook {
    Hook {
        name: name.into(),
        stage,
        lambda: Some(format!(
            "arn:aws:lambda:us-east-1:123456789012:function:greenlight-hook-{name}"
        )),
        webhook: None,
        callback_delay_s: DELAY,
        timeout_s: TIMEOUT,
        on_timeout,
        request_timeout_s: 5,
    }
}

/// `in_phase(phase, max_weight)` with `hooks` declared, canary steps 10/50/100.
fn hooked(phase: Phase, max_weight: u8, hooks: Vec<Hook>) -> State {
    let mut s = in_phase(phase, max_weight);
    s.config.rollout.canary_steps = vec![10, 50, 100];
    s.config.hooks = hooks;
    s.deployment.as_mut().unwrap().healthy_at = Some(NOW - 10);
    s
}

fn answer(name: &str, stage: Stage, weight: u8, number: u32, status: Status, reason: &str) -> Event {
    Event::HookAnswered {
        observation: Observation {
            call: Call {
                hook: name.into(),
                stage,
                weight,
                number,
            },
            status,
            reason: reason.into(),
        },
    }
}

fn shift_due() -> Event {
    Event::ShiftDue {
        green_unready: None,
        analysis: None,
    }
}

fn route_of(state: &State, now: Epoch) -> (Option<Step>, u64) {
    let r = crate::plan::route(&state.config, state.deployment.as_ref().unwrap(), now);
    (r.next, r.wait_s)
}

fn dep(state: &State) -> &Deployment {
    state.deployment.as_ref().unwrap()
}

fn set_traffic_weights(effects: &[Effect]) -> Vec<u8> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::SetTraffic { green_weight, .. } => Some(*green_weight),
            _ => None,
        })
        .collect()
}

#[test]
fn a_green_verified_hook_holds_green_at_zero_until_it_succeeds() {
    let at0 = hooked(
        Phase::Verified { weight: 0 },
        0,
        vec![hook("checks", Stage::GreenVerified, OnTimeout::Rollback)],
    );
    // The route calls it at once; the step's own event changes nothing meanwhile.
    assert_eq!(route_of(&at0, NOW), (Some(Step::ShiftTraffic), 0));
    let held = decide(&at0, &shift_due(), NOW).unwrap();
    assert_eq!(held.state, at0);
    assert!(
        held.effects.is_empty() && held.note.contains("waits for hook checks"),
        "{}",
        held.note
    );
    assert_eq!(
        crate::hooking::due(&at0.config, dep(&at0), NOW).map(|(_, c)| c),
        Some(Call {
            hook: "checks".into(),
            stage: Stage::GreenVerified,
            weight: 0,
            number: 1
        })
    );
    // IN_PROGRESS twice: recorded, called again after the delay each time; one mark.
    let marks = dep(&at0).timeline.len();
    let first = decide(
        &at0,
        &answer("checks", Stage::GreenVerified, 0, 1, Status::InProgress, "warming"),
        NOW,
    )
    .unwrap();
    assert!(first.effects.is_empty());
    assert_eq!(route_of(&first.state, NOW), (Some(Step::ShiftTraffic), AGAIN));
    assert!(
        first.state.service.lease_until.unwrap() >= NOW + AGAIN,
        "the lease covers the wait"
    );
    let second = decide(
        &first.state,
        &answer("checks", Stage::GreenVerified, 0, 2, Status::InProgress, ""),
        NOW + AGAIN,
    )
    .unwrap();
    assert_eq!(route_of(&second.state, NOW + AGAIN), (Some(Step::ShiftTraffic), AGAIN));
    assert_eq!(
        dep(&second.state).timeline.len(),
        marks + 1,
        "one mark for a hook in progress"
    );
    // The first call's answer delivered again: stale, nothing changes.
    let dup = decide(
        &second.state,
        &answer("checks", Stage::GreenVerified, 0, 1, Status::Succeeded, ""),
        NOW + AGAIN + 1,
    )
    .unwrap();
    assert_eq!(dup.state, second.state);
    // SUCCEEDED on the third call: recorded; the step moves green to its first canary step.
    let ok = decide(
        &second.state,
        &answer("checks", Stage::GreenVerified, 0, 3, Status::Succeeded, "all green"),
        NOW + 2 * AGAIN,
    )
    .unwrap();
    let record = &dep(&ok.state).hooks[0];
    assert_eq!((record.calls, record.since), (3, NOW));
    assert_eq!(record.ended, Some(HookEnd::Succeeded { at: NOW + 2 * AGAIN }));
    assert_eq!(route_of(&ok.state, NOW + 2 * AGAIN), (Some(Step::ShiftTraffic), 0));
    let moved = decide(&ok.state, &shift_due(), NOW + 2 * AGAIN).unwrap();
    assert_eq!(phase_of(&moved.state), &Phase::Shifting { from: 0, to: 10 });
}

#[test]
fn a_failed_hook_aborts_before_traffic_and_reverts_after_it() {
    // Before any user traffic: abort, green never weighted.
    let at0 = hooked(
        Phase::Verified { weight: 0 },
        0,
        vec![hook("checks", Stage::GreenVerified, OnTimeout::Rollback)],
    );
    let d = decide(
        &at0,
        &answer(
            "checks",
            Stage::GreenVerified,
            0,
            1,
            Status::Failed,
            "schema v7 missing",
        ),
        NOW,
    )
    .unwrap();
    assert_eq!(phase_of(&d.state).kind(), PhaseName::Aborting);
    assert!(set_traffic_weights(&d.effects).is_empty(), "{:?}", d.effects);
    assert_eq!(dep(&d.state).max_weight, 0);
    assert!(
        d.note
            .contains("hook checks (green_verified at 0%) failed: schema v7 missing"),
        "{}",
        d.note
    );
    // After a canary step's traffic change: traffic back to blue, recorded as the hook's revert.
    let at10 = hooked(
        Phase::Verified { weight: 10 },
        10,
        vec![hook("probe", Stage::TrafficShifted, OnTimeout::Rollback)],
    );
    let d = decide(
        &at10,
        &answer("probe", Stage::TrafficShifted, 10, 1, Status::Failed, "p99 doubled"),
        NOW,
    )
    .unwrap();
    assert_eq!(phase_of(&d.state).kind(), PhaseName::Aborting);
    assert_eq!(set_traffic_weights(&d.effects), [0]);
    let revert = dep(&d.state).revert.clone().unwrap();
    assert_eq!(
        (revert.trigger, revert.requested_by.as_str()),
        (Trigger::Hook, "hook:probe")
    );
    assert!(revert.reason.contains("p99 doubled"));
    // At 100 % before going live, and before blue retires: the same revert.
    for (phase, stage) in [
        (Phase::Verified { weight: 100 }, Stage::AllTraffic),
        (Phase::Baking { until: NOW }, Stage::BeforeRetire),
    ] {
        let s = hooked(phase, 100, vec![hook("last", stage, OnTimeout::Rollback)]);
        let d = decide(&s, &answer("last", stage, 100, 1, Status::Failed, "no"), NOW).unwrap();
        assert_eq!(phase_of(&d.state).kind(), PhaseName::Aborting, "{stage:?}");
        assert_eq!(set_traffic_weights(&d.effects), [0], "{stage:?}");
    }
}

#[test]
fn a_hook_past_its_timeout_does_its_declared_action() {
    for (on_timeout, expect) in [
        (OnTimeout::Rollback, PhaseName::Aborting),
        (OnTimeout::Continue, PhaseName::Verified),
    ] {
        let at10 = hooked(
            Phase::Verified { weight: 10 },
            10,
            vec![hook("slow", Stage::TrafficShifted, on_timeout)],
        );
        let mut s = decide(
            &at10,
            &answer("slow", Stage::TrafficShifted, 10, 1, Status::InProgress, ""),
            NOW,
        )
        .unwrap()
        .state;
        // Called every AGAIN s; the last call comes at the deadline, not after it.
        let mut now = NOW;
        let mut number = 2;
        while now + AGAIN < NOW + TIMEOUT {
            now += AGAIN;
            assert_eq!(route_of(&s, now - AGAIN).1, AGAIN);
            s = decide(
                &s,
                &answer("slow", Stage::TrafficShifted, 10, number, Status::InProgress, ""),
                now,
            )
            .unwrap()
            .state;
            number += 1;
        }
        assert_eq!(dep(&s).hooks[0].next_call_at, NOW + TIMEOUT);
        let d = decide(
            &s,
            &answer("slow", Stage::TrafficShifted, 10, number, Status::InProgress, ""),
            NOW + TIMEOUT,
        )
        .unwrap();
        assert_eq!(phase_of(&d.state).kind(), expect, "{on_timeout:?}");
        assert_eq!(
            dep(&d.state).hooks[0].ended,
            Some(HookEnd::TimedOut {
                at: NOW + TIMEOUT,
                action: on_timeout
            })
        );
        if on_timeout == OnTimeout::Continue {
            let moved = decide(&d.state, &shift_due(), NOW + TIMEOUT).unwrap();
            assert_eq!(phase_of(&moved.state), &Phase::Shifting { from: 10, to: 50 });
        }
    }
}

#[test]
fn hooks_at_one_point_are_called_in_order_and_other_points_do_not_hold() {
    let s = hooked(
        Phase::Verified { weight: 10 },
        10,
        vec![
            hook("first", Stage::TrafficShifted, OnTimeout::Rollback),
            hook("later", Stage::AllTraffic, OnTimeout::Rollback),
            hook("second", Stage::TrafficShifted, OnTimeout::Rollback),
        ],
    );
    let a = decide(
        &s,
        &answer("first", Stage::TrafficShifted, 10, 1, Status::Succeeded, ""),
        NOW,
    )
    .unwrap();
    // The second hook of the point is due at once; answering for the wrong one is stale.
    assert_eq!(route_of(&a.state, NOW), (Some(Step::ShiftTraffic), 0));
    let wrong = decide(
        &a.state,
        &answer("later", Stage::AllTraffic, 100, 1, Status::Succeeded, ""),
        NOW,
    )
    .unwrap();
    assert_eq!(wrong.state, a.state);
    let b = decide(
        &a.state,
        &answer("second", Stage::TrafficShifted, 10, 1, Status::Succeeded, ""),
        NOW,
    )
    .unwrap();
    let moved = decide(&b.state, &shift_due(), NOW).unwrap();
    assert_eq!(phase_of(&moved.state), &Phase::Shifting { from: 10, to: 50 });
    // At 50 % the traffic_shifted hooks are called again (a new point).
    let mut at50 = moved.state.clone();
    at50.deployment.as_mut().unwrap().phase = Phase::Verified { weight: 50 };
    let due = crate::hooking::due(&at50.config, dep(&at50), NOW).map(|(_, c)| (c.hook, c.weight, c.number));
    assert_eq!(due, Some(("first".to_string(), 50, 1)));
}

#[test]
fn on_failure_hold_freezes_a_failed_hook_instead_of_reverting() {
    let mut s = hooked(
        Phase::Verified { weight: 10 },
        10,
        vec![hook("probe", Stage::TrafficShifted, OnTimeout::Rollback)],
    );
    s.deployment.as_mut().unwrap().on_failure = OnFailure::Hold;
    let d = decide(
        &s,
        &answer("probe", Stage::TrafficShifted, 10, 1, Status::Failed, "ledger drift"),
        NOW,
    )
    .unwrap();
    assert!(d.effects.is_empty(), "{:?}", d.effects);
    let held = dep(&d.state).held().cloned().unwrap();
    assert_eq!((held.cause, held.weight), (HoldCause::Hook, 10));
    assert!(d.state.service.attention.as_deref().unwrap().contains("hook failed"));
    assert_eq!(route_of(&d.state, NOW), (None, 0));
}

#[test]
fn an_after_revert_hook_keeps_green_until_it_decides_and_a_failure_asks_for_attention() {
    let hooks = vec![hook("notify", Stage::AfterRevert, OnTimeout::Continue)];
    let mut s = hooked(
        Phase::Aborting {
            reason: "rolled back".into(),
            drain_until: NOW,
        },
        50,
        hooks,
    );
    // Past the fence and the drain: without the hook green would be terminated now.
    let later = NOW + 10_000;
    s.deployment.as_mut().unwrap().traffic_back_at = Some(NOW);
    assert_eq!(route_of(&s, later), (Some(Step::AbortDeployment), 0));
    let abort = Event::Abort {
        reason: "continue".into(),
    };
    let kept = decide(&s, &abort, later).unwrap();
    assert!(
        !kept
            .effects
            .iter()
            .any(|e| matches!(e, Effect::TerminateInstances { .. })),
        "{:?}",
        kept.effects
    );
    let failed = decide(
        &s,
        &answer("notify", Stage::AfterRevert, 0, 1, Status::Failed, "pager down"),
        later,
    )
    .unwrap();
    assert_eq!(phase_of(&failed.state).kind(), PhaseName::Aborting);
    assert!(failed
        .state
        .service
        .attention
        .as_deref()
        .unwrap()
        .contains("after its revert: hook notify (after_revert at 0%) failed: pager down"));
    let ended = decide(&failed.state, &abort, later).unwrap();
    assert!(
        ended
            .effects
            .iter()
            .any(|e| matches!(e, Effect::TerminateInstances { green: true, .. })),
        "{:?}",
        ended.effects
    );
    // An abort of a green that never had traffic is no revert: no hook.
    let untouched = hooked(
        Phase::Aborting {
            reason: "gate".into(),
            drain_until: NOW,
        },
        0,
        vec![hook("notify", Stage::AfterRevert, OnTimeout::Continue)],
    );
    assert!(crate::hooking::next_call_at(&untouched.config, dep(&untouched), later).is_none());
}

#[test]
fn a_before_retire_hook_holds_blue_warm_until_it_succeeds() {
    let s = hooked(
        Phase::Baking { until: NOW },
        100,
        vec![hook("soak", Stage::BeforeRetire, OnTimeout::Rollback)],
    );
    let retire = Event::RetireDue {
        blue_forwarded_by: None,
        analysis: None,
    };
    // Before the window ends the hook is not due; then the route calls it.
    assert!(crate::hooking::next_call_at(&s.config, dep(&s), NOW - 1).is_none());
    let held = decide(&s, &retire, NOW).unwrap();
    assert_eq!(held.state, s);
    let ok = decide(
        &s,
        &answer("soak", Stage::BeforeRetire, 100, 1, Status::Succeeded, ""),
        NOW,
    )
    .unwrap();
    let retired = decide(&ok.state, &retire, NOW).unwrap();
    assert_eq!(phase_of(&retired.state).kind(), PhaseName::Retiring);
}

#[test]
fn the_registration_refuses_hooks_that_cannot_work() {
    let mut config = sample();
    config.hooks = vec![
        hook("dup", Stage::GreenVerified, OnTimeout::Rollback),
        hook("dup", Stage::AllTraffic, OnTimeout::Rollback),
    ];
    config.hooks[1].lambda = Some("arn:aws:lambda:us-east-1:123456789012:function:payments".into());
    let problems = config.validate().unwrap_err().0;
    assert!(
        problems.iter().any(|p| p.contains("the name \"dup\" is taken")),
        "{problems:?}"
    );
    assert!(problems.iter().any(|p| p.contains("greenlight-hook-")), "{problems:?}");
    config.hooks = (0..11)
        .map(|i| hook(&format!("h{i}"), Stage::AllTraffic, OnTimeout::Rollback))
        .collect();
    let problems = config.validate().unwrap_err().0;
    assert!(problems.iter().any(|p| p.contains("at most 10 hooks")), "{problems:?}");
}
