//! Table tests for canary analysis in the deployment loop: each verdict's effect on the
//! phase, the traffic and the ledger's evaluations; the inconclusive actions; the bake watch;
//! the waits the route derives from the next evaluation.

use super::*;
use crate::analysis::{
    Analysis, AnalysisRecord, Baseline, Counts, Evidence, Inconclusive, MetricEvidence, Observation, Real, Verdict,
};
use crate::plan::{Route, Step};

const PERIOD: u64 = 60;
const MAX_STEP: u64 = 300;

pub(super) fn analysis(inconclusive: Inconclusive) -> Analysis {
    let mut a: Analysis = serde_json::from_value(serde_json::json!({
        "metrics": [{"error_rate": {"tolerance_pp": 0.5}}],
        "period_s": PERIOD, "lag_s": 0, "max_step_s": MAX_STEP, "min_requests": 100
    }))
    .unwrap();
    a.inconclusive = inconclusive;
    a
}

/// v2 at `weight` % (judged since `since`), the registration declaring analysis.
pub(super) fn judged(phase: Phase, since: Epoch, inconclusive: Inconclusive) -> State {
    let weight = match phase {
        Phase::Verified { weight } => weight,
        _ => 100,
    };
    let mut s = in_phase(phase, weight);
    s.config.analysis = Some(analysis(inconclusive));
    let dep = s.deployment.as_mut().unwrap();
    dep.healthy_at = Some(since);
    dep.analysis = Some(AnalysisRecord {
        since,
        weight,
        next_at: NOW,
        ..AnalysisRecord::default()
    });
    s
}

/// Green's and blue's error counts per period, as fetched.
fn fetched(green: &[(u64, u64)], blue: &[(u64, u64)]) -> Observation {
    let counts = |c: &[(u64, u64)]| {
        c.iter()
            .map(|(bad, total)| Counts {
                bad: *bad,
                total: *total,
            })
            .collect::<Vec<_>>()
    };
    Observation::Fetched {
        from: NOW - PERIOD * green.len() as u64,
        to: NOW,
        evidence: Evidence {
            metrics: vec![MetricEvidence {
                metric: "error_rate".into(),
                tolerance: Real(0.005),
                green: counts(green),
                blue: Baseline::SameWindow(counts(blue)),
                thresholds_s: None,
            }],
            horizon_periods: (MAX_STEP / PERIOD) as u32,
        },
    }
}

pub(super) fn regressed() -> Observation {
    fetched(&[(300, 1000), (310, 1000)], &[(10, 9000), (9, 9000)])
}

fn no_worse() -> Observation {
    fetched(
        &[(0, 5000), (0, 5000), (0, 5000)],
        &[(450, 45000), (450, 45000), (450, 45000)],
    )
}

pub(super) fn shift_due(observation: Observation) -> Event {
    Event::ShiftDue {
        green_unready: None,
        analysis: Some(observation),
    }
}

fn record(state: &State) -> &AnalysisRecord {
    state.deployment.as_ref().unwrap().analysis.as_ref().unwrap()
}

#[test]
fn a_regression_reverts_through_the_alarms_path_and_is_recorded_as_analysis() {
    let state = judged(Phase::Verified { weight: 10 }, NOW - 120, Inconclusive::Abort);
    let d = decide(&state, &shift_due(regressed()), NOW).unwrap();
    let dep = d.state.deployment.as_ref().unwrap();
    let Phase::Aborting { reason, .. } = &dep.phase else {
        panic!("{:?}", dep.phase)
    };
    assert!(
        reason.starts_with("rolled back by analysis: 10%: error_rate"),
        "{reason}"
    );
    let revert = dep.revert.as_ref().unwrap();
    assert_eq!(
        (revert.trigger, revert.requested_by.as_str()),
        (Trigger::Analysis, "analysis")
    );
    assert!(
        effect_names(&d.effects).contains(&"set_traffic".to_string()),
        "{:?}",
        d.effects
    );
    // The step's own execution cleans up (abort-deployment is its next step): no follow-up
    // execution, which a redelivery of the step after a crash could not re-issue.
    assert!(
        !effect_names(&d.effects).contains(&"start_execution".to_string()),
        "{:?}",
        d.effects
    );
    let route = crate::plan::route(&d.state.config, d.state.deployment.as_ref().unwrap(), NOW);
    assert_eq!(route.next, Some(Step::AbortDeployment));
    let last = record(&d.state).evaluations.last().unwrap();
    assert_eq!((last.verdict, last.action.as_str()), (Verdict::Regressed, "revert"));
    assert_eq!(last.metrics[0].green, Counts { bad: 610, total: 2000 });
}

