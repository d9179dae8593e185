//! The switch points' effects every family builds: green attached at weight 0, or weighted
//! beside blue, on every switch point with the frame launch-green read of it; and the
//! deployment's test route to green, opened at launch and closed once green is live or the
//! deployment ends.

use super::types::Effect;
use crate::config::ServiceConfig;
use crate::model::Deployment;

/// The switch point forwards to green's target group with weight 0: no user traffic, but
/// the load balancer health-checks only target groups its listeners or rules reference
/// (others report `unused`, `Target.NotInUse`). Nothing to attach to without a blue.
pub(super) fn attach_green(config: &ServiceConfig, dep: &Deployment) -> Option<Effect> {
    dep.blue.as_ref().map(|_| set_traffic(config, dep, 0))
}

/// The switch point forwarding to blue and green with green at `green_weight` %.
pub(super) fn set_traffic(config: &ServiceConfig, dep: &Deployment, green_weight: u8) -> Effect {
    Effect::SetTraffic {
        points: dep.point_writes(config),
        blue_tg: dep.blue.as_ref().map(|b| b.target_group.clone()),
        green_tg: dep.green_tg.clone(),
        green_weight,
    }
}

/// The deployment's test route to green (on the first switch point's listener).
pub(super) fn open_test_route(config: &ServiceConfig, dep: &Deployment) -> Option<Effect> {
    let listener = config.switch.first()?;
    Some(Effect::OpenTestRoute {
        listener_arn: listener.listener_arn.clone(),
        deploy_id: dep.deploy_id.clone(),
        target_group: dep.green_tg.clone(),
    })
}

/// The test route closed (idempotent; a no-op when there is none).
pub(super) fn close_test_route(config: &ServiceConfig, dep: &Deployment) -> Option<Effect> {
    let listener = config.switch.first()?;
    Some(Effect::CloseTestRoute {
        listener_arn: listener.listener_arn.clone(),
        deploy_id: dep.deploy_id.clone(),
    })
}
