//! Elastic Load Balancing v2: the weighted forward of a listener that carries an ECS service's
//! traffic between its blue (previous) and green (new) target groups, the test listener that
//! forwards to green alone, and the deregistration delay blue is drained with.

use std::collections::HashMap;

use aws_sdk_elasticloadbalancingv2::Client;
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, ForwardActionConfig, Listener, TargetGroupTuple,
};

use crate::error::{AwsError, aws_err};

/// The weight of each target group the listener's default forward action names.
pub async fn listener_weights(
    elb: &Client,
    listener_arn: &str,
) -> Result<Vec<(String, i32)>, AwsError> {
    let out = elb
        .describe_listeners()
        .listener_arns(listener_arn)
        .send()
        .await
        .map_err(aws_err("ElasticLoadBalancingV2", "DescribeListeners"))?;
    Ok(out.listeners().iter().flat_map(forward_weights).collect())
}

/// How many listeners one `DescribeListeners` is asked about: the API reference gives no
/// maximum for `ListenerArns`; 20 keeps each request small.
const LISTENERS_PER_CALL: usize = 20;

/// [`listener_weights`] of each listener of `listener_arns`, by listener ARN: one
/// `DescribeListeners` per 20 listeners (every page) instead of one each. A listener the
/// answer leaves out is left out.
pub async fn listeners_weights(
    elb: &Client,
    listener_arns: &[String],
) -> Result<HashMap<String, Vec<(String, i32)>>, AwsError> {
    let mut weights = HashMap::new();
    for chunk in listener_arns.chunks(LISTENERS_PER_CALL) {
        let mut marker = None;
        loop {
            let out = elb
                .describe_listeners()
                .set_listener_arns(Some(chunk.to_vec()))
                .set_marker(marker)
                .send()
                .await
                .map_err(aws_err("ElasticLoadBalancingV2", "DescribeListeners"))?;
            for listener in out.listeners() {
                if let Some(arn) = listener.listener_arn() {
                    weights.insert(arn.to_owned(), forward_weights(listener));
                }
            }
            match out.next_marker {
                Some(next) if !next.is_empty() => marker = Some(next),
                _ => break,
            }
        }
    }
    Ok(weights)
}

/// The weight of each target group of the listener's default forward actions.
fn forward_weights(listener: &Listener) -> Vec<(String, i32)> {
    let mut weights = Vec::new();
    for action in listener.default_actions() {
        if action.r#type() != Some(&ActionTypeEnum::Forward) {
            continue;
        }
        match action.forward_config() {
            Some(forward) => {
                for tg in forward.target_groups() {
                    if let Some(arn) = tg.target_group_arn() {
                        weights.push((arn.to_owned(), tg.weight().unwrap_or(1)));
                    }
                }
            }
            None => {
                if let Some(arn) = action.target_group_arn() {
                    weights.push((arn.to_owned(), 1));
                }
            }
        }
    }
    weights
}

/// The share (0–100) of the listener's traffic on `green`, from its weights.
pub fn percent_on(weights: &[(String, i32)], green: &str) -> u8 {
    let total: i64 = weights.iter().map(|(_, w)| i64::from((*w).max(0))).sum();
    if total == 0 {
        return 0;
    }
    let on_green: i64 = weights
        .iter()
        .filter(|(arn, _)| arn == green)
        .map(|(_, w)| i64::from((*w).max(0)))
        .sum();
    ((on_green * 100 + total / 2) / total).clamp(0, 100) as u8
}

/// Which of the two target groups is live (all of the listener's traffic on it) and which one
/// takes the new version: `(live, idle)`. The two take turns: each release goes to the idle one.
/// A listener sharing its traffic between them (a deployment left half-done) or forwarding to
/// neither is refused with the reason.
pub fn live_target_group(
    weights: &[(String, i32)],
    first: &str,
    second: &str,
) -> Result<(String, String), String> {
    let on_second = percent_on(weights, second);
    let on_first = percent_on(weights, first);
    match (on_first, on_second) {
        (100, _) => Ok((first.to_owned(), second.to_owned())),
        (_, 100) => Ok((second.to_owned(), first.to_owned())),
        (0, 0) => Err(format!(
            "forwards to neither {first} nor {second}: the parameters do not match the listener"
        )),
        (a, b) => Err(format!(
            "shares its traffic between the target groups ({a}% / {b}%): another deployment \
             is under way or was left half-done; finish or roll it back first"
        )),
    }
}

/// Whether the listener forwards everything to `target_group` and nowhere else.
pub fn forwards_only_to(weights: &[(String, i32)], target_group: &str) -> bool {
    let mut positive = weights.iter().filter(|(_, w)| *w > 0);
    matches!((positive.next(), positive.next()), (Some((arn, _)), None) if arn == target_group)
}

/// Points the listener's default action at one target group (`ModifyListener`): the test
/// listener, at the new version's.
pub async fn forward_to(
    elb: &Client,
    listener_arn: &str,
    target_group: &str,
) -> Result<(), AwsError> {
    set_default_forward(elb, listener_arn, &[(target_group, 1)]).await
}

