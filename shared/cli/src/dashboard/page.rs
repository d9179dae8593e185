//! The dashboard's HTML, drawn on the server from the same records `greenlight status` and
//! `history` print (`view.rs`), so the page and the CLI never disagree. Pages are complete
//! without JavaScript; `dashboard.js` only swaps the live part when the event stream sends a
//! new one and posts the actions. Every text from the ledger or AWS goes through [`esc`].
//!
//! Ids the browser tests and the script rely on: `#context`, `#live`, `#services`,
//! `#filter`, `#deployment`, `#phase`, `#weight` (`data-weight`), `#timeline`,
//! `#switch-points`, `#targets`, `#history`, `#ttr-trend`, `#message`, `form.action`.

use crate::render::{counts, duration, e_value};
use crate::view::{phase_name, AnalysisView, DeploymentView, HistoryRow, ServiceRow, Status};
use greenlight_core::inbound::format_time;
use greenlight_core::model::{Deployment, PhaseName};

/// The services page's row for one service: `greenlight services`'s, and the last outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub row: ServiceRow,
    /// The last deployment that ended: version and outcome in a few words.
    pub last_outcome: Option<String>,
}

/// What every page states: where it reads, and the token its actions carry.
pub struct Context {
    pub account: String,
    pub region: String,
    pub table: String,
    pub bus: String,
    pub token: String,
}

/// Text made safe for HTML content and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn or_dash(text: Option<&str>) -> String {
    text.map_or_else(|| "–".to_string(), esc)
}

/// The page around `content`.
fn layout(ctx: &Context, title: &str, content: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title} · greenlight</title>\
<meta name=\"greenlight-token\" content=\"{token}\">\
<link rel=\"stylesheet\" href=\"/assets/dashboard.css\">\
<script src=\"/assets/dashboard.js\" defer></script></head>\n<body>\
<header><a class=\"brand\" href=\"/\">greenlight</a>\
<p id=\"context\">account <b>{account}</b> · region <b>{region}</b> · table <b>{table}</b> · bus <b>{bus}</b></p>\
<p id=\"stream-state\" aria-live=\"polite\"></p></header>\n<main>{content}</main></body></html>\n",
        title = esc(title),
        token = esc(&ctx.token),
        account = esc(&ctx.account),
        region = esc(&ctx.region),
        table = esc(&ctx.table),
        bus = esc(&ctx.bus),
    )
}

/// `/`: every service, live.
pub fn services_page(ctx: &Context, rows: &[Summary], filter: &str) -> String {
    let content = format!(
        "<h1>Services</h1>\
<form class=\"filter\" method=\"get\" action=\"/\" role=\"search\"><label for=\"filter\">Filter by name</label> \
<input id=\"filter\" name=\"q\" type=\"search\" value=\"{q}\" autocomplete=\"off\"></form>\
<div id=\"live\" data-stream=\"/events\">{table}</div>",
        q = esc(filter),
        table = services_table(rows, filter)
    );
    layout(ctx, "Services", &content)
}

