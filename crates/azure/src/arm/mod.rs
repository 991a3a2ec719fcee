//! Azure Resource Manager core: URLs and api-versions, the error envelope, retries, client-side
//! rate limiting, request metrics, long-running operations and paging.

mod client;
mod error;
mod lro;
mod metrics;
mod profile;
mod retry;
mod throttle;

pub use client::{ArmClient, ArmResponse, Page, next_page_url, request_url};
pub use error::{AdditionalInfo, ArmError, ErrorDetail};
pub use lro::{LroKind, LroStatus, LroToken, Started, interpret_poll, interpret_start};
pub use metrics::{RequestLabels, RequestMetrics, status_class};
pub use profile::{AZURE_ML_API_VERSION, ApiProfile, Provider};
pub use retry::{Attempt, RetryPolicy, is_retryable_status, parse_retry_after, poll_delay};
pub use throttle::{
    BucketKey, BucketSpec, OperationKind, RateLimiter, RateLimits, STACK_HUB_HOURLY, TokenBucket,
};
