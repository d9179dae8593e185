//! `greenlight-sim`: runs seeds of the deterministic simulation and prints what they covered.
//! A broken invariant prints the seed, the violation and the steps that led there, and exits 1.
//! `greenlight-sim scale` runs the benchmarks' scale scenario ([`greenlight_sim::scale`]) and
//! prints its report (a table, or one JSON object with `--json`).

use greenlight_sim::{run, run_traced, scale, Options, ScaleOptions, Stats};
use std::process::ExitCode;
use std::time::Instant;

const HELP: &str = "greenlight-sim: seeded simulation of greenlight's handlers on an in-memory AWS

USAGE: greenlight-sim [--seed N] [--runs M] [--steps S] [--services K] [--crash-pct P] [--duplicate-pct P] [--no-reconcile-in-chaos] [--one-switch-point] [--trace]
       greenlight-sim scale --services K [--instances N] [--seed S] [--crash-pct P] [--duplicate-pct P] [--race-pct P] [--json]

Seed runs (the default): random services, images, alarms, rollbacks, aborts and faults; the
invariants are checked after every step.

  --seed N           first seed (default 1); seeds N..N+M-1 are run
  --runs M           how many seeds (default 100)
  --steps S          chaos steps per run before faults stop and the run settles (default 300)
  --services K       services sharing the ledger (default 3)
  --crash-pct P      chance (%) a handler crashes after one of its AWS calls (default 15)
  --duplicate-pct P  chance (%) an event or task is delivered again, late (default 15)
  --no-reconcile-in-chaos
                     the scheduled reconcile (every 5 simulated minutes: stuck work, re-paves in
                     about half the runs) only once faults stop: replays a trajectory pinned
                     before it existed (the regression seeds)
  --one-switch-point every service behind one plain listener whose groups drain for the
                     registration's delay (no rules, frames or delays of their own): with
                     --no-reconcile-in-chaos, replays a regression seed's trajectory
  --trace            print every step of each run (use with --runs 1)

A failing seed reproduces exactly: rerun it with --seed N --runs 1 --trace.

scale: the benchmarks' scenario. K services registered in the one ledger, each live on v1
(the README's example registration: canary 10/50/100 %, one-hour bake); v2 of every service
published at the same instant; everything run until nothing is left. Prints what it cost:
deployments (lost, duplicated and stuck must all be 0, else exit 1 with the details), the AWS
requests the real adapters would send (total, per deployment, per operation such as
ec2:RunInstances), DynamoDB reads, writes, conditional-write conflicts and estimated capacity
units, Lambda invocations, simulated time to finish and wall time.

  --services K       services, each deploying once (default 100)
  --instances N      instances per fleet (default 3)
  --seed S           seed (default 1)
  --crash-pct P      chance (%) an invocation crashes after one of its AWS calls (default 0)
  --duplicate-pct P  chance (%) an event or task is delivered again, later (default 0)
  --race-pct P       chance (%) an event or task is delivered twice at once, the two runs'
                     AWS calls interleaved: where conflicts come from (default 0)
  --json             print the report as one JSON object (for a benchmark table)

Faults stay on for the whole run, as in AWS: an event whose three deliveries all crash goes
to the dead-letter queue (its image then counts as lost), a task that fails all its retries
aborts its deployment (a final phase, counted as aborted).

Progress goes to stderr every few seconds. Example:
  greenlight-sim scale --services 10000
  greenlight-sim scale --services 20 --crash-pct 15 --duplicate-pct 15 --race-pct 15 --json";

/// A number argument's value, or the usage and exit 2.
fn number(name: &str, text: Option<String>) -> u64 {
    let text = text.unwrap_or_default();
    text.parse().unwrap_or_else(|_| {
        eprintln!("{name} needs a number, got {text:?}\n\n{HELP}");
        std::process::exit(2)
    })
}

/// `greenlight-sim scale ...`: one scale run, its report on stdout.
fn scale_command(mut args: impl Iterator<Item = String>) -> ExitCode {
    let mut options = ScaleOptions::new(100);
    options.progress = true;
    let mut as_json = false;
    while let Some(arg) = args.next() {
        let mut value = |name: &str| number(name, args.next());
        match arg.as_str() {
            "--services" => options.services = value("--services").max(1) as usize,
            "--instances" => options.instances = value("--instances").max(1) as u32,
            "--seed" => options.seed = value("--seed"),
            "--crash-pct" => options.crash_pct = value("--crash-pct"),
            "--duplicate-pct" => options.duplicate_pct = value("--duplicate-pct"),
            "--race-pct" => options.race_pct = value("--race-pct"),
            "--json" => as_json = true,
            "-h" | "--help" => {
                println!("{HELP}");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("unknown argument to scale {other:?}\n\n{HELP}");
                return ExitCode::from(2);
            }
        }
    }
    match scale(options) {
        Ok(report) if as_json => {
            println!("{}", report.to_json());
            ExitCode::SUCCESS
        }
        Ok(report) => {
            println!("{}", report.table());
            ExitCode::SUCCESS
        }
        Err(failure) => {
            eprintln!("{failure}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("scale") {
        args.next();
        return scale_command(args);
    }
    let (mut first, mut runs, mut trace) = (1u64, 100u64, false);
    let mut options = Options::new(0);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| number(name, args.next());
        match arg.as_str() {
            "--seed" => first = value("--seed"),
            "--runs" => runs = value("--runs"),
            "--steps" => options.steps = value("--steps") as u32,
            "--services" => options.services = value("--services").max(1) as usize,
            "--crash-pct" => options.crash_pct = value("--crash-pct"),
            "--duplicate-pct" => options.duplicate_pct = value("--duplicate-pct"),
            "--trace" => trace = true,
            "--no-reconcile-in-chaos" => options.reconcile_in_chaos = false,
            "--one-switch-point" => options.topology = false,
            "-h" | "--help" => {
                println!("{HELP}");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("unknown argument {other:?}\n\n{HELP}");
                return ExitCode::from(2);
            }
        }
    }
    let started = Instant::now();
    let mut total = Stats::default();
    for seed in first..first + runs {
        let options = Options {
            seed,
            ..options.clone()
        };
        let result = if trace {
            let (result, lines) = run_traced(options);
            for line in lines {
                println!("{line}");
            }
            result
        } else {
            run(options)
        };
        match result {
            Ok(stats) => {
                if stats.reconciled_settling > 0 {
                    eprintln!("seed {seed}: the scheduled reconcile finished work once faults stopped");
                }
                total.add(&stats)
            }
            Err(failure) => {
                eprintln!("{failure}");
                return ExitCode::FAILURE;
            }
        }
        if runs >= 1000 && (seed - first + 1) % 1000 == 0 {
            eprintln!("{} seeds done ({:.0?})", seed - first + 1, started.elapsed());
        }
    }
    println!(
        "seeds {first}..={} passed in {:.1?}",
        first + runs - 1,
        started.elapsed()
    );
    println!("{total:#?}");
    ExitCode::SUCCESS
}