/// The services table (the live part of `/`); rows not containing `filter` are hidden.
pub fn services_table(rows: &[Summary], filter: &str) -> String {
    if rows.is_empty() {
        return "<p id=\"services\">No service is registered in this table: <code>greenlight service register \
&lt;file&gt;</code>.</p>"
            .into();
    }
    let filter = filter.trim().to_lowercase();
    let mut html = String::from(
        "<table id=\"services\"><thead><tr><th scope=\"col\">Service</th><th scope=\"col\">Live</th>\
<th scope=\"col\">Warm</th><th scope=\"col\">In flight</th><th scope=\"col\">Phase</th>\
<th scope=\"col\">Green's weight</th><th scope=\"col\">In phase</th><th scope=\"col\">Attention</th>\
<th scope=\"col\">Last outcome</th></tr></thead><tbody>",
    );
    for summary in rows {
        let row = &summary.row;
        let hidden = if !filter.is_empty() && !row.service.to_lowercase().contains(&filter) {
            " hidden"
        } else {
            ""
        };
        let (flight, phase, weight, in_phase) = match &row.deployment {
            Some(d) => (
                format!("{} <code>{}</code>", esc(&d.version), esc(&d.deploy_id)),
                esc(phase_name(d.phase)),
                weight_cell(d.weight),
                duration(d.in_phase_s),
            ),
            None => ("–".into(), "–".into(), "–".into(), "–".into()),
        };
        let attention = match (&row.attention, &row.error) {
            (_, Some(error)) => format!("<span class=\"flag\">could not read: {}</span>", esc(error)),
            (Some(why), None) => format!("<span class=\"flag\">{}</span>", esc(why)),
            (None, None) => "–".into(),
        };
        html.push_str(&format!(
            "<tr data-service=\"{name}\"{hidden}><th scope=\"row\"><a href=\"/services/{name}\">{name}</a></th>\
<td>{live}</td><td>{warm}</td><td>{flight}</td><td class=\"phase\">{phase}</td><td class=\"weight\">{weight}</td>\
<td>{in_phase}</td><td>{attention}</td><td>{last}</td></tr>",
            name = esc(&row.service),
            live = or_dash(row.live.as_deref()),
            warm = or_dash(row.warm.as_deref()),
            last = or_dash(summary.last_outcome.as_deref()),
        ));
    }
    html.push_str("</tbody></table>");
    html
}

fn weight_cell(weight: u8) -> String {
    format!("<progress max=\"100\" value=\"{weight}\" aria-label=\"green's weight\"></progress> {weight}%")
}

/// `/services/<name>`: the live part, then the actions (outside the live part, so a
/// refresh never wipes a reason being typed).
pub fn service_page(ctx: &Context, service: &str, live: &str) -> String {
    let name = esc(service);
    let form = |verb: &str, label: &str, help: &str, extra: &str| {
        format!(
            "<form class=\"action\" data-action=\"{verb}\" method=\"post\" action=\"/services/{name}/{verb}\">\
<input type=\"hidden\" name=\"token\" value=\"{token}\"><fieldset><legend>{label}</legend><p>{help}</p>\
<label>Reason <input name=\"reason\" required maxlength=\"500\" autocomplete=\"off\"></label>{extra}\
<button type=\"submit\">{label}</button></fieldset></form>",
            token = esc(&ctx.token)
        )
    };
    let content = format!(
        "<h1>{name}</h1><div id=\"live\" data-stream=\"/services/{name}/events\">{live}</div>\
<section id=\"actions\" aria-labelledby=\"actions-h\"><h2 id=\"actions-h\">Steer</h2>\
<p>Each action publishes the same event as the CLI, as you ({bus} bus); greenlight's functions do the rest.</p>\
{rollback}{promote}{abort}<p id=\"message\" role=\"status\" aria-live=\"assertive\"></p></section>",
        bus = esc(&ctx.bus),
        rollback = form(
            "rollback",
            "Roll back",
            "Traffic back on the previous version (one listener change while it is warm), or that version \
redeployed through the gates.",
            "<label>To version <input name=\"to_version\" placeholder=\"the previous one\" autocomplete=\"off\"></label>"
        ),
        promote = form(
            "promote",
            "Promote",
            "Approve a pause, release a hold, or skip the remaining canary steps and bake window.",
            ""
        ),
        abort = form(
            "abort",
            "Abort",
            "Stop the deployment in flight: traffic back, green terminated.",
            ""
        ),
    );
    layout(ctx, service, &content)
}

