//! Starting a deployment: the refusals an image must pass (owner, tags, alarms, versions),
//! then a new deployment in `Launching`, or the policy for a service that is busy (queue,
//! supersede, reject).

use super::types::*;
use crate::config::NewImagePolicy;
use crate::config::OnFailure;
use crate::model::{Deployment, Phase, Release, State};
use crate::request::ImageRequest;
use crate::rfc3339::format as format_time;
use crate::version::Version;
use crate::Epoch;

/// start-deployment: refusals first, then a new deployment in `Launching`.
pub(super) fn start(
    state: &State,
    request: &ImageRequest,
    image: Option<&crate::request::ImageFacts>,
    firing_alarms: &[String],
    now: Epoch,
) -> Result<Decision, Refusal> {
    let config = &state.config;
    if request.service != config.service {
        return Err(Refusal::WrongService {
            got: request.service.clone(),
            want: config.service.clone(),
        });
    }
    let deploy_id = request.deploy_id();
    let unchanged = |note: String, effects: Vec<Effect>| Decision {
        state: state.clone(),
        effects,
        note,
    };
    if let Some(existing) = state.deployment.as_ref().filter(|d| d.deploy_id == deploy_id.as_str()) {
        if existing.phase.is_terminal() {
            return Ok(unchanged(
                format!(
                    "deployment {deploy_id} already {}; publish with attempt {} to deploy this image again",
                    existing.phase.name(),
                    request.attempt + 1
                ),
                vec![],
            ));
        }
        return Ok(unchanged(
            format!("duplicate event: deployment {deploy_id} already started"),
            vec![Effect::StartExecution {
                service: config.service.clone(),
                deploy_id: deploy_id.to_string(),
                execution: deploy_id.to_string(),
            }],
        ));
    }
    let service = &state.service;
    if request.is_repave() {
        // A re-pave deploys the live release again, nothing else, and only when the service
        // is free: it never queues behind, nor supersedes, a deployment.
        let live = service.live.as_ref();
        if live.is_none_or(|l| (l.version.as_str(), l.ami.as_str()) != (request.version.as_str(), request.ami.as_str()))
        {
            return Err(Refusal::NotLive {
                service: config.service.clone(),
                version: request.version.clone(),
                ami: request.ami.clone(),
            });
        }
        if let Some(active) = service.active.as_deref().filter(|a| *a != deploy_id.as_str()) {
            return Err(Refusal::Busy {
                service: config.service.clone(),
                active: active.to_string(),
            });
        }
    } else {
        check_version(
            &config.service,
            service.live.as_ref(),
            &request.version,
            &request.ami,
            request.is_rollback(),
        )?;
    }
    let image = image.ok_or_else(|| Refusal::ImageNotFound {
        ami: request.ami.clone(),
    })?;
    if !image.available {
        return Err(Refusal::ImageNotAvailable {
            ami: request.ami.clone(),
        });
    }
    let policy = &config.ami_policy;
    if !policy.allowed_owners.is_empty() && !policy.allowed_owners.contains(&image.owner) {
        return Err(Refusal::WrongOwner {
            service: config.service.clone(),
            ami: request.ami.clone(),
            owner: image.owner.clone(),
            allowed: policy.allowed_owners.clone(),
        });
    }
    for (key, value) in &policy.required_tags {
        if image.tags.get(key) != Some(value) {
            return Err(Refusal::MissingTag {
                service: config.service.clone(),
                ami: request.ami.clone(),
                key: key.clone(),
                value: value.clone(),
            });
        }
    }
    if !firing_alarms.is_empty() && !request.is_rollback() {
        return Err(Refusal::AlarmFiring {
            service: config.service.clone(),
            alarms: firing_alarms.join(", "),
        });
    }
    if let Some(active) = service.active.as_deref().filter(|a| *a != deploy_id.as_str()) {
        return busy(state, request, active, now);
    }
    let live_tg = service.live.as_ref().map(|r| r.target_group.as_str());
    let mut deployment = Deployment {
        deploy_id: deploy_id.to_string(),
        service: config.service.clone(),
        version: request.version.clone(),
        ami: request.ami.clone(),
        gen: 0,
        source: request.source,
        requested_by: request.requested_by.clone(),
        reason: request.reason.clone(),
        blue: service.live.clone(),
        green_tg: config.idle_target_group(live_tg).to_string(),
        green_instances: vec![],
        phase: Phase::Launching,
        max_weight: 0,
        created_at: now,
        updated_at: now,
        healthy_at: None,
        revert: None,
        rollback: request.is_rollback(),
        promoted_by: None,
        pauses: vec![],
        on_failure: if request.is_rollback() || request.is_repave() {
            OnFailure::Revert
        } else {
            request.on_failure.unwrap_or(config.rollout.on_failure)
        },
        holds: vec![],
        hooks: vec![],
        late_failures: 0,
        resumes: 0,
        last_resume: None,
        frames: Default::default(),
        drain_s: Default::default(),
        traffic_back_at: None,
        analysis: None,
        timeline: vec![],
    };
    let from = service.live.as_ref().map(|r| r.version.as_str()).unwrap_or("nothing");
    deployment.enter(
        Phase::Launching,
        now,
        format!(
            "{} -> {} requested by {} via {}",
            from, request.version, request.requested_by, request.source
        ),
    );
    let mut next = state.clone();
    next.service.active = Some(deploy_id.to_string());
    next.service.lease_until = Some(now + config.lease_s);
    if next.service.queued.as_ref().is_some_and(|q| q.deploy_id() == deploy_id) {
        next.service.queued = None;
    }
    next.deployment = Some(deployment);
    Ok(Decision {
        state: next,
        effects: vec![Effect::StartExecution {
            service: config.service.clone(),
            deploy_id: deploy_id.to_string(),
            execution: deploy_id.to_string(),
        }],
        note: format!(
            "deployment {deploy_id} of {} {} started",
            config.service, request.version
        ),
    })
}

