//! environment.yaml's network, read as AWS would route it: moto routes no packets, so a
//! template whose Fargate tasks cannot reach ECR or CloudWatch Logs deploys locally and fails in
//! AWS (tasks stuck in PROVISIONING, "ResourceInitializationError: unable to pull secrets or
//! registry auth"). Every subnet the services run in (the `PrivateSubnets` output) must reach,
//! over HTTPS, the four things a Fargate task pulling from ECR and logging with `awslogs` needs:
//! either a default route to a NAT or internet gateway, or the `ecr.api`, `ecr.dkr` and `logs`
//! interface endpoints (private DNS on, in that subnet, their security group taking 443 from
//! the VPC) and the S3 gateway endpoint on the subnet's route table (ECR serves image layers from
//! S3). Sources: ECR user guide, "Amazon ECR interface VPC endpoints (AWS PrivateLink)"; VPC user
//! guide, "Gateway endpoints" (a subnet without an explicit route table association uses the
//! main route table, which a template cannot name).

use serde_yaml::Value;

/// The logical id a `!Ref X` / `{Ref: X}` names.
fn ref_name(value: &Value) -> Option<&str> {
    match value {
        Value::Tagged(tagged) if tagged.tag == "!Ref" => tagged.value.as_str(),
        Value::Mapping(map) => map.get("Ref").and_then(Value::as_str),
        _ => None,
    }
}

/// The logical ids a list of refs (or one ref) names.
fn refs(value: Option<&Value>) -> Vec<&str> {
    match value {
        Some(Value::Sequence(items)) => items.iter().filter_map(ref_name).collect(),
        Some(Value::Tagged(tagged)) if tagged.tag == "!Join" => tagged
            .value
            .as_sequence()
            .and_then(|parts| parts.get(1))
            .map(|list| refs(Some(list)))
            .unwrap_or_default(),
        Some(one) => ref_name(one).into_iter().collect(),
        None => Vec::new(),
    }
}

/// The text of a `!Sub` or plain string.
fn text(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Tagged(tagged)) if tagged.tag == "!Sub" => {
            tagged.value.as_str().unwrap_or_default().to_owned()
        }
        _ => String::new(),
    }
}

struct Template {
    resources: serde_yaml::Mapping,
    outputs: serde_yaml::Mapping,
}

impl Template {
    fn read(text: &str) -> Self {
        let doc: Value = serde_yaml::from_str(text).expect("environment.yaml is YAML");
        let section = |name: &str| {
            doc.get(name)
                .and_then(Value::as_mapping)
                .cloned()
                .unwrap_or_default()
        };
        Self {
            resources: section("Resources"),
            outputs: section("Outputs"),
        }
    }

