//! `greenlight-bench`: measures the shipped functions and the whole system on the local AWS
//! emulator, and writes the figures into BENCHMARKS.md (between its `bench:` markers; the
//! hand-written parts stay). `make bench` builds the release binaries first and runs this.

mod analysis;
mod calls;
mod canary;
mod functions;
mod machine;
mod report;
mod revert;
mod scale;
mod stats;

use std::path::PathBuf;
use std::time::Instant;

const HELP: &str = "\
greenlight-bench — measure greenlight and write BENCHMARKS.md

USAGE:
    greenlight-bench [OPTIONS]          (usually through `make bench`)

Sections (all by default; --only picks some, the others keep their last figures):
    sizes    stripped size of the one bootstrap every function runs (this machine's release
             build, and the arm64 bootstrap of `make lambdas` when present); goal ≤ 6 MiB
    cold     every function as a fresh process of the bootstrap (its own _HANDLER) behind
             the fake Lambda Runtime API: init
             (process start → first /invocation/next), first (cold) and warm invocations,
             peak resident memory (goal ≤ 64 MiB); plus the pipeline's overhead, green
             healthy → first traffic change (goal ≤ one health poll interval)
    calls    AWS calls per service and operation: deployments of 1, 10 and 50 instances,
             a canary, a fast revert and a slow revert
    revert   time-to-revert: rollback event / alarm event published → listener back on the
             warm version
    scale    many services rolling out at once on the emulator, then in the simulator
    canary   a real canary of a 5 %-error build through the emulator's ALB data plane, judged
             by canary analysis: the step it is caught at, green weighted → traffic back
    analysis canary analysis by Monte Carlo (pure: no emulator, no release build): false
             aborts, periods until a regression is caught, early passes; greenlight's
             e-processes beside Flagger-style and Kayenta-style checks on the same streams

OPTIONS:
    --runs N            cold-start runs (default 5)
    --revert-runs N     reverts per trigger (default 20)
    --services N        services at once on the emulator (default 100)
    --sim-services L    comma-separated service counts for the simulator (default 100,1000,10000)
    --canaries N        A/A canaries of the analysis section (default 10000; a tenth as
                        many, at least 100, of each other scenario)
    --canary-runs N     canaries of the bad build in the canary section (default 5)
    --only LIST         comma-separated sections to run (default: all)
    --binaries DIR      where the release bootstrap, greenlight-lambda, is (default: next to
                        this program)
    --arm64 DIR         `make lambdas` output, <DIR>/greenlight-lambda/bootstrap (sizes only)
    --out FILE          the report to update (default BENCHMARKS.md in the repository)
    --command TEXT      the command to print in the report (default: `make bench`)
    -h, --help          this text

Needs the emulator's venv (`make setup`) and the bootstrap built with
`cargo build --release -p greenlight-lambda` (make bench does both); `--only analysis`
needs neither.
";

/// Progress lines on stderr, with the time since the benchmark started.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    started: Instant,
}

impl Progress {
    pub fn say(&self, what: &str) {
        eprintln!("[{:>6.1?}] {what}", self.started.elapsed());
    }
}

/// A real-shaped `ImagePublished` for `service`'s `version` (sample in `events/`).
pub fn image_event(service: &str, version: &str, ami: &str) -> serde_json::Value {
    use serde_json::json;
    greenlight_e2e::sample_event(
        "image-published.json",
        &[
            ("/id", json!(format!("bench-{version}-{service}"))),
            ("/time", json!(greenlight_e2e::now_rfc3339())),
            ("/detail/service", json!(service)),
            ("/detail/version", json!(version)),
            ("/detail/ami", json!(ami)),
        ],
    )
}

/// What the command line asked for.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub runs: usize,
    pub revert_runs: usize,
    pub services: usize,
    pub sim_services: Vec<usize>,
    pub canaries: usize,
    /// Canaries of the bad build on the emulator (section `canary`).
    pub canary_runs: usize,
    pub only: Vec<String>,
    pub binaries: PathBuf,
    pub arm64: PathBuf,
    pub out: PathBuf,
    pub command: String,
}

pub const SECTIONS: [&str; 7] = ["sizes", "cold", "calls", "revert", "scale", "analysis", "canary"];

