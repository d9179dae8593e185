//! What the read verbs show, as plain serializable records built from the ledger and the load
//! balancer: the JSON output is these records (stable field names; times as RFC 3339 UTC
//! strings, durations as `_s` / `_ms` numbers), and the tables are drawn from them.

use crate::aws::Aws;
use crate::error::CliResult;
use greenlight_core::analysis::{
    Analysis, AnalysisRecord, Counts, Evaluation, MetricSpec, MetricVerdict, Real, Verdict,
};
use greenlight_core::decide::TargetState;
use greenlight_core::inbound::format_time;
use greenlight_core::judging::analysis_due;
use greenlight_core::model::{Deployment, ImageSource, Phase, PhaseName, Release, RevertRecord, State, Trigger};
use greenlight_core::switch::TEST_ROUTE_HEADER;
use greenlight_core::ServiceConfig;
use serde::Serialize;
use std::collections::BTreeMap;

/// Seconds since the epoch, now.
pub fn now_s() -> u64 {
    now_ms() / 1000
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A release (a version on a fleet in one target group).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReleaseView {
    pub version: String,
    pub ami: String,
    pub target_group: String,
    pub instance_ids: Vec<String>,
    pub deploy_id: Option<String>,
}

impl From<&Release> for ReleaseView {
    fn from(r: &Release) -> Self {
        ReleaseView {
            version: r.version.clone(),
            ami: r.ami.clone(),
            target_group: r.target_group.clone(),
            instance_ids: r.instance_ids.clone(),
            deploy_id: r.deploy_id.clone(),
        }
    }
}

/// The previous release, kept warm during the bake window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WarmView {
    #[serde(flatten)]
    pub release: ReleaseView,
    /// When the bake window ends and it is retired (if a deployment in flight is baking).
    pub until: Option<String>,
    pub remaining_s: Option<u64>,
}

/// An image waiting for the deployment in flight to end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueuedView {
    pub version: String,
    pub ami: String,
    pub requested_by: String,
    pub rollback: bool,
}

/// How a deployment was rolled back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RevertView {
    pub trigger: Trigger,
    pub requested_by: String,
    pub reason: String,
    pub event_id: String,
    pub back_to: String,
    pub time_to_revert_ms: Option<u64>,
    pub receipt_to_revert_ms: Option<u64>,
}

impl From<&RevertRecord> for RevertView {
    fn from(r: &RevertRecord) -> Self {
        RevertView {
            trigger: r.trigger,
            requested_by: r.requested_by.clone(),
            reason: r.reason.clone(),
            event_id: r.event_id.clone(),
            back_to: r.back_to.clone(),
            time_to_revert_ms: r.time_to_revert_ms(),
            receipt_to_revert_ms: r.receipt_to_revert_ms(),
        }
    }
}

/// A deployment as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeploymentView {
    pub deploy_id: String,
    pub version: String,
    pub ami: String,
    /// The version it moves away from (None for a service with nothing live before).
    pub from_version: Option<String>,
    pub phase: PhaseName,
    /// True once nothing more will happen to it (`succeeded`, `aborted`).
    pub ended: bool,
    /// Green's share of traffic the phase asks for (%).
    pub weight: u8,
    pub canary_steps: Vec<u8>,
    /// Health polls so far (while verifying).
    pub polls: Option<u32>,
    /// When the current phase began (the ledger timeline's last mark) and for how long.
    pub phase_since: String,
    pub in_phase_s: u64,
    pub started_at: String,
    pub requested_by: String,
    pub reason: Option<String>,
    pub source: ImageSource,
    /// A rollback's redeployment of an earlier version.
    pub rollback: bool,
    pub bake_until: Option<String>,
    pub bake_remaining_s: Option<u64>,
    pub drain_until: Option<String>,
    /// Why it was (or is being) aborted.
    pub abort_reason: Option<String>,
    pub revert: Option<RevertView>,
    /// Who promoted it (remaining canary steps and bake window skipped).
    pub promoted_by: Option<String>,
    /// The timeline's last note.
    pub last_note: Option<String>,
    /// Canary analysis: the weight judged, the next evaluation, the registration's
    /// tolerances and the last evaluation with its numbers (None without analysis).
    pub analysis: Option<AnalysisView>,
    /// The registration's approval pauses: the weights after which green waits (0: before
    /// any traffic).
    pub pauses: Vec<u8>,
    /// The pause green waits in now: who it waits for, since when, until when.
    pub paused: Option<PauseView>,
    /// How each pause this deployment reached ended, in a line each.
    pub pauses_ended: Vec<String>,
    /// What a failure does to it: `revert` or `hold` (`on_failure`).
    pub on_failure: String,
    /// The hold that freezes it now (`on_failure: hold`): what failed, since when, and what an
    /// engineer can do.
    pub held: Option<HoldView>,
    /// How each earlier hold ended, in a line each.
    pub holds_ended: Vec<String>,
    /// The lifecycle hook that holds it now: which, where, its calls and its next one.
    pub hook: Option<HookView>,
    /// How each hook it called decided, in a line each.
    pub hooks_ended: Vec<String>,
}

