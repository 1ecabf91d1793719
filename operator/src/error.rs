//! Why a command fails, as a type: each variant names what the operator can do about it. SDK
//! errors are kept as the source, never flattened.

use aws_sdk_cloudformation::operation::describe_stacks::DescribeStacksError;
use aws_sdk_cloudformation::operation::list_stack_resources::ListStackResourcesError;
use aws_sdk_sqs::operation::receive_message::ReceiveMessageError;

use aws_sdk_sqs::error::SdkError;

#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// Neither a flag, nor the environment, nor the stack says where a resource is.
    #[error(
        "{what} is not known: pass {flag}, set {env}, or point --stack at a shipgate stack \
         (stack {stack:?} has no resource {logical_id})"
    )]
    UnknownResource {
        what: &'static str,
        flag: &'static str,
        env: &'static str,
        logical_id: &'static str,
        stack: String,
    },
    #[error("the resources of stack {stack:?} could not be read")]
    StackResources {
        stack: String,
        #[source]
        source: Box<SdkError<ListStackResourcesError>>,
    },
    #[error("the parameters and outputs of stack {stack:?} could not be read")]
    StackDescription {
        stack: String,
        #[source]
        source: Box<SdkError<DescribeStacksError>>,
    },
    #[error("the failed-invocation queue {queue} could not be read")]
    ReceiveMessages {
        queue: String,
        #[source]
        source: Box<SdkError<ReceiveMessageError>>,
    },
    #[error(
        "no message {0} in the queue: replayed or deleted already, or hidden for a while by \
         another reader (`shipgate failed list` shows what is there)"
    )]
    NotInQueue(String),
    #[error(
        "{failed} of {selected} events were not replayed (each is listed above); they stay in the queue"
    )]
    ReplayIncomplete { failed: usize, selected: usize },
    #[error("{failed} of {total} checks failed (each is listed above with its fix)")]
    ChecksFailed { failed: usize, total: usize },
    #[error("writing the report failed")]
    Output(#[from] std::io::Error),
}

/// An error and its sources on one line (`a: b: c`): an SDK error's own text ("service error")
/// says little without its source, and its `Debug` says too much for a terminal.
pub fn report(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Some errors repeat their source's text in their own.
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_walks_the_sources_once() {
        let io = std::io::Error::other("connection refused");
        let error = OperatorError::Output(io);
        assert_eq!(
            report(&error),
            "writing the report failed: connection refused"
        );
        let missing = OperatorError::NotInQueue("m-1".into());
        assert!(report(&missing).starts_with("no message m-1 in the queue"));
    }
}
