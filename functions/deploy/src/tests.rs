//! The handler's own decisions before any AWS call.

use shipgate::changes::ChangeSummary;
use shipgate::job::ActionError;

use super::*;

const PARAMETERS: &str = r#"{"environment": "int",
    "roleArn": "arn:aws:iam::222222222222:role/shipgate-deploy",
    "releaseId": "rel-0123456789abcdef0123", "executionId": "exec-1"}"#;

fn target() -> Target {
    serde_json::from_str::<ActionParameters>(PARAMETERS)
        .expect("parses")
        .target()
        .expect("valid")
}

fn changes(execution_id: &str, account_id: &str) -> StackChanges {
    StackChanges {
        release_id: "rel-0123456789abcdef0123".into(),
        environment: "int".into(),
        execution_id: execution_id.into(),
        template_path: "templates/service.yaml".into(),
        stack_name: "orders-int-service".into(),
        account_id: account_id.into(),
        change_set_name: "shipgate-rel-0123456789abcdef0123-exec-1".into(),
        change_set_id: None,
        creates_stack: false,
        outcome: ChangeSetOutcome::Ready,
        summary: ChangeSummary::default(),
        created_at: "2026-11-26T10:00:00Z".into(),
    }
}

#[test]
fn only_this_executions_change_sets_in_the_roles_account_are_deployed() {
    assert!(check_changes(&target(), &[changes("exec-1", "222222222222")]).is_ok());

    let err = check_changes(&target(), &[]).unwrap_err();
    assert_eq!(err.error_type(), "NoChangeSets");
    assert!(err.to_string().contains("must create them"), "{err}");

    let err = check_changes(&target(), &[changes("exec-0", "222222222222")]).unwrap_err();
    assert!(
        err.to_string()
            .contains("were created by pipeline execution exec-0, not by this one (exec-1)"),
        "{err}"
    );
    let err = check_changes(&target(), &[changes("exec-1", "333333333333")]).unwrap_err();
    assert_eq!(err.error_type(), "OtherAccount");
}