#[test]
fn no_worse_moves_to_the_next_step_and_the_new_weight_starts_a_new_window() {
    let state = judged(Phase::Verified { weight: 10 }, NOW - 180, Inconclusive::Abort);
    let d = decide(&state, &shift_due(no_worse()), NOW).unwrap();
    assert_eq!(phase_of(&d.state), &Phase::Shifting { from: 10, to: 50 });
    assert_eq!(effect_names(&d.effects), ["set_traffic"]);
    assert_eq!(record(&d.state).evaluations.last().unwrap().action, "next step");
    let applied = decide(
        &d.state,
        &Event::TrafficApplied {
            weight: 50,
            at_ms: NOW * 1000,
        },
        NOW + 5,
    )
    .unwrap();
    let r = record(&applied.state);
    assert_eq!((r.since, r.weight, r.next_at), (NOW + 5, 50, NOW + 5));
}

#[test]
fn no_evidence_yet_waits_one_period_and_the_route_sleeps_until_then() {
    let state = judged(Phase::Verified { weight: 10 }, NOW - 30, Inconclusive::Abort);
    let d = decide(&state, &shift_due(Observation::TooEarly), NOW).unwrap();
    assert_eq!(phase_of(&d.state), &Phase::Verified { weight: 10 });
    assert!(d.effects.is_empty());
    assert_eq!(record(&d.state).next_at, NOW + PERIOD);
    let dep = d.state.deployment.as_ref().unwrap();
    assert_eq!(
        crate::plan::route(&d.state.config, dep, NOW),
        Route {
            next: Some(Step::ShiftTraffic),
            wait_s: PERIOD
        }
    );
    // A duplicate delivery before the next period judges nothing again.
    let again = decide(&d.state, &shift_due(regressed()), NOW + 1).unwrap();
    assert_eq!(phase_of(&again.state), &Phase::Verified { weight: 10 });
    assert_eq!(record(&again.state).evaluations.len(), 1);
    // A delivery that observed nothing changes nothing.
    let blind = Event::ShiftDue {
        green_unready: None,
        analysis: None,
    };
    assert_eq!(decide(&d.state, &blind, NOW + PERIOD).unwrap().state, d.state);
}

#[test]
fn an_inconclusive_step_does_what_the_registration_declares_and_missing_data_never_promotes() {
    let late = NOW - MAX_STEP;
    let cases = [
        (Inconclusive::Abort, Observation::TooEarly, "aborting"),
        // No complete period by the deadline: no data, so never continued.
        (Inconclusive::Continue, Observation::TooEarly, "aborting"),
        (
            Inconclusive::Continue,
            Observation::Unavailable {
                why: "Throttling".into(),
            },
            "aborting",
        ),
        (
            Inconclusive::Abort,
            Observation::Unavailable {
                why: "Throttling".into(),
            },
            "aborting",
        ),
        (Inconclusive::Hold, Observation::TooEarly, "verified"),
    ];
    for (declared, observation, phase) in cases {
        let state = judged(Phase::Verified { weight: 10 }, late, declared);
        let d = decide(&state, &shift_due(observation.clone()), NOW).unwrap();
        assert_eq!(phase_of(&d.state).name(), phase, "{declared:?} on {observation:?}");
        if phase == "aborting" {
            let Phase::Aborting { reason, .. } = phase_of(&d.state) else {
                unreachable!()
            };
            assert!(
                reason.starts_with("analysis inconclusive after 300s at 10%"),
                "{reason}"
            );
            assert!(
                d.state.deployment.as_ref().unwrap().revert.is_none(),
                "an inconclusive abort is no rollback"
            );
        }
    }
}