/// The live part of a service's page.
pub fn service_live(status: &Status, deployment: Option<&Deployment>, history: &[HistoryRow], now: u64) -> String {
    let mut html = String::new();
    html.push_str(&format!(
        "<section id=\"service\" aria-label=\"service\"><p>Live <b>{live}</b> · warm <b>{warm}</b>{ready}</p>{attention}{findings}</section>",
        live = or_dash(status.live.as_ref().map(|r| r.version.as_str())),
        warm = or_dash(status.warm.as_ref().map(|w| w.release.version.as_str())),
        ready = if status.fast_rollback_ready {
            " · a rollback is one listener change"
        } else {
            ""
        },
        attention = status
            .attention
            .as_deref()
            .map(|a| format!("<p class=\"flag\" role=\"alert\">Needs attention: {}</p>", esc(a)))
            .unwrap_or_default(),
        findings = if status.findings.is_empty() {
            String::new()
        } else {
            format!(
                "<ul class=\"findings\">{}</ul>",
                status.findings.iter().map(|f| format!("<li>{}</li>", esc(f))).collect::<String>()
            )
        },
    ));
    html.push_str(&deployment_section(status.deployment.as_ref(), deployment, now));
    html.push_str(&switch_points(status));
    html.push_str(&targets(status));
    html.push_str(&history_section(history));
    html
}

fn deployment_section(view: Option<&DeploymentView>, dep: Option<&Deployment>, now: u64) -> String {
    let Some(d) = view else {
        return "<section id=\"deployment\"><h2>Deployment</h2><p id=\"phase\" data-phase=\"none\">No deployment \
in flight.</p></section>"
            .into();
    };
    let steps: Vec<String> = d
        .canary_steps
        .iter()
        .map(|s| {
            if d.pauses.contains(s) {
                format!("{s}% (pause)")
            } else {
                format!("{s}%")
            }
        })
        .collect();
    let mut notes = String::new();
    let mut note = |class: &str, text: String| notes.push_str(&format!("<p class=\"{class}\">{text}</p>"));
    if let Some(p) = &d.paused {
        note(
            "flag",
            format!(
                "Paused at {}% since {} (for {}): waits for {}; at {} it will {}.",
                p.weight,
                esc(&p.since),
                duration(p.paused_for_s),
                esc(&p.waiting_for),
                esc(&p.until),
                esc(&p.on_timeout)
            ),
        );
    }
    if let Some(h) = &d.hook {
        note(
            "flag",
            format!(
                "Waits for hook {} ({} at {}%, {}): {} answer(s) in progress{}; next call at {}{}.",
                esc(&h.name),
                esc(&h.stage),
                h.weight,
                esc(&h.calls),
                h.answered,
                h.last_reason
                    .as_ref()
                    .map_or(String::new(), |r| format!(" (\u{201c}{}\u{201d})", esc(r))),
                esc(&h.next_call_at),
                h.deadline.as_ref().map_or(String::new(), |t| format!(
                    "; at {} it will {}",
                    esc(t),
                    esc(&h.on_timeout)
                ))
            ),
        );
    }
    for line in &d.hooks_ended {
        note("ok", format!("Hook {}.", esc(line)));
    }
    if let Some(h) = &d.held {
        note(
            "flag",
            format!(
                "HELD at {}%: {} failed ({}) since {}; waits for {}.",
                h.weight,
                esc(&h.cause),
                esc(&h.reason),
                esc(&h.since),
                esc(&h.waiting_for)
            ),
        );
    }
    if let Some(reason) = &d.abort_reason {
        note("refused", format!("Aborted: {}", esc(reason)));
    }
    if let Some(r) = &d.revert {
        note(
            "flag",
            format!(
                "Rolled back to {} by {} ({}): {}{}",
                esc(&r.back_to),
                esc(&r.requested_by),
                r.trigger.as_str(),
                esc(&r.reason),
                r.time_to_revert_ms
                    .map(|ms| format!("; traffic back {ms} ms after the event"))
                    .unwrap_or_default()
            ),
        );
    }
    if let Some(by) = &d.promoted_by {
        note("ok", format!("Promoted by {}.", esc(by)));
    }
    if let Some(until) = &d.bake_until {
        note(
            "",
            format!(
                "Baking: the previous fleet stays warm until {} ({} left).",
                esc(until),
                duration(d.bake_remaining_s.unwrap_or(0))
            ),
        );
    }
    format!(
        "<section id=\"deployment\"><h2>Deployment <code>{id}</code>: {from} → {version}</h2>\
<p id=\"phase\" data-phase=\"{phase}\">Phase <b>{phase}</b> for {in_phase} (since {since}){polls}</p>\
<p id=\"weight\" data-weight=\"{weight}\">Green has {bar} <b>{weight}%</b> of traffic · steps {steps}</p>\
<p>Requested by <b>{by}</b>{reason} · started {started} · on failure: {on_failure}</p>{notes}{analysis}{timeline}</section>",
        id = esc(&d.deploy_id),
        from = or_dash(d.from_version.as_deref()),
        version = esc(&d.version),
        phase = d.phase.as_str(),
        in_phase = duration(d.in_phase_s),
        since = esc(&d.phase_since),
        polls = d.polls.map(|p| format!(", {p} health polls")).unwrap_or_default(),
        weight = d.weight,
        bar = format_args!(
            "<progress max=\"100\" value=\"{}\" aria-label=\"green's weight\"></progress>",
            d.weight
        ),
        steps = steps.join(" → "),
        by = esc(&d.requested_by),
        reason = d.reason.as_deref().map(|r| format!(": {}", esc(r))).unwrap_or_default(),
        started = esc(&d.started_at),
        on_failure = esc(&d.on_failure),
        analysis = d.analysis.as_ref().map(analysis).unwrap_or_default(),
        timeline = dep.map(|dep| timeline(dep, now)).unwrap_or_default(),
    )
}

