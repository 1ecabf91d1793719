//! The change-set action against the local stack: a release intake accepted gets its change
//! set in the environment's account (int, 222222222222, through the deploy role), summarised and
//! stored with the release for the mailer; an empty change set is a normal outcome; a change set
//! CloudFormation refuses, or an artifact that is not the release intake validated, fails the
//! job with a message an operator can act on.
//!
//! Each test drives the action as CodePipeline does: a job built from AWS's sample
//! `CodePipeline.job` event, its input artifact the release zip in the artifact bucket, its
//! `UserParameters` the pipeline's; the release record is written as intake writes it. A change
//! set that is "deployed" is executed here as the deploy action will. The tests share one stack,
//! each releasing an application of its own (its stacks, cluster and exports are its own).
//!
//! What moto (5.2.5, as pinned) does, observed in these tests (and in
//! `moto/cloudformation/{models,responses,parsing}.py`):
//! - `CreateChangeSet` is synchronous: the first `DescribeChangeSet` already says
//!   `CREATE_COMPLETE`/`AVAILABLE`, so the action is done in one invocation (the continuation
//!   path is covered by unit tests of the decisions, and here by a continuation invocation).
//! - Each change has only `Action`, `LogicalResourceId` and `ResourceType`: no `Replacement`,
//!   `Scope`, `Details` nor `PhysicalResourceId`. Replacement summaries are covered by
//!   `shared/src/changes/tests.rs` on CloudFormation's documented `DescribeChangeSet` output.
//! - Its diff ignores parameter values (`build_change_set_actions` calls `build_resource_diff`
//!   without them): an image-only update (same template, new digest) is `CREATE_COMPLETE` with
//!   no change at all, where CloudFormation lists `Modify TaskDefinition` (`Replacement: True`,
//!   `ContainerDefinitions`) and `Modify Service`. A template change is a `Modify`, a resource
//!   left out a `Remove`.
//! - The same template and parameters as the stack's: `FAILED`/`UNAVAILABLE`, "The submitted
//!   information didn't contain changes. …", as AWS.
//! - A second `CreateChangeSet` of a name in use is not refused (AWS: `AlreadyExistsException`):
//!   moto adds a second change set of that name, and for `CREATE` a second stack of the same
//!   name. The action looks a change set up by name before creating it, so it never asks twice.
//! - `DescribeChangeSet` of an unknown name: `ValidationError` "Stack with id <name> does not
//!   exist" (the stack name is ignored; change sets are found by name in the whole account).
//! - moto never refuses a template in a change set: no check of resource types, references,
//!   parameters or imports. [`CloudFormationStandIn`] forwards everything to moto and adds the
//!   one check these tests need, as CloudFormation documents it: a change set whose template
//!   imports (`Fn::ImportValue`) a name the account does not export fails, reason "No export
//!   named <name> found.".
//! - Executed change sets stay listed as `EXECUTE_COMPLETE` (AWS deletes a stack's change sets
//!   once one is executed).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use aws_sdk_cloudformation::Client as CloudFormation;
use serde_json::json;
use shipgate::aws::cloudformation::execute_change_set;
use shipgate::aws::codepipeline::JobFailureKind;
use shipgate::changes::Category;
use shipgate::config::Env;
use shipgate::job::{Job, JobAction, Outcome};
use shipgate::store::{ChangeSetOutcome, StackChanges, Store};
use shipgate_change_set::{ChangeSetConfig, ChangeSetFunction};
use shipgate_local::accounts;
use shipgate_tests::drops::{ReleaseBuilder, zip_with_zip_crate};
use shipgate_tests::jobs::{JobEvent, done, failure};
use shipgate_tests::moto_proxy::{MotoProxy, QueryRequest, between, escape, xml};
use shipgate_tests::releases::{PipelineRelease, validated_release};
use shipgate_tests::shared_stack::SharedStack;
use shipgate_tests::support::{
    WAIT, artifact_bucket, in_account, now_ms, stack_status, store, table, wait_for,
};

const ENVIRONMENT: &str = "int";

/// One stack for every test here; each test releases an application of its own.
static STACK: SharedStack = SharedStack::new("change-set", |o| {
    o.registries = false;
    o.deliver_s3_events = false;
});

