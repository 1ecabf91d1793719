//! Whether an environment's private subnets reach what a Fargate task needs to start: a pure
//! decision over the network's facts, read from `environment.yaml` by its test and from a live
//! account (EC2's Describe* calls) by `shipgate doctor`, so the rule is written once.
//!
//! A Fargate task (platform 1.4.0+) in a private subnet pulls its image from ECR (the `ecr.api`
//! and `ecr.dkr` endpoints, and S3 for the image layers) and sends its logs with the `awslogs`
//! driver (the `logs` endpoint) over HTTPS; a task that cannot stays in PROVISIONING and stops
//! with "ResourceInitializationError: unable to pull secrets or registry auth". A subnet reaches
//! them either way:
//! - a default route (`0.0.0.0/0`) on its route table to a NAT gateway or an internet gateway;
//! - or VPC endpoints: the `ecr.api`, `ecr.dkr` and `logs` interface endpoints, available, with
//!   private DNS on (so the services' usual names resolve to them), with a network interface in
//!   the subnet's availability zone, and a security group admitting TCP 443 from the subnet; and
//!   the S3 gateway endpoint on the subnet's route table. Private DNS needs the VPC's
//!   `enableDnsSupport` and `enableDnsHostnames`.
//!
//! Sources: ECR user guide, "Amazon ECR interface VPC endpoints (AWS PrivateLink)" (the three
//! endpoints and the S3 gateway endpoint for Fargate; "the security group attached to the VPC
//! endpoint must allow incoming connections on port 443 from the private subnet of the VPC");
//! CloudWatch Logs user guide, "Using CloudWatch Logs with interface VPC endpoints"; VPC user
//! guide, "Gateway endpoints" (a gateway endpoint is reached through the route tables it is
//! added to) and "Subnet route tables" (a subnet with no explicit association uses the VPC's
//! main route table); VPC user guide, "DNS attributes for your VPC", and EC2 API reference,
//! CreateVpcEndpoint `PrivateDnsEnabled` ("you must set the following VPC attributes to true:
//! enableDnsHostnames and enableDnsSupport").
//!
//! Not modelled: routes through transit gateways, peering or NAT instances, endpoint policies,
//! network ACLs, security groups that admit the tasks by group rather than by address, and
//! IPv6-only subnets. A subnet that needs one of them is reported as not reaching, with what
//! was missing.

use std::fmt;

/// The interface endpoints a task needs, by the last part of their service name
/// (`com.amazonaws.<region>.<name>`).
pub const INTERFACE_SERVICES: [&str; 3] = ["ecr.api", "ecr.dkr", "logs"];
/// The gateway endpoint a task needs for ECR's image layers.
pub const GATEWAY_SERVICE: &str = "s3";

