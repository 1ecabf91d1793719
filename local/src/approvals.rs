//! `shipgate-local approval` and `follow`: what an approver sees, and doing what they do.
//!
//! `approval` shows a gate from the table (the change summary the mailer sent, the gate's state,
//! who got a link and who decided) and finds the links in the local outbox. `follow` opens a link
//! as a person does: a GET of the page, then, when asked, a POST of the page's own form with the
//! headers a browser sends from that page. The end-to-end tests and the demo go through the same
//! page the browser does.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use aws_config::SdkConfig;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use shipgate::config::Env;
use shipgate::links::LinkClaims;
use shipgate::store::{Gate, ReleaseRecord, ReleaseState, Store};

use crate::outbox::{html_to_text, links, sent_emails};

/// Which gate.
#[derive(Debug, Clone)]
pub struct GateQuery {
    /// The release; the newest started one when `None`.
    pub release: Option<String>,
    pub stage: String,
    pub action: String,
    /// How long to wait for the gate to be open and mailed (zero: not at all).
    pub wait: Duration,
}

async fn find_gate(
    sdk: &SdkConfig,
    store: &Store,
    query: &GateQuery,
) -> Result<(ReleaseRecord, Gate)> {
    let deadline = Instant::now() + query.wait;
    let cp = aws_sdk_codepipeline::Client::new(sdk);
    // Pipeline → whether it has the gate's stage and action.
    let mut has_gate: std::collections::BTreeMap<String, bool> = Default::default();
    loop {
        // The release named, else the newest started release whose pipeline has this stage
        // and action: with several applications in flight, each on its own pipeline, their
        // pipelines' stages tell their gates apart.
        let release = match &query.release {
            Some(id) => store.get_release(id).await?,
            None => {
                let mut found = None;
                for release in store.list_releases(50).await? {
                    if release.state != ReleaseState::Started {
                        continue;
                    }
                    let Some(pipeline) = release.pipeline.clone() else {
                        continue;
                    };
                    if !has_gate.contains_key(&pipeline) {
                        let declared = cp
                            .get_pipeline()
                            .name(&pipeline)
                            .send()
                            .await
                            .ok()
                            .and_then(|out| out.pipeline)
                            .is_some_and(|p| {
                                p.stages().iter().any(|s| {
                                    s.name() == query.stage
                                        && s.actions().iter().any(|a| a.name() == query.action)
                                })
                            });
                        has_gate.insert(pipeline.clone(), declared);
                    }
                    if has_gate[&pipeline] {
                        found = Some(release);
                        break;
                    }
                }
                found
            }
        };
        if let Some(release) = release
            && let Some(execution) = &release.execution_id
            && let Some(gate) = store
                .get_gate(execution, &query.stage, &query.action)
                .await?
            && gate.links.iter().all(|l| l.message_id.is_some())
        {
            return Ok((release, gate));
        }
        if Instant::now() >= deadline {
            bail!(
                "no {}/{} approval mailed for {} yet",
                query.stage,
                query.action,
                query.release.as_deref().unwrap_or("a started release")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn store_from(sdk: &SdkConfig, env: &Env) -> Result<Store> {
    Ok(Store::new(
        aws_sdk_dynamodb::Client::new(sdk),
        env.required("SHIPGATE_TABLE")?,
    ))
}

/// The gate as text: release, change summary per stack, state, links and decision.
pub async fn describe(sdk: &SdkConfig, env: &Env, query: &GateQuery) -> Result<String> {
    let store = store_from(sdk, env)?;
    let (release, gate) = find_gate(sdk, &store, query).await?;
    let mut out = String::new();
    writeln!(
        out,
        "{} {} (release {}) at {}/{} in {}: {}",
        release.application.as_deref().unwrap_or("?"),
        release.version.as_deref().unwrap_or("?"),
        release.release_id,
        gate.stage,
        gate.action,
        gate.environment,
        gate.state.as_str()
    )?;
    let view = shipgate::approval::ApprovalView::for_gate(&release, &gate, Vec::new());
    let stacks = match &view.promotion {
        Some(promotion) => {
            writeln!(
                out,
                "  approval to promote from {} to {}: {} image(s) to copy by digest",
                promotion.from,
                gate.environment,
                promotion.images.len()
            )?;
            for image in &promotion.images {
                writeln!(out, "    {}", image.line())?;
            }
            Vec::new()
        }
        None => {
            store
                .list_stack_changes(&release.release_id, &gate.environment)
                .await?
        }
    };
    if stacks.is_empty() && view.promotion.is_none() {
        writeln!(out, "  no change set recorded")?;
    }
    for stack in &stacks {
        writeln!(
            out,
            "  change set {} on stack {} (account {}{}):",
            stack.change_set_name,
            stack.stack_name,
            stack.account_id,
            if stack.creates_stack {
                ", new stack"
            } else {
                ""
            }
        )?;
        for line in stack.summary.to_text().lines() {
            writeln!(out, "    {line}")?;
        }
    }
    let emails = match env.optional("SHIPGATE_LOCAL_MOTO") {
        Some(moto) => sent_emails(moto).await?,
        None => Vec::new(),
    };
    for link in &gate.links {
        writeln!(out, "  approver {}:", link.approver)?;
        for intent in ["approve", "reject"] {
            if let Some(url) = mailed_link(&emails, &gate, &link.approver, intent) {
                writeln!(out, "    {intent}: {url}")?;
            }
        }
    }
    if let Some(d) = &gate.decision {
        writeln!(
            out,
            "  decision: {} by {} at {} (link {}){}{}",
            d.verdict.as_str(),
            d.approver,
            d.decided_at,
            d.link,
            d.comment
                .as_deref()
                .map(|c| format!(", comment: {c}"))
                .unwrap_or_default(),
            d.refused
                .as_deref()
                .map(|r| format!(", refused: {r}"))
                .unwrap_or_default()
        )?;
    }
    Ok(out)
}

/// The link mailed to `approver` for this gate.
pub async fn link_for(
    sdk: &SdkConfig,
    env: &Env,
    query: &GateQuery,
    approver: &str,
    intent: &str,
) -> Result<String> {
    let store = store_from(sdk, env)?;
    let (_, gate) = find_gate(sdk, &store, query).await?;
    let emails = sent_emails(env.required("SHIPGATE_LOCAL_MOTO")?.as_str()).await?;
    mailed_link(&emails, &gate, approver, intent)
        .with_context(|| format!("no {intent} link to {approver} in the outbox for this gate"))
}

/// The `intent` link of the email that carries this gate's link for `approver` (matched by the
/// link's nonce, so older emails to the same person do not count).
fn mailed_link(
    emails: &[crate::outbox::SentEmail],
    gate: &Gate,
    approver: &str,
    intent: &str,
) -> Option<String> {
    let issued = gate.links.iter().find(|l| l.approver == approver)?;
    emails
        .iter()
        .filter(|e| e.to.iter().any(|t| t == approver))
        .flat_map(|e| links(&e.body))
        .filter(|url| url.ends_with(&format!("i={intent}")))
        .find(|url| claims_in(url).is_some_and(|c| c.nonce == issued.nonce))
}

/// The claims a link's token carries (read without checking: this is for finding links).
pub fn claims_in(url: &str) -> Option<LinkClaims> {
    let token = url.split("t=").nth(1)?.split('&').next()?;
    let payload = URL_SAFE_NO_PAD.decode(token.split('.').next()?).ok()?;
    serde_json::from_slice(&payload).ok()
}

/// The value of a form field of a page (`<input … name="f" value="…">`).
pub fn form_field(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\"");
    let at = html.find(&marker)?;
    let start = html[..at].rfind('<')?;
    let end = at + html[at..].find('>')?;
    let element = &html[start..end];
    let value_at = element.find("value=\"")? + 7;
    let value_end = value_at + element[value_at..].find('"')?;
    Some(
        element[value_at..value_end]
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

/// What following a link did.
#[derive(Debug)]
pub struct Followed {
    /// Every step answered 200.
    pub ok: bool,
    pub report: String,
}

/// Opens `link` (GET) and, with `decide`, presses that button with `comment`.
pub async fn follow(link: &str, decide: Option<&str>, comment: Option<&str>) -> Result<Followed> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let mut report = String::new();
    let page = http.get(link).send().await?;
    let status = page.status();
    let html = page.text().await?;
    writeln!(report, "GET the link: HTTP {}", status.as_u16())?;
    for line in html_to_text(&html).lines().take(12) {
        writeln!(report, "  | {line}")?;
    }
    let Some(decision) = decide else {
        return Ok(Followed {
            ok: status.is_success(),
            report,
        });
    };
    if !status.is_success() {
        writeln!(report, "the page offers no decision")?;
        return Ok(Followed { ok: false, report });
    }
    let t = form_field(&html, "t").context("the page has no link token in its form")?;
    let f = form_field(&html, "f").context("the page has no form token")?;
    let base = link.split('?').next().unwrap_or(link);
    let origin = base.trim_end_matches('/');
    let response = http
        .post(base)
        .header("origin", origin)
        .header("sec-fetch-site", "same-origin")
        .form(&[
            ("t", t.as_str()),
            ("f", f.as_str()),
            ("decision", decision),
            ("comment", comment.unwrap_or("")),
        ])
        .send()
        .await?;
    let status = response.status();
    let html = response.text().await?;
    writeln!(
        report,
        "POST the page's {decision} button: HTTP {}",
        status.as_u16()
    )?;
    for line in html_to_text(&html).lines().take(8) {
        writeln!(report, "  | {line}")?;
    }
    Ok(Followed {
        ok: status.is_success(),
        report,
    })
}
