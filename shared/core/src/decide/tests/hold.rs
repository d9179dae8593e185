//! Table tests for `on_failure: hold`: a failed gate, a regression found by analysis or an
//! alarm freezes the deployment where it is (no traffic change, nothing deregistered or
//! terminated, the service needing attention, no execution left running); only an engineer's
//! promote, rollback or abort moves it again, each once whatever the duplicates.

use super::canary::{judged, regressed, shift_due as judged_shift_due};
use super::*;
use crate::analysis::Inconclusive;
use crate::config::OnFailure;
use crate::model::{HoldAction, HoldCause};
use crate::plan::Step;

/// `in_phase` with the deployment's release saying `on_failure: hold`.
fn holding(phase: Phase, max_weight: u8) -> State {
    let mut s = in_phase(phase, max_weight);
    hold_on_failure(&mut s);
    s
}

fn hold_on_failure(s: &mut State) {
    let dep = s.deployment.as_mut().unwrap();
    dep.on_failure = OnFailure::Hold;
    if dep.healthy_at.is_none() && dep.max_weight > 0 {
        dep.healthy_at = Some(NOW - 100);
    }
    let dep = s.deployment.as_ref().unwrap();
    s.service.revert_plan = fast_revert_plan(&s.service, &s.config, dep);
}

fn dep(state: &State) -> &Deployment {
    state.deployment.as_ref().unwrap()
}

fn shift_due() -> Event {
    Event::ShiftDue {
        green_unready: None,
        analysis: None,
    }
}

fn route_of(state: &State, now: Epoch) -> crate::plan::Route {
    crate::plan::route(&state.config, dep(state), now)
}

/// The frozen state's promises: one hold of `cause` not ended, the service needing
/// attention with the three commands, no fast plan, and no execution left running.
fn assert_held(state: &State, cause: HoldCause, weight: u8) {
    let held = dep(state).held().expect("held");
    assert_eq!((held.cause, held.weight), (cause, weight));
    let attention = state.service.attention.as_deref().expect("the service needs attention");
    assert!(
        attention.contains("greenlight promote checkout") && attention.contains("greenlight rollback checkout"),
        "{attention}"
    );
    assert!(
        state.service.revert_plan.is_none(),
        "no plan while held: alarms flip nothing"
    );
    assert_eq!(route_of(state, NOW).next, None, "nothing polls a held deployment");
}

fn no_traffic_or_fleet_change(effects: &[Effect]) -> bool {
    !effects.iter().any(|e| {
        matches!(
            e,
            Effect::SetTraffic { .. } | Effect::DeregisterTargets { .. } | Effect::TerminateInstances { .. }
        )
    })
}

#[test]
fn the_release_says_whether_a_failure_holds_and_rollbacks_and_repaves_never_hold() {
    let start = |request: ImageRequest, config: OnFailure| {
        let mut state = idle();
        state.config.rollout.on_failure = config;
        let event = Event::Start {
            request,
            image: good_image(),
            firing_alarms: vec![],
        };
        decide(&state, &event, NOW)
            .unwrap()
            .state
            .deployment
            .unwrap()
            .on_failure
    };
    let release = |on_failure: Option<OnFailure>| ImageRequest {
        on_failure,
        ..request("v2", AMI_V2)
    };
    assert_eq!(start(release(None), OnFailure::Revert), OnFailure::Revert);
    assert_eq!(start(release(None), OnFailure::Hold), OnFailure::Hold);
    assert_eq!(
        start(release(Some(OnFailure::Hold)), OnFailure::Revert),
        OnFailure::Hold
    );
    assert_eq!(
        start(release(Some(OnFailure::Revert)), OnFailure::Hold),
        OnFailure::Revert
    );
    let rollback = ImageRequest {
        rollback_of: Some("ev-9".into()),
        ..release(Some(OnFailure::Hold))
    };
    assert_eq!(start(rollback, OnFailure::Hold), OnFailure::Revert);
    // Its ledger form: omitted unless hold, read back the same.
    let held = holding(Phase::Verified { weight: 10 }, 10);
    let json = serde_json::to_value(dep(&held)).unwrap();
    assert_eq!(json["on_failure"], "hold");
    assert!(serde_json::to_value(dep(&in_phase(Phase::Verified { weight: 10 }, 10)))
        .unwrap()
        .get("on_failure")
        .is_none());
}

