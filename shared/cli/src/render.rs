//! Output: aligned tables and status blocks for people, one JSON document for scripts.
//!
//! In JSON mode stdout carries exactly one document (the records of `view`); anything
//! else (progress while watching or waiting) goes to stderr.

use crate::view::{
    compact, AnalysisView, CountsView, EvaluationView, HistoryRow, ServiceRow, Status, SwitchPointView,
    TargetGroupView, ToleranceView, VerdictsView,
};
use greenlight_core::analysis::{Analysis, MetricQuery, MetricSpec};
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
                or_dash(r.analysis.as_deref()),
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
            "ANALYSIS",
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
    if let Some(route) = &s.test_route {
        let _ = writeln!(out, "test route  {route}   (green only)");
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
            let _ = writeln!(
                out,
                "  canary    {}   steps {}",
                bar(d.weight),
                steps_with_pauses(&d.canary_steps, &d.pauses)
            );
            if let Some(p) = &d.paused {
                let _ = writeln!(
                    out,
                    "  PAUSED    at {}% since {} ({}), waiting for {}; until {} (in {}), then {}",
                    p.weight,
                    p.since,
                    duration(p.paused_for_s),
                    p.waiting_for,
                    p.until,
                    duration(p.remaining_s),
                    p.on_timeout
                );
            }
            for line in &d.pauses_ended {
                let _ = writeln!(out, "  pause     {line}");
            }
            for line in &d.hooks_ended {
                let _ = writeln!(out, "  hook      {line}");
            }
            if let Some(h) = &d.hook {
                let said = h.last_reason.as_ref().map_or(String::new(), |r| format!(" (\"{r}\")"));
                let deadline = h
                    .deadline
                    .as_ref()
                    .map_or(String::new(), |t| format!("; until {t}, then {}", h.on_timeout));
                let _ = writeln!(
                    out,
                    "  HOOK      {} ({} at {}%, {}): {} answer(s) in progress{said}; next call at {}{deadline}",
                    h.name, h.stage, h.weight, h.calls, h.answered, h.next_call_at
                );
            }
            if let Some(h) = &d.held {
                let _ = writeln!(
                    out,
                    "  HELD      at {}% since {} ({}): {} failed ({}); on_failure is hold: nothing moves until {}",
                    h.weight,
                    h.since,
                    duration(h.held_for_s),
                    h.cause,
                    h.reason,
                    h.waiting_for
                );
            }
            for line in &d.holds_ended {
                let _ = writeln!(out, "  hold      {line}");
            }
            if let (Some(until), Some(left)) = (&d.bake_until, d.bake_remaining_s) {
                let _ = writeln!(out, "  bake      {} left (until {until})", duration(left));
            }
            if let Some(until) = &d.drain_until {
                let _ = writeln!(out, "  draining  until {until}");
            }
            if let Some(a) = &d.analysis {
                out.push_str(&analysis(a, d.ended));
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
    out.push_str(&switch_points(&s.switch_points));
    out.push('\n');
    out.push_str(&target_rows(&s.target_groups));
    out
}

/// The canary's steps with its approval pauses: `pause → 10% → pause → 50% → 100%`.
fn steps_with_pauses(steps: &[u8], pauses: &[u8]) -> String {
    let mut parts: Vec<String> = Vec::new();
    if pauses.contains(&0) {
        parts.push("pause".into());
    }
    for &w in steps {
        parts.push(format!("{w}%"));
        if w > 0 && pauses.contains(&w) {
            parts.push("pause".into());
        }
    }
    parts.join(" → ")
}

/// Where a weight was judged: `10%`, or `100% (bake)`.
fn judged_weight(weight: u8) -> String {
    if weight >= 100 {
        "100% (bake)".into()
    } else {
        format!("{weight}%")
    }
}

/// A count in a few characters: exact below a million, then `1.2e6`.
fn count(n: u64) -> String {
    if n < 1_000_000 {
        n.to_string()
    } else {
        compact(n as f64)
    }
}

/// `31/612 = 5.07%`
pub fn counts(c: &CountsView) -> String {
    format!("{}/{} = {}%", count(c.bad), count(c.total), compact(c.rate.0 * 100.0))
}

/// An e-value against its threshold: `1.2e6 ≥ 200` (reached) or `0.4 < 200`.
pub fn e_value(e: f64, threshold: f64) -> String {
    let op = if e >= threshold { "≥" } else { "<" };
    format!("{} {op} {}", compact(e), compact(threshold))
}

/// An evaluation's first line: `<time> at 10%, window <from> → <to> (2m00s): regressed → revert`.
fn evaluation_head(e: &EvaluationView) -> String {
    let window = match (&e.window_from, &e.window_to) {
        (Some(from), Some(to)) => format!("window {from} → {to} ({})", duration(e.window_s)),
        _ => "no window".into(),
    };
    let note = e.note.as_deref().map_or(String::new(), |n| format!(" ({n})"));
    format!(
        "{} at {}, {window}: {} → {}{note}",
        e.at,
        judged_weight(e.weight),
        e.verdict.as_str(),
        e.action
    )
}

/// An evaluation's metrics as a table, each line indented by `indent`.
fn evaluation_table(e: &EvaluationView, indent: &str) -> String {
    if e.metrics.is_empty() {
        return String::new();
    }
    let rows: Vec<Vec<String>> = e
        .metrics
        .iter()
        .map(|m| {
            vec![
                m.metric.clone(),
                counts(&m.green),
                counts(&m.blue),
                m.tolerance_text.clone(),
                e_value(m.e_regressed.0, m.threshold_regressed.0),
                e_value(m.e_no_worse.0, m.threshold_no_worse.0),
                m.verdict.as_str().to_string(),
            ]
        })
        .collect();
    let text = table(
        &[
            "METRIC",
            "GREEN",
            "BLUE",
            "TOLERANCE",
            "E (REGRESSED)",
            "E (NO WORSE)",
            "VERDICT",
        ],
        &rows,
    );
    text.lines().map(|l| format!("{indent}{l}\n")).collect()
}

fn tolerances(t: &[ToleranceView]) -> String {
    t.iter()
        .map(|t| format!("{} {}", t.metric, t.text))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The analysis section of `status`.
fn analysis(a: &AnalysisView, ended: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "  analysis  {}", a.outcome);
    let judging = if ended { "judged" } else { "judging" };
    let next = match (&a.held_since, &a.next_at, a.next_in_s) {
        (Some(held), _, _) => format!("held since {held} — waiting for promote, rollback or abort"),
        (None, Some(at), Some(0)) => format!("next evaluation due now ({at})"),
        (None, Some(at), Some(left)) => format!("next evaluation at {at} (in {})", duration(left)),
        _ if ended => "no further evaluation".into(),
        _ => "no evaluation due in this phase".into(),
    };
    let _ = writeln!(
        out,
        "            {judging} green at {} since {} ({}); {next}",
        judged_weight(a.weight),
        a.since,
        duration(a.judged_for_s)
    );
    if !a.tolerances.is_empty() {
        let alpha = a.alpha.map_or(String::new(), |x| format!("; alpha {}", compact(x.0)));
        let _ = writeln!(out, "            tolerance {}{alpha}", tolerances(&a.tolerances));
    }
    match &a.last {
        Some(e) => {
            let more = if a.evaluations > 1 {
                format!("   (1 of {}: `history --verdicts`)", a.evaluations)
            } else {
                String::new()
            };
            let _ = writeln!(out, "            last {}{more}", evaluation_head(e));
            out.push_str(&evaluation_table(e, "            "));
        }
        None => out.push_str("            no evaluation yet\n"),
    }
    out
}

/// `history --verdicts`: every evaluation of one deployment, oldest first.
pub fn verdicts(v: &VerdictsView) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {} ({}): analysis {}",
        v.deploy_id,
        v.version,
        v.outcome,
        v.analysis.as_deref().unwrap_or("-")
    );
    if v.evaluations.is_empty() {
        let why = if v.analysis.is_some() {
            "no evaluation yet"
        } else {
            "no canary analysis (the registration has no \"analysis\", or this deployment was not judged)"
        };
        let _ = writeln!(out, "{why}");
        return out;
    }
    for e in &v.evaluations {
        let _ = writeln!(out, "\n{}", evaluation_head(e));
        out.push_str(&evaluation_table(e, "  "));
        for m in &e.metrics {
            let _ = writeln!(out, "  {}: {}", m.metric, m.explanation);
        }
    }
    out
}

