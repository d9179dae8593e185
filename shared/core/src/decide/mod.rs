//! `decide(state, event, now) -> (state, effects)`: every transition of a deployment.
//!
//! Contract with the handlers (see ARCHITECTURE.md, "The step loop"):
//! 1. the handler reads [`State`] from the ledger and observes the world (read-only calls);
//! 2. `decide` returns the new state and the effects that make the world match it;
//! 3. the handler commits the new state conditionally (ledger first), then applies the
//!    effects, each idempotent, in order; some effects report back with a follow-up event
//!    (e.g. `LaunchGreen` → [`Event::GreenLaunched`]) that is decided the same way.
//!
//! Redelivering an event to the state it produced yields the same effects again and no new
//! state: a crash anywhere is healed by the next delivery.
//!
//! This module dispatches each (event, phase) to its family: `start` (refusals, a new
//! deployment, a busy service's policy), `rollout` (gates, weights, the lease), `revert`
//! (the fast plan, claims, rollbacks), `pause` (approval pauses between canary steps),
//! `hold` (a failure frozen for an engineer instead of reverted, `on_failure: hold`),
//! `hooks` (what a lifecycle hook's answer does, and the steps it holds back),
//! `finish` (aborting and ending), `reconcile` (what a
//! late delivery still repairs) and `stuck` (a deployment whose lease expired, found by the
//! scheduled reconcile). The events, effects and refusals are `types` (re-exported
//! here), the switch point's effects `traffic`; the families import from those and from each
//! other one way, never from this module.

mod canary;
mod finish;
mod hold;
mod hooks;
mod pause;
mod reconcile;
mod revert;
mod rollout;
mod start;
mod stuck;
mod traffic;
mod types;

use crate::config::ServiceConfig;
use crate::ids::DeployId;
use crate::model::{Deployment, LastRevert, Phase, ServiceState, State};

pub use crate::fence::green_deregistrable_at;
pub use crate::judging::{analysis_due, analysis_of, analysis_windows};
pub use crate::pausing::{held_by_pause, pauses_apply};
pub use crate::request::{
    HealthReport, ImageFacts, ImageRequest, RevertRequest, SmokeResult, TargetHealth, TargetState,
};
use crate::rfc3339::format as format_time;
use crate::switch::Frame;
use crate::version::Version;
use crate::Epoch;
use finish::*;
use reconcile::*;
use revert::*;
pub use revert::{alarm_loop, fast_revert_plan, rollback_target};
use rollout::*;
pub use start::check_version;
use start::*;
use std::collections::BTreeMap;
use stuck::lease_expired;
use traffic::*;
pub use types::*;

/// Decides what `event` does to `state` at time `now`.
pub fn decide(state: &State, event: &Event, now: Epoch) -> Result<Decision, Refusal> {
    let decision = transition(state, event, now)?;
    debug_assert_invariants(state, &decision.state);
    debug_assert_hooks_decided(state, &decision.state, now);
    hold::debug_assert_frozen(event, &decision);
    Ok(decision)
}

