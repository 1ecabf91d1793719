//! The approval email and the approval page, rendered from plain data.
//!
//! An approver gets one email per gate ([`approval_email`]): what the release is, what the
//! integrator says about it, who dropped it and when, every change set of the gate with what
//! needs attention first, when the approval expires, and two links. Both links open the review
//! page ([`approval_page`]), which shows the same information and the only thing that decides:
//! a form POSTed by a button. A mail scanner or link preview fetching a link decides nothing.
//! Every other outcome of the page (expired, already decided, superseded, refused) is a
//! [`notice_page`]; a decision taken is confirmed by [`decided_page`].
//!
//! Rendering is pure: no AWS call, no clock, no randomness; tokens, URLs and times come in as
//! arguments. Everything that comes from a release, a manifest or a request is escaped. The
//! email uses table layout and inline styles only (what Outlook, Gmail and Apple Mail all
//! render), with no images, scripts, forms or external resources. The page works without
//! JavaScript and carries one `<style>` element, [`PAGE_STYLE`], which the function allows by
//! hash in [`content_security_policy`], so the policy needs no `'unsafe-inline'`.

mod authority;
mod email;
mod page;

#[cfg(test)]
mod tests;

pub use authority::{
    GatedEnvironment, approvers_from_env, environment_suffix, environments_from_env,
    gated_environment, parse_approvers,
};
pub use email::{RenderedEmail, approval_email};
pub use page::{PAGE_STYLE, approval_page, content_security_policy, decided_page, notice_page};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

use crate::aws::ses::html_escape;
use crate::changes::{Attention, Category, ChangeCounts, ChangeSummary, SummaryEntry};
use crate::store::{ChangeSetOutcome, Gate, ReleaseRecord, StackChanges, Verdict};

/// Everything an approver is shown about one approval gate.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalView {
    pub application: String,
    pub version: String,
    /// The integrator's message about what changed.
    pub message: String,
    pub integrator_name: Option<String>,
    pub integrator_email: Option<String>,
    /// Who dropped the release (the S3 principal).
    pub uploaded_by: Option<String>,
    /// RFC 3339, when the drop arrived.
    pub received_at: String,
    pub release_id: String,
    /// `int`, `stg`, `prod`.
    pub environment: String,
    pub pipeline: String,
    pub execution_id: String,
    pub stage: String,
    pub action: String,
    /// When CodePipeline expires the approval (epoch seconds); the links expire with it.
    pub approval_expires_at: i64,
    /// Every change set of the gate; empty when none was recorded.
    pub stacks: Vec<StackChanges>,
    /// For an approval to promote: what would be copied, instead of change sets.
    pub promotion: Option<Promotion>,
}

/// An approval to promote: the release passed `from`; once approved, its images are copied by
/// digest from `from`'s registry to the gate environment's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promotion {
    pub from: String,
    pub images: Vec<PromotedImage>,
}

/// One image of the release, as its manifest names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromotedImage {
    pub name: String,
    pub repository: String,
    pub tag: String,
    pub digest: String,
}

impl PromotedImage {
    /// `web  orders/web:1.4.0  sha256:…`, as the text email and the CLI show it.
    pub fn line(&self) -> String {
        one_line(&format!(
            "{}  {}:{}  {}",
            self.name, self.repository, self.tag, self.digest
        ))
    }
}

