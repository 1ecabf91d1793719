//! `shipgate doctor` against the local stack (issue 15): an installation as the templates make
//! it passes every check, and each deliberately broken part fails its own check with the fix.
//!
//! The tooling stack is provisioned directly in moto (not as a CloudFormation stack), so its
//! values are passed by flag, as `--stack` reads them in AWS; the environment accounts run
//! environment.yaml's stack and are reached by assuming their deploy role, as `in_account`
//! does. moto does not implement SESv2 `GetAccount`: the sandbox line says "not checked".
//! The environments' networks are moto's EC2 as environment.yaml's stack made them (with moto
//! patches 17 and 18, which keep the template's DNS attributes and route table associations),
//! broken through the EC2 API as an operator could break them.

use anyhow::{Context, Result};
use aws_sdk_ec2::types::{AttributeBooleanValue, Filter};
use shipgate_local::accounts::{self, INT, STG, TOOLING};
use shipgate_local::stack::Stack;
use shipgate_operator::OperatorError;
use shipgate_tests::support::{in_account, run_operator, start_stack};

/// `shipgate doctor` with the stack's own values for every flag but those `overrides` names.
async fn doctor(stack: &Stack, overrides: &[(&str, &str)]) -> (Result<(), OperatorError>, String) {
    let refs = &stack.provisioned.refs;
    let approval_url = stack.function_urls["ApprovalPageFunction"].url();
    let registries = stack.registry_endpoints();
    let int = format!("int={}", accounts::deploy_role_arn(INT));
    let stg = format!("stg={}", accounts::deploy_role_arn(STG));
    let mut flags: Vec<(&str, &str)> = vec![
        ("--mail-from", &refs["MailFrom"]),
        ("--link-key-secret", &refs["LinkSigningKey"]),
        ("--approval-url", &approval_url),
        ("--registry-endpoints", &registries),
    ];
    flags.retain(|(flag, _)| !overrides.iter().any(|(f, _)| f == flag));
    flags.extend(overrides.iter().copied());
    let mut argv = vec!["doctor", "--environment", &int, "--environment", &stg];
    for (flag, value) in &flags {
        argv.extend([*flag, *value]);
    }
    run_operator(stack, &argv).await
}

/// The line of check `name`.
fn line<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find(|l| {
            l[l.char_indices().nth(2).map_or(0, |(i, _)| i)..].starts_with(&format!("{name} — "))
        })
        .unwrap_or_else(|| panic!("no line for {name}:\n{text}"))
}

/// Check `name` failed, and its fix says `fix`.
fn assert_fails(text: &str, name: &str, fix: &str) {
    let line = line(text, name);
    assert!(line.starts_with(&format!("✗ {name} — ")), "{line}");
    let (_, said) = line
        .split_once(". Fix: ")
        .unwrap_or_else(|| panic!("no fix: {line}"));
    assert!(
        said.contains(fix),
        "{name}: fix {said:?} does not say {fix:?}"
    );
}

/// A trust policy that lets the tooling account's roles named like `role_pattern` assume the
/// role, as environment.yaml's trusts are written.
fn trusting_tooling_roles(role_pattern: &str) -> serde_json::Value {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"AWS": format!("arn:aws:iam::{TOOLING}:root")},
            "Action": "sts:AssumeRole",
            "Condition": {"ArnLike": {"aws:PrincipalArn":
                format!("arn:aws:iam::{TOOLING}:role/{role_pattern}")}}
        }]
    })
}

fn in_vpc(vpc: &str) -> Filter {
    Filter::builder().name("vpc-id").values(vpc).build()
}

/// The VPC of the first of `subnets` (comma-separated, as the PrivateSubnets output lists them).
async fn vpc_of(ec2: &aws_sdk_ec2::Client, subnets: &str) -> Result<String> {
    let first = subnets.split(',').next().context("a private subnet")?;
    let out = ec2.describe_subnets().subnet_ids(first).send().await?;
    out.subnets()
        .first()
        .and_then(|s| s.vpc_id())
        .map(str::to_owned)
        .context("the subnet's VPC")
}