/// A lifecycle hook that holds the deployment at its point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HookView {
    pub name: String,
    /// `green_verified`, `traffic_shifted`, `all_traffic`, `before_retire`, `after_revert`.
    pub stage: String,
    pub weight: u8,
    /// What it calls: `lambda <arn>` or `webhook <url>`.
    pub calls: String,
    /// Calls answered so far (each `IN_PROGRESS`).
    pub answered: u32,
    /// Its last `IN_PROGRESS` reason.
    pub last_reason: Option<String>,
    pub next_call_at: String,
    /// Past this it does its `on_timeout`.
    pub deadline: Option<String>,
    pub on_timeout: String,
}

impl HookView {
    fn new(dep: &Deployment, config: &ServiceConfig, now: u64) -> Option<Self> {
        let (hook, call, at) = greenlight_core::hooking::next_call(config, dep, now)?;
        let point = greenlight_core::hooking::Point {
            stage: call.stage,
            weight: call.weight,
        };
        let record = greenlight_core::hooking::record(dep, &hook.name, point);
        Some(HookView {
            name: hook.name.clone(),
            stage: call.stage.as_str().into(),
            weight: call.weight,
            calls: hook.describe(),
            answered: record.map_or(0, |r| r.calls),
            last_reason: record.map(|r| r.last_reason.clone()).filter(|r| !r.is_empty()),
            next_call_at: format_time(at.max(now)),
            deadline: record.map(|r| format_time(r.since + hook.timeout_s)),
            on_timeout: hook.on_timeout.as_str().into(),
        })
    }
}

/// How a hook decided at its point, in a line.
fn hook_ended(record: &greenlight_core::hook::HookRecord) -> Option<String> {
    use greenlight_core::hook::HookEnd;
    let end = match record.ended.as_ref()? {
        HookEnd::Succeeded { at } => format!("succeeded at {}", format_time(*at)),
        HookEnd::Failed { at, reason } => format!("failed at {}: {reason}", format_time(*at)),
        HookEnd::TimedOut { at, action } => format!("timed out at {} ({})", format_time(*at), action.as_str()),
    };
    Some(format!(
        "{} ({} at {}%): {end} after {} call(s)",
        record.hook,
        record.stage.as_str(),
        record.weight,
        record.calls
    ))
}

/// A failure that froze the deployment instead of reverting it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HoldView {
    pub weight: u8,
    /// `gate`, `analysis` or `alarm`.
    pub cause: String,
    pub reason: String,
    pub since: String,
    pub held_for_s: u64,
    /// Who it waits for, as commands.
    pub waiting_for: String,
}

impl HoldView {
    fn new(dep: &Deployment, now: u64) -> Option<Self> {
        let hold = dep.held()?;
        let service = &dep.service;
        let abort = if matches!(dep.phase, Phase::Baking { .. }) {
            String::new()
        } else {
            format!(", `greenlight abort {service}`")
        };
        Some(HoldView {
            weight: hold.weight,
            cause: hold.cause.as_str().into(),
            reason: hold.reason.clone(),
            since: format_time(hold.since),
            held_for_s: now.saturating_sub(hold.since),
            waiting_for: format!(
                "an engineer: `greenlight promote {service}` (go on), `greenlight rollback {service}`{abort} (traffic back)"
            ),
        })
    }
}

/// How a hold ended, in a line.
fn hold_ended(hold: &greenlight_core::model::HoldRecord) -> Option<String> {
    let end = hold.ended.as_ref()?;
    Some(format!(
        "held at {}% ({} failed: {}), then {} by {} at {}",
        hold.weight,
        hold.cause.as_str(),
        hold.reason,
        end.action.as_str().replace('_', " "),
        end.requested_by,
        format_time(end.at)
    ))
}

/// An approval pause that waits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PauseView {
    pub weight: u8,
    pub since: String,
    pub paused_for_s: u64,
    pub until: String,
    pub remaining_s: u64,
    /// What happens at `until` if nobody approves: `abort` or `continue`.
    pub on_timeout: String,
    /// Who it waits for, as a command.
    pub waiting_for: String,
}

