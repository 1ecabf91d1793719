//! The action's own decisions and what it tells the pipeline, as plain data: each image's
//! result (carried over the invocations of a long promotion), the summary
//! line and the output variables later actions read.

use std::collections::BTreeMap;

use shipgate::registry::{CopyReport, CopyState, Digest, TargetRepository};
use shipgate::release::Image;
use shipgate::store::PromotedImage;

/// One image's result, from its copy report. `carried` is what earlier invocations of the same
/// job copied of this image: those blobs now look "already there" to this run, so they move
/// from skipped back to copied.
pub fn promoted_image(
    image: &Image,
    digest: &Digest,
    repository: &TargetRepository,
    reference: String,
    report: &CopyReport,
    carried: Option<&PromotedImage>,
) -> PromotedImage {
    let (c_blobs, c_bytes, c_seconds) =
        carried.map_or((0, 0, 0.0), |c| (c.blobs_copied, c.bytes_copied, c.seconds));
    PromotedImage {
        name: image.name.clone(),
        repository: image.repository.clone(),
        tag: image.tag.clone(),
        digest: digest.clone(),
        media_type: report.media_type.clone(),
        reference,
        complete: report.state == CopyState::Complete,
        repository_created: repository.created || carried.is_some_and(|c| c.repository_created),
        tag_mutability: repository.settings.tag_mutability.clone(),
        scan_on_push: repository.settings.scan_on_push,
        manifests_pushed: report.manifests_pushed,
        blobs: report.blobs,
        blobs_copied: report.blobs_copied + c_blobs,
        blobs_skipped: report.blobs_skipped.saturating_sub(c_blobs),
        bytes_copied: report.bytes_copied + c_bytes,
        bytes_skipped: report.bytes_skipped.saturating_sub(c_bytes),
        seconds: report.seconds + c_seconds,
    }
}

/// `12.3 MiB`
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1_048_576.0)
}

/// "int → stg: 2 images promoted to 333….amazonaws.com; 300.0 MiB copied, 2 blobs already
/// there"
pub fn summary_line(from: &str, to: &str, registry: &str, images: &[PromotedImage]) -> String {
    let copied: u64 = images.iter().map(|i| i.bytes_copied).sum();
    let blobs_copied: u32 = images.iter().map(|i| i.blobs_copied).sum();
    let skipped: u32 = images.iter().map(|i| i.blobs_skipped).sum();
    let created = images.iter().filter(|i| i.repository_created).count();
    let count = match images.len() {
        1 => "1 image".to_owned(),
        n => format!("{n} images"),
    };
    let moved = if blobs_copied == 0 {
        format!("nothing to copy, {skipped} blob(s) already there")
    } else {
        format!(
            "{} copied in {blobs_copied} blob(s), {skipped} already there",
            mib(copied)
        )
    };
    let created = match created {
        0 => String::new(),
        n => format!("; {n} repository(ies) created with the source's settings"),
    };
    let line = format!("{from} → {to}: {count} promoted to {registry}; {moved}{created}");
    line.chars().take(2048).collect()
}

/// Output variables for later actions: per image `<name>_digest` and `<name>_uri` (the image
/// by digest in the target registry), and the totals.
pub fn output_variables(registry: &str, images: &[PromotedImage]) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::from([
        ("Registry".to_owned(), registry.to_owned()),
        ("Images".to_owned(), images.len().to_string()),
        (
            "BlobsCopied".to_owned(),
            images
                .iter()
                .map(|i| i.blobs_copied)
                .sum::<u32>()
                .to_string(),
        ),
        (
            "BlobsSkipped".to_owned(),
            images
                .iter()
                .map(|i| i.blobs_skipped)
                .sum::<u32>()
                .to_string(),
        ),
        (
            "BytesCopied".to_owned(),
            images
                .iter()
                .map(|i| i.bytes_copied)
                .sum::<u64>()
                .to_string(),
        ),
    ]);
    for image in images {
        vars.insert(format!("{}_digest", image.name), image.digest.to_string());
        vars.insert(format!("{}_uri", image.name), image.reference.clone());
    }
    vars
}

#[cfg(test)]
mod tests {
    use shipgate::registry::RepositorySettings;

