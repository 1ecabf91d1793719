//! environment.yaml's network, read as AWS would route it: moto routes no packets, so a
//! template whose Fargate tasks cannot reach ECR or CloudWatch Logs deploys locally and fails in
//! AWS (tasks stuck in PROVISIONING, "ResourceInitializationError: unable to pull secrets or
//! registry auth"). The template is read into the network's facts, and the rule of
//! `shipgate::network` (the one `shipgate doctor` applies to a live account, with the AWS
//! documentation it follows) decides whether every subnet the services run in (the
//! `PrivateSubnets` output) reaches them.
//!
//! A template names no main route table: it is the VPC's own, with no route but the local one
//! and no endpoint, which is what a subnet without an association gets here.

use std::collections::BTreeMap;

use serde_yaml::Value;
use shipgate::network::{
    Endpoint, EndpointType, Gap, Ingress, Network, Reach, Route, RouteTable, RouteTarget,
    SecurityGroup, Subnet, Vpc,
};

/// The region `${AWS::Region}` stands for.
const REGION: &str = "eu-west-1";
const MAIN_TABLE: &str = "the VPC's main route table";

/// The logical id a `!Ref X` / `{Ref: X}` names.
fn ref_name(value: &Value) -> Option<&str> {
    match value {
        Value::Tagged(tagged) if tagged.tag == "!Ref" => tagged.value.as_str(),
        Value::Mapping(map) => map.get("Ref").and_then(Value::as_str),
        _ => None,
    }
}

/// The logical ids a list of refs (or one ref) names.
fn refs(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::Sequence(items)) => items
            .iter()
            .filter_map(ref_name)
            .map(str::to_owned)
            .collect(),
        Some(Value::Tagged(tagged)) if tagged.tag == "!Join" => tagged
            .value
            .as_sequence()
            .and_then(|parts| parts.get(1))
            .map(|list| refs(Some(list)))
            .unwrap_or_default(),
        Some(one) => ref_name(one).into_iter().map(str::to_owned).collect(),
        None => Vec::new(),
    }
}

