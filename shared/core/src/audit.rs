//! The fleet audit (issue 22): immutable infrastructure is a promise about the running fleet,
//! and between deployments nothing else looks at it. The scheduled reconcile observes, per
//! service, the switch point, the targets of both target groups and the instances tagged as
//! the service's, and [`audit`] judges them against the ledger, purely:
//!
//! - **drift**: the switch point forwards somewhere the ledger does not say. The ledger says
//!   it exactly while no deployment holds the service (`active` is None): 100 % to
//!   `live.target_group`, weight 0 to anything else. While a deployment is in flight its
//!   own steps own the switch point (canary weights, a revert's flip) and the audit does not
//!   look ([`switch_expected`]): deriving the weights from a phase would race those steps.
//! - **strangers**: a target registered in one of the service's groups that no release in
//!   the ledger launched (live, warm, the deployment in flight's green or blue), or that
//!   runs another image than its release's AMI. Repaired by deregistering, never by
//!   terminating (a tagged stranger may still be an orphan, below).
//! - **orphans**: an instance tagged `managed-by=greenlight` and this service that no
//!   deployment accounts for, launched longer than the registration's grace ago:
//!   terminated. A younger one is left alone (a launch may not be recorded yet).
//!   Auto Scaling groups, launch-template versions and test-route rules do not exist yet
//!   (issues 17, 18): the orphan sweep covers instances only.
//!
//! A repair never makes things worse than the finding: traffic is moved back to live only
//! if live's group has a healthy target, and strangers are deregistered from a group that
//! carries traffic only if a target the ledger accounts for stays in service there;
//! otherwise the finding is [`Action::Held`] with why.
//!
//! [`record`] then says what to write on the pointers: only when the findings change or a
//! repair is about to be made (ledger first: the write is conditional on the generation
//! read before observing, so a deployment that started meanwhile makes the run re-read and
//! judge again instead of repairing over it).

use crate::config::{Remedy, ServiceConfig};
use crate::finding::{Action, Finding, FindingKind, FleetAudit, StrangerWhy, MAX_RECORDED_FINDINGS};
use crate::model::{Deployment, ServiceState};
use crate::request::{TargetHealth, TargetState};
use crate::switch::{self, PointWrite, SeenAction};
use crate::Epoch;
use std::collections::{BTreeMap, BTreeSet};

/// At most this many instances are looked at per service and run (those registered in the
/// two groups and those tagged as the service's); the rest wait for the next run.
pub const MAX_INSTANCES_PER_SERVICE: usize = 500;

/// An instance as observed (EC2's DescribeInstances).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenInstance {
    pub instance_id: String,
    /// The AMI it was launched from.
    pub image_id: Option<String>,
    /// When it was launched (seconds since the epoch).
    pub launched_at: Option<Epoch>,
    /// Tagged `managed-by=greenlight`.
    pub managed: bool,
    /// Its `greenlight:service` tag.
    pub service: Option<String>,
    /// Its `greenlight:deploy-id` tag.
    pub deploy_id: Option<String>,
    /// Shutting down or terminated: nothing left to do about it.
    pub gone: bool,
}

/// What the reconcile observed of one service's fleet.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Observed {
    pub now: Epoch,
    /// Each switch point's actions (by its ARN); None when not looked at ([`switch_expected`]).
    pub switch: Option<Vec<(String, Vec<SeenAction>)>>,
    /// The targets of each of the service's target groups.
    pub targets: Vec<(String, Vec<TargetHealth>)>,
    /// The instances registered in those groups and those tagged as the service's.
    pub instances: Vec<SeenInstance>,
}

/// One change that makes the fleet what the ledger says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repair {
    /// Put these weights on one switch point, re-sending its frame (one ModifyListener or
    /// ModifyRule).
    SetTraffic {
        point: PointWrite,
        weights: Vec<(String, u8)>,
    },
    /// Deregister these instances from the group (DeregisterTargets; never a termination).
    Deregister {
        target_group: String,
        instance_ids: Vec<String>,
    },
    /// Terminate these instances, all tagged as greenlight's for the service.
    Terminate { instance_ids: Vec<String> },
}

/// The audit of one service: what was found (drift first, then strangers by group and id,
/// then orphans by id) and the repairs the policy allows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Audit {
    pub findings: Vec<Finding>,
    pub repairs: Vec<Repair>,
}