impl PauseView {
    fn new(dep: &Deployment, config: &ServiceConfig, now: u64) -> Option<Self> {
        let pause = greenlight_core::pausing::waiting(config, dep)?;
        let until = pause.until;
        Some(PauseView {
            weight: pause.weight,
            since: format_time(pause.since),
            paused_for_s: now.saturating_sub(pause.since),
            until: format_time(until),
            remaining_s: until.saturating_sub(now),
            on_timeout: config.rollout.on_pause_timeout.as_str().into(),
            waiting_for: format!(
                "an engineer: `greenlight promote {} --reason ...` approves it (abort and rollback act as usual)",
                dep.service
            ),
        })
    }
}

/// How a pause ended, in a line.
fn pause_ended(pause: &greenlight_core::model::PauseRecord) -> Option<String> {
    use greenlight_core::model::PauseEnd;
    let w = pause.weight;
    Some(match pause.ended.as_ref()? {
        PauseEnd::Approved {
            at,
            requested_by,
            reason,
            ..
        } => format!(
            "pause at {w}% approved by {requested_by} at {}: {reason}",
            format_time(*at)
        ),
        PauseEnd::TimedOut { at, action } => format!(
            "pause at {w}% not approved by {}: {}",
            format_time(*at),
            action.as_str()
        ),
        PauseEnd::Withdrawn { at } => format!(
            "pause at {w}% withdrawn at {} (no longer in the registration)",
            format_time(*at)
        ),
    })
}

/// Green's traffic share the phase asks for.
pub fn phase_weight(phase: &Phase) -> u8 {
    phase.green_weight()
}

impl DeploymentView {
    pub fn new(dep: &Deployment, config: &ServiceConfig, now: u64) -> Self {
        let since = dep.timeline.last().map_or(dep.created_at, |m| m.at);
        let (bake_until, drain_until) = match &dep.phase {
            Phase::Baking { until } => (Some(*until), None),
            Phase::Retiring { drain_until } | Phase::Aborting { drain_until, .. } => (None, Some(*drain_until)),
            _ => (None, None),
        };
        let abort_reason = match &dep.phase {
            Phase::Aborting { reason, .. } | Phase::Aborted { reason } => Some(reason.clone()),
            _ => None,
        };
        DeploymentView {
            deploy_id: dep.deploy_id.clone(),
            version: dep.version.clone(),
            ami: dep.ami.clone(),
            from_version: dep.blue.as_ref().map(|b| b.version.clone()),
            phase: dep.phase.kind(),
            ended: dep.phase.is_terminal(),
            weight: phase_weight(&dep.phase),
            canary_steps: config.rollout.canary_steps.clone(),
            polls: match dep.phase {
                Phase::Verifying { polls, .. } => Some(polls),
                _ => None,
            },
            phase_since: format_time(since),
            in_phase_s: now.saturating_sub(since),
            started_at: format_time(dep.created_at),
            requested_by: dep.requested_by.clone(),
            reason: dep.reason.clone(),
            source: dep.source,
            rollback: dep.rollback,
            bake_until: bake_until.map(format_time),
            bake_remaining_s: bake_until.map(|u| u.saturating_sub(now)),
            drain_until: drain_until.map(format_time),
            abort_reason,
            revert: dep.revert.as_ref().map(RevertView::from),
            promoted_by: dep.promoted_by.clone(),
            last_note: dep.timeline.last().map(|m| m.note.clone()),
            analysis: dep.analysis.as_ref().map(|r| AnalysisView::new(dep, r, config, now)),
            pauses: config.rollout.pauses.clone(),
            paused: PauseView::new(dep, config, now),
            pauses_ended: dep.pauses.iter().filter_map(pause_ended).collect(),
            on_failure: dep.on_failure.as_str().into(),
            held: HoldView::new(dep, now),
            holds_ended: dep.holds.iter().filter_map(hold_ended).collect(),
            hook: HookView::new(dep, config, now),
            hooks_ended: dep.hooks.iter().filter_map(hook_ended).collect(),
        }
    }
}

/// One target's health as the load balancer reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetView {
    pub instance_id: String,
    /// `initial`, `healthy`, `unhealthy`, `unused`, `draining`, `unavailable`, `not registered`.
    #[serde(serialize_with = "target_state_name")]
    pub state: TargetState,
    pub reason: Option<String>,
}

/// One of the service's target groups: its role, version, weight at the switch point and
/// targets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetGroupView {
    pub target_group: String,
    /// The short name from the ARN (`targetgroup/<name>/<id>`).
    pub name: String,
    /// `green` / `blue` (a deployment in flight), else `live` / `warm` / `idle`.
    pub role: String,
    pub version: Option<String>,
    /// Its forward weight at the switch point (%).
    pub weight: u8,
    pub targets: Vec<TargetView>,
}