/// The invariants the simulator checks from outside on every committed state
/// (`shared/sim/src/invariants.rs`), asserted from inside on every decision, in debug builds
/// (the tests, the simulator): a decision keeps what its input had (a mixed read may not
/// have it: BatchGetItem is not a snapshot), and moves the live version back only by a
/// rollback.
fn debug_assert_invariants(before: &State, after: &State) {
    // I6: a lease exists exactly while a deployment holds the service.
    let leased = |s: &State| s.service.active.is_some() == s.service.lease_until.is_some();
    debug_assert!(
        !leased(before) || leased(after),
        "I6: active {:?} with lease {:?}",
        after.service.active,
        after.service.lease_until
    );
    // I4: green gets weight only once it passed its gates. (A deployment past them, from
    // `Verified` on, records when; a state that does not is no precondition to keep.)
    let weighted_only_if_healthy = |s: &State| {
        s.deployment
            .as_ref()
            .is_none_or(|d| d.max_weight == 0 || d.healthy_at.is_some())
    };
    let gates_recorded = before.deployment.as_ref().is_none_or(|d| {
        d.healthy_at.is_some()
            || !matches!(
                d.phase,
                Phase::Verified { .. }
                    | Phase::Shifting { .. }
                    | Phase::Baking { .. }
                    | Phase::Retiring { .. }
                    | Phase::Succeeded
            )
    });
    debug_assert!(
        !(gates_recorded && weighted_only_if_healthy(before)) || weighted_only_if_healthy(after),
        "I4: green weighted before its gates"
    );
    // I35: green moves past an approval pause only once it ended (approved, timed out, or
    // no longer declared).
    if let Some(Phase::Shifting { from, .. }) = after.deployment.as_ref().map(|d| &d.phase) {
        debug_assert!(
            after
                .deployment
                .as_ref()
                .is_none_or(|d| d.waiting_pause(*from).is_none()),
            "I35: green moved past its waiting pause at {from}%"
        );
    }
    // I5: the live version goes back only by a rollback (a redeployment or a revert).
    if let (Some(was), Some(now)) = (&before.service.live, &after.service.live) {
        let older = matches!(
            (Version::parse(&now.version), Version::parse(&was.version)),
            (Ok(now), Ok(was)) if now < was
        );
        let by_rollback = after.deployment.as_ref().is_some_and(|d| {
            (d.rollback && now.deploy_id.as_deref() == Some(d.deploy_id.as_str()))
                || (d.revert.is_some() && d.version == was.version)
        });
        debug_assert!(
            !older || by_rollback,
            "I5: live went from {} to the older {} without a rollback",
            was.version,
            now.version
        );
    }
}

/// I39, asserted on every decision (debug builds; the simulator checks the ledger from
/// outside): a deployment moves out of a hook's point (on to the next traffic step, live,
/// retiring, or aborted with green gone) only once every hook declared there decided.
fn debug_assert_hooks_decided(before: &State, after: &State, now: Epoch) {
    use crate::hook::Stage;
    let (Some(was), Some(is)) = (before.deployment.as_ref(), after.deployment.as_ref()) else {
        return;
    };
    let Some(point) = crate::hooking::point(was, now) else {
        return;
    };
    let left = match (point.stage, &is.phase) {
        (Stage::GreenVerified | Stage::TrafficShifted, Phase::Shifting { from, .. }) => *from == point.weight,
        (Stage::AllTraffic, Phase::Baking { .. }) => true,
        (Stage::BeforeRetire, Phase::Retiring { .. }) => true,
        (Stage::AfterRevert, Phase::Aborted { .. }) => true,
        _ => false,
    };
    debug_assert!(
        !left || crate::hooking::pending(&before.config, is, point).is_none(),
        "I39: {} left its {} point at {}% ({}) before hook {:?} decided",
        is.deploy_id,
        point.stage.as_str(),
        point.weight,
        is.phase.name(),
        crate::hooking::pending(&before.config, is, point).map(|h| &h.name)
    );
}

