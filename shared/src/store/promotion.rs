//! Image promotions of a release, one item per target environment, kept with the release
//! (`pk = RELEASE#<id>`, `sk = PROMOTION#<environment>`): the promote action writes it (in
//! progress between the invocations of a long promotion, then succeeded or failed), and what
//! each image's copy did (digest, blobs copied and skipped, bytes, seconds) is read back by
//! `shipgate-local status`, the deploy of the next environment and the people who ask "what
//! went where".

use serde::{Deserialize, Serialize};

use super::{Keys, Store, StoreError, release_pk};
use crate::registry::Digest;

/// Where a promotion stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromotionState {
    /// Between two invocations of the action (a continuation token is out).
    InProgress,
    /// Every image is in the target registry under its digest, tagged.
    Succeeded,
    /// The action failed: `failure` says why.
    Failed,
}

impl PromotionState {
    pub fn as_str(self) -> &'static str {
        match self {
            PromotionState::InProgress => "in_progress",
            PromotionState::Succeeded => "succeeded",
            PromotionState::Failed => "failed",
        }
    }
}

/// A release's images promoted from one environment's registry to the next one's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Promotion {
    pub release_id: String,
    pub execution_id: String,
    /// The CodePipeline job; the invocations of one job (continuations) share it.
    pub job_id: String,
    pub from_environment: String,
    /// Registry hosts (`<account>.dkr.ecr.<region>.amazonaws.com`).
    pub from_registry: String,
    pub to_environment: String,
    pub to_registry: String,
    pub state: PromotionState,
    /// The release's images, in manifest order, as far as the promotion got.
    pub images: Vec<PromotedImage>,
    /// How many invocations of the action it took so far.
    pub invocations: u32,
    /// RFC 3339.
    pub started_at: String,
    pub updated_at: String,
    pub failure: Option<String>,
}

/// One image of a promotion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromotedImage {
    /// The image's name in the release (`web`).
    pub name: String,
    pub repository: String,
    pub tag: String,
    pub digest: Digest,
    pub media_type: String,
    /// `<target registry>/<repository>@<digest>`: what the next environment runs.
    pub reference: String,
    /// `true` once the image is in the target, tagged and read back; `false` while its blobs
    /// are still being copied across invocations.
    pub complete: bool,
    /// The target repository was created by this promotion, with these settings.
    pub repository_created: bool,
    pub tag_mutability: String,
    pub scan_on_push: bool,
    pub manifests_pushed: u32,
    pub blobs: u32,
    pub blobs_copied: u32,
    pub blobs_skipped: u32,
    pub bytes_copied: u64,
    pub bytes_skipped: u64,
    pub seconds: f64,
}

fn promotion_sk(environment: &str) -> String {
    format!("PROMOTION#{environment}")
}

/// Where a promotion is stored: with its release, one per target environment.
fn promotion_keys(promotion: &Promotion) -> Keys {
    Keys::new(
        release_pk(&promotion.release_id),
        promotion_sk(&promotion.to_environment),
    )
}

impl Store {
    /// Records a promotion (a later one to the same environment, from a retried stage,
    /// replaces it).
    pub async fn put_promotion(&self, promotion: &Promotion) -> Result<(), StoreError> {
        self.put_record(promotion_keys(promotion), promotion).await
    }

    /// The promotion of `release_id` to `environment`, if any (strongly consistent).
    pub async fn get_promotion(
        &self,
        release_id: &str,
        environment: &str,
    ) -> Result<Option<Promotion>, StoreError> {
        self.get_record(release_pk(release_id), promotion_sk(environment))
            .await
    }

    /// Every promotion of `release_id`, by target environment name.
    pub async fn list_promotions(&self, release_id: &str) -> Result<Vec<Promotion>, StoreError> {
        self.query_records(&release_pk(release_id), "PROMOTION#")
            .await
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::types::AttributeValue;

    use super::*;
    use crate::store::{from_item, to_item};

    fn promotion() -> Promotion {
        Promotion {
            release_id: "rel-1".into(),
            execution_id: "exec-1".into(),
            job_id: "job-1".into(),
            from_environment: "int".into(),
            from_registry: "222222222222.dkr.ecr.eu-west-1.amazonaws.com".into(),
            to_environment: "stg".into(),
            to_registry: "333333333333.dkr.ecr.eu-west-1.amazonaws.com".into(),
            state: PromotionState::Succeeded,
            images: vec![PromotedImage {
                name: "web".into(),
                repository: "orders/web".into(),
                tag: "1.4.2".into(),
                digest: Digest::sha256_of(b"m"),
                media_type: "application/vnd.oci.image.index.v1+json".into(),
                reference: "333333333333.dkr.ecr.eu-west-1.amazonaws.com/orders/web@sha256:x"
                    .into(),
                complete: true,
                repository_created: true,
                tag_mutability: "IMMUTABLE".into(),
                scan_on_push: true,
                manifests_pushed: 3,
                blobs: 6,
                blobs_copied: 4,
                blobs_skipped: 2,
                bytes_copied: 314_572_800,
                bytes_skipped: 1024,
                seconds: 1.25,
            }],
            invocations: 1,
            started_at: "2026-11-26T10:00:00Z".into(),
            updated_at: "2026-11-26T10:00:02Z".into(),
            failure: None,
        }
    }

    #[test]
    fn a_promotion_round_trips_through_a_table_item_under_its_release() {
        let p = promotion();
        let attrs = to_item(promotion_keys(&p), &p).unwrap();
        assert_eq!(attrs["pk"], AttributeValue::S("RELEASE#rel-1".into()));
        assert_eq!(attrs["sk"], AttributeValue::S("PROMOTION#stg".into()));
        assert_eq!(attrs["state"], AttributeValue::S("succeeded".into()));
        assert_eq!(from_item::<Promotion>(attrs).unwrap(), p);
    }
}
