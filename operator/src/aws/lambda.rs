//! Lambda: asynchronous invocation, as the services that invoke shipgate's functions do, and
//! what `GetFunction` says of a function (the doctor's look at the test probe).

use aws_sdk_lambda::Client;
use aws_sdk_lambda::error::SdkError;
use aws_sdk_lambda::operation::RequestId;
use aws_sdk_lambda::operation::invoke::InvokeError;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;

/// Why an asynchronous invocation was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum InvokeFailure {
    #[error("Invoke of {function} failed")]
    Sdk {
        function: String,
        #[source]
        source: Box<SdkError<InvokeError>>,
    },
    /// Lambda accepts an `Event` invocation with 202; anything else did not queue it.
    #[error("Invoke of {function} answered {status}, not 202 (accepted)")]
    NotAccepted { function: String, status: i32 },
}

/// Queues `payload` for `function` (`InvocationType=Event`): `Ok` with the new request id once
/// Lambda has accepted it; the function then runs with Lambda's retries and dead-letter queue.
pub async fn invoke_event(
    client: &Client,
    function: &str,
    payload: &str,
) -> Result<Option<String>, InvokeFailure> {
    let out = client
        .invoke()
        .function_name(function)
        .invocation_type(InvocationType::Event)
        .payload(Blob::new(payload.as_bytes()))
        .send()
        .await
        .map_err(|e| InvokeFailure::Sdk {
            function: function.to_owned(),
            source: Box::new(e),
        })?;
    if out.status_code() != 202 {
        return Err(InvokeFailure::NotAccepted {
            function: function.to_owned(),
            status: out.status_code(),
        });
    }
    Ok(out.request_id().map(str::to_owned))
}

/// What `GetFunction` says of a function: its state and where its network interfaces are.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FunctionState {
    pub arn: String,
    /// `Pending`, `Active`, `Inactive` or `Failed` (Lambda Developer Guide, "Lambda function
    /// states").
    pub state: String,
    pub state_reason: Option<String>,
    /// The subnets of its `VpcConfig`; empty when it runs outside any VPC.
    pub subnets: Vec<String>,
}

/// The function `name`; `Ok(None)` when Lambda has no such function.
pub async fn function(
    client: &Client,
    name: &str,
) -> Result<Option<FunctionState>, super::CallFailure> {
    match client.get_function().function_name(name).send().await {
        Ok(out) => {
            let configuration = out.configuration();
            Ok(Some(FunctionState {
                arn: configuration
                    .and_then(|c| c.function_arn())
                    .unwrap_or(name)
                    .to_owned(),
                state: configuration
                    .and_then(|c| c.state())
                    .map(|s| s.as_str().to_owned())
                    .unwrap_or_default(),
                state_reason: configuration
                    .and_then(|c| c.state_reason())
                    .map(str::to_owned),
                subnets: configuration
                    .and_then(|c| c.vpc_config())
                    .map(|v| v.subnet_ids().to_vec())
                    .unwrap_or_default(),
            }))
        }
        Err(e) => super::absent_if(&e, "ResourceNotFoundException"),
    }
}
