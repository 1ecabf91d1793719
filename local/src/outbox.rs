//! The local outbox: the emails shipgate sent through SES, as moto recorded them.
//!
//! moto keeps the messages sent through SES; the local stack's moto patch lists them at
//! `GET /moto-api/shipgate/ses-messages` (moto's own `data.json` serialises every model of every
//! service: slow, and it fails once a Lambda function exists). Of an email with both parts moto
//! keeps only the HTML body, so the plain-text part is checked by unit tests of the email
//! renderers, not here.

use anyhow::Result;
use serde_json::Value;

/// One email as moto recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentEmail {
    pub from: String,
    pub to: Vec<String>,
    pub subject: String,
    /// The HTML body when the email had one, else the text body.
    pub body: String,
}

/// Every email sent through SES on the moto server at `moto_endpoint`, oldest first.
pub async fn sent_emails(moto_endpoint: &str) -> Result<Vec<SentEmail>> {
    let messages: Vec<Value> =
        reqwest::get(format!("{moto_endpoint}/moto-api/shipgate/ses-messages"))
            .await?
            .error_for_status()?
            .json()
            .await?;
    Ok(messages
        .iter()
        .map(|m| {
            let s = |k: &str| {
                m.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            SentEmail {
                from: s("source"),
                to: m
                    .pointer("/destinations/ToAddresses")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default(),
                subject: s("subject"),
                body: s("body"),
            }
        })
        .collect())
}

/// The `href` targets of an HTML body's links, entities decoded, in order.
pub fn links(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(at) = rest.find("href=\"") {
        rest = &rest[at + 6..];
        let Some(end) = rest.find('"') else { break };
        out.push(
            rest[..end]
                .replace("&quot;", "\"")
                .replace("&#39;", "'")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&amp;", "&"),
        );
        rest = &rest[end..];
    }
    out
}

/// The readable text of an HTML body: tags dropped, entities decoded, blank runs folded.
pub fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    let mut tag = String::new();
    // Inside <style> or <script>: nothing there is text.
    let mut skipping: Option<&str> = None;
    for c in html.chars() {
        if let Some(end) = skipping {
            if in_tag && c == '>' {
                in_tag = false;
                if tag.trim().eq_ignore_ascii_case(end) {
                    skipping = None;
                }
            } else if in_tag {
                tag.push(c);
            } else if c == '<' {
                in_tag = true;
                tag.clear();
            }
            continue;
        }
        match (in_tag, c) {
            (false, '<') => {
                in_tag = true;
                tag.clear();
            }
            (true, '>') => {
                in_tag = false;
                let closing = tag.starts_with('/');
                let name = tag
                    .trim_start_matches('/')
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_lowercase();
                if !closing && name == "style" {
                    skipping = Some("/style");
                    continue;
                }
                if !closing && name == "script" {
                    skipping = Some("/script");
                    continue;
                }
                if matches!(
                    name.as_str(),
                    "tr" | "p" | "h1" | "h2" | "h3" | "br" | "li" | "div" | "table"
                ) {
                    out.push('\n');
                } else if !closing && matches!(name.as_str(), "td" | "th") {
                    out.push_str("  ");
                }
            }
            (true, c) => tag.push(c),
            (false, c) => out.push(c),
        }
    }
    let decoded = out
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&middot;", "\u{b7}")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&");
    decoded
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    #[test]
    fn links_are_read_with_entities_decoded() {
        let links = super::links(
            r#"<a href="https://x/?t=a.b&amp;i=approve" style="a">A</a> <a href="mailto:z@y">z</a>"#,
        );
        assert_eq!(links, ["https://x/?t=a.b&i=approve", "mailto:z@y"]);
    }

    #[test]
    fn html_bodies_read_as_text() {
        let text = super::html_to_text(
            "<h2>Rejected</h2><table><tr><td>bad_digest</td><td>x &amp; y</td></tr></table>",
        );
        assert_eq!(text, "Rejected\n  bad_digest  x & y");
        let text = super::html_to_text(
            "<head><title>A &middot; b</title><style>p{color:red}</style></head><p>shown</p>",
        );
        assert_eq!(text, "A \u{b7} b\nshown");
    }
}
