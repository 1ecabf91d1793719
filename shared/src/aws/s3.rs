//! S3: object facts, ranged reads of a release drop, copies and moves that lose nothing.

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::error::{AwsError, aws_err};
use crate::release::{RangeSource, SourceError};

/// One version of one object.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ObjectVersion {
    pub bucket: String,
    pub key: String,
    /// `None` for buckets without versioning.
    pub version_id: Option<String>,
}

impl ObjectVersion {
    /// The version a write to `bucket`/`key` created, as S3 answered (`None`: no versioning).
    fn written(bucket: &str, key: &str, version_id: Option<&str>) -> Self {
        Self {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            version_id: version_id.map(str::to_owned),
        }
    }
}

/// What S3 says about an object version that exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectFacts {
    pub size: u64,
    pub etag: Option<String>,
    pub version_id: Option<String>,
    /// `LastModified`, epoch seconds (S3 records it to the second).
    pub last_modified: Option<i64>,
}

/// `HeadObject`; `Ok(None)` when the object (or that version) does not exist or is a delete marker.
pub async fn head_object(
    s3: &Client,
    object: &ObjectVersion,
) -> Result<Option<ObjectFacts>, AwsError> {
    let result = s3
        .head_object()
        .bucket(&object.bucket)
        .key(&object.key)
        .set_version_id(object.version_id.clone())
        .send()
        .await;
    match result {
        Ok(out) => Ok(Some(ObjectFacts {
            size: out.content_length().unwrap_or(0).max(0) as u64,
            etag: out.e_tag().map(str::to_owned),
            version_id: out.version_id().map(str::to_owned),
            last_modified: out.last_modified().map(|t| t.secs()),
        })),
        Err(err) => {
            let err = AwsError::from_sdk("S3", "HeadObject", err);
            // HEAD has no body: a missing key or version shows only as a 404 (NotFound), and a
            // delete marker as 405 when addressed by version.
            let status = http_status(&err);
            if err.is_code("NotFound")
                || err.is_code("NoSuchKey")
                || err.is_code("NoSuchVersion")
                || matches!(status, Some(404) | Some(405))
            {
                Ok(None)
            } else {
                Err(err)
            }
        }
    }
}

fn http_status(err: &AwsError) -> Option<u16> {
    let sdk = err.source.downcast_ref::<aws_sdk_s3::error::SdkError<
        aws_sdk_s3::operation::head_object::HeadObjectError,
        aws_smithy_runtime_api::client::orchestrator::HttpResponse,
    >>()?;
    sdk.raw_response().map(|r| r.status().as_u16())
}

/// Reads a drop by ranged `GetObject`s of one pinned version, so validation fetches only the
/// zip's directory and the entries it needs.
#[derive(Debug, Clone)]
pub struct S3RangeSource {
    s3: Client,
    object: ObjectVersion,
    size: u64,
}

impl S3RangeSource {
    pub fn new(s3: Client, object: ObjectVersion, size: u64) -> Self {
        Self { s3, object, size }
    }
}

impl RangeSource for S3RangeSource {
    fn len(&self) -> u64 {
        self.size
    }

    async fn read(&self, offset: u64, len: u64) -> Result<Bytes, SourceError> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        let last = offset
            .checked_add(len - 1)
            .ok_or_else(|| SourceError::other(RangeOverflow))?;
        let out = self
            .s3
            .get_object()
            .bucket(&self.object.bucket)
            .key(&self.object.key)
            .set_version_id(self.object.version_id.clone())
            .range(format!("bytes={offset}-{last}"))
            .send()
            .await
            .map_err(|e| SourceError::other(AwsError::from_sdk("S3", "GetObject", e)))?;
        let body = out
            .body
            .collect()
            .await
            .map_err(SourceError::other)?
            .into_bytes();
        Ok(body)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("byte range beyond the end of a 64-bit offset")]
struct RangeOverflow;

/// Characters escaped in a `CopySource` key: everything but unreserved characters and `/`.
const COPY_SOURCE_KEY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The `CopySource` value naming one object version.
pub fn copy_source(object: &ObjectVersion) -> String {
    let key = utf8_percent_encode(&object.key, COPY_SOURCE_KEY);
    match &object.version_id {
        Some(v) => format!("{}/{key}?versionId={v}", object.bucket),
        None => format!("{}/{key}", object.bucket),
    }
}

/// Server-side copy of one version to `bucket`/`key`; returns the new object's version.
pub async fn copy_object(
    s3: &Client,
    from: &ObjectVersion,
    bucket: &str,
    key: &str,
) -> Result<ObjectVersion, AwsError> {
    let out = s3
        .copy_object()
        .copy_source(copy_source(from))
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(aws_err("S3", "CopyObject"))?;
    Ok(ObjectVersion::written(bucket, key, out.version_id()))
}

/// Moves an object aside: copy first, then delete the original key. In a versioned bucket the
/// delete only adds a delete marker, so the original bytes stay recoverable as well as copied.
pub async fn move_object(
    s3: &Client,
    from: &ObjectVersion,
    bucket: &str,
    key: &str,
) -> Result<ObjectVersion, AwsError> {
    let copied = copy_object(s3, from, bucket, key).await?;
    s3.delete_object()
        .bucket(&from.bucket)
        .key(&from.key)
        .send()
        .await
        .map_err(aws_err("S3", "DeleteObject"))?;
    Ok(copied)
}

/// Writes a JSON document (reports next to rejected drops).
pub async fn put_json(
    s3: &Client,
    bucket: &str,
    key: &str,
    body: &serde_json::Value,
) -> Result<ObjectVersion, AwsError> {
    let bytes = serde_json::to_vec_pretty(body).unwrap_or_default();
    put_bytes(s3, bucket, key, "application/json", bytes).await
}

/// Writes `body` as `key` (`content_type`) and says where it went.
pub async fn put_bytes(
    s3: &Client,
    bucket: &str,
    key: &str,
    content_type: &str,
    body: Vec<u8>,
) -> Result<ObjectVersion, AwsError> {
    let out = s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .content_type(content_type)
        .body(ByteStream::from(body))
        .send()
        .await
        .map_err(aws_err("S3", "PutObject"))?;
    Ok(ObjectVersion::written(bucket, key, out.version_id()))
}

/// The virtual-hosted-style HTTPS URL of an object, as services that fetch objects on a
/// caller's behalf take it (CloudFormation's `TemplateURL` must start with `https://`:
/// <https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_CreateChangeSet.html>).
/// Key bytes other than unreserved characters and `/` are percent-encoded.
pub fn https_url(bucket: &str, region: &str, key: &str) -> String {
    let mut path = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            path.push(char::from(b));
        } else {
            path.push_str(&format!("%{b:02X}"));
        }
    }
    format!("https://{bucket}.s3.{region}.amazonaws.com/{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_urls_are_virtual_hosted_and_escape_the_key() {
        assert_eq!(
            https_url(
                "shipgate-artifacts-1-eu-west-1",
                "eu-west-1",
                "templates/r 1/a+b.yaml"
            ),
            "https://shipgate-artifacts-1-eu-west-1.s3.eu-west-1.amazonaws.com/templates/r%201/a%2Bb.yaml"
        );
    }

    #[test]
    fn copy_source_escapes_keys_and_names_the_version() {
        let object = ObjectVersion {
            bucket: "artifacts".into(),
            key: "incoming/my release+1 é.zip".into(),
            version_id: Some("v1".into()),
        };
        assert_eq!(
            copy_source(&object),
            "artifacts/incoming/my%20release%2B1%20%C3%A9.zip?versionId=v1"
        );
    }
}