/// [`decide`] without its debug assertions.
fn transition(state: &State, event: &Event, now: Epoch) -> Result<Decision, Refusal> {
    if let Event::Start {
        request,
        image,
        firing_alarms,
    } = event
    {
        return start(state, request, image.as_ref(), firing_alarms, now);
    }
    if let Some(pending) = claimed_revert(state, event) {
        // A rollback was claimed (and its listener change maybe made) but not recorded:
        // complete it before anything else can move traffic. If it cannot be (the world
        // moved on), drop the claim; the event is decided on the next delivery.
        return decide(state, &pending, now).or_else(|why| {
            let mut next = state.clone();
            next.service.revert_claim = None;
            Ok(Decision {
                state: next,
                effects: vec![],
                note: format!("the claimed rollback cannot be completed ({why}); claim dropped"),
            })
        });
    }
    let mut next = state.clone();
    let config = &state.config;
    let dep = next.deployment.as_mut().ok_or(Refusal::NoDeployment)?;
    if let Some(note) = hold::frozen(state, dep, event) {
        return Ok(Decision {
            state: state.clone(),
            effects: vec![],
            note,
        });
    }
    if let Some(note) = hooks::blocks(config, dep, event, now) {
        // A hook holds the point this step would move the deployment out of.
        return Ok(Decision {
            state: state.clone(),
            effects: vec![],
            note,
        });
    }
    let mut effects = Vec::new();
    let note: String;
    let register_green = |dep: &Deployment, ids: Vec<String>| Effect::RegisterTargets {
        target_group: dep.green_tg.clone(),
        instance_ids: ids,
        port: config.launch.port,
    };
    match (event, dep.phase.clone()) {
        (Event::LaunchDue { seen }, Phase::Launching) => match frames_of(config, seen) {
            Err(why) => {
                // Nothing is launched before the switch points are known to be ownable.
                enter_aborting(dep, config, why.clone(), now);
                abort_effects(config, dep, now, &mut effects);
                note = format!("aborting: {why}");
            }
            Ok((frames, drain_s)) => {
                dep.frames.extend(frames);
                dep.drain_s.extend(drain_s);
                note = launch_green(config, dep, &mut effects);
            }
        },
        (Event::GreenLaunched { instance_ids }, Phase::Launching) => {
            dep.green_instances = instance_ids.clone();
            dep.enter(
                Phase::Verifying { weight: 0, polls: 0 },
                now,
                format!("green launched: {}", instance_ids.join(", ")),
            );
            effects.push(register_green(dep, instance_ids.clone()));
            effects.extend(attach_green(config, dep));
            effects.extend(open_test_route(config, dep));
            note = format!("green launched into target group {}", short_arn(&dep.green_tg));
        }
        // A launch delivered again after green was recorded: make sure it is registered.
        (Event::LaunchDue { .. } | Event::GreenLaunched { .. }, Phase::Verifying { weight: 0, .. }) => {
            effects.push(register_green(dep, dep.green_instances.clone()));
            effects.extend(attach_green(config, dep));
            effects.extend(open_test_route(config, dep));
            note = "green already launched; re-registering (idempotent)".into();
        }
        (Event::HealthObserved { report }, Phase::Verifying { weight, polls }) => {
            note = observe_health(
                &mut next.service,
                dep,
                config,
                report,
                (weight, polls),
                now,
                &mut effects,
            );
        }
        (
            Event::ShiftDue {
                green_unready: Some(why),
                ..
            },
            Phase::Verified { weight },
        ) if weight < 100 => {
            // Never give more users to a green that stopped being healthy since its gates
            // passed (flagger#1898): check its health again; the health gate decides.
            dep.enter(
                Phase::Verifying { weight, polls: 0 },
                now,
                format!("green not healthy before the shift from {weight}%: {why}; checking its health again"),
            );
            note = format!("shift held: green not healthy ({why})");
        }
        (Event::ShiftDue { .. }, Phase::Verified { weight }) if weight < 100 && held_by_pause(config, dep, weight) => {
            // An approval pause (its step's analysis is over): still waiting, approved, or
            // at its deadline.
            note = advance(config, dep, weight, "", now, &mut effects);
        }
        (Event::ShiftDue { analysis, .. }, Phase::Verified { weight })
            if weight < 100 && analysis_of(config, dep).is_some() =>
        {
            // A canary step judged by analysis: green moves on only on its verdict.
            let declared = analysis_of(config, dep).cloned().expect("guarded");
            let Some(observation) = analysis else {
                return Ok(Decision {
                    state: state.clone(),
                    effects: vec![],
                    note: format!("{weight}% waits for its analysis (this delivery observed none)"),
                });
            };
            note = match canary::evaluate(&declared, dep, observation, true, now) {
                canary::Call::Wait(why) => {
                    if dep.analysis.as_ref().is_some_and(|r| r.held_since == Some(now)) {
                        dep.enter(dep.phase.clone(), now, why.clone());
                    }
                    why
                }
                canary::Call::Shift(why) => advance(config, dep, weight, &why, now, &mut effects),
                canary::Call::Revert(why) => revert_by_analysis(
                    &mut next.service,
                    dep,
                    config,
                    why,
                    &Phase::Verified { weight },
                    now,
                    &mut effects,
                )?,
                canary::Call::Abort(why) => {
                    enter_aborting(dep, config, why.clone(), now);
                    abort_effects(config, dep, now, &mut effects);
                    format!("aborting: {why}")
                }
            };
        }
        (Event::ShiftDue { .. }, Phase::Verified { weight }) if weight < 100 => {
            note = advance(config, dep, weight, "", now, &mut effects);
        }
        (Event::HookAnswered { observation }, phase) => {
            match hooks::answered(&mut next.service, dep, config, observation, now, &mut effects) {
                hooks::Answered::Stale(why) => {
                    return Ok(Decision {
                        state: state.clone(),
                        effects: vec![],
                        note: why,
                    })
                }
                hooks::Answered::Recorded(mark) => note = mark,
                hooks::Answered::Revert(why) => {
                    let by = format!("hook:{}", observation.call.hook);
                    note = revert_by(
                        &mut next.service,
                        dep,
                        config,
                        (crate::model::Trigger::Hook, by),
                        why,
                        &phase,
                        now,
                        &mut effects,
                    )?;
                }
            }
        }
        (Event::ShiftDue { .. }, Phase::Shifting { to, .. }) => {
            effects.push(set_traffic(config, dep, to));
            note = format!("re-applying traffic shift to {to}%");
        }
        (
            Event::Revert {
                request,
                received_at_ms,
                flipped_at_ms,
            },
            phase,
        ) => {
            note = revert(
                &mut next.service,
                dep,
                config,
                request,
                (*received_at_ms, *flipped_at_ms),
                &phase,
                now,
                &mut effects,
            )?;
        }
        (Event::TrafficApplied { weight: 0, at_ms }, Phase::Aborting { .. })
            if dep.revert.is_some() || green_drains_from_traffic_back(dep) =>
        {
            let drains = traffic_back_confirmed(dep, config, *at_ms);
            note = match traffic_back(dep, *at_ms, now) {
                Some(mark) => mark,
                None => drains.unwrap_or_else(|| "traffic already back (re-applied)".into()),
            };
        }
        (Event::TrafficApplied { weight: 0, .. }, Phase::Verifying { weight: 0, .. }) => {
            note = format!(
                "target group {} attached to the switch point at 0% (health-checked, no traffic)",
                short_arn(&dep.green_tg)
            );
        }
        (Event::TrafficApplied { weight, .. }, Phase::Shifting { to, .. }) if *weight == to => {
            canary::start_window(config, dep, to, now);
            dep.enter(
                Phase::Verifying { weight: to, polls: 0 },
                now,
                format!("green receives {to}% of traffic"),
            );
            note = format!("traffic shifted: green {to}%");
        }
        (Event::FinalizeDue, Phase::Verified { weight: 100 }) => {
            // A promoted deployment skips the bake window: blue is retired right away. Either
            // way not before blue's sticky clients' cookies expire (they keep reaching blue
            // whatever the weights; draining it sooner gives them 503s).
            let until = if dep.promoted_by.is_some() {
                now
            } else {
                now + config.bake_window_s
            }
            .max(now + dep.stickiness_s());
            next.service.live = Some(dep.green_release());
            next.service.warm = dep.blue.clone();
            if dep.rollback {
                next.service.last_revert = Some(LastRevert {
                    from: dep.blue.as_ref().map(|b| b.version.clone()).unwrap_or_default(),
                    back_to: dep.version.clone(),
                    deploy_id: dep.deploy_id.clone(),
                    at: now,
                });
            }
            let warm = dep
                .blue
                .as_ref()
                .map(|b| format!("{} warm until {}", b.version, format_time(until)))
                .unwrap_or_else(|| "nothing to keep warm".into());
            dep.enter(Phase::Baking { until }, now, format!("{} live; {warm}", dep.version));
            // Green is what users get now: its test route is no longer needed.
            effects.extend(close_test_route(config, dep));
            note = format!("{} is live; baking for {}s", dep.version, until - now);
        }
        (
            Event::RetireDue {
                analysis: Some(observation),
                ..
            },
            Phase::Baking { until },
        ) if now < until && analysis_of(config, dep).is_some() => {
            // The bake window is watched for a regression until it ends (a leak, a load the
            // canary steps did not reach); blue is warm, so a regression reverts at once.
            let declared = analysis_of(config, dep).cloned().expect("guarded");
            note = match canary::evaluate(&declared, dep, observation, false, now) {
                canary::Call::Revert(why) => revert_by_analysis(
                    &mut next.service,
                    dep,
                    config,
                    why,
                    &Phase::Baking { until },
                    now,
                    &mut effects,
                )?,
                canary::Call::Wait(why) | canary::Call::Shift(why) | canary::Call::Abort(why) => why,
            };
        }
        (Event::RetireDue { blue_forwarded_by, .. }, Phase::Baking { until }) if now >= until => match dep.blue.clone()
        {
            None => {
                dep.enter(Phase::Succeeded, now, "bake window over; no previous fleet");
                finish(&mut next.service, dep, &mut effects);
                note = "deployment succeeded".into();
            }
            Some(blue) if blue_forwarded_by.is_some() => {
                return Err(Refusal::BlueStillServing {
                    target_group: blue.target_group,
                    by: blue_forwarded_by.clone().unwrap_or_default(),
                });
            }
            Some(blue) => {
                next.service.warm = None;
                let drain_until = now + dep.drain_s_of(&blue.target_group, config);
                dep.enter(
                    Phase::Retiring { drain_until },
                    now,
                    format!("retiring {}: draining until {}", blue.version, format_time(drain_until)),
                );
                effects.push(Effect::DeregisterTargets {
                    target_group: blue.target_group.clone(),
                    instance_ids: blue.instance_ids.clone(),
                    port: config.launch.port,
                });
                // Closed when green went live; again in case that crashed (idempotent).
                effects.extend(close_test_route(config, dep));
                note = format!("bake window over; draining {}", blue.version);
            }
        },
        (Event::RetireDue { .. }, Phase::Retiring { drain_until }) => {
            // Deregister again on every delivery (idempotent): the delivery that committed
            // `Retiring` may have crashed before its DeregisterTargets, and blue must be
            // deregistered before it is terminated (I8).
            let blue = dep.blue.clone().unwrap_or_else(|| dep.green_release());
            effects.push(Effect::DeregisterTargets {
                target_group: blue.target_group.clone(),
                instance_ids: blue.instance_ids.clone(),
                port: config.launch.port,
            });
            if now >= drain_until {
                effects.push(Effect::TerminateInstances {
                    service: dep.service.clone(),
                    instance_ids: blue.instance_ids,
                    deploy_id: None,
                    green: false,
                });
                note = "draining over; terminating the old fleet".into();
            } else {
                note = format!(
                    "{} draining until {} (deregistration re-applied)",
                    blue.version,
                    format_time(drain_until)
                );
            }
        }
        (Event::BlueTerminated, Phase::Retiring { .. }) => {
            dep.enter(Phase::Succeeded, now, "old fleet terminated");
            finish(&mut next.service, dep, &mut effects);
            note = "deployment succeeded".into();
        }
        (
            Event::Abort { reason },
            Phase::Launching | Phase::Verifying { .. } | Phase::Verified { .. } | Phase::Shifting { .. },
        ) => {
            enter_aborting(dep, config, reason.clone(), now);
            abort_effects(config, dep, now, &mut effects);
            note = format!("aborting: {reason}");
        }
        (Event::Abort { .. }, Phase::Aborting { .. }) => {
            abort_effects(config, dep, now, &mut effects);
            note = "aborting (continued)".into();
        }
        (Event::Abort { reason }, phase @ (Phase::Baking { .. } | Phase::Retiring { .. })) => {
            // abort-deployment after a step of this execution failed, while green is live
            // (another execution, a promote's follow-up, took it there; or retire-blue itself
            // failed, e.g. blue still serving): nothing to abort, so the route continues the
            // deployment (retire-blue) instead of failing the execution, after a growing wait
            // and at most `LATE_STEP_TRIES` times. In `Succeeded`
            // it ends: the last arm re-issues what a finished deployment owes (its report).
            note = late_step_failed(&mut next.service, dep, reason, &phase, now);
        }
        (Event::GreenTerminated, Phase::Aborting { reason, .. }) => {
            dep.enter(
                Phase::Aborted { reason: reason.clone() },
                now,
                "green terminated; traffic on blue",
            );
            finish(&mut next.service, dep, &mut effects);
            note = format!("deployment aborted: {reason}");
        }
        (
            Event::Supersede { reason, .. },
            Phase::Launching | Phase::Verifying { .. } | Phase::Verified { .. } | Phase::Shifting { .. },
        ) => {
            // Held, only a rollback's redeployment gets here (`hold::frozen`): it ends the hold.
            hold::end(
                &mut next.service,
                dep,
                crate::model::HoldAction::RolledBack,
                "a rollback's redeployment",
                "",
                now,
            );
            note = abort_now(dep, config, reason.clone(), "superseded", now, &mut effects);
        }
        (Event::Supersede { resume, .. }, phase) if !phase.is_terminal() => {
            // Green is live (or already aborting): it ends on its own, then the queued one starts.
            if *resume {
                effects.push(follow_up_execution(dep, &format!("resume-{}", dep.gen)));
            }
            note = format!(
                "{} is {}: it finishes first{}",
                dep.deploy_id,
                phase.name(),
                if *resume {
                    " (resumed: its lease had expired)"
                } else {
                    ""
                }
            );
        }
        (
            Event::AbortRequested { requested_by, reason },
            Phase::Launching | Phase::Verifying { .. } | Phase::Verified { .. } | Phase::Shifting { .. },
        ) => {
            hold::end(
                &mut next.service,
                dep,
                crate::model::HoldAction::Aborted,
                requested_by,
                "",
                now,
            );
            let reason = format!("aborted by {requested_by}: {reason}");
            note = abort_now(dep, config, reason, "abort", now, &mut effects);
        }
        (Event::AbortRequested { .. }, Phase::Aborting { .. }) => {
            // A redelivery (the first crashed after committing `Aborting`, before its effects),
            // or another request while aborting for another reason: the abort acts at once
            // (I20), so re-issue its effects and the follow-up execution, all idempotent
            // (StartExecution of an existing name is a no-op). Whatever the reason, this also
            // completes any clean-up an earlier delivery left unstarted.
            abort_effects(config, dep, now, &mut effects);
            effects.push(follow_up_execution(dep, "abort"));
            note = format!(
                "{} is already aborting; abort effects and clean-up execution re-issued (idempotent)",
                dep.deploy_id
            );
        }
        (Event::AbortRequested { .. }, Phase::Aborted { .. }) => {
            note = format!("{} is already {}", dep.deploy_id, dep.phase.name());
        }
        (Event::AbortRequested { .. }, phase @ (Phase::Baking { .. } | Phase::Retiring { .. } | Phase::Succeeded)) => {
            return Err(Refusal::TooLateToAbort {
                deploy_id: dep.deploy_id.clone(),
                phase: phase.kind(),
            });
        }
        (Event::Promote { event_id, .. }, phase) if hold::released_by(dep, event_id).is_some() => {
            // A redelivery of the promote that released a hold: the same follow-up again
            // (idempotent), nothing more.
            let n = hold::released_by(dep, event_id).expect("guarded");
            if !phase.is_terminal() {
                effects.push(hold::release_execution(dep, n));
            }
            note = format!("{} released its hold already (a duplicate delivery)", dep.deploy_id);
        }
        (
            Event::Promote {
                requested_by,
                reason,
                event_id,
            },
            _,
        ) if dep.held().is_some() => {
            note = hold::promote(
                &mut next.service,
                dep,
                requested_by,
                reason,
                event_id,
                now,
                &mut effects,
            );
        }
        (Event::Promote { event_id, .. }, phase) if pause::already_approved(dep, event_id).is_some() => {
            // A redelivery (the first may have crashed before its StartExecution): start the
            // same follow-up again (idempotent: an existing execution's name is a no-op).
            let weight = pause::already_approved(dep, event_id).expect("guarded");
            if !phase.is_terminal() {
                effects.push(follow_up_execution(dep, &format!("approve-{weight}")));
            }
            note = format!(
                "{} approved its pause at {weight}% already (a duplicate delivery)",
                dep.deploy_id
            );
        }
        (
            Event::Promote {
                requested_by, reason, ..
            },
            Phase::Verified { weight } | Phase::Verifying { weight, .. },
        ) if pauses_apply(dep) && dep.waiting_pause(weight).is_some() => {
            // An approval: green goes on to its next step (the rest of the canary still
            // applies); a promote outside a pause skips it all.
            pause::approve(dep, weight, event, now);
            let mark = format!("pause at {weight}% approved by {requested_by}: {reason}");
            dep.enter(dep.phase.clone(), now, mark.clone());
            effects.push(follow_up_execution(dep, &format!("approve-{weight}")));
            note = mark;
        }
        (Event::Promote { .. }, _) if dep.promoted_by.is_some() => {
            note = format!("{} is already promoted", dep.deploy_id);
        }
        (
            Event::Promote {
                requested_by, reason, ..
            },
            phase @ (Phase::Launching
            | Phase::Verifying { .. }
            | Phase::Verified { .. }
            | Phase::Shifting { .. }
            | Phase::Baking { .. }),
        ) => {
            dep.promoted_by = Some(requested_by.clone());
            // An engineer's go-ahead: a late step that greenlight gave up on is tried again.
            dep.late_failures = 0;
            let skipped = match phase {
                Phase::Baking { .. } => {
                    dep.phase = Phase::Baking { until: now };
                    "the rest of the bake window skipped"
                }
                _ => "remaining canary steps and the bake window skipped; health gates still apply",
            };
            let mark = format!("promoted by {requested_by}: {reason}; {skipped}");
            dep.enter(dep.phase.clone(), now, mark.clone());
            // Act now, whatever the deployment's own execution waits for.
            effects.push(follow_up_execution(dep, &format!("promote-{}", dep.gen)));
            note = mark;
        }
        (Event::Promote { .. }, Phase::Retiring { .. } | Phase::Succeeded) => {
            note = format!("{} is {}: nothing left to skip", dep.deploy_id, dep.phase.name());
        }
        (Event::Promote { .. }, phase @ (Phase::Aborting { .. } | Phase::Aborted { .. })) => {
            return Err(Refusal::NothingToPromote {
                deploy_id: dep.deploy_id.clone(),
                phase: phase.kind(),
            });
        }
        (Event::LeaseExpired { run_id }, _) => {
            note = lease_expired(&mut next.service, dep, config, run_id, now, &mut effects)?;
        }
        (event, phase) => {
            note = stale_delivery(config, &next.service, dep, event, &phase, &mut effects);
        }
    }
    run_a_launching_rollback(&next, event, &mut effects);
    if next
        .deployment
        .as_ref()
        .is_some_and(|d| hooks::keep_green_for_hooks(config, d, now))
    {
        // Green is terminated once its `after_revert` hooks decided.
        effects.retain(|e| !matches!(e, Effect::TerminateInstances { green: true, .. }));
    }
    if let Some(dep) = next.deployment.as_ref() {
        renew_lease(&mut next.service, config, dep, now);
        // The plan follows the deployment that holds (or held) the service.
        let holder = |s: &ServiceState| s.active.as_deref() == Some(dep.deploy_id.as_str());
        if holder(&state.service) || holder(&next.service) {
            next.service.revert_plan = fast_revert_plan(&next.service, config, dep);
        }
    }
    Ok(Decision {
        state: next,
        effects,
        note,
    })
}

