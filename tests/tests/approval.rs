//! Approval gates by email, against the local stack: a release reaches the int gate, each
//! approver gets an email with links of their own, a link opens the page, and only the page's
//! button decides. Forged, expired, replayed and superseded links decide nothing, and a mail
//! scanner fetching a link approves nothing.

use anyhow::{Context, Result};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::Mac;
use reqwest::StatusCode;
use serde_json::{Value, json};
use shipgate::links::{LinkClaims, sign_link};
use shipgate::store::{Gate, GateState, ReleaseRecord, Verdict};
use shipgate_tests::browser::Browser;
use shipgate_tests::story::{STEP, Story, form_field};
use shipgate_tests::support::wait_for;

const STAGE: &str = "Int";
const ACTION: &str = "ApproveInt";
const LEAD: &str = "int-lead@shipgate.local";
const OPS: &str = "int-ops@shipgate.local";

/// A release of `orders` waiting at the int gate, its approvers mailed.
async fn at_the_gate(name: &str) -> Result<(Story, ReleaseRecord, Gate)> {
    let story = Story::start(name).await?;
    let release = story.drop_release("1.4.0").await?;
    let gate = story.wait_gate(&release, STAGE, ACTION).await?;
    Ok((story, release, gate))
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a plain HTTP client")
}

async fn get(url: &str) -> Result<(StatusCode, String)> {
    let response = http().get(url).send().await?;
    Ok((response.status(), response.text().await?))
}

/// The page's origin (`http://127.0.0.1:PORT`) and its URL without the query.
fn page_of(link: &str) -> (String, String) {
    let base = link.split('?').next().unwrap_or(link).to_owned();
    let origin = base.trim_end_matches('/').to_owned();
    (origin, base)
}

/// POSTs the page's form as a browser on the page would (same origin).
async fn post_form(link: &str, fields: &[(&str, &str)]) -> Result<(StatusCode, String)> {
    let (origin, base) = page_of(link);
    post_with(
        &base,
        fields,
        &[("origin", &origin), ("sec-fetch-site", "same-origin")],
    )
    .await
}

async fn post_with(
    url: &str,
    fields: &[(&str, &str)],
    headers: &[(&str, &str)],
) -> Result<(StatusCode, String)> {
    let mut request = http().post(url).form(fields);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await?;
    Ok((response.status(), response.text().await?))
}

/// Opens the link as a person does and returns the tokens the page's form carries.
async fn open_page(link: &str) -> Result<(String, String)> {
    let (status, html) = get(link).await?;
    assert_eq!(status, StatusCode::OK, "the page opens: {html}");
    let t = form_field(&html, "t").context("the page's form carries the link token")?;
    let f = form_field(&html, "f").context("the page's form carries its form token")?;
    Ok((t, f))
}

/// A person opens the link and presses `decision` on the page, with `comment`.
async fn decide_on_page(link: &str, decision: &str, comment: &str) -> Result<(StatusCode, String)> {
    let (t, f) = open_page(link).await?;
    post_form(
        link,
        &[
            ("t", &t),
            ("f", &f),
            ("decision", decision),
            ("comment", comment),
        ],
    )
    .await
}

/// The gate as shipgate records it now.
async fn gate_now(story: &Story, gate: &Gate) -> Result<Gate> {
    story
        .store
        .get_gate(&gate.execution_id, STAGE, ACTION)
        .await?
        .context("the gate is recorded")
}

/// The approval is still waiting in CodePipeline and in shipgate.
async fn still_pending(story: &Story, gate: &Gate) -> Result<()> {
    assert_eq!(
        story.action_status(STAGE, ACTION).await?.as_deref(),
        Some("InProgress"),
        "the approval still waits in CodePipeline"
    );
    let now = gate_now(story, gate).await?;
    assert_eq!(now.state, GateState::Pending, "the gate is still pending");
    assert!(now.decision.is_none());
    Ok(())
}

/// Waits for the approval to succeed in CodePipeline; the gate as shipgate recorded it.
async fn approved(story: &Story, gate: &Gate) -> Result<Gate> {
    wait_for("the int approval to succeed", STEP, || async {
        Ok(
            (story.action_status(STAGE, ACTION).await?.as_deref() == Some("Succeeded"))
                .then_some(()),
        )
    })
    .await?;
    let decided = gate_now(story, gate).await?;
    assert_eq!(decided.state, GateState::Approved);
    Ok(decided)
}

