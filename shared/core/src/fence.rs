//! I26, the stale-write fence: when a fleet taken out of service by an abort may leave its
//! target group. Read by `decide` (the abort's effects) and by `plan::route` (how long an
//! aborting deployment waits), so it lives below both.

use crate::config::ServiceConfig;
use crate::model::{Deployment, Phase, PhaseName};
use crate::Epoch;

/// When an aborting deployment's green may be deregistered (I26, the stale-write fence).
/// A green that ever had weight may still be given weight by a listener change decided
/// before the abort (a shift that read `Verified` or `Shifting`, whose ModifyListener, not
/// conditional, lands after the abort's; its run may crash right after it). Such a run ends
/// within `max_invocation_s` of the abort's decision (Lambda stops it): from then on no
/// stale listener change can land, and the abort's own, re-applied just before the
/// deregistration, is the last word. Until then green stays registered, so a stale weight
/// is served by healthy targets instead of none. An untouched green had no shift committed
/// before the abort (the abort's read would have seen it), so no run can give it weight.
pub fn green_deregistrable_at(config: &ServiceConfig, dep: &Deployment) -> Option<Epoch> {
    if !matches!(dep.phase, Phase::Aborting { .. }) {
        return None;
    }
    if dep.max_weight == 0 {
        return Some(0);
    }
    let since = aborting_since(dep).unwrap_or(dep.updated_at);
    // Sticky clients of green keep reaching it until their cookie expires (weights do not
    // move them): it stays registered at least that long too.
    Some(since + config.max_invocation_s.max(dep.stickiness_s()))
}

/// When the deployment entered `Aborting` (the first timeline mark of that phase).
fn aborting_since(dep: &Deployment) -> Option<Epoch> {
    dep.timeline
        .iter()
        .find(|m| m.phase == PhaseName::Aborting)
        .map(|m| m.at)
}
