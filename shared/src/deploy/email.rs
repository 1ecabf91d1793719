//! The email an environment's team gets when a deployment is rolled back: HTML and text, every
//! value from the record or the alarm escaped. Pure.

use crate::aws::ses::{Email, html_escape};
use crate::config::{ConfigError, Env};
use crate::store::{Deployment, Rollback, TrafficTarget};

/// Who is told of rollbacks: `SHIPGATE_MAIL_FROM` sends, `SHIPGATE_TEAM_EMAIL_<ENV>`
/// (comma-separated) receive, for each environment of `SHIPGATE_ENVIRONMENTS`
/// (default `int,stg,prod`; `<ENV>` upper-cased, `-` as `_`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TeamMail {
    pub from: String,
    /// Environment → addresses.
    pub teams: std::collections::BTreeMap<String, Vec<String>>,
}

impl TeamMail {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let from = env.required("SHIPGATE_MAIL_FROM")?;
        let mut teams = std::collections::BTreeMap::new();
        for environment in env
            .or("SHIPGATE_ENVIRONMENTS", "int,stg,prod")
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let name = team_variable(environment);
            let Some(raw) = env.optional(&name) else {
                continue;
            };
            let addresses: Vec<String> = raw
                .split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(str::to_owned)
                .collect();
            if let Some(bad) = addresses.iter().find(|a| !looks_like_address(a)) {
                return Err(ConfigError::Invalid {
                    name,
                    value: raw.to_owned(),
                    reason: format!("{bad:?} is not an email address"),
                });
            }
            teams.insert(environment.to_owned(), addresses);
        }
        Ok(Self { from, teams })
    }

    /// The team of `environment`; empty when none is configured.
    pub fn team(&self, environment: &str) -> &[String] {
        self.teams.get(environment).map_or(&[], Vec::as_slice)
    }
}

/// `SHIPGATE_TEAM_EMAIL_<ENV>`.
pub fn team_variable(environment: &str) -> String {
    format!(
        "SHIPGATE_TEAM_EMAIL_{}",
        environment.to_ascii_uppercase().replace('-', "_")
    )
}

fn looks_like_address(a: &str) -> bool {
    match a.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !a.chars().any(|c| c.is_whitespace() || c == '<' || c == '>')
        }
        None => false,
    }
}

/// The rollback email for `d` (rolled back as `r`), from `from` to `to`. `at` is the rollback's
/// time as people read it (RFC 3339).
pub fn rollback_email(d: &Deployment, r: &Rollback, from: &str, to: &[String], at: &str) -> Email {
    let (app, version) = app_version(d);
    // A stage can shift several targets at once (a listener and an alias), each rolled back and
    // reported on its own: the subject says which, so two emails never read the same.
    let subject = plain(&format!(
        "[shipgate] Rolled back: {app} {version} in {} ({}): {}",
        d.environment,
        cause(r),
        what(d)
    ));
    let headline = format!(
        "{app} {version} was rolled back in {}: all traffic is on the previous version again, and \
         the pipeline's traffic action has failed.",
        d.environment
    );
    let part = Part {
        title: None,
        facts: facts(d, r, at),
    };
    compose(from, to, subject, &headline, &[part])
}

/// The email for the deployments of one environment rolled back together (every deployment
/// watching an alarm): one email listing each, the same facts as [`rollback_email`] gives one.
/// A single deployment gets [`rollback_email`] itself.
pub fn rollback_digest(
    rolled_back: &[(&Deployment, &Rollback)],
    from: &str,
    to: &[String],
) -> Email {
    if let [(d, r)] = rolled_back {
        return rollback_email(d, r, from, to, &super::rfc3339(r.at_ms));
    }
    let environment = rolled_back
        .first()
        .map_or("", |(d, _)| d.environment.as_str());
    let causes: Vec<String> = rolled_back.iter().map(|(_, r)| cause(r)).collect();
    let cause = match causes.split_first() {
        Some((first, rest)) if rest.iter().all(|c| c == first) => first.clone(),
        _ => "several causes".to_owned(),
    };
    let mut releases: Vec<String> = Vec::new();
    for (d, _) in rolled_back {
        let (app, version) = app_version(d);
        let release = format!("{app} {version}");
        if !releases.contains(&release) {
            releases.push(release);
        }
    }
    let named = match releases.len() {
        0..=3 => releases.join(", "),
        n => format!("{} and {} more", releases[..3].join(", "), n - 3),
    };
    let n = rolled_back.len();
    let subject = plain(&format!(
        "[shipgate] Rolled back: {n} deployments in {environment} ({cause}): {named}"
    ));
    let headline = format!(
        "{n} deployments were rolled back in {environment}: all their traffic is on the previous \
         versions again, and their pipelines' traffic actions have failed."
    );
    let parts: Vec<Part> = rolled_back
        .iter()
        .map(|(d, r)| {
            let (app, version) = app_version(d);
            Part {
                title: Some(format!("{app} {version}: {}", what(d))),
                facts: facts(d, r, &super::rfc3339(r.at_ms)),
            }
        })
        .collect();
    compose(from, to, subject, &headline, &parts)
}