/// The token inside a link.
/// CodePipeline's own token of int's waiting approval.
async fn waiting_approval_token(story: &Story) -> Result<String> {
    Ok(story
        .stage(STAGE)
        .await?
        .context("int stage")?
        .action_states()
        .iter()
        .find(|a| a.action_name() == Some(ACTION))
        .and_then(|a| a.latest_execution())
        .and_then(|e| e.token())
        .context("the waiting approval's token")?
        .to_owned())
}

fn token_of(link: &str) -> String {
    link.split("t=")
        .nth(1)
        .and_then(|rest| rest.split('&').next())
        .unwrap_or_default()
        .to_owned()
}

fn claims_of(token: &str) -> LinkClaims {
    let payload = token.split('.').next().unwrap_or_default();
    let bytes = URL_SAFE_NO_PAD.decode(payload).expect("base64url payload");
    serde_json::from_slice(&bytes).expect("link claims")
}

async fn signing_key(story: &Story) -> Result<Vec<u8>> {
    let secret = story
        .stack
        .provisioned
        .refs
        .get("LinkSigningKey")
        .cloned()
        .context("the template's signing key")?;
    let keys = shipgate::aws::secrets::fetch_link_keys(
        &aws_sdk_secretsmanager::Client::new(&story.stack.sdk),
        &secret,
    )
    .await?;
    Ok(keys.current)
}

