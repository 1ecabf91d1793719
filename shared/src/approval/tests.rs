//! What approvers read: the email and the page, for a real image update, for a gate with
//! nothing to change, and for hostile input.

use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::*;
use crate::aws::ses::html_escape;
use crate::changes::{DescribeChangeSetOutput, summarise_change_set};
use crate::store::{ApprovalToken, GateState};

/// 2026-12-03 14:05:30 UTC.
const EXPIRES: i64 = 1_796_306_730;
const APPROVER: &str = "cloud-ops@client.example";
const APPROVE_URL: &str = "https://abc123.lambda-url.eu-west-1.on.aws/?t=eyJl.c2ln&i=approve";
const REJECT_URL: &str = "https://abc123.lambda-url.eu-west-1.on.aws/?t=eyJl.c2ln&i=reject";

/// `DescribeChangeSet` output, in CloudFormation's documented shape, for an image update of an
/// ECS service: the task definition is replaced (new revision), the service follows it, a
/// policy is added, an alarm removed, a queue added.
const IMAGE_UPDATE: &str =
    include_str!("../../tests/fixtures/describe-change-set-image-update.json");

fn stack(name: &str, json: Option<&str>) -> StackChanges {
    let summary = match json {
        Some(json) => {
            let output: DescribeChangeSetOutput =
                serde_json::from_str(json).expect("the documented shape parses");
            summarise_change_set(&output.resource_changes())
        }
        None => summarise_change_set(&[]),
    };
    StackChanges {
        release_id: "rel-01JDQ4".to_owned(),
        environment: "int".to_owned(),
        execution_id: "0f3c9d2e-6b1a-4c7e-9d55-3f1e2a7b8c90".to_owned(),
        template_path: format!("templates/{name}.yaml"),
        stack_name: name.to_owned(),
        account_id: "222222222222".to_owned(),
        change_set_name: "shipgate-rel-01JDQ4".to_owned(),
        change_set_id: None,
        creates_stack: false,
        outcome: if summary.is_empty() {
            ChangeSetOutcome::NoChanges
        } else {
            ChangeSetOutcome::Ready
        },
        summary,
        created_at: "2026-11-26T10:04:00Z".to_owned(),
    }
}

fn view() -> ApprovalView {
    ApprovalView {
        application: "orders".to_owned(),
        version: "1.4.0".to_owned(),
        message: "Adds refunds.\nFixes the totals rounding.".to_owned(),
        integrator_name: Some("Jane Doe".to_owned()),
        integrator_email: Some("jane@integrator.example".to_owned()),
        uploaded_by: Some("AWS:AIDAEXAMPLEID:jane".to_owned()),
        received_at: "2026-11-26T10:00:12Z".to_owned(),
        release_id: "rel-01JDQ4".to_owned(),
        environment: "int".to_owned(),
        pipeline: "shipgate-orders".to_owned(),
        execution_id: "0f3c9d2e-6b1a-4c7e-9d55-3f1e2a7b8c90".to_owned(),
        stage: "int".to_owned(),
        action: "Approve".to_owned(),
        approval_expires_at: EXPIRES,
        promotion: None,
        stacks: vec![
            stack("orders-int-app", Some(IMAGE_UPDATE)),
            stack("orders-int-data", None),
        ],
    }
}

fn hostile_view() -> ApprovalView {
    let mut view = view();
    view.application = "or\"ders' <b>".to_owned();
    view.version = "1.4.0\"><script>alert(1)</script>".to_owned();
    view.message = "<script>alert('x')</script> \"quoted\" \
        <img src=\"http://evil.example/x.png\" onerror=\"alert(1)\"> \
        <a href=\"javascript:alert(1)\">click</a>"
        .to_owned();
    view.integrator_name = Some("<b onmouseover=alert(1)>Eve</b>".to_owned());
    view.uploaded_by = Some("AWS:\"><script>x</script>".to_owned());
    view.pipeline = "p' onfocus='alert(1)".to_owned();
    view.stacks[0].stack_name = "orders<iframe src=//evil>".to_owned();
    view.stacks[0].summary.entries[0].logical_id = "Task\"Def<script>".to_owned();
    view
}

