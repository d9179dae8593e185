//! `greenlight-sim`: runs seeds of the deterministic simulation and prints what they covered.
//! A broken invariant prints the seed, the violation and the steps that led there, and exits 1.

use greenlight_sim::{run, run_traced, Options, Stats};
use std::process::ExitCode;
use std::time::Instant;

const HELP: &str = "greenlight-sim: seeded simulation of greenlight's handlers on an in-memory AWS

USAGE: greenlight-sim [--seed N] [--runs M] [--steps S] [--services K] [--crash-pct P] [--duplicate-pct P] [--trace]

  --seed N           first seed (default 1); seeds N..N+M-1 are run
  --runs M           how many seeds (default 100)
  --steps S          chaos steps per run before faults stop and the run settles (default 300)
  --services K       services sharing the ledger (default 3)
  --crash-pct P      chance (%) a handler crashes after one of its AWS calls (default 15)
  --duplicate-pct P  chance (%) an event or task is delivered again, late (default 15)
  --trace            print every step of each run (use with --runs 1)

A failing seed reproduces exactly: rerun it with --seed N --runs 1 --trace.";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (mut first, mut runs, mut trace) = (1u64, 100u64, false);
    let mut options = Options::new(0);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| -> u64 {
            let text = args.next().unwrap_or_default();
            text.parse().unwrap_or_else(|_| {
                eprintln!("{name} needs a number, got {text:?}\n\n{HELP}");
                std::process::exit(2)
            })
        };
        match arg.as_str() {
            "--seed" => first = value("--seed"),
            "--runs" => runs = value("--runs"),
            "--steps" => options.steps = value("--steps") as u32,
            "--services" => options.services = value("--services").max(1) as usize,
            "--crash-pct" => options.crash_pct = value("--crash-pct"),
            "--duplicate-pct" => options.duplicate_pct = value("--duplicate-pct"),
            "--trace" => trace = true,
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
            Ok(stats) => total.add(&stats),
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