#[test]
fn an_alarm_holds_instead_of_reverting_and_its_plan_is_not_the_alarms() {
    let canary = holding(Phase::Verified { weight: 10 }, 10);
    let plan = canary.service.revert_plan.as_ref().expect("an engineer's fast path");
    assert!(plan.alarms_hold, "the plan is not mirrored onto the alarms");
    let d = decide(&canary, &alarm_rollback(None), NOW).unwrap();
    assert!(d.effects.is_empty(), "{:?}", d.effects);
    assert_eq!(phase_of(&d.state), &Phase::Verified { weight: 10 });
    assert!(dep(&d.state).revert.is_none());
    assert_held(&d.state, HoldCause::Alarm, 10);
    assert!(dep(&d.state).held().unwrap().reason.contains("alarm:checkout-5xx"));
    // The same alarm again (or another): nothing more.
    let again = decide(&d.state, &alarm_rollback(None), NOW + 5).unwrap();
    assert!(again.effects.is_empty());
    assert_eq!(dep(&again.state).holds.len(), 1);
    // In the bake window too: blue stays warm, nothing is retired.
    let baking = holding(Phase::Baking { until: NOW + 600 }, 100);
    let d = decide(&baking, &alarm_rollback(None), NOW).unwrap();
    assert!(d.effects.is_empty());
    assert_held(&d.state, HoldCause::Alarm, 100);
    assert!(d
        .state
        .service
        .attention
        .as_deref()
        .unwrap()
        .contains("greenlight promote"));
    // Without hold, the same alarm reverts (the table in `rollbacks_while_blue_is_warm`).
    let reverting = decide(
        &in_phase(Phase::Verified { weight: 10 }, 10),
        &alarm_rollback(None),
        NOW,
    )
    .unwrap();
    assert!(matches!(phase_of(&reverting.state), Phase::Aborting { .. }));
    // A fast path that flipped already (a plan written before): the flip is recorded.
    let flipped = decide(&canary, &alarm_rollback(Some(80)), NOW).unwrap();
    assert!(matches!(phase_of(&flipped.state), Phase::Aborting { .. }));
}

#[test]
fn a_failed_health_gate_or_smoke_test_holds_green_where_it_is() {
    let cases = [
        (
            "unhealthy target",
            report(&[TargetState::Healthy, TargetState::Unhealthy]),
            false,
        ),
        ("smoke test failed", healthy_report(false), false),
        (
            "polls exhausted",
            report(&[TargetState::Initial, TargetState::Healthy]),
            true,
        ),
    ];
    for (name, report, exhaust) in cases {
        for weight in [0, 10] {
            let mut verifying = holding(Phase::Verifying { weight, polls: 2 }, weight);
            verifying.config.health.max_polls = if exhaust { 3 } else { 30 };
            let report = report.clone();
            let event = Event::HealthObserved { report };
            let d = decide(&verifying, &event, NOW).unwrap();
            assert!(no_traffic_or_fleet_change(&d.effects), "{name}: {:?}", d.effects);
            assert!(
                matches!(phase_of(&d.state), Phase::Verifying { weight: w, .. } if *w == weight),
                "{name} at {weight}%: {:?}",
                phase_of(&d.state)
            );
            assert_held(&d.state, HoldCause::Gate, weight);
            assert!(d.note.contains("health gate failed"), "{name}: {}", d.note);
            let event = Event::HealthObserved {
                report: report_of(&event),
            };
            // Without hold: the same observation aborts.
            let mut reverting = verifying.clone();
            reverting.deployment.as_mut().unwrap().on_failure = OnFailure::Revert;
            let aborted = decide(&reverting, &event, NOW).unwrap();
            assert!(matches!(phase_of(&aborted.state), Phase::Aborting { .. }), "{name}");
        }
    }
}

fn report_of(event: &Event) -> HealthReport {
    match event {
        Event::HealthObserved { report } => report.clone(),
        _ => unreachable!(),
    }
}

