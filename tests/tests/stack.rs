//! The local stack itself: it starts and stops cleanly, stacks run side by side, and roles
//! assumed into an environment account act in that account.

use std::collections::BTreeSet;

use anyhow::{Context, Result};
use shipgate_local::accounts;
use shipgate_tests::shared_stack::SharedStack;
use shipgate_tests::support::{in_account, start_stack, unique};

/// The stack the tests of a running stack share (the lifecycle tests start their own): every
/// environment account with its platform from the environment template.
static STACK: SharedStack = SharedStack::new("environments", |o| {
    o.registries = false;
    o.deliver_s3_events = false;
    o.environment_template = Some(shipgate_local::process::project_root().join("environment.yaml"));
});

fn alive(pid: u32) -> bool {
    // A zombie still has a /proc entry; its state says it is gone.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.split(") ").nth(1).unwrap_or("").starts_with('Z'))
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_stack_leaves_no_process_behind() -> Result<()> {
    let stack = start_stack("stop-clean", |_| {}).await?;
    let mut pids: Vec<u32> = stack.registries.iter().filter_map(|r| r.pid()).collect();
    pids.push(stack.moto.pid().context("moto pid")?);
    assert_eq!(pids.len(), 5, "moto and four registries");
    assert!(pids.iter().all(|p| alive(*p)));
    stack.stop().await;
    for pid in pids {
        assert!(!alive(pid), "process {pid} outlived its stack");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stacks_run_side_by_side_on_their_own_ports() -> Result<()> {
    let (a, b) = tokio::join!(
        start_stack("side-a", |o| o.registries = false),
        start_stack("side-b", |o| o.registries = false)
    );
    let (a, b) = (a?, b?);
    assert_ne!(a.moto.port(), b.moto.port());
    // Each has its own state: a drop in one is not seen by the other.
    let bucket = a.provisioned.artifact_bucket.clone().context("bucket")?;
    shipgate::aws::s3_client(&a.sdk, true)
        .put_object()
        .bucket(&bucket)
        .key("notes/a.txt")
        .body(b"a".to_vec().into())
        .send()
        .await?;
    let listed = shipgate::aws::s3_client(&b.sdk, true)
        .list_objects_v2()
        .bucket(&bucket)
        .send()
        .await?;
    assert_eq!(listed.key_count(), Some(0));
    a.stop().await;
    b.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_assumed_into_an_environment_account_acts_there() -> Result<()> {
    let stack = STACK.get().await?;
    let int = in_account(stack, accounts::INT).await;
    let who = aws_sdk_sts::Client::new(&int)
        .get_caller_identity()
        .send()
        .await?;
    assert_eq!(who.account(), Some(accounts::INT));

    let s3_int = shipgate::aws::s3_client(&int, true);
    let bucket = unique("int-only");
    shipgate_local::provision::create_regional_bucket(&s3_int, &bucket).await?;
    let names = |out: aws_sdk_s3::operation::list_buckets::ListBucketsOutput| -> BTreeSet<String> {
        out.buckets()
            .iter()
            .filter_map(|b| b.name().map(str::to_owned))
            .collect()
    };
    let in_int = names(s3_int.list_buckets().send().await?);
    let in_tooling = names(
        shipgate::aws::s3_client(&stack.sdk, true)
            .list_buckets()
            .send()
            .await?,
    );
    assert!(in_int.contains(&bucket));
    assert!(!in_tooling.contains(&bucket), "{in_tooling:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_environment_account_gets_its_platform_from_the_environment_template() -> Result<()> {
    let stack = STACK.get().await?;
    assert_eq!(
        stack.environments.keys().collect::<Vec<_>>(),
        ["int", "prod", "stg"]
    );
    for (environment, account) in accounts::ENVIRONMENTS {
        let outputs = &stack.environments[environment];
        assert_eq!(
            outputs["DeployRoleArn"],
            accounts::deploy_role_arn(account),
            "{environment}"
        );
        assert!(outputs["ProdListenerArn"].contains(account), "{outputs:?}");
        // The applications' templates import these, in that account only.
        let assumed = in_account(stack, account).await;
        let exports = aws_sdk_cloudformation::Client::new(&assumed)
            .list_exports()
            .send()
            .await?;
        let names: BTreeSet<&str> = exports.exports().iter().filter_map(|e| e.name()).collect();
        for name in [
            "shipgate-env-ClusterName",
            "shipgate-env-PrivateSubnets",
            "shipgate-env-ServiceSecurityGroup",
            "shipgate-env-TaskExecutionRoleArn",
            "shipgate-env-ProdListener",
            "shipgate-env-TestListener",
        ] {
            assert!(names.contains(name), "{environment}: {name} in {names:?}");
        }
        let cluster = exports
            .exports()
            .iter()
            .find(|e| e.name() == Some("shipgate-env-ClusterName"))
            .and_then(|e| e.value())
            .context("cluster export")?;
        assert_eq!(cluster, format!("shipgate-{environment}"));
    }
    Ok(())
}

/// A request AWS would refuse for breaking its service model's constraints (a pattern, a
/// length, an enum) is refused by the local stack with AWS's ValidationException, before moto
/// acts on it (`local/moto-patches/request_conformance.py`); a conforming one goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_breaks_its_service_model_is_refused_as_aws_refuses_it() -> Result<()> {
    let stack = STACK.get().await?;
    let sts = aws_sdk_sts::Client::new(&stack.sdk);
    let role = accounts::deploy_role_arn(accounts::INT);
    let spaced = sts
        .assume_role()
        .role_arn(&role)
        .role_session_name("has a space")
        .send()
        .await
        .expect_err("a session name outside [\\w+=,.@-]* is refused");
    let message = format!("{}", aws_sdk_sts::error::DisplayErrorContext(&spaced));
    assert!(message.contains("ValidationError"), "{message}");
    assert!(
        message.contains("'roleSessionName' failed to satisfy constraint"),
        "{message}"
    );
    sts.assume_role()
        .role_arn(&role)
        .role_session_name("shipgate-conforming")
        .send()
        .await?;

    let ddb = aws_sdk_dynamodb::Client::new(&stack.sdk);
    let long = ddb
        .describe_table()
        .table_name("t".repeat(1025))
        .send()
        .await
        .expect_err("a table name over 1024 characters is refused");
    let message = format!("{}", aws_sdk_dynamodb::error::DisplayErrorContext(&long));
    assert!(message.contains("ValidationException"), "{message}");
    assert!(message.contains("less than or equal to 1024"), "{message}");

    let ecs = aws_sdk_ecs::Client::new(&stack.sdk);
    let unknown = ecs
        .list_tasks()
        .cluster("any")
        .desired_status(aws_sdk_ecs::types::DesiredStatus::from("SLEEPING"))
        .send()
        .await
        .expect_err("a value outside the enum is refused");
    let message = format!("{}", aws_sdk_ecs::error::DisplayErrorContext(&unknown));
    assert!(message.contains("enum value set"), "{message}");
    Ok(())
}