    use super::*;

    fn image() -> Image {
        Image {
            name: "web".into(),
            repository: "orders/web".into(),
            tag: "1.4.2".into(),
            digest: Digest::sha256_of(b"m").to_string(),
        }
    }

    fn report(state: CopyState, copied: u32, skipped: u32) -> CopyReport {
        CopyReport {
            digest: Digest::sha256_of(b"m"),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            state,
            manifests: 1,
            manifests_pushed: u32::from(state == CopyState::Complete),
            blobs: 5,
            blobs_copied: copied,
            blobs_skipped: skipped,
            bytes_copied: u64::from(copied) * 100,
            bytes_skipped: u64::from(skipped) * 100,
            tag: Some("1.4.2".into()),
            tag_outcome: None,
            seconds: 1.0,
        }
    }

    fn repository(created: bool) -> TargetRepository {
        TargetRepository {
            name: "orders/web".into(),
            settings: RepositorySettings {
                tag_mutability: "IMMUTABLE".into(),
                scan_on_push: true,
                encryption: "AES256".into(),
            },
            created,
        }
    }

    #[test]
    fn a_resumed_image_counts_what_earlier_invocations_copied_as_copied() {
        let digest = Digest::sha256_of(b"m");
        let first = promoted_image(
            &image(),
            &digest,
            &repository(true),
            "r".into(),
            &report(CopyState::Paused, 2, 1),
            None,
        );
        assert!(!first.complete);
        assert!(first.repository_created);
        // The next invocation finds the 2 copied blobs (and the 1 that was there) in place.
        let second = promoted_image(
            &image(),
            &digest,
            &repository(false),
            "r".into(),
            &report(CopyState::Complete, 2, 3),
            Some(&first),
        );
        assert!(second.complete);
        assert_eq!((second.blobs_copied, second.blobs_skipped), (4, 1));
        assert_eq!((second.bytes_copied, second.bytes_skipped), (400, 100));
        assert!(second.repository_created);
        assert_eq!(second.seconds, 2.0);
        assert_eq!(second.tag_mutability, "IMMUTABLE");
    }

    #[test]
    fn the_summary_says_what_moved_and_what_was_already_there() {
        let digest = Digest::sha256_of(b"m");
        let copied = promoted_image(
            &image(),
            &digest,
            &repository(true),
            "r".into(),
            &report(CopyState::Complete, 4, 1),
            None,
        );
        assert_eq!(
            summary_line(
                "int",
                "stg",
                "333333333333.dkr.ecr.eu-west-1.amazonaws.com",
                &[copied]
            ),
            "int → stg: 1 image promoted to 333333333333.dkr.ecr.eu-west-1.amazonaws.com; 0.0 MiB \
             copied in 4 blob(s), 1 already there; 1 repository(ies) created with the source's \
             settings"
        );
        let again = promoted_image(
            &image(),
            &digest,
            &repository(false),
            "r".into(),
            &report(CopyState::Complete, 0, 5),
            None,
        );
        assert_eq!(
            summary_line("int", "stg", "reg", &[again.clone(), again]),
            "int → stg: 2 images promoted to reg; nothing to copy, 10 blob(s) already there"
        );
    }

    #[test]
    fn output_variables_give_each_image_by_digest() {
        let digest = Digest::sha256_of(b"m");
        let promoted = promoted_image(
            &image(),
            &digest,
            &repository(false),
            format!("333333333333.dkr.ecr.eu-west-1.amazonaws.com/orders/web@{digest}"),
            &report(CopyState::Complete, 4, 1),
            None,
        );
        let vars = output_variables("333333333333.dkr.ecr.eu-west-1.amazonaws.com", &[promoted]);
        assert_eq!(vars["web_digest"], digest.as_str());
        assert!(vars["web_uri"].ends_with(&format!("/orders/web@{digest}")));
        assert_eq!(vars["Images"], "1");
        assert_eq!(vars["BlobsCopied"], "4");
        assert_eq!(vars["BytesCopied"], "400");
        for name in vars.keys() {
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "@-_".contains(c)),
                "{name} is not a CodePipeline variable name"
            );
        }
    }
}
