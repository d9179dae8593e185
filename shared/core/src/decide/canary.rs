//! Canary analysis in the deployment's life: when it applies, when its next evaluation is
//! due, and what a verdict does: revert (through the same path as an alarm), go on to the
//! next step, wait one more metric period, or, at the step's deadline, the registration's
//! inconclusive action. Every evaluation is recorded with its numbers ([`Evaluation`]).
//!
//! The statistics are [`crate::analysis::judge`]'s; this module only reads its verdict.

use crate::analysis::{Analysis, AnalysisRecord, Evaluation, Inconclusive, Judgement, Observation, Policy, Verdict};
use crate::config::ServiceConfig;
use crate::model::{Deployment, Phase};
use crate::Epoch;

/// Starts judging green's new weight: called when the switch points give green `weight` %.
pub(super) fn start_window(config: &ServiceConfig, dep: &mut Deployment, weight: u8, now: Epoch) {
    if config.analysis.is_none() || dep.blue.is_none() {
        return;
    }
    let record = dep.analysis.get_or_insert_with(AnalysisRecord::default);
    record.since = now;
    record.weight = weight;
    record.next_at = now;
    record.held_since = None;
}

/// What an evaluation makes the deployment do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Call {
    /// Nothing yet: the next evaluation is due one period later (or the step holds).
    Wait(String),
    /// Go on to the next step.
    Shift(String),
    /// Traffic back to blue: green is worse than blue beyond the tolerance.
    Revert(String),
    /// The inconclusive step aborts.
    Abort(String),
}

/// Judges `dep` on `observation` at `now` and records the evaluation; what to do about it.
/// `early_pass`: a canary step (clear evidence of "no worse" ends it); false in the bake
/// window, which only watches for a regression until it ends.
pub(super) fn evaluate(
    analysis: &Analysis,
    dep: &mut Deployment,
    observation: &Observation,
    early_pass: bool,
    now: Epoch,
) -> Call {
    let weight = match dep.phase {
        Phase::Verified { weight } => weight,
        _ => 100,
    };
    let record = dep.analysis.get_or_insert_with(|| AnalysisRecord {
        since: now,
        weight,
        next_at: now,
        ..AnalysisRecord::default()
    });
    if let Some(held) = record.held_since {
        return Call::Wait(format!(
            "held at {weight}% since {}: analysis was inconclusive; waiting for promote, rollback or abort",
            crate::rfc3339::format(held)
        ));
    }
    if now < record.next_at {
        return Call::Wait(format!(
            "next analysis due at {}",
            crate::rfc3339::format(record.next_at)
        ));
    }
    let policy = Policy {
        alpha: analysis.alpha.0,
        min_requests: analysis.min_requests,
        early_pass,
    };
    let (judgement, (from, to), note, unavailable) = match observation {
        Observation::Fetched { from, to, evidence } => {
            (crate::analysis::judge(evidence, &policy), (*from, *to), None, false)
        }
        Observation::TooEarly => (
            undecided(),
            (0, 0),
            Some("no complete metric period yet".to_string()),
            false,
        ),
        Observation::Unavailable { why } => (undecided(), (0, 0), Some(format!("metrics unavailable: {why}")), true),
    };
    // Only a window actually fetched is data: a step that never had a complete metric period
    // (TooEarly at its deadline) has no more evidence than one whose metrics were unreadable.
    let fetched = matches!(observation, Observation::Fetched { .. });
    let deadline = record.since + analysis.max_step_s;
    let summary = summary(&judgement, note.as_deref());
    let call = match judgement.verdict {
        Verdict::Regressed => Call::Revert(format!("{weight}%: {summary}")),
        Verdict::NoWorse => Call::Shift(format!("green no worse than blue at {weight}%: {summary}")),
        Verdict::Continue if early_pass && now >= deadline => {
            let why = format!(
                "inconclusive after {}s at {weight}% ({summary})",
                now.saturating_sub(record.since)
            );
            match analysis.inconclusive {
                Inconclusive::Continue if fetched => Call::Shift(format!("{why}; continuing as declared")),
                Inconclusive::Hold => {
                    record.held_since = Some(now);
                    Call::Wait(format!("{why}; holding as declared: promote, roll back or abort"))
                }
                // Missing data (unreadable, or no complete period in the whole step) never
                // promotes a canary.
                Inconclusive::Continue | Inconclusive::Abort => Call::Abort(format!("analysis {why}")),
            }
        }
        Verdict::Continue => {
            record.next_at = now + analysis.period_s;
            Call::Wait(format!("analysis at {weight}%: {summary}"))
        }
    };
    // I34: missing metrics never promote; I33: a judged step moves on only on "no worse", or
    // on an inconclusive step whose registration says continue and whose data was fetched.
    debug_assert!(
        !(unavailable && matches!(call, Call::Shift(_))),
        "I34: unavailable metrics went to the next step"
    );
    debug_assert!(
        !matches!(call, Call::Shift(_))
            || judgement.verdict == Verdict::NoWorse
            || (fetched && analysis.inconclusive == Inconclusive::Continue),
        "I33: a judged step moved on without a passing verdict or a declared, fetched continue"
    );
    // I32: a regression always reverts.
    debug_assert!(
        judgement.verdict != Verdict::Regressed || matches!(call, Call::Revert(_)),
        "I32: a regression did not revert"
    );
    let action = match &call {
        Call::Wait(_) if record.held_since.is_some() => "hold",
        Call::Wait(_) => "wait",
        Call::Shift(_) => "next step",
        Call::Revert(_) => "revert",
        Call::Abort(_) => "abort",
    };
    record.push(Evaluation {
        at: now,
        weight,
        from,
        to,
        verdict: judgement.verdict,
        action: action.into(),
        metrics: judgement.metrics,
        note,
    });
    call
}

fn undecided() -> Judgement {
    Judgement {
        verdict: Verdict::Continue,
        metrics: vec![],
    }
}

/// The verdict in a line: each metric's explanation, or why there is none.
fn summary(judgement: &Judgement, note: Option<&str>) -> String {
    if let Some(note) = note {
        return note.to_string();
    }
    let lines: Vec<String> = judgement
        .metrics
        .iter()
        .map(|m| format!("{}: {}", m.metric, m.explanation))
        .collect();
    if lines.is_empty() {
        judgement.verdict.as_str().to_string()
    } else {
        lines.join("; ")
    }
}