/// A new image (or a rollback) while deployment `active` holds the service: the service's
/// policy decides, except that a rollback, or an expired lease, always supersedes.
pub(super) fn busy(state: &State, request: &ImageRequest, active: &str, now: Epoch) -> Result<Decision, Refusal> {
    let config = &state.config;
    let service = &state.service;
    let deploy_id = request.deploy_id();
    let version = &request.version;
    let expired_at = service.lease_until.filter(|t| *t <= now);
    if let Some(queued) = service
        .queued
        .as_ref()
        .filter(|q| q.is_rollback() && !request.is_rollback())
    {
        return Err(Refusal::RollbackPending {
            service: config.service.clone(),
            version: queued.version.clone(),
        });
    }
    // A held deployment (`on_failure: hold`) waits for an engineer, however long: only a
    // rollback takes it over; another image waits behind it (or is refused).
    let held = state
        .deployment
        .as_ref()
        .filter(|d| d.deploy_id == active)
        .is_some_and(|d| d.held().is_some());
    let policy = if request.is_rollback() {
        NewImagePolicy::Supersede
    } else if held {
        match config.on_new_image {
            NewImagePolicy::Reject => NewImagePolicy::Reject,
            _ => NewImagePolicy::Queue,
        }
    } else if expired_at.is_some() {
        NewImagePolicy::Supersede
    } else {
        config.on_new_image
    };
    let mut next = state.clone();
    let mut effects = Vec::new();
    let note = match policy {
        NewImagePolicy::Reject => {
            return Err(Refusal::Busy {
                service: config.service.clone(),
                active: active.to_string(),
            })
        }
        NewImagePolicy::Queue => format!("{version} ({deploy_id}) queued: starts when {active} ends"),
        NewImagePolicy::Supersede => {
            let reason = match (expired_at, request.is_rollback()) {
                (Some(t), _) => format!(
                    "its lease expired at {} (no progress); taken over by {version} ({deploy_id})",
                    format_time(t)
                ),
                (None, true) => format!("superseded by the rollback to {version} ({deploy_id})"),
                (None, false) => format!("superseded by {version} ({deploy_id})"),
            };
            effects.push(Effect::SupersedeDeployment {
                service: config.service.clone(),
                deploy_id: active.to_string(),
                reason: reason.clone(),
                resume: expired_at.is_some(),
            });
            format!("{version} ({deploy_id}) queued; {active}: {reason}")
        }
    };
    next.service.queued = Some(request.clone());
    Ok(Decision {
        state: next,
        effects,
        note,
    })
}

/// The version rules an image must pass against the live release: no silent downgrade (a
/// rollback may go older), not the live image again, not the live version with another AMI.
/// (Also checked by the CLI before it publishes.)
pub fn check_version(
    service: &str,
    live: Option<&Release>,
    version: &str,
    ami: &str,
    rollback: bool,
) -> Result<(), Refusal> {
    let requested = Version::parse(version)?;
    let Some(live) = live else { return Ok(()) };
    match requested.cmp(&Version::parse(&live.version)?) {
        std::cmp::Ordering::Less if rollback => Ok(()),
        std::cmp::Ordering::Less => Err(Refusal::Downgrade {
            service: service.to_string(),
            live: live.version.clone(),
            requested: version.to_string(),
        }),
        std::cmp::Ordering::Equal if live.ami == ami => Err(Refusal::AlreadyLive {
            service: service.to_string(),
            version: live.version.clone(),
            ami: live.ami.clone(),
        }),
        std::cmp::Ordering::Equal => Err(Refusal::VersionReused {
            service: service.to_string(),
            version: live.version.clone(),
            live_ami: live.ami.clone(),
            requested_ami: ami.to_string(),
        }),
        std::cmp::Ordering::Greater => Ok(()),
    }
}