fn form(intent: Option<Verdict>) -> PageForm {
    PageForm {
        approver: APPROVER.to_owned(),
        link_token: "eyJlIjoiMGYzYyJ9.c2lnbmF0dXJl".to_owned(),
        form_token: "f0rm-t0ken_\"quoted\"".to_owned(),
        intent,
    }
}

/// A start tag as a browser would read it, from markup whose attribute values are always
/// double-quoted (as everything here writes them).
#[derive(Debug)]
struct Tag {
    name: String,
    attrs: Vec<(String, String)>,
}

impl Tag {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The word of `html` at `from`, lower-cased, up to white space or one of `ends`; and where it
/// ends.
fn word_at(html: &str, from: usize, ends: &[char]) -> (String, usize) {
    let end = html[from..]
        .find(|c: char| c.is_whitespace() || ends.contains(&c))
        .map_or(html.len(), |e| from + e);
    (html[from..end].to_ascii_lowercase(), end)
}

fn start_tags(html: &str) -> Vec<Tag> {
    let bytes = html.as_bytes();
    let mut tags = Vec::new();
    let mut i = 0;
    while let Some(off) = html[i..].find('<') {
        i += off + 1;
        if html[i..].starts_with('/') || html[i..].starts_with('!') {
            continue;
        }
        let name;
        (name, i) = word_at(html, i, &['>', '/']);
        let mut attrs = Vec::new();
        loop {
            while i < bytes.len() && (bytes[i] as char).is_whitespace() {
                i += 1;
            }
            if i >= bytes.len() || bytes[i] == b'>' {
                i += 1;
                break;
            }
            let attr;
            (attr, i) = word_at(html, i, &['=', '>']);
            let mut value = String::new();
            if bytes.get(i) == Some(&b'=') {
                assert_eq!(bytes.get(i + 1), Some(&b'"'), "unquoted value of {attr}");
                let close = html[i + 2..].find('"').expect("closed value") + i + 2;
                value = html[i + 2..close].to_owned();
                i = close + 1;
            }
            attrs.push((attr, value));
        }
        if name == "style" {
            i += html[i..].find("</style>").expect("closed style");
        }
        tags.push(Tag { name, attrs });
    }
    tags
}

/// Nothing runs, nothing loads: no script or embedding element, no event handler, no
/// `javascript:` or remote resource, links only to http(s).
fn assert_inert(html: &str) {
    assert!(!html.to_ascii_lowercase().contains("<script"), "script tag");
    for tag in start_tags(html) {
        assert!(
            ![
                "script", "img", "iframe", "object", "embed", "link", "base", "frame", "svg",
                "video", "audio", "source"
            ]
            .contains(&tag.name.as_str()),
            "element <{}> rendered",
            tag.name
        );
        for (name, value) in &tag.attrs {
            assert!(!name.starts_with("on"), "handler {name} on <{}>", tag.name);
            assert!(
                name != "src" && name != "srcset",
                "{name} on <{}>",
                tag.name
            );
            let lower = value.to_ascii_lowercase();
            assert!(!lower.contains("javascript:"), "{name}={value}");
            assert!(!lower.contains("url("), "{name}={value}");
            if name == "href" {
                assert!(
                    lower.starts_with("https://") || lower == "#",
                    "href={value} on <{}>",
                    tag.name
                );
            }
        }
    }
}

fn tag_with_id<'a>(tags: &'a [Tag], id: &str) -> &'a Tag {
    tags.iter()
        .find(|t| t.attr("id") == Some(id))
        .unwrap_or_else(|| panic!("no element with id {id}"))
}

/// Release rel-01JDQ4, orders 1.4.0, as intake recorded it, with the integrator's `message`.
fn orders_release(message: &str) -> ReleaseRecord {
    let mut release = crate::testing::received_release("rel-01JDQ4", "drops");
    release.received_at = "2026-11-26T10:00:12Z".to_owned();
    release.application = Some("orders".to_owned());
    release.version = Some("1.4.0".to_owned());
    release.message = Some(message.to_owned());
    release
}

