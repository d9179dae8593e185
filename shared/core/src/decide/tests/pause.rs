//! Table tests for approval pauses (`"pause"` in `canary_steps`): a pause begins once green
//! would move on, waits (the route sleeps until its deadline), is approved by a promote (once,
//! whatever the duplicates) or times out into its declared action; rollbacks and re-paves
//! never wait; the registration refuses pauses that cannot work.

use super::*;
use crate::config::OnPauseTimeout;
use crate::model::{PauseEnd, PauseRecord};
use crate::plan::Step;

const TIMEOUT: u64 = 3600;

/// v2 verified at `weight` %, the registration pausing after it.
fn paused_config(weight: u8, on_timeout: OnPauseTimeout) -> State {
    let mut s = in_phase(Phase::Verified { weight }, weight);
    s.config.rollout.canary_steps = vec![10, 50, 100];
    s.config.rollout.pauses = vec![weight];
    s.config.rollout.pause_timeout_s = TIMEOUT;
    s.config.rollout.on_pause_timeout = on_timeout;
    s.deployment.as_mut().unwrap().healthy_at = Some(NOW - 10);
    s
}

fn shift_due() -> Event {
    Event::ShiftDue {
        green_unready: None,
        analysis: None,
    }
}

fn approval(event_id: &str) -> Event {
    Event::Promote {
        requested_by: "carol".into(),
        reason: "dashboards fine at 10%".into(),
        event_id: event_id.into(),
    }
}

fn pauses(state: &State) -> &[PauseRecord] {
    &state.deployment.as_ref().unwrap().pauses
}

#[test]
fn a_pause_waits_until_approved_then_moves_to_the_next_step_only() {
    let at10 = paused_config(10, OnPauseTimeout::Abort);
    // shift-traffic at 10 %: the pause begins, nothing moves, the route sleeps to its deadline.
    let d = decide(&at10, &shift_due(), NOW).unwrap();
    assert!(d.effects.is_empty(), "{:?}", d.effects);
    assert_eq!(phase_of(&d.state), &Phase::Verified { weight: 10 });
    assert_eq!(
        pauses(&d.state),
        [PauseRecord {
            weight: 10,
            since: NOW,
            until: NOW + TIMEOUT,
            ended: None
        }]
    );
    let dep = d.state.deployment.as_ref().unwrap();
    let route = crate::plan::route(&d.state.config, dep, NOW);
    assert_eq!((route.next, route.wait_s), (Some(Step::ShiftTraffic), TIMEOUT));
    assert!(
        d.state.service.lease_until.unwrap() >= NOW + TIMEOUT,
        "the lease covers the wait"
    );
    assert!(dep
        .timeline
        .last()
        .unwrap()
        .note
        .contains("greenlight promote checkout"));
    // Woken early (a duplicate delivery): still waiting, no second record, no new mark.
    let again = decide(&d.state, &shift_due(), NOW + 60).unwrap();
    assert!(again.effects.is_empty());
    assert_eq!(pauses(&again.state).len(), 1);
    assert_eq!(
        again.state.deployment.as_ref().unwrap().timeline.len(),
        dep.timeline.len()
    );
    // The approval: recorded, a follow-up execution moves green now; not a promotion.
    let approved = decide(&again.state, &approval("ev-1"), NOW + 120).unwrap();
    let dep = approved.state.deployment.as_ref().unwrap();
    assert!(dep.promoted_by.is_none());
    assert!(matches!(
        &dep.pauses[0].ended,
        Some(PauseEnd::Approved { requested_by, event_id, at, .. })
            if requested_by == "carol" && event_id == "ev-1" && *at == NOW + 120
    ));
    assert_eq!(
        execution_names(&approved.effects),
        [format!("{}-approve-10", dep.deploy_id)]
    );
    let route = crate::plan::route(&approved.state.config, dep, NOW + 120);
    assert_eq!((route.next, route.wait_s), (Some(Step::ShiftTraffic), 0));
    // The follow-up's shift-traffic: on to 50 %, the next step (not 100 %).
    let moved = decide(&approved.state, &shift_due(), NOW + 121).unwrap();
    assert_eq!(phase_of(&moved.state), &Phase::Shifting { from: 10, to: 50 });
    // The same approval delivered again (the first may have crashed before its
    // StartExecution) changes nothing and must not promote past 50 %: it only starts the
    // same follow-up execution again (idempotent).
    let dup = decide(&moved.state, &approval("ev-1"), NOW + 122).unwrap();
    assert_eq!(dup.state.deployment, moved.state.deployment);
    assert_eq!(execution_names(&dup.effects), [format!("{}-approve-10", dep.deploy_id)]);
    // A new promote after the pause is a promotion, as without pauses.
    let promoted = decide(&moved.state, &approval("ev-2"), NOW + 123).unwrap();
    assert_eq!(
        promoted.state.deployment.as_ref().unwrap().promoted_by.as_deref(),
        Some("carol")
    );
}

