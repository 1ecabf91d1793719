//! IAM's matching of names and ARNs, as the IAM User Guide documents it ("IAM JSON policy
//! elements": wildcards in Action and Resource; "Condition operators": `StringLike`, `ArnLike`):
//! one definition for every reader of policies (the local stack's evaluation of the templates,
//! the operator's preflight of a real installation's trust and bus policies).

/// `*` matches any run of characters, `?` any one; `fold` compares ASCII case-insensitively
/// (action names are not case-sensitive, ARNs are).
pub fn glob(pattern: &str, value: &str, fold: bool) -> bool {
    let eq = |a: char, b: char| {
        if fold {
            a.eq_ignore_ascii_case(&b)
        } else {
            a == b
        }
    };
    let (p, v): (Vec<char>, Vec<char>) = (pattern.chars().collect(), value.chars().collect());
    // Positions of `p` that can be reached having read `v[..i]`.
    let mut reach = vec![false; p.len() + 1];
    reach[0] = true;
    let close = |reach: &mut Vec<bool>| {
        for j in 0..p.len() {
            if reach[j] && p[j] == '*' {
                reach[j + 1] = true;
            }
        }
    };
    close(&mut reach);
    for c in v {
        let mut next = vec![false; p.len() + 1];
        for j in 0..p.len() {
            if reach[j] {
                match p[j] {
                    '*' => next[j] = true,
                    '?' => next[j + 1] = true,
                    pc if eq(pc, c) => next[j + 1] = true,
                    _ => {}
                }
            }
        }
        close(&mut next);
        reach = next;
    }
    reach[p.len()]
}

/// IAM's `ArnLike`, and how a `Resource` element matches: `*` alone matches anything; otherwise
/// each of the six colon-separated parts is matched on its own (the last, the resource, may
/// itself hold colons).
pub fn arn_like(pattern: &str, value: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let p: Vec<&str> = pattern.splitn(6, ':').collect();
    let v: Vec<&str> = value.splitn(6, ':').collect();
    p.len() == v.len() && p.iter().zip(&v).all(|(p, v)| glob(p, v, false))
}

/// A resource policy's principal: `*`, an account (`123456789012` or its `:root` ARN: any
/// principal of it), or a role ARN (also matching the role's sessions).
pub fn principal_matches(pattern: &str, principal: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let account = account_of(principal);
    if pattern == account
        || pattern
            .strip_suffix(":root")
            .and_then(|p| p.strip_prefix("arn:aws:iam::"))
            == Some(account)
    {
        return true;
    }
    pattern == principal
}

/// The account of an ARN (its fifth part); empty when it has none.
pub fn account_of(arn: &str) -> &str {
    arn.split(':').nth(4).unwrap_or_default()
}
