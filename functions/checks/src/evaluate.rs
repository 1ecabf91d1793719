//! What a check's response means: pure decisions over what the endpoint answered.
//!
//! An [`Attempt`] is one try of a check's request. [`should_retry`] says whether another try may
//! help (the endpoint could not be reached, timed out, or answered 5xx when the check does not
//! expect it: a new version warming up behind a load balancer does that); [`evaluate`] compares
//! the last answer with what the check expects; [`failure_message`] is what the operator reads.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use shipgate::release::Check;

pub use shipgate::probe::{Attempt, MAX_BODY_BYTES};

/// How much of a body a failure message quotes.
pub const MAX_EXCERPT_CHARS: usize = 500;

/// Whether another try of the check may help.
pub fn should_retry(check: &Check, attempt: &Attempt) -> bool {
    match attempt {
        Attempt::TimedOut | Attempt::Unreachable { .. } => true,
        Attempt::Answered { status, .. } => *status >= 500 && *status != check.expect_status,
    }
}

/// The pause before try `next` (1-based: the pause before the second try is `backoff(1)`):
/// 250 ms, doubling, at most 2 s.
pub fn backoff(next: u32) -> Duration {
    let ms = 250u64.saturating_mul(1 << next.saturating_sub(1).min(3));
    Duration::from_millis(ms.min(2_000))
}

/// The longest a check may take with `attempts` tries: each try's timeout plus the pauses.
pub fn worst_case(check: &Check, attempts: u32) -> Duration {
    let tries = Duration::from_millis(check.timeout_ms) * attempts;
    (1..attempts)
        .map(backoff)
        .fold(tries, |total, pause| total + pause)
}

/// Why a check failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    Status { status: u16, body: String },
    Body { status: u16, body: String },
    TimedOut,
    Unreachable { error: String },
}

/// Compares the last try's outcome with what the check expects.
pub fn evaluate(check: &Check, attempt: &Attempt) -> Result<(), Mismatch> {
    match attempt {
        Attempt::TimedOut => Err(Mismatch::TimedOut),
        Attempt::Unreachable { error } => Err(Mismatch::Unreachable {
            error: error.clone(),
        }),
        Attempt::Answered { status, body } if *status != check.expect_status => {
            Err(Mismatch::Status {
                status: *status,
                body: body.clone(),
            })
        }
        Attempt::Answered { status, body } => match &check.expect_body_contains {
            Some(fragment) if !body.contains(fragment.as_str()) => Err(Mismatch::Body {
                status: *status,
                body: body.clone(),
            }),
            _ => Ok(()),
        },
    }
}

/// "int: check health (GET http://alb:9000/health) failed after 3 tries: expected status 200,
/// got 500; body: "boom""
pub fn failure_message(
    environment: &str,
    check: &Check,
    url: &str,
    tries: u32,
    mismatch: &Mismatch,
) -> String {
    let tries = if tries == 1 {
        String::new()
    } else {
        format!(" after {tries} tries")
    };
    let what = match mismatch {
        Mismatch::Status { status, body } => format!(
            "expected status {}, got {status}; body: {}",
            check.expect_status,
            quoted(body)
        ),
        Mismatch::Body { status, body } => format!(
            "status {status} as expected, but the body does not contain {}; body: {}",
            quoted(check.expect_body_contains.as_deref().unwrap_or_default()),
            quoted(body)
        ),
        Mismatch::TimedOut => format!(
            "no complete answer within its timeout of {} ms",
            check.timeout_ms
        ),
        Mismatch::Unreachable { error } => {
            format!("the endpoint could not be reached: {}", excerpt(error))
        }
    };
    format!(
        "{environment}: check {} ({} {url}) failed{tries}: {what}. The new version gets no \
         traffic; fix it and drop a new release, or retry the stage if the endpoint was not \
         ready",
        check.name,
        check.method.as_str()
    )
}

fn quoted(text: &str) -> String {
    if text.is_empty() {
        return "(empty)".into();
    }
    format!("\"{}\"", excerpt(text))
}

/// At most [`MAX_EXCERPT_CHARS`] characters of `text`, safe to show: control characters
/// (newlines, escapes that would drive a terminal) become spaces, runs of whitespace one space,
/// and a cut is marked with "…".
pub fn excerpt(text: &str) -> String {
    let mut out = String::new();
    let mut count = 0;
    let mut last_space = true;
    for c in text.chars() {
        let c = if c.is_control() || c.is_whitespace() || c == '\u{FEFF}' {
            ' '
        } else {
            c
        };
        if c == ' ' && last_space {
            continue;
        }
        last_space = c == ' ';
        if count == MAX_EXCERPT_CHARS {
            let trimmed = out.trim_end().len();
            out.truncate(trimmed);
            out.push('…');
            return out;
        }
        out.push(c);
        count += 1;
    }
    out.trim_end().to_owned()
}

/// The URL a check requests: the endpoint (no trailing `/`) and the check's path.
pub fn url_for(endpoint: &str, check: &Check) -> String {
    format!("{endpoint}{}", check.path)
}