/// The tooling account's default bus admits the environment accounts' events, as template.yaml's
/// AlarmEventBusPolicy does (the local stack does not provision bus policies).
async fn admit_environment_alarms(stack: &Stack) -> Result<()> {
    let events = aws_sdk_eventbridge::Client::new(&stack.sdk);
    for (environment, account) in accounts::ENVIRONMENTS {
        events
            .put_permission()
            .statement_id(format!("shipgate-{environment}-alarms"))
            .action("events:PutEvents")
            .principal(account)
            .send()
            .await
            .with_context(|| format!("admitting {environment}'s events"))?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_passes_a_working_installation_and_names_each_broken_part_with_its_fix() -> Result<()>
{
    let mut stack = start_stack("doctor", |o| {
        o.deliver_s3_events = false;
        o.environment_alarms = false;
        o.environment_template =
            Some(shipgate_local::process::project_root().join("environment.yaml"));
    })
    .await?;
    admit_environment_alarms(&stack).await?;

    // Working: every check passes (the sandbox is not checked on moto) and the command succeeds.
    let (result, text) = doctor(&stack, &[]).await;
    result.with_context(|| text.clone())?;
    for name in [
        "link-signing secret",
        "SES sender",
        "approval page",
        "int: access",
        "int: deploy role",
        "int: stack role",
        "int: registry",
        "int: alarm forwarding",
        "int: checks role",
        "int: network",
        "int: test probe",
        "stg: deploy role",
        "stg: alarm forwarding",
        "stg: checks role",
        "stg: network",
        "stg: test probe",
    ] {
        assert!(line(&text, name).starts_with("✓ "), "{name}:\n{text}");
    }
    assert!(line(&text, "SES sandbox").starts_with("- SES sandbox — not checked: "));
    let int_subnets = &stack.environments["int"]["PrivateSubnets"];
    let int_network = line(&text, "int: network");
    for subnet in int_subnets.split(',') {
        assert!(
            int_network.contains(&format!("{subnet} through the VPC endpoints")),
            "{int_network}"
        );
    }
    assert!(
        line(&text, "int: test probe")
            .contains(&format!("is Active in {}", int_subnets.replace(',', ", "))),
        "{text}"
    );
    assert!(
        line(&text, "int: deploy role").contains(
            "trusts ChangeSetFunction, DeployFunction, TrafficFunction, RollbackFunction, PromoteFunction"
        ),
        "{text}"
    );

    // Broken, one part each.
    // The signing key scheduled for deletion.
    aws_sdk_secretsmanager::Client::new(&stack.sdk)
        .delete_secret()
        .secret_id(&stack.provisioned.refs["LinkSigningKey"])
        .recovery_window_in_days(7)
        .send()
        .await?;
    // int's deploy role trusting only the change-set function.
    let int_iam = aws_sdk_iam::Client::new(&in_account(&stack, INT).await);
    let only_change_set = trusting_tooling_roles("shipgate-ChangeSetFunctionRole-*");
    int_iam
        .update_assume_role_policy()
        .role_name("shipgate-deploy")
        .policy_document(only_change_set.to_string())
        .send()
        .await?;
    // stg's stack role trusting Lambda rather than CloudFormation.
    let stg_sdk = in_account(&stack, STG).await;
    let lambda_trust = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole"}]
    });
    aws_sdk_iam::Client::new(&stg_sdk)
        .update_assume_role_policy()
        .role_name("shipgate-cloudformation")
        .policy_document(lambda_trust.to_string())
        .send()
        .await?;
    // int's registry down.
    let int_registry = stack
        .registries
        .iter()
        .position(|r| r.account == INT)
        .context("int's registry")?;
    stack.registries.remove(int_registry).stop().await;
    // int's forwarding rule without its target; stg's account no longer admitted on the bus.
    let int_events = aws_sdk_eventbridge::Client::new(&in_account(&stack, INT).await);
    let rules = int_events.list_rules().send().await?;
    let rule = rules
        .rules()
        .iter()
        .find(|r| {
            r.event_pattern()
                .is_some_and(|p| p.contains("aws.cloudwatch"))
        })
        .and_then(|r| r.name())
        .context("int's alarm forwarding rule")?;
    int_events
        .remove_targets()
        .rule(rule)
        .ids("shipgate")
        .send()
        .await?;
    aws_sdk_eventbridge::Client::new(&stack.sdk)
        .remove_permission()
        .statement_id("shipgate-stg-alarms")
        .send()
        .await?;
    // int's network without its logs endpoint, and its S3 gateway endpoint off the subnets'
    // route table; stg's VPC with DNS hostnames off (its endpoints' private DNS cannot work).
    let int_ec2 = aws_sdk_ec2::Client::new(&in_account(&stack, INT).await);
    let int_vpc = vpc_of(&int_ec2, int_subnets).await?;
    let endpoints = int_ec2
        .describe_vpc_endpoints()
        .filters(in_vpc(&int_vpc))
        .send()
        .await?;
    let endpoint = |name: &str| {
        endpoints
            .vpc_endpoints()
            .iter()
            .find(|e| e.service_name().is_some_and(|s| s.ends_with(name)))
            .cloned()
            .with_context(|| format!("int's {name} endpoint"))
    };
    let logs = endpoint(".logs")?;
    int_ec2
        .delete_vpc_endpoints()
        .vpc_endpoint_ids(logs.vpc_endpoint_id().context("logs endpoint id")?)
        .send()
        .await?;
    let s3 = endpoint(".s3")?;
    int_ec2
        .modify_vpc_endpoint()
        .vpc_endpoint_id(s3.vpc_endpoint_id().context("s3 endpoint id")?)
        .set_remove_route_table_ids(Some(s3.route_table_ids().to_vec()))
        .send()
        .await?;
    let private_table = s3
        .route_table_ids()
        .first()
        .context("the private route table")?
        .clone();
    let stg_ec2 = aws_sdk_ec2::Client::new(&stg_sdk);
    let stg_vpc = vpc_of(&stg_ec2, &stack.environments["stg"]["PrivateSubnets"]).await?;
    stg_ec2
        .modify_vpc_attribute()
        .vpc_id(&stg_vpc)
        .enable_dns_hostnames(AttributeBooleanValue::builder().value(false).build())
        .send()
        .await?;
    // int's test probe deleted; stg's checks role trusting another stack's checks function.
    aws_sdk_lambda::Client::new(&in_account(&stack, INT).await)
        .delete_function()
        .function_name("shipgate-test-probe")
        .send()
        .await?;
    let other_checks = trusting_tooling_roles("other-ChecksFunctionRole-*");
    aws_sdk_iam::Client::new(&stg_sdk)
        .update_assume_role_policy()
        .role_name("shipgate-checks")
        .policy_document(other_checks.to_string())
        .send()
        .await?;
    // A sender SES never verified, and a URL nothing answers on.
    let dead_url = format!(
        "http://127.0.0.1:{}/",
        shipgate_local::process::free_port()?
    );
    let (result, text) = doctor(
        &stack,
        &[
            ("--mail-from", "releases@unverified.example"),
            ("--approval-url", &dead_url),
        ],
    )
    .await;
    assert!(
        matches!(result, Err(OperatorError::ChecksFailed { failed: 12, .. })),
        "{result:?}\n{text}"
    );
    assert_fails(&text, "link-signing secret", "restore-secret");
    assert_fails(
        &text,
        "SES sender",
        "create-email-identity --email-identity releases@unverified.example",
    );
    assert_fails(&text, "approval page", "--approval-url");
    assert_fails(&text, "int: deploy role", "IntDeployRoleArn");
    assert!(
        line(&text, "int: deploy role").contains("does not trust DeployFunction"),
        "{text}"
    );
    assert_fails(&text, "stg: stack role", "StgStackRoleArn");
    assert_fails(&text, "int: registry", "reachable");
    assert_fails(&text, "int: alarm forwarding", "AlarmForwardingRule");
    assert_fails(&text, "stg: alarm forwarding", "AlarmEventBusPolicy");
    assert_fails(&text, "int: network", "NAT gateway");
    let int_network = line(&text, "int: network");
    assert!(
        int_network.contains("no logs interface endpoint"),
        "{int_network}"
    );
    assert!(
        int_network.contains(&format!(
            "no S3 gateway endpoint on its route table {private_table}"
        )),
        "{int_network}"
    );
    let (found, _) = int_network.split_once(". Fix: ").context("a fix")?;
    assert!(
        !found.contains("ecr."),
        "only what was broken: {int_network}"
    );
    assert_fails(&text, "stg: network", "DNS hostnames");
    let stg_network = line(&text, "stg: network");
    assert!(
        stg_network.contains(&format!("{stg_vpc} has enableDnsHostnames off")),
        "{stg_network}"
    );
    assert_fails(&text, "int: test probe", "ProbeCodeBucket");
    assert!(
        line(&text, "int: test probe").contains("no function shipgate-test-probe"),
        "{text}"
    );
    assert_fails(&text, "stg: checks role", "ToolingStackName");
    // What was not broken still passes.
    for name in [
        "int: stack role",
        "stg: deploy role",
        "stg: registry",
        "int: access",
        "int: checks role",
        "stg: test probe",
    ] {
        assert!(line(&text, name).starts_with("✓ "), "{name}:\n{text}");
    }

    // int's subnets given a default route to a NAT gateway: they need no endpoint at all.
    let public = int_ec2
        .create_subnet()
        .vpc_id(&int_vpc)
        .cidr_block("10.40.200.0/24")
        .send()
        .await?;
    let address = int_ec2.allocate_address().send().await?;
    let nat = int_ec2
        .create_nat_gateway()
        .subnet_id(
            public
                .subnet()
                .and_then(|s| s.subnet_id())
                .context("subnet id")?,
        )
        .allocation_id(address.allocation_id().context("allocation id")?)
        .send()
        .await?;
    let nat_id = nat
        .nat_gateway()
        .and_then(|n| n.nat_gateway_id())
        .context("NAT gateway id")?;
    int_ec2
        .create_route()
        .route_table_id(&private_table)
        .destination_cidr_block("0.0.0.0/0")
        .nat_gateway_id(nat_id)
        .send()
        .await?;
    let (_, text) = doctor(&stack, &[]).await;
    let int_network = line(&text, "int: network");
    assert!(int_network.starts_with("✓ "), "{int_network}");
    assert!(
        int_network.contains(&format!("{private_table}'s default route to {nat_id}")),
        "{int_network}"
    );

    // An environment the operator cannot reach: its access fails, and nothing else is tried.
    let (result, text) = run_operator(
        &stack,
        &[
            "doctor",
            "--environment",
            "dev=no-such-profile",
            "--mail-from",
            &stack.provisioned.refs["MailFrom"],
        ],
    )
    .await;
    assert!(result.is_err());
    assert_fails(&text, "dev: access", "--environment dev=");
    assert!(!text.contains("dev: deploy role"), "{text}");
    stack.stop().await;
    Ok(())
}