/// ELB's default deregistration delay, when the target group does not say.
pub const DEFAULT_DEREGISTRATION_DELAY_SECONDS: u32 = 300;

/// The target group's `deregistration_delay.timeout_seconds`: how long the load balancer lets a
/// deregistering target finish its in-flight requests (`DescribeTargetGroupAttributes`).
pub async fn deregistration_delay_seconds(
    elb: &Client,
    target_group: &str,
) -> Result<u32, AwsError> {
    let out = elb
        .describe_target_group_attributes()
        .target_group_arn(target_group)
        .send()
        .await
        .map_err(aws_err(
            "ElasticLoadBalancingV2",
            "DescribeTargetGroupAttributes",
        ))?;
    Ok(out
        .attributes()
        .iter()
        .find(|a| a.key() == Some("deregistration_delay.timeout_seconds"))
        .and_then(|a| a.value())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(DEFAULT_DEREGISTRATION_DELAY_SECONDS))
}

/// Sets the listener's default action to a weighted forward: `percent` on `green`, the rest on
/// `blue` (`ModifyListener`).
pub async fn shift_listener(
    elb: &Client,
    listener_arn: &str,
    blue: &str,
    green: &str,
    percent: u8,
) -> Result<(), AwsError> {
    let (blue_weight, green_weight) = crate::plan::listener_weights(percent);
    let weights = [
        (blue, i32::from(blue_weight)),
        (green, i32::from(green_weight)),
    ];
    set_default_forward(elb, listener_arn, &weights).await
}

/// Makes a forward to `weights`' target groups, each with its weight, the listener's only
/// default action (`ModifyListener`).
async fn set_default_forward(
    elb: &Client,
    listener_arn: &str,
    weights: &[(&str, i32)],
) -> Result<(), AwsError> {
    let groups = weights.iter().map(|(arn, weight)| {
        TargetGroupTuple::builder()
            .target_group_arn(*arn)
            .weight(*weight)
            .build()
    });
    let forward = ForwardActionConfig::builder()
        .set_target_groups(Some(groups.collect()))
        .build();
    let action = Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .forward_config(forward)
        .build();
    elb.modify_listener()
        .listener_arn(listener_arn)
        .default_actions(action)
        .send()
        .await
        .map_err(aws_err("ElasticLoadBalancingV2", "ModifyListener"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{forwards_only_to, live_target_group, percent_on};

    #[test]
    fn the_live_target_group_keeps_the_previous_version_and_the_roles_swap() {
        let w = |a: i32, b: i32| vec![("tg-a".to_owned(), a), ("tg-b".to_owned(), b)];
        assert_eq!(
            live_target_group(&w(1, 0), "tg-a", "tg-b").unwrap(),
            ("tg-a".to_owned(), "tg-b".to_owned())
        );
        // The previous release ended on the second group: it is now the live one.
        assert_eq!(
            live_target_group(&w(0, 100), "tg-a", "tg-b").unwrap(),
            ("tg-b".to_owned(), "tg-a".to_owned())
        );
        // A plain forward to one group (the listener as the environment stack makes it).
        assert_eq!(
            live_target_group(&[("tg-b".to_owned(), 1)], "tg-a", "tg-b").unwrap(),
            ("tg-b".to_owned(), "tg-a".to_owned())
        );
        let half = live_target_group(&w(90, 10), "tg-a", "tg-b").unwrap_err();
        assert!(half.contains("90% / 10%"), "{half}");
        let neither = live_target_group(&[("tg-c".to_owned(), 1)], "tg-a", "tg-b").unwrap_err();
        assert!(neither.contains("neither"), "{neither}");
    }

    #[test]
    fn a_test_listener_forwards_only_to_one_group_or_it_is_repointed() {
        let tg = |arn: &str, w: i32| (arn.to_owned(), w);
        assert!(forwards_only_to(&[tg("green", 1)], "green"));
        assert!(forwards_only_to(
            &[tg("blue", 0), tg("green", 100)],
            "green"
        ));
        assert!(!forwards_only_to(&[tg("blue", 1)], "green"));
        assert!(!forwards_only_to(
            &[tg("blue", 10), tg("green", 90)],
            "green"
        ));
        assert!(!forwards_only_to(&[], "green"));
    }

    #[test]
    fn the_share_on_green_comes_from_the_weights() {
        let w = |b: i32, g: i32| vec![("blue".to_owned(), b), ("green".to_owned(), g)];
        assert_eq!(percent_on(&w(90, 10), "green"), 10);
        assert_eq!(percent_on(&w(0, 100), "green"), 100);
        assert_eq!(percent_on(&w(100, 0), "green"), 0);
        assert_eq!(percent_on(&w(0, 0), "green"), 0);
        assert_eq!(percent_on(&w(1, 1), "green"), 50);
        assert_eq!(percent_on(&[("blue".to_owned(), 1)], "green"), 0);
    }
}
