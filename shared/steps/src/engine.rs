//! The step loop shared by every handler: [`drive`] runs one deployment's decisions
//! ([`crate::apply::Run`]) and, depth first, the work its effects hand back on other
//! deployments (a superseded deployment's abort, a freed service's queued image), on an
//! explicit stack instead of recursion. Each piece of that work is retried on a lost
//! conditional write like a handler's own read → decide, and a queued image that is no
//! longer acceptable is dropped from the queue.

use crate::apply::{Elsewhere, Run};
use crate::observe;
use crate::StepError;
use greenlight_adapters::{AdapterError, Ports};
use greenlight_core::decide::{Event, ImageRequest};
use greenlight_core::model::State;
use tracing::{info, warn};

pub use crate::apply::output;

/// How many times a handler re-reads and decides again after losing a conditional write.
pub const CONFLICT_RETRIES: u32 = 5;

/// How deep work on other deployments may nest (a supersede whose abort starts the queued
/// image, ...): each level is a deployment that ended and freed its service, so a handful is
/// already more than the ledger allows; past this the run fails rather than loop.
const MAX_NESTED_RUNS: usize = 16;

/// Decides `event` on `state` and everything that follows from it, including the work its
/// effects hand back on other deployments. Returns the final (committed) state and the notes
/// of each decision.
pub async fn drive(ports: &Ports, state: State, event: Event) -> Result<(State, Vec<String>), StepError> {
    let mut root = Some(Run::new(state, event));
    // Runs on other deployments, innermost last, each with the work it does and its tries.
    let mut nested: Vec<Nested> = Vec::new();
    loop {
        let top = match nested.last_mut() {
            Some(frame) => &mut frame.run,
            None => root.as_mut().expect("the root run ends the loop"),
        };
        // A failure of the nested work on top (or about to be): (work, tries so far, error).
        let mut failure = match top.resume(ports).await {
            Ok(Some(work)) => match open(ports, &work).await {
                Ok(Some(run)) => {
                    if nested.len() >= MAX_NESTED_RUNS {
                        return Err(StepError::Rejected(format!(
                            "more than {MAX_NESTED_RUNS} deployments ended one inside another; stopping"
                        )));
                    }
                    nested.push(Nested { run, work, tries: 0 });
                    continue;
                }
                Ok(None) => continue,
                Err(e) => Some((work, 0, e)),
            },
            Ok(None) => match nested.pop() {
                None => return Ok(root.take().expect("the root run ends the loop").finish()),
                Some(done) => {
                    done.log_done();
                    continue;
                }
            },
            Err(e) => match nested.pop() {
                None => return Err(e),
                Some(failed) => Some((failed.work, failed.tries, e)),
            },
        };
        while let Some((work, tries, e)) = failure.take() {
            if retry_after_conflict(&e, tries) {
                warn!(why = %e, tries = tries + 1, "ledger changed underneath; re-reading and deciding again");
                match open(ports, &work).await {
                    Ok(Some(run)) => nested.push(Nested {
                        run,
                        work,
                        tries: tries + 1,
                    }),
                    Ok(None) => {}
                    Err(e) => failure = Some((work, tries + 1, e)),
                }
                continue;
            }
            let settled = match (&work, e) {
                // The step that freed the service has done its work; a queued image that is
                // no longer acceptable (e.g. now older than live) is dropped with the reason.
                (Elsewhere::StartQueued(request), e @ (StepError::Refused(_) | StepError::Rejected(_))) => {
                    warn!(version = %request.version, why = %e, "queued deployment refused; dropped from the queue");
                    drop_queued(ports, request).await
                }
                (_, e) => Err(e),
            };
            // Otherwise the effect that handed the work back failed: so does the run it
            // belongs to.
            if let Err(e) = settled {
                match nested.pop() {
                    None => return Err(e),
                    Some(failed) => failure = Some((failed.work, failed.tries, e)),
                }
            }
        }
    }
}

/// A run on another deployment, with the work it does (to start it again after a lost
/// conditional write) and how many times it was started again.
struct Nested {
    run: Run,
    work: Elsewhere,
    tries: u32,
}

impl Nested {
    fn log_done(self) {
        let (state, notes) = self.run.finish();
        match self.work {
            Elsewhere::StartQueued(request) => info!(
                deploy_id = %request.deploy_id(),
                queued_behind = ?state.service.active,
                notes = %notes.join("; "),
                "queued deployment started"
            ),
            Elsewhere::Supersede { deploy_id, .. } => info!(%deploy_id, notes = %notes.join("; "), "superseded"),
        }
    }
}

/// Reads what `work` is decided on: the run that does it, or None when there is nothing to do.
async fn open(ports: &Ports, work: &Elsewhere) -> Result<Option<Run>, StepError> {
    match work {
        Elsewhere::Supersede {
            service,
            deploy_id,
            event,
        } => match ports.ledger.load(service, Some(deploy_id)).await? {
            Some(other) if other.deployment.is_some() => Ok(Some(Run::new(other, event.clone()))),
            _ => {
                warn!(%deploy_id, "superseded deployment is not in the ledger");
                Ok(None)
            }
        },
        Elsewhere::StartQueued(request) => {
            let (state, event) = observe::start_event(ports, request).await?;
            Ok(Some(Run::new(state, event)))
        }
    }
}

/// Runs `attempt` (read → observe → drive) again while it loses conditional writes.
pub async fn with_conflict_retries<T, F, Fut>(mut attempt: F) -> Result<T, StepError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StepError>>,
{
    let mut tries = 0;
    loop {
        match attempt().await {
            Err(e) if retry_after_conflict(&e, tries) => {
                tries += 1;
                warn!(why = %e, tries, "ledger changed underneath; re-reading and deciding again");
            }
            other => return other,
        }
    }
}

/// True when `e` is a lost conditional write and `tries` retries so far leave room for one
/// more: the one retry rule of a handler's attempt and of the work it runs on the stack.
fn retry_after_conflict(e: &StepError, tries: u32) -> bool {
    matches!(e, StepError::Adapter(AdapterError::Conflict(_))) && tries + 1 < CONFLICT_RETRIES
}

/// Takes a refused queued request off the service's pointers (conditionally: unless
/// something else queued in the meantime), so that it neither lingers nor blocks later images.
async fn drop_queued(ports: &Ports, request: &ImageRequest) -> Result<(), StepError> {
    with_conflict_retries(|| async {
        let Some(state) = ports.ledger.load(&request.service, None).await? else {
            return Ok(());
        };
        if state.service.queued.as_ref() != Some(request) {
            return Ok(());
        }
        let mut next = state.clone();
        next.service.queued = None;
        ports.ledger.commit(&state, &next).await?;
        Ok(())
    })
    .await
}
