//! The fixed seed set the test command runs, and the regression seeds (each kept with the
//! bug it found). More seeds: `make sim` (10 000 by default).

use greenlight_sim::{run, Options, Stats};

/// Seeds that once broke an invariant, with what they found.
const REGRESSIONS: &[(u64, &str)] = &[
    (
        11,
        "overlapping executions of one deployment: check-health found it retiring (promoted by a follow-up execution) and the route failed as unplanned; \
         also a queued image refused when the service freed up stayed queued for ever",
    ),
    (73, "three crashes in a row of abort-deployment failed the execution: abort-deployment now retries longer"),
    (84, "a rollback's redeploy committed, then the delivery crashed before StartExecution; the redelivered alarm never started it"),
    (443, "the same, through the branch that marks the service as needing attention"),
    (799, "retire-blue started the queued deployment and crashed before its StartExecution; the redelivered step never started it"),
    (
        606,
        "race: shift-traffic ∥ an abort request: the step's stale listener change left 50 % on green after the abort \
         (re-found as 689's race when the wire's yields moved to `Rng`; it fails only with the I26 fence off too)",
    ),
    (
        1021,
        "race: launch-green ∥ an abort request: instances launched after the abort's clean-up looked were orphaned \
         (re-found as 971's race when the wire's yields moved to `Rng`)",
    ),
    (1616, "abort-deployment after a failed step found the deployment live (promoted meanwhile) and failed the execution"),
    (
        132,
        "race: retire-blue ∥ an alarm: retire-blue removed the revert plan between the alarm's claim and its listener change, \
         which put traffic back on the fleet being drained (re-found as 2717's race when the wire's yields moved to `Rng`)",
    ),
];

fn run_seeds(seeds: impl Iterator<Item = u64>) -> Stats {
    run_with(seeds, true)
}

/// The regression seeds replay the trajectories they were pinned on, found before the
/// scheduled reconcile ran during the chaos phase (`Options::reconcile_in_chaos`): its
/// resumes and re-paves would change what follows them, and the race would not come.
fn replay(seeds: impl Iterator<Item = u64>) -> Stats {
    run_with(seeds, false)
}

fn run_with(seeds: impl Iterator<Item = u64>, reconcile_in_chaos: bool) -> Stats {
    let mut total = Stats::default();
    for seed in seeds {
        let options = Options {
            reconcile_in_chaos,
            // The replays also keep the one switch point their races were found with.
            topology: reconcile_in_chaos,
            ..Options::new(seed)
        };
        match run(options) {
            Ok(stats) => total.add(&stats),
            Err(failure) => panic!("{failure}"),
        }
    }
    total
}

#[test]
fn a_fixed_set_of_seeds_keeps_every_invariant() {
    let total = run_seeds(1..=150);
    // The runs exercise what they claim to (a run that does nothing would pass too).
    assert!(total.crashes > 100, "crashes injected: {total:?}");
    assert!(total.duplicates > 100, "duplicates delivered: {total:?}");
    assert!(total.races > 100, "races run: {total:?}");
    // Hand edits (listeners, strangers, tagged orphans) the fleet audit must answer (I29).
    assert!(total.hand_edits > 100, "hand edits injected: {total:?}");
    assert!(total.outcomes.get("succeeded").copied().unwrap_or(0) > 20, "{total:?}");
    assert!(total.outcomes.get("aborted").copied().unwrap_or(0) > 20, "{total:?}");
    // Canary analysis judges steps on the world's traffic (I32–I34): evaluations, bad
    // releases reverted by their verdict, failed metric reads, held steps the engineer ends,
    // inconclusive steps aborted.
    assert!(total.evaluations > 300, "evaluations: {total:?}");
    assert!(total.regressions_caught > 5, "regressions caught: {total:?}");
    assert!(total.metric_faults > 20, "metric reads failed: {total:?}");
    assert!(total.holds > 5 && total.inconclusive_aborts > 5, "{total:?}");
    // Approval pauses (I35): begun, approved by a promote, and timed out into their action.
    assert!(
        total.pauses > 20 && total.pauses_approved > 5 && total.pauses_timed_out > 5,
        "pauses: {total:?}"
    );
    // `on_failure: hold` (I36): failures frozen instead of reverted, then promoted, rolled
    // back or aborted by an engineer.
    assert!(
        total.failure_holds > 20 && total.holds_promoted > 5 && total.holds_reverted > 5,
        "holds: {total:?}"
    );
}

