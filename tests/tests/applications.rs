//! Two applications on one shipgate, side by side (issue 17).
//!
//! The core stack (`template.yaml`) serves its own application, `orders` (int → stg → prod, an
//! ECS service and a Lambda notifier); an application stack (`application.yaml`) onboards
//! `billing`, a Lambda-only application with a one-environment chain (int), its own pipeline,
//! approvers and team. One release of each is dropped at once:
//! 1. intake routes each to its application's pipeline, through its application's source key;
//! 2. each gate mails its own application's approvers only;
//! 3. a link naming billing's approver, validly signed, decides nothing of orders' gate;
//! 4. billing's release is approved, deployed and shifted, and its execution succeeds after its
//!    one environment, while orders' execution still waits at its own gate: neither supersedes
//!    nor blocks the other;
//! 5. billing's deployment records billing's team for its rollbacks.
//!
//! A drop naming an application nobody declared is rejected, and nothing starts.

use anyhow::{Context, Result, ensure};
use shipgate::aws::secrets::fetch_link_keys;
use shipgate::links::{LinkClaims, sign_link};
use shipgate::store::{GateState, ReleaseState};
use shipgate_local::accounts;
use shipgate_local::approvals::follow;
use shipgate_tests::story::{Pipeline, Story};

const BILLING_APPROVER: &str = "billing-lead@shipgate.local";
const BILLING_TEAM: &str = "billing-team@shipgate.local";