impl Audit {
    /// How many findings of `kind`.
    pub fn count(&self, kind: FindingKind) -> usize {
        self.findings.iter().filter(|f| f.kind() == kind).count()
    }
}

/// The target group the switch point must forward all traffic to, when the ledger says what
/// it must be: no deployment holds the service and something is live. None: do not look.
pub fn switch_expected(service: &ServiceState) -> Option<&str> {
    match service.active {
        Some(_) => None,
        None => service.live.as_ref().map(|r| r.target_group.as_str()),
    }
}

/// The instances the ledger accounts for, with the AMI their release says they run: live,
/// warm, and the deployment in flight's green (recorded, or tagged with its deploy id: a
/// launch is tagged before it is recorded) and blue.
fn accounted(service: &ServiceState, active: Option<&Deployment>, seen: &[SeenInstance]) -> BTreeMap<String, String> {
    let mut known = BTreeMap::new();
    let releases = [service.live.as_ref(), service.warm.as_ref()]
        .into_iter()
        .chain([active.and_then(|d| d.blue.as_ref())])
        .flatten();
    for release in releases {
        for id in &release.instance_ids {
            known.entry(id.clone()).or_insert_with(|| release.ami.clone());
        }
    }
    if let Some(dep) = active {
        for id in &dep.green_instances {
            known.entry(id.clone()).or_insert_with(|| dep.ami.clone());
        }
    }
    if let Some(active_id) = service.active.as_deref() {
        let ami = active.map(|d| d.ami.clone()).unwrap_or_default();
        for instance in seen.iter().filter(|i| i.deploy_id.as_deref() == Some(active_id)) {
            known.entry(instance.instance_id.clone()).or_insert_with(|| ami.clone());
        }
    }
    known
}

/// The actions with every target group outside `pair` left out of the forward: the drift
/// repair drops them (they are the drift), the rest of the frame is kept.
fn without_foreign(actions: &[SeenAction], pair: &[String; 2]) -> Vec<SeenAction> {
    actions
        .iter()
        .map(|a| match a {
            SeenAction::Forward {
                order,
                weights,
                stickiness,
            } => SeenAction::Forward {
                order: *order,
                weights: weights.iter().filter(|(tg, _)| pair.contains(tg)).cloned().collect(),
                stickiness: stickiness.clone(),
            },
            other => other.clone(),
        })
        .collect()
}

