//! The local outbox: the emails shipgate sent through SES, as moto recorded them.
//!
//! moto keeps sent messages in `GET /moto-api/data.json` under `ses.Message`. Of an email with
//! both parts it keeps only the HTML body, so the plain-text part is checked by unit tests of
//! the email renderers, not here.

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
    let data: Value = reqwest::get(format!("{moto_endpoint}/moto-api/data.json"))
        .await?
        .error_for_status()?
        .json()
        .await?;
    let messages = data
        .pointer("/ses/Message")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
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

/// The readable text of an HTML body: tags dropped, entities decoded, blank runs folded.
pub fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    let mut tag = String::new();
    for c in html.chars() {
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
    fn html_bodies_read_as_text() {
        let text = super::html_to_text(
            "<h2>Rejected</h2><table><tr><td>bad_digest</td><td>x &amp; y</td></tr></table>",
        );
        assert_eq!(text, "Rejected\n  bad_digest  x & y");
    }
}