/// billing's application stack parameters: one environment, int, in int's account.
fn billing() -> std::collections::BTreeMap<String, String> {
    [
        ("ApplicationName", "billing"),
        ("PipelineName", "billing"),
        ("Env1Name", "int"),
        ("Env1Approvers", BILLING_APPROVER),
        ("Env1TeamEmail", BILLING_TEAM),
        ("Env1TrafficPlan", "AllAtOnce"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .chain([(
        "Env1DeployRoleArn".to_owned(),
        accounts::deploy_role_arn(accounts::INT),
    )])
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_applications_release_side_by_side_each_through_its_own_pipeline_and_people()
-> Result<()> {
    let root = shipgate_local::process::project_root();
    let story = Story::start_with("applications", |o| {
        o.environment_template = Some(root.join("environment.yaml"));
        o.applications = vec![billing()];
    })
    .await?;
    let result = side_by_side(&story).await;
    story.stack.stop().await;
    result
}

async fn side_by_side(story: &Story) -> Result<()> {
    let root = shipgate_local::process::project_root();
    let out = story.stack.state_dir().join("releases");
    let billing_pipeline = Pipeline::new(
        aws_sdk_codepipeline::Client::new(&story.stack.sdk),
        "billing",
    );
    // Before shipgate: billing's worker at 2.0.0 in int, live on version 1.
    shipgate_example::install_previous(
        &story.stack.sdk,
        &root.join("examples/billing"),
        "worker",
        "2.0.0",
        &[("int".to_owned(), accounts::deploy_role_arn(accounts::INT))],
    )
    .await?;

    // An application nobody declared: rejected, nothing started.
    let unknown =
        shipgate_tests::drops::good_release("invoicing", "1.0.0", &story.repository, &story.digest);
    let rejected = story
        .drop_at("incoming/invoicing-1.0.0.zip", unknown)
        .await?;
    ensure!(rejected.state == ReleaseState::Rejected, "{rejected:?}");
    ensure!(
        rejected
            .problems
            .iter()
            .filter_map(|p| p.as_array())
            .flatten()
            .any(|p| p["code"] == "application_unknown"),
        "{:?}",
        rejected.problems
    );
    ensure!(rejected.execution_id.is_none());

    // 1. One release of each at once.
    let orders = story.drop_release("1.4.0").await?;
    let built = shipgate_example::build(
        &story.stack.sdk,
        &story.stack.registry_overrides(),
        &root.join("examples/billing"),
        "2.1.0",
        &out,
    )
    .await?;
    let billing = story
        .drop_at("incoming/billing-2.1.0.zip", std::fs::read(&built.good)?)
        .await?;
    ensure!(
        billing.state == ReleaseState::Started,
        "{:?}",
        billing.problems
    );
    ensure!(
        billing.pipeline.as_deref() == Some("billing"),
        "{billing:?}"
    );
    ensure!(
        orders.pipeline.as_deref() != Some("billing"),
        "orders went to billing's pipeline"
    );
    ensure!(
        billing
            .accepted_object
            .as_ref()
            .is_some_and(|o| o.key == "accepted/billing/release.zip"),
        "{:?}",
        billing.accepted_object
    );
    let manifest = shipgate::job::release::recorded_manifest(&billing)?;
    ensure!(
        manifest.environments == ["int"],
        "billing goes through its own chain: {:?}",
        manifest.environments
    );

    // 2. Each gate mails its own application's approvers.
    let billing_gate = story.wait_gate(&billing, "int", "Approve").await?;
    let approvers: Vec<&str> = billing_gate
        .links
        .iter()
        .map(|l| l.approver.as_str())
        .collect();
    ensure!(
        approvers == [BILLING_APPROVER],
        "billing's gate mailed {approvers:?}"
    );
    let orders_gate = story.wait_gate(&orders, "Int", "ApproveInt").await?;
    ensure!(
        orders_gate
            .links
            .iter()
            .all(|l| l.approver != BILLING_APPROVER),
        "orders' gate mailed billing's approver"
    );

    // 3. A link naming billing's approver for orders' gate, signed with the real key: refused,
    //    and orders' gate stays pending.
    let env = story.functions_env();
    let keys = fetch_link_keys(
        &aws_sdk_secretsmanager::Client::new(&story.stack.sdk),
        &env.required("SHIPGATE_LINK_KEY_SECRET")?,
    )
    .await?;
    let claims = LinkClaims {
        execution_id: orders_gate.execution_id.clone(),
        stage: orders_gate.stage.clone(),
        action: orders_gate.action.clone(),
        approver: BILLING_APPROVER.to_owned(),
        expires_at: orders_gate.approval_expires_at,
        nonce: billing_gate.links[0].nonce.clone(),
    };
    let page = env.required("SHIPGATE_APPROVAL_URL")?;
    let forged = format!(
        "{page}{}t={}&i=approve",
        if page.contains('?') { '&' } else { '?' },
        sign_link(&claims, &keys.current)
    );
    let refused = follow(&forged, Some("approve"), None).await?;
    ensure!(
        !refused.ok,
        "billing's approver decided orders' gate: {}",
        refused.report
    );
    ensure!(refused.report.contains("HTTP 403"), "{}", refused.report);
    let still = story
        .store
        .get_gate(&orders_gate.execution_id, "Int", "ApproveInt")
        .await?
        .context("orders' gate")?;
    ensure!(still.state == GateState::Pending && still.decision.is_none());

    // 4. billing's approver approves from the mailed link; billing's one environment deploys
    //    and its execution ends, while orders' still waits at its own gate.
    let link = story
        .approval_link(BILLING_APPROVER, "2.1.0", "approve")
        .await?;
    let decided = follow(&link, Some("approve"), Some("billing ships")).await?;
    ensure!(decided.ok, "{}", decided.report);
    let billing_execution = billing
        .execution_id
        .clone()
        .context("billing's execution")?;
    let status = billing_pipeline
        .wait_execution(&billing_execution, &["Succeeded", "Failed", "Stopped"])
        .await?;
    ensure!(status == "Succeeded", "billing's execution is {status}");
    let orders_execution = orders.execution_id.clone().context("orders' execution")?;
    let orders_status = story.pipeline.execution_status(&orders_execution).await?;
    ensure!(
        orders_status == "InProgress",
        "orders' execution is {orders_status}: billing's release moved it"
    );
    ensure!(
        story.action_status("Int", "ApproveInt").await?.as_deref() == Some("InProgress"),
        "orders' gate no longer waits"
    );

    // billing's worker is live on the new version, and its deployment names billing's team.
    let lambda = aws_sdk_lambda::Client::new(
        &shipgate::aws::assume_role(
            &story.stack.sdk,
            &accounts::deploy_role_arn(accounts::INT),
            "applications-story",
        )
        .await,
    );
    let alias = lambda
        .get_alias()
        .function_name("billing-int-worker")
        .name("live")
        .send()
        .await?;
    ensure!(
        alias.function_version() != Some("1")
            && alias
                .routing_config()
                .is_none_or(|r| r.additional_version_weights().is_none_or(|w| w.is_empty())),
        "billing's alias: {alias:?}"
    );
    // The LambdaTraffic action's deployment (named `lambda` in its stage).
    let deployment_id = shipgate::deploy::deployment_id(
        &billing.release_id,
        "int",
        &format!("{billing_execution}/lambda"),
    );
    let deployment = story
        .store
        .get_deployment(&deployment_id)
        .await?
        .context("billing's deployment")?;
    ensure!(
        deployment.team.as_deref() == Some(&[BILLING_TEAM.to_owned()][..]),
        "billing's deployment tells {:?}",
        deployment.team
    );
    Ok(())
}