/// What is known of one VPC: the facts the decision reads, from a template or from EC2.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Network {
    pub vpc: Vpc,
    /// Every subnet of the VPC (the endpoints' subnets too, for their availability zones).
    pub subnets: Vec<Subnet>,
    pub route_tables: Vec<RouteTable>,
    pub endpoints: Vec<Endpoint>,
    pub security_groups: Vec<SecurityGroup>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vpc {
    pub id: String,
    /// `enableDnsSupport`.
    pub dns_support: bool,
    /// `enableDnsHostnames`.
    pub dns_hostnames: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subnet {
    pub id: String,
    pub availability_zone: String,
    /// Its IPv4 range, `10.40.0.0/24`.
    pub cidr: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteTable {
    pub id: String,
    /// The VPC's main route table: the one of every subnet without an explicit association.
    pub main: bool,
    /// The subnets explicitly associated with it.
    pub subnets: Vec<String>,
    pub routes: Vec<Route>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Its IPv4 destination, `0.0.0.0/0`; `None` for a prefix-list route (a gateway endpoint's).
    pub destination: Option<String>,
    pub target: RouteTarget,
    /// `false` for a blackhole route (its NAT gateway or internet gateway was deleted).
    pub active: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteTarget {
    NatGateway(String),
    InternetGateway(String),
    /// Anything else: `local`, a gateway endpoint, a peering connection…
    Other(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointType {
    Interface,
    Gateway,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub id: String,
    /// `com.amazonaws.<region>.<name>`.
    pub service: String,
    pub kind: EndpointType,
    /// State `available` (not pending, failed, or deleted).
    pub available: bool,
    pub private_dns: bool,
    /// Interface endpoints: the subnets it has a network interface in.
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    /// Gateway endpoints: the route tables it is on.
    pub route_tables: Vec<String>,
}

impl Endpoint {
    /// Whether it is an endpoint of AWS service `name` (`ecr.api`, `s3`) in any region:
    /// `com.amazonaws.<region>.<name>`.
    pub fn serves(&self, name: &str) -> bool {
        self.service
            .strip_prefix("com.amazonaws.")
            .and_then(|rest| rest.split_once('.'))
            .is_some_and(|(_, service)| service == name)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecurityGroup {
    pub id: String,
    pub ingress: Vec<Ingress>,
}

/// One inbound rule: `protocol` as EC2 gives it (`tcp`, `6`, or `-1` for all), ports absent
/// for all, and the IPv4 ranges it admits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ingress {
    pub protocol: String,
    pub from_port: Option<i32>,
    pub to_port: Option<i32>,
    pub cidrs: Vec<String>,
}

impl Ingress {
    /// Whether it admits HTTPS (TCP 443) from every address of `cidr`.
    fn admits_https_from(&self, cidr: &str) -> bool {
        let tcp = matches!(self.protocol.as_str(), "tcp" | "6");
        let all = self.protocol == "-1";
        let port = match (self.from_port, self.to_port) {
            (Some(from), Some(to)) => from <= 443 && 443 <= to,
            _ => all,
        };
        (all || (tcp && port)) && self.cidrs.iter().any(|outer| cidr_contains(outer, cidr))
    }
}

/// How a subnet reaches ECR, S3 and CloudWatch Logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// Through route table `table`'s default route to `via` (a NAT or internet gateway).
    DefaultRoute { table: String, via: String },
    /// Through the VPC's endpoints (interface endpoints and the S3 gateway endpoint on `table`).
    Endpoints { table: String },
}

/// Something a subnet lacks to reach them through endpoints (having no default route).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gap {
    /// The subnet is not one of the VPC's.
    UnknownSubnet,
    /// It has no explicit route table and the VPC's main one is not known.
    NoRouteTable,
    /// The VPC's `enableDnsSupport` or `enableDnsHostnames` is off (`attribute` names it).
    VpcDns {
        vpc: String,
        attribute: &'static str,
    },
    /// No available S3 gateway endpoint is on its route table.
    NoS3Gateway { table: String },
    /// No available interface endpoint of `service`.
    NoInterface { service: &'static str },
    /// Endpoints of `service` exist, but none serves the subnet: `why` (of the nearest one).
    InterfaceUnusable {
        service: &'static str,
        endpoint: String,
        why: String,
    },
}

impl fmt::Display for Gap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Gap::UnknownSubnet => f.write_str("not a subnet of the VPC"),
            Gap::NoRouteTable => f.write_str("no route table (and the VPC's main one is unknown)"),
            Gap::VpcDns { vpc, attribute } => write!(
                f,
                "{vpc} has {attribute} off, which the endpoints' private DNS needs"
            ),
            Gap::NoS3Gateway { table } => write!(
                f,
                "no S3 gateway endpoint on its route table {table} (ECR's image layers)"
            ),
            Gap::NoInterface { service } => write!(f, "no {service} interface endpoint"),
            Gap::InterfaceUnusable {
                service,
                endpoint,
                why,
            } => write!(f, "the {service} endpoint {endpoint} {why}"),
        }
    }
}

impl Network {
    fn subnet(&self, id: &str) -> Option<&Subnet> {
        self.subnets.iter().find(|s| s.id == id)
    }

    /// The route table `subnet` uses: its explicit association, else the VPC's main one.
    pub fn route_table_of(&self, subnet: &str) -> Option<&RouteTable> {
        self.route_tables
            .iter()
            .find(|t| t.subnets.iter().any(|s| s == subnet))
            .or_else(|| self.route_tables.iter().find(|t| t.main))
    }

    /// How `subnet` reaches ECR, S3 and CloudWatch Logs, or everything it lacks to.
    pub fn reach(&self, subnet: &str) -> Result<Reach, Vec<Gap>> {
        let Some(own) = self.subnet(subnet) else {
            return Err(vec![Gap::UnknownSubnet]);
        };
        let Some(table) = self.route_table_of(subnet) else {
            return Err(vec![Gap::NoRouteTable]);
        };
        let default_route = table.routes.iter().find_map(|r| {
            let via = match &r.target {
                RouteTarget::NatGateway(id) | RouteTarget::InternetGateway(id) => id,
                RouteTarget::Other(_) => return None,
            };
            (r.active && r.destination.as_deref() == Some("0.0.0.0/0")).then_some(via)
        });
        if let Some(via) = default_route {
            return Ok(Reach::DefaultRoute {
                table: table.id.clone(),
                via: via.clone(),
            });
        }
        let mut gaps = Vec::new();
        for (attribute, on) in [
            ("enableDnsSupport", self.vpc.dns_support),
            ("enableDnsHostnames", self.vpc.dns_hostnames),
        ] {
            if !on {
                gaps.push(Gap::VpcDns {
                    vpc: self.vpc.id.clone(),
                    attribute,
                });
            }
        }
        let s3 = self.endpoints.iter().any(|e| {
            e.kind == EndpointType::Gateway
                && e.available
                && e.serves(GATEWAY_SERVICE)
                && e.route_tables.contains(&table.id)
        });
        if !s3 {
            gaps.push(Gap::NoS3Gateway {
                table: table.id.clone(),
            });
        }
        for service in INTERFACE_SERVICES {
            let candidates: Vec<&Endpoint> = self
                .endpoints
                .iter()
                .filter(|e| e.kind == EndpointType::Interface && e.available && e.serves(service))
                .collect();
            let problems: Vec<(&Endpoint, Option<String>)> = candidates
                .iter()
                .map(|e| (*e, self.interface_problem(e, own)))
                .collect();
            if problems.iter().any(|(_, problem)| problem.is_none()) {
                continue;
            }
            gaps.push(match problems.into_iter().next() {
                None => Gap::NoInterface { service },
                Some((endpoint, why)) => Gap::InterfaceUnusable {
                    service,
                    endpoint: endpoint.id.clone(),
                    why: why.unwrap_or_default(),
                },
            });
        }
        if gaps.is_empty() {
            Ok(Reach::Endpoints {
                table: table.id.clone(),
            })
        } else {
            Err(gaps)
        }
    }

    /// Why interface endpoint `endpoint` does not serve `subnet`; `None` when it does.
    fn interface_problem(&self, endpoint: &Endpoint, subnet: &Subnet) -> Option<String> {
        if !endpoint.private_dns {
            return Some("has private DNS off".into());
        }
        let zones: Vec<&str> = endpoint
            .subnets
            .iter()
            .filter_map(|s| self.subnet(s))
            .map(|s| s.availability_zone.as_str())
            .collect();
        if !endpoint.subnets.contains(&subnet.id) && !zones.contains(&&*subnet.availability_zone) {
            return Some(format!(
                "has no network interface in {} (the subnet's availability zone)",
                subnet.availability_zone
            ));
        }
        let admitted = self
            .security_groups
            .iter()
            .filter(|g| endpoint.security_groups.contains(&g.id))
            .flat_map(|g| &g.ingress)
            .any(|rule| rule.admits_https_from(&subnet.cidr));
        if !admitted {
            return Some(format!(
                "admits no HTTPS (TCP 443) from {} in its security groups",
                subnet.cidr
            ));
        }
        None
    }
}

/// An IPv4 range `a.b.c.d/n` as (address, prefix length).
fn parse_cidr(cidr: &str) -> Option<(u32, u32)> {
    let (address, length) = cidr.split_once('/')?;
    let address: std::net::Ipv4Addr = address.parse().ok()?;
    let length: u32 = length.parse().ok().filter(|l| *l <= 32)?;
    Some((u32::from(address), length))
}

/// Whether range `outer` holds every address of range `inner`.
pub fn cidr_contains(outer: &str, inner: &str) -> bool {
    let (Some((outer, outer_len)), Some((inner, inner_len))) =
        (parse_cidr(outer), parse_cidr(inner))
    else {
        return false;
    };
    let mask = u32::MAX.checked_shl(32 - outer_len).unwrap_or(0);
    inner_len >= outer_len && inner & mask == outer & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    /// environment.yaml's network, as EC2 would describe it: two subnets in two zones on one
    /// route table, the three interface endpoints in both, the S3 gateway endpoint on the table.
    fn working() -> Network {
        let subnet = |id: &str, zone: &str, cidr: &str| Subnet {
            id: id.into(),
            availability_zone: zone.into(),
            cidr: cidr.into(),
        };
        let endpoints = crate::testing::reaching_endpoints(
            &["subnet-a", "subnet-b"],
            "sg-endpoints",
            "rtb-private",
        );
        Network {
            vpc: Vpc {
                id: "vpc-1".into(),
                dns_support: true,
                dns_hostnames: true,
            },
            subnets: vec![
                subnet("subnet-a", "eu-west-1a", "10.40.0.0/24"),
                subnet("subnet-b", "eu-west-1b", "10.40.1.0/24"),
            ],
            route_tables: vec![
                RouteTable {
                    id: "rtb-main".into(),
                    main: true,
                    subnets: vec![],
                    routes: vec![],
                },
                RouteTable {
                    id: "rtb-private".into(),
                    main: false,
                    subnets: vec!["subnet-a".into(), "subnet-b".into()],
                    routes: vec![Route {
                        destination: Some("10.40.0.0/16".into()),
                        target: RouteTarget::Other("local".into()),
                        active: true,
                    }],
                },
            ],
            endpoints,
            security_groups: vec![SecurityGroup {
                id: "sg-endpoints".into(),
                ingress: vec![Ingress {
                    protocol: "tcp".into(),
                    from_port: Some(443),
                    to_port: Some(443),
                    cidrs: vec!["10.40.0.0/16".into()],
                }],
            }],
        }
    }

    fn gaps(network: &Network, subnet: &str) -> Vec<String> {
        match network.reach(subnet) {
            Ok(reach) => panic!("{subnet} reaches: {reach:?}"),
            Err(gaps) => gaps.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn the_templates_network_reaches_everything_through_endpoints() {
        let network = working();
        for subnet in ["subnet-a", "subnet-b"] {
            assert_eq!(
                network.reach(subnet),
                Ok(Reach::Endpoints {
                    table: "rtb-private".into()
                })
            );
        }
    }

    #[test]
    fn each_missing_endpoint_is_named() {
        let mut network = working();
        network.endpoints.retain(|e| !e.serves("logs"));
        assert_eq!(gaps(&network, "subnet-a"), ["no logs interface endpoint"]);

        let mut network = working();
        network.endpoints.retain(|e| !e.serves("s3"));
        assert_eq!(
            gaps(&network, "subnet-b"),
            ["no S3 gateway endpoint on its route table rtb-private (ECR's image layers)"]
        );

        // A deleted endpoint is no endpoint.
        let mut network = working();
        for e in &mut network.endpoints {
            e.available = !e.serves("ecr.dkr");
        }
        assert_eq!(
            gaps(&network, "subnet-a"),
            ["no ecr.dkr interface endpoint"]
        );
    }

    #[test]
    fn a_subnet_without_its_own_table_uses_the_main_one() {
        let mut network = working();
        network.route_tables[1].subnets.retain(|s| s != "subnet-b");
        assert!(network.reach("subnet-a").is_ok());
        assert_eq!(
            gaps(&network, "subnet-b"),
            ["no S3 gateway endpoint on its route table rtb-main (ECR's image layers)"]
        );
        // With no main table known either, nothing can be said but that.
        network.route_tables.remove(0);
        assert_eq!(network.reach("subnet-b"), Err(vec![Gap::NoRouteTable]));
    }

    #[test]
    fn private_dns_needs_both_vpc_attributes_and_the_endpoints_setting() {
        let mut network = working();
        network.vpc.dns_hostnames = false;
        assert_eq!(
            gaps(&network, "subnet-a"),
            ["vpc-1 has enableDnsHostnames off, which the endpoints' private DNS needs"]
        );
        network.vpc.dns_support = false;
        assert_eq!(gaps(&network, "subnet-a").len(), 2);

        let mut network = working();
        network.endpoints[1].private_dns = false;
        assert_eq!(
            gaps(&network, "subnet-a"),
            ["the ecr.dkr endpoint vpce-ecr.dkr has private DNS off"]
        );
    }

    #[test]
    fn an_interface_endpoint_must_be_in_the_zone_and_admit_https_from_the_subnet() {
        // In subnet-a only: subnet-b's zone has no interface.
        let mut network = working();
        network.endpoints[0].subnets = vec!["subnet-a".into()];
        assert!(network.reach("subnet-a").is_ok());
        assert_eq!(
            gaps(&network, "subnet-b"),
            [
                "the ecr.api endpoint vpce-ecr.api has no network interface in eu-west-1b (the \
              subnet's availability zone)"
            ]
        );
        // Another subnet of the same zone serves it.
        network.subnets.push(Subnet {
            id: "subnet-b2".into(),
            availability_zone: "eu-west-1b".into(),
            cidr: "10.40.2.0/24".into(),
        });
        network.endpoints[0].subnets.push("subnet-b2".into());
        assert!(network.reach("subnet-b").is_ok());

        // 443 from subnet-a's range only.
        let mut network = working();
        network.security_groups[0].ingress[0].cidrs = vec!["10.40.0.0/24".into()];
        assert!(network.reach("subnet-a").is_ok());
        assert_eq!(gaps(&network, "subnet-b").len(), 3, "all three interfaces");
        // Another port, or UDP, admits nothing; every protocol and port does.
        let mut network = working();
        network.security_groups[0].ingress[0].from_port = Some(80);
        network.security_groups[0].ingress[0].to_port = Some(80);
        assert!(
            gaps(&network, "subnet-a")[0].contains("admits no HTTPS (TCP 443) from 10.40.0.0/24")
        );
        network.security_groups[0].ingress[0].protocol = "-1".into();
        network.security_groups[0].ingress[0].from_port = None;
        network.security_groups[0].ingress[0].to_port = None;
        assert!(network.reach("subnet-a").is_ok());
        // One usable endpoint of a service is enough, whatever the others.
        let mut network = working();
        let mut broken = network.endpoints[2].clone();
        broken.id = "vpce-logs-old".into();
        broken.private_dns = false;
        network.endpoints.insert(0, broken);
        assert!(network.reach("subnet-a").is_ok());
    }

    #[test]
    fn a_default_route_to_a_nat_or_internet_gateway_needs_no_endpoint() {
        let mut network = working();
        network.endpoints.clear();
        network.vpc.dns_hostnames = false;
        assert_eq!(gaps(&network, "subnet-a").len(), 5);
        for target in [
            RouteTarget::NatGateway("nat-1".into()),
            RouteTarget::InternetGateway("igw-1".into()),
        ] {
            network.route_tables[1].routes.push(Route {
                destination: Some("0.0.0.0/0".into()),
                target: target.clone(),
                active: true,
            });
            assert!(matches!(
                network.reach("subnet-a"),
                Ok(Reach::DefaultRoute { ref via, .. }) if via.ends_with('1')
            ));
            // A blackhole (its gateway deleted) is no route.
            network.route_tables[1].routes.last_mut().unwrap().active = false;
            assert!(network.reach("subnet-a").is_err());
            network.route_tables[1].routes.pop();
        }
        // A default route to anything else (a peering) is not one.
        network.route_tables[1].routes.push(Route {
            destination: Some("0.0.0.0/0".into()),
            target: RouteTarget::Other("pcx-1".into()),
            active: true,
        });
        assert!(network.reach("subnet-a").is_err());
    }

    #[test]
    fn an_unknown_subnet_is_said_so() {
        assert_eq!(working().reach("subnet-z"), Err(vec![Gap::UnknownSubnet]));
    }

    #[test]
    fn ranges_hold_ranges() {
        assert!(cidr_contains("10.40.0.0/16", "10.40.1.0/24"));
        assert!(cidr_contains("0.0.0.0/0", "10.40.1.0/24"));
        assert!(cidr_contains("10.40.1.0/24", "10.40.1.0/24"));
        assert!(!cidr_contains("10.40.1.0/24", "10.40.0.0/16"));
        assert!(!cidr_contains("10.41.0.0/16", "10.40.1.0/24"));
        assert!(!cidr_contains("10.40.0.0/16", "not a range"));
        assert!(!cidr_contains("10.40.0.0/33", "10.40.1.0/24"));
    }

    #[test]
    fn service_names_match_on_their_last_parts() {
        let mut e = working().endpoints[0].clone();
        assert!(e.serves("ecr.api"));
        assert!(!e.serves("api") && !e.serves("ecr"));
        e.service = "com.amazonaws.eu-west-1.notlogs".into();
        assert!(!e.serves("logs"));
    }
}