/// Judges what was `seen` of a service's fleet against the ledger (`config`, the pointers
/// `service`, the deployment in flight `active`).
pub fn audit(config: &ServiceConfig, service: &ServiceState, active: Option<&Deployment>, seen: &Observed) -> Audit {
    let policy = &config.reconcile;
    let mut out = Audit::default();
    let by_id: BTreeMap<&str, &SeenInstance> = seen.instances.iter().map(|i| (i.instance_id.as_str(), i)).collect();
    let known = accounted(service, active, &seen.instances);
    let in_service = |state: TargetState| !matches!(state, TargetState::Draining | TargetState::Missing);

    // Drift, switch point by switch point.
    let points = seen.switch.as_deref().unwrap_or_default();
    if let Some(live_tg) = switch_expected(service).filter(|_| seen.switch.is_some()) {
        for point in config.switch.points() {
            let Some((_, actions)) = points.iter().find(|(arn, _)| arn == point.arn()) else {
                continue;
            };
            let weights = switch::weights(actions);
            let to_live = weights.iter().any(|(tg, w)| tg == live_tg && *w > 0);
            let elsewhere = weights.iter().any(|(tg, w)| tg != live_tg && *w > 0);
            if to_live && !elsewhere {
                continue;
            }
            let mut expected = vec![(live_tg.to_string(), 100)];
            // The pair's other group stays attached at 0 if it was (a next deployment's
            // green is health-checked only while referenced).
            expected.extend(
                weights
                    .iter()
                    .filter(|(tg, _)| tg != live_tg && config.target_groups.contains(tg))
                    .map(|(tg, _)| (tg.clone(), 0)),
            );
            expected.dedup();
            let live_healthy = seen
                .targets
                .iter()
                .filter(|(tg, _)| tg == live_tg)
                .flat_map(|(_, targets)| targets)
                .any(|t| t.state == TargetState::Healthy && known.contains_key(&t.instance_id));
            // What greenlight keeps of the point (authentication, stickiness); a point it
            // cannot own is reported, never rewritten. A foreign group in the forward is
            // drift itself, so it is judged over the pair plus that group.
            let frame = switch::own(
                point,
                &without_foreign(actions, &config.target_groups),
                &config.target_groups,
            );
            let action = match (policy.drift, frame) {
                (Remedy::Report, _) => Action::Reported,
                (Remedy::Repair, _) if !live_healthy => Action::Held {
                    why: "live's target group has no healthy target the ledger accounts for: moving traffic there would drop it".into(),
                },
                (Remedy::Repair, Err(why)) => Action::Held { why },
                (Remedy::Repair, Ok(frame)) => {
                    out.repairs.push(Repair::SetTraffic {
                        point: PointWrite {
                            switch: point.clone(),
                            frame: Some(frame),
                        },
                        weights: expected.clone(),
                    });
                    Action::Repaired
                }
            };
            out.findings.push(Finding::Drift {
                switch: point.arn().to_string(),
                weights,
                expected,
                action,
            });
        }
    }

    // Strangers, group by group.
    let carries_traffic = |tg: &str| match &seen.switch {
        Some(points) => points
            .iter()
            .any(|(_, actions)| switch::weights(actions).iter().any(|(t, w)| t == tg && *w > 0)),
        // Not looked at (a deployment holds the switch): what the ledger may have weighted.
        None => {
            [service.live.as_ref(), service.warm.as_ref()]
                .into_iter()
                .flatten()
                .any(|r| r.target_group == tg)
                || active.is_some_and(|d| d.green_tg == tg && d.max_weight > 0)
        }
    };
    let mut groups: Vec<&(String, Vec<TargetHealth>)> = seen
        .targets
        .iter()
        .filter(|(tg, _)| config.target_groups.contains(tg))
        .collect();
    groups.sort_by(|a, b| a.0.cmp(&b.0));
    groups.dedup_by(|a, b| a.0 == b.0);
    for (tg, targets) in groups {
        let mut strangers: Vec<(String, bool, StrangerWhy)> = Vec::new();
        let mut keeps_serving = false;
        let mut ids = BTreeSet::new();
        for target in targets.iter().filter(|t| in_service(t.state)) {
            if !ids.insert(target.instance_id.as_str()) {
                continue;
            }
            let instance = by_id.get(target.instance_id.as_str());
            if instance.is_some_and(|i| i.gone) {
                continue;
            }
            let why = match known.get(&target.instance_id) {
                None => Some(StrangerWhy::NotInAnyRelease),
                Some(ami) => match instance.and_then(|i| i.image_id.as_ref()) {
                    Some(image) if !ami.is_empty() && image != ami => Some(StrangerWhy::OtherImage {
                        image_id: image.clone(),
                        release_ami: ami.clone(),
                    }),
                    _ => None,
                },
            };
            match why {
                Some(why) => strangers.push((target.instance_id.clone(), instance.is_some_and(|i| i.managed), why)),
                None => keeps_serving |= target.state == TargetState::Healthy,
            }
        }
        if strangers.is_empty() {
            continue;
        }
        let action = match policy.strangers {
            Remedy::Report => Action::Reported,
            Remedy::Repair if carries_traffic(tg) && !keeps_serving => Action::Held {
                why: "the group carries traffic and no healthy target the ledger accounts for would be left in it"
                    .into(),
            },
            Remedy::Repair => {
                out.repairs.push(Repair::Deregister {
                    target_group: tg.clone(),
                    instance_ids: strangers.iter().map(|(id, _, _)| id.clone()).collect(),
                });
                Action::Repaired
            }
        };
        for (instance_id, managed, reason) in strangers {
            out.findings.push(Finding::Stranger {
                instance_id,
                target_group: tg.clone(),
                managed,
                reason,
                action: action.clone(),
            });
        }
    }

    // Orphans.
    let grace = policy.orphan_grace_s;
    let mut orphans: Vec<&SeenInstance> = seen
        .instances
        .iter()
        .filter(|i| i.managed && !i.gone && i.service.as_deref() == Some(config.service.as_str()))
        .filter(|i| !known.contains_key(&i.instance_id))
        .filter(|i| i.deploy_id.is_none() || i.deploy_id != service.active)
        .filter(|i| i.launched_at.is_some_and(|at| at.saturating_add(grace) <= seen.now))
        .collect();
    orphans.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
    orphans.dedup_by(|a, b| a.instance_id == b.instance_id);
    if !orphans.is_empty() {
        out.repairs.push(Repair::Terminate {
            instance_ids: orphans.iter().map(|i| i.instance_id.clone()).collect(),
        });
    }
    for orphan in orphans {
        out.findings.push(Finding::Orphan {
            instance_id: orphan.instance_id.clone(),
            deploy_id: orphan.deploy_id.clone(),
            launched_at: orphan.launched_at.unwrap_or_default(),
            action: Action::Repaired,
        });
    }
    out
}