impl ApprovalView {
    /// The view of `gate`, from its release's record and the change sets recorded for its
    /// environment: one mapping for the mailer and the page, so the email and the page cannot
    /// show different things.
    pub fn for_gate(release: &ReleaseRecord, gate: &Gate, stacks: Vec<StackChanges>) -> Self {
        let from_manifest = |pointer: &str| {
            release
                .manifest
                .as_ref()
                .and_then(|m| m.pointer(pointer))
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        ApprovalView {
            application: release.application.clone().unwrap_or_default(),
            version: release.version.clone().unwrap_or_default(),
            message: release.message.clone().unwrap_or_default(),
            integrator_name: from_manifest("/integrator/name"),
            integrator_email: release
                .integrator_email
                .clone()
                .or_else(|| from_manifest("/integrator/email")),
            uploaded_by: release.uploaded_by.clone(),
            received_at: release.received_at.clone(),
            release_id: gate.release_id.clone(),
            environment: gate.environment.clone(),
            pipeline: gate.pipeline.clone(),
            execution_id: gate.execution_id.clone(),
            stage: gate.stage.clone(),
            action: gate.action.clone(),
            approval_expires_at: gate.approval_expires_at,
            promotion: gate.promote_from.as_ref().map(|from| Promotion {
                from: from.clone(),
                images: manifest_images(release),
            }),
            stacks,
        }
    }
}

/// The images of the release's manifest (`images[]`), in its order.
fn manifest_images(release: &ReleaseRecord) -> Vec<PromotedImage> {
    let images = release
        .manifest
        .as_ref()
        .and_then(|m| m.get("images"))
        .and_then(|v| v.as_array())
        .cloned()
        .unwrap_or_default();
    images
        .iter()
        .map(|image| {
            let field = |key: &str| {
                image
                    .get(key)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_owned()
            };
            PromotedImage {
                name: field("name"),
                repository: field("repository"),
                tag: field("tag"),
                digest: field("digest"),
            }
        })
        .collect()
}

/// What the review page needs beyond the view: who it is for and the tokens its form posts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageForm {
    /// The approver the link was issued to.
    pub approver: String,
    /// The signed link token, posted back as `t`.
    pub link_token: String,
    /// The page's anti-forgery token, posted back as `f`.
    pub form_token: String,
    /// The button of the link that was followed (approve or reject), shown as the primary one.
    pub intent: Option<Verdict>,
}

/// A page that decides nothing and says why (expired, already decided, superseded, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub title: String,
    pub message: String,
    /// Label and value rows shown under the message.
    pub details: Vec<(String, String)>,
}

/// Epoch seconds as a UTC minute an approver reads: `2026-12-03 14:05 UTC`.
///
/// Seconds are dropped, not rounded: a link valid until 14:05:59 is shown as 14:05, never later
/// than it really is.
pub fn format_utc(epoch_seconds: i64) -> String {
    OffsetDateTime::from_unix_timestamp(epoch_seconds)
        .ok()
        .and_then(|t| format_minute(t).ok())
        .unwrap_or_else(|| format!("{epoch_seconds} (epoch seconds)"))
}

fn format_minute(t: OffsetDateTime) -> Result<String, time::error::Format> {
    t.to_offset(time::UtcOffset::UTC)
        .format(format_description!(
            "[year]-[month]-[day] [hour]:[minute] UTC"
        ))
}

/// An RFC 3339 time as [`format_utc`] shows it; anything else as it came.
fn format_rfc3339(text: &str) -> String {
    OffsetDateTime::parse(text, &Rfc3339)
        .ok()
        .and_then(|t| format_minute(t).ok())
        .unwrap_or_else(|| text.to_owned())
}

/// One-line text (subjects, titles, table cells): control characters, line breaks included,
/// become spaces, so a value cannot start a new header line or break a layout.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Who wrote the message, for "Message from ...".
fn integrator(view: &ApprovalView) -> String {
    match (&view.integrator_name, &view.integrator_email) {
        (Some(name), Some(email)) => one_line(&format!("{name} <{email}>")),
        (Some(name), None) => one_line(name),
        (None, Some(email)) => one_line(email),
        (None, None) => "the integrator".to_owned(),
    }
}

/// `orders 1.4.0 for int`: how the release and gate are named everywhere; for an approval to
/// promote, `promoting orders 1.4.0 from int to stg`.
fn release_phrase(view: &ApprovalView) -> String {
    match &view.promotion {
        Some(p) => one_line(&format!(
            "promoting {} {} from {} to {}",
            view.application, view.version, p.from, view.environment
        )),
        None => one_line(&format!(
            "{} {} for {}",
            view.application, view.version, view.environment
        )),
    }
}

