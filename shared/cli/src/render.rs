//! Output: aligned tables and status blocks for people, one JSON document for scripts.
//!
//! In JSON mode stdout carries exactly one document (the records of `view`); anything
//! else (progress while watching or waiting) goes to stderr.

use crate::view::{HistoryRow, ServiceRow, Status, TargetGroupView};
use greenlight_core::decide::TargetState;
use greenlight_core::ServiceConfig;
use serde::Serialize;
use std::fmt::Write as _;

/// Prints one JSON document on stdout.
pub fn json<T: Serialize>(value: &T) {
    let text = serde_json::to_string_pretty(value).expect("CLI records serialize");
    println!("{text}");
}

/// A cell longer than this is cut with an ellipsis (tables stay readable; JSON has it all).
const MAX_CELL: usize = 48;

fn cut(text: &str) -> String {
    if text.chars().count() <= MAX_CELL {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(MAX_CELL - 1).collect();
        s.push('…');
        s
    }
}

/// Columns aligned on their widest cell, two spaces apart.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows.iter().map(|r| r.iter().map(|c| cut(c)).collect()).collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                let pad = widths[i] - cell.chars().count();
                let _ = write!(text, "{cell}{}  ", " ".repeat(pad));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(headers.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// `45s`, `3m05s`, `2h03m`.
pub fn duration(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{}h{:02}m", s / 3600, s / 60 % 60),
    }
}

/// `850 ms`, `2.4 s`.
pub fn duration_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

/// `[#####.....] 50%`
pub fn bar(weight: u8) -> String {
    let filled = usize::from(weight.min(100)) / 10;
    format!("[{}{}] {weight}%", "#".repeat(filled), ".".repeat(10 - filled))
}

fn or_dash(value: Option<&str>) -> String {
    value.unwrap_or("-").to_string()
}

/// `services` as a table.
pub fn services(rows: &[ServiceRow]) -> String {
    if rows.is_empty() {
        return "no services registered: register one with `greenlight service register <file>`\n".into();
    }
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let (deploy, phase) = match &r.deployment {
                Some(d) => (
                    format!("{} {}", d.deploy_id, d.version),
                    format!("{} {}%", crate::view::phase_name(d.phase), d.weight),
                ),
                None => ("-".into(), "-".into()),
            };
            let attention = match (&r.error, &r.attention) {
                (Some(e), _) => format!("unreadable: {e}"),
                (None, Some(a)) => a.clone(),
                (None, None) => "-".into(),
            };
            vec![
                r.service.clone(),
                or_dash(r.live.as_deref()),
                or_dash(r.warm.as_deref()),
                deploy,
                phase,
                attention,
            ]
        })
        .collect();
    table(&["SERVICE", "LIVE", "WARM", "IN FLIGHT", "PHASE", "ATTENTION"], &body)
}

/// `history` as a table.
pub fn history(rows: &[HistoryRow]) -> String {
    if rows.is_empty() {
        return "no deployments yet\n".into();
    }
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let who = match &r.reason {
                Some(reason) => format!("{}: {reason}", r.requested_by),
                None => r.requested_by.clone(),
            };
            let mut outcome = r.outcome.to_string();
            if r.rollback {
                outcome.push_str(" (rollback)");
            }
            if let Some(by) = &r.promoted_by {
                let _ = write!(outcome, " (promoted by {by})");
            }
            let revert = match (&r.reverted_by, r.time_to_revert_ms) {
                (Some(by), Some(ms)) => format!("{} by {by}", duration_ms(ms)),
                (Some(by), None) => format!("by {by}"),
                _ => "-".into(),
            };
            vec![
                r.deploy_id.clone(),
                r.version.clone(),
                r.ami.clone(),
                r.started_at.clone(),
                or_dash(r.finished_at.as_deref()),
                outcome,
                who,
                r.time_to_healthy_s.map_or("-".into(), duration),
                revert,
            ]
        })
        .collect();
    table(
        &[
            "DEPLOY ID",
            "VERSION",
            "AMI",
            "STARTED",
            "FINISHED",
            "OUTCOME",
            "REQUESTED BY / REASON",
            "TO HEALTHY",
            "TO REVERT",
        ],
        &body,
    )
}

