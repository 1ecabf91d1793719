//! The fixed AWS account ids of the local stack, one per role in the story.
//!
//! The tooling account runs shipgate and holds the source registry the integrator pushes to;
//! each environment has its own account, reached by assuming [`deploy_role_arn`].

/// moto's default account: requests with plain (not assumed-role) credentials land here.
pub const TOOLING: &str = "123456789012";
pub const INT: &str = "222222222222";
pub const STG: &str = "333333333333";
pub const PROD: &str = "444444444444";

/// Environments in promotion order, with their accounts.
pub const ENVIRONMENTS: [(&str, &str); 3] = [("int", INT), ("stg", STG), ("prod", PROD)];

/// The region every local resource lives in.
pub const REGION: &str = "eu-west-1";

/// The role shipgate assumes in an environment account (created by the environment template).
pub fn deploy_role_arn(account: &str) -> String {
    format!("arn:aws:iam::{account}:role/shipgate-deploy")
}