/// Green moves from `weight` % to the next canary step (100 % without a blue or once
/// promoted); `why` (analysis's verdict) goes into the timeline. The note.
fn shift(
    config: &ServiceConfig,
    dep: &mut Deployment,
    weight: u8,
    why: &str,
    now: Epoch,
    effects: &mut Vec<Effect>,
) -> String {
    let to = if dep.blue.is_some() && dep.promoted_by.is_none() {
        config.next_weight(weight)
    } else {
        100
    };
    dep.max_weight = dep.max_weight.max(to);
    let because = if why.is_empty() {
        String::new()
    } else {
        format!(" ({why})")
    };
    dep.enter(
        Phase::Shifting { from: weight, to },
        now,
        format!("shifting green {weight}% -> {to}%{because}"),
    );
    effects.push(set_traffic(config, dep, to));
    format!("shifting traffic to green: {to}%{because}")
}

/// Green verified at `weight` % moves on, unless an approval pause holds it there
/// ([`pause::before_shift`]); a pause nobody approved in time does its declared action. The note.
fn advance(
    config: &ServiceConfig,
    dep: &mut Deployment,
    weight: u8,
    why: &str,
    now: Epoch,
    effects: &mut Vec<Effect>,
) -> String {
    match pause::before_shift(config, dep, weight, now) {
        pause::Gate::Open => shift(config, dep, weight, why, now, effects),
        pause::Gate::Wait(note) => note,
        pause::Gate::TimedOut(crate::config::OnPauseTimeout::Continue, late) => shift(
            config,
            dep,
            weight,
            &format!("{late}; continuing as declared"),
            now,
            effects,
        ),
        pause::Gate::TimedOut(crate::config::OnPauseTimeout::Abort, late) => {
            let reason = format!("{late}; aborting as declared");
            enter_aborting(dep, config, reason.clone(), now);
            abort_effects(config, dep, now, effects);
            format!("aborting: {reason}")
        }
    }
}

