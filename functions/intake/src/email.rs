//! The email an integrator gets when a drop is refused: every problem, what to do about it.

use shipgate::aws::ses::{Email, html_escape};
use shipgate::release::{Problem, ProblemCode};
use shipgate::store::ReleaseRecord;

use crate::IntakeConfig;

pub(crate) fn rejection(
    config: &IntakeConfig,
    record: &ReleaseRecord,
    problems: &[Problem],
    rejected_key: &str,
    to: &str,
) -> Email {
    let what = match (&record.application, &record.version) {
        (Some(app), Some(version)) => format!("{app} {version}"),
        _ => record.source.key.clone(),
    };
    let count = problems.len();
    let plural = if count == 1 { "problem" } else { "problems" };
    // The same release dropped again is not a mistake to fix: say what it is.
    let repeated = matches!(problems, [p] if p.code == ProblemCode::AlreadyReleased);
    let (subject, title, lead) = if repeated {
        (
            format!("[shipgate] release {what} already received: nothing new started"),
            format!("Release {what} already received"),
            "is a release shipgate already has: nothing new was started.",
        )
    } else {
        (
            format!("[shipgate] release {what} rejected: {count} {plural}"),
            format!("Release {what} rejected"),
            "was not accepted. Nothing was deployed. Fix every item below and upload the release \
             again.",
        )
    };

    let mut text = format!(
        "Your release drop s3://{}/{} (version {}) {lead}\n\n",
        record.source.bucket,
        record.source.key,
        record.source.version_id.as_deref().unwrap_or("-"),
    );
    for (i, p) in problems.iter().enumerate() {
        let at = p
            .path
            .as_deref()
            .map(|p| format!(" [{p}]"))
            .unwrap_or_default();
        text.push_str(&format!(
            "{}. {}{at}: {}\n",
            i + 1,
            p.code.as_str(),
            p.message
        ));
    }
    text.push_str(&format!(
        "\nRelease id: {}\nThe drop was kept at s3://{}/{rejected_key} with a machine-readable report.json beside it.\n",
        record.release_id, record.source.bucket
    ));

    let mut rows = String::new();
    for p in problems {
        rows.push_str(&format!(
            "<tr><td style=\"padding:6px 10px;border-bottom:1px solid #ddd;font-family:monospace;white-space:nowrap\">{}</td>\
             <td style=\"padding:6px 10px;border-bottom:1px solid #ddd;font-family:monospace\">{}</td>\
             <td style=\"padding:6px 10px;border-bottom:1px solid #ddd\">{}</td></tr>",
            html_escape(p.code.as_str()),
            html_escape(p.path.as_deref().unwrap_or("")),
            html_escape(&p.message),
        ));
    }
    let html = format!(
        "<!DOCTYPE html><html><body style=\"font-family:Arial,Helvetica,sans-serif;color:#222\">\
         <h2 style=\"color:#b00020\">{title}</h2>\
         <p>Your drop <code>s3://{bucket}/{key}</code> {lead} ({count} {plural})</p>\
         <table style=\"border-collapse:collapse\"><tr style=\"background:#f3f3f3\">\
         <th style=\"text-align:left;padding:6px 10px\">Code</th><th style=\"text-align:left;padding:6px 10px\">Where</th>\
         <th style=\"text-align:left;padding:6px 10px\">Problem</th></tr>{rows}</table>\
         <p style=\"color:#555\">Release id {id}. The drop was kept at <code>s3://{bucket}/{rejected}</code> with a report.json beside it.</p>\
         </body></html>",
        title = html_escape(&title),
        lead = html_escape(lead),
        bucket = html_escape(&record.source.bucket),
        key = html_escape(&record.source.key),
        id = html_escape(&record.release_id),
        rejected = html_escape(rejected_key),
    );
    Email {
        from: config.mail_from.clone(),
        to: vec![to.to_owned()],
        subject,
        html,
        text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shipgate::release::ProblemCode;

    fn record() -> ReleaseRecord {
        let mut record = shipgate::testing::received_release("rel-1", "drops");
        record.application = Some("orders".into());
        record.version = Some("1.4.0".into());
        record
    }

    #[test]
    fn the_rejection_lists_every_problem_in_text_and_escaped_html() {
        let config = IntakeConfig::for_tests();
        let problems = vec![
            Problem {
                code: ProblemCode::PathTraversal,
                message: "entry \"../x\" escapes the archive root".into(),
                path: Some("../x".into()),
            },
            Problem {
                code: ProblemCode::InvalidDigest,
                message: "digest <script>alert(1)</script> is not sha256".into(),
                path: Some("images[0].digest".into()),
            },
        ];
        let mail = rejection(
            &config,
            &record(),
            &problems,
            "rejected/rel-1/orders.zip",
            "dev@example.com",
        );
        assert_eq!(
            mail.subject,
            "[shipgate] release orders 1.4.0 rejected: 2 problems"
        );
        assert_eq!(mail.to, vec!["dev@example.com".to_owned()]);
        assert!(
            mail.text
                .contains("1. path_traversal [../x]: entry \"../x\" escapes the archive root")
        );
        assert!(mail.text.contains("2. invalid_digest [images[0].digest]"));
        assert!(mail.text.contains("s3://drops/rejected/rel-1/orders.zip"));
        assert!(mail.html.contains("&lt;script&gt;"), "escaped");
        assert!(!mail.html.contains("<script>"), "no markup from input");
        assert!(
            !mail.html.contains("src=") && !mail.html.contains("http"),
            "no remote content"
        );
    }
}
