//! Table tests for `decide`: every transition and every refusal, plus the redelivery rule
//! (the same event on the state it produced yields the same effects and no new state).

use super::*;
use crate::config::tests::sample;
use crate::config::NewImagePolicy;
use crate::model::{ImageSource, PhaseName, Release, ServiceState, Trigger};
use std::collections::BTreeMap;

const NOW: Epoch = 1_000_000;
const AMI_V1: &str = "ami-0000000000000000a";
const AMI_V2: &str = "ami-0000000000000000b";
const LISTENER_ARN: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/web/1/2";

fn blue() -> Release {
    Release {
        version: "v1".into(),
        ami: AMI_V1.into(),
        target_group: sample().target_groups[0].clone(),
        instance_ids: vec!["i-blue1".into(), "i-blue2".into()],
        deploy_id: None,
        launched_at: None,
    }
}

fn request(version: &str, ami: &str) -> ImageRequest {
    ImageRequest {
        service: "checkout".into(),
        version: version.into(),
        ami: ami.into(),
        source: ImageSource::Greenlight,
        requested_by: "ci".into(),
        reason: None,
        attempt: 1,
        rollback_of: None,
        repave_of: None,
        on_failure: None,
    }
}

fn good_image() -> Option<ImageFacts> {
    Some(ImageFacts {
        owner: "123456789012".into(),
        available: true,
        tags: BTreeMap::new(),
    })
}

/// A service with v1 live and no deployment.
fn idle() -> State {
    State {
        config: sample(),
        service: ServiceState::new("checkout", Some(blue())),
        deployment: None,
    }
}

/// The state right after v2 was started.
fn started() -> State {
    let event = Event::Start {
        request: request("v2", AMI_V2),
        image: good_image(),
        firing_alarms: vec![],
    };
    decide(&idle(), &event, NOW).unwrap().state
}

/// `started()` moved to `phase`, with green launched and `max_weight` set.
fn in_phase(phase: Phase, max_weight: u8) -> State {
    let mut s = started();
    let dep = s.deployment.as_mut().unwrap();
    dep.green_instances = vec!["i-green1".into(), "i-green2".into()];
    if matches!(phase, Phase::Aborting { .. }) {
        // Entered at NOW: the stale-write fence (I26) counts from here.
        dep.enter(phase, NOW, "aborting");
    } else {
        dep.phase = phase;
    }
    dep.max_weight = max_weight;
    if matches!(dep.phase, Phase::Aborting { .. }) && max_weight > 0 {
        // The abort's own run read its listener change back (the usual case).
        dep.traffic_back_at = Some(NOW);
    }
    let dep = s.deployment.as_ref().unwrap();
    s.service.revert_plan = fast_revert_plan(&s.service, &s.config, dep);
    s
}

/// `state` once the switch points were read back with the aborting deployment's traffic back
/// off green at `at` (the abort's run's `TrafficApplied`).
fn traffic_back_at(state: &State, at: Epoch) -> State {
    let event = Event::TrafficApplied {
        weight: 0,
        at_ms: at * 1000,
    };
    decide(state, &event, at).unwrap().state
}

fn healthy_report(smoke_passed: bool) -> HealthReport {
    let ids = ["i-green1", "i-green2"];
    HealthReport {
        targets: ids
            .iter()
            .map(|id| TargetHealth {
                instance_id: id.to_string(),
                state: TargetState::Healthy,
                reason: None,
            })
            .collect(),
        smoke: ids
            .iter()
            .map(|id| SmokeResult {
                instance_id: id.to_string(),
                passed: smoke_passed,
                detail: if smoke_passed { "200 ok" } else { "500 broken" }.into(),
            })
            .collect(),
    }
}

fn report(states: &[TargetState]) -> HealthReport {
    HealthReport {
        targets: states
            .iter()
            .enumerate()
            .map(|(i, s)| TargetHealth {
                instance_id: format!("i-green{}", i + 1),
                state: *s,
                reason: Some("Target.ResponseCodeMismatch".into()),
            })
            .collect(),
        smoke: vec![],
    }
}

/// The effects' names, the test route's left out: the tables below are about traffic,
/// instances and the ledger; `the_test_route_opens_with_green_and_closes_on_every_way_out`
/// checks the test route on each of their paths.
fn effect_names(effects: &[Effect]) -> Vec<String> {
    all_effect_names(effects)
        .into_iter()
        .filter(|name| !name.ends_with("_test_route"))
        .collect()
}

fn all_effect_names(effects: &[Effect]) -> Vec<String> {
    effects
        .iter()
        .map(|e| serde_json::to_value(e).unwrap()["effect"].as_str().unwrap().to_string())
        .collect()
}

fn phase_of(state: &State) -> &Phase {
    &state.deployment.as_ref().unwrap().phase
}

/// A transition row: name, state, event, now, expected phase, expected effect names.
type Row = (&'static str, State, Event, Epoch, Phase, Vec<&'static str>);

#[test]
fn transitions() {
    use Phase::*;
    use TargetState::*;
    let bake = sample().bake_window_s;
    let drain = sample().deregistration_delay_s;
    let fence = sample().max_invocation_s;
    // (name, state, event, now, expected phase, expected effects)
    let table: Vec<Row> = vec![
        (
            "launch due launches",
            started(),
            Event::LaunchDue {
                seen: Default::default(),
            },
            NOW,
            Launching,
            vec!["launch_green"],
        ),
        (
            "launched -> verifying, registered",
            started(),
            Event::GreenLaunched {
                instance_ids: vec!["i-green1".into(), "i-green2".into()],
            },
            NOW,
            Verifying { weight: 0, polls: 0 },
            vec!["register_targets", "set_traffic"],
        ),
        (
            "launch redelivered after launch re-registers",
            in_phase(Verifying { weight: 0, polls: 0 }, 0),
            Event::LaunchDue {
                seen: Default::default(),
            },
            NOW,
            Verifying { weight: 0, polls: 0 },
            vec!["register_targets", "set_traffic"],
        ),
        (
            "initial targets: poll again",
            in_phase(Verifying { weight: 0, polls: 0 }, 0),
            Event::HealthObserved {
                report: report(&[Initial, Healthy]),
            },
            NOW,
            Verifying { weight: 0, polls: 1 },
            vec![],
        ),
        (
            "unregistered target is registered again",
            in_phase(Verifying { weight: 0, polls: 0 }, 0),
            Event::HealthObserved {
                report: report(&[Healthy]),
            },
            NOW,
            Verifying { weight: 0, polls: 1 },
            vec!["register_targets"],
        ),
        (
            "healthy + smoke ok -> verified",
            in_phase(Verifying { weight: 0, polls: 1 }, 0),
            Event::HealthObserved {
                report: healthy_report(true),
            },
            NOW,
            Verified { weight: 0 },
            vec![],
        ),
        (
            "smoke fails before traffic -> aborting, no drain",
            in_phase(Verifying { weight: 0, polls: 1 }, 0),
            Event::HealthObserved {
                report: healthy_report(false),
            },
            NOW,
            Aborting {
                reason: "smoke test failed on i-green1 at 0%: 500 broken".into(),
                drain_until: NOW,
            },
            vec![],
        ),
        (
            "unhealthy target -> aborting",
            in_phase(Verifying { weight: 0, polls: 0 }, 0),
            Event::HealthObserved {
                report: report(&[Healthy, Unhealthy]),
            },
            NOW,
            Aborting {
                reason: "target i-green2 is unhealthy at 0% (Target.ResponseCodeMismatch)".into(),
                drain_until: NOW,
            },
            vec![],
        ),
        (
            "unhealthy during canary drains before terminate",
            in_phase(Verifying { weight: 10, polls: 0 }, 10),
            Event::HealthObserved {
                report: report(&[Unhealthy, Healthy]),
            },
            NOW,
            Aborting {
                reason: "target i-green1 is unhealthy at 10% (Target.ResponseCodeMismatch)".into(),
                drain_until: NOW + fence + drain,
            },
            vec![],
        ),
        (
            "polls exhausted -> aborting",
            in_phase(Verifying { weight: 0, polls: 2 }, 0),
            Event::HealthObserved {
                report: report(&[Initial, Initial]),
            },
            NOW,
            Aborting {
                reason: "green not healthy after 3 polls (15s): i-green1 initial, i-green2 initial".into(),
                drain_until: NOW,
            },
            vec![],
        ),
        (
            "verified 0 -> first canary step",
            in_phase(Verified { weight: 0 }, 0),
            Event::ShiftDue {
                green_unready: None,
                analysis: None,
            },
            NOW,
            Shifting { from: 0, to: 10 },
            vec!["set_traffic"],
        ),
        (
            "verified 10 -> 50",
            in_phase(Verified { weight: 10 }, 10),
            Event::ShiftDue {
                green_unready: None,
                analysis: None,
            },
            NOW,
            Shifting { from: 10, to: 50 },
            vec!["set_traffic"],
        ),
        (
            "shift redelivered re-applies",
            in_phase(Shifting { from: 10, to: 50 }, 50),
            Event::ShiftDue {
                green_unready: None,
                analysis: None,
            },
            NOW,
            Shifting { from: 10, to: 50 },
            vec!["set_traffic"],
        ),
        (
            "traffic applied -> verifying at new weight",
            in_phase(Shifting { from: 10, to: 50 }, 50),
            Event::TrafficApplied { weight: 50, at_ms: 0 },
            NOW,
            Verifying { weight: 50, polls: 0 },
            vec![],
        ),
        (
            "stale traffic report ignored",
            in_phase(Shifting { from: 10, to: 50 }, 50),
            Event::TrafficApplied { weight: 10, at_ms: 0 },
            NOW,
            Shifting { from: 10, to: 50 },
            vec![],
        ),
        (
            "shift at 100 is a no-op",
            in_phase(Verified { weight: 100 }, 100),
            Event::ShiftDue {
                green_unready: None,
                analysis: None,
            },
            NOW,
            Verified { weight: 100 },
            vec![],
        ),
        (
            "finalize at 100 -> baking",
            in_phase(Verified { weight: 100 }, 100),
            Event::FinalizeDue,
            NOW,
            Baking { until: NOW + bake },
            vec![],
        ),
        (
            "finalize before 100 is a no-op",
            in_phase(Verified { weight: 50 }, 50),
            Event::FinalizeDue,
            NOW,
            Verified { weight: 50 },
            vec![],
        ),
        (
            "retire before the bake window is a no-op",
            in_phase(Baking { until: NOW + 5 }, 100),
            Event::RetireDue {
                blue_forwarded_by: None,
                analysis: None,
            },
            NOW,
            Baking { until: NOW + 5 },
            vec![],
        ),
        (
            "retire after the bake window deregisters blue",
            in_phase(Baking { until: NOW }, 100),
            Event::RetireDue {
                blue_forwarded_by: None,
                analysis: None,
            },
            NOW,
            Retiring {
                drain_until: NOW + drain,
            },
            vec!["deregister_targets"],
        ),
        (
            "retire while draining deregisters blue again (idempotent)",
            in_phase(Retiring { drain_until: NOW + 1 }, 100),
            Event::RetireDue {
                blue_forwarded_by: None,
                analysis: None,
            },
            NOW,
            Retiring { drain_until: NOW + 1 },
            vec!["deregister_targets"],
        ),
        (
            "retire after draining terminates blue, deregistered first",
            in_phase(Retiring { drain_until: NOW }, 100),
            Event::RetireDue {
                blue_forwarded_by: None,
                analysis: None,
            },
            NOW,
            Retiring { drain_until: NOW },
            vec!["deregister_targets", "terminate_instances"],
        ),
        (
            "blue terminated -> succeeded + report",
            in_phase(Retiring { drain_until: NOW }, 100),
            Event::BlueTerminated,
            NOW,
            Succeeded,
            vec!["write_report"],
        ),
        (
            "abort before traffic: deregister + terminate now",
            in_phase(Verifying { weight: 0, polls: 0 }, 0),
            Event::Abort {
                reason: "operator".into(),
            },
            NOW,
            Aborting {
                reason: "operator".into(),
                drain_until: NOW,
            },
            vec!["deregister_targets", "terminate_instances"],
        ),
        (
            "abort during canary: blue back first; green stays registered until the fence (I26), then drains",
            in_phase(Verifying { weight: 10, polls: 0 }, 10),
            Event::Abort {
                reason: "operator".into(),
            },
            NOW,
            Aborting {
                reason: "operator".into(),
                drain_until: NOW + fence + drain,
            },
            vec!["set_traffic"],
        ),
        (
            "abort continued before the fence: traffic back re-applied, green still registered",
            in_phase(
                Aborting {
                    reason: "x".into(),
                    drain_until: NOW,
                },
                10,
            ),
            Event::Abort { reason: "y".into() },
            NOW + fence - 1,
            Aborting {
                reason: "x".into(),
                drain_until: NOW,
            },
            vec!["set_traffic"],
        ),
        (
            "abort continued after the fence and draining: traffic back, deregister, terminate",
            in_phase(
                Aborting {
                    reason: "x".into(),
                    drain_until: NOW,
                },
                10,
            ),
            Event::Abort { reason: "y".into() },
            NOW + fence,
            Aborting {
                reason: "x".into(),
                drain_until: NOW,
            },
            vec!["set_traffic", "deregister_targets", "terminate_instances"],
        ),
        (
            "green terminated -> aborted + report",
            in_phase(
                Aborting {
                    reason: "x".into(),
                    drain_until: NOW,
                },
                0,
            ),
            Event::GreenTerminated,
            NOW,
            Aborted { reason: "x".into() },
            vec!["write_report"],
        ),
        (
            "abort of an aborted deployment terminates what raced it (by deploy id), rewrites the report",
            in_phase(Aborted { reason: "x".into() }, 0),
            Event::Abort { reason: "y".into() },
            NOW,
            Aborted { reason: "x".into() },
            vec!["terminate_instances", "write_report"],
        ),
        (
            "abort-deployment after green went live continues the deployment",
            in_phase(Phase::Baking { until: NOW + 10 }, 100),
            Event::Abort {
                reason: "a step failed".into(),
            },
            NOW,
            Phase::Baking { until: NOW + 10 },
            vec![],
        ),
        (
            "health report after abort ignored",
            in_phase(
                Aborting {
                    reason: "x".into(),
                    drain_until: NOW,
                },
                0,
            ),
            Event::HealthObserved {
                report: healthy_report(true),
            },
            NOW,
            Aborting {
                reason: "x".into(),
                drain_until: NOW,
            },
            vec![],
        ),
    ];
    for (name, state, event, now, want_phase, want_effects) in table {
        let d = decide(&state, &event, now).unwrap_or_else(|e| panic!("{name}: refused: {e}"));
        assert_eq!(phase_of(&d.state), &want_phase, "{name}");
        assert_eq!(effect_names(&d.effects), want_effects, "{name}");
    }
}