/// The pending approval of rel-01JDQ4 at `stage`/`action` of `execution_id`, for
/// `environment`, opened at 10:05.
fn pending_gate(execution_id: &str, stage: &str, action: &str, environment: &str) -> Gate {
    let token = ApprovalToken::new("codepipeline-token");
    Gate {
        pipeline: "shipgate-orders".to_owned(),
        execution_id: execution_id.to_owned(),
        stage: stage.to_owned(),
        action: action.to_owned(),
        environment: environment.to_owned(),
        release_id: "rel-01JDQ4".to_owned(),
        round: token.round(),
        approval_token: token,
        approval_expires_at: EXPIRES,
        state: GateState::Pending,
        links: Vec::new(),
        decision: None,
        opened_at: "2026-11-26T10:05:00Z".to_owned(),
        promote_from: None,
        updated_at: "2026-11-26T10:05:00Z".to_owned(),
    }
}

#[test]
fn the_view_of_a_gate_comes_from_its_release_and_gate() {
    let mut release = orders_release("Adds refunds.\nFixes the totals rounding.");
    release.uploaded_by = Some("AWS:AIDAEXAMPLEID:jane".to_owned());
    release.manifest = Some(serde_json::json!({
        "integrator": {"name": "Jane Doe", "email": "jane@integrator.example"}
    }));
    let gate = pending_gate(
        "0f3c9d2e-6b1a-4c7e-9d55-3f1e2a7b8c90",
        "int",
        "Approve",
        "int",
    );

    let stacks = view().stacks;
    assert_eq!(ApprovalView::for_gate(&release, &gate, stacks), view());
}

// --- the email ---------------------------------------------------------------------------

#[test]
fn the_subject_names_app_version_env_and_the_headline() {
    let mail = approval_email(&view(), APPROVER, APPROVE_URL, REJECT_URL);
    assert_eq!(
        mail.subject,
        "Approve orders 1.4.0 for int — 1 replaced, 1 removed, 2 added, 1 modified: Adds refunds."
    );
}

#[test]
fn a_long_message_is_cut_in_the_subject_never_the_app_version_or_env() {
    let mut view = view();
    view.message = "Refunds: ".to_owned() + &"a very long explanation ".repeat(20);
    let subject = approval_email(&view, APPROVER, APPROVE_URL, REJECT_URL).subject;
    assert!(subject.chars().count() <= 120, "{subject}");
    assert!(subject.starts_with("Approve orders 1.4.0 for int — 1 replaced"));
    assert!(subject.ends_with('…'));

    view.application = "orders-".repeat(30);
    view.message = "line one\r\nline two".to_owned();
    let subject = approval_email(&view, APPROVER, APPROVE_URL, REJECT_URL).subject;
    assert!(subject.contains(&view.application), "the name stays whole");
    assert!(subject.ends_with("1.4.0 for int"), "{subject}");
    assert!(!subject.contains(['\r', '\n']), "one header line");
}

#[test]
fn the_email_shows_links_expiry_approver_message_and_provenance() {
    let mail = approval_email(&view(), APPROVER, APPROVE_URL, REJECT_URL);

    let tags = start_tags(&mail.html);
    let hrefs: Vec<&str> = tags.iter().filter_map(|t| t.attr("href")).collect();
    assert_eq!(
        hrefs,
        [html_escape(APPROVE_URL), html_escape(REJECT_URL)],
        "two links, escaped in their attributes"
    );
    for needle in [
        ">Review and approve</a>",
        ">Review and reject</a>",
        "Opening the link decides nothing; you decide on the page.",
        "This link expires <b style=\"color:#1f2328\">2026-12-03 14:05 UTC</b>, with the approval.",
        "Sent to cloud-ops@client.example; the links are yours alone",
        "Adds refunds.<br>Fixes the totals rounding.",
        "Message from Jane Doe &lt;jane@integrator.example&gt;",
        "AWS:AIDAEXAMPLEID:jane",
        "2026-11-26 10:00 UTC",
        "rel-01JDQ4",
        "shipgate-orders",
        "0f3c9d2e-6b1a-4c7e-9d55-3f1e2a7b8c90",
    ] {
        assert!(mail.html.contains(needle), "html lacks {needle}");
    }
    assert!(!mail.html.contains("<form"), "no form in an email");

    let text = &mail.text;
    assert!(
        text.contains(&format!("Review and approve:\n{APPROVE_URL}\n")),
        "{text}"
    );
    assert!(text.contains(&format!("Review and reject:\n{REJECT_URL}\n")));
    assert!(text.contains("This link expires 2026-12-03 14:05 UTC, with the approval."));
    assert!(text.contains("Opening the link decides nothing; you decide on the page."));
    assert!(text.contains("Sent to cloud-ops@client.example; the links are yours alone"));
    assert!(text.contains("Message from Jane Doe <jane@integrator.example>:\n    Adds refunds.\n    Fixes the totals rounding.\n"));
    assert!(
        text.contains("Dropped by:       AWS:AIDAEXAMPLEID:jane"),
        "{text}"
    );
    assert!(text.contains("Received:         2026-11-26 10:00 UTC"));
}