struct Template {
    resources: serde_yaml::Mapping,
    outputs: serde_yaml::Mapping,
    /// Each parameter's default.
    defaults: BTreeMap<String, String>,
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
        let defaults = section("Parameters")
            .iter()
            .filter_map(|(name, p)| {
                Some((
                    name.as_str()?.to_owned(),
                    p.get("Default")?.as_str()?.to_owned(),
                ))
            })
            .collect();
        Self {
            resources: section("Resources"),
            outputs: section("Outputs"),
            defaults,
        }
    }

    /// A string property: literal, a parameter's default (`!Ref`), or a `!Sub` of the region.
    fn text(&self, value: Option<&Value>) -> String {
        match value {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Tagged(tagged)) if tagged.tag == "!Sub" => tagged
                .value
                .as_str()
                .unwrap_or_default()
                .replace("${AWS::Region}", REGION),
            Some(other) => ref_name(other)
                .and_then(|name| self.defaults.get(name))
                .cloned()
                .unwrap_or_default(),
            None => String::new(),
        }
    }

    /// `(logical id, properties)` of every resource of `kind`.
    fn of_type<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = (&'a str, &'a Value)> + 'a {
        self.resources
            .iter()
            .filter(move |(_, res)| res.get("Type").and_then(Value::as_str) == Some(kind))
            .map(|(id, res)| (id.as_str().unwrap_or_default(), &res["Properties"]))
    }

    fn kind_of(&self, id: &str) -> Option<&str> {
        self.resources.get(id)?.get("Type")?.as_str()
    }

    /// The network the template makes, as EC2 would describe it (logical ids for ids).
    fn network(&self) -> Network {
        let (vpc_id, vpc) = self
            .of_type("AWS::EC2::VPC")
            .next()
            .expect("the template has a VPC");
        // CloudFormation's defaults: DNS support on, DNS hostnames off (AWS::EC2::VPC).
        let flag =
            |name: &str, default: bool| vpc.get(name).and_then(Value::as_bool).unwrap_or(default);
        let subnets = self
            .of_type("AWS::EC2::Subnet")
            .map(|(id, p)| Subnet {
                id: id.to_owned(),
                // `!Select [n, !GetAZs ""]`: the region's n-th zone.
                availability_zone: match p.get("AvailabilityZone") {
                    Some(Value::Tagged(t)) if t.tag == "!Select" => {
                        let n = t.value.as_sequence().and_then(|s| s.first());
                        format!("zone-{}", n.and_then(Value::as_u64).unwrap_or_default())
                    }
                    other => self.text(other),
                },
                cidr: self.text(p.get("CidrBlock")),
            })
            .collect();
        let mut route_tables: Vec<RouteTable> = self
            .of_type("AWS::EC2::RouteTable")
            .map(|(table, _)| RouteTable {
                id: table.to_owned(),
                main: false,
                subnets: self
                    .of_type("AWS::EC2::SubnetRouteTableAssociation")
                    .filter(|(_, p)| ref_name(&p["RouteTableId"]) == Some(table))
                    .filter_map(|(_, p)| ref_name(&p["SubnetId"]).map(str::to_owned))
                    .collect(),
                routes: self
                    .of_type("AWS::EC2::Route")
                    .filter(|(_, p)| ref_name(&p["RouteTableId"]) == Some(table))
                    .map(|(id, p)| Route {
                        destination: p["DestinationCidrBlock"].as_str().map(str::to_owned),
                        target: match (ref_name(&p["NatGatewayId"]), ref_name(&p["GatewayId"])) {
                            (Some(nat), _) => RouteTarget::NatGateway(nat.to_owned()),
                            (None, Some(gateway))
                                if self.kind_of(gateway) == Some("AWS::EC2::InternetGateway") =>
                            {
                                RouteTarget::InternetGateway(gateway.to_owned())
                            }
                            _ => RouteTarget::Other(id.to_owned()),
                        },
                        active: true,
                    })
                    .collect(),
            })
            .collect();
        route_tables.push(RouteTable {
            id: MAIN_TABLE.into(),
            main: true,
            subnets: Vec::new(),
            routes: Vec::new(),
        });
        let endpoints = self
            .of_type("AWS::EC2::VPCEndpoint")
            .map(|(id, p)| Endpoint {
                id: id.to_owned(),
                service: self.text(p.get("ServiceName")),
                // CloudFormation's default type is Gateway.
                kind: match p["VpcEndpointType"].as_str().unwrap_or("Gateway") {
                    "Interface" => EndpointType::Interface,
                    "Gateway" => EndpointType::Gateway,
                    _ => EndpointType::Other,
                },
                available: true,
                private_dns: p["PrivateDnsEnabled"].as_bool() == Some(true),
                subnets: refs(p.get("SubnetIds")),
                security_groups: refs(p.get("SecurityGroupIds")),
                route_tables: refs(p.get("RouteTableIds")),
            })
            .collect();
        let security_groups = self
            .of_type("AWS::EC2::SecurityGroup")
            .map(|(id, p)| SecurityGroup {
                id: id.to_owned(),
                ingress: p["SecurityGroupIngress"]
                    .as_sequence()
                    .into_iter()
                    .flatten()
                    .map(|rule| Ingress {
                        protocol: self.text(rule.get("IpProtocol")),
                        from_port: rule["FromPort"].as_i64().and_then(|p| p.try_into().ok()),
                        to_port: rule["ToPort"].as_i64().and_then(|p| p.try_into().ok()),
                        cidrs: Some(self.text(rule.get("CidrIp")))
                            .filter(|c| !c.is_empty())
                            .into_iter()
                            .collect(),
                    })
                    .collect(),
            })
            .collect();
        Network {
            vpc: Vpc {
                id: vpc_id.to_owned(),
                dns_support: flag("EnableDnsSupport", true),
                dns_hostnames: flag("EnableDnsHostnames", false),
            },
            subnets,
            route_tables,
            endpoints,
            security_groups,
        }
    }

    /// The subnets the services run in, as the template exports them.
    fn service_subnets(&self) -> Vec<String> {
        refs(
            self.outputs
                .get("PrivateSubnets")
                .and_then(|o| o.get("Value")),
        )
    }
}

const ENVIRONMENT: &str = include_str!("../../environment.yaml");

