//! A real canary of a bad build on the local emulator (section `canary`): the load generator
//! sends 100 requests a second through the service's listener, the emulator's ALB data plane
//! splits them by the canary's weights, and v2's instances pass every health check but
//! answer 5 % of user requests with a 500. The handlers run in-process (the local runner);
//! analysis judges v2 against v1 on the emulator's `AWS/ApplicationELB` metrics, published
//! every second here (AWS: every 60 s). A watcher reads the listener every [`POLL`] and
//! notes when green first got weight (its first user requests follow within a tenth of a
//! second at 10 requests a second) and when it lost it (traffic back).

use crate::Progress;
use greenlight_core::model::{Phase, PhaseName};
use greenlight_e2e::{started, App, AppTraits, Env};
use greenlight_local::data_plane;
use greenlight_local::fixture::Spec;
use greenlight_local::load::{run_load, LoadSpec};
use greenlight_local::orchestrator::Ending;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// How often the listener is read.
pub const POLL: Duration = Duration::from_millis(20);
/// Requests per second through the listener.
pub const RPS: u32 = 100;
/// v2's error rate (%).
pub const ERROR_PCT: f64 = 5.0;

/// One canary's outcome.
#[derive(Debug, Clone)]
pub struct Run {
    /// The weight green had when analysis reverted it (None: not reverted by analysis).
    pub caught_at: Option<u8>,
    /// Green first weighted → the listener forwarding nothing to it again (ms).
    pub to_traffic_back_ms: Option<f64>,
    /// Evaluations until the verdict, and green's requests in the window judged.
    pub evaluations: usize,
    pub green_requests: u64,
    pub green_errors: u64,
}

/// What the section reports.
#[derive(Debug, Clone)]
pub struct Canaries {
    pub runs: Vec<Run>,
}

/// `runs` canaries of the bad build, one after the other.
pub async fn bad_builds(runs: usize, progress: &Progress) -> Canaries {
    let mut out = Vec::new();
    for i in 0..runs {
        progress.say(&format!("canary: bad build {} of {runs}", i + 1));
        out.push(one().await);
    }
    Canaries { runs: out }
}

async fn one() -> Run {
    let analysis = serde_json::from_value(serde_json::json!({
        "metrics": [{"error_rate": {"tolerance_pp": 0.5}}],
        "period_s": 1, "lag_s": 1, "max_step_s": 120, "min_requests": 100
    }))
    .expect("a valid analysis");
    let env = Env::new("bench-canary", |s| Spec {
        canary_steps: vec![10, 50, 100],
        step_wait_s: 0,
        analysis: Some(analysis),
        ..Spec::quick(s)
    })
    .await;
    let url = data_plane::listener_url(greenlight_e2e::endpoint(), &env.world.listener_arn)
        .await
        .expect("the listener's data plane URL");
    let spec = LoadSpec::new(&format!("{url}/"), RPS, Duration::from_secs(300)).expect("a load spec");
    let load = tokio::spawn(async move {
        run_load(&spec, |_, _| {}).await;
    });
    let traits = AppTraits {
        error_pct: Some(ERROR_PCT),
        ..AppTraits::default()
    };
    let ami = env.image_with("v2", App::Healthy, traits).await;
    env.publish("v2", &ami).await;
    let id = started(&env.deliver(1).await[0]);

    // Watch the listener: green weighted, then back to none.
    let point = env.world.config.switch.points()[0].clone();
    let green_tg = env.world.config.target_groups[1].clone();
    let lb = env.local.ports.lb.clone();
    let (mut weighted, mut back) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(240);
    while back.is_none() && Instant::now() < deadline {
        let weights = lb.traffic(&point).await.unwrap_or_default();
        let green = weights.iter().any(|(tg, w)| *tg == green_tg && *w > 0);
        match (weighted, green) {
            (None, true) => weighted = Some(Instant::now()),
            (Some(_), false) => back = Some(Instant::now()),
            _ => {}
        }
        let phase = env.ledger(Some(&id)).await.deployment.map(|d| d.phase);
        if phase.as_ref().is_some_and(Phase::is_terminal) && weighted.is_none() {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    let ending = env.wait(&id).await;
    load.abort();
    let dep = env.deployment(&id).await;
    let reverted = dep.revert.as_ref().is_some_and(|r| r.requested_by == "analysis");
    let evaluations = dep.analysis.as_ref().map_or(0, |a| a.evaluations.len());
    let last = dep
        .analysis
        .as_ref()
        .and_then(|a| a.evaluations.last())
        .and_then(|e| e.metrics.first());
    Run {
        caught_at: (reverted && ending == Ending::Done(PhaseName::Aborted)).then_some(dep.max_weight),
        to_traffic_back_ms: weighted.zip(back).map(|(w, b)| crate::stats::ms(b.duration_since(w))),
        evaluations,
        green_requests: last.map_or(0, |m| m.green.total),
        green_errors: last.map_or(0, |m| m.green.bad),
    }
}

/// The section's Markdown.
pub fn section(c: &Canaries) -> String {
    let mut out = String::new();
    let caught = c.runs.iter().filter(|r| r.caught_at == Some(10)).count();
    let _ = writeln!(
        out,
        "{} canaries of a build answering {ERROR_PCT} % of user requests with a 500 (health checks and smoke test pass), {RPS} requests/s through the emulated ALB, canary 10 → 50 → 100, tolerance 0.5 points, α = 0.01, 1 s metric periods and 1 s of lag; reverted by analysis at the 10 % step in {caught} of {}.\n",
        c.runs.len(),
        c.runs.len()
    );
    let _ = writeln!(
        out,
        "| run | caught at | green weighted → traffic back | evaluations | green requests judged (5xx) |"
    );
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|");
    for (i, r) in c.runs.iter().enumerate() {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} ({}) |",
            i + 1,
            r.caught_at.map_or("not caught".into(), |w| format!("{w} %")),
            r.to_traffic_back_ms.map_or("-".into(), |t| format!("{t:.0} ms")),
            r.evaluations,
            r.green_requests,
            r.green_errors
        );
    }
    out
}