/// Canary analysis in the open: what is judged, against which tolerances, and the last
/// evaluation's numbers per metric (green's and blue's counts, both e-values against their
/// thresholds, the verdict and why).
fn analysis(a: &AnalysisView) -> String {
    let state = match (&a.held_since, &a.next_at) {
        (Some(since), _) => format!("inconclusive, <b>held</b> since {} for an engineer", esc(since)),
        (None, Some(next)) => format!(
            "next evaluation at {} (in {})",
            esc(next),
            duration(a.next_in_s.unwrap_or(0))
        ),
        (None, None) => "no further evaluation".into(),
    };
    let tolerances: Vec<String> = a
        .tolerances
        .iter()
        .map(|t| format!("{} {}", esc(&t.metric), esc(&t.text)))
        .collect();
    let last = match &a.last {
        None => "<p>No evaluation yet.</p>".to_string(),
        Some(e) => {
            let rows: String = e
                .metrics
                .iter()
                .map(|m| {
                    format!(
                        "<tr class=\"{class}\"><td>{metric}</td><td>{green}</td><td>{blue}</td><td>{tolerance}</td>\
<td>{regressed}</td><td>{no_worse}</td><td>{verdict}</td><td>{why}</td></tr>",
                        class = if m.verdict == greenlight_core::analysis::Verdict::Regressed {
                            "refused"
                        } else {
                            ""
                        },
                        metric = esc(&m.metric),
                        green = esc(&counts(&m.green)),
                        blue = esc(&counts(&m.blue)),
                        tolerance = esc(&m.tolerance_text),
                        regressed = esc(&e_value(m.e_regressed.0, m.threshold_regressed.0)),
                        no_worse = esc(&e_value(m.e_no_worse.0, m.threshold_no_worse.0)),
                        verdict = m.verdict.as_str(),
                        why = esc(&m.explanation),
                    )
                })
                .collect();
            format!(
                "<p>Last evaluation {at} at {weight}%: <b>{verdict}</b> → {action}{note}</p>\
<table id=\"verdicts\"><thead><tr><th scope=\"col\">Metric</th><th scope=\"col\">Green bad/total</th>\
<th scope=\"col\">Blue bad/total</th><th scope=\"col\">Tolerance</th><th scope=\"col\">e (worse) vs threshold</th>\
<th scope=\"col\">e (no worse) vs threshold</th><th scope=\"col\">Verdict</th><th scope=\"col\">Why</th></tr></thead>\
<tbody>{rows}</tbody></table>",
                at = esc(&e.at),
                weight = e.weight,
                verdict = e.verdict.as_str(),
                action = esc(&e.action),
                note = e.note.as_deref().map(|n| format!(" ({})", esc(n))).unwrap_or_default(),
            )
        }
    };
    format!(
        "<section id=\"analysis\" aria-labelledby=\"analysis-h\"><h3 id=\"analysis-h\">Canary analysis</h3>\
<p>{outcome} · judging green at {weight}% since {since} · {state} · tolerances: {tolerances}</p>{last}</section>",
        outcome = esc(&a.outcome),
        weight = a.weight,
        since = esc(&a.since),
        tolerances = tolerances.join(", "),
    )
}

