//! What an AWS SDK error means to greenlight: retryable (throttling, 5xx, transient codes,
//! connection failures) or final, as an [`AdapterError`]. Shared by every service module.

use crate::AdapterError;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};

/// Error codes AWS uses for throttling (retry later, with backoff): the AWS SDKs' list
/// (aws-runtime's `THROTTLING_ERRORS`, which the SDK's standard retry mode retries), less
/// `LimitExceededException`, which greenlight's services use for quotas, not rates.
const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];

/// Error codes of transient failures that are not throttling (aws-runtime's
/// `TRANSIENT_ERRORS`).
const TRANSIENT: &[&str] = &["RequestTimeout", "RequestTimeoutException"];

/// True for an answer worth retrying: a 5xx, throttling, or a transient error code.
pub(super) fn retryable_answer(status: Option<u16>, code: Option<&str>) -> bool {
    status.is_some_and(|s| s >= 500) || code.is_some_and(|c| THROTTLING.contains(&c) || TRANSIENT.contains(&c))
}

/// Classifies an SDK error: throttling, 5xx, transient codes and connection failures are
/// retryable.
pub(super) fn aws_error<E>(service: &'static str, operation: &'static str, err: SdkError<E>) -> AdapterError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    let code = err.code().map(str::to_string);
    let retryable = match &err {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => true,
        _ => retryable_answer(status, code.as_deref()),
    };
    let message = match (code, err.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code,
        _ => format!("{}", aws_smithy_types::error::display::DisplayErrorContext(&err)),
    };
    AdapterError::Aws {
        service,
        operation,
        message,
        retryable,
    }
}

/// An SDK request that could not be built (a missing required field): a bug, not transient.
pub(super) fn invalid_request(e: impl std::fmt::Display) -> AdapterError {
    AdapterError::Invalid(e.to_string())
}

/// The AWS error code of `err`, if the service answered one.
pub(super) fn error_code<E: ProvideErrorMetadata>(err: &SdkError<E>) -> Option<&str> {
    err.code()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_5xx_and_transient_answers_are_retryable_and_nothing_else() {
        // What the emulator's fault injector answers with, per protocol.
        for (status, code) in [
            (503, "RequestLimitExceeded"),
            (400, "Throttling"),
            (400, "ThrottlingException"),
            (503, "SlowDown"),
            (500, "InternalError"),
            (500, "InternalFailure"),
            (500, "InternalServerError"),
            (503, "ServiceUnavailable"),
            (503, "Unavailable"),
            (400, "TransactionInProgressException"),
            (400, "RequestTimeout"),
        ] {
            assert!(retryable_answer(Some(status), Some(code)), "{status} {code}");
        }
        assert!(retryable_answer(Some(503), None), "a HEAD answer has no body");
        for (status, code) in [
            (400, "ConditionalCheckFailedException"),
            (400, "ValidationException"),
            (400, "InvalidAMIID.NotFound"),
            (403, "UnauthorizedOperation"),
            (400, "LimitExceededException"),
        ] {
            assert!(!retryable_answer(Some(status), Some(code)), "{status} {code}");
        }
    }
}
