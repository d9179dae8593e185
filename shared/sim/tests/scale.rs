//! The scale scenario ([`greenlight_sim::scale`]) at small K: every image deploys exactly
//! once and ends, with or without faults, and the cost per deployment does not depend on how
//! many services share the ledger. (`greenlight-sim scale --services 10000` runs it large.)

use greenlight_sim::{scale, ScaleOptions, ScaleReport};

fn run(options: ScaleOptions) -> ScaleReport {
    scale(options).unwrap_or_else(|failure| panic!("{failure}"))
}

fn per_deployment(report: &ScaleReport, operation: &str) -> f64 {
    let n = report.aws_calls_by_operation.get(operation).copied().unwrap_or(0);
    n as f64 / report.deployments_started as f64
}

#[test]
fn twenty_services_deploy_once_each_and_nothing_is_lost_duplicated_or_stuck() {
    let report = run(ScaleOptions::new(20));
    assert_eq!(report.images_published, 20);
    assert_eq!(report.deployments_started, 20, "{report:#?}");
    assert_eq!(report.deployments_succeeded, 20, "{report:#?}");
    assert_eq!((report.lost, report.duplicated, report.stuck), (0, 0, 0));
    // Every service's deployment took the same path: the same requests.
    assert_eq!(
        report.aws_calls_per_deployment_min, report.aws_calls_per_deployment_max,
        "{report:#?}"
    );
    assert_eq!(report.aws_calls as f64, 20.0 * report.aws_calls_per_deployment);
    // One green fleet, one execution, one report each; no fault, no conflict.
    for operation in [
        "ec2:RunInstances",
        "states:StartExecution",
        "s3:PutObject",
        "ec2:TerminateInstances",
    ] {
        assert_eq!(per_deployment(&report, operation), 1.0, "{operation}: {report:#?}");
    }
    // Green added at weight 0, then the canary's 10, 50 and 100 %.
    assert_eq!(per_deployment(&report, "elasticloadbalancing:ModifyListener"), 4.0);
    assert_eq!((report.conflicts, report.crashes, report.duplicates), (0, 0, 0));
    assert!(report.read_units >= report.ledger_reads && report.write_units >= report.ledger_writes);
    assert!(report.sim_time_to_finish_max_s > 3600.0, "the bake window is an hour");
}

#[test]
fn the_cost_per_deployment_does_not_grow_with_the_number_of_services() {
    let few = run(ScaleOptions::new(5));
    let many = run(ScaleOptions::new(50));
    assert_eq!(few.aws_calls_per_deployment, many.aws_calls_per_deployment);
    assert_eq!(many.aws_calls_per_deployment_min, many.aws_calls_per_deployment_max);
    for operation in many.aws_calls_by_operation.keys() {
        assert_eq!(
            per_deployment(&few, operation),
            per_deployment(&many, operation),
            "{operation}"
        );
    }
    assert_eq!(few.read_units_per_deployment, many.read_units_per_deployment);
    assert_eq!(few.write_units_per_deployment, many.write_units_per_deployment);
    assert_eq!(
        few.handler_invocations_per_deployment,
        many.handler_invocations_per_deployment
    );
    // The same simulated time too, bar the events' delivery delay (0 to 3 s).
    assert!((few.sim_time_to_finish_max_s - many.sim_time_to_finish_max_s).abs() <= 3.0);
}

#[test]
fn crashes_duplicates_and_races_lose_duplicate_or_strand_nothing() {
    for seed in 1..=3 {
        let report = run(ScaleOptions {
            seed,
            crash_pct: 15,
            duplicate_pct: 15,
            race_pct: 15,
            ..ScaleOptions::new(20)
        });
        assert_eq!(report.deployments_started, 20, "seed {seed}: {report:#?}");
        assert_eq!((report.lost, report.duplicated, report.stuck), (0, 0, 0));
        assert_eq!(
            report.deployments_succeeded + report.deployments_aborted,
            20,
            "seed {seed}: {report:#?}"
        );
        // The faults happened, and every conflict they caused was resolved.
        assert!(
            report.crashes > 0 && report.duplicates > 0 && report.races > 0,
            "{report:#?}"
        );
        assert!(report.conflicts > 0, "seed {seed}: {report:#?}");
        assert_eq!(report.conflicts_resolved, report.conflicts);
    }
}

#[test]
fn a_seed_replays_the_same_report_and_the_json_has_every_figure() {
    let options = ScaleOptions {
        crash_pct: 10,
        race_pct: 10,
        ..ScaleOptions::new(10)
    };
    let (a, b) = (run(options.clone()), run(options));
    let (mut a, mut b) = (a.to_json(), b.to_json());
    a["wall_time_s"] = 0.into();
    b["wall_time_s"] = 0.into();
    assert_eq!(a, b);
    for field in [
        "services",
        "deployments_started",
        "lost",
        "duplicated",
        "stuck",
        "aws_calls",
        "aws_calls_per_deployment",
        "aws_calls_by_operation",
        "ledger_reads",
        "ledger_writes",
        "conflicts",
        "conflicts_resolved",
        "read_units_per_deployment",
        "write_units_per_deployment",
        "handler_invocations",
        "sim_time_to_finish_median_s",
        "sim_time_to_finish_max_s",
        "wall_time_s",
    ] {
        assert!(a.get(field).is_some(), "{field} missing from {a}");
    }
}
