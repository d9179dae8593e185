//! BENCHMARKS.md: each measured section is written between `<!-- bench:NAME -->` and
//! `<!-- /bench:NAME -->`; a section not measured this time keeps its last figures, and
//! everything outside the markers (the method notes, the before → after record) is left as
//! it is. A missing file or marker is created at the end.

use crate::calls::Scenario;
use crate::functions::{ColdStarts, FunctionFigures};
use crate::machine::Machine;
use crate::revert::Reverts;
use crate::scale::{EmulatorScale, SimScale};
use crate::stats::{show, Summary};
use crate::Options;
use std::collections::BTreeSet;
use std::fmt::Write;
use std::path::Path;

/// The size goal per binary.
pub const SIZE_GOAL_BYTES: u64 = 6 * 1024 * 1024;
/// The peak resident memory goal per process.
pub const RSS_GOAL_MIB: f64 = 64.0;

/// Everything measured in one benchmark run (None: not measured this time).
#[derive(Debug)]
pub struct Results {
    pub machine: Machine,
    pub options: Options,
    pub sizes: Option<Vec<FunctionFigures>>,
    pub cold: Option<ColdStarts>,
    pub calls: Option<Vec<Scenario>>,
    pub reverts: Option<Reverts>,
    pub scale: Option<EmulatorScale>,
    pub sim: Option<Vec<SimScale>>,
    pub analysis: Option<crate::analysis::Figures>,
    pub canary: Option<crate::canary::Canaries>,
}

/// Rewrites the sections measured in `results` in the report at `path`.
pub fn update(path: &Path, results: &Results) -> Result<(), String> {
    let mut text = std::fs::read_to_string(path).unwrap_or_else(|_| "# Benchmarks\n".into());
    let run = run_section(results);
    let mut sections = vec![("run", run)];
    if let Some(sizes) = &results.sizes {
        sections.push(("sizes", sizes_section(sizes)));
    }
    if let Some(cold) = &results.cold {
        sections.push((
            "cold",
            cold_section(cold, results.options.runs, &build(&results.options)),
        ));
    }
    if let Some(calls) = &results.calls {
        sections.push(("calls", calls_section(calls)));
    }
    if let Some(reverts) = &results.reverts {
        sections.push(("revert", revert_section(reverts, &build(&results.options))));
    }
    if let Some(scale) = &results.scale {
        sections.push((
            "scale",
            scale_section(scale, results.sim.as_deref().unwrap_or_default()),
        ));
    }
    if let Some(canary) = &results.canary {
        sections.push(("canary", crate::canary::section(canary)));
    }
    if let Some(analysis) = &results.analysis {
        sections.push(("analysis", crate::analysis::section(analysis)));
    }
    for (name, body) in sections {
        text = replace_section(&text, name, &body);
    }
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Which build of the functions ran: release, or a debug build (unoptimised: an upper bound).
fn build(options: &Options) -> String {
    let dir = options.binaries.display().to_string();
    if dir.ends_with("release") {
        format!("this machine's release bootstrap, `{dir}`")
    } else {
        format!("**a debug build** (unoptimised, so an upper bound of the release figures), `{dir}`")
    }
}

/// `text` with section `name` replaced by `body` (appended if it has no such section).
fn replace_section(text: &str, name: &str, body: &str) -> String {
    let (open, close) = (format!("<!-- bench:{name} -->"), format!("<!-- /bench:{name} -->"));
    let block = format!("{open}\n{}\n{close}", body.trim_end());
    match (text.find(&open), text.find(&close)) {
        (Some(start), Some(end)) if end > start => {
            format!("{}{block}{}", &text[..start], &text[end + close.len()..])
        }
        _ => format!("{}\n\n{block}\n", text.trim_end()),
    }
}

fn run_section(results: &Results) -> String {
    let m = &results.machine;
    let o = &results.options;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Last run: **{}** at commit `{}`, measured by `{}`",
        m.date, m.commit, o.command
    );
    let _ = writeln!(out, "(sections this time: {}).\n", o.only.join(", "));
    let _ = writeln!(out, "| machine | |\n|---|---|");
    let _ = writeln!(out, "| CPU | {} |", m.cpu);
    let _ = writeln!(out, "| cores | {} |", m.cores);
    let _ = writeln!(out, "| memory | {:.1} GiB |", m.memory_gib);
    let _ = writeln!(out, "| OS | {} |", m.os);
    let _ = writeln!(out, "| toolchain | {} |", m.rustc);
    out
}

fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / 1024.0 / 1024.0)
}

fn against_goal(bytes: u64) -> String {
    if bytes <= SIZE_GOAL_BYTES {
        format!("met ({} under)", mib(SIZE_GOAL_BYTES - bytes))
    } else {
        format!("**missed by {}**", mib(bytes - SIZE_GOAL_BYTES))
    }
}

fn sizes_section(sizes: &[FunctionFigures]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "The one stripped release binary every function runs, each with its own `Handler` \
         (`opt-level = \"z\"`, LTO, one codegen unit, `panic = \"abort\"`). \
         Goal: ≤ 6 MiB. The arm64 column is what Lambda runs (`make lambdas`; empty if not built).\n"
    );
    let _ = writeln!(
        out,
        "| binary | x86_64 (measured below) | arm64 `bootstrap` | goal (arm64, else x86_64) |"
    );
    let _ = writeln!(out, "|---|---:|---:|---|");
    for f in sizes {
        let x86 = f.size_bytes.map_or("not built".into(), mib);
        let arm = f.arm64_size_bytes.map_or("not built".into(), mib);
        let goal = f.arm64_size_bytes.or(f.size_bytes).map_or("n/a".into(), against_goal);
        let _ = writeln!(out, "| {} | {x86} | {arm} | {goal} |", f.name);
    }
    out
}

fn cold_section(cold: &ColdStarts, runs: usize, build: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Each run starts every function as a fresh process of the one bootstrap, each with its own \
         `_HANDLER` ({}), one at a time (each once the one before \
         has finished its init, so that no two inits contend for the cores), behind the \
         fake Lambda Runtime API, the AWS endpoint on the emulator, and drives them through a real rollout, \
         a rollback in the bake window and a promote request. {runs} runs; min / median / max. \
         *init*: process start → first `/invocation/next` (logging, AWS config and clients built); \
         *first*: the cold invocation (event handed over → answer); *warm*: every later invocation; \
         *peak RSS*: the process's `VmHWM` after the run. Goal: peak RSS ≤ 64 MiB.\n",
        build
    );
    let _ = writeln!(
        out,
        "| function | init (ms) | first invocation (ms) | warm invocations (ms) | peak RSS (MiB) | goal | first invocation did |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---|---|");
    for f in &cold.functions {
        let goal = match Summary::of(&f.peak_rss_mib) {
            Some(s) if s.max <= RSS_GOAL_MIB => format!("met ({:.0} MiB under)", RSS_GOAL_MIB - s.max),
            Some(s) => format!("**missed by {:.1} MiB**", s.max - RSS_GOAL_MIB),
            None => "n/a".into(),
        };
        let did: String = f.first_did.chars().take(70).collect::<String>().replace('|', "/");
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {goal} | `{did}` |",
            f.name,
            show(&f.init_ms, 1),
            show(&f.first_ms, 1),
            show(&f.warm_ms, 1),
            show(&f.peak_rss_mib, 1),
        );
    }
    let overhead = Summary::of(&cold.overhead_ms);
    let poll_ms = cold.poll_interval_s as f64 * 1000.0;
    let verdict = match overhead {
        Some(s) if s.max <= poll_ms => format!("met: the slowest was {:.0} ms under", poll_ms - s.max),
        Some(s) => format!("**missed: the slowest was {:.0} ms over**", s.max - poll_ms),
        None => "not measured".into(),
    };
    let _ = writeln!(
        out,
        "\n**Pipeline overhead**, green healthy (every registered target `healthy`, sampled every {} ms) → first \
         listener change, over {} deployments: **{} ms** (min / median / max). Goal: ≤ one health poll interval \
         ({} s here): {verdict}.",
        crate::functions::SAMPLE_EVERY.as_millis(),
        cold.overhead_ms.len(),
        show(&cold.overhead_ms, 0),
        cold.poll_interval_s
    );
    out
}