#[test]
fn a_pause_nobody_approves_does_its_declared_action_at_its_deadline() {
    for (on_timeout, expect) in [
        (OnPauseTimeout::Abort, PhaseName::Aborting),
        (OnPauseTimeout::Continue, PhaseName::Shifting),
    ] {
        let waiting = decide(&paused_config(10, on_timeout), &shift_due(), NOW).unwrap().state;
        let early = decide(&waiting, &shift_due(), NOW + TIMEOUT - 1).unwrap();
        assert_eq!(
            phase_of(&early.state),
            &Phase::Verified { weight: 10 },
            "{on_timeout:?}"
        );
        let late = decide(&waiting, &shift_due(), NOW + TIMEOUT).unwrap();
        assert_eq!(phase_of(&late.state).kind(), expect, "{on_timeout:?}");
        assert_eq!(
            pauses(&late.state)[0].ended,
            Some(PauseEnd::TimedOut {
                at: NOW + TIMEOUT,
                action: on_timeout
            })
        );
        match phase_of(&late.state) {
            Phase::Aborting { reason, .. } => {
                assert!(reason.contains("not approved within 3600s"), "{reason}");
                assert!(
                    late.effects
                        .iter()
                        .any(|e| matches!(e, Effect::SetTraffic { green_weight: 0, .. })),
                    "traffic back on blue: {:?}",
                    late.effects
                );
            }
            Phase::Shifting { from, to } => assert_eq!((*from, *to), (10, 50)),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_pause_before_any_traffic_holds_green_at_zero_and_abort_still_acts() {
    let at0 = paused_config(0, OnPauseTimeout::Abort);
    let waiting = decide(&at0, &shift_due(), NOW).unwrap();
    assert_eq!(phase_of(&waiting.state), &Phase::Verified { weight: 0 });
    assert!(waiting.effects.is_empty());
    let aborted = decide(&waiting.state, &abort_requested(), NOW + 5).unwrap();
    assert_eq!(phase_of(&aborted.state).kind(), PhaseName::Aborting);
}

#[test]
fn rollbacks_repaves_promoted_and_first_deployments_never_wait() {
    type Edit = fn(&mut Deployment);
    let cases: [(&str, Edit); 4] = [
        ("rollback", |d| d.rollback = true),
        ("repave", |d| d.source = ImageSource::Repave),
        ("promoted", |d| d.promoted_by = Some("dave".into())),
        ("first deployment", |d| d.blue = None),
    ];
    for (name, edit) in cases {
        let mut s = paused_config(10, OnPauseTimeout::Abort);
        edit(s.deployment.as_mut().unwrap());
        let d = decide(&s, &shift_due(), NOW).unwrap();
        assert!(pauses(&d.state).is_empty(), "{name}");
        assert_eq!(phase_of(&d.state).kind(), PhaseName::Shifting, "{name}");
    }
}

#[test]
fn an_approval_outside_a_pause_is_the_usual_promotion() {
    // Verified at 10 % with a pause declared at 50 %: the promote skips everything.
    let mut s = paused_config(10, OnPauseTimeout::Abort);
    s.config.rollout.pauses = vec![50];
    let d = decide(&s, &approval("ev-9"), NOW).unwrap();
    let dep = d.state.deployment.as_ref().unwrap();
    assert_eq!(dep.promoted_by.as_deref(), Some("carol"));
    assert!(dep.pauses.is_empty());
}
