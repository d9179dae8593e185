//! The invariants of ARCHITECTURE.md, checked on the simulated world after every step, and
//! the liveness checks once faults stop. Each check reads the world (listener weights,
//! target health, instances and tags) and the ledger's items, never a handler's word.
//!
//! Safety, after every step:
//! - **traffic**, on every switch point of the service: every target group with weight > 0
//!   is one the ledger records for the service (the live release, the warm one, or the
//!   canary of the deployment in flight), its registered targets run that version, and they
//!   are all healthy (I4, I8, I13);
//! - **frames kept**: every switch point's frame (authentication actions before the
//!   forward, their order, the forward's stickiness) is the one it was set up with;
//! - **drained**: no fleet is deregistered while a listener (any switch point, or one added
//!   by hand outside the registration) forwards to its group, and an instance that got
//!   connections is terminated only after deregistration and its group's own
//!   deregistration delay (the load balancer's, not the registration's) since its last new
//!   connection (I8, I26);
//! - **one deployment**: at most one deployment of a service is not ended, and it is the
//!   pointers' `active` (the lease owner) (I6);
//! - **no downgrade**: the live version only moves to an older one by a rollback (I5);
//! - **instances**: every instance is tagged, and is live, warm, terminated, or belongs to
//!   the deployment in flight (its green, or the blue it is retiring) (I7, I11);
//! - **leases**: a lease exists exactly while a deployment is active, and never runs longer
//!   than the service's lease plus the longest wait of a step (I6);
//! - **canary analysis** (I32–I34): a regression found is reverted and green never gets more
//!   weight after it; green moves past a judged canary step only on the analysis's "next
//!   step" (no worse, or inconclusive with `continue` declared and data fetched); missing
//!   metrics never promote;
//! - **approval pauses** (I35): green never moves past a pause that nobody approved and that
//!   did not reach its deadline, and while one waits at w % no switch point gives green more
//!   than w %;
//! - **holds** (I36): while a failure holds a deployment (`on_failure: hold`), no switch point
//!   gives green more than the weight it froze at, and none of green's or blue's instances
//!   is deregistered or terminated;
//! - **lifecycle hooks** (I39): a deployment never moves out of a hook's point while a hook
//!   declared there has not decided, nor past one that failed (or timed out with `rollback`)
//!   unless an engineer released the hold it caused; an aborting green is not terminated
//!   before its `after_revert` hooks decided;
//! - **timeline weight**: the last weight a deployment's timeline recorded is what its phase
//!   gives green (the dashboard draws green's weight over time from those marks);
//! - **deployment events** (I38): the events the ledger's stream announced of each
//!   deployment are one per change of its status, in order, and the last is its status now.
//!
//! Liveness, once settled: every deployment ended, no lease, nothing queued, all traffic on
//! every switch point on the live release, and the only instances left running are the
//! live fleet (I6, I7, I22).
//!
//! Hand edits ([`crate::world::Hand`]: a listener edited by hand, a stranger registered into
//! a group, a tagged orphan launched; seed runs with the reconcile in chaos only) are not
//! greenlight's doing, so after every step the traffic check skips a switch point whose
//! weights were set by hand and not written by greenlight since, and strangers' targets are
//! left out of the traffic check (the group must still have a healthy target of the ledger's
//! version of its own); strangers must never be terminated, and neither they nor the
//! orphans need greenlight's tags. Once settled (after a last scheduled reconcile), the fleet
//! audit must have done what the registration's `reconcile` policy says (I29): under
//! `repair` no drift left and no stranger registered (unless the ledger records the repair
//! held, with why); under `report` the drift and the stranger left as found and recorded in
//! the ledger's findings; every tagged orphan older than the grace at the last audit
//! terminated, whatever the policy.

use crate::ledger::Table;
use crate::world::{switch_key, Aws, Hand, SimInstance};
use greenlight_adapters::tags;
use greenlight_core::config::Remedy;
use greenlight_core::decide::TargetState;
use greenlight_core::finding::{Action, Finding};
use greenlight_core::model::{Deployment, Phase, ServiceState, Trigger};
use greenlight_core::version::Version;
use std::collections::{BTreeMap, BTreeSet};

/// Remembers what the invariants compare across steps (the live version of each service).
#[derive(Debug, Default)]
pub struct Checker {
    live: BTreeMap<String, String>,
    /// (service, deploy id) → green's `max_weight` when analysis first recorded a
    /// `regressed` verdict on it (I32).
    regressed: BTreeMap<(String, String), u8>,
    /// (service, deploy id) → green's `max_weight` at the last check (I33).
    max_seen: BTreeMap<(String, String), u8>,
}

