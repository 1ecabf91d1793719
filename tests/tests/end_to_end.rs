//! The whole release story of `make demo`, asserted from the state in the local AWS (stacks,
//! listeners' weights, images by digest in each account's registry, emails, release and
//! deployment records, pipeline executions), never from printed text:
//!
//! 1. a broken release is rejected with its problems, the integrator is emailed, nothing starts;
//! 2. the fixed release starts the pipeline; int's change set is approved through the page
//!    (GET decides nothing, the page's POST decides); deploy, checks and a canary to 100%;
//! 3. the approval to promote to stg; the images are copied by digest to stg's registry;
//! 4. stg's change set approved, deployed, checked; the canary reaches 10%, the app's alarm
//!    fires, all traffic goes back to the previous version, the execution fails with the alarm's
//!    reason and stg's team is emailed;
//! 5. the fix goes through int (the target groups swap roles), stg and prod (linear plan).
//!
//! Beside the listener, the app's Lambda function (the notifier, installed at 1.3.0 in every
//! environment before the story starts) shifts on its alias `live` in each stage, is rolled
//! back with the listener in stg, and keeps one version per release in each account.
//!
//! A second test: a release whose checks fail stops before its traffic action, with no weight
//! moved.
//!
//! Both stories run on stacks that record every AWS call the functions make; `iam_conformance`
//! evaluates those calls against the templates' policies (`make iam-check` runs it alone).

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use aws_config::SdkConfig;
use shipgate::deploy::deployment_id;
use shipgate::store::{DeploymentState, GateState, ReleaseRecord, ReleaseState};
use shipgate_local::accounts;
use shipgate_local::approvals::follow;
use shipgate_local::outbox::links;
use shipgate_local::recorder::Recording;
use shipgate_tests::recorded::RecordedStory;
use shipgate_tests::story::Story;
use shipgate_tests::support::{alias_routing, in_account, stack_status, wait_for};

/// How long one step may take on a loaded 2-core machine.
const STEP: Duration = Duration::from_secs(120);

/// The story on a stack with every environment account's platform (`environment.yaml`).
struct World {
    story: Story,
    releases_dir: std::path::PathBuf,
}

impl std::ops::Deref for World {
    type Target = Story;

    fn deref(&self) -> &Story {
        &self.story
    }
}

impl World {
    async fn start(name: &str) -> Result<Self> {
        let root = shipgate_local::process::project_root();
        let story = Story::start_with(name, |o| {
            o.environment_template = Some(root.join("environment.yaml"));
            o.record_calls = true;
        })
        .await?;
        Ok(Self {
            releases_dir: story.stack.state_dir().join("releases"),
            story,
        })
    }

    /// Runs `story` on a world of its own, then stops the world's stack; the calls the
    /// functions made, when the story passed.
    async fn run(name: &str, story: impl AsyncFnOnce(&World) -> Result<()>) -> Result<Recording> {
        let world = Self::start(name).await?;
        let result = match story(&world).await {
            Ok(()) => world.story.stack.recording().await,
            Err(e) => Err(e),
        };
        world.story.stack.stop().await;
        result
    }

    /// The sample app's release zips for `version`, its image pushed to the tooling registry.
    async fn build(&self, version: &str) -> Result<shipgate_example::BuiltRelease> {
        let root = shipgate_local::process::project_root();
        shipgate_example::build(
            &self.stack.sdk,
            &self.stack.registry_overrides(),
            &root.join("examples/orders"),
            version,
            &self.releases_dir,
        )
        .await
    }

    /// The app's notifier at `version`, installed in every environment as before shipgate.
    async fn install_previous(&self, version: &str) -> Result<()> {
        let root = shipgate_local::process::project_root();
        let environments: Vec<(String, String)> = accounts::ENVIRONMENTS
            .iter()
            .map(|(env, account)| ((*env).to_owned(), accounts::deploy_role_arn(account)))
            .collect();
        shipgate_example::install_previous(
            &self.stack.sdk,
            &root.join("examples/orders"),
            "notifier",
            version,
            &environments,
        )
        .await?;
        Ok(())
    }