#[test]
fn replacements_and_removals_come_before_additions_in_html_and_text() {
    let mail = approval_email(&view(), APPROVER, APPROVE_URL, REJECT_URL);

    let html = &mail.html;
    let stacks = html.find("Changes, stack by stack").expect("stack section");
    let attention = html
        .find("Needs your attention")
        .expect("attention section");
    assert!(attention < stacks, "attention comes first");
    let at = |needle: &str| html[stacks..].find(needle).expect(needle);
    assert!(at(">REPLACE<") < at(">REMOVE<"));
    assert!(at(">REMOVE<") < at(">ADD<"));
    assert!(at(">ADD<") < at(">MODIFY<"));
    // Replacement and removal rows are highlighted red, the IAM addition amber.
    assert!(html.contains("<td bgcolor=\"#fdecea\" style=\"background-color:#fdecea;padding:6px 8px;border-bottom:1px solid #d0d7de;vertical-align:top;white-space:nowrap;font-weight:bold;color:#b42318\">REPLACE</td>"));
    assert!(html.contains("bgcolor=\"#fff4e5\" style=\"background-color:#fff4e5;padding:6px 8px;border-bottom:1px solid #d0d7de;vertical-align:top;white-space:nowrap;font-weight:bold;color:#9a6700\">ADD</td>"));
    assert!(html.contains("recreated by ContainerDefinitions (always, via ImageDigest)"));
    assert!(html.contains("<b>Image changes:</b> <span style=\"font-family:Consolas,Menlo,'Courier New',monospace\">TaskDefinition</span>"));

    let text = &mail.text;
    let stacks = text
        .find("Changes, stack by stack:")
        .expect("stack section");
    let at = |needle: &str| text[stacks..].find(needle).expect(needle);
    assert!(
        at(
            "REPLACE TaskDefinition (AWS::ECS::TaskDefinition): recreated by ContainerDefinitions (always, via ImageDigest) [image]"
        ) < at("REMOVE LegacyAlarm (AWS::CloudWatch::Alarm): deleted")
    );
    assert!(at("REMOVE LegacyAlarm") < at("ADD DeadLetterQueue (AWS::SQS::Queue): new resource"));
    assert!(at("ADD TaskRolePolicy (AWS::IAM::Policy): new resource [IAM]") < at("MODIFY Service"));
    assert!(text.contains("Needs your attention:\n  orders-int-app: REPLACE TaskDefinition"));
    assert!(text.contains(
        "  Deletions: LegacyAlarm\n  IAM changes: TaskRolePolicy\n  Image changes: TaskDefinition\n"
    ));
}

#[test]
fn a_stack_with_nothing_to_change_says_no_changes() {
    let mut view = view();
    view.stacks.remove(0);
    let mail = approval_email(&view, APPROVER, APPROVE_URL, REJECT_URL);

    assert_eq!(
        mail.subject,
        "Approve orders 1.4.0 for int — no changes: Adds refunds."
    );
    let said = "no changes: CloudFormation found nothing to change in this stack";
    assert!(mail.html.contains(said));
    assert!(mail.text.contains(&format!(
        "orders-int-data (account 222222222222, change set shipgate-rel-01JDQ4)\n  {said}\n"
    )));
    assert!(!mail.html.contains("Needs your attention"));
    assert!(!mail.text.contains("Needs your attention"));

    // The mixed gate says it of its empty stack too.
    let mail = approval_email(&super::tests::view(), APPROVER, APPROVE_URL, REJECT_URL);
    assert!(mail.html.contains(said) && mail.text.contains(said));
}