fn calls_section(scenarios: &[Scenario]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Calls the function processes made, counted by the emulator per access key (each function signs with \
         its own), per `service:Operation`. SDK retries count as calls (there were no faults). \
         DynamoDB capacity is computed by the emulator for every request the way DynamoDB does (item sizes, \
         1 KB write units, 4 KB read units, transactions ×2); the ledger adapter does not ask for it \
         (`ReturnConsumedCapacity`), the emulator answers it to a client that does.\n"
    );
    let operations: BTreeSet<&String> = scenarios.iter().flat_map(|s| s.calls.keys()).collect();
    let _ = write!(out, "| operation |");
    for s in scenarios {
        let _ = write!(out, " {} |", s.name);
    }
    let _ = writeln!(out, " grows with instances? |");
    let _ = writeln!(out, "|---|{}---|", "---:|".repeat(scenarios.len()));
    let deploys: Vec<&Scenario> = scenarios.iter().filter(|s| s.name.starts_with("deploy")).collect();
    for op in &operations {
        let _ = write!(out, "| `{op}` |");
        for s in scenarios {
            let _ = write!(out, " {} |", s.calls.get(*op).copied().unwrap_or(0));
        }
        let counts: BTreeSet<u64> = deploys.iter().map(|s| s.calls.get(*op).copied().unwrap_or(0)).collect();
        let grows = if counts.len() > 1 {
            format!("**varies: {}**", growth_note(op))
        } else {
            "no".into()
        };
        let _ = writeln!(out, " {grows} |");
    }
    let row = |out: &mut String, label: &str, cell: &dyn Fn(&Scenario) -> String| {
        let cells: Vec<String> = scenarios.iter().map(cell).collect();
        let _ = writeln!(out, "| {label} | {} | |", cells.join(" | "));
    };
    row(&mut out, "**total**", &|s| format!("**{}**", s.total()));
    row(&mut out, "DynamoDB read / write units", &|s| {
        format!("{:.1} / {:.1}", s.read_units, s.write_units)
    });
    row(&mut out, "conditional-write conflicts", &|s| {
        s.conditional_failures.to_string()
    });
    row(&mut out, "wall time (s)", &|s| format!("{:.1}", s.wall.as_secs_f64()));

    let functions: BTreeSet<&String> = scenarios.iter().flat_map(|s| s.by_function.keys()).collect();
    let _ = writeln!(out, "\nCalls per function:\n");
    let _ = write!(out, "| function |");
    for s in scenarios {
        let _ = write!(out, " {} |", s.name);
    }
    let _ = writeln!(out, "\n|---|{}", "---:|".repeat(scenarios.len()));
    for f in functions {
        let _ = write!(out, "| {f} |");
        for s in scenarios {
            let _ = write!(out, " {} |", s.by_function.get(f).copied().unwrap_or(0));
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(
        out,
        "\nThe fast revert's own path is asserted by a deterministic test in `make test` \
         (`e2e revert::the_fast_path_is_two_aws_calls_from_event_to_traffic_back`): an engineer's rollback is \
         2 sequential AWS calls from event to traffic back (claim the revert in the ledger, modify the listener); \
         an alarm's is the same after its own claim on the alarm, the pointer claim running concurrently with the \
         listener change. The rest of the fast revert's calls (report, metrics, clean-up execution) come after \
         traffic is back."
    );
    out
}

/// Why an operation's count may differ between fleet sizes.
fn growth_note(op: &str) -> &'static str {
    match op {
        "elasticloadbalancing:DescribeTargetHealth" | "ec2:DescribeInstances" => {
            "health polls until every target is healthy (time, not a call per instance)"
        }
        _ => "see the notes below",
    }
}

fn revert_section(r: &Reverts, build: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Services in their bake window (the old version warm); for each, one trigger published on the event bus, \
         then the listener read every {} ms until it forwards everything to the warm version. The event travels \
         bus → rule → queue → the event source → revert-service's process ({}). \
         min / median / max, ms. The invocation column is revert-service's whole invocation: traffic goes back \
         inside it, then the report, the metrics and the clean-up execution follow.\n",
        crate::revert::POLL.as_millis(),
        build
    );
    let _ = writeln!(
        out,
        "| trigger | runs | event published → listener on the warm version | revert-service invocation, whole |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|");
    let _ = writeln!(
        out,
        "| engineer's `RollbackRequested` | {} | **{}** | {} |",
        r.rollback_ms.len(),
        show(&r.rollback_ms, 1),
        show(&r.rollback_invocation_ms, 1)
    );
    let _ = writeln!(
        out,
        "| CloudWatch alarm → `ALARM` | {} | **{}** | {} |",
        r.alarm_ms.len(),
        show(&r.alarm_ms, 1),
        show(&r.alarm_invocation_ms, 1)
    );
    out
}