/// A custom metric's query: `App/Failures{TargetGroup=${target_group}}`.
fn query(q: &MetricQuery) -> String {
    let dims: Vec<String> = q.dimensions.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if dims.is_empty() {
        format!("{}/{}", q.namespace, q.metric_name)
    } else {
        format!("{}/{}{{{}}}", q.namespace, q.metric_name, dims.join(","))
    }
}

/// The registration's `analysis` block, one line per metric then its settings.
fn analysis_block(a: &Analysis) -> String {
    let mut lines: Vec<String> = a
        .metrics
        .iter()
        .map(|m| {
            let tolerance = ToleranceView::from(m).text;
            match m {
                MetricSpec::ErrorRate { .. } => format!("{} {tolerance} (5xx among requests)", m.name()),
                MetricSpec::Latency { .. } => format!("{} {tolerance} (response time)", m.name()),
                MetricSpec::Custom { bad, total, .. } => format!(
                    "{} {tolerance} ({} / {})",
                    m.name(),
                    query(bad),
                    total.as_ref().map_or("ALB RequestCount".into(), query)
                ),
            }
        })
        .collect();
    lines.push(format!(
        "alpha {}, min_requests {}, period_s {}, lag_s {}, max_step_s {}, inconclusive {}, baseline_s {}",
        compact(a.alpha.0),
        a.min_requests,
        a.period_s,
        a.lag_s,
        a.max_step_s,
        a.inconclusive.name(),
        a.baseline_s
    ));
    lines.join("\n                ")
}