#[test]
fn refusals() {
    let live_v2 = {
        let mut s = idle();
        s.service.live = Some(Release {
            version: "v2".into(),
            ami: AMI_V2.into(),
            ..blue()
        });
        s
    };
    let busy = {
        let mut s = idle();
        s.service.active = Some("d-00000000000000000000".into());
        s.config.on_new_image = NewImagePolicy::Reject;
        s
    };
    let start = |version: &str, ami: &str, image: Option<ImageFacts>| Event::Start {
        request: request(version, ami),
        image,
        firing_alarms: vec![],
    };
    let foreign = Some(ImageFacts {
        owner: "999999999999".into(),
        ..good_image().unwrap()
    });
    let pending = Some(ImageFacts {
        available: false,
        ..good_image().unwrap()
    });
    let table: Vec<(&str, State, Event, &str)> = vec![
        (
            "older than live",
            live_v2.clone(),
            start("v1.5", AMI_V1, good_image()),
            "older than the live version v2",
        ),
        (
            "same version, same ami",
            live_v2.clone(),
            start("v2", AMI_V2, good_image()),
            "already live",
        ),
        (
            "same version, other ami",
            live_v2,
            start("v2.0", AMI_V1, good_image()),
            "under a new version",
        ),
        (
            "deployment in flight, policy reject",
            busy,
            start("v2", AMI_V2, good_image()),
            "in flight",
        ),
        ("image missing", idle(), start("v2", AMI_V2, None), "was not found"),
        (
            "an alarm of the service is in ALARM",
            idle(),
            Event::Start {
                request: request("v2", AMI_V2),
                image: good_image(),
                firing_alarms: vec!["checkout-5xx".into()],
            },
            "while its alarm checkout-5xx is in ALARM",
        ),
        (
            "image pending",
            idle(),
            start("v2", AMI_V2, pending),
            "not available yet",
        ),
        (
            "wrong owner",
            idle(),
            start("v2", AMI_V2, foreign),
            "owned by account 999999999999",
        ),
        (
            "bad version",
            idle(),
            start("latest", AMI_V2, good_image()),
            "invalid version",
        ),
        (
            "other service",
            idle(),
            Event::Start {
                request: ImageRequest {
                    service: "search".into(),
                    ..request("v2", AMI_V2)
                },
                image: good_image(),
                firing_alarms: vec![],
            },
            "for service",
        ),
        (
            "step without deployment",
            idle(),
            Event::LaunchDue {
                seen: Default::default(),
            },
            "no deployment",
        ),
        (
            "retire while blue serves",
            in_phase(Phase::Baking { until: NOW }, 100),
            Event::RetireDue {
                blue_forwarded_by: Some(LISTENER_ARN.into()),
                analysis: None,
            },
            "still forwards traffic",
        ),
    ];
    for (name, state, event, want) in table {
        let err = decide(&state, &event, NOW).expect_err(name).to_string();
        assert!(err.contains(want), "{name}: {err:?} should contain {want:?}");
    }
}

#[test]
fn required_tag_missing_is_refused() {
    let mut state = idle();
    state
        .config
        .ami_policy
        .required_tags
        .insert("approved".into(), "true".into());
    let err = decide(
        &state,
        &Event::Start {
            request: request("v2", AMI_V2),
            image: good_image(),
            firing_alarms: vec![],
        },
        NOW,
    )
    .unwrap_err();
    assert!(err.to_string().contains("approved=true"), "{err}");
}

#[test]
fn start_creates_one_deployment_and_duplicates_change_nothing() {
    let event = Event::Start {
        request: request("v2", AMI_V2),
        image: good_image(),
        firing_alarms: vec![],
    };
    let first = decide(&idle(), &event, NOW).unwrap();
    let dep = first.state.deployment.as_ref().unwrap();
    assert_eq!(dep.phase, Phase::Launching);
    assert_eq!(dep.blue, Some(blue()));
    assert_eq!(
        dep.green_tg,
        sample().target_groups[1],
        "green goes to the idle target group"
    );
    assert_eq!(first.state.service.active.as_deref(), Some(dep.deploy_id.as_str()));
    assert_eq!(effect_names(&first.effects), ["start_execution"]);
    // The same event again: same state, start the (same-named) execution again.
    let again = decide(&first.state, &event, NOW + 5).unwrap();
    assert_eq!(again.state, first.state);
    assert_eq!(effect_names(&again.effects), ["start_execution"]);
    // After it finished: nothing at all.
    let mut done = first.state.clone();
    done.deployment.as_mut().unwrap().phase = Phase::Aborted { reason: "x".into() };
    done.service.active = None;
    let late = decide(&done, &event, NOW + 50).unwrap();
    assert_eq!(late.state, done);
    assert!(late.effects.is_empty());
    assert!(late.note.contains("attempt 2"), "{}", late.note);
}

#[test]
fn finalize_records_live_and_warm_and_finish_frees_the_service() {
    let d = decide(
        &in_phase(Phase::Verified { weight: 100 }, 100),
        &Event::FinalizeDue,
        NOW,
    )
    .unwrap();
    let live = d.state.service.live.as_ref().unwrap();
    assert_eq!((live.version.as_str(), live.ami.as_str()), ("v2", AMI_V2));
    assert_eq!(live.instance_ids, ["i-green1", "i-green2"]);
    assert_eq!(d.state.service.warm, Some(blue()));
    let retiring = decide(
        &d.state,
        &Event::RetireDue {
            blue_forwarded_by: None,
            analysis: None,
        },
        NOW + 10_000,
    )
    .unwrap();
    assert_eq!(retiring.state.service.warm, None, "a draining fleet is no longer warm");
    let done = decide(&retiring.state, &Event::BlueTerminated, NOW + 20_000).unwrap();
    assert_eq!(done.state.service.active, None);
    assert_eq!(done.state.service.live.as_ref().unwrap().version, "v2");
}

#[test]
fn first_deployment_without_blue_goes_straight_to_100() {
    let mut state = in_phase(Phase::Verified { weight: 0 }, 0);
    state.deployment.as_mut().unwrap().blue = None;
    let d = decide(
        &state,
        &Event::ShiftDue {
            green_unready: None,
            analysis: None,
        },
        NOW,
    )
    .unwrap();
    assert_eq!(phase_of(&d.state), &Phase::Shifting { from: 0, to: 100 });
    assert!(matches!(
        &d.effects[0],
        Effect::SetTraffic {
            blue_tg: None,
            green_weight: 100,
            ..
        }
    ));
}

#[test]
fn green_is_attached_at_weight_zero_before_its_gates() {
    // Attached so the load balancer health-checks it; no user traffic, listener "untouched".
    let launched = Event::GreenLaunched {
        instance_ids: vec!["i-green1".into()],
    };
    let d = decide(&started(), &launched, NOW).unwrap();
    let attach: Vec<&Effect> = d
        .effects
        .iter()
        .filter(|e| matches!(e, Effect::SetTraffic { .. }))
        .collect();
    assert!(
        matches!(
            attach.as_slice(),
            [Effect::SetTraffic {
                blue_tg: Some(_),
                green_weight: 0,
                ..
            }]
        ),
        "{attach:?}"
    );
    assert_eq!(d.state.deployment.as_ref().unwrap().max_weight, 0);
    let mut no_blue = started();
    no_blue.deployment.as_mut().unwrap().blue = None;
    let d = decide(&no_blue, &launched, NOW).unwrap();
    assert_eq!(effect_names(&d.effects), vec!["register_targets"]);
}

#[test]
fn redelivery_of_any_event_to_its_own_result_is_stable() {
    // Walk a whole canary rollout; at every step deliver the event twice.
    let mut state = started();
    let green = vec!["i-green1".to_string(), "i-green2".to_string()];
    let mut now = NOW;
    let script: Vec<Event> = vec![
        Event::GreenLaunched { instance_ids: green },
        Event::HealthObserved {
            report: healthy_report(true),
        },
        Event::ShiftDue {
            green_unready: None,
            analysis: None,
        },
        Event::TrafficApplied { weight: 10, at_ms: 0 },
        Event::HealthObserved {
            report: healthy_report(true),
        },
        Event::ShiftDue {
            green_unready: None,
            analysis: None,
        },
        Event::TrafficApplied { weight: 50, at_ms: 0 },
        Event::HealthObserved {
            report: healthy_report(true),
        },
        Event::ShiftDue {
            green_unready: None,
            analysis: None,
        },
        Event::TrafficApplied { weight: 100, at_ms: 0 },
        Event::HealthObserved {
            report: healthy_report(true),
        },
        Event::FinalizeDue,
    ];
    for event in script {
        now += 1;
        let first = decide(&state, &event, now).unwrap();
        let second = decide(&first.state, &event, now).unwrap();
        let stable_phase = phase_of(&second.state) == phase_of(&first.state);
        assert!(
            stable_phase,
            "{} moved twice: {:?} -> {:?}",
            event_name(&event),
            phase_of(&first.state),
            phase_of(&second.state)
        );
        state = first.state;
    }
    assert_eq!(
        phase_of(&state),
        &Phase::Baking {
            until: now + sample().bake_window_s
        }
    );
    assert_eq!(state.deployment.as_ref().unwrap().max_weight, 100);
}

fn rollback(event_time_ms: u64) -> Event {
    Event::Revert {
        request: RevertRequest {
            service: "checkout".into(),
            trigger: Trigger::Engineer,
            requested_by: "alice".into(),
            reason: "errors up".into(),
            to_version: None,
            event_id: "ev-1".into(),
            event_time_ms,
        },
        received_at_ms: NOW * 1000 + 50,
        flipped_at_ms: None,
    }
}