#[test]
fn a_regression_found_by_analysis_holds_instead_of_reverting() {
    let mut canary = judged(Phase::Verified { weight: 10 }, NOW - 60, Inconclusive::Abort);
    hold_on_failure(&mut canary);
    let d = decide(&canary, &judged_shift_due(regressed()), NOW).unwrap();
    assert!(d.effects.is_empty(), "{:?}", d.effects);
    assert_eq!(phase_of(&d.state), &Phase::Verified { weight: 10 });
    assert!(dep(&d.state).revert.is_none());
    assert_held(&d.state, HoldCause::Analysis, 10);
    let evaluation = dep(&d.state)
        .analysis
        .as_ref()
        .unwrap()
        .evaluations
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        evaluation.verdict,
        crate::analysis::Verdict::Regressed,
        "the verdict is recorded"
    );
    // In the bake window as well.
    let mut baking = judged(Phase::Baking { until: NOW + 600 }, NOW - 60, Inconclusive::Abort);
    hold_on_failure(&mut baking);
    let event = Event::RetireDue {
        blue_forwarded_by: None,
        analysis: Some(regressed()),
    };
    let d = decide(&baking, &event, NOW).unwrap();
    assert!(d.effects.is_empty());
    assert_held(&d.state, HoldCause::Analysis, 100);
    assert!(d.state.service.warm.is_none() || d.state.service.warm == baking.service.warm);
}

#[test]
fn while_held_the_deployments_own_steps_and_takeovers_change_nothing() {
    let canary = holding(Phase::Verified { weight: 10 }, 10);
    let held = decide(&canary, &alarm_rollback(None), NOW).unwrap().state;
    let events = [
        shift_due(),
        Event::HealthObserved {
            report: healthy_report(true),
        },
        Event::FinalizeDue,
        Event::RetireDue {
            blue_forwarded_by: None,
            analysis: None,
        },
        Event::LaunchDue {
            seen: Default::default(),
        },
        Event::Abort {
            reason: "check-health failed".into(),
        },
        Event::Supersede {
            reason: "superseded by v3".into(),
            resume: true,
        },
    ];
    for event in events {
        let d = decide(&held, &event, NOW + 3600).unwrap();
        assert_eq!(d.state, held, "{}", event_name(&event));
        assert!(d.effects.is_empty(), "{}: {:?}", event_name(&event), d.effects);
        assert!(d.note.contains("held at 10%"), "{}", d.note);
    }
    // Not stuck, however long it waits: the scheduled reconcile leaves it alone.
    let expired = lease_ran_out(held.clone());
    let refused = decide(&expired, &lease_expired("run-1"), NOW + 86_400).unwrap_err();
    assert!(matches!(refused, Refusal::NotStuck { .. }), "{refused}");
    assert!(refused.to_string().contains("held"), "{refused}");
    // Another image waits behind it, whatever the policy says (reject still refuses); a
    // rollback takes over.
    for (policy, queued) in [
        (NewImagePolicy::Supersede, true),
        (NewImagePolicy::Queue, true),
        (NewImagePolicy::Reject, false),
    ] {
        let mut state = expired.clone();
        state.config.on_new_image = policy;
        match decide(&state, &start_v3(None), NOW + 86_400) {
            Ok(d) => {
                assert!(queued, "{policy:?}");
                assert!(d.effects.is_empty(), "{policy:?}: {:?}", d.effects);
                assert!(d.state.service.queued.is_some());
            }
            Err(refusal) => assert!(
                !queued && matches!(refusal, Refusal::Busy { .. }),
                "{policy:?}: {refusal}"
            ),
        }
    }
    let rollback = decide(&expired, &start_v3(Some("ev-rb")), NOW + 86_400).unwrap();
    assert_eq!(effect_names(&rollback.effects), ["supersede_deployment"]);
    let mut taken_over = rollback.state.clone();
    taken_over.deployment = held.deployment.clone();
    let superseded = Event::Supersede {
        reason: "superseded by the rollback".into(),
        resume: true,
    };
    let d = decide(&taken_over, &superseded, NOW + 86_400).unwrap();
    assert!(matches!(phase_of(&d.state), Phase::Aborting { .. }));
}

