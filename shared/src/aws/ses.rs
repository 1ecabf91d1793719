//! SES (v2): sending the emails people act on (rejected drops, approvals, rollbacks).

use aws_sdk_sesv2::Client;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};

use crate::error::{AwsError, aws_err};

/// One email, in HTML and plain text (mail clients and people who read text only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    pub from: String,
    pub to: Vec<String>,
    pub subject: String,
    pub html: String,
    pub text: String,
}

/// Sends `email`; returns SES's message id.
pub async fn send_email(ses: &Client, email: &Email) -> Result<String, AwsError> {
    let utf8 = |data: &str| {
        Content::builder()
            .data(data)
            .charset("UTF-8")
            .build()
            .map_err(|e| AwsError {
                service: "SESv2",
                operation: "SendEmail",
                code: None,
                message: e.to_string(),
                retryable: false,
                source: Box::new(e),
            })
    };
    let message = Message::builder()
        .subject(utf8(&email.subject)?)
        .body(
            Body::builder()
                .html(utf8(&email.html)?)
                .text(utf8(&email.text)?)
                .build(),
        )
        .build();
    let out = ses
        .send_email()
        .from_email_address(&email.from)
        .destination(
            Destination::builder()
                .set_to_addresses(Some(email.to.clone()))
                .build(),
        )
        .content(EmailContent::builder().simple(message).build())
        .send()
        .await
        .map_err(aws_err("SESv2", "SendEmail"))?;
    Ok(out.message_id().unwrap_or_default().to_owned())
}

/// Escapes text for HTML element content and attribute values.
pub fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn html_escape_neutralises_markup() {
        assert_eq!(
            super::html_escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