/// [`rollback`] at `NOW` with its request edited, flipped by the fast path `flipped_after_ms`
/// after receipt (None: not flipped yet).
fn rollback_with(edit: impl FnOnce(&mut RevertRequest), flipped_after_ms: Option<u64>) -> Event {
    let Event::Revert {
        mut request,
        received_at_ms,
        ..
    } = rollback(NOW * 1000)
    else {
        unreachable!()
    };
    edit(&mut request);
    Event::Revert {
        request,
        received_at_ms,
        flipped_at_ms: flipped_after_ms.map(|ms| received_at_ms + ms),
    }
}

/// `checkout-5xx` going to ALARM at `NOW` (see [`rollback_with`]).
fn alarm_rollback(flipped_after_ms: Option<u64>) -> Event {
    rollback_with(
        |request| {
            request.trigger = Trigger::Alarm;
            request.requested_by = "alarm:checkout-5xx".into();
        },
        flipped_after_ms,
    )
}

#[test]
fn rollbacks_while_blue_is_warm() {
    use Phase::*;
    let event = rollback(NOW * 1000);
    let drain = sample().deregistration_delay_s;
    let fence = sample().max_invocation_s;
    // (name, phase, max_weight, expected effects, traffic already back)
    let table: Vec<(&str, Phase, u8, Vec<&str>, bool)> = vec![
        (
            "canary at 10%: flip back, clean-up execution (green deregistered after the fence, I26)",
            Verifying { weight: 10, polls: 0 },
            10,
            vec!["set_traffic", "start_execution"],
            false,
        ),
        (
            "mid-shift: flip back",
            Shifting { from: 10, to: 50 },
            50,
            vec!["set_traffic", "start_execution"],
            false,
        ),
        (
            "before any traffic: nothing to flip, terminate at once",
            Verified { weight: 0 },
            0,
            vec!["deregister_targets", "terminate_instances", "start_execution"],
            true,
        ),
        (
            "baking: flip back",
            Baking { until: NOW + 100 },
            100,
            vec!["set_traffic", "start_execution"],
            false,
        ),
    ];
    for (name, phase, max_weight, effects, back) in table {
        let state = in_phase(phase.clone(), max_weight);
        let d = decide(&state, &event, NOW).unwrap_or_else(|e| panic!("{name}: {e}"));
        let dep = d.state.deployment.as_ref().unwrap();
        let drain_until = if max_weight > 0 { NOW + fence + drain } else { NOW };
        assert!(
            matches!(&dep.phase, Aborting { reason, drain_until: t } if reason.contains("rolled back by alice") && *t == drain_until),
            "{name}: {:?}",
            dep.phase
        );
        assert_eq!(effect_names(&d.effects), effects, "{name}");
        if let Some(Effect::SetTraffic { green_weight, .. }) = d.effects.first() {
            assert_eq!(*green_weight, 0, "{name}: all traffic back to blue");
        }
        let record = dep.revert.as_ref().expect("revert recorded");
        assert_eq!(
            (record.back_to.as_str(), record.event_id.as_str()),
            ("v1", "ev-1"),
            "{name}"
        );
        assert_eq!(record.traffic_back_at_ms.is_some(), back, "{name}");
        let live = d.state.service.live.as_ref().unwrap();
        assert_eq!(live.version, "v1", "{name}: v1 is live (again)");
        assert_eq!(d.state.service.warm, None, "{name}");
    }
}

#[test]
fn rollback_bookkeeping_and_hygiene() {
    let event = rollback(NOW * 1000);
    let reverted = decide(&in_phase(Phase::Baking { until: NOW + 100 }, 100), &event, NOW)
        .unwrap()
        .state;

    // The crash case: recorded, listener change not confirmed → the next delivery completes it
    // (green is deregistered only after the fence, I26).
    let again = decide(&reverted, &event, NOW + 1).unwrap();
    assert_eq!(again.state, reverted, "no new state");
    assert_eq!(effect_names(&again.effects), vec!["set_traffic", "start_execution"]);

    // The listener change confirmed: time-to-revert recorded once.
    let applied = Event::TrafficApplied {
        weight: 0,
        at_ms: NOW * 1000 + 120,
    };
    let confirmed = decide(&reverted, &applied, NOW).unwrap().state;
    let record = confirmed.deployment.as_ref().unwrap().revert.clone().unwrap();
    assert_eq!(
        (record.time_to_revert_ms(), record.receipt_to_revert_ms()),
        (Some(120), Some(70))
    );
    let twice = decide(
        &confirmed,
        &Event::TrafficApplied {
            weight: 0,
            at_ms: NOW * 1000 + 999,
        },
        NOW,
    )
    .unwrap();
    assert_eq!(twice.state, confirmed, "the first confirmation stands");

    // Repeated triggers (the same alarm again, another engineer) revert once: no new state;
    // while aborting, the clean-up is re-issued (idempotent), then nothing at all.
    let repeated = decide(&confirmed, &rollback(NOW * 1000 + 5), NOW + 2).unwrap();
    assert_eq!(repeated.state, confirmed);
    assert_eq!(effect_names(&repeated.effects), vec!["set_traffic", "start_execution"]);
    let mut aborted = confirmed.clone();
    aborted.deployment.as_mut().unwrap().phase = Phase::Aborted { reason: "x".into() };
    let late = decide(&aborted, &rollback(NOW * 1000 + 5), NOW + 200).unwrap();
    assert_eq!((late.state, late.effects), (aborted, vec![]));

    // A late event from before the deployment started concerns an earlier version.
    let fresh = in_phase(Phase::Verifying { weight: 10, polls: 0 }, 10);
    let stale = decide(&fresh, &rollback(NOW * 1000 - 60_000), NOW).unwrap();
    assert_eq!((stale.state, stale.effects), (fresh, vec![]));
}

#[test]
fn rollback_refusals() {
    let event = rollback(NOW * 1000);
    let retiring = in_phase(Phase::Retiring { drain_until: NOW + 5 }, 100);
    assert!(matches!(
        decide(&retiring, &event, NOW),
        Err(Refusal::NothingWarm { .. })
    ));
    let mut first = in_phase(Phase::Verifying { weight: 10, polls: 0 }, 10);
    first.deployment.as_mut().unwrap().blue = None;
    assert!(matches!(decide(&first, &event, NOW), Err(Refusal::NothingWarm { .. })));
    let Event::Revert {
        mut request,
        received_at_ms,
        ..
    } = event
    else {
        unreachable!()
    };
    request.to_version = Some("v0.9".into());
    let named = Event::Revert {
        request,
        received_at_ms,
        flipped_at_ms: None,
    };
    let err = decide(&in_phase(Phase::Baking { until: NOW + 100 }, 100), &named, NOW).unwrap_err();
    assert!(err.to_string().contains("the warm version is v1"), "{err}");
}

const ACTIVE: &str = "d-00000000000000000000";

/// v1 live, deployment `ACTIVE` in flight with its lease until `NOW + 100`.
fn held(policy: NewImagePolicy) -> State {
    let mut s = idle();
    s.service.active = Some(ACTIVE.into());
    s.service.lease_until = Some(NOW + 100);
    s.config.on_new_image = policy;
    s
}

fn start_v3(rollback_of: Option<&str>) -> Event {
    let mut request = request("v3", AMI_V2);
    request.rollback_of = rollback_of.map(str::to_string);
    Event::Start {
        request,
        image: good_image(),
        firing_alarms: vec![],
    }
}

#[test]
fn new_image_while_a_deployment_holds_the_service() {
    use NewImagePolicy::*;
    // (name, state, event, now, queued?, effects, supersede reason contains)
    type PolicyRow = (&'static str, State, Event, Epoch, bool, Vec<&'static str>, &'static str);
    let table: Vec<PolicyRow> = vec![
        (
            "queue: waits its turn",
            held(Queue),
            start_v3(None),
            NOW,
            true,
            vec![],
            "",
        ),
        (
            "supersede: the one in flight is aborted",
            held(Supersede),
            start_v3(None),
            NOW,
            true,
            vec!["supersede_deployment"],
            "superseded by v3",
        ),
        (
            "a rollback supersedes whatever the policy",
            held(Reject),
            start_v3(Some("ev-9")),
            NOW,
            true,
            vec!["supersede_deployment"],
            "superseded by the rollback to v3",
        ),
        (
            "an expired lease is taken over, and its deployment resumed",
            held(Reject),
            start_v3(None),
            NOW + 100,
            true,
            vec!["supersede_deployment"],
            "lease expired",
        ),
    ];
    for (name, state, event, now, queued, effects, reason) in table {
        let d = decide(&state, &event, now).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            d.state.service.active.as_deref(),
            Some(ACTIVE),
            "{name}: the holder keeps the lease"
        );
        assert_eq!(d.state.deployment, None, "{name}: nothing created yet");
        assert_eq!(d.state.service.queued.is_some(), queued, "{name}");
        assert_eq!(effect_names(&d.effects), effects, "{name}");
        if let Some(Effect::SupersedeDeployment {
            deploy_id,
            reason: why,
            resume,
            ..
        }) = d.effects.first()
        {
            assert_eq!(deploy_id, ACTIVE, "{name}");
            assert!(why.contains(reason), "{name}: {why}");
            assert_eq!(*resume, now >= NOW + 100, "{name}: resume only a lapsed holder");
        }
    }
    let err = decide(&held(Reject), &start_v3(None), NOW).unwrap_err();
    assert!(matches!(err, Refusal::Busy { .. }), "{err}");
    // A queued rollback is not displaced by a rollout.
    let mut waiting = held(Queue);
    waiting.service.queued = Some(ImageRequest {
        rollback_of: Some("ev-1".into()),
        repave_of: None,
        on_failure: None,
        ..request("v0.9", AMI_V1)
    });
    let err = decide(&waiting, &start_v3(None), NOW).unwrap_err();
    assert!(
        err.to_string().contains("rollback of checkout to v0.9 is queued"),
        "{err}"
    );
}

#[test]
fn a_rollback_may_go_older_than_live() {
    let older = Event::Start {
        request: ImageRequest {
            rollback_of: Some("ev-1".into()),
            repave_of: None,
            on_failure: None,
            ..request("v0.9", AMI_V2)
        },
        image: good_image(),
        firing_alarms: vec![],
    };
    let d = decide(&idle(), &older, NOW).unwrap();
    assert_eq!(phase_of(&d.state), &Phase::Launching);
    let plain = Event::Start {
        request: request("v0.9", AMI_V2),
        image: good_image(),
        firing_alarms: vec![],
    };
    assert!(matches!(decide(&idle(), &plain, NOW), Err(Refusal::Downgrade { .. })));
}

#[test]
fn the_queued_deployment_starts_when_the_holder_ends_and_clears_the_queue() {
    let mut state = in_phase(
        Phase::Aborting {
            reason: "x".into(),
            drain_until: NOW,
        },
        0,
    );
    let holder = state.deployment.as_ref().unwrap().deploy_id.clone();
    state.service.active = Some(holder);
    state.service.queued = Some(request("v3", AMI_V2));
    let d = decide(&state, &Event::GreenTerminated, NOW).unwrap();
    assert_eq!(d.state.service.active, None);
    assert_eq!(d.state.service.lease_until, None);
    assert_eq!(effect_names(&d.effects), vec!["start_queued", "write_report"]);
    // A crash before it started: any later delivery to the finished deployment restarts it.
    let again = decide(&d.state, &Event::GreenTerminated, NOW + 5).unwrap();
    assert_eq!(effect_names(&again.effects), vec!["start_queued"]);
    // Starting it takes the lease and empties the queue.
    let mut free = d.state.clone();
    free.deployment = None;
    let started = decide(&free, &start_v3(None), NOW + 6).unwrap().state;
    assert_eq!(started.service.queued, None);
    assert_eq!(started.service.lease_until, Some(NOW + 6 + sample().lease_s));
}