/// A rollback in an email: a title (when the email tells of several) and its facts.
struct Part {
    title: Option<String>,
    /// Label and value.
    facts: Vec<(&'static str, String)>,
}

/// The email: the headline, then each part, then what is kept; in text and in HTML, every value
/// escaped.
fn compose(from: &str, to: &[String], subject: String, headline: &str, parts: &[Part]) -> Email {
    let mut text = format!("{headline}\n");
    let mut html = String::from(HTML_START);
    html.push_str(&format!(
        "<p><strong>{}</strong></p>",
        html_escape(headline)
    ));
    for Part { title, facts } in parts {
        text.push('\n');
        if let Some(title) = title {
            text.push_str(&format!("{title}\n"));
            html.push_str(&format!("<h3>{}</h3>", html_escape(title)));
        }
        html.push_str("<table>");
        for (label, value) in facts {
            text.push_str(&format!("{label}: {value}\n"));
            html.push_str(&format!(
                "<tr><th align=\"left\">{}</th><td>{}</td></tr>",
                html_escape(label),
                html_escape(value)
            ));
        }
        html.push_str("</table>");
    }
    text.push_str(&format!("\n{KEPT}\n"));
    html.push_str(&format!("<p>{KEPT}</p></body></html>"));
    Email {
        from: from.to_owned(),
        to: to.to_vec(),
        subject,
        html,
        text,
    }
}

const HTML_START: &str = "<!DOCTYPE html><html><body style=\"font-family:sans-serif\">";
const KEPT: &str = "The previous version is kept; nothing else needs undoing. Fix the cause and \
                    drop a new release.";

fn app_version(d: &Deployment) -> (&str, &str) {
    (
        d.application.as_deref().unwrap_or("release"),
        d.version.as_deref().unwrap_or(&d.release_id),
    )
}

/// `alarm <name>`, or `by <who>`.
fn cause(r: &Rollback) -> String {
    match &r.alarm {
        Some(alarm) => format!("alarm {alarm}"),
        None => format!("by {}", r.by),
    }
}

/// What carried the traffic, in a few words.
fn what(d: &Deployment) -> String {
    match &d.target {
        TrafficTarget::LambdaAlias {
            function, alias, ..
        } => format!("alias {function}:{alias}"),
        TrafficTarget::AlbListener { .. } => "load balancer listener".to_owned(),
    }
}

/// A subject line: no control characters.
fn plain(subject: &str) -> String {
    subject.chars().filter(|c| !c.is_control()).collect()
}

/// The facts of one rollback, label and value.
fn facts(d: &Deployment, r: &Rollback, at: &str) -> Vec<(&'static str, String)> {
    let (app, version) = app_version(d);
    let target = match &d.target {
        TrafficTarget::LambdaAlias {
            function,
            alias,
            previous_version,
            new_version,
        } => format!(
            "Lambda alias {function}:{alias}: version {new_version} taken out, all traffic on \
             version {previous_version}"
        ),
        TrafficTarget::AlbListener {
            listener_arn,
            blue_target_group,
            ..
        } => format!(
            "ALB listener {listener_arn}: all traffic on the blue target group {blue_target_group}"
        ),
    };
    let mut facts: Vec<(&str, String)> = vec![
        ("Application", app.to_owned()),
        ("Version", version.to_owned()),
        ("Environment", d.environment.clone()),
    ];
    if let Some(alarm) = &r.alarm {
        facts.push(("Alarm", alarm.clone()));
    }
    facts.extend([
        ("Reason", r.reason.clone()),
        ("Rolled back by", r.by.clone()),
        ("When", at.to_owned()),
        (
            "Traffic on the new version before",
            format!("{}%", r.percent_before),
        ),
        ("Traffic now", target),
        ("Plan", d.plan.clone()),
        ("Release", d.release_id.clone()),
        ("Pipeline execution", d.execution_id.clone()),
        ("Deployment", d.deployment_id.clone()),
    ]);
    facts
}