fn target_rows(groups: &[TargetGroupView]) -> String {
    let mut rows = Vec::new();
    for g in groups {
        let head = vec![
            g.name.clone(),
            g.role.clone(),
            or_dash(g.version.as_deref()),
            format!("{}%", g.weight),
        ];
        if g.targets.is_empty() {
            rows.push([head.clone(), vec!["-".into(), "no targets".into()]].concat());
        }
        for (i, t) in g.targets.iter().enumerate() {
            let state = match &t.reason {
                Some(r) if t.state != TargetState::Healthy => format!("{} ({r})", t.state.as_str()),
                _ => t.state.as_str().to_string(),
            };
            let lead = if i == 0 {
                head.clone()
            } else {
                vec![String::new(); head.len()]
            };
            rows.push([lead, vec![t.instance_id.clone(), state]].concat());
        }
    }
    table(
        &["TARGET GROUP", "ROLE", "VERSION", "WEIGHT", "INSTANCE", "HEALTH"],
        &rows,
    )
}

/// `status` as a block of text.
pub fn status(s: &Status) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "service     {}   (as of {})", s.service, s.as_of);
    match &s.live {
        Some(l) => {
            let _ = writeln!(
                out,
                "live        {}   {}, {} instance(s) in {}",
                l.version,
                l.ami,
                l.instance_ids.len(),
                crate::view::tg_name(&l.target_group)
            );
        }
        None => out.push_str("live        -   nothing live yet\n"),
    }
    match &s.warm {
        Some(w) => {
            let until = match (&w.until, w.remaining_s) {
                (Some(u), Some(left)) => format!("warm until {u} ({} left)", duration(left)),
                _ => "warm".into(),
            };
            let _ = writeln!(out, "warm        {}   {until}", w.release.version);
        }
        None => out.push_str("warm        -\n"),
    }
    if let Some(a) = &s.attention {
        let _ = writeln!(out, "ATTENTION   {a}");
    }
    for finding in &s.findings {
        let _ = writeln!(out, "FINDING     {finding}");
    }
    if s.more_findings > 0 {
        let _ = writeln!(out, "FINDING     ... and {} more", s.more_findings);
    }
    if let Some(q) = &s.queued {
        let kind = if q.rollback { "rollback to" } else { "image" };
        let _ = writeln!(
            out,
            "queued      {kind} {} ({}), requested by {}",
            q.version, q.ami, q.requested_by
        );
    }
    match &s.deployment {
        None => out.push_str("deployment  none in flight\n"),
        Some(d) => {
            let from = d
                .from_version
                .as_deref()
                .map_or(String::new(), |v| format!(" (from {v})"));
            let kind = if d.rollback { "  [rollback]" } else { "" };
            let _ = writeln!(out, "deployment  {}   {}{from}{kind}", d.deploy_id, d.version);
            let why = d.reason.as_deref().map_or(String::new(), |r| format!(": {r}"));
            let _ = writeln!(out, "  requested {} by {}{why}", d.started_at, d.requested_by);
            let polls = d.polls.map_or(String::new(), |p| format!(", {p} health poll(s)"));
            let _ = writeln!(out, "  phase     {}   for {}{polls}", d.phase, duration(d.in_phase_s));
            let steps: Vec<String> = d.canary_steps.iter().map(|w| format!("{w}%")).collect();
            let _ = writeln!(out, "  canary    {}   steps {}", bar(d.weight), steps.join(" → "));
            if let (Some(until), Some(left)) = (&d.bake_until, d.bake_remaining_s) {
                let _ = writeln!(out, "  bake      {} left (until {until})", duration(left));
            }
            if let Some(until) = &d.drain_until {
                let _ = writeln!(out, "  draining  until {until}");
            }
            if let Some(reason) = &d.abort_reason {
                let _ = writeln!(out, "  aborted   {reason}");
            }
            if let Some(r) = &d.revert {
                let ttr = r.time_to_revert_ms.map_or("traffic not back yet".into(), |ms| {
                    format!("time-to-revert {}", duration_ms(ms))
                });
                let _ = writeln!(
                    out,
                    "  reverted  to {} by {} ({}): {}; {ttr}",
                    r.back_to, r.requested_by, r.trigger, r.reason
                );
            }
            if let Some(by) = &d.promoted_by {
                let _ = writeln!(out, "  promoted  by {by}");
            }
            if let Some(note) = &d.last_note {
                let _ = writeln!(out, "  last      {note}");
            }
        }
    }
    if s.fast_rollback_ready {
        out.push_str("rollback    fast: one listener change away (the previous fleet is warm)\n");
    }
    let _ = writeln!(out, "\nswitch point {}", s.switch);
    out.push_str(&target_rows(&s.target_groups));
    out
}

