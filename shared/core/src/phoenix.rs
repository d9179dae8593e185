//! Phoenix re-paves: servers are always built from scratch and easy to recreate, so a fleet
//! is not left running for ever. When the live fleet is older than the service's
//! `max_instance_age_s` and nothing is in flight, the scheduled reconcile deploys the live
//! release again (same image, same configuration) blue/green through every gate, recorded
//! as a `repave` ([`ImageSource::Repave`]) and revertible like any deployment. Outside the
//! service's `maintenance_hours` a due re-pave waits. Pure: the reconcile observes, this
//! decides.

use crate::config::ServiceConfig;
use crate::model::ServiceState;
use crate::request::{ImageRequest, ImageSource};
use crate::rfc3339::format as format_time;
use crate::Epoch;

/// What the reconcile should do about re-paving a service now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repave {
    /// The registration sets no `max_instance_age_s`.
    Off,
    /// Not now: a deployment is in flight or queued, nothing is live, the service needs
    /// attention, or the live fleet's age is unknown. Why.
    Blocked(String),
    /// The live fleet is younger than the limit: due at this time.
    NotYet { due_at: Epoch },
    /// Due, but outside the maintenance hours: waits until this time.
    Waiting { until: Epoch },
    /// Deploy this request now.
    Due(ImageRequest),
}