/// One entry of the timeline, from the ledger's marks and the analysis's evaluations.
struct Entry {
    at: u64,
    phase: Option<PhaseName>,
    weight: Option<u8>,
    text: String,
    class: &'static str,
}

fn entries(dep: &Deployment) -> Vec<Entry> {
    let mut out: Vec<Entry> = dep
        .timeline
        .iter()
        .map(|m| Entry {
            at: m.at,
            phase: Some(m.phase),
            weight: m.weight,
            text: m.note.clone(),
            class: "mark",
        })
        .collect();
    for e in dep.analysis.iter().flat_map(|a| a.evaluations.iter()) {
        out.push(Entry {
            at: e.at,
            phase: None,
            weight: Some(e.weight),
            text: format!(
                "analysis at {}%: {} → {}{}",
                e.weight,
                e.verdict.as_str(),
                e.action,
                e.note.as_deref().map(|n| format!(" ({n})")).unwrap_or_default()
            ),
            class: if e.verdict == greenlight_core::analysis::Verdict::Regressed {
                "verdict regressed"
            } else {
                "verdict"
            },
        });
    }
    out.sort_by_key(|e| e.at);
    out
}

/// The deployment over time: green's weight as a step line (SVG), then every entry.
fn timeline(dep: &Deployment, now: u64) -> String {
    let entries = entries(dep);
    let start = dep.created_at;
    let end = if dep.phase.is_terminal() {
        dep.updated_at.max(start + 1)
    } else {
        now.max(start + 1)
    };
    let (width, height) = (600.0, 120.0);
    let x = |at: u64| 10.0 + (at.saturating_sub(start) as f64 / (end - start) as f64) * (width - 20.0);
    let y = |w: u8| 10.0 + (100.0 - f64::from(w)) / 100.0 * (height - 30.0);
    // A step line: the weight holds until the next mark that records one.
    let mut points = vec![(x(start), y(0))];
    let mut current = 0u8;
    for e in entries.iter().filter(|e| e.class == "mark") {
        if let Some(w) = e.weight {
            if w != current {
                points.push((x(e.at), y(current)));
                points.push((x(e.at), y(w)));
                current = w;
            }
        }
    }
    points.push((x(end), y(current)));
    let line: Vec<String> = points.iter().map(|(px, py)| format!("{px:.1},{py:.1}")).collect();
    let dots: String = entries
        .iter()
        .filter(|e| e.class != "mark")
        .map(|e| {
            format!(
                "<circle class=\"{}\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\"><title>{}</title></circle>",
                e.class,
                x(e.at),
                y(e.weight.unwrap_or(0)),
                esc(&e.text)
            )
        })
        .collect();
    let items: String = entries
        .iter()
        .map(|e| {
            format!(
                "<li class=\"{class}\"><time datetime=\"{t}\">{t}</time> <span class=\"tag\">{phase}</span>{weight} {text}</li>",
                class = e.class,
                t = esc(&format_time(e.at)),
                phase = e.phase.map_or("analysis", PhaseName::as_str),
                weight = e.weight.map(|w| format!(" <b>{w}%</b>")).unwrap_or_default(),
                text = esc(&e.text)
            )
        })
        .collect();
    format!(
        "<figure id=\"timeline\"><svg viewBox=\"0 0 {width} {height}\" role=\"img\" aria-labelledby=\"timeline-t\">\
<title id=\"timeline-t\">Green's share of traffic from {from} to {to}, now {current}%</title>\
<line class=\"axis\" x1=\"10\" y1=\"{base}\" x2=\"{right}\" y2=\"{base}\"></line>\
<text x=\"12\" y=\"{top}\">100%</text><text x=\"12\" y=\"{lowtext}\">0%</text>\
<polyline class=\"weight\" points=\"{line}\"></polyline>{dots}</svg>\
<figcaption>Green's weight over time, with analysis verdicts as dots.</figcaption><ol class=\"entries\">{items}</ol></figure>",
        from = esc(&format_time(start)),
        to = esc(&format_time(end)),
        base = y(0),
        right = width - 10.0,
        top = y(100) + 10.0,
        lowtext = y(0) - 4.0,
        line = line.join(" "),
    )
}