impl Checker {
    /// The safety invariants, after a step.
    /// `cleaning`: deployments with an execution still running (which may yet terminate an
    /// instance that raced their abort).
    pub fn check(
        &mut self,
        aws: &Aws,
        table: &Table,
        services: &[String],
        cleaning: &BTreeSet<String>,
    ) -> Result<(), String> {
        for service in services {
            self.service(aws, table, service)?;
        }
        frames_kept(aws)?;
        strangers_alive(aws)?;
        let running = aws.instances.iter().filter(|(_, i)| i.terminated_ms.is_none());
        instances(table, running, cleaning, &aws.hand)
    }

    /// The safety invariants of one service and its instances only: what the scale runs
    /// check after a step, which touches one service (checking all of them after every step
    /// would cost O(services) a step, O(services²) a run).
    pub fn check_one(
        &mut self,
        aws: &Aws,
        table: &Table,
        service: &str,
        cleaning: &BTreeSet<String>,
    ) -> Result<(), String> {
        self.service(aws, table, service)?;
        let running = aws
            .instance_ids_of_service(service)
            .filter_map(|id| aws.instances.get_key_value(id))
            .filter(|(_, i)| i.terminated_ms.is_none());
        instances(table, running, cleaning, &aws.hand)
    }

    /// One service's traffic, deployments, live version and lease.
    fn service(&mut self, aws: &Aws, table: &Table, service: &str) -> Result<(), String> {
        let (config, ptr) = match (table.configs.get(service), table.service_state(service)) {
            (Some((_, c)), Some(p)) => (c, p),
            _ => return Err(format!("{service}: registration or pointers missing from the ledger")),
        };
        let history = table.history(service);
        let open: Vec<&Deployment> = history.iter().filter(|d| !d.phase.is_terminal()).collect();
        let active = open.first().copied();
        // One deployment at a time, and it holds the lease.
        if open.len() > 1 {
            let ids: Vec<_> = open
                .iter()
                .map(|d| format!("{} ({})", d.deploy_id, d.phase.name()))
                .collect();
            return Err(format!(
                "{service}: {} deployments in flight: {}",
                open.len(),
                ids.join(", ")
            ));
        }
        if let Some(dep) = active {
            if ptr.active.as_deref() != Some(&dep.deploy_id) {
                return Err(format!(
                    "{service}: deployment {} is {} but the pointers' active is {:?}",
                    dep.deploy_id,
                    dep.phase.name(),
                    ptr.active
                ));
            }
        }
        // Every switch point of the service. One edited by hand and not written by
        // greenlight since: not greenlight's doing (the audit judges it, and the settled
        // check what became of it).
        for point in config.switch.points() {
            let switch = switch_key(point);
            if !aws.hand.switches.contains_key(&switch) {
                self.traffic(aws, service, &switch, &ptr, active)?;
            }
        }
        for tg in &config.target_groups {
            drained(aws, service, tg)?;
        }
        self.downgrade(service, &ptr, &history)?;
        for dep in &history {
            self.analysis(config, dep)?;
            paused(aws, config, service, dep)?;
            frozen(aws, config, service, dep)?;
            hooked(aws, config, service, dep)?;
            timeline_weight(service, dep)?;
            announced(service, dep, table)?;
        }
        // Test routes (I31): each forwards to its own deployment's green only, on the first
        // switch point's listener.
        for ((listener, deploy_id), tg) in &aws.test_routes {
            let Some(dep) = history.iter().find(|d| &d.deploy_id == deploy_id) else {
                continue;
            };
            let first = config.switch.first().map(|p| p.listener_arn.as_str());
            if tg != &dep.green_tg || first != Some(listener.as_str()) {
                return Err(format!(
                    "{service}: the test route of {deploy_id} on {listener} forwards to {tg}, not to its green {} on {first:?}",
                    dep.green_tg
                ));
            }
        }
        // Leases.
        if ptr.active.is_some() != ptr.lease_until.is_some() {
            return Err(format!(
                "{service}: active {:?} with lease until {:?}",
                ptr.active, ptr.lease_until
            ));
        }
        let now = aws.now_ms / 1000;
        // A sticky switch point stretches the bake window and an aborted green's fence to the
        // stickiness; a group's own drain may exceed the registration's.
        let deployment_waits = active.map_or(0, |d| {
            d.stickiness_s()
                .max(d.drain_s.values().copied().max().unwrap_or(0) + config.max_invocation_s)
        });
        let longest_wait = config
            .bake_window_s
            .max(config.rollout.step_wait_s)
            .max(config.health.poll_interval_s)
            .max(config.deregistration_delay_s)
            .max(config.rollout.pause_timeout_s)
            .max(deployment_waits);
        if let Some(until) = ptr.lease_until {
            // The registration may have shortened since the lease was taken: allow the
            // longest lease any registration could have granted.
            let bound = now + longest_wait.max(3600) + config.lease_s.max(900);
            if until > bound {
                return Err(format!("{service}: lease until {until} is beyond {bound} (now {now})"));
            }
        }
        Ok(())
    }