/// What `status` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    pub service: String,
    pub as_of: String,
    pub live: Option<ReleaseView>,
    pub warm: Option<WarmView>,
    /// Set when greenlight stopped acting on its own and needs a human: why.
    pub attention: Option<String>,
    /// True while a rollback is one listener change away (the previous fleet is warm).
    pub fast_rollback_ready: bool,
    pub queued: Option<QueuedView>,
    /// The deployment in flight (or the one being followed).
    pub deployment: Option<DeploymentView>,
    pub target_groups: Vec<TargetGroupView>,
    /// The first switch point (listener or rule) whose forward weights move traffic.
    pub switch: String,
    /// Every switch point with its forward weights as read now.
    pub switch_points: Vec<SwitchPointView>,
    /// The scheduled reconcile's open findings about the fleet (drift, strangers, orphans),
    /// one sentence each; empty when the fleet is what the ledger says.
    pub findings: Vec<String>,
    /// Findings past the ledger's bound, counted only.
    pub more_findings: u32,
    /// While green is verified (launched, not live yet): how to reach it through the load
    /// balancer on the deployment's test route, e.g.
    /// `curl -H 'X-Greenlight-Deployment: d-…' http://…` (the listener's ARN when the
    /// registration names no `load_balancer_url`).
    pub test_route: Option<String>,
}

/// What a forward gives one target group (% of the forward's weights).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Weight {
    pub target_group: String,
    pub name: String,
    pub weight: u8,
}

/// One switch point and what its forward gives each target group now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SwitchPointView {
    /// The listener's ARN (its default action) or the rule's.
    pub arn: String,
    pub weights: Vec<Weight>,
}

/// The short name of a target group ARN.
pub fn tg_name(arn: &str) -> String {
    arn.split('/').nth(1).unwrap_or(arn).to_string()
}

/// Reads a service's status: the ledger (and deployment `focus`, else the one in flight),
/// the target health of both target groups and the switch point's weights.
pub async fn status(aws: &Aws, service: &str, focus: Option<&str>) -> CliResult<Status> {
    Ok(status_and_deployment(aws, service, focus).await?.0)
}

/// [`status`], with the ledger's record of the deployment it shows (the dashboard draws its
/// timeline), from the same reads.
pub async fn status_and_deployment(
    aws: &Aws,
    service: &str,
    focus: Option<&str>,
) -> CliResult<(Status, Option<Deployment>)> {
    // One read with a focus (registration, pointers and that deployment together); without,
    // the pointers say which deployment is in flight and only its item is read after them.
    let state = match focus {
        Some(id) => aws.load(service, Some(id)).await?,
        None => aws.load_active(service).await?,
    };
    let config = &state.config;
    let now = now_s();
    let dep = state.deployment.as_ref();
    let pointers = &state.service;
    let mut switch_points = Vec::new();
    for point in config.switch.points() {
        let weights = aws.lb.traffic(point).await.map_err(|e| aws.error(e))?;
        switch_points.push(SwitchPointView {
            arn: point.arn().to_string(),
            weights: weights
                .into_iter()
                .map(|(arn, weight)| Weight {
                    name: tg_name(&arn),
                    target_group: arn,
                    weight,
                })
                .collect(),
        });
    }
    // Each group's weight as the first switch point gives it (every change moves all of
    // them to the same weights; `switch_points` shows each).
    let traffic: BTreeMap<String, u8> = switch_points
        .first()
        .map(|p| p.weights.iter().map(|w| (w.target_group.clone(), w.weight)).collect())
        .unwrap_or_default();
    // A deployment still in flight names its groups green and blue.
    let in_flight = dep.filter(|d| !d.phase.is_terminal());
    let mut groups = Vec::new();
    for tg in &config.target_groups {
        let (role, version) = match in_flight {
            Some(d) if &d.green_tg == tg => ("green", Some(d.version.clone())),
            Some(d) if d.blue.as_ref().is_some_and(|b| &b.target_group == tg) => {
                ("blue", d.blue.as_ref().map(|b| b.version.clone()))
            }
            _ => match (&pointers.live, &pointers.warm) {
                (Some(live), _) if &live.target_group == tg => ("live", Some(live.version.clone())),
                (_, Some(warm)) if &warm.target_group == tg => ("warm", Some(warm.version.clone())),
                _ => ("idle", None),
            },
        };
        let targets = aws.lb.target_health(tg).await.map_err(|e| aws.error(e))?;
        groups.push(TargetGroupView {
            target_group: tg.clone(),
            name: tg_name(tg),
            role: role.to_string(),
            version,
            weight: traffic.get(tg).copied().unwrap_or(0),
            targets: targets
                .into_iter()
                .map(|t| TargetView {
                    instance_id: t.instance_id,
                    state: t.state,
                    reason: t.reason,
                })
                .collect(),
        });
    }
    let warm_until = in_flight.and_then(|d| match d.phase {
        Phase::Baking { until } => Some(until),
        _ => None,
    });
    let status = Status {
        service: service.to_string(),
        as_of: format_time(now),
        live: pointers.live.as_ref().map(ReleaseView::from),
        warm: pointers.warm.as_ref().map(|w| WarmView {
            release: w.into(),
            until: warm_until.map(format_time),
            remaining_s: warm_until.map(|u| u.saturating_sub(now)),
        }),
        attention: pointers.attention.clone(),
        findings: pointers
            .findings
            .iter()
            .flat_map(|f| f.open.iter().map(|finding| finding.to_string()))
            .collect(),
        more_findings: pointers.findings.as_ref().map_or(0, |f| f.more),
        test_route: in_flight
            .filter(|d| {
                !d.green_instances.is_empty()
                    && matches!(
                        d.phase,
                        Phase::Verifying { .. } | Phase::Verified { .. } | Phase::Shifting { .. }
                    )
            })
            .and_then(|d| {
                let listener = config.switch.first()?;
                let to = match &config.health.smoke.load_balancer_url {
                    Some(url) => url.clone(),
                    None => format!("<listener {}>", listener.listener_arn),
                };
                Some(format!("curl -H '{TEST_ROUTE_HEADER}: {}' {to}", d.deploy_id))
            }),
        fast_rollback_ready: pointers.revert_plan.is_some(),
        queued: pointers.queued.as_ref().map(|q| QueuedView {
            version: q.version.clone(),
            ami: q.ami.clone(),
            requested_by: q.requested_by.clone(),
            rollback: q.rollback_of.is_some(),
        }),
        deployment: dep.map(|d| DeploymentView::new(d, config, now)),
        target_groups: groups,
        switch: config.switch.first().map(|p| p.arn().to_string()).unwrap_or_default(),
        switch_points,
    };
    Ok((status, state.deployment.clone()))
}