    /// `(logical id, properties)` of every resource of `kind`.
    fn of_type<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = (&'a str, &'a Value)> + 'a {
        self.resources
            .iter()
            .filter(move |(_, res)| res.get("Type").and_then(Value::as_str) == Some(kind))
            .map(|(id, res)| (id.as_str().unwrap_or_default(), &res["Properties"]))
    }

    /// Why `subnet` cannot reach what a Fargate task needs; empty when it can.
    fn unreachable_from(&self, subnet: &str) -> Vec<String> {
        let tables: Vec<&str> = self
            .of_type("AWS::EC2::SubnetRouteTableAssociation")
            .filter(|(_, p)| ref_name(&p["SubnetId"]) == Some(subnet))
            .filter_map(|(_, p)| ref_name(&p["RouteTableId"]))
            .collect();
        let Some(&table) = tables.first() else {
            return vec![format!(
                "{subnet} has no route table association (the main route table has no endpoint)"
            )];
        };
        let default_route = self.of_type("AWS::EC2::Route").any(|(_, p)| {
            ref_name(&p["RouteTableId"]) == Some(table)
                && p["DestinationCidrBlock"].as_str() == Some("0.0.0.0/0")
                && (p.get("NatGatewayId").is_some() || p.get("GatewayId").is_some())
        });
        if default_route {
            return Vec::new();
        }
        let mut missing = Vec::new();
        let endpoints: Vec<&Value> = self
            .of_type("AWS::EC2::VPCEndpoint")
            .map(|(_, p)| p)
            .collect();
        let service = |p: &Value, name: &str| {
            text(p.get("ServiceName")).ends_with(&format!("${{AWS::Region}}.{name}"))
        };
        let s3 = endpoints.iter().any(|p| {
            service(p, "s3")
                && p["VpcEndpointType"].as_str() == Some("Gateway")
                && refs(p.get("RouteTableIds")).contains(&table)
        });
        if !s3 {
            missing.push(format!(
                "{subnet}: no S3 gateway endpoint on its route table {table} (image layers)"
            ));
        }
        for name in ["ecr.api", "ecr.dkr", "logs"] {
            let reachable = endpoints.iter().any(|p| {
                service(p, name)
                    && p["VpcEndpointType"].as_str() == Some("Interface")
                    && p["PrivateDnsEnabled"].as_bool() == Some(true)
                    && refs(p.get("SubnetIds")).contains(&subnet)
                    && refs(p.get("SecurityGroupIds"))
                        .iter()
                        .any(|group| self.takes_https_from_the_vpc(group))
            });
            if !reachable {
                missing.push(format!(
                    "{subnet}: no {name} interface endpoint it can reach over HTTPS"
                ));
            }
        }
        missing
    }

    /// Whether security group `id` takes TCP 443 from the whole VPC.
    fn takes_https_from_the_vpc(&self, id: &str) -> bool {
        let Some(group) = self.resources.get(id) else {
            return false;
        };
        group["Properties"]["SecurityGroupIngress"]
            .as_sequence()
            .into_iter()
            .flatten()
            .any(|rule| {
                rule["IpProtocol"].as_str() == Some("tcp")
                    && rule["FromPort"].as_u64().is_some_and(|p| p <= 443)
                    && rule["ToPort"].as_u64().is_some_and(|p| p >= 443)
                    && ref_name(&rule["CidrIp"]) == Some("VpcCidr")
            })
    }

    /// The subnets the services run in, as the template exports them.
    fn service_subnets(&self) -> Vec<&str> {
        refs(
            self.outputs
                .get("PrivateSubnets")
                .and_then(|o| o.get("Value")),
        )
    }
}

#[test]
fn every_service_subnet_reaches_ecr_its_layers_and_logs() {
    let template = Template::read(include_str!("../../environment.yaml"));
    let subnets = template.service_subnets();
    assert_eq!(subnets, ["SubnetA", "SubnetB"]);
    let problems: Vec<String> = subnets
        .iter()
        .flat_map(|s| template.unreachable_from(s))
        .collect();
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn a_network_without_endpoints_or_nat_is_caught() {
    // The template's network before its endpoints: subnets alone.
    let bare = r#"
Resources:
  Vpc: { Type: AWS::EC2::VPC, Properties: { CidrBlock: !Ref VpcCidr } }
  SubnetA: { Type: AWS::EC2::Subnet, Properties: { VpcId: !Ref Vpc } }
Outputs:
  PrivateSubnets: { Value: !Join [",", [!Ref SubnetA]] }
"#;
    let template = Template::read(bare);
    let problems = template.unreachable_from("SubnetA");
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(problems[0].contains("no route table association"));

    // A route table with a NAT default route is enough.
    let nat = format!(
        "{bare}{}",
        r#"  Table: { Type: AWS::EC2::RouteTable, Properties: { VpcId: !Ref Vpc } }
  Assoc: { Type: AWS::EC2::SubnetRouteTableAssociation, Properties: { SubnetId: !Ref SubnetA, RouteTableId: !Ref Table } }
  Default: { Type: AWS::EC2::Route, Properties: { RouteTableId: !Ref Table, DestinationCidrBlock: 0.0.0.0/0, NatGatewayId: !Ref Nat } }
"#
    )
    .replace("Outputs:\n  PrivateSubnets: { Value: !Join [\",\", [!Ref SubnetA]] }\n", "")
        + "Outputs:\n  PrivateSubnets: { Value: !Join [\",\", [!Ref SubnetA]] }\n";
    let template = Template::read(&nat);
    assert!(template.unreachable_from("SubnetA").is_empty());

    // A route table alone: every endpoint is missing.
    let table_only = nat.replace(
        "  Default: { Type: AWS::EC2::Route, Properties: { RouteTableId: !Ref Table, DestinationCidrBlock: 0.0.0.0/0, NatGatewayId: !Ref Nat } }\n",
        "",
    );
    let problems = Template::read(&table_only).unreachable_from("SubnetA");
    assert_eq!(problems.len(), 4, "{problems:#?}");
}