    /// Traffic only on target groups the ledger records, running that version, healthy.
    fn traffic(
        &self,
        aws: &Aws,
        service: &str,
        switch: &str,
        ptr: &ServiceState,
        active: Option<&Deployment>,
    ) -> Result<(), String> {
        let weights = aws.listeners.get(switch).cloned().unwrap_or_default();
        if weights.iter().all(|(_, w)| *w == 0) {
            return Err(format!("{service}: the listener forwards to nothing: {weights:?}"));
        }
        for (tg, weight) in weights.iter().filter(|(_, w)| *w > 0) {
            let recorded = [ptr.live.as_ref(), ptr.warm.as_ref()]
                .into_iter()
                .flatten()
                .find(|r| &r.target_group == tg)
                .map(|r| r.version.clone())
                .or_else(|| {
                    active
                        .filter(|d| &d.green_tg == tg && d.max_weight > 0)
                        .map(|d| d.version.clone())
                });
            let Some(version) = recorded else {
                return Err(format!(
                    "{service}: {weight}% of traffic on {} which the ledger records as neither live, warm nor canary",
                    short_tg(tg)
                ));
            };
            let group = aws.target_groups.get(tg).cloned().unwrap_or_default();
            let serving: Vec<_> = group
                .targets
                .iter()
                .filter_map(|(id, t)| aws.target_state(&group, id, t).map(|s| (id, s)))
                .filter(|(_, s)| *s != TargetState::Draining)
                // A stranger registered by hand is not greenlight's doing (the audit's).
                .filter(|(id, _)| !aws.hand.strangers.contains_key(*id))
                .collect();
            if serving.is_empty() {
                return Err(format!(
                    "{service}: {weight}% of traffic on {} ({version}) which has no target in service",
                    short_tg(tg)
                ));
            }
            for (id, state) in serving {
                if state != TargetState::Healthy {
                    return Err(format!(
                        "{service}: {weight}% of traffic on {} whose target {id} is {state:?}",
                        short_tg(tg)
                    ));
                }
                let running = aws.instances.get(id).and_then(|i| i.tags.get(tags::VERSION));
                if running != Some(&version) {
                    return Err(format!(
                        "{service}: {} serves {running:?} on {id}, the ledger records {version}",
                        short_tg(tg)
                    ));
                }
            }
        }
        Ok(())
    }

    /// Canary analysis (I32–I34), on every deployment of the service:
    /// - I32: once a `regressed` verdict is recorded, green never gets more weight than it
    ///   had then, and the deployment is reverted by analysis (aborting or aborted);
    /// - I33: green's weight grows past a judged canary step `w` (0 < w < 100, analysis
    ///   declared, blue present, not a rollback, not promoted) only when the last evaluation
    ///   at `w` went to the next step on a `no worse` verdict, or on an inconclusive one with
    ///   `continue` declared and the metrics fetched;
    /// - I34: an evaluation whose metrics were unavailable never goes to the next step.
    fn analysis(&mut self, config: &greenlight_core::ServiceConfig, dep: &Deployment) -> Result<(), String> {
        use greenlight_core::analysis::{Inconclusive, Verdict};
        let key = (dep.service.clone(), dep.deploy_id.clone());
        let evaluations = dep.analysis.as_ref().map(|r| r.evaluations.as_slice()).unwrap_or(&[]);
        let name = format!("{}: deployment {} ({})", dep.service, dep.deploy_id, dep.phase.name());
        // I34.
        if let Some(e) = evaluations.iter().find(|e| {
            e.action == "next step" && e.note.as_deref().is_some_and(|n| n.starts_with("metrics unavailable"))
        }) {
            return Err(format!(
                "I34: {name} went to the next step at {}% on unavailable metrics: {e:?}",
                e.weight
            ));
        }
        // I32.
        if evaluations.iter().any(|e| e.verdict == Verdict::Regressed) {
            use greenlight_core::model::{HoldAction, HoldCause};
            // `on_failure: hold`: the regression froze it instead; an engineer's promote may
            // take it further.
            let analysis_holds = || dep.holds.iter().filter(|h| h.cause == HoldCause::Analysis);
            let held = analysis_holds().next().is_some();
            let promoted = analysis_holds().any(|h| h.ended.as_ref().is_some_and(|e| e.action == HoldAction::Promoted));
            let at = *self.regressed.entry(key.clone()).or_insert(dep.max_weight);
            if dep.max_weight > at && !promoted {
                return Err(format!(
                    "I32: {name} gave green {}% after analysis found it regressed at {at}%",
                    dep.max_weight
                ));
            }
            let reverted = dep.revert.as_ref().is_some_and(|r| r.trigger == Trigger::Analysis)
                && matches!(dep.phase, Phase::Aborting { .. } | Phase::Aborted { .. });
            if !reverted && !held {
                return Err(format!(
                    "I32: {name}: analysis found green regressed, yet it is not reverted by analysis (revert {:?})",
                    dep.revert
                ));
            }
        }
        // I33.
        let before = self.max_seen.insert(key, dep.max_weight).unwrap_or(0);
        let judged = config.analysis.is_some() && dep.blue.is_some() && !dep.rollback && dep.promoted_by.is_none();
        if dep.max_weight > before && before > 0 && before < 100 && judged {
            let last = evaluations.iter().rev().find(|e| e.weight == before);
            let continues = config
                .analysis
                .as_ref()
                .is_some_and(|a| a.inconclusive == Inconclusive::Continue);
            let allowed = last.is_some_and(|e| {
                e.action == "next step"
                    && (e.verdict == Verdict::NoWorse
                        || (e.verdict == Verdict::Continue && continues && e.note.is_none()))
            });
            if !allowed {
                return Err(format!(
                    "I33: {name}: green went from {before}% to {}% without analysis passing {before}% (last evaluation there: {last:?})",
                    dep.max_weight
                ));
            }
        }
        Ok(())
    }