/// What each subnet lacks, as the doctor would say it.
fn gaps(template: &Template, subnet: &str) -> Vec<String> {
    match template.network().reach(subnet) {
        Ok(reach) => panic!("{subnet} reaches: {reach:?}"),
        Err(gaps) => gaps.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn every_service_subnet_reaches_ecr_its_layers_and_logs() {
    let template = Template::read(ENVIRONMENT);
    let subnets = template.service_subnets();
    assert_eq!(subnets, ["SubnetA", "SubnetB"]);
    let network = template.network();
    for subnet in &subnets {
        assert_eq!(
            network.reach(subnet),
            Ok(Reach::Endpoints {
                table: "PrivateRouteTable".into()
            }),
            "{subnet}"
        );
    }
}

#[test]
fn the_template_without_one_of_its_pieces_is_caught() {
    // Each edit removes one piece of environment.yaml's network; the rule names it.
    let cases: [(&str, &str, &str); 4] = [
        (
            "      ServiceName: !Sub \"com.amazonaws.${AWS::Region}.logs\"",
            "      ServiceName: !Sub \"com.amazonaws.${AWS::Region}.notlogs\"",
            "no logs interface endpoint",
        ),
        (
            "      RouteTableIds: [!Ref PrivateRouteTable]",
            "      RouteTableIds: []",
            "no S3 gateway endpoint on its route table PrivateRouteTable",
        ),
        (
            "      EnableDnsHostnames: true",
            "      EnableDnsHostnames: false",
            "Vpc has enableDnsHostnames off",
        ),
        (
            "{ IpProtocol: tcp, FromPort: 443, ToPort: 443, CidrIp: !Ref VpcCidr, Description: HTTPS from the VPC }",
            "{ IpProtocol: tcp, FromPort: 443, ToPort: 443, CidrIp: 10.99.0.0/16, Description: HTTPS from elsewhere }",
            "admits no HTTPS (TCP 443) from 10.40.0.0/24",
        ),
    ];
    for (piece, broken, said) in cases {
        assert!(
            ENVIRONMENT.contains(piece),
            "environment.yaml has {piece:?}"
        );
        let template = Template::read(&ENVIRONMENT.replace(piece, broken));
        let gaps = gaps(&template, "SubnetA");
        assert!(
            gaps.iter().any(|g| g.contains(said)),
            "{said:?} in {gaps:#?}"
        );
    }
    // A subnet without its association falls back on the main route table, which has nothing.
    let unassociated = ENVIRONMENT.replace(
        "      SubnetId: !Ref SubnetB\n      RouteTableId: !Ref PrivateRouteTable",
        "      SubnetId: !Ref SubnetA\n      RouteTableId: !Ref PrivateRouteTable",
    );
    assert_eq!(
        gaps(&Template::read(&unassociated), "SubnetB"),
        [format!(
            "no S3 gateway endpoint on its route table {MAIN_TABLE} (ECR's image layers)"
        )]
    );
}

#[test]
fn a_network_without_endpoints_or_nat_is_caught() {
    // The template's network before its endpoints: subnets alone.
    let bare = r#"
Parameters:
  VpcCidr: { Type: String, Default: 10.40.0.0/16 }
Resources:
  Vpc: { Type: AWS::EC2::VPC, Properties: { CidrBlock: !Ref VpcCidr } }
  SubnetA: { Type: AWS::EC2::Subnet, Properties: { VpcId: !Ref Vpc, CidrBlock: 10.40.0.0/24 } }
"#;
    let outputs = "Outputs:\n  PrivateSubnets: { Value: !Join [\",\", [!Ref SubnetA]] }\n";
    let template = Template::read(&format!("{bare}{outputs}"));
    assert_eq!(template.service_subnets(), ["SubnetA"]);
    let network = template.network();
    let Err(found) = network.reach("SubnetA") else {
        panic!("a bare subnet reaches");
    };
    assert_eq!(
        found,
        [
            Gap::VpcDns {
                vpc: "Vpc".into(),
                attribute: "enableDnsHostnames"
            },
            Gap::NoS3Gateway {
                table: MAIN_TABLE.into()
            },
            Gap::NoInterface { service: "ecr.api" },
            Gap::NoInterface { service: "ecr.dkr" },
            Gap::NoInterface { service: "logs" },
        ]
    );

    // A route table with a NAT default route is enough.
    let table = r#"  Table: { Type: AWS::EC2::RouteTable, Properties: { VpcId: !Ref Vpc } }
  Assoc: { Type: AWS::EC2::SubnetRouteTableAssociation, Properties: { SubnetId: !Ref SubnetA, RouteTableId: !Ref Table } }
"#;
    let nat = "  Default: { Type: AWS::EC2::Route, Properties: { RouteTableId: !Ref Table, DestinationCidrBlock: 0.0.0.0/0, NatGatewayId: !Ref Nat } }\n";
    let template = Template::read(&format!("{bare}{table}{nat}{outputs}"));
    assert_eq!(
        template.network().reach("SubnetA"),
        Ok(Reach::DefaultRoute {
            table: "Table".into(),
            via: "Nat".into()
        })
    );

    // A route table alone: every endpoint is missing, on that table.
    let template = Template::read(&format!("{bare}{table}{outputs}"));
    let gaps = gaps(&template, "SubnetA");
    assert_eq!(gaps.len(), 5, "{gaps:#?}");
    assert!(gaps[1].contains("route table Table"), "{gaps:#?}");
}