fn switch_points(status: &Status) -> String {
    let rows: String = status
        .switch_points
        .iter()
        .map(|p| {
            let weights: Vec<String> = p
                .weights
                .iter()
                .map(|w| {
                    format!(
                        "<span data-tg=\"{}\">{} <b>{}%</b></span>",
                        esc(&w.name),
                        esc(&w.name),
                        w.weight
                    )
                })
                .collect();
            format!(
                "<tr><td><code title=\"{arn}\">{short}</code></td><td>{weights}</td></tr>",
                arn = esc(&p.arn),
                short = esc(p.arn.rsplit(':').next().unwrap_or(&p.arn)),
                weights = weights.join(" · ")
            )
        })
        .collect();
    format!(
        "<section><h2>Switch points</h2><table id=\"switch-points\"><thead><tr><th scope=\"col\">Listener or rule</th>\
<th scope=\"col\">Forward weights</th></tr></thead><tbody>{rows}</tbody></table>{route}</section>",
        route = status
            .test_route
            .as_deref()
            .map(|r| format!("<p>Green alone, on the test route: <code>{}</code></p>", esc(r)))
            .unwrap_or_default()
    )
}

fn targets(status: &Status) -> String {
    let rows: String = status
        .target_groups
        .iter()
        .map(|g| {
            let targets: Vec<String> = g
                .targets
                .iter()
                .map(|t| {
                    format!(
                        "<li><code>{}</code> <span class=\"health {state}\">{state}</span>{reason}</li>",
                        esc(&t.instance_id),
                        state = esc(t.state.as_str()),
                        reason = t.reason.as_deref().map(|r| format!(" ({})", esc(r))).unwrap_or_default()
                    )
                })
                .collect();
            format!(
                "<tr data-role=\"{role}\"><td>{role}</td><td>{name}</td><td>{version}</td><td>{weight}%</td><td><ul>{targets}</ul></td></tr>",
                role = esc(&g.role),
                name = esc(&g.name),
                version = or_dash(g.version.as_deref()),
                weight = g.weight,
                targets = targets.concat()
            )
        })
        .collect();
    format!(
        "<section><h2>Targets</h2><table id=\"targets\"><thead><tr><th scope=\"col\">Role</th><th scope=\"col\">Target \
group</th><th scope=\"col\">Version</th><th scope=\"col\">Weight</th><th scope=\"col\">Targets and health</th></tr>\
</thead><tbody>{rows}</tbody></table></section>"
    )
}

/// How many deployments the history table and the trend show.
pub const HISTORY_ROWS: usize = 20;

fn history_section(history: &[HistoryRow]) -> String {
    let rows: String = history
        .iter()
        .take(HISTORY_ROWS)
        .map(|h| {
            format!(
                "<tr><td>{version}</td><td><code>{id}</code></td><td>{outcome}</td><td>{by}{why}</td><td>{started}</td>\
<td>{healthy}</td><td>{ttr}</td></tr>",
                version = esc(&h.version),
                id = esc(&h.deploy_id),
                outcome = esc(h.outcome.as_str()),
                by = esc(&h.requested_by),
                why = h
                    .abort_reason
                    .as_deref()
                    .or(h.reason.as_deref())
                    .map(|r| format!(": {}", esc(r)))
                    .unwrap_or_default(),
                started = esc(&h.started_at),
                healthy = h.time_to_healthy_s.map(duration).unwrap_or_else(|| "–".into()),
                ttr = h
                    .time_to_revert_ms
                    .map(|ms| format!("{ms} ms"))
                    .unwrap_or_else(|| "–".into()),
            )
        })
        .collect();
    format!(
        "<section><h2>History</h2>{trend}<table id=\"history\"><thead><tr><th scope=\"col\">Version</th>\
<th scope=\"col\">Deployment</th><th scope=\"col\">Outcome</th><th scope=\"col\">Who and why</th>\
<th scope=\"col\">Started</th><th scope=\"col\">Time to healthy</th><th scope=\"col\">Time to revert</th></tr>\
</thead><tbody>{rows}</tbody></table></section>",
        trend = ttr_trend(history)
    )
}