/// I32: a regression found by analysis (or a failed hook) leaves the deployment reverted by
/// it, aborting.
fn debug_assert_reverted_by(dep: &Deployment, trigger: crate::model::Trigger) {
    debug_assert!(
        dep.revert.as_ref().is_some_and(|r| r.trigger == trigger) && matches!(dep.phase, Phase::Aborting { .. }),
        "I32: {} found {} failing, yet it is {} with revert {:?}",
        trigger.as_str(),
        dep.deploy_id,
        dep.phase.name(),
        dep.revert
    );
}

/// A regression found by analysis (in a canary step or the bake window, `phase`): traffic
/// back to blue through the same path as an alarm's, recorded as `rolled back by analysis`.
fn revert_by_analysis(
    service: &mut ServiceState,
    dep: &mut Deployment,
    config: &ServiceConfig,
    why: String,
    phase: &Phase,
    now: Epoch,
    effects: &mut Vec<Effect>,
) -> Result<String, Refusal> {
    if hold::holds_on_failure(dep) {
        return Ok(hold::hold(service, dep, crate::model::HoldCause::Analysis, why, now));
    }
    let by = (crate::model::Trigger::Analysis, "analysis".to_string());
    revert_by(service, dep, config, by, why, phase, now, effects)
}

/// A failure found by the deployment's own step (analysis, a hook; `trigger` and who, in
/// `by`) while green has traffic: traffic back to blue through the same path as an alarm's.
///
/// It is cleaned up by the step's own execution, which routes to abort-deployment next: no
/// follow-up execution. (An alarm's or an engineer's revert starts one because the
/// deployment's execution may be asleep in a long wait; a step redelivered after a crash
/// could not re-issue it, its event being the step's, not the revert's.)
#[allow(clippy::too_many_arguments)]
fn revert_by(
    service: &mut ServiceState,
    dep: &mut Deployment,
    config: &ServiceConfig,
    (trigger, requested_by): (crate::model::Trigger, String),
    why: String,
    phase: &Phase,
    now: Epoch,
    effects: &mut Vec<Effect>,
) -> Result<String, Refusal> {
    let request = crate::request::RevertRequest {
        service: dep.service.clone(),
        trigger,
        requested_by,
        reason: why,
        to_version: None,
        event_id: format!("{}-{}-{now}", trigger.as_str(), dep.deploy_id),
        event_time_ms: now * 1000,
    };
    let note = revert(service, dep, config, &request, (now * 1000, None), phase, now, effects)?;
    debug_assert_reverted_by(dep, trigger);
    let follow_up = format!("{}-revert", dep.deploy_id);
    effects.retain(|e| !matches!(e, Effect::StartExecution { execution, .. } if *execution == follow_up));
    Ok(note)
}