#[test]
fn a_promote_releases_the_hold_once_and_the_gates_still_apply() {
    let verifying = holding(Phase::Verifying { weight: 10, polls: 3 }, 10);
    let held = decide(
        &verifying,
        &Event::HealthObserved {
            report: healthy_report(false),
        },
        NOW,
    )
    .unwrap()
    .state;
    assert_held(&held, HoldCause::Gate, 10);
    let d = decide(&held, &promote(), NOW + 600).unwrap();
    let id = dep(&held).deploy_id.clone();
    assert_eq!(execution_names(&d.effects), [format!("{id}-release-1")]);
    assert!(no_traffic_or_fleet_change(&d.effects));
    let released = dep(&d.state);
    assert!(released.held().is_none());
    let end = released.holds[0].ended.as_ref().unwrap();
    assert_eq!(
        (end.action, end.requested_by.as_str(), end.event_id.as_str()),
        (HoldAction::Promoted, "bob", "promote-1")
    );
    assert_eq!(released.promoted_by.as_deref(), Some("bob"));
    assert_eq!(
        released.phase,
        Phase::Verifying { weight: 10, polls: 0 },
        "a full new set of polls"
    );
    assert!(d.state.service.attention.is_none());
    assert!(d.state.service.revert_plan.is_some(), "the fast plan is back");
    assert_eq!(route_of(&d.state, NOW + 600).next, Some(Step::CheckHealth));
    // The same promote delivered again: the same follow-up, nothing else.
    let again = decide(&d.state, &promote(), NOW + 601).unwrap();
    assert_eq!(execution_names(&again.effects), [format!("{id}-release-1")]);
    assert_eq!(again.state.deployment, d.state.deployment);
    // The gate still applies: failing again holds again (a second hold).
    let failing = Event::HealthObserved {
        report: healthy_report(false),
    };
    let again = decide(&d.state, &failing, NOW + 700).unwrap().state;
    assert_eq!(dep(&again).holds.len(), 2);
    assert!(dep(&again).held().is_some());
    // A promote during a held bake window retires blue now.
    let baking = holding(Phase::Baking { until: NOW + 3600 }, 100);
    let held = decide(&baking, &alarm_rollback(None), NOW).unwrap().state;
    let d = decide(&held, &promote(), NOW + 60).unwrap();
    assert_eq!(phase_of(&d.state), &Phase::Baking { until: NOW + 60 });
    assert_eq!(route_of(&d.state, NOW + 60).next, Some(Step::RetireBlue));
}

#[test]
fn a_rollback_or_an_abort_ends_the_hold_and_reverts() {
    let canary = holding(Phase::Verified { weight: 10 }, 10);
    let held = decide(&canary, &alarm_rollback(None), NOW).unwrap().state;
    let rolled_back = decide(&held, &rollback(NOW * 1000 + 500), NOW + 1).unwrap();
    assert!(matches!(phase_of(&rolled_back.state), Phase::Aborting { .. }));
    assert!(effect_names(&rolled_back.effects).contains(&"set_traffic".to_string()));
    let dep_after = dep(&rolled_back.state);
    assert_eq!(
        dep_after.holds[0].ended.as_ref().map(|e| e.action),
        Some(HoldAction::RolledBack)
    );
    assert!(rolled_back.state.service.attention.is_none());
    let aborted = decide(&held, &abort_requested(), NOW + 1).unwrap();
    assert!(matches!(phase_of(&aborted.state), Phase::Aborting { .. }));
    assert_eq!(
        dep(&aborted.state).holds[0].ended.as_ref().map(|e| e.action),
        Some(HoldAction::Aborted)
    );
    assert!(aborted.state.service.attention.is_none());
    // In the bake window an abort is too late: roll back instead.
    let baking = holding(Phase::Baking { until: NOW + 3600 }, 100);
    let held = decide(&baking, &alarm_rollback(None), NOW).unwrap().state;
    assert!(matches!(
        decide(&held, &abort_requested(), NOW + 1),
        Err(Refusal::TooLateToAbort { .. })
    ));
    let rolled_back = decide(&held, &rollback(NOW * 1000 + 500), NOW + 1).unwrap();
    assert_eq!(
        rolled_back.state.service.live.as_ref().map(|r| r.version.as_str()),
        Some("v1")
    );
}