#[test]
fn progress_renews_the_lease_only_when_it_runs_short() {
    let lease = sample().lease_s;
    let mut state = in_phase(Phase::Verified { weight: 100 }, 100);
    let id = state.deployment.as_ref().unwrap().deploy_id.clone();
    state.service.active = Some(id);
    state.service.lease_until = Some(NOW + lease);
    // Finalize: the next step waits the bake window, longer than the lease has left.
    let baking = decide(&state, &Event::FinalizeDue, NOW).unwrap().state;
    assert_eq!(baking.service.lease_until, Some(NOW + sample().bake_window_s + lease));
    // A step with plenty of lease left writes no new lease.
    let mut verifying = in_phase(Phase::Verifying { weight: 10, polls: 0 }, 10);
    verifying.service.active = Some(verifying.deployment.as_ref().unwrap().deploy_id.clone());
    verifying.service.lease_until = Some(NOW + lease);
    let polled = decide(
        &verifying,
        &Event::HealthObserved {
            report: report(&[TargetState::Initial, TargetState::Initial]),
        },
        NOW + 1,
    )
    .unwrap();
    assert_eq!(polled.state.service.lease_until, Some(NOW + lease));
}

/// A finished deployment of `version` over `blue` (went live: its timeline has `baking`).
fn went_live(version: &str, ami: &str, blue: Option<Release>, rollback: bool) -> Deployment {
    let mut state = started();
    let dep = state.deployment.as_mut().unwrap();
    dep.deploy_id = format!("d-{version}");
    dep.version = version.into();
    dep.ami = ami.into();
    dep.blue = blue;
    dep.rollback = rollback;
    dep.enter(Phase::Baking { until: NOW }, NOW, "live");
    dep.enter(Phase::Succeeded, NOW, "done");
    dep.clone()
}