    /// The notifier's Lambda client in `environment`'s account.
    async fn lambda(&self, environment: &str) -> Result<aws_sdk_lambda::Client> {
        Ok(aws_sdk_lambda::Client::new(
            &self.environment_sdk(account_of(environment)?).await,
        ))
    }

    /// The notifier's alias `live` in `environment`: its version and its routing config's
    /// additional version and weight.
    async fn alias(&self, environment: &str) -> Result<(String, Option<(String, f64)>)> {
        let function = format!("orders-{environment}-notifier");
        alias_routing(&self.lambda(environment).await?, &function, "live").await
    }

    /// The notifier's published versions in `environment`, each with its description.
    async fn versions(&self, environment: &str) -> Result<Vec<(String, String)>> {
        let out = self
            .lambda(environment)
            .await?
            .list_versions_by_function()
            .function_name(format!("orders-{environment}-notifier"))
            .send()
            .await?;
        Ok(out
            .versions()
            .iter()
            .filter(|v| v.version() != Some("$LATEST"))
            .map(|v| {
                (
                    v.version().unwrap_or_default().to_owned(),
                    v.description().unwrap_or_default().to_owned(),
                )
            })
            .collect())
    }

    /// Drops `zip` under incoming/ and waits for intake's verdict.
    async fn drop(&self, zip: &std::path::Path) -> Result<ReleaseRecord> {
        let name = zip.file_name().context("zip name")?.to_string_lossy();
        self.drop_at(&format!("incoming/{name}"), std::fs::read(zip)?)
            .await
    }

    /// Waits until `stage`/`action` of the newest execution ends; fails on the other ending.
    async fn wait_action(&self, stage: &str, action: &str, expect: &str) -> Result<()> {
        self.pipeline.action_ends(stage, action, expect, STEP).await
    }

    async fn wait_execution(&self, execution_id: &str, expect: &str) -> Result<()> {
        self.pipeline
            .execution_ends(execution_id, expect, STEP)
            .await
    }

    /// The approver opens the mailed link (GET: the gate stays pending) and presses Approve.
    async fn approve(
        &self,
        release: &ReleaseRecord,
        stage: &str,
        action: &str,
        approver: &str,
    ) -> Result<()> {
        let execution = release.execution_id.clone().context("execution id")?;
        let gate = self.wait_gate(release, stage, action).await?;
        ensure!(
            gate.state == GateState::Pending,
            "{stage}/{action} is not pending"
        );
        let link = shipgate_local::approvals::link_for(
            &self.stack.sdk,
            &self.story.functions_env(),
            &shipgate_local::approvals::GateQuery {
                release: Some(release.release_id.clone()),
                stage: stage.to_owned(),
                action: action.to_owned(),
                wait: Duration::ZERO,
            },
            approver,
            "approve",
        )
        .await?;
        let opened = follow(&link, None, None).await?;
        ensure!(opened.ok, "GET of the link failed: {}", opened.report);
        let still = self
            .store
            .get_gate(&execution, stage, action)
            .await?
            .context("gate")?;
        ensure!(
            still.state == GateState::Pending && still.decision.is_none(),
            "opening the link decided the gate"
        );
        let decided = follow(&link, Some("approve"), Some("end-to-end")).await?;
        ensure!(decided.ok, "POST approve failed: {}", decided.report);
        let gate = self
            .store
            .get_gate(&execution, stage, action)
            .await?
            .context("gate")?;
        let decision = gate.decision.context("no decision recorded")?;
        ensure!(
            decision.approver == approver,
            "decided by {}",
            decision.approver
        );
        // The same link cannot decide twice.
        let again = follow(&link, Some("approve"), None).await?;
        ensure!(!again.ok, "a used link decided again: {}", again.report);
        Ok(())
    }

    async fn environment_sdk(&self, account: &str) -> SdkConfig {
        in_account(&self.stack, account).await
    }