#[test]
fn a_gate_without_change_sets_says_so_rather_than_no_changes() {
    let mut view = view();
    view.stacks.clear();
    let mail = approval_email(&view, APPROVER, APPROVE_URL, REJECT_URL);
    assert!(mail.subject.contains("— no change set recorded"));
    assert!(mail.html.contains("<b>No change set recorded</b>"));
    assert!(mail.text.contains("  no change set recorded.\n"));
    let page = approval_page(&view, &form(None));
    assert!(page.contains("<strong>No change set recorded</strong>"));
}

#[test]
fn an_approval_to_promote_shows_the_images_by_digest_not_change_sets() {
    let digest = format!("sha256:{}", "ab".repeat(32));
    let mut release = orders_release("Adds refunds.");
    release.manifest = Some(serde_json::json!({
        "images": [{"name": "web", "repository": "orders/web", "tag": "1.4.0", "digest": digest}]
    }));
    let gate = Gate {
        promote_from: Some("int".to_owned()),
        ..pending_gate("0f3c9d2e", "PromoteToStg", "ApprovePromotion", "stg")
    };
    let view = ApprovalView::for_gate(&release, &gate, Vec::new());
    let promotion = view.promotion.clone().expect("a promotion view");
    assert_eq!(promotion.from, "int");
    assert_eq!(promotion.images.len(), 1);
    assert_eq!(promotion.images[0].digest, digest);

    let mail = approval_email(&view, APPROVER, APPROVE_URL, REJECT_URL);
    assert_eq!(
        mail.subject,
        "Approve promoting orders 1.4.0 from int to stg — 1 image to copy by digest from int's \
         registry to stg's: Adds refunds."
    );
    assert!(
        mail.text
            .contains("Images to promote (by digest, from int's registry to stg's):")
    );
    assert!(
        mail.text
            .contains(&format!("  web  orders/web:1.4.0  {digest}\n"))
    );
    assert!(!mail.text.contains("no change set recorded"));
    assert!(mail.html.contains(&digest));
    assert!(!mail.html.contains("No change set recorded"));
    let page = approval_page(&view, &form(None));
    assert!(page.contains("<h2>Images to promote</h2>"));
    assert!(page.contains(&digest));
    assert!(!page.contains("No change set recorded"));
    assert_inert(&page);
}

#[test]
fn the_email_escapes_hostile_input_everywhere() {
    let hostile_url = "https://x.example/?t=a\"><script>alert(1)</script>&i=\" onclick=\"alert(1)";
    let mail = approval_email(&hostile_view(), "a\"@x<y>", hostile_url, REJECT_URL);

    assert_inert(&mail.html);
    let tags = start_tags(&mail.html);
    let hrefs: Vec<&str> = tags.iter().filter_map(|t| t.attr("href")).collect();
    assert_eq!(
        hrefs[0],
        html_escape(hostile_url),
        "the URL stays one attribute"
    );
    for escaped in [
        "or&quot;ders&#39; &lt;b&gt; 1.4.0&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt; for int",
        "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &quot;quoted&quot;",
        "&lt;b onmouseover=alert(1)&gt;Eve&lt;/b&gt;",
        "AWS:&quot;&gt;&lt;script&gt;x&lt;/script&gt;",
        "p&#39; onfocus=&#39;alert(1)",
        "orders&lt;iframe src=//evil&gt;",
        "Task&quot;Def&lt;script&gt;",
        "Sent to a&quot;@x&lt;y&gt;;",
    ] {
        assert!(mail.html.contains(escaped), "html lacks {escaped}");
    }
    assert!(!mail.subject.contains(['\n', '\r']));
}

#[test]
fn a_link_that_is_not_http_is_rendered_inert() {
    let mail = approval_email(&view(), APPROVER, "javascript:alert(1)", REJECT_URL);
    assert_inert(&mail.html);
    assert!(mail.html.contains("<a href=\"#\""));
}

