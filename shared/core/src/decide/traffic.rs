//! The switch point's effects every family builds: green attached at weight 0, or weighted
//! beside blue.

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
        switch: config.switch.clone(),
        blue_tg: dep.blue.as_ref().map(|b| b.target_group.clone()),
        green_tg: dep.green_tg.clone(),
        green_weight,
    }
}