fn link_with(link: &str, token: &str) -> String {
    let (_, base) = page_of(link);
    format!("{base}?t={token}&i=approve")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_at_the_gate_mails_each_approver_links_of_their_own() -> Result<()> {
    let (story, release, gate) = at_the_gate("gate-mail").await?;

    assert_eq!(gate.state, GateState::Pending);
    assert_eq!(gate.release_id, release.release_id);
    assert_eq!(gate.environment, "int");
    let approvers: Vec<&str> = gate.links.iter().map(|l| l.approver.as_str()).collect();
    assert_eq!(approvers, [LEAD, OPS]);

    // CodePipeline's own token for this approval must appear in no email.
    let pipeline_token = waiting_approval_token(&story).await?;

    let mut tokens = Vec::new();
    for approver in [LEAD, OPS] {
        let emails = story.emails_to(approver, "1.4.0").await?;
        assert_eq!(emails.len(), 1, "one email to {approver}");
        let email = &emails[0];
        assert!(email.subject.contains("orders"), "{}", email.subject);
        assert!(email.subject.contains("int"), "{}", email.subject);
        assert!(!email.body.contains(&pipeline_token));
        assert!(!email.body.contains("<script"));
        let approve = story.approval_link(approver, "1.4.0", "approve").await?;
        let reject = story.approval_link(approver, "1.4.0", "reject").await?;
        assert_eq!(token_of(&approve), token_of(&reject));
        let claims = claims_of(&token_of(&approve));
        assert_eq!(
            claims.approver, approver,
            "the link is bound to its approver"
        );
        assert_eq!(claims.execution_id, gate.execution_id);
        assert_eq!(claims.expires_at, gate.approval_expires_at);
        tokens.push(token_of(&approve));
    }
    assert_ne!(
        tokens[0], tokens[1],
        "each approver has a link of their own"
    );

    // SNS delivers at least once: the same notification again mails nobody twice.
    let message = json!({
        "region": shipgate_local::accounts::REGION,
        "consoleLink": "https://console.aws.amazon.com/codepipeline/home",
        "approval": {
            "pipelineName": story.pipeline.name,
            "stageName": STAGE,
            "actionName": ACTION,
            "token": pipeline_token,
            "expires": "2099-01-01T00:00Z",
            "customData": format!(
                "orders 1.4.0 waits for approval in int. release={} execution={} environment=int",
                release.release_id, gate.execution_id
            ),
        }
    });
    let mut event: Value = serde_json::from_str(include_str!(
        "../../functions/mailer/tests/fixtures/sns-event.json"
    ))?;
    event["Records"][0]["Sns"]["Message"] = message.to_string().into();
    let report = story
        .stack
        .functions
        .invoke_once("MailerFunction", event)
        .await
        .map_err(|e| anyhow::anyhow!("mailer failed: {e}"))?;
    assert_eq!(report["records"][0]["outcome"], "duplicate", "{report}");
    for approver in [LEAD, OPS] {
        assert_eq!(story.emails_to(approver, "1.4.0").await?.len(), 1);
    }
    still_pending(&story, &gate).await
}

/// CodePipeline's approval notification (its documented JSON, in AWS's sample SNS event) for
/// `stage`/`action` of the story's pipeline, with `custom_data`.
fn approval_notification(
    story: &Story,
    stage: &str,
    action: &str,
    token: &str,
    custom_data: &str,
) -> Result<Value> {
    let message = json!({
        "region": shipgate_local::accounts::REGION,
        "consoleLink": "https://console.aws.amazon.com/codepipeline/home",
        "approval": {
            "pipelineName": story.pipeline.name,
            "stageName": stage,
            "actionName": action,
            "token": token,
            "expires": "2099-01-01T00:00Z",
            "externalEntityLink": null,
            "approvalReviewLink": "https://console.aws.amazon.com/codepipeline/home",
            "customData": custom_data,
        }
    });
    let mut event: Value = serde_json::from_str(include_str!(
        "../../functions/mailer/tests/fixtures/sns-event.json"
    ))?;
    event["Records"][0]["Sns"]["Message"] = message.to_string().into();
    Ok(event)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_whose_custom_data_names_another_environment_mails_nobody() -> Result<()> {
    let (story, release, gate) = at_the_gate("gate-authority").await?;
    const STG_LEAD: &str = "stg-lead@shipgate.local";
    let words = |environment: &str| {
        format!(
            "orders 1.4.0 waits for approval. release={} execution={} environment={environment}",
            release.release_id, gate.execution_id
        )
    };
    let functions = &story.stack.functions;
    let mail = |event: Value| async move {
        functions
            .invoke_once("MailerFunction", event)
            .await
            .map_err(|e| anyhow::anyhow!("mailer failed: {e}"))
    };

    // stg's approval, its CustomData edited to say int: int's approvers are not asked to
    // decide stg's gate, nor is anyone else.
    let forged = approval_notification(&story, "Stg", "ApproveStg", "a-token", &words("int"))?;
    let report = mail(forged).await?;
    assert_eq!(report["records"][0]["outcome"], "refused", "{report}");
    let reason = report["records"][0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("environment=int") && reason.contains("gates stg"),
        "{reason}"
    );
    // int's gate, its CustomData saying stg: stg's approvers are not asked either.
    let pipeline_token = waiting_approval_token(&story).await?;
    let forged = approval_notification(&story, STAGE, ACTION, &pipeline_token, &words("stg"))?;
    let report = mail(forged).await?;
    assert_eq!(report["records"][0]["outcome"], "refused", "{report}");

    for approver in [LEAD, OPS] {
        assert_eq!(
            story.emails_to(approver, "1.4.0").await?.len(),
            1,
            "{approver} has only the email of int's own gate"
        );
    }
    assert!(story.emails_to(STG_LEAD, "1.4.0").await?.is_empty());
    assert!(
        story
            .store
            .get_gate(&gate.execution_id, "Stg", "ApproveStg")
            .await?
            .is_none(),
        "no gate opened for stg"
    );
    assert_eq!(gate_now(&story, &gate).await?.environment, "int");

    // The same int notification with CustomData that agrees is int's gate, already mailed.
    let agreeing = approval_notification(&story, STAGE, ACTION, &pipeline_token, &words("int"))?;
    let report = mail(agreeing).await?;
    assert_eq!(report["records"][0]["outcome"], "duplicate", "{report}");
    still_pending(&story, &gate).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approving_on_the_page_moves_the_pipeline_on_and_closes_every_link() -> Result<()> {
    let (story, _release, gate) = at_the_gate("gate-approve").await?;
    let link = story.approval_link(LEAD, "1.4.0", "approve").await?;

    let (status, page) = get(&link).await?;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("orders") && page.contains("1.4.0"));
    assert!(page.contains("id=\"approve\"") && page.contains("id=\"reject\""));
    still_pending(&story, &gate).await?;

    let (t, f) = open_page(&link).await?;
    let (status, done) = post_form(
        &link,
        &[
            ("t", &t),
            ("f", &f),
            ("decision", "approve"),
            ("comment", "int looks good"),
        ],
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{done}");

    let decided = approved(&story, &gate).await?;
    let decision = decided.decision.context("the decision is recorded")?;
    assert_eq!(decision.verdict, Verdict::Approve);
    assert_eq!(decision.approver, LEAD);
    assert_eq!(decision.comment.as_deref(), Some("int looks good"));
    assert_eq!(decision.link, gate.links[0].nonce_key, "which link decided");
    // The decision is listed with the release.
    let gates = story.store.list_release_gates(&gate.release_id).await?;
    assert_eq!(gates.len(), 1);
    assert_eq!(gates[0].state, GateState::Approved);

    // The same link again (a replay), and the other approver's link: already decided.
    let (status, again) = post_form(&link, &[("t", &t), ("f", &f), ("decision", "reject")]).await?;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
    assert!(again.contains("Already decided"), "{again}");
    let other = story.approval_link(OPS, "1.4.0", "reject").await?;
    let (status, page) = get(&other).await?;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(page.contains(LEAD), "the page says who decided: {page}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejecting_stops_the_execution_with_the_approvers_comment() -> Result<()> {
    let (story, release, gate) = at_the_gate("gate-reject").await?;
    let link = story.approval_link(OPS, "1.4.0", "reject").await?;
    let (status, body) = decide_on_page(&link, "reject", "the orders migration is missing").await?;
    assert_eq!(status, StatusCode::OK, "{body}");

    let execution = release.execution_id.clone().context("execution")?;
    story.wait_execution(&execution, &["Failed"]).await?;
    let stage = story.stage(STAGE).await?.context("int stage")?;
    let summary = stage
        .action_states()
        .iter()
        .find(|a| a.action_name() == Some(ACTION))
        .and_then(|a| a.latest_execution())
        .and_then(|e| e.summary())
        .unwrap_or_default()
        .to_owned();
    assert!(
        summary.contains("Rejected by int-ops@shipgate.local"),
        "{summary}"
    );
    assert!(
        summary.contains("the orders migration is missing"),
        "{summary}"
    );
    let decided = gate_now(&story, &gate).await?;
    assert_eq!(decided.state, GateState::Rejected);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scanner_fetching_the_link_approves_nothing() -> Result<()> {
    let (story, _release, gate) = at_the_gate("gate-scanner").await?;
    let link = story.approval_link(LEAD, "1.4.0", "approve").await?;
    // What Safe Links, Mimecast or a chat preview does: GETs and HEADs, some following
    // everything, never a POST of the form.
    for _ in 0..3 {
        let (status, _) = get(&link).await?;
        assert_eq!(status, StatusCode::OK);
    }
    let head = http().head(&link).send().await?;
    assert_eq!(head.status(), StatusCode::OK);
    let (status, _) = get(&link.replace("i=approve", "i=reject")).await?;
    assert_eq!(status, StatusCode::OK);
    // Every fetch has been answered, so the page is done with it: nothing was decided.
    still_pending(&story, &gate).await?;

    // Nor was the link used up: the approver who opens it next decides with it, and the
    // decision is that approver's, from that link.
    let (status, body) = decide_on_page(&link, "approve", "after the scanner").await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let decision = approved(&story, &gate)
        .await?
        .decision
        .context("the decision is recorded")?;
    assert_eq!(
        (decision.approver.as_str(), decision.comment.as_deref()),
        (LEAD, Some("after the scanner"))
    );
    assert_eq!(decision.link, gate.links[0].nonce_key);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_malformed_links_are_refused_and_decide_nothing() -> Result<()> {
    let (story, _release, gate) = at_the_gate("gate-forged").await?;
    let link = story.approval_link(LEAD, "1.4.0", "approve").await?;
    let token = token_of(&link);
    let claims = claims_of(&token);
    let key = signing_key(&story).await?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let (_, base) = page_of(&link);

    let flip = |s: &str, at: usize| {
        let mut bytes = s.as_bytes().to_vec();
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        String::from_utf8(bytes).expect("ascii")
    };
    let signed = |c: LinkClaims| sign_link(&c, &key);
    // A payload signed the way links are, missing fields (the format is documented in
    // shipgate::links: HMAC over the context and the encoded payload).
    let signed_raw = |payload: &Value| {
        let encoded = URL_SAFE_NO_PAD.encode(payload.to_string());
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).expect("any key length");
        mac.update(b"shipgate-approval-link-v1.");
        mac.update(encoded.as_bytes());
        format!(
            "{encoded}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    };

    let cases: Vec<(&str, String, StatusCode)> = vec![
        (
            "wrong signature (another key)",
            sign_link(&claims, b"not-the-key-not-the-key-not-the-key!"),
            StatusCode::FORBIDDEN,
        ),
        (
            "flipped byte in the payload",
            flip(&token, 5),
            StatusCode::FORBIDDEN,
        ),
        (
            "flipped byte in the signature",
            flip(&token, token.len() - 3),
            StatusCode::FORBIDDEN,
        ),
        (
            "other approver (payload edited)",
            {
                let forged = LinkClaims {
                    approver: "mallory@evil.example".into(),
                    ..claims.clone()
                };
                let payload = sign_link(&forged, b"x")
                    .split('.')
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                format!("{payload}.{}", token.split('.').nth(1).unwrap_or_default())
            },
            StatusCode::FORBIDDEN,
        ),
        (
            "other approver (validly signed, never issued)",
            signed(LinkClaims {
                approver: "mallory@evil.example".into(),
                ..claims.clone()
            }),
            StatusCode::FORBIDDEN,
        ),
        (
            "other execution",
            signed(LinkClaims {
                execution_id: "00000000-0000-0000-0000-000000000000".into(),
                ..claims.clone()
            }),
            StatusCode::NOT_FOUND,
        ),
        (
            "expired",
            signed(LinkClaims {
                expires_at: now - 60,
                ..claims.clone()
            }),
            StatusCode::GONE,
        ),
        (
            "missing fields",
            signed_raw(&json!({"e": claims.execution_id, "s": STAGE, "a": ACTION})),
            StatusCode::BAD_REQUEST,
        ),
        (
            "no signature",
            token.split('.').next().unwrap_or_default().to_owned(),
            StatusCode::BAD_REQUEST,
        ),
        ("oversized", "A".repeat(5000), StatusCode::BAD_REQUEST),
        ("empty", String::new(), StatusCode::BAD_REQUEST),
    ];
    for (what, forged, expected) in &cases {
        let url = link_with(&link, forged);
        let (status, page) = get(&url).await?;
        assert_eq!(status, *expected, "GET, {what}: {page}");
        assert!(page.contains("Nothing was decided"), "GET, {what}: {page}");
        // The same token posted with a form token for the real link decides nothing either.
        let (_, f) = open_page(&link).await?;
        let (status, _) =
            post_form(&url, &[("t", forged), ("f", &f), ("decision", "approve")]).await?;
        assert_eq!(status, *expected, "POST, {what}");
    }

    // The real link, posted the wrong way.
    let (t, f) = open_page(&link).await?;
    let (origin, _) = page_of(&link);
    let wrong_ways: Vec<(&str, reqwest::RequestBuilder, StatusCode)> = vec![
        (
            "no form token",
            http()
                .post(&base)
                .header("origin", &origin)
                .form(&[("t", t.as_str()), ("decision", "approve")]),
            StatusCode::FORBIDDEN,
        ),
        (
            "another link's form token",
            http().post(&base).form(&[
                ("t", t.as_str()),
                (
                    "f",
                    &shipgate::links::form_token(
                        &LinkClaims {
                            nonce: "other".into(),
                            ..claims.clone()
                        },
                        &key,
                    ),
                ),
                ("decision", "approve"),
            ]),
            StatusCode::FORBIDDEN,
        ),
        (
            "from another site (Origin)",
            http()
                .post(&base)
                .header("origin", "https://evil.example")
                .form(&[
                    ("t", t.as_str()),
                    ("f", f.as_str()),
                    ("decision", "approve"),
                ]),
            StatusCode::FORBIDDEN,
        ),
        (
            "from another site (Sec-Fetch-Site)",
            http()
                .post(&base)
                .header("sec-fetch-site", "cross-site")
                .form(&[
                    ("t", t.as_str()),
                    ("f", f.as_str()),
                    ("decision", "approve"),
                ]),
            StatusCode::FORBIDDEN,
        ),
        (
            "not a form",
            http()
                .post(&base)
                .json(&json!({"t": t, "f": f, "decision": "approve"})),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "no decision",
            http()
                .post(&base)
                .form(&[("t", t.as_str()), ("f", f.as_str()), ("decision", "maybe")]),
            StatusCode::BAD_REQUEST,
        ),
        (
            "oversized form",
            http().post(&base).form(&[
                ("t", t.as_str()),
                ("f", f.as_str()),
                ("decision", "approve"),
                ("comment", &"x".repeat(20_000)),
            ]),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            "comment too long",
            http().post(&base).form(&[
                ("t", t.as_str()),
                ("f", f.as_str()),
                ("decision", "approve"),
                ("comment", &"x".repeat(1500)),
            ]),
            StatusCode::BAD_REQUEST,
        ),
        ("PUT", http().put(&link), StatusCode::METHOD_NOT_ALLOWED),
        (
            "DELETE",
            http().delete(&link),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
    ];
    for (what, request, expected) in wrong_ways {
        let response = request.send().await?;
        assert_eq!(response.status(), expected, "{what}");
        let headers = response.headers().clone();
        assert_eq!(headers["x-frame-options"], "DENY", "{what}");
        assert!(
            headers["cache-control"].to_str()?.contains("no-store"),
            "{what}"
        );
        assert!(
            headers["content-security-policy"]
                .to_str()?
                .contains("default-src 'none'"),
            "{what}"
        );
    }

    still_pending(&story, &gate).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_replaced_by_a_newer_one_cannot_be_approved() -> Result<()> {
    let (story, _release, gate) = at_the_gate("gate-superseded").await?;
    let link = story.approval_link(LEAD, "1.4.0", "approve").await?;
    let (t, f) = open_page(&link).await?;

    // A fix arrives while 1.4.0 waits: it waits in front of the locked int stage.
    let newer = story.drop_release("1.4.1").await?;
    let newer_execution = newer.execution_id.clone().context("execution")?;
    story
        .wait_execution(&newer_execution, &["InProgress"])
        .await?;

    let (status, page) = get(&link).await?;
    assert_eq!(status, StatusCode::CONFLICT, "{page}");
    assert!(page.contains("Superseded"), "{page}");
    assert!(page.contains(&newer_execution), "{page}");
    let (status, _) = post_form(&link, &[("t", &t), ("f", &f), ("decision", "approve")]).await?;
    assert_eq!(status, StatusCode::CONFLICT);
    still_pending(&story, &gate).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_approves_in_a_real_browser_and_a_second_browser_sees_it_decided() -> Result<()> {
    let (story, _release, gate) = at_the_gate("gate-browser").await?;
    let link = story.approval_link(LEAD, "1.4.0", "approve").await?;

    // What a scanner does first: a plain GET. Nothing moves.
    let (status, _) = get(&link).await?;
    assert_eq!(status, StatusCode::OK);
    still_pending(&story, &gate).await?;

    let browser = Browser::start().await?;
    let person = browser.session().await?;
    person.goto(&link).await?;
    let title = person.title().await?;
    assert!(
        title.contains("orders") && title.contains("1.4.0"),
        "{title}"
    );
    let summary = person.text_of("#summary").await?;
    assert!(!summary.is_empty());
    let shot = shipgate_local::process::project_root().join("target/screenshots/approval-page.png");
    person.screenshot(&shot).await?;
    eprintln!("approval page screenshot: {}", shot.display());
    person
        .fill("textarea[name=comment]", "approved from the browser")
        .await?;
    person.click("#approve").await?;
    let confirmation = person.page_source().await?;
    assert!(confirmation.contains("Approved"), "{confirmation}");
    person
        .screenshot(shot.with_file_name("approval-decided.png"))
        .await?;
    person.close().await?;

    let decided = approved(&story, &gate).await?;
    assert_eq!(
        decided.decision.and_then(|d| d.comment).as_deref(),
        Some("approved from the browser")
    );

    let later = browser.session().await?;
    later.goto(&link).await?;
    let notice = later.text_of("#notice").await?;
    assert!(notice.contains("already approved"), "{notice}");
    later.close().await?;
    Ok(())
}
