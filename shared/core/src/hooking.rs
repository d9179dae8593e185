//! When a lifecycle hook holds a deployment: the point it stands at ([`point`]: a stage and
//! green's weight there), the hook that has not decided there yet ([`pending`]), the call due
//! and when ([`next_call`], the route's wait) and the payload it gets ([`payload`]). Read by
//! `plan`, `decide`, the steps and the CLI; imports none of them. What an answer does is
//! `decide`'s (`decide/hooks.rs`).
//!
//! A stage's hooks gate the move out of its point, one after the other in the order
//! declared: green verified at 0 % (`green_verified`) or at a canary step's weight
//! (`traffic_shifted`, before the step's analysis and pause), at 100 % before it is declared
//! live (`all_traffic`), the bake window over before blue drains (`before_retire`), and
//! traffic back on blue after a revert before green is terminated (`after_revert`). Waiting is
//! the state machine's: the route sleeps until the next call.

use crate::config::ServiceConfig;
use crate::hook::{Call, Hook, HookRecord, Payload, PayloadMark, PayloadRelease, Stage, TestRoute};
use crate::model::{Deployment, Phase, Release};
use crate::Epoch;

/// Where a deployment stands, as far as hooks go: a stage, at green's weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    pub stage: Stage,
    pub weight: u8,
}

/// The hook point `dep` stands at `now`, if it stands at one. Held (`on_failure: hold`):
/// none, a hold freezes everything.
pub fn point(dep: &Deployment, now: Epoch) -> Option<Point> {
    if dep.held().is_some() {
        return None;
    }
    let at = |stage, weight| Some(Point { stage, weight });
    match dep.phase {
        Phase::Verified { weight: 0 } => at(Stage::GreenVerified, 0),
        Phase::Verified { weight: 100 } => at(Stage::AllTraffic, 100),
        Phase::Verified { weight } => at(Stage::TrafficShifted, weight),
        Phase::Baking { until } if now >= until && dep.blue.is_some() => at(Stage::BeforeRetire, 100),
        // Traffic confirmed back off a green that had some: a revert (or an abort after a
        // canary step) put users back on blue.
        Phase::Aborting { .. } if dep.max_weight > 0 && dep.blue.is_some() && dep.traffic_back_at.is_some() => {
            at(Stage::AfterRevert, 0)
        }
        _ => None,
    }
}

/// The record of `hook` at `point` in `dep`, if it was called there.
pub fn record<'a>(dep: &'a Deployment, hook: &str, point: Point) -> Option<&'a HookRecord> {
    dep.hooks.iter().find(|r| r.is_at(hook, point.stage, point.weight))
}

/// The first hook declared at `point`'s stage that has not decided there yet.
pub fn pending<'a>(config: &'a ServiceConfig, dep: &Deployment, point: Point) -> Option<&'a Hook> {
    config
        .hooks
        .iter()
        .filter(|h| h.stage == point.stage)
        .find(|h| record(dep, &h.name, point).is_none_or(|r| r.ended.is_none()))
}

/// The hook that holds `dep` at `now` (at its point, not decided), its next call and when it
/// is due (now or earlier for a first call).
pub fn next_call<'a>(config: &'a ServiceConfig, dep: &Deployment, now: Epoch) -> Option<(&'a Hook, Call, Epoch)> {
    let point = point(dep, now)?;
    let hook = pending(config, dep, point)?;
    let (number, at) = match record(dep, &hook.name, point) {
        Some(r) => (r.calls + 1, r.next_call_at),
        None => (1, now),
    };
    let call = Call {
        hook: hook.name.clone(),
        stage: point.stage,
        weight: point.weight,
        number,
    };
    Some((hook, call, at))
}

/// The call a step makes now, if one is due.
pub fn due<'a>(config: &'a ServiceConfig, dep: &Deployment, now: Epoch) -> Option<(&'a Hook, Call)> {
    next_call(config, dep, now)
        .filter(|(_, _, at)| *at <= now)
        .map(|(hook, call, _)| (hook, call))
}

/// When the hook holding `dep` is called next (the route's wait), if one holds it.
pub fn next_call_at(config: &ServiceConfig, dep: &Deployment, now: Epoch) -> Option<Epoch> {
    next_call(config, dep, now).map(|(_, _, at)| at)
}

/// The JSON `call` of `hook` sends (see [`Payload`]).
pub fn payload(config: &ServiceConfig, dep: &Deployment, call: &Call) -> Payload {
    let release = |r: &Release| PayloadRelease {
        version: r.version.clone(),
        ami: r.ami.clone(),
        target_group: r.target_group.clone(),
        instance_ids: r.instance_ids.clone(),
    };
    let live = !matches!(dep.phase, Phase::Verified { .. } | Phase::Verifying { .. });
    let test_route = (!live && config.switch.first().is_some()).then(|| TestRoute {
        header: crate::switch::TEST_ROUTE_HEADER.to_string(),
        value: dep.deploy_id.clone(),
        url: config.health.smoke.load_balancer_url.clone(),
    });
    let skip = dep.timeline.len().saturating_sub(crate::hook::MAX_PAYLOAD_MARKS);
    Payload {
        schema: 1,
        hook: call.hook.clone(),
        stage: call.stage,
        invocation_id: call.invocation_id(&dep.deploy_id),
        call: call.number,
        service: dep.service.clone(),
        deploy_id: dep.deploy_id.clone(),
        green: release(&dep.green_release()),
        blue: dep.blue.as_ref().map(release),
        weight: call.weight,
        rollback: dep.rollback,
        test_route,
        timeline: dep.timeline[skip..]
            .iter()
            .map(|m| PayloadMark {
                at: crate::rfc3339::format(m.at),
                phase: m.phase.as_str().to_string(),
                note: m.note.clone(),
            })
            .collect(),
    }
}