    /// The live version moves to an older one only by a rollback.
    fn downgrade(&mut self, service: &str, ptr: &ServiceState, history: &[Deployment]) -> Result<(), String> {
        let Some(live) = &ptr.live else { return Ok(()) };
        if let Some(before) = self.live.get(service).filter(|v| **v != live.version) {
            let older = match (Version::parse(&live.version), Version::parse(before)) {
                (Ok(now), Ok(then)) => now < then,
                _ => false,
            };
            let by_rollback = history.iter().any(|d| {
                (d.version == *before && d.revert.is_some())
                    || (Some(&d.deploy_id) == live.deploy_id.as_ref() && d.rollback)
            });
            if older && !by_rollback {
                return Err(format!(
                    "{service}: the live version went from {before} to the older {} without a rollback",
                    live.version
                ));
            }
        }
        self.live.insert(service.to_string(), live.version.clone());
        Ok(())
    }

    /// Liveness, once everything in flight has run to its end. `audited_ms`: when the last
    /// scheduled reconcile ran after the last work (None: none did, and what it would have
    /// recorded is not judged); `last_audit_ms`: when the last one ran once faults stopped.
    pub fn settled(
        &self,
        aws: &Aws,
        table: &Table,
        audited_ms: Option<u64>,
        last_audit_ms: Option<u64>,
    ) -> Result<(), String> {
        strangers_alive(aws)?;
        for (service, (_, config)) in &table.configs {
            let ptr = table.service_state(service).expect("checked");
            // Every deployment ended: no test route may be left open (closed with green
            // live or the abort, or by the scheduled audit for a stale delivery's).
            if audited_ms.is_some() {
                for (_, deploy_id) in aws.test_routes.keys() {
                    if table.history(service).iter().any(|d| &d.deploy_id == deploy_id) {
                        return Err(format!("{service}: the test route of {deploy_id} is still open"));
                    }
                }
            }
            for dep in table.history(service) {
                if !dep.phase.is_terminal() {
                    return Err(format!(
                        "{service}: deployment {} never ended ({})",
                        dep.deploy_id,
                        dep.phase.name()
                    ));
                }
            }
            if ptr.active.is_some() || ptr.lease_until.is_some() || ptr.queued.is_some() {
                return Err(format!(
                    "{service}: settled with active {:?}, lease {:?}, queued {:?}",
                    ptr.active,
                    ptr.lease_until,
                    ptr.queued.as_ref().map(|q| &q.version)
                ));
            }
            let live = ptr.live.as_ref().ok_or(format!("{service}: nothing live"))?;
            let findings: Vec<Finding> = ptr.findings.as_ref().map(|f| f.open.clone()).unwrap_or_default();
            let more = ptr.findings.as_ref().is_some_and(|f| f.more > 0);
            for point in config.switch.points() {
                let switch = switch_key(point);
                let weights = aws.listeners.get(&switch).cloned().unwrap_or_default();
                let on_live: u32 = weights
                    .iter()
                    .filter(|(tg, _)| *tg == live.target_group)
                    .map(|(_, w)| *w as u32)
                    .sum();
                let total: u32 = weights.iter().map(|(_, w)| *w as u32).sum();
                let hand_edited = aws.hand.switches.get(&switch);
                if let Some(by_hand) = hand_edited {
                    // Never written by greenlight since: the audit must have judged it.
                    if last_audit_ms.is_none() {
                        return Err(format!(
                            "{service}: settled with the switch point {switch} edited by hand and never audited"
                        ));
                    }
                    match config.reconcile.drift {
                        Remedy::Repair => {
                            return Err(format!(
                                "{service}: settled under drift=repair with the switch point {switch} as edited by hand: {by_hand:?}"
                            ))
                        }
                        Remedy::Report
                            if audited_ms.is_some()
                                && !more
                                && !findings
                                    .iter()
                                    .any(|f| matches!(f, Finding::Drift { switch: s, .. } if *s == switch)) =>
                        {
                            return Err(format!(
                                "{service}: settled with the switch point {switch} edited by hand ({by_hand:?}) and no drift of it in the ledger's findings: {findings:?}"
                            ))
                        }
                        Remedy::Report if weights != *by_hand => {
                            return Err(format!(
                                "{service}: drift=report, yet the switch point {switch} is {weights:?}, not as found ({by_hand:?})"
                            ))
                        }
                        Remedy::Report => {}
                    }
                } else if on_live != total {
                    return Err(format!(
                        "{service}: settled with traffic {weights:?} on the switch point {switch}, live is {}",
                        short_tg(&live.target_group)
                    ));
                }
            }
            if let Some(warm) = &ptr.warm {
                return Err(format!("{service}: settled with {} still warm", warm.version));
            }
            let recorded = audited_ms.is_some().then_some((findings.as_slice(), more));
            self.strangers_settled(
                aws,
                service,
                &config.reconcile.strangers,
                &config.target_groups,
                recorded,
            )?;
            // Tagged orphans launched by hand: terminated once older than the grace at the
            // last audit, whatever the policy.
            let grace_ms = config.reconcile.orphan_grace_s * 1000;
            for (id, _) in aws.hand.orphans.iter().filter(|(_, s)| *s == service) {
                let instance = &aws.instances[id];
                let due = last_audit_ms.is_some_and(|at| instance.launched_ms + grace_ms + 1000 <= at);
                if due && instance.terminated_ms.is_none() {
                    return Err(format!(
                        "{service}: settled with the tagged orphan {id} (launched by hand at t={}ms) still running past the grace of {}s",
                        instance.launched_ms,
                        config.reconcile.orphan_grace_s
                    ));
                }
            }
            let running: Vec<&String> = aws
                .instance_ids_of_service(service)
                .filter(|id| !aws.hand.orphans.contains_key(*id))
                .filter(|id| aws.instances.get(*id).is_some_and(|i| i.terminated_ms.is_none()))
                .collect();
            let mut expected: Vec<&String> = live.instance_ids.iter().collect();
            expected.sort();
            if running != expected {
                return Err(format!(
                    "{service}: settled with instances {running:?} running; the live fleet is {expected:?}"
                ));
            }
        }
        Ok(())
    }
}

