//! Elastic Load Balancing v2: the weighted forward of a listener that carries an ECS service's
//! traffic between its blue (previous) and green (new) target groups.

use aws_sdk_elasticloadbalancingv2::Client;
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, ForwardActionConfig, TargetGroupTuple,
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
    let mut weights = Vec::new();
    for listener in out.listeners() {
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
    }
    Ok(weights)
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
    let forward = ForwardActionConfig::builder()
        .target_groups(
            TargetGroupTuple::builder()
                .target_group_arn(blue)
                .weight(i32::from(blue_weight))
                .build(),
        )
        .target_groups(
            TargetGroupTuple::builder()
                .target_group_arn(green)
                .weight(i32::from(green_weight))
                .build(),
        )
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
    use super::percent_on;

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
