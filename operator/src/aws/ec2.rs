//! EC2: the facts of the VPC an environment's private subnets are in, read into
//! [`shipgate::network::Network`] for the rule that decides their reach (Describe* calls only:
//! `ec2:DescribeSubnets`, `DescribeVpcAttribute`, `DescribeRouteTables`, `DescribeVpcEndpoints`,
//! `DescribeSecurityGroups`, which take no resource-level permission).

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{
    Filter, RouteState, VpcAttributeName, VpcEndpointType as SdkEndpointType,
};
use shipgate::network::{
    Endpoint, EndpointType, Ingress, Network, Route, RouteTable, RouteTarget, SecurityGroup,
    Subnet, Vpc,
};

use super::{CallFailure, sent};

fn in_vpc(vpc: &str) -> Filter {
    Filter::builder().name("vpc-id").values(vpc).build()
}

/// Every item a paginated Describe operation lists for the VPC, all pages (the operations'
/// builders and pages are distinct types, hence a macro).
macro_rules! every_in_vpc {
    ($client:expr, $operation:ident, $vpc:expr) => {
        $client
            .$operation()
            .filters(in_vpc($vpc))
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| CallFailure::new(&e))?
    };
}

fn subnet(s: &aws_sdk_ec2::types::Subnet) -> Subnet {
    Subnet {
        id: s.subnet_id().unwrap_or_default().to_owned(),
        availability_zone: s.availability_zone().unwrap_or_default().to_owned(),
        cidr: s.cidr_block().unwrap_or_default().to_owned(),
    }
}

/// The network of the VPC `subnets` are in (the first one's, if they are in several: the rule
/// then says the others are not the VPC's). Every subnet, route table, endpoint and security
/// group of that VPC, all pages.
pub async fn network(client: &Client, subnets: &[String]) -> Result<Network, CallFailure> {
    let given = sent(
        client
            .describe_subnets()
            .set_subnet_ids(Some(subnets.to_vec()))
            .send(),
    )
    .await?;
    let vpc_id = given
        .subnets()
        .iter()
        .find_map(|s| s.vpc_id())
        .unwrap_or_default()
        .to_owned();
    let all_subnets = every_in_vpc!(client, describe_subnets, &vpc_id);
    let attribute = |name: VpcAttributeName| {
        sent(
            client
                .describe_vpc_attribute()
                .vpc_id(&vpc_id)
                .attribute(name)
                .send(),
        )
    };
    let dns_support = attribute(VpcAttributeName::EnableDnsSupport)
        .await?
        .enable_dns_support()
        .and_then(|v| v.value())
        .unwrap_or(false);
    let dns_hostnames = attribute(VpcAttributeName::EnableDnsHostnames)
        .await?
        .enable_dns_hostnames()
        .and_then(|v| v.value())
        .unwrap_or(false);
    let tables = every_in_vpc!(client, describe_route_tables, &vpc_id);
    let endpoints = every_in_vpc!(client, describe_vpc_endpoints, &vpc_id);
    let groups = every_in_vpc!(client, describe_security_groups, &vpc_id);
    Ok(Network {
        vpc: Vpc {
            id: vpc_id,
            dns_support,
            dns_hostnames,
        },
        subnets: all_subnets.iter().map(subnet).collect(),
        route_tables: tables.iter().map(route_table).collect(),
        endpoints: endpoints.iter().map(endpoint).collect(),
        security_groups: groups.iter().map(security_group).collect(),
    })
}

fn route_table(t: &aws_sdk_ec2::types::RouteTable) -> RouteTable {
    RouteTable {
        id: t.route_table_id().unwrap_or_default().to_owned(),
        main: t.associations().iter().any(|a| a.main() == Some(true)),
        subnets: t
            .associations()
            .iter()
            .filter_map(|a| a.subnet_id())
            .map(str::to_owned)
            .collect(),
        routes: t
            .routes()
            .iter()
            .map(|r| Route {
                destination: r.destination_cidr_block().map(str::to_owned),
                target: match (r.nat_gateway_id(), r.gateway_id()) {
                    (Some(nat), _) => RouteTarget::NatGateway(nat.to_owned()),
                    (None, Some(igw)) if igw.starts_with("igw-") => {
                        RouteTarget::InternetGateway(igw.to_owned())
                    }
                    (None, other) => RouteTarget::Other(other.unwrap_or_default().to_owned()),
                },
                active: r.state() != Some(&RouteState::Blackhole),
            })
            .collect(),
    }
}

fn endpoint(e: &aws_sdk_ec2::types::VpcEndpoint) -> Endpoint {
    Endpoint {
        id: e.vpc_endpoint_id().unwrap_or_default().to_owned(),
        service: e.service_name().unwrap_or_default().to_owned(),
        kind: match e.vpc_endpoint_type() {
            Some(SdkEndpointType::Interface) => EndpointType::Interface,
            Some(SdkEndpointType::Gateway) => EndpointType::Gateway,
            _ => EndpointType::Other,
        },
        // EC2 answers `available` where its model spells the value `Available`.
        available: e
            .state()
            .is_some_and(|s| s.as_str().eq_ignore_ascii_case("available")),
        private_dns: e.private_dns_enabled() == Some(true),
        subnets: e.subnet_ids().to_vec(),
        security_groups: e
            .groups()
            .iter()
            .filter_map(|g| g.group_id())
            .map(str::to_owned)
            .collect(),
        route_tables: e.route_table_ids().to_vec(),
    }
}

fn security_group(g: &aws_sdk_ec2::types::SecurityGroup) -> SecurityGroup {
    SecurityGroup {
        id: g.group_id().unwrap_or_default().to_owned(),
        ingress: g
            .ip_permissions()
            .iter()
            .map(|p| Ingress {
                protocol: p.ip_protocol().unwrap_or_default().to_owned(),
                from_port: p.from_port(),
                to_port: p.to_port(),
                cidrs: p
                    .ip_ranges()
                    .iter()
                    .filter_map(|r| r.cidr_ip())
                    .map(str::to_owned)
                    .collect(),
            })
            .collect(),
    }
}