/// One row of `services`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceRow {
    pub service: String,
    pub live: Option<String>,
    pub warm: Option<String>,
    pub deployment: Option<InFlight>,
    pub attention: Option<String>,
    /// Set when the service's ledger items could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The deployment in flight, in brief.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InFlight {
    pub deploy_id: String,
    pub version: String,
    /// None (shown as `starting`) until the deployment's item is written.
    #[serde(serialize_with = "phase_or_starting")]
    pub phase: Option<PhaseName>,
    pub weight: u8,
    /// How long it has been in that phase (since the timeline's last mark).
    pub in_phase_s: u64,
}

/// Reads one service's row.
pub async fn service_row(aws: &Aws, service: String) -> ServiceRow {
    let mut row = ServiceRow {
        service: service.clone(),
        live: None,
        warm: None,
        deployment: None,
        attention: None,
        error: None,
    };
    let state = match aws.ledger.load(&service, None).await {
        Ok(Some(state)) => state,
        Ok(None) => {
            row.error = Some("registration without pointers (being registered?)".into());
            return row;
        }
        Err(e) => {
            row.error = Some(e.to_string());
            return row;
        }
    };
    row.live = state.service.live.as_ref().map(|r| r.version.clone());
    row.warm = state.service.warm.as_ref().map(|r| r.version.clone());
    row.attention = state.service.attention.clone();
    if let Some(active) = &state.service.active {
        match aws.ledger.load(&service, Some(active)).await {
            Ok(Some(State {
                deployment: Some(dep), ..
            })) => {
                let since = dep.timeline.last().map_or(dep.created_at, |m| m.at);
                row.deployment = Some(InFlight {
                    deploy_id: dep.deploy_id.clone(),
                    version: dep.version.clone(),
                    phase: Some(dep.phase.kind()),
                    weight: phase_weight(&dep.phase),
                    in_phase_s: now_s().saturating_sub(since),
                })
            }
            Ok(_) => {
                row.deployment = Some(InFlight {
                    deploy_id: active.clone(),
                    version: "?".into(),
                    phase: None,
                    weight: 0,
                    in_phase_s: 0,
                })
            }
            Err(e) => row.error = Some(e.to_string()),
        }
    }
    row
}

/// One row of `history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryRow {
    pub deploy_id: String,
    pub version: String,
    pub ami: String,
    pub started_at: String,
    /// When it ended (None while in flight).
    pub finished_at: Option<String>,
    /// `succeeded`, `aborted`, or the phase of a deployment in flight.
    pub outcome: PhaseName,
    pub ended: bool,
    /// Why it was aborted (a rollback says who rolled it back and why).
    pub abort_reason: Option<String>,
    pub requested_by: String,
    pub reason: Option<String>,
    pub source: ImageSource,
    pub rollback: bool,
    pub promoted_by: Option<String>,
    /// From start to every green target healthy and smoke-tested.
    pub time_to_healthy_s: Option<u64>,
    /// For a deployment rolled back: who, and the rollback event → traffic back.
    pub reverted_by: Option<String>,
    pub time_to_revert_ms: Option<u64>,
    pub receipt_to_revert_ms: Option<u64>,
    /// The canary analysis outcome in a few words (`regressed at 10% (error_rate)`,
    /// `no worse at 10%, 50%`, `inconclusive at 10%: held`); None without analysis.
    pub analysis: Option<String>,
}

