//! When canary analysis judges a deployment: whether it applies in the deployment's phase,
//! when its next evaluation is due (the route's wait, `plan`), and the windows judged (what
//! the steps fetch). Read by `plan`, `decide` and the steps; imports neither `plan` nor
//! `decide` (both use it), only `pausing` (a step an approval pause holds is not judged).

use crate::analysis::Analysis;
use crate::config::ServiceConfig;
use crate::model::{Deployment, Phase};
use crate::Epoch;

/// The analysis that judges `dep` in its current phase: declared, with a blue to compare with,
/// not a rollback's redeployment (its "blue" is the release being left for a reason), and not
/// promoted (an engineer's go-ahead skips it, like the canary steps).
pub fn analysis_of<'a>(config: &'a ServiceConfig, dep: &Deployment) -> Option<&'a Analysis> {
    let analysis = config.analysis.as_ref()?;
    let judged = match dep.phase {
        Phase::Verified { weight } => weight > 0 && weight < 100,
        Phase::Baking { .. } => true,
        _ => false,
    };
    // A step held by an approval pause was judged before the pause began.
    let paused = match dep.phase {
        Phase::Verified { weight } => crate::pausing::held_by_pause(config, dep, weight),
        _ => false,
    };
    (judged && !paused && dep.blue.is_some() && !dep.rollback && dep.promoted_by.is_none()).then_some(analysis)
}

/// When the deployment's next evaluation is due, if it is judged in its phase: a held step
/// is looked at once a period (for an engineer's promote, rollback or abort); the bake window
/// is judged until it ends.
pub fn analysis_due(config: &ServiceConfig, dep: &Deployment, now: Epoch) -> Option<Epoch> {
    let analysis = analysis_of(config, dep)?;
    let record = dep.analysis.as_ref();
    let next_at = record.map_or(now, |r| r.next_at);
    match dep.phase {
        Phase::Baking { until } if now < until => Some(next_at.min(until)),
        Phase::Baking { .. } => None,
        _ if record.is_some_and(|r| r.held_since.is_some()) => Some(now + analysis.period_s),
        _ => Some(next_at),
    }
}

/// The window judged now (`since` when green got its current weight) and blue's: the same
/// window in a canary step, or `baseline_s` before green took all the traffic in the bake
/// window. None when the deployment is not judged now.
pub fn analysis_windows(config: &ServiceConfig, dep: &Deployment) -> Option<(Epoch, Option<(Epoch, Epoch)>)> {
    let analysis = analysis_of(config, dep)?;
    let since = dep.analysis.as_ref().map_or(dep.updated_at, |r| r.since);
    let before = matches!(dep.phase, Phase::Baking { .. }).then(|| (since.saturating_sub(analysis.baseline_s), since));
    Some((since, before))
}