/// The action wired to the shared stack through the CloudFormation stand-in, the int account's
/// CloudFormation, and an application of the test's own.
struct World {
    _standin: MotoProxy,
    action: ChangeSetFunction,
    store: Store,
    s3: aws_sdk_s3::Client,
    bucket: String,
    /// CloudFormation in the int account, straight to moto (what an operator would look at).
    int: CloudFormation,
    /// The int account's VPC, from the application's baseline stack (its ECS cluster too).
    vpc_id: String,
    /// The application the test releases (`orders` and a suffix of its own).
    app: String,
}

impl World {
    async fn start() -> Result<Self> {
        let stack = STACK.get().await?;
        let standin = cloudformation_standin(&stack.moto.endpoint()).await?;
        let mut endpoints = stack.endpoints.clone();
        endpoints.per_service.insert(
            "AWS_ENDPOINT_URL_CLOUDFORMATION".into(),
            standin.url.clone(),
        );
        let table = table(stack)?;
        let config = ChangeSetConfig::from_env(&Env::from_pairs([
            ("SHIPGATE_TABLE", table.as_str()),
            ("SHIPGATE_S3_FORCE_PATH_STYLE", "true"),
        ]))?;
        let int = CloudFormation::new(&in_account(stack, accounts::INT).await);
        let app = format!("orders{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        let vpc_id = baseline(&int, &app).await?;
        Ok(Self {
            action: ChangeSetFunction::new(config, &endpoints.sdk_config()),
            store: store(stack)?,
            s3: shipgate::aws::s3_client(&stack.sdk, true),
            bucket: artifact_bucket(stack)?,
            _standin: standin,
            int,
            vpc_id,
            app,
        })
    }

    /// The application's service stack in int (`<app>-int-service`).
    fn service(&self) -> String {
        format!("{}-int-service", self.app)
    }

    /// A release of the application at `version`, its one image `web` at a digest of `seed`.
    fn orders(&self, version: &str, seed: char) -> ReleaseBuilder {
        ReleaseBuilder::new(&self.app, version).image("web", "orders/web", version, &digest(seed))
    }

    /// `builder`'s release zip, with the int VPC as a parameter and `edit` applied to its
    /// template.
    fn zip(&self, builder: &ReleaseBuilder, edit: impl Fn(String) -> String) -> Result<Vec<u8>> {
        let mut manifest = builder.manifest();
        manifest["templates"][0]["parameters"]["VpcId"] = json!(self.vpc_id);
        let mut files = builder.files();
        for (name, bytes) in &mut files {
            match name.as_str() {
                "release.json" => *bytes = serde_json::to_vec_pretty(&manifest)?,
                "templates/service.yaml" => *bytes = edit(builder.template()).into_bytes(),
                _ => {}
            }
        }
        Ok(zip_with_zip_crate(&files))
    }

    /// A release intake validated from `recorded`, its execution's artifact `artifact`.
    async fn release(&self, recorded: &[u8], artifact: &[u8]) -> Result<PipelineRelease> {
        validated_release(&self.store, &self.s3, &self.bucket, recorded, artifact).await
    }

    /// The job CodePipeline sends for the int change-set action of `release`.
    fn job(&self, release: &PipelineRelease, continuation: Option<&str>) -> Result<Job> {
        JobEvent::new(
            "ChangeSetFunction",
            json!({
                "environment": ENVIRONMENT,
                "roleArn": accounts::deploy_role_arn(accounts::INT),
                "releaseId": release.release_id,
                "executionId": release.execution_id,
            }),
        )
        .release_artifact(&self.bucket, &release.artifact_key)
        .continuation(continuation)
        .job()
    }

    /// The change sets stored with the release for the mailer.
    async fn stored(&self, release: &PipelineRelease) -> Result<Vec<StackChanges>> {
        Ok(self
            .store
            .list_stack_changes(&release.release_id, ENVIRONMENT)
            .await?)
    }

    /// What the deploy action will do once approved: execute the change set, wait for the stack.
    async fn deploy(&self, release: &PipelineRelease) -> Result<()> {
        let name = shipgate_change_set::change_set_name(&release.release_id, &release.execution_id);
        let stack = self.service();
        execute_change_set(&self.int, &stack, &name).await?;
        wait_for(&format!("{stack} deployed"), WAIT, || async {
            let status = self.service_status().await?;
            Ok(matches!(status.as_str(), "CREATE_COMPLETE" | "UPDATE_COMPLETE").then_some(()))
        })
        .await
    }

    /// The service stack's status in int.
    async fn service_status(&self) -> Result<String> {
        stack_status(&self.int, &self.service()).await
    }

    /// Drops `builder`'s release (its template edited by `edit`) and runs its change-set job
    /// once: the release, and what the action answered.
    async fn changes_of(
        &self,
        builder: &ReleaseBuilder,
        edit: impl Fn(String) -> String,
    ) -> Result<(PipelineRelease, Outcome)> {
        let zip = self.zip(builder, edit)?;
        let release = self.release(&zip, &zip).await?;
        let outcome = self.action.run(&self.job(&release, None)?).await;
        Ok((release, outcome))
    }

    /// A world where orders 1.0.0 (image `a`) is deployed.
    async fn with_orders_1_0_0() -> Result<Self> {
        let world = Self::start().await?;
        world.deployed(&world.orders("1.0.0", 'a')).await?;
        Ok(world)
    }

    /// The change set `name` of the service stack, as int's CloudFormation describes it.
    async fn described(
        &self,
        name: &str,
    ) -> Result<aws_sdk_cloudformation::operation::describe_change_set::DescribeChangeSetOutput>
    {
        Ok(self
            .int
            .describe_change_set()
            .stack_name(self.service())
            .change_set_name(name)
            .send()
            .await?)
    }

    /// Runs a release's first job to success and deploys its change set.
    async fn deployed(&self, builder: &ReleaseBuilder) -> Result<PipelineRelease> {
        let (release, outcome) = self.changes_of(builder, |t| t).await?;
        done(&outcome)?;
        self.deploy(&release).await?;
        Ok(release)
    }
}

/// The int account's network and the application's cluster, as its baseline stack would
/// provide them.
async fn baseline(int: &CloudFormation, app: &str) -> Result<String> {
    let template = json!({
        "Resources": {
            "Vpc": {"Type": "AWS::EC2::VPC", "Properties": {"CidrBlock": "10.0.0.0/16"}},
            "Cluster": {"Type": "AWS::ECS::Cluster", "Properties": {"ClusterName": app}}
        },
        "Outputs": {"VpcId": {"Value": {"Ref": "Vpc"}}}
    });
    let name = format!("{app}-baseline");
    int.create_stack()
        .stack_name(&name)
        .template_body(template.to_string())
        .send()
        .await?;
    let out = int.describe_stacks().stack_name(&name).send().await?;
    out.stacks()
        .first()
        .and_then(|s| s.outputs().first())
        .and_then(|o| o.output_value())
        .map(str::to_owned)
        .context("the baseline's VpcId output")
}

/// A described change set's parameters, by key.
fn parameters_of(
    described: &aws_sdk_cloudformation::operation::describe_change_set::DescribeChangeSetOutput,
) -> HashMap<&str, &str> {
    described
        .parameters()
        .iter()
        .filter_map(|p| Some((p.parameter_key()?, p.parameter_value()?)))
        .collect()
}

fn digest(seed: char) -> String {
    format!("sha256:{}", seed.to_string().repeat(64))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_stack_gets_a_create_change_set_with_everything_added() -> Result<()> {
    let world = World::start().await?;
    let (release, outcome) = world.changes_of(&world.orders("1.0.0", 'a'), |t| t).await?;

    let (summary, variables) = done(&outcome)?;
    assert_eq!(summary, format!("int: {}: 5 added", world.service()));
    let name = shipgate_change_set::change_set_name(&release.release_id, &release.execution_id);
    assert_eq!(variables["ChangeSetName"], name);
    assert_eq!(variables["Stacks"], world.service());
    assert_eq!(variables["Headline"], summary);
    assert_eq!(variables["Replacements"], "0");
    assert_eq!(variables["ReadyStacks"], "1");

    // Stored with the release for the mailer.
    let stored = world.stored(&release).await?;
    assert_eq!(stored.len(), 1);
    let changes = &stored[0];
    assert_eq!(changes.outcome, ChangeSetOutcome::Ready);
    assert!(changes.creates_stack);
    assert_eq!(changes.stack_name, world.service());
    assert_eq!(changes.template_path, "templates/service.yaml");
    assert_eq!(changes.account_id, accounts::INT);
    assert_eq!(changes.execution_id, release.execution_id);
    assert_eq!(changes.change_set_name, name);
    let id = changes
        .change_set_id
        .clone()
        .context("the change set's id")?;
    assert!(id.contains(":222222222222:changeSet/"), "{id}");
    assert_eq!(changes.summary.counts.added, 5);
    assert!(
        changes
            .summary
            .entries
            .iter()
            .all(|e| e.category == Category::Added)
    );

    // In the int account: a CREATE change set (the stack waits in review), described with the
    // release, the image by digest in int's own registry, the version as a parameter.
    let described = world.described(&name).await?;
    let description = described.description().unwrap_or_default();
    assert!(
        description.contains(&release.release_id)
            && description.contains(&format!("{} 1.0.0", world.app)),
        "{description}"
    );
    let parameters = parameters_of(&described);
    assert_eq!(
        parameters["WebImage"],
        format!(
            "222222222222.dkr.ecr.eu-west-1.amazonaws.com/orders/web@{}",
            digest('a')
        )
    );
    assert_eq!(parameters["Version"], "1.0.0");
    assert_eq!(world.service_status().await?, "REVIEW_IN_PROGRESS");

    // CodePipeline may deliver the same job twice; later invocations of the job carry the
    // continuation token. Either way the change set is found by name, never created again.
    let again = world.action.run(&world.job(&release, None)?).await;
    assert_eq!(done(&again)?.0, summary);
    let token = json!({"action": "change-set", "since": now_ms(), "invocation": 1}).to_string();
    let continued = world.action.run(&world.job(&release, Some(&token))?).await;
    assert_eq!(done(&continued)?.0, summary);
    let all = world
        .int
        .list_change_sets()
        .stack_name(world.service())
        .send()
        .await?;
    let named: Vec<_> = all
        .summaries()
        .iter()
        .filter(|s| s.change_set_name() == Some(name.as_str()))
        .collect();
    assert_eq!(named.len(), 1, "one change set of that name");
    let stacks = world.int.describe_stacks().send().await?;
    assert_eq!(
        stacks
            .stacks()
            .iter()
            .filter(|s| s.stack_name() == Some(world.service().as_str()))
            .count(),
        1,
        "one stack of that name"
    );

    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_over_the_request_limit_goes_by_url_through_the_artifact_bucket() -> Result<()> {
    // CreateChangeSet takes at most 51,200 bytes of TemplateBody (the local stack refuses more,
    // as AWS does); a release may carry templates up to 1 MiB.
    let world = World::start().await?;
    let comment = format!("# {}\n", "x".repeat(98));
    let pad = |t: String| format!("{t}\n{}", comment.repeat(600));
    let (release, outcome) = world.changes_of(&world.orders("1.0.0", 'b'), pad).await?;

    let (summary, _) = done(&outcome)?;
    assert_eq!(summary, format!("int: {}: 5 added", world.service()));
    let listed = world
        .s3
        .list_objects_v2()
        .bucket(&world.bucket)
        .prefix(format!("templates/{}/", release.release_id))
        .send()
        .await?;
    let written: Vec<_> = listed.contents().iter().collect();
    assert_eq!(written.len(), 1, "{written:?}");
    assert!(
        written[0].size().unwrap_or_default() > 51_200,
        "{written:?}"
    );
    world.deploy(&release).await?;
    assert_eq!(world.service_status().await?, "CREATE_COMPLETE");

    // A template within the limit is sent in the request: nothing more is written.
    let (small, outcome) = world.changes_of(&world.orders("1.0.1", 'c'), |t| t).await?;
    done(&outcome)?;
    let listed = world
        .s3
        .list_objects_v2()
        .bucket(&world.bucket)
        .prefix(format!("templates/{}/", small.release_id))
        .send()
        .await?;
    assert!(listed.contents().is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_only_update_is_an_update_change_set_with_the_new_digest() -> Result<()> {
    let world = World::with_orders_1_0_0().await?;
    let (release, outcome) = world.changes_of(&world.orders("1.1.0", 'b'), |t| t).await?;

    let (summary, variables) = done(&outcome)?;
    let stored = world.stored(&release).await?;
    assert_eq!(stored.len(), 1);
    assert!(!stored[0].creates_stack, "an UPDATE of the deployed stack");
    assert_eq!(stored[0].outcome, ChangeSetOutcome::Ready);
    assert_eq!(variables["ReadyStacks"], "1");
    // moto lists no resource change for a parameter-only update (see the top of this file).
    assert!(stored[0].summary.is_empty());
    assert_eq!(
        summary,
        format!(
            "int: {}: parameters only, no resource changes",
            world.service()
        )
    );
    let name = shipgate_change_set::change_set_name(&release.release_id, &release.execution_id);
    let described = world.described(&name).await?;
    assert_eq!(
        parameters_of(&described)["WebImage"],
        format!(
            "222222222222.dkr.ecr.eu-west-1.amazonaws.com/orders/web@{}",
            digest('b')
        )
    );

    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_resource_is_listed_first_and_flagged() -> Result<()> {
    let world = World::with_orders_1_0_0().await?;
    // The next release drops the green target group and keeps logs longer.
    let drop_green = |template: String| {
        let start = template.find("  GreenTargetGroup:").unwrap_or(0);
        let end = template.find("  Service:").unwrap_or(start);
        let mut t = format!("{}{}", &template[..start], &template[end..]);
        t = t.replace(
            "  GreenTargetGroupArn:\n    Value: !Ref GreenTargetGroup\n",
            "",
        );
        t.replace(
            "RetentionInDays: !If [IsProd, 90, 14]",
            "RetentionInDays: !If [IsProd, 90, 30]",
        )
    };
    let (release, outcome) = world
        .changes_of(&world.orders("1.1.0", 'a'), drop_green)
        .await?;

    let (summary, variables) = done(&outcome)?;
    assert_eq!(
        summary,
        format!("int: {}: 1 removed, 1 modified", world.service())
    );
    assert_eq!(variables["Removals"], "1");
    let stored = world.stored(&release).await?;
    let changes = &stored[0].summary;
    assert_eq!(changes.deletions, ["GreenTargetGroup"]);
    assert_eq!(changes.entries[0].category, Category::Removed);
    assert_eq!(changes.entries[0].logical_id, "GreenTargetGroup");
    assert_eq!(changes.entries[1].category, Category::Modified);
    assert_eq!(changes.entries[1].logical_id, "LogGroup");
    let text = changes.to_text();
    assert!(text.contains("Deletions: GreenTargetGroup"), "{text}");
    assert!(
        text.contains(
            "REMOVE GreenTargetGroup (AWS::ElasticLoadBalancingV2::TargetGroup): deleted"
        ),
        "{text}"
    );
    // moto gives no details: the approver is told so rather than guessed at.
    assert!(
        text.contains("MODIFY LogGroup (AWS::Logs::LogGroup): details unavailable"),
        "{text}"
    );

    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_release_has_no_changes_and_the_action_succeeds() -> Result<()> {
    let world = World::with_orders_1_0_0().await?;
    // The same release dropped again: another release id, the same template and parameters.
    let (release, outcome) = world.changes_of(&world.orders("1.0.0", 'a'), |t| t).await?;

    let (summary, variables) = done(&outcome)?;
    assert_eq!(summary, "int: no changes");
    assert_eq!(variables["ReadyStacks"], "0");
    let stored = world.stored(&release).await?;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].outcome, ChangeSetOutcome::NoChanges);
    assert!(stored[0].summary.is_empty());
    assert!(!stored[0].creates_stack);

    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_set_cloudformation_refuses_fails_the_job_with_its_reason() -> Result<()> {
    let world = World::start().await?;
    // The target groups import the VPC from a network stack int does not have yet.
    let export = format!("{}-int-network-VpcId", world.app);
    let import_vpc = |t: String| {
        t.replace(
            "VpcId: !Ref VpcId",
            &format!("VpcId: !ImportValue {export}"),
        )
    };
    let (release, outcome) = world
        .changes_of(&world.orders("1.0.0", 'a'), import_vpc)
        .await?;

    let (message, kind) = failure(&outcome)?;
    assert_eq!(kind, JobFailureKind::JobFailed);
    assert!(
        message.starts_with("int (account 222222222222): "),
        "{message}"
    );
    assert!(
        message.contains(&format!("for stack {}", world.service())),
        "{message}"
    );
    assert!(
        message.contains(&format!("No export named {export} found.")),
        "{message}"
    );
    assert!(world.stored(&release).await?.is_empty(), "nothing stored");

    // The operator creates the network stack, then retries the stage (a new job of the same
    // execution): the failed change set is replaced by one CloudFormation accepts.
    let network = json!({
        "Resources": {"Marker": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {"VpcId": {"Value": world.vpc_id, "Export": {"Name": export}}}
    });
    world
        .int
        .create_stack()
        .stack_name(format!("{}-int-network", world.app))
        .template_body(network.to_string())
        .send()
        .await?;
    let retried = world.action.run(&world.job(&release, None)?).await;
    assert_eq!(
        done(&retried)?.0,
        format!("int: {}: 5 added", world.service())
    );
    assert_eq!(world.stored(&release).await?.len(), 1);

    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_artifact_that_is_not_the_release_intake_validated_is_refused() -> Result<()> {
    let world = World::start().await?;
    let validated = world.zip(&world.orders("1.0.0", 'a'), |t| t)?;
    // The artifact the job points to was swapped for another image after intake.
    let swapped = world.zip(&world.orders("1.0.0", 'f'), |t| t)?;
    let release = world.release(&validated, &swapped).await?;

    let outcome = world.action.run(&world.job(&release, None)?).await;

    let (message, _) = failure(&outcome)?;
    assert!(
        message.starts_with("the release artifact is not the release intake validated"),
        "{message}"
    );
    let err = world
        .int
        .describe_stacks()
        .stack_name(world.service())
        .send()
        .await
        .expect_err("nothing was created in int");
    assert!(format!("{err:?}").contains("does not exist"), "{err:?}");
    assert!(world.stored(&release).await?.is_empty());

    // A job naming a release intake never recorded is refused the same way.
    let unknown = PipelineRelease {
        release_id: "rel-00000000000000000000".into(),
        ..release
    };
    let outcome = world.action.run(&world.job(&unknown, None)?).await;
    let (message, _) = failure(&outcome)?;
    assert!(
        message.starts_with("release rel-00000000000000000000 is not in the release table"),
        "{message}"
    );

    Ok(())
}

/// CloudFormation for the action: moto behind a loopback proxy that adds the one check of
/// CloudFormation's these tests need and moto lacks (see the top of this file). A change set
/// whose template imports a name the account does not export is created in moto as usual, but
/// described as CloudFormation describes it: `FAILED`, `UNAVAILABLE`, "No export named <name>
/// found.", no changes. Only literal import names (`!ImportValue name`, `"Fn::ImportValue":
/// "name"`) are understood.
async fn cloudformation_standin(moto: &str) -> Result<MotoProxy> {
    let refused: Arc<Refusals> = Arc::default();
    MotoProxy::start(moto, move |request| {
        let refused = refused.clone();
        async move { answer(&refused, request).await }
    })
    .await
}

/// The change sets the stand-in refused: (stack, change set name) → (change set id, reason).
type Refusals = Mutex<HashMap<(String, String), (String, String)>>;

async fn answer(refused: &Refusals, request: QueryRequest) -> Result<axum::response::Response> {
    let key = (request.field("StackName"), request.field("ChangeSetName"));
    let refusals = || refused.lock().map_err(|_| anyhow::anyhow!("poisoned"));
    match request.field("Action").as_str() {
        "CreateChangeSet" => {
            let (status, reply) = request.forward().await?;
            if status == 200 {
                for name in imports(&request.field("TemplateBody")) {
                    let (_, listed) = request.ask("Action=ListExports&Version=2010-05-15").await?;
                    if !listed.contains(&format!("<Name>{name}</Name>")) {
                        let id = between(&reply, "<Id>", "</Id>").unwrap_or_default();
                        let reason = format!("No export named {name} found.");
                        refusals()?.insert(key.clone(), (id.to_owned(), reason));
                        break;
                    }
                }
            }
            Ok(xml(status, reply))
        }
        "DescribeChangeSet" => {
            let refusal = refusals()?.get(&key).cloned();
            match refusal {
                Some((id, reason)) => Ok(xml(
                    200,
                    format!(
                        r#"<DescribeChangeSetResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/">
  <DescribeChangeSetResult>
    <ChangeSetName>{}</ChangeSetName>
    <ChangeSetId>{}</ChangeSetId>
    <StackName>{}</StackName>
    <Status>FAILED</Status>
    <StatusReason>{}</StatusReason>
    <ExecutionStatus>UNAVAILABLE</ExecutionStatus>
    <Changes/>
  </DescribeChangeSetResult>
  <ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata>
</DescribeChangeSetResponse>"#,
                        escape(&key.1),
                        escape(&id),
                        escape(&key.0),
                        escape(&reason),
                        uuid::Uuid::new_v4()
                    ),
                )),
                None => request.pass().await,
            }
        }
        "DeleteChangeSet" => {
            let (status, reply) = request.forward().await?;
            if status == 200 {
                refusals()?.remove(&key);
            }
            Ok(xml(status, reply))
        }
        _ => request.pass().await,
    }
}

/// Literal names a template imports.
fn imports(template: &str) -> Vec<String> {
    let mut names = Vec::new();
    for marker in ["!ImportValue", "\"Fn::ImportValue\":", "Fn::ImportValue:"] {
        let mut rest = template;
        while let Some(at) = rest.find(marker) {
            rest = &rest[at + marker.len()..];
            let name: String = rest
                .trim_start()
                .trim_start_matches('"')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '.'))
                .collect();
            if !name.is_empty() {
                names.push(name);
            }
        }
    }
    names
}