impl From<&Deployment> for HistoryRow {
    fn from(dep: &Deployment) -> Self {
        let ended = dep.phase.is_terminal();
        HistoryRow {
            deploy_id: dep.deploy_id.clone(),
            version: dep.version.clone(),
            ami: dep.ami.clone(),
            started_at: format_time(dep.created_at),
            finished_at: ended.then(|| format_time(dep.updated_at)),
            outcome: dep.phase.kind(),
            ended,
            abort_reason: match &dep.phase {
                Phase::Aborting { reason, .. } | Phase::Aborted { reason } => Some(reason.clone()),
                _ => None,
            },
            requested_by: dep.requested_by.clone(),
            reason: dep.reason.clone(),
            source: dep.source,
            rollback: dep.rollback,
            promoted_by: dep.promoted_by.clone(),
            time_to_healthy_s: dep.healthy_at.map(|h| h.saturating_sub(dep.created_at)),
            reverted_by: dep.revert.as_ref().map(|r| r.requested_by.clone()),
            time_to_revert_ms: dep.revert.as_ref().and_then(RevertRecord::time_to_revert_ms),
            receipt_to_revert_ms: dep.revert.as_ref().and_then(RevertRecord::receipt_to_revert_ms),
            analysis: analysis_outcome(dep),
        }
    }
}

/// A target's state as the load balancer spells it (`not registered` when it is not).
fn target_state_name<S: serde::Serializer>(state: &TargetState, out: S) -> Result<S::Ok, S::Error> {
    out.serialize_str(state.as_str())
}

/// The phase's name, or `starting` before the deployment's item exists.
fn phase_or_starting<S: serde::Serializer>(phase: &Option<PhaseName>, out: S) -> Result<S::Ok, S::Error> {
    out.serialize_str(phase_name(*phase))
}

/// What `services` shows as the phase of a deployment in flight.
pub fn phase_name(phase: Option<PhaseName>) -> &'static str {
    phase.map_or("starting", PhaseName::as_str)
}

/// A metric's tolerance as the registration declares it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ToleranceView {
    /// The metric's name in verdicts (`error_rate`, `latency_p99`, a custom name).
    pub metric: String,
    /// `error_rate`, `latency` or `custom`.
    pub kind: &'static str,
    /// Green's rate may exceed blue's by this many percentage points (error_rate, custom).
    pub tolerance_pp: Option<Real>,
    /// Latency: green's requests slower than `max_ratio` × blue's percentile may be no more
    /// frequent than blue's slower than that percentile.
    pub percentile: Option<Real>,
    pub max_ratio: Option<Real>,
    /// In words: `+0.5 pp`, `p99 ≤ 1.2× blue`.
    pub text: String,
}

impl From<&MetricSpec> for ToleranceView {
    fn from(spec: &MetricSpec) -> Self {
        let (kind, tolerance_pp, percentile, max_ratio) = match spec {
            MetricSpec::ErrorRate { tolerance_pp } => ("error_rate", Some(*tolerance_pp), None, None),
            MetricSpec::Latency { percentile, max_ratio } => ("latency", None, Some(*percentile), Some(*max_ratio)),
            MetricSpec::Custom { tolerance_pp, .. } => ("custom", Some(*tolerance_pp), None, None),
        };
        let text = match (tolerance_pp, percentile, max_ratio) {
            (Some(pp), _, _) => format!("+{} pp", compact(pp.0)),
            (_, Some(p), Some(r)) => format!("p{} ≤ {}× blue", compact(p.0), compact(r.0)),
            _ => "-".into(),
        };
        ToleranceView {
            metric: spec.name(),
            kind,
            tolerance_pp,
            percentile,
            max_ratio,
            text,
        }
    }
}

/// Bad events among trials, and their rate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CountsView {
    pub bad: u64,
    pub total: u64,
    /// bad / total (0 without trials).
    pub rate: Real,
}

impl From<Counts> for CountsView {
    fn from(c: Counts) -> Self {
        CountsView {
            bad: c.bad,
            total: c.total,
            rate: Real::new(c.rate()),
        }
    }
}