    /// The prod listener's weights in `environment`: (blue %, green %) by the env stack's
    /// target groups.
    async fn weights(&self, environment: &str, account: &str) -> Result<(String, u8)> {
        let outputs = self
            .stack
            .environments
            .get(environment)
            .context("environment outputs")?;
        let listener = outputs.get("ProdListenerArn").context("listener")?;
        let elb = aws_sdk_elasticloadbalancingv2::Client::new(&self.environment_sdk(account).await);
        let weights = shipgate::aws::elbv2::listener_weights(&elb, listener).await?;
        let blue = outputs.get("BlueTargetGroupArn").context("blue")?;
        let on_blue = shipgate::aws::elbv2::percent_on(&weights, blue);
        Ok((blue.clone(), on_blue))
    }

    /// The image's manifest digest in `account`'s registry, if it is there.
    async fn image_digest(&self, account: &str, repo: &str, tag: &str) -> Result<Option<String>> {
        let sdk = if account == accounts::TOOLING {
            self.stack.sdk.clone()
        } else {
            self.environment_sdk(account).await
        };
        let registry = shipgate::registry::ecr_registry(
            &aws_sdk_ecr::Client::new(&sdk),
            reqwest::Client::new(),
            &self.stack.registry_overrides(),
        )
        .await?;
        Ok(registry
            .head_manifest(repo, tag)
            .await?
            .map(|d| d.digest.as_str().to_owned()))
    }

    /// Fails unless `account`'s registry holds the sample's image `tag` by `digest`.
    async fn ensure_holds(&self, account: &str, tag: &str, digest: &str) -> Result<()> {
        let held = self.image_digest(account, "orders/web", tag).await?;
        ensure!(
            held.as_deref() == Some(digest),
            "{account}'s registry holds orders/web:{tag} as {held:?}, not by its digest {digest}"
        );
        Ok(())
    }

    /// The value a change set of stack `name` in `account` gives parameter `key`.
    async fn stack_parameter(
        &self,
        account: &str,
        name: &str,
        change_set: &str,
        key: &str,
    ) -> Result<String> {
        let cf = aws_sdk_cloudformation::Client::new(&self.environment_sdk(account).await);
        let described = cf
            .describe_change_set()
            .stack_name(name)
            .change_set_name(change_set)
            .send()
            .await?;
        described
            .parameters()
            .iter()
            .find(|p| p.parameter_key() == Some(key))
            .and_then(|p| p.parameter_value())
            .map(str::to_owned)
            .with_context(|| format!("{name}'s change set {change_set} has no {key}"))
    }

    async fn stack_status(&self, account: &str, name: &str) -> Result<String> {
        let cf = aws_sdk_cloudformation::Client::new(&self.environment_sdk(account).await);
        stack_status(&cf, name).await
    }

    /// The stage's deployment of `release` named `name` (the listener's is unnamed, the
    /// pipeline's LambdaTraffic actions are named `lambda`).
    async fn deployment_named(
        &self,
        release: &ReleaseRecord,
        environment: &str,
        name: Option<&str>,
    ) -> Result<shipgate::store::Deployment> {
        let execution = release.execution_id.as_deref().unwrap_or_default();
        let id = deployment_id(
            &release.release_id,
            environment,
            &shipgate_traffic::named_execution(execution, name),
        );
        self.store.get_deployment(&id).await?.with_context(|| {
            format!(
                "no {environment} {} deployment for {}",
                name.unwrap_or("listener"),
                release.release_id
            )
        })
    }

    async fn deployment_state(
        &self,
        release: &ReleaseRecord,
        environment: &str,
    ) -> Result<shipgate::store::Deployment> {
        self.deployment_named(release, environment, None).await
    }

    /// The stage's Lambda deployment (the pipeline's LambdaTraffic actions are named `lambda`).
    async fn lambda_deployment(
        &self,
        release: &ReleaseRecord,
        environment: &str,
    ) -> Result<shipgate::store::Deployment> {
        self.deployment_named(release, environment, Some("lambda"))
            .await
    }

    async fn set_alarm(&self, account: &str, name: &str, state: &str, reason: &str) -> Result<()> {
        let cw = aws_sdk_cloudwatch::Client::new(&self.environment_sdk(account).await);
        cw.set_alarm_state()
            .alarm_name(name)
            .state_value(state.into())
            .state_reason(reason)
            .send()
            .await?;
        Ok(())
    }
}