#[test]
fn the_email_has_no_script_handler_or_remote_content() {
    let mail = approval_email(&view(), APPROVER, APPROVE_URL, REJECT_URL);
    assert_inert(&mail.html);
    let handler = regex_lite::Regex::new(r"(?i)\son[a-z]+\s*=").expect("regex");
    assert!(!handler.is_match(&mail.html));
    for absent in [
        "javascript:",
        "http://",
        "<img",
        "<style",
        "<link",
        "url(",
        "@import",
    ] {
        assert!(!mail.html.contains(absent), "{absent}");
    }
}

// --- the page ----------------------------------------------------------------------------

#[test]
fn the_content_security_policy_allows_exactly_the_page_style() {
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(PAGE_STYLE));
    assert_eq!(
        content_security_policy(),
        format!(
            "default-src 'none'; style-src 'sha256-{hash}'; img-src 'none'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'"
        )
    );
    assert!(!PAGE_STYLE.contains('<'), "written into the document as is");

    let pages = [
        approval_page(&view(), &form(Some(Verdict::Approve))),
        approval_page(&hostile_view(), &form(None)),
        notice_page(&Notice {
            title: "Expired".to_owned(),
            message: "This approval expired.".to_owned(),
            details: Vec::new(),
        }),
        decided_page(
            &view(),
            Verdict::Reject,
            APPROVER,
            None,
            "2026-11-26T11:00:00Z",
        ),
    ];
    for page in pages {
        // The hashed text is the style element's whole content, and nothing else styles.
        assert_eq!(page.matches("<style").count(), 1);
        assert!(page.contains(&format!("<style>{PAGE_STYLE}</style>")));
        assert!(
            start_tags(&page).iter().all(|t| t.attr("style").is_none()),
            "a style attribute would be blocked by the policy"
        );
    }
}

#[test]
fn the_page_has_the_form_tokens_and_both_buttons() {
    let page = approval_page(&view(), &form(None));
    let tags = start_tags(&page);

    let form_tag = tag_with_id(&tags, "decision-form");
    assert_eq!(form_tag.name, "form");
    assert_eq!(form_tag.attr("method"), Some("post"));
    assert_eq!(form_tag.attr("action"), Some(""));
    assert_eq!(tags.iter().filter(|t| t.name == "form").count(), 1);

    let hidden = |name: &str| {
        tags.iter()
            .find(|t| t.name == "input" && t.attr("name") == Some(name))
            .map(|t| (t.attr("type"), t.attr("value")))
    };
    assert_eq!(
        hidden("t"),
        Some((Some("hidden"), Some("eyJlIjoiMGYzYyJ9.c2lnbmF0dXJl")))
    );
    assert_eq!(
        hidden("f"),
        Some((Some("hidden"), Some("f0rm-t0ken_&quot;quoted&quot;")))
    );
    let comment = tags.iter().find(|t| t.name == "textarea").expect("comment");
    assert_eq!(comment.attr("name"), Some("comment"));
    assert_eq!(comment.attr("maxlength"), Some("1000"));

    for (id, value) in [("approve", "approve"), ("reject", "reject")] {
        let button = tag_with_id(&tags, id);
        assert_eq!(button.name, "button");
        assert_eq!(button.attr("type"), Some("submit"));
        assert_eq!(button.attr("name"), Some("decision"));
        assert_eq!(button.attr("value"), Some(value));
        assert!(!button.attr("class").unwrap_or("").contains("primary"));
    }
    assert!(page.contains(">Approve</button>") && page.contains(">Reject</button>"));
    assert_eq!(
        tag_with_id(&tags, "summary").name,
        "section",
        "the summary is addressable"
    );
}

#[test]
fn the_intent_marks_its_button_primary_and_keeps_both() {
    for (intent, primary, other) in [
        (Verdict::Approve, "approve", "reject"),
        (Verdict::Reject, "reject", "approve"),
    ] {
        let page = approval_page(&view(), &form(Some(intent)));
        let tags = start_tags(&page);
        let class = |id| {
            tag_with_id(&tags, id)
                .attr("class")
                .unwrap_or("")
                .to_owned()
        };
        assert!(
            class(primary).split(' ').any(|c| c == "primary"),
            "{intent:?}"
        );
        assert!(
            !class(other).split(' ').any(|c| c == "primary"),
            "{intent:?}"
        );
        assert!(page.contains(&format!(
            "You followed the {primary} link. Nothing is decided yet"
        )));
    }
}