/// One metric's verdict in an evaluation, with everything that explains it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MetricVerdictView {
    pub metric: String,
    pub green: CountsView,
    pub blue: CountsView,
    /// Green's rate may exceed blue's by this fraction (0.005 = 0.5 points; 0 for latency,
    /// whose tolerance is in its threshold).
    pub tolerance: Real,
    /// The tolerance in words, from the registration when it still names the metric.
    pub tolerance_text: String,
    /// The e-value against "green is within tolerance" and what it must reach to revert.
    pub e_regressed: Real,
    pub threshold_regressed: Real,
    /// The e-value against "green is worse than the tolerance" and what it must reach to go on.
    pub e_no_worse: Real,
    pub threshold_no_worse: Real,
    /// `regressed`, `no_worse`, `continue`.
    pub verdict: Verdict,
    /// Why, in a sentence.
    pub explanation: String,
}

/// One evaluation of a deployment's canary analysis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EvaluationView {
    pub at: String,
    /// Green's weight when judged (100 in the bake window).
    pub weight: u8,
    /// The window judged (None when nothing could be fetched).
    pub window_from: Option<String>,
    pub window_to: Option<String>,
    pub window_s: u64,
    /// `regressed`, `no_worse`, `continue`.
    pub verdict: Verdict,
    /// What greenlight did: `wait`, `hold`, `next step`, `revert`, `abort`.
    pub action: String,
    /// Why there is no verdict (metrics unavailable, too early, too few requests).
    pub note: Option<String>,
    pub metrics: Vec<MetricVerdictView>,
}

impl EvaluationView {
    pub fn new(e: &Evaluation, analysis: Option<&Analysis>) -> Self {
        let fetched = e.to > e.from;
        let tolerance_text = |m: &MetricVerdict| {
            analysis
                .and_then(|a| a.metrics.iter().find(|s| s.name() == m.metric))
                .map_or_else(
                    || format!("+{} pp", compact(m.tolerance.0 * 100.0)),
                    |s| ToleranceView::from(s).text,
                )
        };
        EvaluationView {
            at: format_time(e.at),
            weight: e.weight,
            window_from: fetched.then(|| format_time(e.from)),
            window_to: fetched.then(|| format_time(e.to)),
            window_s: e.to.saturating_sub(e.from),
            verdict: e.verdict,
            action: e.action.clone(),
            note: e.note.clone(),
            metrics: e
                .metrics
                .iter()
                .map(|m| MetricVerdictView {
                    metric: m.metric.clone(),
                    green: m.green.into(),
                    blue: m.blue.into(),
                    tolerance: m.tolerance,
                    tolerance_text: tolerance_text(m),
                    e_regressed: m.e_regressed,
                    threshold_regressed: m.threshold_regressed,
                    e_no_worse: m.e_no_worse,
                    threshold_no_worse: m.threshold_no_worse,
                    verdict: m.verdict,
                    explanation: m.explanation.clone(),
                })
                .collect(),
        }
    }
}

/// A deployment's canary analysis as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AnalysisView {
    /// Green's weight being judged (100 in the bake window) and since when.
    pub weight: u8,
    pub since: String,
    pub judged_for_s: u64,
    /// When the next evaluation is due (None when held, or when nothing more is judged).
    pub next_at: Option<String>,
    pub next_in_s: Option<u64>,
    /// Set when an inconclusive step holds, waiting for promote, rollback or abort.
    pub held_since: Option<String>,
    /// The registration's tolerance per metric (empty if the registration no longer has
    /// an `analysis` block).
    pub tolerances: Vec<ToleranceView>,
    /// The registration's error budget (None without an `analysis` block).
    pub alpha: Option<Real>,
    /// The outcome so far in a few words (what `history` shows).
    pub outcome: String,
    /// How many evaluations the ledger keeps (`history --verdicts` prints them all).
    pub evaluations: usize,
    /// The last evaluation.
    pub last: Option<EvaluationView>,
}

impl AnalysisView {
    pub fn new(dep: &Deployment, record: &AnalysisRecord, config: &ServiceConfig, now: u64) -> Self {
        let analysis = config.analysis.as_ref();
        let judged = record.held_since.is_none() && !dep.phase.is_terminal();
        let next = judged.then(|| analysis_due(config, dep, now)).flatten();
        AnalysisView {
            weight: record.weight,
            since: format_time(record.since),
            judged_for_s: now.saturating_sub(record.since),
            next_at: next.map(format_time),
            next_in_s: next.map(|n| n.saturating_sub(now)),
            held_since: record.held_since.map(format_time),
            tolerances: analysis.map_or_else(Vec::new, |a| a.metrics.iter().map(ToleranceView::from).collect()),
            alpha: analysis.map(|a| a.alpha),
            outcome: analysis_outcome(dep).unwrap_or_else(|| "-".into()),
            evaluations: record.evaluations.len(),
            last: record.evaluations.last().map(|e| EvaluationView::new(e, analysis)),
        }
    }
}

