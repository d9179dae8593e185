//! The bootstrap of every greenlight Lambda function: wiring only. Lambda sets `_HANDLER`
//! from the function's `Handler` (`launch-green`, `revert-service`, ...); the handlers and
//! the dispatch are in `greenlight_steps::lambda`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    greenlight_steps::lambda::main().await
}