/// No stranger (an instance registered by hand) was ever terminated: the audit deregisters
/// strangers, never terminates them (I29).
fn strangers_alive(aws: &Aws) -> Result<(), String> {
    for id in aws.hand.strangers.keys() {
        if aws.instances.get(id).is_none_or(|i| i.terminated_ms.is_some()) {
            return Err(format!("the stranger {id} (not greenlight's) was terminated"));
        }
    }
    Ok(())
}

/// Every switch point's frame (the actions around its forward) is the one it was set up
/// with: greenlight never drops an authentication action, reorders the actions or loses the
/// forward's stickiness, whatever it wrote and however often.
fn frames_kept(aws: &Aws) -> Result<(), String> {
    for (switch, initial) in &aws.initial_frames {
        let now = aws.frames.get(switch).cloned().unwrap_or_default();
        if now != *initial {
            return Err(format!(
                "the frame of the switch point {switch} changed: it was {initial:?}, it is {now:?}"
            ));
        }
    }
    Ok(())
}

/// A fleet leaves its target group only once no listener forwards to the group (I8, I26),
/// and an instance that got connections from a listener is terminated only once it was
/// deregistered and the group's own deregistration delay (as the load balancer holds it, not
/// the registration's) has passed since it last got a new connection (its deregistration,
/// or earlier if traffic had moved away), give or take the second the ledger counts in.
/// A switch point edited by hand and not written by greenlight since counts for neither
/// (not greenlight's doing); a listener added by hand outside the registration counts.
fn drained(aws: &Aws, service: &str, target_group: &str) -> Result<(), String> {
    let Some(group) = aws.target_groups.get(target_group) else {
        return Ok(());
    };
    for (id, target) in &group.targets {
        if let Some(by) = &target.deregistered_under {
            return Err(format!(
                "{service}: {id} was deregistered from {} while {by} forwarded to it",
                short_tg(target_group)
            ));
        }
        let Some(terminated) = aws.instances.get(id).and_then(|i| i.terminated_ms) else {
            continue;
        };
        let Some(stopped) = target.served_until else {
            continue;
        };
        if target.deregistered_ms.is_none_or(|d| d > terminated) {
            return Err(format!(
                "{service}: {id} was terminated at t={terminated}ms while still registered in {}, which served it",
                short_tg(target_group)
            ));
        }
        if terminated + 1000 < stopped + group.deregistration_delay_ms {
            return Err(format!(
                "{service}: {id} was terminated {}ms after its last new connection from {} (t={stopped}ms); the group drains for {}ms",
                terminated.saturating_sub(stopped),
                short_tg(target_group),
                group.deregistration_delay_ms
            ));
        }
    }
    Ok(())
}