/// Time-to-revert of the last rollbacks, oldest first, as an SVG line (`history` is newest
/// first).
pub fn ttr_trend(history: &[HistoryRow]) -> String {
    let points: Vec<(&HistoryRow, u64)> = history
        .iter()
        .take(HISTORY_ROWS)
        .filter_map(|h| h.time_to_revert_ms.map(|ms| (h, ms)))
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    if points.is_empty() {
        return "<p id=\"ttr-trend\">No rollback yet: the time-to-revert trend appears after the first.</p>".into();
    }
    let (width, height) = (600.0, 100.0);
    let max = points.iter().map(|(_, ms)| *ms).max().unwrap_or(1).max(1) as f64;
    let step = if points.len() > 1 {
        (width - 20.0) / (points.len() - 1) as f64
    } else {
        0.0
    };
    let coords: Vec<(f64, f64)> = points
        .iter()
        .enumerate()
        .map(|(i, (_, ms))| {
            (
                10.0 + step * i as f64,
                10.0 + (1.0 - *ms as f64 / max) * (height - 30.0),
            )
        })
        .collect();
    let line: Vec<String> = coords.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
    let dots: String = coords
        .iter()
        .zip(&points)
        .map(|((x, y), (h, ms))| {
            format!(
                "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"4\"><title>{} {}: {ms} ms</title></circle>",
                esc(&h.version),
                esc(&h.started_at)
            )
        })
        .collect();
    format!(
        "<figure id=\"ttr-trend\" data-points=\"{n}\"><svg viewBox=\"0 0 {width} {height}\" role=\"img\" \
aria-labelledby=\"ttr-t\"><title id=\"ttr-t\">Time to revert of the last {n} rollbacks, up to {max} ms</title>\
<polyline class=\"ttr\" points=\"{line}\"></polyline>{dots}<text x=\"12\" y=\"{label}\">max {max} ms</text></svg>\
<figcaption>Time from the rollback event to traffic back, last {n} rollbacks (oldest left).</figcaption></figure>",
        n = points.len(),
        max = max as u64,
        line = line.join(" "),
        label = height - 6.0,
    )
}

/// The page for a service the ledger does not know (404).
pub fn not_found(ctx: &Context, service: &str) -> String {
    layout(
        ctx,
        "Not found",
        &format!(
            "<h1>Not found</h1><p id=\"not-found\">No service called <b>{}</b> is registered in table {}. \
<a href=\"/\">All services</a></p>",
            esc(service),
            esc(&ctx.table)
        ),
    )
}

/// The answer to an action posted without JavaScript.
pub fn action_result(ctx: &Context, service: &str, ok: bool, message: &str) -> String {
    layout(
        ctx,
        service,
        &format!(
            "<h1>{name}</h1><p id=\"message\" class=\"{class}\" role=\"status\">{message}</p>\
<p><a href=\"/services/{name}\">Back to {name}</a></p>",
            name = esc(service),
            class = if ok { "ok" } else { "refused" },
            message = esc(message)
        ),
    )
}