/// What one invocation leaves to the next in CodePipeline's continuation token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Progress {
    /// The index of the next check to run (the ones before it passed).
    pub next: usize,
    /// How many checks the release has: a token for another list is refused.
    pub total: usize,
    /// Time spent in the checks that passed, in milliseconds.
    pub elapsed_ms: u64,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use shipgate::job::MAX_CONTINUATION_TOKEN_CHARS;
    use shipgate::release::HttpMethod;

    use super::*;

    fn check(expect_status: u16, contains: Option<&str>) -> Check {
        Check {
            name: "health".into(),
            method: HttpMethod::Get,
            path: "/health".into(),
            headers: BTreeMap::new(),
            body: None,
            expect_status,
            expect_body_contains: contains.map(str::to_owned),
            timeout_ms: 2_000,
        }
    }

    fn answered(status: u16, body: &str) -> Attempt {
        Attempt::Answered {
            status,
            body: body.into(),
        }
    }

    #[test]
    fn the_expected_status_and_body_pass() {
        assert_eq!(
            evaluate(&check(200, Some("ok")), &answered(200, "all ok")),
            Ok(())
        );
        assert_eq!(evaluate(&check(404, None), &answered(404, "")), Ok(()));
        assert_eq!(
            evaluate(&check(200, Some("ok")), &answered(200, "fine")),
            Err(Mismatch::Body {
                status: 200,
                body: "fine".into()
            })
        );
        assert!(matches!(
            evaluate(&check(200, None), &answered(500, "boom")),
            Err(Mismatch::Status { status: 500, .. })
        ));
        assert_eq!(
            evaluate(&check(200, None), &Attempt::TimedOut),
            Err(Mismatch::TimedOut)
        );
    }

    #[test]
    fn unreachable_timeouts_and_unexpected_5xx_are_retried_nothing_else() {
        let c = check(200, None);
        assert!(should_retry(&c, &Attempt::TimedOut));
        assert!(should_retry(
            &c,
            &Attempt::Unreachable {
                error: "refused".into()
            }
        ));
        assert!(should_retry(&c, &answered(503, "")));
        assert!(!should_retry(&c, &answered(404, "")));
        assert!(!should_retry(&c, &answered(200, "")));
        // A check that expects the 500 gets it at once.
        assert!(!should_retry(&check(500, None), &answered(500, "")));
    }

    #[test]
    fn backoff_doubles_up_to_two_seconds_and_bounds_the_check() {
        let pauses: Vec<u64> = (1..=6).map(|n| backoff(n).as_millis() as u64).collect();
        assert_eq!(pauses, [250, 500, 1000, 2000, 2000, 2000]);
        assert_eq!(
            worst_case(&check(200, None), 3),
            Duration::from_millis(6_750)
        );
        assert_eq!(
            worst_case(&check(200, None), 1),
            Duration::from_millis(2_000)
        );
    }

    #[test]
    fn the_failure_names_the_check_the_status_and_a_body_excerpt() {
        let body = format!(
            "<html>\n\t<h1>Internal\u{1b}[31m error</h1>{}</html>",
            "x".repeat(900)
        );
        let message = failure_message(
            "int",
            &check(200, None),
            "http://alb:9000/health",
            3,
            &Mismatch::Status { status: 500, body },
        );
        assert!(
            message.starts_with(
                "int: check health (GET http://alb:9000/health) failed after 3 tries: expected \
                 status 200, got 500; body: \"<html> <h1>Internal [31m error</h1>xxx"
            ),
            "{message}"
        );
        assert!(!message.contains('\u{1b}') && !message.contains('\n'));
        let quoted = message.split("body: \"").nth(1).unwrap_or_default();
        let quoted = quoted.split('"').next().unwrap_or_default();
        assert_eq!(quoted.chars().count(), MAX_EXCERPT_CHARS + 1, "{quoted}");
        assert!(quoted.ends_with('…'));

        let body = failure_message(
            "int",
            &check(200, Some("\"orders\"")),
            "http://alb:9000/health",
            1,
            &Mismatch::Body {
                status: 200,
                body: String::new(),
            },
        );
        assert!(
            body.contains("failed: status 200 as expected, but the body does not contain \"\"orders\"\"; body: (empty)"),
            "{body}"
        );
        let slow = failure_message("int", &check(200, None), "u", 2, &Mismatch::TimedOut);
        assert!(
            slow.contains("no complete answer within its timeout of 2000 ms"),
            "{slow}"
        );
    }

    #[test]
    fn excerpts_are_short_and_clean() {
        assert_eq!(excerpt("  a \r\n b\u{0}c  "), "a b c");
        assert_eq!(
            excerpt(&"é".repeat(600)).chars().count(),
            MAX_EXCERPT_CHARS + 1
        );
        assert_eq!(excerpt(""), "");
    }

    #[test]
    fn urls_join_the_endpoint_and_the_path() {
        let mut c = check(200, None);
        c.path = "/orders?limit=1".into();
        assert_eq!(
            url_for("http://alb:9000", &c),
            "http://alb:9000/orders?limit=1"
        );
    }

    #[test]
    fn the_continuation_token_is_small() {
        let token = serde_json::to_string(&Progress {
            next: 100,
            total: 100,
            elapsed_ms: u64::MAX,
        })
        .expect("serialises");
        assert!(token.len() < 100 && token.len() < MAX_CONTINUATION_TOKEN_CHARS);
    }
}
