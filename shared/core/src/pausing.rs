//! When an approval pause holds a deployment (`"pause"` in `canary_steps`): whether the
//! registration's pauses apply to it, whether green waits in one now, and until when (the
//! route's wait, `plan`). Read by `plan`, `judging`, `decide` and the CLI; imports none of
//! them. What a pause does is `decide`'s (`decide/pause.rs`).

use crate::config::ServiceConfig;
use crate::model::{Deployment, PauseRecord, Phase};
use crate::request::ImageSource;

/// True when the registration's pauses hold `dep`: a canary over a blue, not promoted, and
/// not a release that was approved before (a rollback's redeployment, a re-pave of the live
/// release): an approval must never stand between a service and its recovery.
pub fn pauses_apply(dep: &Deployment) -> bool {
    dep.blue.is_some() && !dep.rollback && dep.source != ImageSource::Repave && dep.promoted_by.is_none()
}

/// True when green verified at `weight` % is held by a pause (waiting, or approved or timed
/// out and about to move): its step's analysis is over.
pub fn held_by_pause(config: &ServiceConfig, dep: &Deployment, weight: u8) -> bool {
    pauses_apply(dep) && config.rollout.pauses_after(weight) && dep.pauses.iter().any(|p| p.weight == weight)
}

/// The pause green waits in now (its deadline is the route's wait), if it waits in one.
pub fn waiting<'a>(config: &ServiceConfig, dep: &'a Deployment) -> Option<&'a PauseRecord> {
    let weight = match dep.phase {
        Phase::Verified { weight } | Phase::Verifying { weight, .. } => weight,
        _ => return None,
    };
    if !pauses_apply(dep) || !config.rollout.pauses_after(weight) {
        return None;
    }
    dep.waiting_pause(weight)
}