/// A failure to read AWS, shown in place of the live part (the stream keeps trying).
pub fn read_error(message: &str) -> String {
    format!(
        "<p class=\"refused\" role=\"alert\">Could not read AWS: {}</p>",
        esc(message)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_from_the_ledger_is_escaped() {
        assert_eq!(
            esc(r#"<script>"a" & 'b'</script>"#),
            "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/script&gt;"
        );
        let ctx = Context {
            account: "1".into(),
            region: "r".into(),
            table: "t".into(),
            bus: "b".into(),
            token: "tok".into(),
        };
        let page = not_found(&ctx, "<img src=x onerror=alert(1)>");
        assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;"), "{page}");
        assert!(!page.contains("<img"), "{page}");
    }

    #[test]
    fn the_analysis_shows_each_metrics_numbers_and_why() {
        use crate::view::{CountsView, EvaluationView, MetricVerdictView, ToleranceView};
        use greenlight_core::analysis::{Real, Verdict};
        let c = |bad, total| CountsView {
            bad,
            total,
            rate: Real(bad as f64 / total as f64),
        };
        let view = AnalysisView {
            weight: 10,
            since: "2026-12-07T10:00:00Z".into(),
            judged_for_s: 30,
            next_at: None,
            next_in_s: None,
            held_since: None,
            tolerances: vec![ToleranceView {
                metric: "error_rate".into(),
                kind: "error_rate",
                tolerance_pp: Some(Real(2.0)),
                percentile: None,
                max_ratio: None,
                text: "+2 pp".into(),
            }],
            alpha: Some(Real(0.01)),
            outcome: "regressed at 10% (error_rate)".into(),
            evaluations: 3,
            last: Some(EvaluationView {
                at: "2026-12-07T10:00:30Z".into(),
                weight: 10,
                window_from: None,
                window_to: None,
                window_s: 20,
                verdict: Verdict::Regressed,
                action: "revert".into(),
                note: None,
                metrics: vec![MetricVerdictView {
                    metric: "error_rate".into(),
                    green: c(31, 612),
                    blue: c(5, 5400),
                    tolerance: Real(0.02),
                    tolerance_text: "+2 pp".into(),
                    e_regressed: Real(1.2e6),
                    threshold_regressed: Real(200.0),
                    e_no_worse: Real(0.4),
                    threshold_no_worse: Real(200.0),
                    verdict: Verdict::Regressed,
                    explanation: "green <errs> more".into(),
                }],
            }),
        };
        let html = analysis(&view);
        for part in [
            "regressed at 10% (error_rate)",
            "judging green at 10%",
            "no further evaluation",
            "error_rate +2 pp",
            "<b>regressed</b> → revert",
            "<tr class=\"refused\"><td>error_rate</td><td>31/612 = ",
            "1.2e6 ≥ 200",
            "green &lt;errs&gt; more",
        ] {
            assert!(html.contains(part), "{part:?} in {html}");
        }
    }

    fn row(version: &str, ttr: Option<u64>) -> HistoryRow {
        HistoryRow {
            deploy_id: format!("d-{version}"),
            version: version.into(),
            ami: "ami-1".into(),
            started_at: "2026-12-07T00:00:00Z".into(),
            finished_at: None,
            outcome: PhaseName::Aborted,
            ended: true,
            abort_reason: None,
            requested_by: "alice".into(),
            reason: None,
            source: greenlight_core::model::ImageSource::Greenlight,
            rollback: false,
            promoted_by: None,
            time_to_healthy_s: None,
            reverted_by: None,
            time_to_revert_ms: ttr,
            receipt_to_revert_ms: None,
            analysis: None,
        }
    }

    #[test]
    fn the_time_to_revert_trend_draws_the_rollbacks_oldest_first() {
        assert!(ttr_trend(&[row("v1", None)]).contains("No rollback yet"));
        // Newest first, as history is: v3 (400 ms), v2 (none), v1 (800 ms).
        let svg = ttr_trend(&[row("v3", Some(400)), row("v2", None), row("v1", Some(800))]);
        assert!(svg.contains("data-points=\"2\""), "{svg}");
        // The oldest (v1, the maximum) is left and at the top; v3 is right, halfway down.
        assert!(svg.contains("points=\"10.0,10.0 590.0,45.0\""), "{svg}");
        let v1 = svg.find("v1 ").unwrap();
        let v3 = svg.find("v3 ").unwrap();
        assert!(v1 < v3, "{svg}");
        let one = ttr_trend(&[row("v1", Some(5))]);
        assert!(one.contains("points=\"10.0,10.0\""), "{one}");
    }
}