/// Every switch point, one line each: what it is, its ARN and its forward's weights (a point
/// whose weights are not the first point's is marked: a change is under way, or someone
/// edited it).
fn switch_points(points: &[SwitchPointView]) -> String {
    let weights = |p: &SwitchPointView| -> String {
        if p.weights.is_empty() {
            return "no forward".into();
        }
        p.weights
            .iter()
            .map(|w| format!("{} {}%", w.name, w.weight))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = String::new();
    let first = points.first().map(weights);
    for (i, point) in points.iter().enumerate() {
        let label = if i == 0 { "switch" } else { "" };
        let kind = if point.arn.contains(":listener-rule/") {
            "rule"
        } else {
            "listener"
        };
        let here = weights(point);
        let differs = if first.as_deref() == Some(here.as_str()) {
            ""
        } else {
            "  (not the first point's weights)"
        };
        let _ = writeln!(out, "{label:<12}{kind:<9}{}   [{here}]{differs}", point.arn);
    }
    out
}

/// One line summing a status up (for watching without a terminal); the part before the
/// first tab is what changes are detected on.
/// The last analysis evaluation in a watch line: each evaluation is a change worth a line
/// (its number, weight, verdict and action); empty without analysis.
fn analysis_suffix(d: &crate::view::DeploymentView) -> String {
    let Some((a, e)) = d.analysis.as_ref().and_then(|a| Some((a, a.last.as_ref()?))) else {
        return String::new();
    };
    format!(
        " | analysis #{} at {}%: {} → {}",
        a.evaluations,
        e.weight,
        e.verdict.as_str(),
        e.action
    )
}

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
            let paused = d.paused.as_ref().map_or(String::new(), |p| {
                format!(
                    "; PAUSED at {}%, waiting for `greenlight promote` ({} left)",
                    p.weight,
                    duration(p.remaining_s)
                )
            });
            let held = d.held.as_ref().map_or(String::new(), |h| {
                format!(
                    "; HELD at {}% ({} failed), waiting for promote, rollback or abort",
                    h.weight, h.cause
                )
            });
            let hook = d.hook.as_ref().map_or(String::new(), |h| {
                format!("; waits for hook {} ({} at {}%)", h.name, h.stage, h.weight)
            });
            let bake = format!("{held}{paused}{hook}{bake}");
            let analysis = analysis_suffix(d);
            (
                format!(
                    "{} {} {} {} | {}{analysis}",
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
    let pauses = if c.rollout.pauses.is_empty() {
        String::new()
    } else {
        format!(
            "; a pause waits up to {}s for `greenlight promote`, then {}",
            c.rollout.pause_timeout_s,
            c.rollout.on_pause_timeout.as_str()
        )
    };
    let rows: Vec<(&str, String)> = vec![
        ("service", c.service.clone()),
        (
            "switch",
            c.switch
                .points()
                .iter()
                .map(|p| match &p.rule_arn {
                    Some(rule) => format!("rule {rule}"),
                    None => format!("listener {}", p.listener_arn),
                })
                .collect::<Vec<_>>()
                .join("\n                "),
        ),
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
            format!(
                "{}, {}s between steps{pauses}",
                steps_with_pauses(&c.rollout.canary_steps, &c.rollout.pauses),
                c.rollout.step_wait_s
            ),
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
        ("analysis", c.analysis.as_ref().map_or("-".into(), analysis_block)),
    ];
    for (label, value) in rows {
        let _ = writeln!(out, "{label:<14}  {value}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::Weight;

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

    #[test]
    fn every_switch_point_is_one_line_with_its_weights() {
        let w = |name: &str, weight| Weight {
            target_group: format!("arn:tg/{name}/1"),
            name: name.into(),
            weight,
        };
        let point = |arn: &str, weights| SwitchPointView {
            arn: arn.into(),
            weights,
        };
        let text = switch_points(&[
            point("arn:l:listener/app/web/1/2", vec![w("a", 90), w("b", 10)]),
            point("arn:l:listener-rule/app/web/1/2/3", vec![w("a", 90), w("b", 10)]),
            point("arn:l:listener-rule/app/web/1/2/4", vec![w("a", 100)]),
            point("arn:l:listener/app/api/5/6", vec![]),
        ]);
        assert_eq!(
            text,
            "switch      listener arn:l:listener/app/web/1/2   [a 90%, b 10%]\n            \
             rule     arn:l:listener-rule/app/web/1/2/3   [a 90%, b 10%]\n            \
             rule     arn:l:listener-rule/app/web/1/2/4   [a 100%]  (not the first point's weights)\n            \
             listener arn:l:listener/app/api/5/6   [no forward]  (not the first point's weights)\n"
        );
    }
}

#[cfg(test)]
mod analysis_tests {
    use super::*;
    use crate::view::{AnalysisView, DeploymentView, HistoryRow};
    use greenlight_core::analysis::{AnalysisRecord, Counts, Evaluation, MetricVerdict, Real, Verdict};
    use greenlight_core::model::{Deployment, RevertRecord, Trigger};
    use serde_json::json;

    const T: u64 = 1_796_000_000;

    fn config() -> ServiceConfig {
        serde_json::from_value(json!({
            "service": "checkout",
            "switch": {"listener_arn": "arn:aws:elasticloadbalancing:us-east-1:1:listener/app/web/1/2", "rule_arn": null},
            "target_groups": ["arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/a/1",
                              "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/b/2"],
            "launch": {"instance_type": "t3.micro", "subnet_id": "subnet-0123", "count": 2, "port": 8080},
            "health": {"poll_interval_s": 10, "max_polls": 30, "smoke": {"path": "/smoke"}},
            "bake_window_s": 3600,
            "analysis": {
                "metrics": [
                    {"error_rate": {"tolerance_pp": 0.5}},
                    {"latency": {"percentile": 99, "max_ratio": 1.2}},
                    {"custom": {"name": "failures", "tolerance_pp": 1,
                                "bad": {"namespace": "App", "metric_name": "Failures",
                                        "dimensions": {"TargetGroup": "${target_group}"}}}}
                ],
                "inconclusive": "hold"
            }
        }))
        .expect("a registration")
    }

    fn deployment(phase: Value) -> Deployment {
        serde_json::from_value(json!({
            "deploy_id": "d-0123456789abcdef0123", "service": "checkout", "version": "v2", "ami": "ami-0123abcd",
            "gen": 1, "source": "greenlight", "requested_by": "ci", "reason": null,
            "blue": {"version": "v1", "ami": "ami-0123abce", "target_group": "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/a/1",
                     "instance_ids": ["i-1"]},
            "green_tg": "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/b/2",
            "green_instances": ["i-2"], "phase": phase, "max_weight": 10,
            "created_at": T - 600, "updated_at": T, "healthy_at": T - 500, "revert": null, "rollback": false,
            "timeline": []
        }))
        .expect("a deployment")
    }

    use serde_json::Value;

    fn metric(name: &str, green: (u64, u64), blue: (u64, u64), e: (f64, f64), verdict: Verdict) -> MetricVerdict {
        MetricVerdict {
            metric: name.into(),
            green: Counts {
                bad: green.0,
                total: green.1,
            },
            blue: Counts {
                bad: blue.0,
                total: blue.1,
            },
            tolerance: Real(0.005),
            e_regressed: Real(e.0),
            e_no_worse: Real(e.1),
            threshold_regressed: Real(200.0),
            threshold_no_worse: Real(200.0),
            verdict,
            explanation: format!("{name} explained"),
        }
    }

    fn evaluation(at: u64, weight: u8, verdict: Verdict, action: &str, metrics: Vec<MetricVerdict>) -> Evaluation {
        Evaluation {
            at,
            weight,
            from: at - 180,
            to: at - 60,
            verdict,
            action: action.into(),
            metrics,
            note: None,
        }
    }

    fn continuing() -> Evaluation {
        evaluation(
            T - 60,
            10,
            Verdict::Continue,
            "wait",
            vec![metric(
                "error_rate",
                (3, 250),
                (20, 2250),
                (2.5, 0.8),
                Verdict::Continue,
            )],
        )
    }

    fn regressed() -> Evaluation {
        evaluation(
            T,
            10,
            Verdict::Regressed,
            "revert",
            vec![
                metric(
                    "error_rate",
                    (31, 612),
                    (55, 5488),
                    (1.234e6, 0.0004),
                    Verdict::Regressed,
                ),
                metric("latency_p99", (7, 612), (55, 5488), (1.1, 3.0), Verdict::Continue),
            ],
        )
    }

    /// A canary at 10% judged once (continue, waiting for the next period).
    fn judging() -> Deployment {
        let mut dep = deployment(json!({"phase": "verified", "weight": 10}));
        dep.analysis = Some(AnalysisRecord {
            since: T - 300,
            weight: 10,
            next_at: T + 30,
            held_since: None,
            evaluations: vec![continuing()],
        });
        dep
    }

    /// The same canary, reverted by analysis at its second evaluation.
    fn reverted() -> Deployment {
        let mut dep =
            deployment(json!({"phase": "aborted", "reason": "rolled back by analysis: 10%: error_rate regressed"}));
        dep.analysis = Some(AnalysisRecord {
            since: T - 300,
            weight: 10,
            next_at: T + 60,
            held_since: None,
            evaluations: vec![continuing(), regressed()],
        });
        dep.revert = Some(RevertRecord {
            trigger: Trigger::Analysis,
            requested_by: "analysis".into(),
            reason: "10%: error_rate regressed".into(),
            event_id: "analysis-1".into(),
            event_time_ms: T * 1000,
            received_at_ms: T * 1000,
            back_to: "v1".into(),
            traffic_back_at_ms: Some(T * 1000 + 850),
        });
        dep
    }

    fn section(dep: &Deployment) -> (AnalysisView, String) {
        let view = DeploymentView::new(dep, &config(), T);
        let a = view.analysis.clone().expect("an analysis view");
        let text = analysis(&a, view.ended);
        (a, text)
    }

    #[test]
    fn numbers_are_compact() {
        assert_eq!(compact(0.0), "0");
        assert_eq!(compact(0.5), "0.5");
        assert_eq!(compact(0.0004), "4e-4");
        assert_eq!(compact(5.0675), "5.07");
        assert_eq!(compact(12.34), "12.3");
        assert_eq!(compact(200.0), "200");
        assert_eq!(compact(1.234e6), "1.2e6");
        assert_eq!(compact(9.96e6), "1e7");
        assert_eq!(count(5488), "5488");
        assert_eq!(count(1_234_567), "1.2e6");
    }

    #[test]
    fn status_shows_a_regressed_evaluation_and_its_action() {
        let (view, text) = section(&reverted());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "  analysis  regressed at 10% (error_rate)", "{text}");
        assert_eq!(
            lines[1], "            judged green at 10% since 2026-11-30T00:48:20Z (5m00s); no further evaluation",
            "{text}"
        );
        assert_eq!(
            lines[2],
            "            tolerance error_rate +0.5 pp, latency_p99 p99 ≤ 1.2× blue, failures +1 pp; alpha 0.01",
            "{text}"
        );
        assert_eq!(
            lines[3],
            "            last 2026-11-30T00:53:20Z at 10%, window 2026-11-30T00:50:20Z → 2026-11-30T00:52:20Z \
             (2m00s): regressed → revert   (1 of 2: `history --verdicts`)",
            "{text}"
        );
        assert_eq!(
            lines[4],
            "            METRIC       GREEN           BLUE          TOLERANCE        E (REGRESSED)  E (NO WORSE)  VERDICT",
            "{text}"
        );
        let row: Vec<&str> = lines[5].split("  ").map(str::trim).filter(|c| !c.is_empty()).collect();
        assert_eq!(
            row,
            [
                "error_rate",
                "31/612 = 5.07%",
                "55/5488 = 1%",
                "+0.5 pp",
                "1.2e6 ≥ 200",
                "4e-4 < 200",
                "regressed"
            ],
            "{text}"
        );
        let row: Vec<&str> = lines[6].split("  ").map(str::trim).filter(|c| !c.is_empty()).collect();
        assert_eq!(
            row,
            [
                "latency_p99",
                "7/612 = 1.14%",
                "55/5488 = 1%",
                "p99 ≤ 1.2× blue",
                "1.1 < 200",
                "3 < 200",
                "continue"
            ],
            "{text}"
        );
        assert_eq!(lines.len(), 7, "{text}");
        assert_eq!(view.next_at, None);

        // The JSON carries the same numbers.
        let doc = serde_json::to_value(DeploymentView::new(&reverted(), &config(), T)).unwrap();
        let a = &doc["analysis"];
        assert_eq!(a["outcome"], "regressed at 10% (error_rate)");
        assert_eq!(a["weight"], 10);
        assert_eq!(
            a["tolerances"][0],
            json!({"metric": "error_rate", "kind": "error_rate", "tolerance_pp": 0.5,
            "percentile": null, "max_ratio": null, "text": "+0.5 pp"})
        );
        let m = &a["last"]["metrics"][0];
        assert_eq!(
            (
                &m["green"],
                &m["blue"]["total"],
                &m["e_regressed"],
                &m["threshold_regressed"],
                &m["verdict"]
            ),
            (
                &json!({"bad": 31, "total": 612, "rate": 31.0 / 612.0}),
                &json!(5488),
                &json!(1.234e6),
                &json!(200.0),
                &json!("regressed")
            )
        );
        assert_eq!(
            (&a["last"]["action"], &a["last"]["window_s"]),
            (&json!("revert"), &json!(120))
        );
        assert_eq!(doc["revert"]["trigger"], "analysis", "existing fields unchanged");
    }

    #[test]
    fn a_watch_line_names_the_last_analysis_evaluation() {
        let reverted = DeploymentView::new(&reverted(), &config(), T);
        assert_eq!(analysis_suffix(&reverted), " | analysis #2 at 10%: regressed → revert");
        let mut without = reverted.clone();
        without.analysis = None;
        assert_eq!(analysis_suffix(&without), "");
    }

    #[test]
    fn status_shows_a_continue_evaluation_and_when_the_next_is_due() {
        let (view, text) = section(&judging());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "  analysis  judging at 10%", "{text}");
        assert_eq!(
            lines[1],
            "            judging green at 10% since 2026-11-30T00:48:20Z (5m00s); next evaluation at \
             2026-11-30T00:53:50Z (in 30s)",
            "{text}"
        );
        assert!(lines[3].ends_with("(2m00s): continue → wait"), "{text}");
        let row: Vec<&str> = lines[5].split("  ").map(str::trim).filter(|c| !c.is_empty()).collect();
        assert_eq!(
            row,
            [
                "error_rate",
                "3/250 = 1.2%",
                "20/2250 = 0.889%",
                "+0.5 pp",
                "2.5 < 200",
                "0.8 < 200",
                "continue"
            ],
            "{text}"
        );
        assert_eq!((view.next_in_s, view.evaluations), (Some(30), 1));
    }

    #[test]
    fn a_held_step_says_what_it_waits_for() {
        let mut dep = judging();
        let record = dep.analysis.as_mut().unwrap();
        record.held_since = Some(T - 10);
        let mut e = continuing();
        e.action = "hold".into();
        record.evaluations.push(e);
        let (view, text) = section(&dep);
        assert_eq!(view.outcome, "inconclusive at 10%: held");
        assert!(
            text.lines()
                .nth(1)
                .unwrap()
                .ends_with("; held since 2026-11-30T00:53:10Z — waiting for promote, rollback or abort"),
            "{text}"
        );
        assert_eq!(view.next_at, None);
    }

    #[test]
    fn history_has_an_analysis_column() {
        let mut promoted = deployment(json!({"phase": "succeeded"}));
        promoted.analysis = Some(AnalysisRecord {
            since: T,
            weight: 100,
            next_at: T,
            held_since: None,
            evaluations: vec![
                evaluation(T - 400, 10, Verdict::NoWorse, "next step", vec![]),
                evaluation(T - 200, 50, Verdict::NoWorse, "next step", vec![]),
                evaluation(T - 100, 100, Verdict::Continue, "wait", vec![]),
            ],
        });
        let mut plain = deployment(json!({"phase": "succeeded"}));
        plain.deploy_id = "d-00000000000000000000".into();
        let rows: Vec<HistoryRow> = [&reverted(), &promoted, &plain]
            .into_iter()
            .map(HistoryRow::from)
            .collect();
        assert_eq!(rows[0].analysis.as_deref(), Some("regressed at 10% (error_rate)"));
        assert_eq!(rows[1].analysis.as_deref(), Some("no worse at 10%, 50%; bake clean"));
        assert_eq!(rows[2].analysis, None);
        let text = history(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].ends_with("TO REVERT           ANALYSIS"), "{text}");
        assert!(
            lines[1].ends_with("850 ms by analysis  regressed at 10% (error_rate)"),
            "{text}"
        );
        assert!(lines[2].ends_with("no worse at 10%, 50%; bake clean"), "{text}");
        assert!(lines[3].ends_with(" -"), "{text}");
        let doc = serde_json::to_value(&rows[0]).unwrap();
        assert_eq!(doc["analysis"], "regressed at 10% (error_rate)");
    }

    #[test]
    fn verdicts_lists_every_evaluation_oldest_first() {
        let view = crate::view::VerdictsView::new(&reverted(), &config());
        let text = verdicts(&view);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0], "d-0123456789abcdef0123 v2 (aborted): analysis regressed at 10% (error_rate)",
            "{text}"
        );
        let heads: Vec<&str> = lines.iter().copied().filter(|l| l.starts_with("2026-")).collect();
        assert_eq!(heads.len(), 2, "{text}");
        assert!(heads[0].starts_with("2026-11-30T00:52:20Z at 10%") && heads[0].ends_with("continue → wait"));
        assert!(heads[1].starts_with("2026-11-30T00:53:20Z at 10%") && heads[1].ends_with("regressed → revert"));
        assert!(
            text.contains("\n  error_rate: error_rate explained\n  latency_p99: latency_p99 explained\n"),
            "{text}"
        );
        let doc = serde_json::to_value(&view).unwrap();
        assert_eq!(doc["evaluations"].as_array().unwrap().len(), 2);
        assert_eq!(doc["evaluations"][1]["verdict"], "regressed");
        assert_eq!(doc["evaluations"][1]["metrics"][1]["tolerance_text"], "p99 ≤ 1.2× blue");
    }

    #[test]
    fn a_registration_shows_its_analysis_block() {
        let text = registration(&config());
        assert!(
            text.contains(
                "analysis        error_rate +0.5 pp (5xx among requests)\n                \
                 latency_p99 p99 ≤ 1.2× blue (response time)\n                \
                 failures +1 pp (App/Failures{TargetGroup=${target_group}} / ALB RequestCount)\n                \
                 alpha 0.01, min_requests 200, period_s 60, lag_s 60, max_step_s 900, inconclusive hold, baseline_s 600\n"
            ),
            "{text}"
        );
        let mut none = config();
        none.analysis = None;
        assert!(registration(&none).contains("\nanalysis        -\n"));
    }
}