/// Whether `service`'s live fleet is due a re-pave at `now`.
pub fn repave(config: &ServiceConfig, service: &ServiceState, now: Epoch) -> Repave {
    let Some(max_age) = config.max_instance_age_s else {
        return Repave::Off;
    };
    if let Some(active) = &service.active {
        return Repave::Blocked(format!("deployment {active} is in flight"));
    }
    if let Some(queued) = &service.queued {
        return Repave::Blocked(format!("{} is queued", queued.version));
    }
    if service.attention.is_some() {
        return Repave::Blocked("the service needs attention".into());
    }
    let Some(live) = &service.live else {
        return Repave::Blocked("nothing is live".into());
    };
    let Some(launched_at) = live.launched_at else {
        return Repave::Blocked(format!(
            "the age of {}'s fleet is not in the ledger (recorded before greenlight kept it); the next deployment records it",
            live.version
        ));
    };
    let due_at = launched_at.saturating_add(max_age);
    if now < due_at {
        return Repave::NotYet { due_at };
    }
    if let Some(hours) = config.maintenance_hours.filter(|h| !h.contains(now)) {
        return Repave::Waiting {
            until: hours.next_start(now),
        };
    }
    let fleet = live
        .deploy_id
        .clone()
        .unwrap_or_else(|| format!("adopted@{launched_at}"));
    let age_days = (now - launched_at) as f64 / 86_400.0;
    Repave::Due(ImageRequest {
        service: config.service.clone(),
        version: live.version.clone(),
        ami: live.ami.clone(),
        source: ImageSource::Repave,
        requested_by: "greenlight:repave".into(),
        reason: Some(format!(
            "phoenix re-pave: the live fleet of {} was launched {} ({age_days:.1} days ago; max_instance_age_s {max_age})",
            live.version,
            format_time(launched_at)
        )),
        attempt: 1,
        rollback_of: None,
        repave_of: Some(fleet),
        on_failure: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::sample;
    use crate::config::MaintenanceHours;
    use crate::model::Release;

    const DAY: u64 = 86_400;
    /// 2026-12-06T00:00:00Z, a day boundary.
    const MIDNIGHT: Epoch = 1_796_515_200;

    fn live(launched_at: Option<Epoch>, deploy_id: Option<&str>) -> Release {
        Release {
            version: "v1".into(),
            ami: "ami-0000000000000000a".into(),
            target_group: "tg-a".into(),
            instance_ids: vec!["i-1".into()],
            deploy_id: deploy_id.map(str::to_string),
            launched_at,
        }
    }

    #[test]
    fn a_fleet_older_than_its_limit_is_repaved_only_when_idle_and_within_maintenance_hours() {
        let mut config = sample();
        config.max_instance_age_s = Some(14 * DAY);
        let idle = ServiceState::new("checkout", Some(live(Some(MIDNIGHT - 20 * DAY), Some("d-live"))));
        let busy = ServiceState {
            active: Some("d-other".into()),
            lease_until: Some(MIDNIGHT + 900),
            ..idle.clone()
        };
        let attention = ServiceState {
            attention: Some("a late step kept failing".into()),
            ..idle.clone()
        };
        let young = ServiceState::new("checkout", Some(live(Some(MIDNIGHT - DAY), Some("d-live"))));
        let unknown = ServiceState::new("checkout", Some(live(None, None)));
        let window = MaintenanceHours {
            start_hour: 22,
            end_hour: 4,
        };
        let noon = MIDNIGHT + 12 * 3600;
        let table: Vec<(&str, Option<MaintenanceHours>, &ServiceState, Epoch, &str)> = vec![
            ("due, any time", None, &idle, noon, "due"),
            (
                "in flight",
                None,
                &busy,
                noon,
                "blocked: deployment d-other is in flight",
            ),
            (
                "needs attention",
                None,
                &attention,
                noon,
                "blocked: the service needs attention",
            ),
            ("young", None, &young, noon, "not yet"),
            ("age unknown", None, &unknown, noon, "blocked: the age"),
            (
                "outside the hours (across midnight)",
                Some(window),
                &idle,
                noon,
                "waiting until 2026-12-06T22:00:00Z",
            ),
            (
                "within the hours, after midnight",
                Some(window),
                &idle,
                MIDNIGHT + 3600,
                "due",
            ),
            (
                "within the hours, before midnight",
                Some(window),
                &idle,
                MIDNIGHT + 23 * 3600,
                "due",
            ),
        ];
        for (name, hours, service, now, want) in table {
            config.maintenance_hours = hours;
            let got = match repave(&config, service, now) {
                Repave::Off => "off".to_string(),
                Repave::Blocked(why) => format!("blocked: {why}"),
                Repave::NotYet { due_at } => {
                    assert_eq!(due_at, MIDNIGHT - DAY + 14 * DAY, "{name}");
                    "not yet".into()
                }
                Repave::Waiting { until } => format!("waiting until {}", format_time(until)),
                Repave::Due(request) => {
                    assert_eq!((request.version.as_str(), request.source), ("v1", ImageSource::Repave));
                    assert!(request.is_repave() && !request.is_rollback());
                    "due".into()
                }
            };
            assert!(got.starts_with(want), "{name}: {got}");
        }
        config.max_instance_age_s = None;
        assert_eq!(repave(&config, &idle, noon), Repave::Off);
    }

    #[test]
    fn every_run_that_finds_one_fleet_too_old_maps_to_one_deployment_and_the_next_fleet_to_another() {
        let mut config = sample();
        config.max_instance_age_s = Some(DAY);
        let due =
            |release: Release, now: Epoch| match repave(&config, &ServiceState::new("checkout", Some(release)), now) {
                Repave::Due(request) => request.deploy_id().to_string(),
                other => panic!("{other:?}"),
            };
        let old = live(Some(MIDNIGHT - 2 * DAY), Some("d-live"));
        assert_eq!(due(old.clone(), MIDNIGHT), due(old.clone(), MIDNIGHT + 300));
        let repaved = live(Some(MIDNIGHT), Some("d-repave-1"));
        assert_ne!(due(old, MIDNIGHT), due(repaved, MIDNIGHT + 2 * DAY));
        let adopted = live(Some(MIDNIGHT - 2 * DAY), None);
        assert_ne!(
            due(adopted.clone(), MIDNIGHT),
            due(live(Some(MIDNIGHT - 3 * DAY), None), MIDNIGHT)
        );
        assert_eq!(due(adopted.clone(), MIDNIGHT), due(adopted, MIDNIGHT + 60));
    }

    #[test]
    fn maintenance_hours_wrap_around_midnight() {
        let night = MaintenanceHours {
            start_hour: 22,
            end_hour: 4,
        };
        let early = MaintenanceHours {
            start_hour: 2,
            end_hour: 5,
        };
        for (hours, hour, inside) in [
            (night, 21, false),
            (night, 22, true),
            (night, 0, true),
            (night, 3, true),
            (night, 4, false),
            (early, 1, false),
            (early, 2, true),
            (early, 4, true),
            (early, 5, false),
        ] {
            let at = MIDNIGHT + hour * 3600 + 59;
            assert_eq!(hours.contains(at), inside, "{hours:?} at {hour}h");
            let next = hours.next_start(at);
            assert!(
                hours.contains(next) && next >= at && next - at < DAY,
                "{hours:?} at {hour}h: {next}"
            );
        }
    }
}