#[test]
fn the_page_shows_what_the_email_shows() {
    let page = approval_page(&view(), &form(None));
    for needle in [
        "<title>Approve orders 1.4.0 for int &middot; shipgate</title>",
        "<meta name=\"referrer\" content=\"same-origin\">",
        "<h1>orders 1.4.0 for int</h1>",
        "Changes: 1 replaced, 1 removed, 2 added, 1 modified",
        "For <strong>cloud-ops@client.example</strong>: this link is yours alone",
        "It expires <strong>2026-12-03 14:05 UTC</strong>, with the approval.",
        "Adds refunds.<br>Fixes the totals rounding.",
        "AWS:AIDAEXAMPLEID:jane",
        "2026-11-26 10:00 UTC",
        "rel-01JDQ4",
        "no changes: CloudFormation found nothing to change in this stack",
        "<tr class=\"danger\"><td class=\"label\">REPLACE</td>",
        "<tr class=\"danger\"><td class=\"label\">REMOVE</td>",
        "<tr class=\"caution\"><td class=\"label\">ADD</td><td><strong class=\"mono\">TaskRolePolicy</strong>",
        "<tr class=\"plain\"><td class=\"label\">ADD</td><td><strong class=\"mono\">DeadLetterQueue</strong>",
    ] {
        assert!(page.contains(needle), "page lacks {needle}");
    }
    let summary = &page[page.find("id=\"summary\"").expect("summary")..];
    let stacks = summary.find("Changes, stack by stack").expect("stacks");
    let at = |needle: &str| summary[stacks..].find(needle).expect(needle);
    assert!(at(">REPLACE<") < at(">REMOVE<") && at(">REMOVE<") < at(">ADD<"));
    assert!(at(">ADD<") < at(">MODIFY<"));
}

#[test]
fn the_page_escapes_hostile_input_and_runs_nothing() {
    let mut form = form(Some(Verdict::Approve));
    form.approver = "x\"@y<script>".to_owned();
    form.link_token = "t\"><script>alert(1)</script>".to_owned();
    let page = approval_page(&hostile_view(), &form);

    assert_inert(&page);
    let tags = start_tags(&page);
    assert!(tags.iter().all(|t| t.attr("href").is_none()), "no links");
    assert_eq!(
        tags.iter()
            .find(|t| t.attr("name") == Some("t"))
            .and_then(|t| t.attr("value")),
        Some("t&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;")
    );
    for escaped in [
        "<title>Approve or&quot;ders&#39; &lt;b&gt; 1.4.0&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt; for int &middot; shipgate</title>",
        "&lt;img src=&quot;http://evil.example/x.png&quot; onerror=&quot;alert(1)&quot;&gt;",
        "<strong>x&quot;@y&lt;script&gt;</strong>",
        "Task&quot;Def&lt;script&gt;",
    ] {
        assert!(page.contains(escaped), "page lacks {escaped}");
    }
}

#[test]
fn a_benign_page_has_no_handler_script_or_remote_url_at_all() {
    let page = approval_page(&view(), &form(Some(Verdict::Reject)));
    let handler = regex_lite::Regex::new(r"(?i)\son[a-z]+\s*=").expect("regex");
    assert!(!handler.is_match(&page));
    for absent in [
        "<script",
        "javascript:",
        "http://",
        "https://",
        "<img",
        "<link",
        "url(",
        "@import",
    ] {
        assert!(!page.contains(absent), "{absent}");
    }
}

// --- notices -----------------------------------------------------------------------------

#[test]
fn a_notice_page_says_why_and_escapes() {
    let page = notice_page(&Notice {
        title: "Already decided".to_owned(),
        message: "This approval was already approved by a@x at 12:01 UTC: nothing was changed."
            .to_owned(),
        details: vec![
            ("Release".to_owned(), "orders <1.4.0>".to_owned()),
            ("Decided by".to_owned(), "a@x".to_owned()),
        ],
    });
    assert_inert(&page);
    let tags = start_tags(&page);
    assert_eq!(tag_with_id(&tags, "notice").name, "p");
    assert!(page.contains("<title>Already decided &middot; shipgate</title>"));
    assert!(page.contains(
        "<p id=\"notice\">This approval was already approved by a@x at 12:01 UTC: nothing was changed.</p>"
    ));
    assert!(page.contains("<tr><th scope=\"row\">Release</th><td>orders &lt;1.4.0&gt;</td></tr>"));
    assert!(!page.contains("<form"), "a notice decides nothing");
}