/// The headline over every stack of the gate ("1 replaced, 2 modified", "no changes"); for an
/// approval to promote, what would be copied.
fn overall_headline(view: &ApprovalView) -> String {
    if let Some(p) = &view.promotion {
        let n = p.images.len();
        return format!(
            "{n} image{} to copy by digest from {}'s registry to {}'s",
            if n == 1 { "" } else { "s" },
            p.from,
            view.environment
        );
    }
    if view.stacks.is_empty() {
        return NO_CHANGE_SET.to_owned();
    }
    let mut total = ChangeCounts::default();
    for stack in &view.stacks {
        let c = &stack.summary.counts;
        total.replaced += c.replaced;
        total.conditionally_replaced += c.conditionally_replaced;
        total.removed += c.removed;
        total.undetermined += c.undetermined;
        total.added += c.added;
        total.imported += c.imported;
        total.modified += c.modified;
    }
    ChangeSummary {
        counts: total,
        ..ChangeSummary::default()
    }
    .headline()
}

/// Said when the gate has no change set at all: not the same as "no changes".
const NO_CHANGE_SET: &str = "no change set recorded";

/// The facts about the release and the gate, as label / value rows, in reading order.
fn facts(view: &ApprovalView) -> Vec<(&'static str, String)> {
    let integrator = match (&view.integrator_name, &view.integrator_email) {
        (Some(name), Some(email)) => format!("{name} <{email}>"),
        (Some(name), None) => name.clone(),
        (None, Some(email)) => email.clone(),
        (None, None) => "not given".to_owned(),
    };
    vec![
        ("Application", view.application.clone()),
        ("Version", view.version.clone()),
        ("Environment", view.environment.clone()),
        ("Integrator", integrator),
        (
            "Dropped by",
            view.uploaded_by
                .clone()
                .unwrap_or_else(|| "not recorded".to_owned()),
        ),
        ("Received", format_rfc3339(&view.received_at)),
        ("Release id", view.release_id.clone()),
        ("Pipeline", view.pipeline.clone()),
        ("Execution", view.execution_id.clone()),
        ("Gate", format!("{} / {}", view.stage, view.action)),
        ("Approval expires", format_utc(view.approval_expires_at)),
    ]
    .into_iter()
    .map(|(label, value)| (label, one_line(&value)))
    .collect()
}

/// How strongly a summary row is highlighted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tone {
    /// Replaced or removed: something is destroyed.
    Danger,
    /// May be replaced, or nobody knows yet; or an IAM or image change.
    Caution,
    Plain,
}

fn tone(entry: &SummaryEntry) -> Tone {
    match entry.category {
        Category::Replaced | Category::Removed => Tone::Danger,
        Category::ConditionallyReplaced | Category::Undetermined => Tone::Caution,
        _ if !attention_tags(entry).is_empty() => Tone::Caution,
        _ => Tone::Plain,
    }
}

/// The tags shown next to an entry ("IAM", "image"); a removal's label already says it.
fn attention_tags(entry: &SummaryEntry) -> Vec<&'static str> {
    entry
        .attention
        .iter()
        .filter_map(|a| match a {
            Attention::Iam => Some("IAM"),
            Attention::Image => Some("image"),
            Attention::Deletion => None,
        })
        .collect()
}

/// Whether an entry belongs in the "needs attention" list read before the per-stack tables.
fn needs_attention(entry: &SummaryEntry) -> bool {
    tone(entry) != Tone::Plain
}

impl ApprovalView {
    /// The entries that need attention, across stacks, with their stack's name: the list read
    /// before the per-stack detail.
    fn attention_entries(&self) -> impl Iterator<Item = (&str, &SummaryEntry)> {
        self.stacks.iter().flat_map(|stack| {
            stack
                .summary
                .entries
                .iter()
                .filter(|e| needs_attention(e))
                .map(move |e| (stack.stack_name.as_str(), e))
        })
    }
}

/// What an HTML row shows of one entry, escaped here once for the email and the page, which
/// only add their markup.
struct EntryHtml {
    tone: Tone,
    label: String,
    id: String,
    kind: String,
    reason: String,
    tags: Vec<String>,
    /// The stack's name, in the list across stacks.
    stack: Option<String>,
}