/// One line summing a status up (for watching without a terminal); the part before the
/// first tab is what changes are detected on.
pub fn status_line(s: &Status) -> (String, String) {
    let weights: Vec<String> = s
        .target_groups
        .iter()
        .map(|g| {
            let healthy = g.targets.iter().filter(|t| t.state == TargetState::Healthy).count();
            format!(
                "{} {} {}% {healthy}/{} healthy",
                g.role,
                g.name,
                g.weight,
                g.targets.len()
            )
        })
        .collect();
    let (key, extra) = match &s.deployment {
        Some(d) => {
            let bake = d
                .bake_remaining_s
                .map_or(String::new(), |left| format!("; bake {} left", duration(left)));
            (
                format!(
                    "{} {} {} {} | {}",
                    d.deploy_id,
                    d.version,
                    d.phase,
                    bar(d.weight),
                    weights.join(" | ")
                ),
                bake,
            )
        }
        None => (
            format!("no deployment in flight | {}", weights.join(" | ")),
            String::new(),
        ),
    };
    let line = format!("{} {key}{extra}", s.as_of);
    (key, line)
}

/// A registration as text.
pub fn registration(c: &ServiceConfig) -> String {
    let mut out = String::new();
    let steps: Vec<String> = c.rollout.canary_steps.iter().map(|w| format!("{w}%")).collect();
    let rows: Vec<(&str, String)> = vec![
        ("service", c.service.clone()),
        ("listener", c.switch.listener_arn.clone()),
        ("rule", or_dash(c.switch.rule_arn.as_deref())),
        ("target groups", c.target_groups.join("\n                ")),
        (
            "launch",
            format!(
                "{} x {} in {}, port {}, security groups {}",
                c.launch.count,
                c.launch.instance_type,
                c.launch.subnet_id,
                c.launch.port,
                if c.launch.security_group_ids.is_empty() {
                    "-".into()
                } else {
                    c.launch.security_group_ids.join(", ")
                }
            ),
        ),
        ("instance role", or_dash(c.launch.instance_profile_arn.as_deref())),
        (
            "health",
            format!(
                "poll every {}s, at most {} polls; smoke GET {} expects {}{}",
                c.health.poll_interval_s,
                c.health.max_polls,
                c.health.smoke.path,
                c.health.smoke.expect_status,
                c.health
                    .smoke
                    .expect_body
                    .as_deref()
                    .map_or(String::new(), |b| format!(" and {b:?}"))
            ),
        ),
        (
            "rollout",
            format!("{}, {}s between steps", steps.join(" → "), c.rollout.step_wait_s),
        ),
        ("bake window", duration(c.bake_window_s)),
        ("drain", duration(c.deregistration_delay_s)),
        (
            "AMI policy",
            format!(
                "owners {}; tags {}",
                if c.ami_policy.allowed_owners.is_empty() {
                    "any".into()
                } else {
                    c.ami_policy.allowed_owners.join(", ")
                },
                if c.ami_policy.required_tags.is_empty() {
                    "-".into()
                } else {
                    c.ami_policy
                        .required_tags
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ),
        ),
        ("on new image", c.on_new_image.name().to_string()),
        ("lease", duration(c.lease_s)),
        ("image builder", or_dash(c.image_builder_name.as_deref())),
        (
            "alarms",
            if c.alarms.is_empty() {
                "-".into()
            } else {
                c.alarms.join(", ")
            },
        ),
    ];
    for (label, value) in rows {
        let _ = writeln!(out, "{label:<14}  {value}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_durations_and_tables() {
        assert_eq!(bar(0), "[..........] 0%");
        assert_eq!(bar(10), "[#.........] 10%");
        assert_eq!(bar(50), "[#####.....] 50%");
        assert_eq!(bar(100), "[##########] 100%");
        assert_eq!(duration(5), "5s");
        assert_eq!(duration(65), "1m05s");
        assert_eq!(duration(7380), "2h03m");
        assert_eq!(duration_ms(850), "850 ms");
        assert_eq!(duration_ms(2400), "2.4 s");
        let t = table(&["A", "LONGER"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "A    LONGER\nxyz  1\n");
    }
}