fn scale_section(e: &EmulatorScale, sim: &[SimScale]) -> String {
    let mut out = String::new();
    let per = |n: f64| n / e.services.max(1) as f64;
    let total: u64 = e.calls.values().sum();
    let verdict = if e.lost.is_empty() && e.duplicated.is_empty() && e.stuck.is_empty() {
        "**0 lost, 0 duplicated, 0 stuck**".to_string()
    } else {
        format!(
            "**lost {:?}, duplicated {:?}, stuck {:?}**",
            e.lost, e.duplicated, e.stuck
        )
    };
    let _ = writeln!(
        out,
        "**On the emulator**: {} services registered in one table, {} instances each, every image published at \
         once; handlers in-process, as many at a time as events arrive (the local orchestrator plays Step Functions, \
         so `states:StartExecution` is not among the calls). Fixtures took {:.0} s (not counted).\n",
        e.services,
        e.instances_per_service,
        e.setup.as_secs_f64()
    );
    let _ = writeln!(out, "| figure | value |\n|---|---|");
    let _ = writeln!(
        out,
        "| wall time, all published → all ended | {:.1} s |",
        e.wall.as_secs_f64()
    );
    let _ = writeln!(out, "| deployments succeeded | {} of {} |", e.succeeded, e.services);
    if !e.not_succeeded.is_empty() {
        let ended: Vec<String> = e
            .not_succeeded
            .iter()
            .map(|line| line.chars().take(200).collect::<String>().replace('|', "/"))
            .collect();
        let _ = writeln!(out, "| ended otherwise (phase, last note) | {} |", ended.join("; "));
    }
    let _ = writeln!(out, "| outcome | {verdict} |");
    let _ = writeln!(
        out,
        "| each deployment, created → ended (s) | {} |",
        show(&e.deployment_s, 0)
    );
    let _ = writeln!(
        out,
        "| AWS calls (total / per deployment) | {total} / {:.1} |",
        per(total as f64)
    );
    let _ = writeln!(
        out,
        "| DynamoDB units per deployment (read / write) | {:.1} / {:.1} |",
        per(e.read_units),
        per(e.write_units)
    );
    let _ = writeln!(
        out,
        "| conditional-write conflicts met (all resolved: every deployment ended) | {} (+ {} transaction conflicts) |",
        e.conditional_failures, e.transaction_conflicts
    );
    let _ = writeln!(out, "\nCalls per deployment, by operation:\n");
    let _ = writeln!(out, "| operation | per deployment |\n|---|---:|");
    for (op, n) in &e.calls {
        let _ = writeln!(out, "| `{op}` | {:.2} |", per(*n as f64));
    }
    if !sim.is_empty() {
        let _ = writeln!(
            out,
            "\n**In the simulator** (`greenlight-sim scale`): the real handlers and `decide` on an in-memory AWS and \
             ledger, simulated time; every service publishes its image at the same instant; no faults, except in the last row.\n"
        );
        let _ = writeln!(
            out,
            "| services | faults (crash / dup / race %) | wall time (s) | deployments (succeeded / aborted) | lost / dup / stuck | AWS calls per deployment | handler runs per deployment | DynamoDB units per deployment (read / write, estimated) | conflicts met / resolved |"
        );
        let _ = writeln!(out, "|---:|---|---:|---|---|---:|---:|---|---|");
        for s in sim {
            let _ = writeln!(
                out,
                "| {} | {} / {} / {} | {:.1} | {} / {} | {} / {} / {} | {:.1} | {:.1} | {:.0} / {:.0} | {} / {} |",
                s.services,
                s.crash_pct,
                s.duplicate_pct,
                s.race_pct,
                s.wall_time_s,
                s.deployments_succeeded,
                s.deployments_aborted,
                s.lost,
                s.duplicated,
                s.stuck,
                s.aws_calls_per_deployment,
                s.handler_invocations_per_deployment,
                s.read_units_per_deployment,
                s.write_units_per_deployment,
                s.conflicts,
                s.conflicts_resolved
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::replace_section;

    #[test]
    fn sections_are_replaced_in_place_or_appended() {
        let text = "# B\n\nintro\n\n<!-- bench:a -->\nold\n<!-- /bench:a -->\n\nnotes\n";
        let replaced = replace_section(text, "a", "new");
        assert_eq!(
            replaced,
            "# B\n\nintro\n\n<!-- bench:a -->\nnew\n<!-- /bench:a -->\n\nnotes\n"
        );
        let appended = replace_section(&replaced, "b", "more\n");
        assert!(
            appended.ends_with("notes\n\n<!-- bench:b -->\nmore\n<!-- /bench:b -->\n"),
            "{appended}"
        );
        assert_eq!(replace_section(&appended, "b", "more"), appended);
    }
}