/// The pointers to write after `audit` at `now`, or None when nothing needs writing: the
/// open findings are what the ledger already records and no repair is due. A repair always
/// writes (its `repaired_at`), so that it is made only after a conditional write on what was
/// read (ledger first).
pub fn record(service: &ServiceState, audit: &Audit, now: Epoch) -> Option<ServiceState> {
    let previous = service.findings.as_ref();
    let open: Vec<Finding> = audit.findings.iter().take(MAX_RECORDED_FINDINGS).cloned().collect();
    let more = audit.findings.len().saturating_sub(MAX_RECORDED_FINDINGS) as u32;
    let same = previous.is_some_and(|p| p.open == open && p.more == more);
    let repairing = !audit.repairs.is_empty();
    let mark = if open.is_empty() && !repairing {
        None
    } else {
        Some(FleetAudit {
            since: previous.filter(|_| same).map_or(now, |p| p.since),
            repaired_at: if repairing {
                Some(now)
            } else {
                previous.filter(|_| same).and_then(|p| p.repaired_at)
            },
            open,
            more,
        })
    };
    if mark.as_ref() == previous {
        return None;
    }
    Some(ServiceState {
        findings: mark,
        ..service.clone()
    })
}

/// The audit as log lines, for an alarm and for whoever reads the logs (the event of each
/// finding; no EventBridge PutEvents, see ARCHITECTURE.md): one JSON line per finding
/// (`"greenlight": "finding"`, the service, its kind, the finding itself and a sentence),
/// then one Embedded Metric Format line counting each kind ([`FindingKind::metric`]:
/// `Drift`, `Strangers`, `Orphans`, dimension `service`, namespace
/// [`crate::metrics::NAMESPACE`]), zeros included, so an alarm on them sees every run.
pub fn event_lines(service: &str, audit: &Audit, timestamp_ms: u64) -> Vec<String> {
    use serde_json::json;
    let mut lines: Vec<String> = audit
        .findings
        .iter()
        .map(|f| {
            json!({
                "greenlight": "finding",
                "service": service,
                "kind": f.kind(),
                "finding": f,
                "message": f.to_string(),
            })
            .to_string()
        })
        .collect();
    let counts: Vec<crate::metrics::Metric> = FindingKind::ALL
        .iter()
        .map(|k| crate::metrics::Metric {
            name: k.metric(),
            unit: "Count",
            value: audit.count(*k) as u64,
        })
        .collect();
    lines.push(crate::metrics::emf_document(
        service,
        &["service"],
        &counts,
        vec![],
        timestamp_ms,
    ));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::sample;
    use crate::model::{Phase, Release};

    const A: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/checkout-a/1";
    const B: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/checkout-b/2";
    const NOW: Epoch = 1_000_000;

    fn live() -> Release {
        Release {
            version: "v1".into(),
            ami: "ami-1".into(),
            target_group: A.into(),
            instance_ids: vec!["i-1".into(), "i-2".into()],
            deploy_id: None,
            launched_at: None,
        }
    }

    fn pointers() -> ServiceState {
        ServiceState::new("checkout", Some(live()))
    }

    fn config(drift: Remedy, strangers: Remedy) -> ServiceConfig {
        let mut config = sample();
        config.reconcile.drift = drift;
        config.reconcile.strangers = strangers;
        config.reconcile.orphan_grace_s = 3600;
        config
    }

    fn target(id: &str, state: TargetState) -> TargetHealth {
        TargetHealth {
            instance_id: id.into(),
            state,
            reason: None,
        }
    }

    fn instance(id: &str, ami: &str, managed: bool, deploy_id: Option<&str>, age_s: u64) -> SeenInstance {
        SeenInstance {
            instance_id: id.into(),
            image_id: Some(ami.into()),
            launched_at: Some(NOW - age_s),
            managed,
            service: managed.then(|| "checkout".to_string()),
            deploy_id: deploy_id.map(str::to_string),
            gone: false,
        }
    }

    /// The sample's one switch point seen with a plain forward of `weights`.
    fn fwd(weights: Vec<(String, u8)>) -> Option<Vec<(String, Vec<SeenAction>)>> {
        let forward = SeenAction::Forward {
            order: None,
            weights,
            stickiness: None,
        };
        Some(vec![(sample().switch.points()[0].arn().to_string(), vec![forward])])
    }

    #[test]
    fn drift_is_judged_and_repaired_per_switch_point_keeping_each_frame() {
        use crate::switch::{Cognito, Guard, Stickiness, Switch, Switches};
        let mut config = config(Remedy::Repair, Remedy::Report);
        let second = Switch {
            listener_arn: "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/web/1/9".into(),
            rule_arn: None,
        };
        config.switch = Switches::new(vec![config.switch.points()[0].clone(), second.clone()]);
        let guard = Guard::AuthenticateCognito {
            order: Some(1),
            config: Cognito {
                user_pool_arn: "arn:aws:cognito-idp:us-east-1:1:userpool/p".into(),
                user_pool_client_id: "c".into(),
                user_pool_domain: "d".into(),
                session_cookie_name: None,
                scope: None,
                session_timeout: None,
                extra_params: Default::default(),
                on_unauthenticated_request: None,
            },
        };
        let sticky = Some(Stickiness {
            enabled: true,
            duration_s: Some(60),
        });
        let observed = seen(|s| {
            let mut points = s.switch.take().unwrap();
            points.push((
                second.arn().to_string(),
                vec![
                    SeenAction::Guard(guard.clone()),
                    SeenAction::Forward {
                        order: Some(2),
                        weights: vec![(A.into(), 50), (B.into(), 50)],
                        stickiness: sticky.clone(),
                    },
                ],
            ));
            s.switch = Some(points);
        });
        let found = audit(&config, &pointers(), None, &observed);
        assert_eq!(
            kinds(&found),
            vec![(FindingKind::Drift, &Action::Repaired)],
            "only the edited point"
        );
        assert_eq!(
            found.repairs,
            vec![Repair::SetTraffic {
                point: PointWrite {
                    switch: second,
                    frame: Some(crate::switch::Frame {
                        guards: vec![guard],
                        forward_order: Some(2),
                        stickiness: sticky,
                    }),
                },
                weights: vec![(A.into(), 100), (B.into(), 0)],
            }]
        );
    }

    /// Live v1 on i-1, i-2 in A, healthy, all traffic on A; `edit` changes what is seen.
    fn seen(edit: impl FnOnce(&mut Observed)) -> Observed {
        let mut seen = Observed {
            now: NOW,
            switch: fwd(vec![(A.into(), 100), (B.into(), 0)]),
            targets: vec![
                (
                    A.into(),
                    vec![target("i-1", TargetState::Healthy), target("i-2", TargetState::Healthy)],
                ),
                (B.into(), vec![]),
            ],
            instances: vec![
                instance("i-1", "ami-1", true, Some("adopted"), 99_999),
                instance("i-2", "ami-1", true, Some("adopted"), 99_999),
            ],
        };
        edit(&mut seen);
        seen
    }

    fn kinds(audit: &Audit) -> Vec<(FindingKind, &Action)> {
        audit.findings.iter().map(|f| (f.kind(), f.action())).collect()
    }

    #[test]
    fn a_fleet_that_is_what_the_ledger_says_has_no_finding() {
        for (drift, strangers) in [(Remedy::Report, Remedy::Report), (Remedy::Repair, Remedy::Repair)] {
            let audit = audit(&config(drift, strangers), &pointers(), None, &seen(|_| {}));
            assert_eq!(audit, Audit::default());
        }
        // A young instance of nobody's is left (its launch may not be recorded yet).
        let young = seen(|s| s.instances.push(instance("i-9", "ami-1", true, Some("d-x"), 3599)));
        assert_eq!(
            audit(&config(Remedy::Repair, Remedy::Repair), &pointers(), None, &young),
            Audit::default()
        );
    }

    #[test]
    fn drift_is_reported_or_repaired_to_all_traffic_on_live() {
        let to_b = |s: &mut Observed| s.switch = fwd(vec![(A.into(), 50), (B.into(), 50)]);
        let only_b = |s: &mut Observed| s.switch = fwd(vec![(B.into(), 100)]);
        let foreign = |s: &mut Observed| s.switch = fwd(vec![(A.into(), 90), ("arn:tg/other".into(), 10)]);
        let nothing = |s: &mut Observed| s.switch = fwd(vec![(A.into(), 0), (B.into(), 0)]);
        type Edit<'a> = &'a dyn Fn(&mut Observed);
        type Weights = Vec<(String, u8)>;
        let table: [(&str, Edit, Weights); 4] = [
            ("half on B", &to_b, vec![(A.into(), 100), (B.into(), 0)]),
            ("all on B", &only_b, vec![(A.into(), 100), (B.into(), 0)]),
            ("some on a foreign group", &foreign, vec![(A.into(), 100)]),
            ("weights all zero", &nothing, vec![(A.into(), 100), (B.into(), 0)]),
        ];
        for (what, edit, expected) in table {
            let observed = seen(edit);
            let reported = audit(&config(Remedy::Report, Remedy::Report), &pointers(), None, &observed);
            assert_eq!(
                kinds(&reported),
                vec![(FindingKind::Drift, &Action::Reported)],
                "{what}"
            );
            assert!(reported.repairs.is_empty(), "{what}");
            let repaired = audit(&config(Remedy::Repair, Remedy::Report), &pointers(), None, &observed);
            assert_eq!(
                kinds(&repaired),
                vec![(FindingKind::Drift, &Action::Repaired)],
                "{what}"
            );
            assert_eq!(
                repaired.repairs,
                vec![Repair::SetTraffic {
                    point: PointWrite {
                        switch: sample().switch.points()[0].clone(),
                        frame: Some(Default::default()),
                    },
                    weights: expected.clone()
                }],
                "{what}"
            );
            match &repaired.findings[0] {
                Finding::Drift {
                    expected: e, weights, ..
                } => {
                    assert_eq!(
                        (e, weights),
                        (&expected, &switch::weights(&observed.switch.as_ref().unwrap()[0].1)),
                        "{what}"
                    )
                }
                other => panic!("{other:?}"),
            }
        }
        // Weight 0 on anything else is no drift.
        let zero = seen(|s| s.switch = fwd(vec![(A.into(), 100), ("arn:tg/other".into(), 0)]));
        assert!(audit(&config(Remedy::Repair, Remedy::Repair), &pointers(), None, &zero)
            .findings
            .is_empty());
    }

    #[test]
    fn drift_is_not_judged_while_a_deployment_holds_the_switch_point_or_nothing_is_live() {
        let mut busy = pointers();
        busy.active = Some("d-1".into());
        assert_eq!(switch_expected(&busy), None);
        assert_eq!(switch_expected(&ServiceState::new("checkout", None)), None);
        assert_eq!(switch_expected(&pointers()), Some(A));
        let observed = seen(|s| s.switch = fwd(vec![(A.into(), 50), (B.into(), 50)]));
        let audit = audit(&config(Remedy::Repair, Remedy::Repair), &busy, None, &observed);
        assert!(audit.findings.is_empty(), "{audit:?}");
    }

    #[test]
    fn drift_is_held_when_live_has_no_healthy_target() {
        let observed = seen(|s| {
            s.switch = fwd(vec![(B.into(), 100)]);
            s.targets[0].1 = vec![target("i-1", TargetState::Unhealthy)];
        });
        let audit = audit(&config(Remedy::Repair, Remedy::Repair), &pointers(), None, &observed);
        assert!(matches!(audit.findings[0].action(), Action::Held { .. }), "{audit:?}");
        assert!(audit.repairs.is_empty());
    }

    #[test]
    fn strangers_are_deregistered_never_terminated_and_only_when_safe() {
        let stranger = |s: &mut Observed| {
            s.targets[1].1.push(target("i-x", TargetState::Healthy));
            s.targets[0].1.push(target("i-y", TargetState::Healthy));
            s.targets[0].1.push(target("i-gone", TargetState::Draining));
            s.instances.push(instance("i-x", "ami-9", false, None, 10));
            s.instances.push(instance("i-y", "ami-9", false, None, 99_999));
        };
        let reported = audit(
            &config(Remedy::Report, Remedy::Report),
            &pointers(),
            None,
            &seen(stranger),
        );
        assert_eq!(
            kinds(&reported),
            vec![
                (FindingKind::Stranger, &Action::Reported),
                (FindingKind::Stranger, &Action::Reported)
            ]
        );
        assert!(reported.repairs.is_empty());
        let repaired = audit(
            &config(Remedy::Report, Remedy::Repair),
            &pointers(),
            None,
            &seen(stranger),
        );
        assert_eq!(
            repaired.repairs,
            vec![
                Repair::Deregister {
                    target_group: A.into(),
                    instance_ids: vec!["i-y".into()]
                },
                Repair::Deregister {
                    target_group: B.into(),
                    instance_ids: vec!["i-x".into()]
                },
            ],
            "draining targets are leaving already; nothing is terminated"
        );
        // Another image than the release's: a stranger too.
        let other_image = seen(|s| s.instances[1].image_id = Some("ami-2".into()));
        let audit_other = audit(&config(Remedy::Report, Remedy::Repair), &pointers(), None, &other_image);
        assert_eq!(
            audit_other.findings,
            vec![Finding::Stranger {
                instance_id: "i-2".into(),
                target_group: A.into(),
                managed: true,
                reason: StrangerWhy::OtherImage {
                    image_id: "ami-2".into(),
                    release_ami: "ami-1".into()
                },
                action: Action::Repaired,
            }]
        );
        // Never empty a group carrying traffic of the targets still serving it.
        let all_wrong = seen(|s| {
            for i in &mut s.instances {
                i.image_id = Some("ami-2".into());
            }
        });
        let held = audit(&config(Remedy::Report, Remedy::Repair), &pointers(), None, &all_wrong);
        assert_eq!(held.findings.len(), 2);
        assert!(
            held.findings.iter().all(|f| matches!(f.action(), Action::Held { .. })),
            "{held:?}"
        );
        assert!(held.repairs.is_empty());
    }

    #[test]
    fn the_deployment_in_flight_accounts_for_its_green_recorded_or_only_tagged_and_its_blue() {
        let mut busy = pointers();
        busy.active = Some("d-2".into());
        let dep = Deployment {
            deploy_id: "d-2".into(),
            service: "checkout".into(),
            version: "v2".into(),
            ami: "ami-2".into(),
            gen: 3,
            source: crate::model::ImageSource::Greenlight,
            requested_by: "ci".into(),
            reason: None,
            blue: Some(live()),
            green_tg: B.into(),
            green_instances: vec!["i-3".into()],
            phase: Phase::Verifying { weight: 0, polls: 1 },
            max_weight: 0,
            created_at: NOW - 60,
            updated_at: NOW - 30,
            healthy_at: None,
            revert: None,
            rollback: false,
            promoted_by: None,
            pauses: vec![],
            on_failure: Default::default(),
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
        let observed = seen(|s| {
            s.targets[1].1 = vec![target("i-3", TargetState::Initial), target("i-4", TargetState::Initial)];
            s.instances.push(instance("i-3", "ami-2", true, Some("d-2"), 99_999));
            // Launched and registered, not recorded yet: tagged with the deploy id.
            s.instances.push(instance("i-4", "ami-2", true, Some("d-2"), 99_999));
        });
        let audit = audit(&config(Remedy::Repair, Remedy::Repair), &busy, Some(&dep), &observed);
        assert_eq!(audit, Audit::default());
    }

    #[test]
    fn orphans_older_than_the_grace_are_terminated_younger_ones_and_foreign_ones_left() {
        let observed = seen(|s| {
            s.instances.push(instance("i-old", "ami-1", true, Some("d-gone"), 3600));
            s.instances
                .push(instance("i-young", "ami-1", true, Some("d-gone"), 3599));
            s.instances.push(instance("i-foreign", "ami-1", false, None, 99_999));
            let mut other_service = instance("i-other", "ami-1", true, Some("d-o"), 99_999);
            other_service.service = Some("payments".into());
            s.instances.push(other_service);
            let mut gone = instance("i-gone", "ami-1", true, Some("d-gone"), 99_999);
            gone.gone = true;
            s.instances.push(gone);
        });
        for policy in [Remedy::Report, Remedy::Repair] {
            let audit = audit(&config(policy, policy), &pointers(), None, &observed);
            assert_eq!(
                audit.findings,
                vec![Finding::Orphan {
                    instance_id: "i-old".into(),
                    deploy_id: Some("d-gone".into()),
                    launched_at: NOW - 3600,
                    action: Action::Repaired,
                }]
            );
            assert_eq!(
                audit.repairs,
                vec![Repair::Terminate {
                    instance_ids: vec!["i-old".into()]
                }]
            );
        }
    }

    #[test]
    fn the_ledger_is_written_only_when_the_findings_change_or_a_repair_is_due() {
        let config = config(Remedy::Report, Remedy::Report);
        let drift = seen(|s| s.switch = fwd(vec![(B.into(), 100)]));
        let found = audit(&config, &pointers(), None, &drift);
        let first = record(&pointers(), &found, NOW).expect("new findings are written");
        let mark = first.findings.clone().unwrap();
        assert_eq!((mark.since, mark.repaired_at, mark.open.len()), (NOW, None, 1));
        assert_eq!(record(&first, &found, NOW + 300), None, "the same findings: no write");
        let cleared = record(&first, &Audit::default(), NOW + 600).expect("cleared findings are written");
        assert_eq!(cleared.findings, None);
        assert_eq!(
            record(&pointers(), &Audit::default(), NOW),
            None,
            "nothing found, nothing recorded"
        );
        // A repair always writes first, even of findings already recorded.
        let repair = audit(&self::config(Remedy::Repair, Remedy::Report), &pointers(), None, &drift);
        let repaired = record(&pointers(), &repair, NOW).unwrap();
        let again = record(&repaired, &repair, NOW + 300).expect("a repair due writes again");
        assert_eq!(again.findings.as_ref().unwrap().since, NOW, "the same findings since");
        assert_eq!(again.findings.as_ref().unwrap().repaired_at, Some(NOW + 300));
        // Bounded.
        let many = Audit {
            findings: (0..MAX_RECORDED_FINDINGS + 5)
                .map(|n| Finding::Orphan {
                    instance_id: format!("i-{n}"),
                    deploy_id: None,
                    launched_at: 0,
                    action: Action::Repaired,
                })
                .collect(),
            repairs: vec![],
        };
        let bounded = record(&pointers(), &many, NOW).unwrap().findings.unwrap();
        assert_eq!((bounded.open.len(), bounded.more), (MAX_RECORDED_FINDINGS, 5));
    }

    #[test]
    fn findings_read_back_as_written_and_say_what_where_and_why() {
        let findings = vec![
            Finding::Drift {
                switch: "arn:aws:elasticloadbalancing:us-east-1:1:listener/app/web/1/2".into(),
                weights: vec![(B.into(), 100)],
                expected: vec![(A.into(), 100), (B.into(), 0)],
                action: Action::Repaired,
            },
            Finding::Stranger {
                instance_id: "i-x".into(),
                target_group: B.into(),
                managed: false,
                reason: StrangerWhy::OtherImage {
                    image_id: "ami-9".into(),
                    release_ami: "ami-1".into(),
                },
                action: Action::Held { why: "unsafe".into() },
            },
            Finding::Orphan {
                instance_id: "i-o".into(),
                deploy_id: None,
                launched_at: 0,
                action: Action::Reported,
            },
        ];
        for finding in findings {
            let text = serde_json::to_string(&finding).unwrap();
            assert_eq!(serde_json::from_str::<Finding>(&text).unwrap(), finding, "{text}");
        }
        let drift = Finding::Drift {
            switch: "arn:aws:elasticloadbalancing:us-east-1:1:listener/app/web/1/2".into(),
            weights: vec![(B.into(), 100)],
            expected: vec![(A.into(), 100)],
            action: Action::Reported,
        };
        assert_eq!(
            drift.to_string(),
            "drift: listener/app/web/1/2 forwards checkout-b 100% (the ledger says checkout-a 100%); reported"
        );
        assert_eq!(
            serde_json::to_value(&drift).unwrap()["kind"],
            serde_json::json!("drift")
        );
        let lines = event_lines(
            "checkout",
            &Audit {
                findings: vec![drift],
                repairs: vec![],
            },
            5,
        );
        let event: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(
            (event["greenlight"].as_str(), event["kind"].as_str()),
            (Some("finding"), Some("drift"))
        );
        let emf: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
        assert_eq!(
            (&emf["Drift"], &emf["Strangers"], &emf["Orphans"], &emf["service"]),
            (
                &serde_json::json!(1),
                &serde_json::json!(0),
                &serde_json::json!(0),
                &serde_json::json!("checkout")
            )
        );
        assert_eq!(emf["_aws"]["CloudWatchMetrics"][0]["Namespace"], "greenlight");
    }
}
