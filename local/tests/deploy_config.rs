//! `samconfig.toml` as SAM CLI reads it: `sam build` and `sam deploy` of each config env must see
//! the same template parameters, or a build compiles for one architecture while the stack runs
//! another (SAM CLI's configuration file: a command's `[<env>.<command>.parameters]` overrides
//! `[<env>.global.parameters]`).

use std::collections::BTreeMap;

/// `section → key → raw value` of the TOML subset samconfig.toml uses: `[a.b.c]` headers and
/// `key = value` lines, comments and blank lines ignored.
fn sections(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut current = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.to_owned();
            continue;
        }
        if let Some((key, value)) = line.split_once('=') {
            out.entry(current.clone())
                .or_default()
                .insert(key.trim().to_owned(), value.trim().to_owned());
        }
    }
    out
}

/// What a command of a config env sees for `key`.
fn effective<'a>(
    config: &'a BTreeMap<String, BTreeMap<String, String>>,
    env: &str,
    command: &str,
    key: &str,
) -> Option<&'a str> {
    [
        format!("{env}.{command}.parameters"),
        format!("{env}.global.parameters"),
    ]
    .iter()
    .find_map(|section| config.get(section).and_then(|s| s.get(key)))
    .map(String::as_str)
}

/// `Name="value"` pairs of a `parameter_overrides` string.
fn overrides(raw: &str) -> BTreeMap<String, String> {
    let raw = raw.strip_prefix('"').unwrap_or(raw);
    let inner = raw.strip_suffix('"').unwrap_or(raw).replace("\\\"", "\"");
    let mut out = BTreeMap::new();
    let mut rest = inner.as_str();
    while let Some((name, after)) = rest.trim_start().split_once("=\"") {
        let Some((value, tail)) = after.split_once('"') else {
            break;
        };
        out.insert(name.trim().to_owned(), value.to_owned());
        rest = tail;
    }
    out
}

#[test]
fn build_and_deploy_see_the_same_parameters_in_every_config_env() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../samconfig.toml"))
        .expect("samconfig.toml");
    let config = sections(&text);
    let envs: Vec<&str> = config
        .keys()
        .filter(|s| s.ends_with(".parameters"))
        .filter_map(|s| s.split('.').next())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert!(envs.contains(&"default"), "{envs:?}");
    for env in envs {
        let build = effective(&config, env, "build", "parameter_overrides");
        let deploy = effective(&config, env, "deploy", "parameter_overrides");
        assert!(
            deploy.is_some(),
            "{env}: deploy sets no parameter_overrides"
        );
        assert_eq!(
            build, deploy,
            "{env}: `sam build` and `sam deploy` see different parameter_overrides; put them in \
             [{env}.global.parameters]"
        );
        let deploy = overrides(deploy.unwrap_or_default());
        assert!(deploy.contains_key("MailFrom"), "{env}: {deploy:?}");
    }
}

#[test]
fn overrides_are_read_as_sam_writes_them() {
    let parsed = overrides(r#""MailFrom=\"a@b.c\" Architecture=\"x86_64\"""#);
    assert_eq!(parsed["MailFrom"], "a@b.c");
    assert_eq!(parsed["Architecture"], "x86_64");
}