fn account_of(environment: &str) -> Result<&'static str> {
    accounts::ENVIRONMENTS
        .iter()
        .find(|(env, _)| *env == environment)
        .map(|(_, account)| *account)
        .with_context(|| format!("no account for {environment}"))
}

/// `live` on `version` alone, no routing config.
fn all_on(version: &str) -> (String, Option<(String, f64)>) {
    (version.to_owned(), None)
}

/// The release story, told once per run of this binary (by its test, or by the IAM check).
static RELEASE: RecordedStory = RecordedStory::new("release", env!("CARGO_TARGET_TMPDIR"), || {
    Box::pin(World::run("end-to-end", story))
});

/// The failing-checks story, likewise.
static FAILING_CHECKS: RecordedStory =
    RecordedStory::new("failing-checks", env!("CARGO_TARGET_TMPDIR"), || {
        Box::pin(World::run("end-to-end-checks", failing_checks))
    });

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_release_walks_from_a_dropped_zip_to_production() -> Result<()> {
    RELEASE.run().await.map(|_| ())
}

async fn story(w: &World) -> Result<()> {
    // 0. Before shipgate: the notifier at 1.3.0 in every environment, live on version 1.
    w.install_previous("1.3.0").await?;
    for (environment, _) in accounts::ENVIRONMENTS {
        ensure!(
            w.alias(environment).await? == all_on("1"),
            "{environment}: the installed notifier's alias is not on version 1"
        );
    }

    // 1. A broken release: rejected with every problem, the integrator emailed, nothing started.
    let v140 = w.build("1.4.0").await?;
    let broken = w.drop(&v140.broken).await?;
    ensure!(
        broken.state == ReleaseState::Rejected,
        "the broken drop was not rejected"
    );
    let codes: Vec<String> = broken
        .problems
        .as_ref()
        .and_then(|p| p.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|p| p.get("code")?.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    for code in [
        "path_traversal",
        "unknown_field",
        "invalid_email",
        "invalid_digest",
        "template_missing",
    ] {
        ensure!(
            codes.iter().any(|c| c == code),
            "{code} not reported: {codes:?}"
        );
    }
    let rejection = wait_for("the rejection email", STEP, || async {
        Ok(w.emails()
            .await?
            .into_iter()
            .find(|e| e.subject.contains("rejected")))
    })
    .await?;
    ensure!(
        rejection.subject.contains("5 problems"),
        "{}",
        rejection.subject
    );
    ensure!(
        broken.execution_id.is_none(),
        "a rejected drop started an execution"
    );

    // 2. The fixed release starts the pipeline; int approved, deployed, checked, canary done.
    let r140 = w.drop(&v140.good).await?;
    ensure!(
        r140.state == ReleaseState::Started,
        "1.4.0 did not start: {:?}",
        r140.problems
    );
    let exec140 = r140.execution_id.clone().context("execution")?;
    let int_changes = wait_for("int's change set", STEP, || async {
        let c = w.store.list_stack_changes(&r140.release_id, "int").await?;
        Ok((!c.is_empty()).then_some(c))
    })
    .await?;
    ensure!(int_changes[0].account_id == accounts::INT);
    // Int pulls from its own registry only: the images were copied there by digest before its
    // change set, which names them there.
    let digest140 = v140.manifest["images"][0]["digest"]
        .as_str()
        .context("digest")?
        .to_owned();
    w.wait_action("PromoteToInt", "Promote", "Succeeded")
        .await?;
    w.ensure_holds(accounts::INT, "1.4.0", &digest140).await?;
    let service = int_changes
        .iter()
        .find(|c| c.stack_name == "orders-int-service")
        .context("int's service change set")?;
    let int_image = w
        .stack_parameter(
            accounts::INT,
            &service.stack_name,
            &service.change_set_name,
            "ImageUri",
        )
        .await?;
    ensure!(
        int_image.starts_with(&format!("{}.dkr.ecr.", accounts::INT))
            && int_image.ends_with(&digest140),
        "int's change set names {int_image}, not int's registry"
    );
    w.approve(&r140, "Int", "ApproveInt", "int-lead@shipgate.local")
        .await?;
    w.wait_action("Int", "Deploy", "Succeeded").await?;
    ensure!(
        w.stack_status(accounts::INT, "orders-int-service")
            .await?
            .ends_with("_COMPLETE"),
        "int's stack did not settle"
    );
    w.wait_action("Int", "Checks", "Succeeded").await?;
    w.wait_action("Int", "Traffic", "Succeeded").await?;
    w.wait_action("Int", "LambdaTraffic", "Succeeded").await?;
    let int140 = w.deployment_state(&r140, "int").await?;
    ensure!(
        int140.state == DeploymentState::Succeeded,
        "int: {:?}",
        int140.state
    );
    let (_, on_blue) = w.weights("int", accounts::INT).await?;
    ensure!(
        on_blue == 0,
        "int: 1.4.0 is on green, yet blue has {on_blue}%"
    );
    // The alias moved from 1.3.0's version to 1.4.0's, step by step, and holds no weights.
    let int140_lambda = w.lambda_deployment(&r140, "int").await?;
    ensure!(
        int140_lambda.state == DeploymentState::Succeeded && int140_lambda.steps.len() >= 2,
        "int's Lambda deployment: {:?}, {} steps",
        int140_lambda.state,
        int140_lambda.steps.len()
    );
    ensure!(
        w.alias("int").await? == all_on("2"),
        "int: live is not on 1.4.0's version alone: {:?}",
        w.alias("int").await?
    );

    // 3. The approval to promote; the images copied by digest into stg's registry.
    ensure!(
        w.image_digest(accounts::STG, "orders/web", "1.4.0")
            .await?
            .is_none(),
        "the image was in stg before its promotion"
    );
    w.approve(
        &r140,
        "PromoteToStg",
        "ApprovePromotion",
        "stg-lead@shipgate.local",
    )
    .await?;
    w.wait_action("PromoteToStg", "Promote", "Succeeded")
        .await?;
    w.ensure_holds(accounts::STG, "1.4.0", &digest140).await?;
    let promotion_email = w
        .emails()
        .await?
        .into_iter()
        .find(|e| {
            e.subject
                .starts_with("Approve promoting orders 1.4.0 from int to stg")
        })
        .context("no approval-to-promote email")?;
    ensure!(
        promotion_email.body.contains(&digest140),
        "the promotion email lacks the digest"
    );

    // 4. stg: approved, deployed, checked; the alarm fires at 10% and traffic rolls back.
    w.approve(&r140, "Stg", "ApproveStg", "stg-lead@shipgate.local")
        .await?;
    w.wait_action("Stg", "Deploy", "Succeeded").await?;
    w.wait_action("Stg", "Checks", "Succeeded").await?;
    wait_for("stg's canary at 10%", STEP, || async {
        Ok(w.deployment_state(&r140, "stg")
            .await
            .ok()
            .filter(|d| d.percent >= 10))
    })
    .await?;
    wait_for("stg's alias at 10%", STEP, || async {
        Ok(w.lambda_deployment(&r140, "stg")
            .await
            .ok()
            .filter(|d| d.percent >= 10))
    })
    .await?;
    let shifting = w.alias("stg").await?;
    ensure!(
        shifting.0 == "1"
            && shifting
                .1
                .as_ref()
                .is_some_and(|(v, w)| v == "2" && *w > 0.0),
        "stg: live does not weigh 1.4.0's version in: {shifting:?}"
    );
    w.set_alarm(
        accounts::STG,
        "orders-stg-5xx",
        "ALARM",
        "Threshold Crossed: end-to-end",
    )
    .await?;
    w.wait_action("Stg", "Traffic", "Failed").await?;
    w.wait_action("Stg", "LambdaTraffic", "Failed").await?;
    w.wait_execution(&exec140, "Failed").await?;
    let stg140 = w.deployment_state(&r140, "stg").await?;
    ensure!(
        stg140.state == DeploymentState::RolledBack,
        "stg: {:?}",
        stg140.state
    );
    let rollback = stg140.rollback.clone().context("rollback record")?;
    ensure!(
        rollback.alarm.as_deref() == Some("orders-stg-5xx"),
        "{rollback:?}"
    );
    let (_, on_blue) = w.weights("stg", accounts::STG).await?;
    ensure!(
        on_blue == 100,
        "stg after the rollback: blue has {on_blue}%"
    );
    // The same alarm rolled the alias back: all of it on 1.3.0's version again.
    let stg140_lambda = w.lambda_deployment(&r140, "stg").await?;
    ensure!(
        stg140_lambda.state == DeploymentState::RolledBack
            && stg140_lambda
                .rollback
                .as_ref()
                .and_then(|r| r.alarm.as_deref())
                == Some("orders-stg-5xx"),
        "stg's Lambda deployment: {:?} {:?}",
        stg140_lambda.state,
        stg140_lambda.rollback
    );
    ensure!(
        w.alias("stg").await? == all_on("1"),
        "stg after the rollback: {:?}",
        w.alias("stg").await?
    );
    let team = wait_for("stg's team email", STEP, || async {
        Ok(w.emails()
            .await?
            .into_iter()
            .find(|e| e.to.iter().any(|t| t == "stg-team@shipgate.local")))
    })
    .await?;
    ensure!(team.body.contains("orders-stg-5xx"), "{}", team.subject);

    // 5. The fix: int (roles swap), the promotion, stg to 100%, the promotion, prod (linear).
    w.set_alarm(accounts::STG, "orders-stg-5xx", "OK", "fixed")
        .await?;
    let v141 = w.build("1.4.1").await?;
    let r141 = w.drop(&v141.good).await?;
    ensure!(r141.state == ReleaseState::Started, "1.4.1 did not start");
    let exec141 = r141.execution_id.clone().context("execution")?;
    w.approve(&r141, "Int", "ApproveInt", "int-lead@shipgate.local")
        .await?;
    w.wait_action("Int", "Traffic", "Succeeded").await?;
    w.wait_action("Int", "LambdaTraffic", "Succeeded").await?;
    ensure!(
        w.alias("int").await? == all_on("3"),
        "int: live not on 1.4.1"
    );
    let (_, on_blue) = w.weights("int", accounts::INT).await?;
    ensure!(
        on_blue == 100,
        "int: 1.4.1 should be on blue (roles swap), blue has {on_blue}%"
    );
    w.approve(
        &r141,
        "PromoteToStg",
        "ApprovePromotion",
        "stg-lead@shipgate.local",
    )
    .await?;
    w.wait_action("PromoteToStg", "Promote", "Succeeded")
        .await?;
    w.approve(&r141, "Stg", "ApproveStg", "stg-lead@shipgate.local")
        .await?;
    w.wait_action("Stg", "Traffic", "Succeeded").await?;
    w.wait_action("Stg", "LambdaTraffic", "Succeeded").await?;
    ensure!(
        w.alias("stg").await? == all_on("3"),
        "stg: live not on 1.4.1"
    );
    w.approve(
        &r141,
        "PromoteToProd",
        "ApprovePromotion",
        "cab@shipgate.local",
    )
    .await?;
    w.wait_action("PromoteToProd", "Promote", "Succeeded")
        .await?;
    let digest141 = v141.manifest["images"][0]["digest"]
        .as_str()
        .context("digest")?
        .to_owned();
    for account in [accounts::STG, accounts::PROD] {
        w.ensure_holds(account, "1.4.1", &digest141).await?;
    }
    w.approve(&r141, "Prod", "ApproveProd", "cab@shipgate.local")
        .await?;
    w.wait_action("Prod", "Checks", "Succeeded").await?;
    w.wait_execution(&exec141, "Succeeded").await?;
    let prod141 = w.deployment_state(&r141, "prod").await?;
    ensure!(
        prod141.state == DeploymentState::Succeeded,
        "prod: {:?}",
        prod141.state
    );
    ensure!(
        prod141.plan.starts_with("Linear10PercentEvery1Minute"),
        "{}",
        prod141.plan
    );
    let (_, on_blue) = w.weights("prod", accounts::PROD).await?;
    ensure!(
        on_blue == 0,
        "prod: 1.4.1 is on green, yet blue has {on_blue}%"
    );
    ensure!(
        w.stack_status(accounts::PROD, "orders-prod-service")
            .await?
            .ends_with("_COMPLETE"),
        "prod's stack did not settle"
    );
    let prod141_lambda = w.lambda_deployment(&r141, "prod").await?;
    ensure!(
        prod141_lambda.state == DeploymentState::Succeeded,
        "prod's Lambda deployment: {:?}",
        prod141_lambda.state
    );
    ensure!(
        w.alias("prod").await? == all_on("2"),
        "prod: live not on 1.4.1"
    );
    // One version per release each account saw, kept after the alias moved on; prod never
    // saw 1.4.0.
    let described = |versions: &[(&str, &str)]| -> Vec<(String, String)> {
        versions
            .iter()
            .map(|(v, d)| ((*v).to_owned(), format!("orders {d}")))
            .collect()
    };
    for environment in ["int", "stg"] {
        ensure!(
            w.versions(environment).await?
                == described(&[("1", "1.3.0"), ("2", "1.4.0"), ("3", "1.4.1")]),
            "{environment}'s versions: {:?}",
            w.versions(environment).await?
        );
    }
    ensure!(
        w.versions("prod").await? == described(&[("1", "1.3.0"), ("2", "1.4.1")]),
        "prod's versions: {:?}",
        w.versions("prod").await?
    );

    // Every approval was mailed and decided exactly once, each approver with their own link.
    let mut decided = 0;
    for release in [&r140, &r141] {
        for gate in w.store.list_release_gates(&release.release_id).await? {
            ensure!(
                gate.links.iter().all(|l| l.message_id.is_some()),
                "a link of {} was not mailed",
                gate.key()
            );
            if gate.decision.is_some() {
                decided += 1;
            }
        }
    }
    // 1.4.0: Int, PromoteToStg, Stg; 1.4.1: Int, PromoteToStg, Stg, PromoteToProd, Prod.
    ensure!(decided == 8, "{decided} gates decided, expected 8");
    let approvals = w
        .emails()
        .await?
        .into_iter()
        .filter(|e| e.subject.starts_with("Approve "))
        .count();
    // int: 2 approvers, stg: 1, prod: 2 (per gate round).
    ensure!(
        approvals == 2 + 1 + 1 + 2 + 1 + 1 + 2 + 2,
        "{approvals} approval emails"
    );
    let links_in_emails = w
        .emails()
        .await?
        .iter()
        .filter(|e| e.subject.starts_with("Approve "))
        .map(|e| links(&e.body).len())
        .min()
        .unwrap_or(0);
    ensure!(links_in_emails >= 2, "an approval email without both links");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_check_stops_the_release_before_any_traffic_moves() -> Result<()> {
    FAILING_CHECKS.run().await.map(|_| ())
}

async fn failing_checks(w: &World) -> Result<()> {
    w.stack
        .test_endpoints
        .get("int")
        .context("int's test endpoint")?
        .set_health(503);
    let v = w.build("1.4.0").await?;
    let release = w.drop(&v.good).await?;
    ensure!(
        release.state == ReleaseState::Started,
        "the release did not start"
    );
    let (blue, on_blue_before) = w.weights("int", accounts::INT).await?;
    w.approve(&release, "Int", "ApproveInt", "int-lead@shipgate.local")
        .await?;
    w.wait_action("Int", "Deploy", "Succeeded").await?;
    w.wait_action("Int", "Checks", "Failed").await?;
    w.wait_execution(
        release.execution_id.as_deref().unwrap_or_default(),
        "Failed",
    )
    .await?;
    for action in ["Traffic", "LambdaTraffic"] {
        ensure!(
            w.action_status("Int", action).await?.is_none(),
            "the {action} action ran after a failed check"
        );
    }
    let (blue_after, on_blue_after) = w.weights("int", accounts::INT).await?;
    ensure!(
        blue == blue_after && on_blue_before == 100 && on_blue_after == 100,
        "weights moved: blue {on_blue_before}% -> {on_blue_after}%"
    );
    let id = deployment_id(
        &release.release_id,
        "int",
        release.execution_id.as_deref().unwrap_or_default(),
    );
    if w.store.get_deployment(&id).await?.is_some() {
        bail!("a deployment was created after a failed check");
    }
    Ok(())
}

/// IAM conformance: every AWS call the stories above made, as their stacks recorded it, and
/// every call `local/iam/calls.yaml` lists by hand (those no story makes), evaluated against the
/// policies of `template.yaml` and `environment.yaml` the way AWS evaluates them. A story this
/// code has no recording of is told first (once, shared with its own test).
mod iam_conformance {
    use super::*;
    use shipgate_local::iam_conformance::{
        CallSet, evaluate, listed_calls, redundant_listed, unneeded_actions,
    };

    /// The stories' recorded calls and the hand-listed ones, each with the templates they are
    /// decided against.
    async fn call_sets() -> Result<Vec<CallSet>> {
        let (release, checks) = tokio::try_join!(RELEASE.recording(), FAILING_CHECKS.recording())?;
        let mut sets = Vec::new();
        for (story, recording) in [("release", &release), ("failing-checks", &checks)] {
            eprintln!(
                "story {story}: {} distinct calls of the functions ({} requests by the stack \
                 and the tests left out); per function: {:?}",
                recording.calls.len(),
                recording.others,
                recording.calls_per_function()
            );
            let set = CallSet::recorded(story, recording).map_err(|errors| {
                anyhow::anyhow!(
                    "{} calls of story {story} cannot be evaluated:\n  {}",
                    errors.len(),
                    errors.join("\n  ")
                )
            })?;
            sets.push(set);
        }
        let root = shipgate_local::process::project_root();
        sets.push(CallSet::listed(&listed_calls(
            &root.join("local/iam/calls.yaml"),
        )?)?);
        for set in &sets {
            eprintln!("{}: {} authorizations", set.name, set.checks.len());
        }
        Ok(sets)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn every_call_of_every_function_is_allowed_as_aws_would_decide_it() -> Result<()> {
        let sets = call_sets().await?;
        let found = evaluate(&sets);
        let total: usize = sets.iter().map(|s| s.checks.len()).sum();
        eprintln!(
            "{total} authorizations, {} refused, allowed by {} statements",
            found.refused.len(),
            found.used.len()
        );
        let refused: Vec<&str> = found.refused.iter().map(|r| r.line.as_str()).collect();
        ensure!(
            refused.is_empty(),
            "{} of {total} authorizations would be refused by AWS:\n  {}",
            refused.len(),
            refused.join("\n  ")
        );
        // Every function of the template is seen making calls (or has them listed).
        let functions = sets[0].templates.functions();
        let with_calls: std::collections::BTreeSet<String> = sets
            .iter()
            .flat_map(|s| s.checks.iter().map(|c| c.function.clone()))
            .collect();
        let silent: Vec<_> = functions.difference(&with_calls).collect();
        ensure!(silent.is_empty(), "functions with no calls: {silent:?}");
        Ok(())
    }

    /// Every action a role the functions act as grants is needed by some call: taking any one
    /// out of its statement makes a call refused, and the refusal names the function, the call
    /// and the action.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn taking_any_granted_action_away_refuses_a_call_that_names_it() -> Result<()> {
        let sets = call_sets().await?;
        let (mutations, unneeded) = unneeded_actions(&sets);
        eprintln!("{mutations} granted actions taken away one at a time");
        ensure!(
            unneeded.is_empty(),
            "granted, but no call (recorded or listed) needs it ({}):\n  {}",
            unneeded.len(),
            unneeded.join("\n  ")
        );
        Ok(())
    }

    /// The hand list holds only what no story shows: an entry whose function, role, action
    /// and allowing statements a recorded call shares adds nothing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn no_call_is_listed_by_hand_that_a_story_shows() -> Result<()> {
        let sets = call_sets().await?;
        let found = evaluate(&sets);
        let redundant = redundant_listed(&sets, &found);
        ensure!(
            redundant.is_empty(),
            "listed in local/iam/calls.yaml, but a story makes the call ({}):\n  {}",
            redundant.len(),
            redundant.join("\n  ")
        );
        Ok(())
    }
}