impl Checker {
    /// What became of the strangers registered by hand into `service`'s groups, once
    /// settled: under `repair` deregistered (or the repair recorded as held, with why);
    /// under `report` still registered and recorded in the ledger's findings.
    fn strangers_settled(
        &self,
        aws: &Aws,
        service: &str,
        policy: &Remedy,
        groups: &[String],
        recorded: Option<(&[Finding], bool)>,
    ) -> Result<(), String> {
        let judged = recorded.is_some();
        let (findings, more) = recorded.unwrap_or((&[], true));
        for (id, tg) in aws.hand.strangers.iter().filter(|(_, tg)| groups.contains(tg)) {
            let group = aws.target_groups.get(tg).cloned().unwrap_or_default();
            let registered = group
                .targets
                .get(id)
                .is_some_and(|t| t.deregistered_ms.is_none() && aws.target_state(&group, id, t).is_some());
            let recorded = findings.iter().find_map(|f| match f {
                Finding::Stranger {
                    instance_id, action, ..
                } if instance_id == id => Some(action.clone()),
                _ => None,
            });
            match policy {
                Remedy::Repair if judged && registered && !matches!(recorded, Some(Action::Held { .. })) => {
                    return Err(format!(
                        "{service}: settled under strangers=repair with the stranger {id} still registered in {} (recorded: {recorded:?})",
                        short_tg(tg)
                    ))
                }
                Remedy::Report if !registered => {
                    return Err(format!(
                        "{service}: strangers=report, yet the stranger {id} was deregistered from {}",
                        short_tg(tg)
                    ))
                }
                Remedy::Report if recorded.is_none() && !more => {
                    return Err(format!(
                        "{service}: settled with the stranger {id} in {} and no finding of it in the ledger: {findings:?}",
                        short_tg(tg)
                    ))
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Every instance tagged; none orphaned: each is live, warm, terminated, or belongs to the
/// deployment in flight (its green fleet, or the blue fleet it is retiring), or to one whose
/// execution is still running (its next step cleans up what raced its abort).
fn instances<'a>(
    table: &Table,
    running: impl Iterator<Item = (&'a String, &'a SimInstance)>,
    cleaning: &BTreeSet<String>,
    hand: &Hand,
) -> Result<(), String> {
    for (id, instance) in running {
        // Launched by hand, not by greenlight: the audit's to judge.
        if hand.strangers.contains_key(id) || hand.orphans.contains_key(id) {
            continue;
        }
        let tag = |key: &str| instance.tags.get(key).cloned();
        let (Some(service), Some(_), Some(deploy_id), Some(managed)) = (
            tag(tags::SERVICE),
            tag(tags::VERSION),
            tag(tags::DEPLOY_ID),
            tag(tags::MANAGED_BY),
        ) else {
            return Err(format!("instance {id} is missing greenlight tags: {:?}", instance.tags));
        };
        if managed != tags::MANAGED_BY_VALUE {
            return Err(format!("instance {id} is tagged managed-by={managed}"));
        }
        let Some(ptr) = table.service_state(&service) else {
            return Err(format!("instance {id} belongs to unregistered service {service}"));
        };
        let in_release = [ptr.live.as_ref(), ptr.warm.as_ref()]
            .into_iter()
            .flatten()
            .any(|r| r.instance_ids.contains(id));
        let open = table
            .deployments_of(&service)
            .filter(|d| !d.phase.is_terminal())
            .any(|d| d.deploy_id == deploy_id || d.blue.as_ref().is_some_and(|b| b.instance_ids.contains(id)));
        if !in_release && !open && !cleaning.contains(&deploy_id) {
            let phase = table
                .deployments
                .get(&(service.clone(), deploy_id.clone()))
                .map(|d| d.phase.name())
                .unwrap_or("unknown");
            return Err(format!(
                "{service}: orphan instance {id} of deployment {deploy_id} ({phase}): neither live, warm nor in flight"
            ));
        }
    }
    Ok(())
}

/// The weight over time the dashboard draws from the timeline ends where the deployment is.
fn timeline_weight(service: &str, dep: &Deployment) -> Result<(), String> {
    let recorded = dep.timeline.iter().rev().find_map(|m| m.weight);
    let now = dep.phase.green_weight();
    if !dep.timeline.is_empty() && recorded != Some(now) {
        return Err(format!(
            "{service}: deployment {} is {} (green {now} %) but its timeline last recorded green at {recorded:?} %",
            dep.deploy_id,
            dep.phase.name()
        ));
    }
    Ok(())
}

/// The deployment events (I38): what the ledger's stream announced of `dep`, in order,
/// begins with its creation, each event leaving the phase the one before entered, never the
/// same status twice in a row, with growing generations, through phases its timeline went
/// through in that order; and the last one is where the deployment is now, so a reader of
/// the events bus is never left behind.
fn announced(service: &str, dep: &Deployment, table: &Table) -> Result<(), String> {
    use greenlight_core::announce::status;
    let id = &dep.deploy_id;
    let events = table
        .announced
        .get(&(service.to_string(), id.clone()))
        .filter(|e| !e.is_empty())
        .ok_or_else(|| format!("{service}: deployment {id} was never announced"))?;
    let chain: Vec<String> = events
        .iter()
        .map(|e| {
            format!(
                "{:?}→{}{}",
                e.previous_phase,
                e.phase,
                e.waiting.map(|w| format!(" ({w:?})")).unwrap_or_default()
            )
        })
        .collect();
    if let Err(why) = greenlight_core::announce::check_sequence(events) {
        return Err(format!(
            "{service}: {id}'s events are not one per change, in order ({why}): {chain:?}"
        ));
    }
    let mut timeline = dep.timeline.iter().map(|m| m.phase);
    if !events.iter().all(|e| timeline.any(|p| p == e.phase)) {
        let marks: Vec<_> = dep.timeline.iter().map(|m| m.phase).collect();
        return Err(format!(
            "{service}: {id}'s events {chain:?} are not the timeline's phases {marks:?}"
        ));
    }
    let last = events.last().expect("not empty");
    let now = status(dep);
    if (last.phase, last.waiting) != (now.phase, now.waiting) {
        return Err(format!(
            "{service}: {id} is {} ({:?}) but its last event announced {} ({:?})",
            now.phase, now.waiting, last.phase, last.waiting
        ));
    }
    Ok(())
}

fn short_tg(arn: &str) -> &str {
    arn.split('/').nth(1).unwrap_or(arn)
}

/// I35, approval pauses: each pause the ledger records ended after it began (an approval) or
/// at its deadline (a timeout); green never moved past one that still waits; and while one
/// waits at w %, no switch point of the service (but one edited by hand) gives green more
/// than w % of its traffic.
fn paused(aws: &Aws, config: &greenlight_core::ServiceConfig, service: &str, dep: &Deployment) -> Result<(), String> {
    use greenlight_core::model::PauseEnd;
    for pause in &dep.pauses {
        let w = pause.weight;
        match &pause.ended {
            Some(PauseEnd::Approved { at, .. }) if *at < pause.since => {
                return Err(format!(
                    "{service}: {}'s pause at {w}% approved before it began",
                    dep.deploy_id
                ));
            }
            Some(PauseEnd::TimedOut { at, .. }) if *at < pause.until => {
                return Err(format!(
                    "{service}: {}'s pause at {w}% timed out at {at}, before its deadline {}",
                    dep.deploy_id, pause.until
                ));
            }
            Some(_) => {}
            None => {
                let waiting_here = matches!(
                    dep.phase,
                    Phase::Verified { weight } | Phase::Verifying { weight, .. } if weight == w
                );
                let moved_on = matches!(
                    dep.phase,
                    Phase::Shifting { .. } | Phase::Baking { .. } | Phase::Retiring { .. } | Phase::Succeeded
                ) || matches!(dep.phase, Phase::Verified { weight } | Phase::Verifying { weight, .. } if weight > w);
                if moved_on {
                    return Err(format!(
                        "{service}: {} is {} past its pause at {w}%, which nobody approved and which did not time out",
                        dep.deploy_id,
                        dep.phase.name()
                    ));
                }
                if !waiting_here {
                    continue;
                }
                if let Some((switch, green, total)) = green_over(aws, config, &dep.green_tg, w) {
                    return Err(format!(
                        "{service}: {} waits in its pause at {w}% but {switch} gives green {green} of {total}",
                        dep.deploy_id
                    ));
                }
            }
        }
    }
    Ok(())
}

/// I36, holds: while a failure holds `dep` (`on_failure: hold`), no switch point of the service
/// (but one edited by hand) gives green more than the weight it froze at, and none of green's
/// or blue's instances is deregistered from its group or terminated.
fn frozen(aws: &Aws, config: &greenlight_core::ServiceConfig, service: &str, dep: &Deployment) -> Result<(), String> {
    let Some(hold) = dep.held() else {
        return Ok(());
    };
    let name = format!(
        "I36: {service}: {} held at {}% ({} failed)",
        dep.deploy_id,
        hold.weight,
        hold.cause.as_str()
    );
    if let Some((switch, green, total)) = green_over(aws, config, &dep.green_tg, hold.weight) {
        return Err(format!("{name}, yet {switch} gives green {green} of {total}"));
    }
    let fleets = [
        Some((&dep.green_tg, &dep.green_instances)),
        dep.blue.as_ref().map(|b| (&b.target_group, &b.instance_ids)),
    ];
    for (group, ids) in fleets.into_iter().flatten() {
        for id in ids {
            if aws.instances.get(id).is_some_and(|i| i.terminated_ms.is_some()) {
                return Err(format!("{name}, yet its instance {id} was terminated"));
            }
            let deregistered = aws
                .target_groups
                .get(group)
                .and_then(|g| g.targets.get(id))
                .is_some_and(|t| t.deregistered_ms.is_some());
            if deregistered {
                return Err(format!("{name}, yet {id} was deregistered from {}", short_tg(group)));
            }
        }
    }
    Ok(())
}

/// I39, lifecycle hooks: `dep` is never past a hook's point (its stage at green's weight there)
/// while that hook, still declared, has not decided, nor past one that failed or timed out
/// with `rollback` unless an engineer released the hold that failure caused; and a green
/// whose `after_revert` hook has not decided is not terminated.
fn hooked(aws: &Aws, config: &greenlight_core::ServiceConfig, service: &str, dep: &Deployment) -> Result<(), String> {
    use greenlight_core::hook::{HookEnd, OnTimeout, Stage};
    for record in &dep.hooks {
        let w = record.weight;
        let past = match record.stage {
            Stage::GreenVerified | Stage::TrafficShifted => {
                matches!(dep.phase, Phase::Shifting { from, .. } if from >= w)
                    || matches!(dep.phase, Phase::Verified { weight } | Phase::Verifying { weight, .. } if weight > w)
                    || matches!(
                        dep.phase,
                        Phase::Baking { .. } | Phase::Retiring { .. } | Phase::Succeeded
                    )
            }
            Stage::AllTraffic => matches!(
                dep.phase,
                Phase::Baking { .. } | Phase::Retiring { .. } | Phase::Succeeded
            ),
            Stage::BeforeRetire => matches!(dep.phase, Phase::Retiring { .. } | Phase::Succeeded),
            Stage::AfterRevert => dep
                .green_instances
                .iter()
                .any(|id| aws.instances.get(id).is_some_and(|i| i.terminated_ms.is_some())),
        };
        if !past {
            continue;
        }
        let declared = config
            .hooks
            .iter()
            .any(|h| h.name == record.hook && h.stage == record.stage);
        let released = dep
            .holds
            .iter()
            .any(|h| h.cause == greenlight_core::model::HoldCause::Hook && h.ended.is_some());
        let name = format!(
            "I39: {service}: {} is {} past hook {} ({} at {w}%)",
            dep.deploy_id,
            dep.phase.name(),
            record.hook,
            record.stage.as_str()
        );
        match &record.ended {
            None if declared => return Err(format!("{name}, which has not decided")),
            Some(
                HookEnd::Failed { .. }
                | HookEnd::TimedOut {
                    action: OnTimeout::Rollback,
                    ..
                },
            ) if record.stage != Stage::AfterRevert && !released => {
                return Err(format!("{name}, which failed ({:?})", record.ended));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The first switch point of the service (but one edited by hand) that gives `green_tg` more
/// than `weight` % of its traffic: the point, green's weight there and the total.
fn green_over(
    aws: &Aws,
    config: &greenlight_core::ServiceConfig,
    green_tg: &str,
    weight: u8,
) -> Option<(String, u64, u64)> {
    config.switch.points().iter().find_map(|point| {
        let switch = switch_key(point);
        if aws.hand.switches.contains_key(&switch) {
            return None;
        }
        let weights = aws.listeners.get(&switch).cloned().unwrap_or_default();
        let total: u64 = weights.iter().map(|(_, w)| u64::from(*w)).sum();
        let green: u64 = weights
            .iter()
            .filter(|(tg, _)| *tg == green_tg)
            .map(|(_, w)| u64::from(*w))
            .sum();
        (total > 0 && green * 100 > u64::from(weight) * total).then_some((switch, green, total))
    })
}