#[test]
fn the_decided_page_confirms_who_decided_what() {
    let page = decided_page(
        &view(),
        Verdict::Approve,
        APPROVER,
        Some("Looks good.\n<b>ship it</b>"),
        "2026-11-26T11:02:09Z",
    );
    assert_inert(&page);
    assert!(page.contains("<body class=\"approved\">"));
    assert!(page.contains("<p id=\"notice\">Approved: orders 1.4.0 goes on in int.</p>"));
    assert!(page.contains("<th scope=\"row\">Decided by</th><td>cloud-ops@client.example</td>"));
    assert!(page.contains("<th scope=\"row\">Decided at</th><td>2026-11-26 11:02 UTC</td>"));
    assert!(page.contains("<td>Looks good.<br>&lt;b&gt;ship it&lt;/b&gt;</td>"));
    assert!(!page.contains("<form"));

    let page = decided_page(
        &view(),
        Verdict::Reject,
        APPROVER,
        Some("  "),
        "2026-11-26T11:02:09Z",
    );
    assert!(page.contains("<body class=\"rejected\">"));
    assert!(page.contains(
        "<p id=\"notice\">Rejected: orders 1.4.0 stops here; the pipeline does not deploy it to int.</p>"
    ));
    assert!(!page.contains("Comment"), "a blank comment is no comment");
}

#[test]
fn times_are_shown_in_utc_to_the_minute() {
    assert_eq!(format_utc(EXPIRES), "2026-12-03 14:05 UTC");
    assert_eq!(format_utc(0), "1970-01-01 00:00 UTC");
    assert_eq!(
        format_utc(i64::MAX),
        format!("{} (epoch seconds)", i64::MAX)
    );
    assert_eq!(
        format_rfc3339("2026-11-26T12:00:12+02:00"),
        "2026-11-26 10:00 UTC"
    );
    assert_eq!(format_rfc3339("yesterday"), "yesterday");
}

/// Writes one of each rendering to /tmp/shipgate-render/ for eyeballing:
/// `cargo test -p shipgate approval::tests::render_samples -- --ignored`.
/// `approval-page-csp.html` carries the policy in a `<meta>` tag, so a browser opening the
/// file applies the style only if the hash is right.
#[test]
#[ignore = "writes files for a person to look at"]
fn render_samples() {
    let dir = std::path::Path::new("/tmp/shipgate-render");
    std::fs::create_dir_all(dir).expect("dir");
    let mail = approval_email(&view(), APPROVER, APPROVE_URL, REJECT_URL);
    let page = approval_page(&view(), &form(Some(Verdict::Approve)));
    let csp_meta = format!(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"{}\">",
        // frame-ancestors is not allowed in a meta policy; the rest is the same.
        content_security_policy().replace("; frame-ancestors 'none'", "")
    );
    let files = [
        ("approval-email.html", mail.html.clone()),
        (
            "approval-email.txt",
            format!("Subject: {}\n\n{}", mail.subject, mail.text),
        ),
        ("approval-page.html", page.clone()),
        (
            "approval-page-csp.html",
            page.replacen(
                "<meta charset=\"utf-8\">",
                &format!("<meta charset=\"utf-8\">{csp_meta}"),
                1,
            ),
        ),
        (
            "notice.html",
            notice_page(&Notice {
                title: "Already decided".to_owned(),
                message: "This approval was already approved by a@x at 12:01 UTC: nothing was \
                          changed."
                    .to_owned(),
                details: vec![("Release".to_owned(), "orders 1.4.0".to_owned())],
            }),
        ),
        (
            "decided.html",
            decided_page(
                &view(),
                Verdict::Approve,
                APPROVER,
                Some("Looks good."),
                "2026-11-26T11:02:09Z",
            ),
        ),
    ];
    for (name, content) in files {
        std::fs::write(dir.join(name), content).expect("write");
    }
}