/// RunInstances for green; the note.
fn launch_green(config: &ServiceConfig, dep: &Deployment, effects: &mut Vec<Effect>) -> String {
    effects.push(Effect::LaunchGreen {
        service: dep.service.clone(),
        deploy_id: dep.deploy_id.clone(),
        version: dep.version.clone(),
        ami: dep.ami.clone(),
        client_token: DeployId::parse(&dep.deploy_id)
            .map(|id| id.client_token(0))
            .unwrap_or_else(|_| format!("greenlight-{}", dep.deploy_id)),
        launch: config.launch.clone(),
    });
    format!("launching {} x {}", config.launch.count, dep.ami)
}

/// Each switch point's frame (by ARN) and each target group's drain time in seconds (by ARN).
type FramesAndDrains = (BTreeMap<String, Frame>, BTreeMap<String, u64>);

/// The frame of every registered switch point launch-green read (by ARN) and the target
/// groups' deregistration delays, or why a switch point cannot be owned (the deployment is
/// refused before anything is launched).
fn frames_of(config: &ServiceConfig, seen: &crate::request::LaunchObservation) -> Result<FramesAndDrains, String> {
    let mut frames = BTreeMap::new();
    for point in config.switch.points() {
        if let Some((_, actions)) = seen.points.iter().find(|(arn, _)| arn == point.arn()) {
            let frame = crate::switch::own(point, actions, &config.target_groups)
                .map_err(|why| format!("switch point refused: {why}"))?;
            frames.insert(point.arn().to_string(), frame);
        }
    }
    let drain_s = seen
        .drain_s
        .iter()
        .filter(|(tg, _)| config.target_groups.contains(tg))
        .cloned()
        .collect();
    Ok((frames, drain_s))
}

#[cfg(test)]
mod tests;