#[test]
fn regression_seeds_keep_every_invariant() {
    replay(REGRESSIONS.iter().map(|(seed, _)| *seed));
}

/// I26 (seed 13455; found as 53899, 54609 and 61584, re-found when the races' yields moved
/// to `Rng`): race: shift-traffic ∥ an alarm. The shift, decided before the rollback, landed
/// its ModifyListener after the rollback's and crashed; without the fence the rollback had
/// already deregistered green: 10 % of traffic on no target until a redelivery.
#[test]
fn a_shift_landing_after_an_alarms_rollback_finds_green_still_registered() {
    replay([13455].into_iter());
}

/// I26 (seed 22903, found with the fence disabled in a search of seeds 1–30 000 at stop 25,
/// after the simulated alarms took their own times and every third image arrived as an EC2
/// AMI State Change): race: shift-traffic ∥ an engineer's rollback. The shift, decided
/// before the rollback, landed its ModifyListener after the rollback's; without the fence
/// the rollback had already deregistered green: 100 % of traffic on no target.
#[test]
fn a_shift_landing_after_an_engineers_rollback_finds_green_still_registered() {
    replay([22903].into_iter());
}

/// I26 (seed 34; found as 904279, re-found when the races' yields moved to `Rng`; since the
/// simulated events changed shape at stop 25 it no longer reaches the race, and the search
/// above found no replacement in seeds 1–30 000: kept as an ordinary seed): race:
/// shift-traffic ∥ a new image superseding it. The shift committed its move to 100 %, the
/// image's supersede read it and aborted (traffic back, and without the fence green
/// deregistered at once), then the shift's ModifyListener landed and its run crashed: 100 %
/// of traffic on no target. (904279's shift lost its commit and re-applied; the same race.)
#[test]
fn a_shift_landing_after_a_superseding_image_finds_green_still_registered() {
    replay([34].into_iter());
}

/// I8, I26 (seed 542, found when the invariants first checked drains against the group's own
/// deregistration delay, with the reconcile in chaos and several switch points): an
/// engineer's abort during a canary committed `Aborting` and its run crashed before its
/// listener change; a later run put traffic back after the abort's drain time had passed,
/// and a redelivered abort request then terminated green 11 s after its last new
/// connection, its group draining for 41 s. Green now drains from when its traffic was read
/// back off it (`decide::tests::a_green_whose_traffic_came_back_late_drains_from_then_not_from_the_abort`).
#[test]
fn a_green_whose_traffic_came_back_late_drains_from_then() {
    run_seeds([542].into_iter());
}

/// I23 (seed 912539): an alarm's fast path put traffic back on blue and crashed before
/// recording the rollback; a promote took the deployment to `Baking` with no bake window;
/// retire-blue refused (blue still serving), abort-deployment answered "too late to abort"
/// and routed back to retire-blue with no wait: a loop at one instant that starved the
/// alarm's Lambda retry. Now the late step is retried after a growing wait, a bounded number
/// of times, so the retry lands and completes the rollback.
///
/// Since the races' yields moved to `Rng`, seed 912539 no longer reaches this situation (no
/// "too late to abort" in its trace) and a search with the fix disabled (seeds 1–42 551)
/// found no seed that does: until one is re-found, the guard is
/// `decide::tests::a_late_step_that_keeps_failing_while_green_is_live_is_retried_later_never_at_once_then_stops`.
#[test]
fn a_late_step_refused_while_an_alarms_rollback_is_unrecorded_waits_for_the_alarms_retry() {
    replay([912539].into_iter());
}

#[test]
fn a_seed_replays_exactly() {
    let a = greenlight_sim::run_traced(Options::new(7)).1;
    let b = greenlight_sim::run_traced(Options::new(7)).1;
    assert_eq!(a, b);
}