impl Options {
    fn parse() -> Result<Options, String> {
        let root = greenlight_local::emulator::repo_root();
        let here = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(PathBuf::from))
            .unwrap_or_default();
        let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
        let mut options = Options {
            runs: 5,
            revert_runs: 20,
            services: 100,
            sim_services: vec![100, 1000, 10_000],
            canaries: 10_000,
            canary_runs: 5,
            only: SECTIONS.iter().map(|s| s.to_string()).collect(),
            binaries: here,
            arm64: target.join("lambda"),
            out: root.join("BENCHMARKS.md"),
            command: "make bench".into(),
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = || args.next().ok_or(format!("{arg} needs a value"));
            let number = |text: String| {
                text.parse::<usize>()
                    .map_err(|_| format!("{arg} needs a number, got {text:?}"))
            };
            match arg.as_str() {
                "--runs" => options.runs = number(value()?)?.max(1),
                "--revert-runs" => options.revert_runs = number(value()?)?.max(1),
                "--services" => options.services = number(value()?)?.max(1),
                "--canaries" => options.canaries = number(value()?)?.max(1),
                "--canary-runs" => options.canary_runs = number(value()?)?.max(1),
                "--sim-services" => {
                    options.sim_services = value()?
                        .split(',')
                        .map(|n| {
                            n.trim()
                                .parse::<usize>()
                                .map_err(|_| format!("--sim-services: {n:?} is not a number"))
                        })
                        .collect::<Result<_, _>>()?
                }
                "--only" => {
                    options.only = value()?.split(',').map(|s| s.trim().to_string()).collect();
                    if let Some(unknown) = options.only.iter().find(|s| !SECTIONS.contains(&s.as_str())) {
                        return Err(format!(
                            "--only: unknown section {unknown:?} (sections: {})",
                            SECTIONS.join(", ")
                        ));
                    }
                }
                "--binaries" => options.binaries = PathBuf::from(value()?),
                "--arm64" => options.arm64 = PathBuf::from(value()?),
                "--out" => options.out = PathBuf::from(value()?),
                "--command" => options.command = value()?,
                "-h" | "--help" => {
                    print!("{HELP}");
                    std::process::exit(0);
                }
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        Ok(options)
    }

    fn runs(&self, section: &str) -> bool {
        self.only.iter().any(|s| s == section)
    }
}

#[tokio::main]
async fn main() {
    let options = Options::parse().unwrap_or_else(|why| {
        eprint!("error: {why}\n\n{HELP}");
        std::process::exit(2)
    });
    let progress = Progress {
        started: Instant::now(),
    };
    // The function processes run this bootstrap (see greenlight_e2e::start_function).
    std::env::set_var(greenlight_local::lambda_service::BINARIES_DIR, &options.binaries);
    let needs_binaries = options.runs("cold") || options.runs("calls") || options.runs("revert");
    let bootstrap = options.binaries.join(greenlight_local::lambda_service::BOOTSTRAP);
    if needs_binaries && !bootstrap.exists() {
        eprintln!(
            "error: {} not found: build it first (`cargo build --release --locked -p greenlight-lambda`, \
             or run `make bench`), or point --binaries at it",
            bootstrap.display()
        );
        std::process::exit(2);
    }
    progress.say(&format!("greenlight-bench: sections {}", options.only.join(", ")));

    let mut results = report::Results {
        machine: machine::describe(),
        options: options.clone(),
        sizes: None,
        cold: None,
        calls: None,
        reverts: None,
        scale: None,
        sim: None,
        analysis: None,
        canary: None,
    };
    // The report is rewritten after each section, so a section that fails later loses
    // nothing measured before it.
    let write = |results: &report::Results| match report::update(&options.out, results) {
        Ok(()) => progress.say(&format!("wrote {}", options.out.display())),
        Err(why) => {
            eprintln!("error: {why}");
            std::process::exit(1);
        }
    };
    if options.runs("sizes") {
        results.sizes = Some(functions::sizes(&options.binaries, &options.arm64));
        write(&results);
    }
    if options.runs("cold") {
        results.cold = Some(functions::cold_starts(options.runs, &progress).await);
        write(&results);
    }
    if options.runs("calls") {
        results.calls = Some(calls::scenarios(&progress).await);
        write(&results);
    }
    if options.runs("revert") {
        results.reverts = Some(revert::time_to_revert(options.revert_runs, &progress).await);
        write(&results);
    }
    if options.runs("scale") {
        results.scale = Some(scale::on_emulator(options.services, 2, &progress).await);
        // The simulator runs its own runtime: off this one's threads.
        let counts = options.sim_services.clone();
        let sim = tokio::task::spawn_blocking(move || scale::in_simulator(&counts, &progress));
        results.sim = Some(sim.await.expect("the simulator runs"));
        write(&results);
    }
    if options.runs("canary") {
        results.canary = Some(canary::bad_builds(options.canary_runs, &progress).await);
        write(&results);
    }
    if options.runs("analysis") {
        // Pure arithmetic: off the runtime's threads.
        let canaries = options.canaries;
        let figures = tokio::task::spawn_blocking(move || analysis::measure(canaries, &progress));
        results.analysis = Some(figures.await.expect("the analysis benchmark runs"));
        write(&results);
    }
}