#[test]
fn rollback_targets_come_from_what_the_ledger_recorded_live() {
    let v2 = went_live("v2", AMI_V2, Some(blue()), false);
    let mut service = idle().service;
    service.live = Some(v2.green_release());
    let history = vec![v2.clone()];
    // Previous: the release v2 replaced.
    assert_eq!(rollback_target(&service, &history, None).unwrap().version, "v1");
    // Named: recorded live (v1 as blue of v2); unknown names are refused with the list.
    assert_eq!(rollback_target(&service, &history, Some("v1")).unwrap().ami, AMI_V1);
    let err = rollback_target(&service, &history, Some("v0.5"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("recorded: v1, v2"), "{err}");
    assert!(matches!(
        rollback_target(&service, &history, Some("v2")),
        Err(Refusal::AlreadyLive { .. })
    ));
    // Live because of a rollback: "previous" would undo it; the version must be named.
    let back = went_live("v1", AMI_V1, Some(v2.green_release()), true);
    service.live = Some(back.green_release());
    let err = rollback_target(&service, &[v2, back], None).unwrap_err().to_string();
    assert!(err.contains("because of a rollback from v2"), "{err}");
    // Adopted at registration: nothing older is known.
    assert!(matches!(
        rollback_target(&idle().service, &[], None),
        Err(Refusal::NoPrevious { .. })
    ));
}

#[test]
fn alarms_on_the_version_rolled_back_to_stop_greenlight() {
    let mut service = idle().service;
    assert_eq!(alarm_loop(&service, "alarm:checkout-5xx"), None, "no rollback yet");
    service.last_revert = Some(LastRevert {
        from: "v2".into(),
        back_to: "v1".into(),
        deploy_id: "d-x".into(),
        at: NOW,
    });
    assert!(alarm_loop(&service, "alarm:checkout-5xx")
        .unwrap()
        .contains("greenlight stopped"));
    // During a rollback's own canary: an alarm marks the service instead of flipping back.
    let mut state = in_phase(Phase::Verifying { weight: 10, polls: 0 }, 10);
    state.deployment.as_mut().unwrap().rollback = true;
    let d = decide(&state, &alarm_rollback(None), NOW).unwrap();
    assert!(d.state.service.attention.is_some());
    assert_eq!(d.effects, vec![], "no listener change");
    assert_eq!(d.state.deployment, state.deployment, "the rollback goes on");
}

#[test]
fn the_fast_revert_plan_exists_exactly_while_one_listener_change_reverts() {
    use Phase::*;
    // (phase, max_weight, plan?)
    let table = [
        (Launching, 0, false),
        (Verified { weight: 0 }, 0, false),
        (Verifying { weight: 10, polls: 0 }, 10, true),
        (Shifting { from: 10, to: 50 }, 50, true),
        (Baking { until: NOW + 5 }, 100, true),
        (Retiring { drain_until: NOW + 5 }, 100, false),
        (
            Aborting {
                reason: "x".into(),
                drain_until: NOW,
            },
            10,
            false,
        ),
    ];
    for (phase, max_weight, want) in table {
        let state = in_phase(phase.clone(), max_weight);
        let plan = state.service.revert_plan.clone();
        assert_eq!(plan.is_some(), want, "{phase:?}");
        if let Some(plan) = plan {
            assert_eq!(
                plan.weights,
                vec![(blue().target_group, 100), (sample().target_groups[1].clone(), 0)]
            );
            assert_eq!((plan.from.as_str(), plan.back_to.as_str()), ("v2", "v1"));
        }
    }
    // Decisions keep it current: shifting creates it, a rollback removes it.
    let verified = in_phase(Verified { weight: 0 }, 0);
    let shifting = decide(
        &verified,
        &Event::ShiftDue {
            green_unready: None,
            analysis: None,
        },
        NOW,
    )
    .unwrap()
    .state;
    assert!(shifting.service.revert_plan.is_some());
    let reverted = decide(&shifting, &rollback(NOW * 1000), NOW).unwrap().state;
    assert_eq!(reverted.service.revert_plan, None);
    // Never for a rollback's own redeployment, nor while the service needs attention.
    let mut own = in_phase(Verifying { weight: 10, polls: 0 }, 10);
    own.deployment.as_mut().unwrap().rollback = true;
    assert_eq!(
        fast_revert_plan(&own.service, &own.config, own.deployment.as_ref().unwrap()),
        None
    );
    let mut attention = in_phase(Verifying { weight: 10, polls: 0 }, 10);
    attention.service.attention = Some("loop".into());
    assert_eq!(
        fast_revert_plan(
            &attention.service,
            &attention.config,
            attention.deployment.as_ref().unwrap()
        ),
        None
    );
}

#[test]
fn a_claimed_rollback_is_completed_by_whatever_reaches_the_deployment_first() {
    let Event::Revert { request, .. } = rollback(NOW * 1000) else {
        unreachable!()
    };
    let claimed = |phase: Phase, max_weight: u8| {
        let mut s = in_phase(phase, max_weight);
        s.service.revert_claim = Some(crate::model::RevertClaim {
            deploy_id: s.deployment.as_ref().unwrap().deploy_id.clone(),
            request: request.clone(),
            received_at_ms: NOW * 1000 + 5,
        });
        s
    };
    // A shift step arrives first: it rolls back instead of moving traffic forward.
    let d = decide(
        &claimed(Phase::Verified { weight: 10 }, 10),
        &Event::ShiftDue {
            green_unready: None,
            analysis: None,
        },
        NOW,
    )
    .unwrap();
    let dep = d.state.deployment.as_ref().unwrap();
    assert!(matches!(dep.phase, Phase::Aborting { .. }), "{:?}", dep.phase);
    assert_eq!(dep.revert.as_ref().unwrap().requested_by, "alice");
    assert_eq!(d.state.service.revert_claim, None, "the claim is consumed");
    assert!(
        matches!(d.effects.first(), Some(Effect::SetTraffic { green_weight: 0, .. })),
        "{:?}",
        d.effects
    );
    // A claim the world has moved past is dropped, and the step decides on its next delivery.
    let stale = claimed(Phase::Retiring { drain_until: NOW }, 100);
    let d = decide(
        &stale,
        &Event::RetireDue {
            blue_forwarded_by: None,
            analysis: None,
        },
        NOW,
    )
    .unwrap();
    assert_eq!(d.state.service.revert_claim, None);
    assert_eq!(d.state.deployment, stale.deployment);
    assert!(d.note.contains("claim dropped"), "{}", d.note);
}

fn abort_requested() -> Event {
    Event::AbortRequested {
        requested_by: "alice".into(),
        reason: "wrong build".into(),
    }
}

fn promote() -> Event {
    Event::Promote {
        requested_by: "bob".into(),
        reason: "hotfix, metrics look fine".into(),
        event_id: "promote-1".into(),
    }
}

fn execution_names(effects: &[Effect]) -> Vec<String> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::StartExecution { execution, .. } => Some(execution.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn an_engineer_aborts_the_deployment_in_flight_until_green_is_live() {
    let canary = in_phase(Phase::Verified { weight: 10 }, 10);
    let id = canary.deployment.as_ref().unwrap().deploy_id.clone();
    let aborted = decide(&canary, &abort_requested(), NOW).unwrap();
    assert!(
        matches!(phase_of(&aborted.state), Phase::Aborting { reason, .. } if reason.contains("aborted by alice: wrong build"))
    );
    assert_eq!(
        effect_names(&aborted.effects),
        vec!["set_traffic", "start_execution"],
        "traffic back on blue, clean-up now (green deregistered after the fence, I26)"
    );
    assert_eq!(execution_names(&aborted.effects), vec![format!("{id}-abort")]);
    // Green never had traffic: nothing to flip back, nothing to drain.
    let gated = decide(
        &in_phase(Phase::Verifying { weight: 0, polls: 1 }, 0),
        &abort_requested(),
        NOW,
    )
    .unwrap();
    assert_eq!(
        effect_names(&gated.effects),
        vec!["deregister_targets", "terminate_instances", "start_execution"]
    );
    // Again (a redelivery): no new state, the same effects (idempotent).
    let again = decide(&aborted.state, &abort_requested(), NOW + 1).unwrap();
    assert_eq!(again.state.deployment, aborted.state.deployment);
    assert_eq!(again.effects, aborted.effects);
    // Green live: too late; that is a rollback.
    for phase in [
        Phase::Baking { until: NOW + 100 },
        Phase::Retiring { drain_until: NOW },
        Phase::Succeeded,
    ] {
        let refused = decide(&in_phase(phase, 100), &abort_requested(), NOW).unwrap_err();
        assert!(matches!(refused, Refusal::TooLateToAbort { .. }), "{refused}");
        assert!(refused.to_string().contains("roll back instead"));
    }
}

#[test]
fn promotion_skips_the_remaining_canary_steps_and_the_bake_window_but_not_the_gates() {
    let config = sample();
    assert_eq!(config.next_weight(10), 50, "the sample's canary goes 10 -> 50 -> 100");
    let canary = in_phase(Phase::Verified { weight: 10 }, 10);
    let id = canary.deployment.as_ref().unwrap().deploy_id.clone();
    let promoted = decide(&canary, &promote(), NOW).unwrap();
    let dep = promoted.state.deployment.as_ref().unwrap();
    assert_eq!(dep.promoted_by.as_deref(), Some("bob"));
    assert_eq!(
        dep.phase,
        Phase::Verified { weight: 10 },
        "the gates passed so far stand"
    );
    assert!(dep.timeline.last().unwrap().note.contains("promoted by bob"));
    assert_eq!(
        execution_names(&promoted.effects).len(),
        1,
        "acts now, not after the step wait"
    );
    assert!(execution_names(&promoted.effects)[0].starts_with(&format!("{id}-promote-")));

    // The next shift goes straight to 100 %, and green is health-checked there without the
    // canary step's wait.
    let shifting = decide(
        &promoted.state,
        &Event::ShiftDue {
            green_unready: None,
            analysis: None,
        },
        NOW,
    )
    .unwrap()
    .state;
    assert_eq!(phase_of(&shifting), &Phase::Shifting { from: 10, to: 100 });
    let mut at_100 = shifting.clone();
    at_100.deployment.as_mut().unwrap().phase = Phase::Verifying { weight: 100, polls: 0 };
    let route = crate::plan::route(&config, at_100.deployment.as_ref().unwrap(), NOW);
    assert_eq!(route.wait_s, config.health.poll_interval_s);
    // Gates still apply: an unhealthy green at 100 % aborts.
    let failing = decide(
        &at_100,
        &Event::HealthObserved {
            report: report(&[TargetState::Unhealthy, TargetState::Healthy]),
        },
        NOW,
    )
    .unwrap();
    assert!(matches!(phase_of(&failing.state), Phase::Aborting { .. }));

    // Verified at 100 %: no bake window.
    let mut verified = promoted.state.clone();
    verified.deployment.as_mut().unwrap().phase = Phase::Verified { weight: 100 };
    let baking = decide(&verified, &Event::FinalizeDue, NOW).unwrap().state;
    assert_eq!(phase_of(&baking), &Phase::Baking { until: NOW });

    // Promoting again changes nothing.
    let twice = decide(&promoted.state, &promote(), NOW + 1).unwrap();
    assert_eq!(twice.effects, vec![]);
    assert_eq!(twice.state.deployment, promoted.state.deployment);
}

#[test]
fn promotion_during_the_bake_window_retires_blue_now() {
    let bake = in_phase(Phase::Baking { until: NOW + 3600 }, 100);
    let promoted = decide(&bake, &promote(), NOW).unwrap();
    assert_eq!(phase_of(&promoted.state), &Phase::Baking { until: NOW });
    assert_eq!(effect_names(&promoted.effects), vec!["start_execution"]);
    let route = crate::plan::route(&bake.config, promoted.state.deployment.as_ref().unwrap(), NOW);
    assert_eq!((route.next, route.wait_s), (Some(crate::plan::Step::RetireBlue), 0));
    // Nothing to skip once blue is being retired; nothing to promote once aborting.
    let retiring = decide(&in_phase(Phase::Retiring { drain_until: NOW }, 100), &promote(), NOW).unwrap();
    assert_eq!(retiring.effects, vec![]);
    let refused = decide(
        &in_phase(
            Phase::Aborting {
                reason: "gate".into(),
                drain_until: NOW,
            },
            0,
        ),
        &promote(),
        NOW,
    )
    .unwrap_err();
    assert!(matches!(refused, Refusal::NothingToPromote { .. }), "{refused}");
}

// ---------------------------------------------------------------------------------------
// A crash right after a commit, then redelivery (found by the e2e crash sweeps,
// tests/e2e/crash.rs): the redelivery finds the state its first delivery committed and must
// re-issue the effects that delivery never applied. No new state in any of these.
// ---------------------------------------------------------------------------------------

/// `state` once its deployment has ended: the service is free.
fn ended(mut state: State) -> State {
    state.service.active = None;
    state.service.lease_until = None;
    state.service.revert_plan = None;
    state
}

#[test]
fn retire_blue_redelivered_in_retiring_deregisters_blue_again_before_terminating_it() {
    // I8: deregister -> drain -> terminate, even when the delivery that committed `Retiring`
    // crashed before its DeregisterTargets.
    let deregister_blue = Effect::DeregisterTargets {
        target_group: blue().target_group,
        instance_ids: blue().instance_ids,
        port: sample().launch.port,
    };
    // (name, drain_until, expected effect names)
    let table: Vec<(&str, Epoch, Vec<&str>)> = vec![
        ("while draining", NOW + 30, vec!["deregister_targets"]),
        ("draining over", NOW, vec!["deregister_targets", "terminate_instances"]),
    ];
    for (name, drain_until, want) in table {
        let state = in_phase(Phase::Retiring { drain_until }, 100);
        let d = decide(
            &state,
            &Event::RetireDue {
                blue_forwarded_by: None,
                analysis: None,
            },
            NOW,
        )
        .unwrap();
        assert_eq!(d.state, state, "{name}: no new state");
        assert_eq!(effect_names(&d.effects), want, "{name}");
        assert_eq!(d.effects[0], deregister_blue, "{name}: blue's targets, first");
    }
}

#[test]
fn a_step_that_finds_its_deployment_ended_writes_its_report_again() {
    // A crash right after the final commit (Succeeded, Aborted), before WriteReport: any step
    // of the deployment's executions that runs later writes it (an idempotent overwrite).
    let steps = [
        Event::LaunchDue {
            seen: Default::default(),
        },
        Event::HealthObserved {
            report: healthy_report(true),
        },
        Event::ShiftDue {
            green_unready: None,
            analysis: None,
        },
        Event::FinalizeDue,
        Event::RetireDue {
            blue_forwarded_by: None,
            analysis: None,
        },
        Event::Abort {
            reason: "retire-blue failed: report not written".into(),
        },
    ];
    let succeeded = ended(in_phase(Phase::Succeeded, 100));
    let aborted = ended(in_phase(Phase::Aborted { reason: "x".into() }, 10));
    for step in &steps {
        let name = event_name(step);
        let d = decide(&succeeded, step, NOW).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(d.state, succeeded, "{name}");
        assert_eq!(effect_names(&d.effects), vec!["write_report"], "{name} in succeeded");
        let d = decide(&aborted, step, NOW).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(d.state, aborted, "{name}");
        assert_eq!(
            effect_names(&d.effects),
            vec!["terminate_instances", "write_report"],
            "{name} in aborted: what raced the abort is terminated, the report written"
        );
    }
    // abort-deployment finding it succeeded still says why it ran.
    let d = decide(&succeeded, &steps[5], NOW).unwrap();
    assert!(d.note.contains("report not written"), "{}", d.note);
    // Effects' report-backs and triggers from outside are not steps: they write nothing.
    for (state, event) in [
        (&succeeded, Event::BlueTerminated),
        (&aborted, Event::GreenTerminated),
        (&aborted, Event::TrafficApplied { weight: 0, at_ms: 0 }),
        (&succeeded, promote()),
    ] {
        let d = decide(state, &event, NOW).unwrap();
        assert_eq!(d.effects, vec![], "{}", event_name(&event));
    }
}

#[test]
fn an_abort_request_redelivered_while_aborting_acts_again_at_once() {
    // steer-deployment crashed right after committing `Aborting`: its redelivery re-issues
    // the abort's effects and the `-abort` clean-up execution (I20: an abort acts at once);
    // green is deregistered only once no stale listener change can reach it (I26).
    let fence = sample().max_invocation_s;
    let drain = sample().deregistration_delay_s;
    let canary = in_phase(Phase::Verified { weight: 10 }, 10);
    let aborting = traffic_back_at(&decide(&canary, &abort_requested(), NOW).unwrap().state, NOW);
    let untouched = in_phase(
        Phase::Aborting {
            reason: "aborted by alice: wrong build".into(),
            drain_until: NOW,
        },
        0,
    );
    // (name, state, now, expected effect names)
    let table: Vec<(&str, State, Epoch, Vec<&str>)> = vec![
        (
            "canary at 10 %, before the fence",
            aborting.clone(),
            NOW + 1,
            vec!["set_traffic", "start_execution"],
        ),
        (
            "canary at 10 %, fence passed, draining",
            aborting.clone(),
            NOW + fence,
            vec!["set_traffic", "deregister_targets", "start_execution"],
        ),
        (
            "canary at 10 %, drained",
            aborting,
            NOW + fence + drain,
            vec![
                "set_traffic",
                "deregister_targets",
                "terminate_instances",
                "start_execution",
            ],
        ),
        (
            "green never weighted",
            untouched,
            NOW,
            vec!["deregister_targets", "terminate_instances", "start_execution"],
        ),
    ];
    for (name, state, now, want) in table {
        let id = state.deployment.as_ref().unwrap().deploy_id.clone();
        let d = decide(&state, &abort_requested(), now).unwrap();
        assert_eq!(d.state, state, "{name}: no new state");
        assert_eq!(effect_names(&d.effects), want, "{name}");
        assert_eq!(execution_names(&d.effects), vec![format!("{id}-abort")], "{name}");
        if let Some(Effect::SetTraffic { green_weight, .. }) = d.effects.first() {
            assert_eq!(*green_weight, 0, "{name}: traffic back on blue");
        }
    }
    // Once aborted: nothing left to do.
    let done = ended(in_phase(Phase::Aborted { reason: "x".into() }, 10));
    let d = decide(&done, &abort_requested(), NOW).unwrap();
    assert_eq!((d.state, d.effects), (done, vec![]));
}

#[test]
fn an_alarm_redelivered_after_its_rollback_was_recorded_re_issues_the_clean_up() {
    // revert-service (alarm, bake window) crashed right after committing the rollback; its fast
    // path had already put traffic back. The redelivery re-issues the listener change and the
    // `-revert` clean-up execution (which deregisters green after the fence, I26) instead of
    // leaving green to the end of the bake window.
    let alarm = alarm_rollback(Some(30));
    let baking = in_phase(Phase::Baking { until: NOW + 100 }, 100);
    let id = baking.deployment.as_ref().unwrap().deploy_id.clone();
    let first = decide(&baking, &alarm, NOW).unwrap();
    let record = first.state.deployment.as_ref().unwrap().revert.clone().unwrap();
    assert!(record.traffic_back_at_ms.is_some(), "the fast path's flip is recorded");
    let again = decide(&first.state, &alarm, NOW + 1).unwrap();
    assert_eq!(again.state, first.state, "no new state");
    assert_eq!(effect_names(&again.effects), vec!["set_traffic", "start_execution"]);
    assert_eq!(execution_names(&again.effects), vec![format!("{id}-revert")]);
    assert!(again.note.contains("re-issues the clean-up"), "{}", again.note);
}

/// v2 live, v1 retired; the rollback to v1 requested by event `ev-1` found nothing warm and
/// started v1's image again as a new deployment (the slow path), still launching.
fn rollback_redeployment() -> State {
    let mut live_v2 = idle();
    live_v2.service.live = Some(Release {
        version: "v2".into(),
        ami: AMI_V2.into(),
        target_group: sample().target_groups[1].clone(),
        instance_ids: vec!["i-green1".into(), "i-green2".into()],
        deploy_id: Some("d-11111111111111111111".into()),
        launched_at: None,
    });
    let request = ImageRequest {
        rollback_of: Some("ev-1".into()),
        repave_of: None,
        on_failure: None,
        ..request("v1", AMI_V1)
    };
    let start = Event::Start {
        request,
        image: good_image(),
        firing_alarms: vec![],
    };
    decide(&live_v2, &start, NOW).unwrap().state
}

#[test]
fn a_rollback_request_redelivered_to_its_own_redeployment_only_makes_sure_it_runs() {
    // revert-service's slow path crashed right after committing the redeployment, before its
    // StartExecution. The redelivered request finds that deployment holding the service: it
    // must not roll it back (v2, the version rolled back from, would stay live).
    let redeploying = rollback_redeployment();
    let id = redeploying.deployment.as_ref().unwrap().deploy_id.clone();
    assert_eq!(redeploying.service.active.as_deref(), Some(id.as_str()));
    let mut verifying = redeploying.clone();
    verifying.deployment.as_mut().unwrap().phase = Phase::Verifying { weight: 10, polls: 0 };
    verifying.deployment.as_mut().unwrap().max_weight = 10;
    for state in [redeploying.clone(), verifying] {
        let phase = phase_of(&state).name();
        let d = decide(&state, &rollback(NOW * 1000), NOW).unwrap();
        assert_eq!(d.state, state, "{phase}: nothing changes");
        assert_eq!(effect_names(&d.effects), vec!["start_execution"], "{phase}");
        assert_eq!(
            execution_names(&d.effects),
            vec![id.clone()],
            "{phase}: its own execution"
        );
        assert!(d.note.contains("itself started"), "{phase}: {}", d.note);
    }
    // Only its own trigger: another rollback request is decided as before (here: back to v2).
    let other = rollback_with(|request| request.event_id = "ev-2".into(), None);
    let d = decide(&redeploying, &other, NOW).unwrap();
    assert!(
        matches!(phase_of(&d.state), Phase::Aborting { .. }),
        "{:?}",
        phase_of(&d.state)
    );
}

#[test]
fn a_touched_green_is_deregistered_only_once_no_stale_listener_change_can_reach_it() {
    // I26. A shift decided before the abort may land its ModifyListener (not conditional)
    // after the abort's, then crash: green must still be registered and healthy then. Every
    // invocation that read the ledger before the abort has ended `max_invocation_s` after it;
    // from then on abort-deployment puts traffic back again and only then deregisters green.
    use crate::plan::{route, Step};
    let config = sample();
    let (fence, drain) = (config.max_invocation_s, config.deregistration_delay_s);
    let shifting = decide(
        &in_phase(Phase::Verified { weight: 10 }, 10),
        &Event::ShiftDue {
            green_unready: None,
            analysis: None,
        },
        NOW,
    )
    .unwrap()
    .state;
    let step_failed = Event::Abort {
        reason: "a step failed".into(),
    };
    // (name, state, the decision that aborts, green ever weighted)
    let table: Vec<(&str, State, Event, bool)> = vec![
        (
            "an alarm's rollback mid-shift",
            shifting.clone(),
            alarm_rollback(None),
            true,
        ),
        (
            "an engineer's rollback during the canary",
            in_phase(Phase::Verifying { weight: 10, polls: 0 }, 10),
            rollback(NOW * 1000),
            true,
        ),
        (
            "superseded by a new image mid-shift",
            shifting,
            Event::Supersede {
                reason: "superseded by v3".into(),
                resume: false,
            },
            true,
        ),
        (
            "an engineer's abort during the canary",
            in_phase(Phase::Verified { weight: 10 }, 10),
            abort_requested(),
            true,
        ),
        (
            "a step failed during the canary",
            in_phase(Phase::Verifying { weight: 50, polls: 1 }, 50),
            step_failed.clone(),
            true,
        ),
        (
            "a failed gate: green never weighted, so no shift can be in flight",
            in_phase(Phase::Verifying { weight: 0, polls: 1 }, 0),
            step_failed.clone(),
            false,
        ),
    ];
    for (name, state, trigger, touched) in table {
        let aborted = decide(&state, &trigger, NOW).unwrap_or_else(|e| panic!("{name}: {e}"));
        let names = effect_names(&aborted.effects);
        let has = |names: &[String], effect: &str| names.iter().any(|n| n == effect);
        assert_eq!(has(&names, "deregister_targets"), !touched, "{name}: {names:?}");
        let aborting = match touched {
            true => traffic_back_at(&aborted.state, NOW),
            false => aborted.state,
        };
        let dep = aborting.deployment.as_ref().unwrap();
        if !touched {
            assert_eq!(green_deregistrable_at(&config, dep), Some(0), "{name}");
            assert!(has(&names, "terminate_instances"), "{name}: {names:?}");
            continue;
        }
        assert!(has(&names, "set_traffic"), "{name}: traffic back at once: {names:?}");
        assert_eq!(green_deregistrable_at(&config, dep), Some(NOW + fence), "{name}");
        // The clean-up runs when the fence has passed, not before.
        let r = route(&config, dep, NOW);
        assert_eq!((r.next, r.wait_s), (Some(Step::AbortDeployment), fence), "{name}");

        // Before the fence: traffic back re-applied, green still registered, no new state.
        let early = decide(&aborting, &step_failed, NOW + fence - 1).unwrap();
        assert_eq!(effect_names(&early.effects), vec!["set_traffic"], "{name}");
        assert_eq!(early.state, aborting, "{name}: no new state");

        // At the fence: traffic back first (whatever a stale shift left), then deregister.
        let fenced = decide(&aborting, &step_failed, NOW + fence).unwrap();
        assert_eq!(
            effect_names(&fenced.effects),
            vec!["set_traffic", "deregister_targets"],
            "{name}"
        );
        assert!(
            matches!(fenced.effects[0], Effect::SetTraffic { green_weight: 0, .. }),
            "{name}: all traffic back on blue before green leaves its target group"
        );
        let dep = fenced.state.deployment.as_ref().unwrap();
        assert_eq!(route(&config, dep, NOW + fence).wait_s, drain, "{name}: then it drains");

        // Drained: terminate.
        let drained = decide(&aborting, &step_failed, NOW + fence + drain).unwrap();
        assert_eq!(
            effect_names(&drained.effects),
            vec!["set_traffic", "deregister_targets", "terminate_instances"],
            "{name}"
        );

        // A registration that lengthened the fence since: nothing is deregistered or
        // terminated before it, even once the recorded drain time has passed.
        let mut longer = aborting.clone();
        longer.config.max_invocation_s = fence * 2;
        let held = decide(&longer, &step_failed, NOW + fence + drain).unwrap();
        assert_eq!(effect_names(&held.effects), vec!["set_traffic"], "{name}");
    }
}

/// Seed 912539: an alarm's fast path put traffic back on blue and crashed before recording
/// the rollback; a promote took the deployment to `Baking` with no bake window; retire-blue
/// refused (blue still serving, I8), abort-deployment answered "too late to abort" and the
/// route sent the execution back to retire-blue at once: a loop at one instant that starved
/// the alarm's Lambda retry. Now each failure of the late step, once due, waits longer before
/// the next try; after `LATE_STEP_TRIES` greenlight stops, the service needs attention, and
/// nothing is drained or terminated.
#[test]
fn a_late_step_that_keeps_failing_while_green_is_live_is_retried_later_never_at_once_then_stops() {
    use crate::model::STALE_CLAIM_MS;
    use crate::plan::{late_step_wait, route, Route, Step, LATE_STEP_TRIES};
    let step_failed = Event::Abort {
        reason: "step failed: StepFailed retire-blue: refused: refusing to retire blue: the switch point still \
                 forwards traffic to checkout-a"
            .into(),
    };
    let table = [
        (
            "baking, blue still serving",
            in_phase(Phase::Baking { until: NOW }, 100),
        ),
        (
            "retiring, a step that keeps failing",
            in_phase(Phase::Retiring { drain_until: NOW }, 100),
        ),
    ];
    for (name, start) in table {
        let config = start.config.clone();
        assert!(
            start.service.revert_plan.is_some() || name.starts_with("retiring"),
            "{name}"
        );
        let (mut state, mut now, mut waited) = (start.clone(), NOW, 0);
        for k in 1..LATE_STEP_TRIES {
            let tried = decide(&state, &step_failed, now).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(tried.effects, vec![], "{name}: nothing drained or terminated");
            assert!(tried.note.contains("too late to abort"), "{name}: {}", tried.note);
            let dep = tried.state.deployment.as_ref().unwrap();
            assert_eq!(
                (dep.late_failures, dep.phase.kind()),
                (k, start.deployment.as_ref().unwrap().phase.kind())
            );
            let r = route(&config, dep, now);
            assert_eq!(
                r,
                Route {
                    next: Some(Step::RetireBlue),
                    wait_s: late_step_wait(k)
                },
                "{name}: try {k}"
            );
            assert!(r.wait_s > 0, "{name}: never back at once");
            assert_eq!(tried.state.service.attention, None, "{name}");
            assert_eq!(
                tried.state.service.revert_plan, start.service.revert_plan,
                "{name}: the plan holds"
            );
            // A duplicate of the failure before the next try (another execution's, a late
            // delivery): no new state, the route still waits.
            let early = decide(&tried.state, &step_failed, now + r.wait_s - 1).unwrap();
            assert_eq!(early.state, tried.state, "{name}");
            assert_eq!(route(&config, dep, now + r.wait_s - 1).wait_s, 1, "{name}");
            now += r.wait_s;
            waited += r.wait_s;
            state = tried.state;
        }
        // Past Lambda's retries and past the alarm claim's staleness (I25): the claim no longer
        // holds the plan that marking the service removes.
        assert!(waited * 1000 > STALE_CLAIM_MS, "{name}: gave up after {waited}s");
        let stopped = decide(&state, &step_failed, now).unwrap();
        assert_eq!(stopped.effects, vec![], "{name}: nothing drained or terminated");
        let why = stopped
            .state
            .service
            .attention
            .clone()
            .expect("the service needs attention");
        assert!(why.contains("greenlight rollback checkout"), "{name}: {why}");
        assert!(why.contains("still forwards traffic"), "{name}: says why: {why}");
        assert_eq!(
            stopped.state.service.revert_plan, None,
            "{name}: no alarm flips a service needing attention"
        );
        assert_eq!(
            (
                &stopped.state.service.live,
                &stopped.state.service.warm,
                &stopped.state.service.active
            ),
            (&start.service.live, &start.service.warm, &start.service.active),
            "{name}: the fleets stay as they are"
        );
        let dep = stopped.state.deployment.as_ref().unwrap();
        assert_eq!(
            dep.phase.kind(),
            start.deployment.as_ref().unwrap().phase.kind(),
            "{name}"
        );
        assert!(
            dep.timeline.last().unwrap().note.starts_with("greenlight stopped"),
            "{name}"
        );
        assert_eq!(
            route(&config, dep, now),
            Route { next: None, wait_s: 0 },
            "{name}: the execution ends"
        );
        // Stopped: a later failure (a resumed execution's) changes nothing and ends too.
        let later = decide(&stopped.state, &step_failed, now + 3600).unwrap();
        assert_eq!(later.effects, vec![], "{name}");
        assert_eq!(later.state.deployment, stopped.state.deployment, "{name}");
        assert_eq!(later.state.service.attention, Some(why), "{name}");
    }

    // A failure before the late step is due (another execution's step during the bake): no
    // count; the route already waits for the bake window.
    let baking = in_phase(Phase::Baking { until: NOW + 600 }, 100);
    let during = decide(&baking, &step_failed, NOW).unwrap();
    assert_eq!(
        (&during.state.deployment, &during.effects),
        (&baking.deployment, &vec![])
    );
    assert_eq!(
        route(&baking.config, during.state.deployment.as_ref().unwrap(), NOW).wait_s,
        600
    );

    // Progress resets the count: blue no longer serving (an engineer pointed the switch point
    // back at green), retire-blue retires it. So does an engineer's promote.
    let mut state = in_phase(Phase::Baking { until: NOW }, 100);
    state.deployment.as_mut().unwrap().late_failures = LATE_STEP_TRIES - 1;
    let retiring = decide(
        &state,
        &Event::RetireDue {
            blue_forwarded_by: None,
            analysis: None,
        },
        NOW,
    )
    .unwrap();
    let dep = retiring.state.deployment.as_ref().unwrap();
    assert_eq!(
        (dep.phase.kind(), dep.late_failures),
        (crate::model::PhaseName::Retiring, 0)
    );
    assert_eq!(route(&state.config, dep, NOW).next, Some(Step::RetireBlue));
    let promoted = decide(&state, &promote(), NOW).unwrap();
    assert_eq!(promoted.state.deployment.as_ref().unwrap().late_failures, 0);
}

fn lease_expired(run_id: &str) -> Event {
    Event::LeaseExpired { run_id: run_id.into() }
}

/// `state` with its lease run out at `NOW`.
fn lease_ran_out(mut state: State) -> State {
    state.service.lease_until = Some(NOW);
    state
}

#[test]
fn a_deployment_whose_lease_expired_is_resumed_a_bounded_number_of_times_then_aborted_or_stopped() {
    use crate::plan::MAX_RESUMES;
    let launching = lease_ran_out(started());
    let id = launching.deployment.as_ref().unwrap().deploy_id.clone();
    // Resumed in a new execution each time the lease runs out again, in the same phase.
    let mut state = launching.clone();
    let mut names = Vec::new();
    for k in 1..=MAX_RESUMES {
        state.deployment.as_mut().unwrap().gen = k as u64 * 10;
        let resumed = decide(&state, &lease_expired(&format!("run-{k}")), NOW).unwrap();
        let dep = resumed.state.deployment.as_ref().unwrap();
        assert_eq!((dep.resumes, dep.phase.kind()), (k, PhaseName::Launching), "resume {k}");
        assert!(
            resumed.note.contains(&format!("resumed ({k} of {MAX_RESUMES})")),
            "{}",
            resumed.note
        );
        let started = execution_names(&resumed.effects);
        assert_eq!(started, vec![format!("{id}-resume-{}", k * 10)], "resume {k}");
        assert_eq!(
            resumed.effects.len(),
            1,
            "a resume only starts an execution: {:?}",
            resumed.effects
        );
        assert!(resumed.state.service.lease_until.unwrap() > NOW, "the lease is renewed");
        names.extend(started);
        state = lease_ran_out(resumed.state);
    }
    assert_eq!(
        names.iter().collect::<std::collections::BTreeSet<_>>().len(),
        names.len()
    );
    // Past the limit, before green is live: aborted through the normal path.
    let aborted = decide(&state, &lease_expired("run-last"), NOW).unwrap();
    let dep = aborted.state.deployment.as_ref().unwrap();
    assert_eq!(dep.phase.kind(), PhaseName::Aborting, "{}", aborted.note);
    assert!(aborted.note.contains("lease expired again"), "{}", aborted.note);
    assert_eq!(execution_names(&aborted.effects), vec![format!("{id}-stuck")]);

    // Past the limit with green live: greenlight stops, the service needs attention, nothing
    // drained or terminated; later runs change nothing.
    let mut baking = lease_ran_out(in_phase(Phase::Baking { until: NOW }, 100));
    baking.deployment.as_mut().unwrap().resumes = MAX_RESUMES;
    let stopped = decide(&baking, &lease_expired("run-x"), NOW).unwrap();
    assert_eq!(stopped.effects, vec![]);
    assert!(stopped.state.service.attention.is_some());
    assert_eq!(
        stopped.state.deployment.as_ref().unwrap().phase.kind(),
        PhaseName::Baking
    );
    let again = decide(&lease_ran_out(stopped.state), &lease_expired("run-y"), NOW + 600);
    assert!(matches!(again, Err(Refusal::NotStuck { .. })), "{again:?}");

    // Progress to another phase gives a fresh allowance.
    let mut progressed = state.clone();
    let dep = progressed.deployment.as_mut().unwrap();
    dep.enter(Phase::Verifying { weight: 0, polls: 0 }, NOW, "green launched");
    assert_eq!(dep.resumes, 0);
    let resumed = decide(&progressed, &lease_expired("run-z"), NOW).unwrap();
    assert_eq!(resumed.state.deployment.as_ref().unwrap().resumes, 1);
}

#[test]
fn a_deployment_that_is_not_stuck_is_left_alone() {
    use crate::plan::LATE_STEP_TRIES;
    let leased = started();
    let mut stopped = lease_ran_out(in_phase(Phase::Retiring { drain_until: NOW }, 100));
    stopped.deployment.as_mut().unwrap().late_failures = LATE_STEP_TRIES;
    let mut other = lease_ran_out(started());
    other.service.active = Some("d-someone-else".into());
    let table = [
        ("lease still running", leased, "its lease runs until"),
        ("greenlight stopped on it", stopped, "greenlight stopped"),
        ("not the holder", other, "does not hold the service"),
        (
            "ended",
            lease_ran_out(ended(in_phase(Phase::Baking { until: NOW }, 100))),
            "hold",
        ),
    ];
    for (name, state, why) in table {
        match decide(&state, &lease_expired("run-1"), NOW) {
            Err(Refusal::NotStuck { why: got, .. }) => assert!(got.contains(why), "{name}: {got}"),
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn the_same_reconcile_run_delivered_again_starts_the_execution_it_resumed_and_changes_nothing() {
    let stuck = lease_ran_out(started());
    let first = decide(&stuck, &lease_expired("run-1"), NOW).unwrap();
    let mut committed = first.state.clone();
    committed.deployment.as_mut().unwrap().gen += 1;
    // Its lease was renewed by the first delivery: another run finds nothing stuck...
    let other = decide(&committed, &lease_expired("run-2"), NOW + 1);
    assert!(matches!(other, Err(Refusal::NotStuck { .. })), "{other:?}");
    // ...but the same run's redelivery (it crashed before StartExecution) starts it.
    let again = decide(&committed, &lease_expired("run-1"), NOW + 1).unwrap();
    assert_eq!(execution_names(&again.effects), execution_names(&first.effects));
    assert_eq!(again.state, committed, "nothing new to commit");
}

#[test]
fn a_repave_deploys_the_live_release_again_only_when_the_service_is_free() {
    let live = idle().service.live.unwrap();
    let repave = |version: &str, ami: &str| Event::Start {
        request: ImageRequest {
            source: ImageSource::Repave,
            repave_of: Some("adopted@1".into()),
            on_failure: None,
            requested_by: "greenlight:repave".into(),
            ..request(version, ami)
        },
        image: good_image(),
        firing_alarms: vec![],
    };
    // The live release, again: a new deployment (no "already live" refusal), blue = live.
    let started = decide(&idle(), &repave(&live.version, &live.ami), NOW).unwrap();
    let dep = started.state.deployment.as_ref().unwrap();
    assert_eq!(
        (dep.source, dep.version.as_str(), dep.phase.kind()),
        (ImageSource::Repave, "v1", PhaseName::Launching)
    );
    assert_eq!(dep.blue.as_ref(), Some(&live));
    assert_ne!(dep.green_tg, live.target_group);
    // Anything but the live release is refused; so is a busy service (no queue, no supersede).
    let other = decide(&idle(), &repave("v2", AMI_V2), NOW);
    assert!(matches!(other, Err(Refusal::NotLive { .. })), "{other:?}");
    for policy in [NewImagePolicy::Supersede, NewImagePolicy::Queue, NewImagePolicy::Reject] {
        let busy = decide(&held(policy), &repave(&live.version, &live.ami), NOW);
        assert!(matches!(busy, Err(Refusal::Busy { .. })), "{policy:?}: {busy:?}");
    }
}

/// Issue 18: launch-green's reading of the switch points and target groups, and what the
/// deployment does with it.
mod switch_points {
    use super::*;
    use crate::request::LaunchObservation;
    use crate::switch::{Guard, Oidc, SeenAction, Stickiness, Switch, Switches};

    const RULE_ARN: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener-rule/app/web/1/9/7";

    fn two_points(mut state: State) -> State {
        state.config.switch = Switches::new(vec![
            state.config.switch.points()[0].clone(),
            Switch {
                listener_arn: "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/web/1/9".into(),
                rule_arn: Some(RULE_ARN.into()),
            },
        ]);
        state
    }

    fn oidc() -> Guard {
        Guard::AuthenticateOidc {
            order: Some(1),
            config: Oidc {
                issuer: "https://idp.example".into(),
                authorization_endpoint: "https://idp.example/auth".into(),
                token_endpoint: "https://idp.example/token".into(),
                user_info_endpoint: "https://idp.example/me".into(),
                client_id: "greenlight-test".into(),
                session_cookie_name: None,
                scope: None,
                session_timeout: None,
                extra_params: BTreeMap::new(),
                on_unauthenticated_request: None,
            },
        }
    }

    /// The listener with an OIDC guard and sticky forward, the rule a plain forward, both on
    /// blue; green's group drains in 7 s, blue's in 11 s.
    fn seen(config: &crate::config::ServiceConfig, rule_forward_to: &str) -> LaunchObservation {
        let [a, b] = config.target_groups.clone();
        LaunchObservation {
            points: vec![
                (
                    LISTENER_ARN.into(),
                    vec![
                        SeenAction::Guard(oidc()),
                        SeenAction::Forward {
                            order: Some(2),
                            weights: vec![(a.clone(), 100)],
                            stickiness: Some(Stickiness {
                                enabled: true,
                                duration_s: Some(300),
                            }),
                        },
                    ],
                ),
                (
                    RULE_ARN.into(),
                    vec![SeenAction::Forward {
                        order: None,
                        weights: vec![(rule_forward_to.to_string(), 100)],
                        stickiness: None,
                    }],
                ),
            ],
            drain_s: vec![(a, 11), (b, 7)],
        }
    }

    #[test]
    fn every_change_of_the_deployment_re_sends_each_points_frame_read_at_launch() {
        let state = two_points(started());
        let blue_tg = state.config.target_groups[0].clone();
        let launch = Event::LaunchDue {
            seen: seen(&state.config, &blue_tg),
        };
        let launched = decide(&state, &launch, NOW).unwrap();
        assert_eq!(effect_names(&launched.effects), vec!["launch_green"]);
        let dep = launched.state.deployment.as_ref().unwrap();
        assert_eq!(dep.frames[LISTENER_ARN].guards, vec![oidc()]);
        assert_eq!(dep.frames[RULE_ARN], crate::switch::Frame::default());
        // Green attached at 0 on both points, each with its frame.
        let green = decide(
            &launched.state,
            &Event::GreenLaunched {
                instance_ids: vec!["i-green1".into(), "i-green2".into()],
            },
            NOW,
        )
        .unwrap();
        let points = green
            .effects
            .iter()
            .find_map(|e| match e {
                Effect::SetTraffic { points, .. } => Some(points.clone()),
                _ => None,
            })
            .expect("green attached");
        assert_eq!(points.len(), 2);
        assert_eq!(points[0].frame.as_ref().unwrap().guards, vec![oidc()]);
        assert_eq!(
            points[0].frame.as_ref().unwrap().stickiness,
            Some(Stickiness {
                enabled: true,
                duration_s: Some(300)
            })
        );
        assert_eq!(points[1].switch.arn(), RULE_ARN);
        // The revert plan, once green has traffic, carries both frames (no read on the fast path).
        let mut canary = green.state.clone();
        let dep = canary.deployment.as_mut().unwrap();
        dep.phase = Phase::Verifying { weight: 10, polls: 0 };
        dep.max_weight = 10;
        let plan = fast_revert_plan(&canary.service, &canary.config, canary.deployment.as_ref().unwrap()).unwrap();
        assert_eq!(plan.writes(), points);
    }

    #[test]
    fn a_switch_point_greenlight_cannot_own_aborts_before_anything_is_launched() {
        let state = two_points(started());
        let launch = Event::LaunchDue {
            seen: seen(
                &state.config,
                "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/other/3",
            ),
        };
        let d = decide(&state, &launch, NOW).unwrap();
        match phase_of(&d.state) {
            Phase::Aborting { reason, .. } => {
                assert!(
                    reason.contains(RULE_ARN) && reason.contains("targetgroup/other/3"),
                    "{reason}"
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(
            !effect_names(&d.effects).contains(&"launch_green".to_string()),
            "{:?}",
            d.effects
        );
        assert!(!effect_names(&d.effects).contains(&"set_traffic".to_string()));
    }

    #[test]
    fn fleets_drain_for_their_target_groups_own_delay() {
        let state = two_points(started());
        let blue_tg = state.config.target_groups[0].clone();
        let launch = Event::LaunchDue {
            seen: seen(&state.config, &blue_tg),
        };
        let mut s = decide(&state, &launch, NOW).unwrap().state;
        let dep = s.deployment.as_mut().unwrap();
        dep.green_instances = vec!["i-green1".into()];
        dep.phase = Phase::Baking { until: NOW };
        dep.max_weight = 100;
        let retire = decide(
            &s,
            &Event::RetireDue {
                blue_forwarded_by: None,
                analysis: None,
            },
            NOW,
        )
        .unwrap();
        assert_eq!(phase_of(&retire.state), &Phase::Retiring { drain_until: NOW + 11 });
        // An abort of a touched green waits for the fence, then green's own 7 s.
        let mut canary = s.clone();
        let dep = canary.deployment.as_mut().unwrap();
        dep.phase = Phase::Verified { weight: 10 };
        dep.max_weight = 10;
        let abort = decide(&canary, &Event::Abort { reason: "x".into() }, NOW).unwrap();
        match phase_of(&abort.state) {
            Phase::Aborting { drain_until, .. } => assert_eq!(*drain_until, NOW + sample().max_invocation_s + 7),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn blue_is_not_retired_while_any_listener_or_rule_forwards_to_it_and_the_refusal_names_it() {
        let s = in_phase(Phase::Baking { until: NOW }, 100);
        let refused = decide(
            &s,
            &Event::RetireDue {
                blue_forwarded_by: Some(RULE_ARN.into()),
                analysis: None,
            },
            NOW,
        )
        .unwrap_err();
        assert!(refused.to_string().contains(RULE_ARN), "{refused}");
        assert!(matches!(refused, Refusal::BlueStillServing { .. }));
    }

    #[test]
    fn a_shift_is_held_when_green_stopped_being_healthy_since_its_gates() {
        let s = in_phase(Phase::Verified { weight: 10 }, 10);
        let held = decide(
            &s,
            &Event::ShiftDue {
                green_unready: Some("i-green2 unhealthy".into()),
                analysis: None,
            },
            NOW,
        )
        .unwrap();
        assert_eq!(phase_of(&held.state), &Phase::Verifying { weight: 10, polls: 0 });
        assert!(held.effects.is_empty(), "no traffic change: {:?}", held.effects);
        let mark = &held.state.deployment.as_ref().unwrap().timeline.last().unwrap().note;
        assert!(mark.contains("i-green2 unhealthy"), "{mark}");
        // Healthy: the shift goes ahead.
        let shifted = decide(
            &s,
            &Event::ShiftDue {
                green_unready: None,
                analysis: None,
            },
            NOW,
        )
        .unwrap();
        assert_eq!(phase_of(&shifted.state), &Phase::Shifting { from: 10, to: 50 });
    }

    #[test]
    fn a_fleet_with_sticky_clients_leaves_its_group_only_once_their_cookies_expired() {
        let state = two_points(started());
        let blue_tg = state.config.target_groups[0].clone();
        let mut s = decide(
            &state,
            &Event::LaunchDue {
                seen: seen(&state.config, &blue_tg),
            },
            NOW,
        )
        .unwrap()
        .state;
        // The listener's forward is sticky for 300 s; make it longer than the bake window.
        let dep = s.deployment.as_mut().unwrap();
        let sticky = 5 * sample().bake_window_s;
        dep.frames.get_mut(LISTENER_ARN).unwrap().stickiness = Some(Stickiness {
            enabled: true,
            duration_s: Some(sticky as i32),
        });
        dep.green_instances = vec!["i-green1".into()];
        dep.phase = Phase::Verified { weight: 100 };
        dep.max_weight = 100;
        let live = decide(&s, &Event::FinalizeDue, NOW).unwrap();
        assert_eq!(phase_of(&live.state), &Phase::Baking { until: NOW + sticky });
        // Promoted: the bake window is skipped, the cookies' lifetime is not.
        let mut promoted = s.clone();
        promoted.deployment.as_mut().unwrap().promoted_by = Some("eng".into());
        let live = decide(&promoted, &Event::FinalizeDue, NOW).unwrap();
        assert_eq!(phase_of(&live.state), &Phase::Baking { until: NOW + sticky });
        // An aborted green that had traffic stays registered until its sticky clients left.
        let dep = s.deployment.as_mut().unwrap();
        dep.phase = Phase::Verified { weight: 10 };
        dep.max_weight = 10;
        let aborted = decide(&s, &Event::Abort { reason: "x".into() }, NOW).unwrap();
        let dep = aborted.state.deployment.as_ref().unwrap();
        assert_eq!(green_deregistrable_at(&aborted.state.config, dep), Some(NOW + sticky));
        assert!(!effect_names(&aborted.effects).contains(&"deregister_targets".to_string()));
        match dep.phase {
            Phase::Aborting { drain_until, .. } => assert_eq!(drain_until, NOW + sticky + 7),
            ref other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_test_route_opens_with_green_and_closes_on_every_way_out() {
        let route = |effects: &[Effect]| -> Vec<String> {
            all_effect_names(effects)
                .into_iter()
                .filter(|name| name.ends_with("_test_route"))
                .collect()
        };
        let open = vec!["open_test_route".to_string()];
        let close = vec!["close_test_route".to_string()];
        let launched = Event::GreenLaunched {
            instance_ids: vec!["i-green1".into(), "i-green2".into()],
        };
        let verifying0 = in_phase(Phase::Verifying { weight: 0, polls: 0 }, 0);
        let mut launching = started();
        launching.deployment.as_mut().unwrap().phase = Phase::Launching;
        let table: Vec<(&str, State, Event, Vec<String>)> = vec![
            ("green launched", launching.clone(), launched.clone(), open.clone()),
            (
                "a launch delivered again",
                verifying0.clone(),
                Event::LaunchDue {
                    seen: Default::default(),
                },
                open.clone(),
            ),
            (
                "green live",
                in_phase(Phase::Verified { weight: 100 }, 100),
                Event::FinalizeDue,
                close.clone(),
            ),
            (
                "blue retired",
                in_phase(Phase::Baking { until: NOW }, 100),
                Event::RetireDue {
                    blue_forwarded_by: None,
                    analysis: None,
                },
                close.clone(),
            ),
            (
                "a failed step",
                in_phase(Phase::Verified { weight: 10 }, 10),
                Event::Abort { reason: "x".into() },
                close.clone(),
            ),
            (
                "a failed gate's abort continued",
                in_phase(
                    Phase::Aborting {
                        reason: "x".into(),
                        drain_until: NOW,
                    },
                    0,
                ),
                Event::Abort { reason: "x".into() },
                close.clone(),
            ),
            (
                "an engineer's abort",
                verifying0.clone(),
                Event::AbortRequested {
                    requested_by: "eng".into(),
                    reason: "no".into(),
                },
                close.clone(),
            ),
            (
                "superseded",
                verifying0.clone(),
                Event::Supersede {
                    reason: "v3".into(),
                    resume: false,
                },
                close.clone(),
            ),
            (
                "a step of an aborted deployment",
                in_phase(Phase::Aborted { reason: "x".into() }, 0),
                Event::LaunchDue {
                    seen: Default::default(),
                },
                close.clone(),
            ),
            (
                "a step of a finished deployment",
                in_phase(Phase::Succeeded, 100),
                Event::ShiftDue {
                    green_unready: None,
                    analysis: None,
                },
                close.clone(),
            ),
            (
                "a shift",
                in_phase(Phase::Verified { weight: 10 }, 10),
                Event::ShiftDue {
                    green_unready: None,
                    analysis: None,
                },
                vec![],
            ),
            // Nothing launched, so no route: the abort does not wait on the load balancer.
            (
                "an abort before launch",
                launching.clone(),
                Event::Abort { reason: "x".into() },
                vec![],
            ),
            (
                "a health poll",
                in_phase(Phase::Verifying { weight: 10, polls: 0 }, 10),
                Event::HealthObserved {
                    report: healthy_report(true),
                },
                vec![],
            ),
        ];
        for (what, state, event, want) in table {
            let d = decide(&state, &event, NOW).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(route(&d.effects), want, "{what}");
        }
        // A rollback during the canary closes it too (the revert's abort effects).
        let canary = in_phase(Phase::Verifying { weight: 10, polls: 0 }, 10);
        let rollback = Event::Revert {
            request: RevertRequest {
                service: "checkout".into(),
                trigger: Trigger::Engineer,
                requested_by: "eng".into(),
                reason: "bad".into(),
                to_version: None,
                event_id: "ev-1".into(),
                event_time_ms: NOW * 1000,
            },
            received_at_ms: NOW * 1000,
            flipped_at_ms: None,
        };
        let d = decide(&canary, &rollback, NOW).unwrap();
        assert_eq!(route(&d.effects), close, "a rollback");
        // The route is on the first switch point's listener, to green only.
        let d = decide(&launching, &launched, NOW).unwrap();
        let opened = d.effects.iter().find_map(|e| match e {
            Effect::OpenTestRoute {
                listener_arn,
                deploy_id,
                target_group,
            } => Some((listener_arn.clone(), deploy_id.clone(), target_group.clone())),
            _ => None,
        });
        let dep = d.state.deployment.unwrap();
        assert_eq!(opened, Some((LISTENER_ARN.to_string(), dep.deploy_id, dep.green_tg)));
    }
}

/// retire-blue's refusal names the forwarder's whole ARN (a rule's is the longest) and blue's
/// group by name, short enough to survive abort-deployment's 300-character cut of the step
/// failure's cause ("retire-blue: refused: ..."). Found by the e2e test of a rule added by
/// hand: with both ARNs in full the group's was cut off mid-ARN in the timeline.
#[test]
fn the_blue_still_serving_refusal_fits_in_a_step_failures_cause() {
    let rule = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener-rule/app/checkout-production-alb/caeb05f4791f2505/b42f7c0254679ee0/c7cc8f1079953e55";
    let group =
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/checkout-production-b/d46a5e3c1b2a9f80";
    let refusal = Refusal::BlueStillServing {
        target_group: group.into(),
        by: rule.into(),
    }
    .to_string();
    assert_eq!(
        refusal,
        format!("refusing to retire blue: {rule} still forwards traffic to target group checkout-production-b")
    );
    let cause = format!("retire-blue: refused: {refusal}");
    assert!(
        cause.chars().count() <= 300,
        "{} characters: {cause}",
        cause.chars().count()
    );
}

/// Sim seed 542 (found when the simulator's invariants first checked drains against the
/// group's own delay): an engineer's abort during a canary committed `Aborting` and its run
/// crashed before its listener change, so green kept its canary weight; a later run put
/// traffic back after the first `drain_until` (the fence plus the drain, counted from the
/// abort's decision), and a redelivered abort request then deregistered and terminated green
/// 11 s after its last new connection, its group draining for 41 s. Green now drains from
/// when its traffic was read back off it (`traffic_back_at`), and nothing terminates it
/// before that is known.
#[test]
fn a_green_whose_traffic_came_back_late_drains_from_then_not_from_the_abort() {
    let fence = sample().max_invocation_s;
    let drain = 41;
    let mut canary = in_phase(Phase::Verified { weight: 10 }, 10);
    let green_tg = canary.deployment.as_ref().unwrap().green_tg.clone();
    canary.deployment.as_mut().unwrap().drain_s.insert(green_tg, drain);
    // The abort committed; its listener change never ran.
    let aborting = decide(&canary, &abort_requested(), NOW).unwrap().state;
    let late = NOW + fence + drain + 60;
    // Past the first drain_until, with traffic never read back off green: traffic back and
    // deregister (the fence has passed), but no termination in the same run.
    let d = decide(&aborting, &abort_requested(), late).unwrap();
    assert_eq!(
        effect_names(&d.effects),
        vec!["set_traffic", "deregister_targets", "start_execution"]
    );
    // That run's listener change read back: green drains from now.
    let back = traffic_back_at(&aborting, late);
    let dep = back.deployment.as_ref().unwrap();
    assert_eq!(dep.traffic_back_at, Some(late));
    assert!(
        matches!(dep.phase, Phase::Aborting { drain_until, .. } if drain_until == late + drain),
        "{:?}",
        dep.phase
    );
    let config = &back.config;
    assert_eq!(
        crate::plan::route(config, dep, late).wait_s,
        drain,
        "the clean-up waits for the drain"
    );
    let early = decide(&back, &abort_requested(), late + drain - 1).unwrap();
    assert!(!effect_names(&early.effects).contains(&"terminate_instances".to_string()));
    let drained = decide(&back, &abort_requested(), late + drain).unwrap();
    assert!(effect_names(&drained.effects).contains(&"terminate_instances".to_string()));
    // Confirmed again later (a re-applied change): the drain does not move.
    let again = traffic_back_at(&back, late + 5);
    assert_eq!(again.deployment, back.deployment);
    // On time (the usual case), the drain is the abort's: fence plus the group's delay.
    let on_time = traffic_back_at(&aborting, NOW);
    let dep = on_time.deployment.as_ref().unwrap();
    assert!(
        matches!(dep.phase, Phase::Aborting { drain_until, .. } if drain_until == NOW + fence + drain),
        "{:?}",
        dep.phase
    );
}

/// I33/I34: at a judged step's deadline, `inconclusive: continue` moves on only when the
/// window was fetched; a step that never had a complete metric period (too early at its
/// deadline: e.g. `max_step_s` shorter than a period plus the lag) has no data and aborts,
/// like one whose metrics were unreadable.
#[test]
fn an_inconclusive_step_continues_as_declared_only_on_fetched_data() {
    use crate::analysis::{Analysis, AnalysisRecord, Evidence, Inconclusive, Observation};
    let mut state = in_phase(Phase::Verified { weight: 25 }, 25);
    let mut analysis: Analysis = serde_json::from_value(
        serde_json::json!({"metrics": [{"error_rate": {"tolerance_pp": 0.5}}], "max_step_s": 120}),
    )
    .unwrap();
    analysis.inconclusive = Inconclusive::Continue;
    state.config.analysis = Some(analysis);
    state.deployment.as_mut().unwrap().analysis = Some(AnalysisRecord {
        since: NOW - 130,
        weight: 25,
        next_at: NOW,
        ..AnalysisRecord::default()
    });
    let shift = |observation: Observation| {
        let event = Event::ShiftDue {
            green_unready: None,
            analysis: Some(observation),
        };
        let next = decide(&state, &event, NOW).unwrap().state;
        let dep = next.deployment.unwrap();
        let action = dep.analysis.unwrap().evaluations.last().unwrap().action.clone();
        (dep.phase.name(), action)
    };
    let fetched = Observation::Fetched {
        from: NOW - 120,
        to: NOW - 60,
        evidence: Evidence {
            metrics: vec![],
            horizon_periods: 2,
        },
    };
    assert_eq!(shift(fetched), ("shifting", "next step".to_string()));
    assert_eq!(shift(Observation::TooEarly), ("aborting", "abort".to_string()));
    let unavailable = Observation::Unavailable {
        why: "throttled".into(),
    };
    assert_eq!(shift(unavailable), ("aborting", "abort".to_string()));
}

mod canary;
mod hold;
mod hooks;
mod pause;