/// Every evaluation of one deployment (`history --verdicts`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerdictsView {
    pub service: String,
    pub deploy_id: String,
    pub version: String,
    pub outcome: PhaseName,
    /// The analysis outcome in a few words (None without analysis).
    pub analysis: Option<String>,
    /// Oldest first.
    pub evaluations: Vec<EvaluationView>,
}

impl VerdictsView {
    pub fn new(dep: &Deployment, config: &ServiceConfig) -> Self {
        let analysis = config.analysis.as_ref();
        VerdictsView {
            service: dep.service.clone(),
            deploy_id: dep.deploy_id.clone(),
            version: dep.version.clone(),
            outcome: dep.phase.kind(),
            analysis: analysis_outcome(dep),
            evaluations: dep
                .analysis
                .iter()
                .flat_map(|r| r.evaluations.iter())
                .map(|e| EvaluationView::new(e, analysis))
                .collect(),
        }
    }
}

/// Where a weight was judged, in words: `10%`, or `bake` for the bake window.
fn at_weight(weight: u8) -> String {
    if weight >= 100 {
        "bake".into()
    } else {
        format!("{weight}%")
    }
}

/// A deployment's canary analysis outcome in a few words (None without analysis):
/// `regressed at 10% (error_rate)`, `no worse at 10%, 50%`, `inconclusive at 10%: held`,
/// `judging at 10%`.
pub fn analysis_outcome(dep: &Deployment) -> Option<String> {
    let record = dep.analysis.as_ref()?;
    let evals = &record.evaluations;
    if let Some(e) = evals.iter().find(|e| e.verdict == Verdict::Regressed) {
        let metrics: Vec<&str> = e
            .metrics
            .iter()
            .filter(|m| m.verdict == Verdict::Regressed)
            .map(|m| m.metric.as_str())
            .collect();
        let which = if metrics.is_empty() {
            String::new()
        } else {
            format!(" ({})", metrics.join(", "))
        };
        let at = match e.weight {
            100.. => "in bake".to_string(),
            w => format!("at {w}%"),
        };
        return Some(format!("regressed {at}{which}"));
    }
    let mut parts = Vec::new();
    let mut no_worse: Vec<String> = Vec::new();
    for e in evals {
        match (e.verdict, e.action.as_str()) {
            (Verdict::NoWorse, _) => {
                let w = at_weight(e.weight);
                if !no_worse.contains(&w) {
                    no_worse.push(w);
                }
            }
            (Verdict::Continue, action @ ("next step" | "abort" | "hold")) => {
                if !no_worse.is_empty() {
                    parts.push(format!("no worse at {}", no_worse.join(", ")));
                    no_worse.clear();
                }
                let did = match action {
                    "next step" => "continued",
                    "abort" => "aborted",
                    _ => "held",
                };
                parts.push(format!("inconclusive at {}: {did}", at_weight(e.weight)));
            }
            _ => {}
        }
    }
    if !no_worse.is_empty() {
        parts.push(format!("no worse at {}", no_worse.join(", ")));
    }
    let baked = evals.iter().any(|e| e.weight >= 100) && matches!(dep.phase, Phase::Retiring { .. } | Phase::Succeeded);
    if baked {
        parts.push("bake clean".into());
    }
    if parts.is_empty() {
        let state = if dep.phase.is_terminal() {
            "no verdict"
        } else {
            "judging"
        };
        parts.push(format!("{state} at {}", at_weight(record.weight)));
    } else if !dep.phase.is_terminal() && record.held_since.is_none() && !baked {
        let last = evals.last().map(|e| e.action.as_str());
        if matches!(last, Some("wait")) {
            parts.push(format!("judging at {}", at_weight(record.weight)));
        }
    }
    Some(parts.join("; "))
}

/// A number in a few characters: `0`, `0.05`, `12.3`, `200`, `1.2e6`, `3.1e-4`.
pub fn compact(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return if x.is_finite() { "0".into() } else { format!("{x}") };
    }
    let a = x.abs();
    if (0.01..10_000.0).contains(&a) {
        let decimals = if a >= 100.0 {
            0
        } else if a >= 10.0 {
            1
        } else if a >= 1.0 {
            2
        } else {
            3
        };
        let text = format!("{x:.decimals$}");
        let text = if text.contains('.') {
            text.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            text
        };
        return text;
    }
    let mut exp = a.log10().floor() as i32;
    let mut mantissa = x / 10f64.powi(exp);
    if (mantissa.abs() * 10.0).round() >= 100.0 {
        exp += 1;
        mantissa /= 10.0;
    }
    let m = format!("{mantissa:.1}");
    let m = m.trim_end_matches('0').trim_end_matches('.');
    format!("{m}e{exp}")
}
