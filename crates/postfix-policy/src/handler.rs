//! The [`PolicyHandler`] trait that decides, and the guard the server puts around each decision.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use crate::action::Action;
use crate::request::PolicyRequest;

/// The text of the answer given when a decision panicked or ran out of time.
pub const UNAVAILABLE_TEXT: &str = "Service temporarily unavailable";

/// Decides on policy requests for the server: the narrow view the protocol has of couchmail's policies.
///
/// The server calls [`PolicyHandler::decide`] once per request, on its async worker threads, and sends the
/// returned [`Action`].
/// Implement it with `async fn decide(&self, request: &PolicyRequest) -> Action`.
///
/// Contract for implementations:
/// - Decide quickly and from memory where possible: Postfix holds an SMTP session open while it waits, and a
///   decision running longer than [`ServerConfig::decision_timeout`](crate::ServerConfig::decision_timeout) is
///   dropped and answered `defer_if_permit Service temporarily unavailable`. Blocking work (a SQLite write, for
///   instance) belongs in `tokio::task::spawn_blocking`.
/// - Judge missing attributes yourself: the server only guarantees `request=smtpd_access_policy`. Answer
///   [`Action::Dunno`] for a request you have no opinion on (a protocol state you do not handle, a missing
///   recipient), so that Postfix's own restrictions decide.
/// - On an internal failure, answer [`Action::DeferIfPermit`] (a temporary failure that a later reject still
///   overrides), or [`Action::Dunno`] to fail open; never a permanent reject.
/// - A panic is contained: the server answers `defer_if_permit Service temporarily unavailable`, logs it, closes
///   that connection (Postfix reconnects) and keeps serving the others.
///
/// ```
/// use couchmail_postfix_policy::{Action, PolicyHandler, PolicyRequest, ProtocolState};
///
/// struct RejectSpammer;
///
/// impl PolicyHandler for RejectSpammer {
///     async fn decide(&self, request: &PolicyRequest) -> Action {
///         match (&request.protocol_state, request.sender.as_deref()) {
///             (Some(ProtocolState::Rcpt), Some("spammer@example.net")) => Action::Reject("5.7.1 Go away".into()),
///             _ => Action::Dunno,
///         }
///     }
/// }
/// ```
pub trait PolicyHandler: Send + Sync + 'static {
    /// Decides what Postfix should do with `request`.
    fn decide(&self, request: &PolicyRequest) -> impl Future<Output = Action> + Send;
}

/// How a guarded decision ended.
#[derive(Debug)]
pub(crate) enum Decision {
    /// The handler answered.
    Decided(Action),
    /// The handler panicked; the message, when the payload was a string.
    Panicked(String),
    /// The handler did not answer within the decision timeout.
    TimedOut,
}

/// Runs `handler.decide(request)` with a time limit, catching a panic at any poll.
pub(crate) async fn decide_guarded<H: PolicyHandler>(
    handler: &H,
    request: &PolicyRequest,
    decision_timeout: Duration,
) -> Decision {
    let mut decision = pin!(handler.decide(request));
    // Each poll runs under catch_unwind, so a panic before or after any await point is caught, and the future is
    // never polled again after it panicked.
    let guarded =
        std::future::poll_fn(|context| match catch_unwind(AssertUnwindSafe(|| decision.as_mut().poll(context))) {
            Ok(Poll::Ready(action)) => Poll::Ready(Decision::Decided(action)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|message| (*message).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-string panic payload".to_owned());
                Poll::Ready(Decision::Panicked(message))
            }
        });
    tokio::time::timeout(decision_timeout, guarded).await.unwrap_or(Decision::TimedOut)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Misbehaving;

    impl PolicyHandler for Misbehaving {
        async fn decide(&self, request: &PolicyRequest) -> Action {
            match request.sender.as_deref() {
                Some("panic-now") => panic!("asked to panic"),
                Some("panic-later") => {
                    tokio::task::yield_now().await;
                    panic!("{}", String::from("asked to panic after a yield"))
                }
                Some("hang") => std::future::pending().await,
                _ => Action::Ok,
            }
        }
    }

    async fn decide(sender: &str) -> Decision {
        let request = PolicyRequest { sender: Some(sender.to_owned()), ..PolicyRequest::default() };
        decide_guarded(&Misbehaving, &request, Duration::from_secs(20)).await
    }

    #[tokio::test(start_paused = true)]
    async fn contains_panics_and_hangs() {
        assert!(matches!(decide("fine").await, Decision::Decided(Action::Ok)));
        assert!(matches!(decide("panic-now").await, Decision::Panicked(message) if message == "asked to panic"));
        assert!(
            matches!(decide("panic-later").await, Decision::Panicked(message) if message == "asked to panic after a yield")
        );
        let started = tokio::time::Instant::now();
        assert!(matches!(decide("hang").await, Decision::TimedOut));
        assert_eq!(started.elapsed(), Duration::from_secs(20));
    }
}