impl EntryHtml {
    fn of(entry: &SummaryEntry, stack: Option<&str>) -> Self {
        Self {
            tone: tone(entry),
            label: html_escape(entry.category.label()),
            id: html_escape(&one_line(&entry.logical_id)),
            kind: html_escape(&one_line(&entry.resource_type)),
            reason: html_escape(&one_line(&entry.reason())),
            tags: attention_tags(entry).into_iter().map(html_escape).collect(),
            stack: stack.map(|s| html_escape(&one_line(s))),
        }
    }
}

/// What an HTML heading of one stack shows, escaped here once for the email and the page.
struct StackHtml {
    name: String,
    whereabouts: String,
    headline: String,
    /// Attention lines: label and ids.
    attention: Vec<(String, String)>,
}

impl StackHtml {
    fn of(stack: &StackChanges) -> Self {
        Self {
            name: html_escape(&one_line(&stack.stack_name)),
            whereabouts: html_escape(&stack_whereabouts(stack)),
            headline: html_escape(&stack_headline(stack)),
            attention: stack_attention(stack)
                .into_iter()
                .map(|(label, ids)| (html_escape(label), html_escape(&ids)))
                .collect(),
        }
    }
}

/// What the stack's change set does, in one line.
fn stack_headline(stack: &StackChanges) -> String {
    if stack.outcome == ChangeSetOutcome::NoChanges {
        "no changes: CloudFormation found nothing to change in this stack".to_owned()
    } else if stack.summary.is_empty() {
        // A change set that CloudFormation created but that lists no resource: only the
        // stack's parameters change. Not "no changes": executing it does change the stack.
        "parameters only: no resource changes are listed, executing it updates the stack's \
         parameters"
            .to_owned()
    } else if stack.creates_stack {
        format!("new stack: {}", stack.summary.headline())
    } else {
        stack.summary.headline()
    }
}

/// `account 222222222222, change set shipgate-rel-1`: where the stack is.
fn stack_whereabouts(stack: &StackChanges) -> String {
    one_line(&format!(
        "account {}, change set {}",
        stack.account_id, stack.change_set_name
    ))
}

/// Attention lines of one stack, as the summary's text has them.
fn stack_attention(stack: &StackChanges) -> Vec<(&'static str, String)> {
    let s = &stack.summary;
    [
        ("Deletions", &s.deletions),
        ("IAM changes", &s.iam_changes),
        ("Image changes", &s.image_changes),
    ]
    .into_iter()
    .filter(|(_, ids)| !ids.is_empty())
    .map(|(label, ids)| (label, one_line(&ids.join(", "))))
    .collect()
}

/// The decision, as the confirmation page's headline says it.
fn decided_message(view: &ApprovalView, verdict: Verdict) -> (String, String) {
    let what = one_line(&format!("{} {}", view.application, view.version));
    let env = one_line(&view.environment);
    match verdict {
        Verdict::Approve => (
            "Approved".to_owned(),
            format!("Approved: {what} goes on in {env}."),
        ),
        Verdict::Reject => (
            "Rejected".to_owned(),
            format!("Rejected: {what} stops here; the pipeline does not deploy it to {env}."),
        ),
    }
}

/// Only http(s) links are rendered as links: anything else (a `javascript:` URL from a broken
/// configuration) becomes an inert `#`.
fn safe_href(url: &str) -> &str {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if lower.starts_with("https://") || lower.starts_with("http://") {
        url
    } else {
        "#"
    }
}

/// Multi-line text (the integrator's message, a comment) as escaped HTML with `<br>` breaks;
/// control characters other than line breaks and tabs are dropped.
fn escape_multiline(text: &str) -> String {
    let cleaned: String = text
        .replace("\r\n", "\n")
        .chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .collect();
    html_escape(cleaned.trim_end()).replace('\n', "<br>")
}

/// Multi-line text for the plain-text email, each line indented.
fn indent_multiline(text: &str, indent: &str) -> String {
    text.replace("\r\n", "\n")
        .trim_end()
        .lines()
        .map(|line| {
            let line: String = line
                .chars()
                .filter(|c| !c.is_control() || *c == '\t')
                .collect();
            format!("{indent}{line}\n")
        })
        .collect()
}