#[test]
fn a_held_step_waits_for_an_engineer_and_a_promote_releases_it() {
    let state = judged(Phase::Verified { weight: 10 }, NOW - MAX_STEP, Inconclusive::Hold);
    let held = decide(&state, &shift_due(Observation::TooEarly), NOW).unwrap().state;
    assert_eq!(record(&held).held_since, Some(NOW));
    let dep = held.deployment.as_ref().unwrap();
    assert!(dep.timeline.last().unwrap().note.contains("holding as declared"));
    // Still held a period later, whatever the metrics say now; nothing more is recorded.
    let later = decide(&held, &shift_due(no_worse()), NOW + PERIOD).unwrap();
    assert_eq!(phase_of(&later.state), &Phase::Verified { weight: 10 });
    assert_eq!(record(&later.state).evaluations.len(), 1);
    let dep = later.state.deployment.as_ref().unwrap();
    assert_eq!(
        crate::plan::route(&later.state.config, dep, NOW + PERIOD).wait_s,
        PERIOD
    );
    let promote = Event::Promote {
        requested_by: "alice".into(),
        reason: "checked the dashboards".into(),
        event_id: "promote-1".into(),
    };
    let promoted = decide(&later.state, &promote, NOW + PERIOD).unwrap().state;
    let blind = Event::ShiftDue {
        green_unready: None,
        analysis: None,
    };
    let d = decide(&promoted, &blind, NOW + PERIOD).unwrap();
    assert_eq!(phase_of(&d.state), &Phase::Shifting { from: 10, to: 100 });
}

#[test]
fn the_bake_window_is_watched_until_it_ends_and_a_regression_puts_blue_back_live() {
    let until = NOW + 600;
    let mut state = judged(Phase::Baking { until }, NOW - 120, Inconclusive::Abort);
    state.service.live = Some(state.deployment.as_ref().unwrap().green_release());
    state.service.warm = Some(blue());
    let dep = state.deployment.as_ref().unwrap();
    assert_eq!(
        crate::plan::route(&state.config, dep, NOW).wait_s,
        0,
        "an evaluation is due now"
    );
    let watch = |observation| Event::RetireDue {
        blue_forwarded_by: None,
        analysis: Some(observation),
    };
    let fine = decide(&state, &watch(Observation::TooEarly), NOW).unwrap();
    assert_eq!(phase_of(&fine.state), &Phase::Baking { until });
    let dep = fine.state.deployment.as_ref().unwrap();
    assert_eq!(crate::plan::route(&fine.state.config, dep, NOW).wait_s, PERIOD);

    let regressed_before = |green: &[(u64, u64)]| {
        let Observation::Fetched { from, to, mut evidence } = fetched(green, &[]) else {
            unreachable!()
        };
        evidence.metrics[0].blue = Baseline::Before(Counts { bad: 90, total: 9000 });
        Observation::Fetched { from, to, evidence }
    };
    let d = decide(
        &fine.state,
        &watch(regressed_before(&[(60, 6000), (600, 6000)])),
        NOW + PERIOD,
    )
    .unwrap();
    let dep = d.state.deployment.as_ref().unwrap();
    assert_eq!(dep.phase.name(), "aborting", "{:?}", dep.timeline.last());
    assert_eq!(
        d.state.service.live.as_ref().unwrap().version,
        "v1",
        "blue is live again"
    );
    assert_eq!(dep.revert.as_ref().unwrap().trigger, Trigger::Analysis);
}

#[test]
fn without_analysis_or_once_promoted_nothing_is_judged() {
    let mut state = judged(Phase::Verified { weight: 10 }, NOW, Inconclusive::Abort);
    state.config.analysis = None;
    let d = decide(&state, &shift_due(regressed()), NOW).unwrap();
    assert_eq!(phase_of(&d.state), &Phase::Shifting { from: 10, to: 50 });
    let mut state = judged(Phase::Verified { weight: 10 }, NOW, Inconclusive::Abort);
    state.deployment.as_mut().unwrap().promoted_by = Some("alice".into());
    let d = decide(&state, &shift_due(regressed()), NOW).unwrap();
    assert_eq!(phase_of(&d.state), &Phase::Shifting { from: 10, to: 100 });
}
