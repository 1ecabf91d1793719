"""Fixes to moto's behaviour where it differs from AWS, applied when the local stack starts moto
(`PYTHONPATH` names this folder, so Python imports this file at start-up). Each fix is small and
says which AWS behaviour it restores; product code never works around moto.

1. CloudFormation: a stack created by a CREATE change set resolves `Fn::ImportValue` against the
   account's exports, as a stack created by CreateStack does. moto 5.2 builds that stack
   without the exports, so executing the change set fails with "No export named ... found."
2. CloudFormation: a stack's template and Outputs are those of the change set it last
   executed, as after CreateStack/UpdateStack. moto 5.2 applies the change set's resources but
   keeps the stack's empty (CREATE) or previous (UPDATE) template and outputs, so
   DescribeStacks shows no Outputs for a stack made by a change set.
3. CloudFormation: `Fn::GetAtt [LoadBalancer, LoadBalancerFullName]` of an application load
   balancer is `app/<name>/<id>` (the CloudWatch `LoadBalancer` dimension), the tail of its ARN.
   moto 5.2 lists the attribute but does not implement it.
4. CloudFormation: `AWS::CloudWatch::Alarm` resources (metric alarms) are created, updated and
   deleted with their stacks, Ref giving the alarm's name. moto 5.2 has no CloudFormation model
   for them: the resource is silently skipped and the alarm never exists.

And one addition that is not a fix: `GET /moto-api/shipgate/ses-messages` lists the emails sent
through SES (what the local outbox reads, as an operator reads a mailbox). moto lists them only
inside `GET /moto-api/data.json`, which serialises every model of every service: it took seconds
per call once the demo's stacks existed, and it fails outright once a Lambda function exists.
"""


def _patch_change_set_imports():
    try:
        from moto.cloudformation import models
    except Exception:  # moto not importable: nothing to patch
        return
    stack_class = models.Stack
    original_init = stack_class.__init__

    def __init__(self, *args, **kwargs):
        if kwargs.get("cross_stack_resources") is None:
            account_id = kwargs.get("account_id")
            region_name = kwargs.get("region_name")
            if account_id and region_name:
                backend = models.cloudformation_backends[account_id][region_name]
                # The backend's own dict: exports created later are seen too, as in AWS.
                kwargs["cross_stack_resources"] = backend.exports
        original_init(self, *args, **kwargs)

    stack_class.__init__ = __init__


def _patch_change_set_outputs():
    try:
        from moto.cloudformation import models
    except Exception:  # moto not importable: nothing to patch
        return
    change_set_class = models.ChangeSet
    original_apply = change_set_class.apply

    def apply(self):
        original_apply(self)
        stack = self.stack
        stack.template = self.template
        stack._parse_template()
        stack.description = stack.template_dict.get("Description")
        stack.output_map = stack._create_output_map()

    change_set_class.apply = apply


def _patch_load_balancer_full_name():
    try:
        from moto.elbv2 import models
    except Exception:  # moto not importable: nothing to patch
        return
    balancer_class = models.FakeLoadBalancer
    original = balancer_class.get_cfn_attribute

    def get_cfn_attribute(self, attribute_name):
        if attribute_name == "LoadBalancerFullName":
            # arn:aws:elasticloadbalancing:<region>:<account>:loadbalancer/app/<name>/<id>
            return self.arn.split(":loadbalancer/", 1)[-1]
        return original(self, attribute_name)

    balancer_class.get_cfn_attribute = get_cfn_attribute


def _add_cloudwatch_alarm_resource():
    try:
        from moto.core.common_models import CloudFormationModel
        from moto.cloudwatch.models import cloudwatch_backends
    except Exception:  # moto not importable: nothing to patch
        return

    class MetricAlarmResource(CloudFormationModel):
        # moto's model metaclass files a model under the service its module names.
        __module__ = "moto.cloudwatch.models"

        def __init__(self, name, account_id, region_name):
            self.name = name
            self.account_id = account_id
            self.region_name = region_name

        @property
        def physical_resource_id(self):
            return self.name

        @staticmethod
        def cloudformation_name_type():
            return "AlarmName"

        @staticmethod
        def cloudformation_type():
            return "AWS::CloudWatch::Alarm"

        @classmethod
        def has_cfn_attr(cls, attr):
            return attr == "Arn"

        def get_cfn_attribute(self, attribute_name):
            if attribute_name == "Arn":
                return (
                    f"arn:aws:cloudwatch:{self.region_name}:{self.account_id}:alarm:{self.name}"
                )
            from moto.cloudformation.exceptions import UnformattedGetAttTemplateException

            raise UnformattedGetAttTemplateException()

        @classmethod
        def create_from_cloudformation_json(
            cls, resource_name, cloudformation_json, account_id, region_name, **kwargs
        ):
            p = cloudformation_json.get("Properties", {})
            name = p.get("AlarmName") or resource_name
            cloudwatch_backends[account_id][region_name].put_metric_alarm(
                name=name,
                namespace=p.get("Namespace"),
                metric_name=p.get("MetricName"),
                comparison_operator=p.get("ComparisonOperator"),
                evaluation_periods=int(p.get("EvaluationPeriods", 1)),
                period=int(p.get("Period", 60)),
                threshold=float(p.get("Threshold", 0)),
                statistic=p.get("Statistic"),
                description=p.get("AlarmDescription", ""),
                dimensions=[
                    {"Name": d.get("Name"), "Value": d.get("Value")}
                    for d in p.get("Dimensions", [])
                ],
                alarm_actions=p.get("AlarmActions", []),
                ok_actions=p.get("OKActions", []),
                insufficient_data_actions=p.get("InsufficientDataActions", []),
                datapoints_to_alarm=p.get("DatapointsToAlarm"),
                treat_missing_data=p.get("TreatMissingData"),
                unit=p.get("Unit"),
                actions_enabled=p.get("ActionsEnabled", True),
            )
            return cls(name, account_id, region_name)

        @classmethod
        def update_from_cloudformation_json(
            cls, original_resource, new_resource_name, cloudformation_json, account_id,
            region_name,
        ):
            cloudwatch_backends[account_id][region_name].delete_alarms([original_resource.name])
            return cls.create_from_cloudformation_json(
                new_resource_name, cloudformation_json, account_id, region_name
            )

        @classmethod
        def delete_from_cloudformation_json(
            cls, resource_name, cloudformation_json, account_id, region_name
        ):
            p = cloudformation_json.get("Properties", {})
            cloudwatch_backends[account_id][region_name].delete_alarms(
                [p.get("AlarmName") or resource_name]
            )

    return MetricAlarmResource


def _add_ses_messages_route():
    try:
        import json

        from moto.moto_api._internal import urls
        from moto.ses.models import Message, ses_backends
    except Exception:  # moto not importable: nothing to patch
        return

    def ses_messages(request, full_url, headers):
        # SESv2 SendEmail lands in the SES backend of the sending account and region; each
        # backend keeps its messages in the order they were sent.
        sent = []
        for account_id, regions in list(ses_backends.items()):
            for region, backend in list(regions.items()):
                for m in backend.sent_messages:
                    if isinstance(m, Message):
                        sent.append({
                            "account": account_id,
                            "region": region,
                            "id": m.id,
                            "source": m.source,
                            "destinations": m.destinations,
                            "subject": m.subject,
                            "body": m.body,
                        })
        return 200, {"Content-Type": "application/json"}, json.dumps(sent)

    urls.url_paths["{0}/moto-api/shipgate/ses-messages"] = ses_messages


_patch_change_set_imports()
_patch_change_set_outputs()
_patch_load_balancer_full_name()
# Kept referenced: moto finds CloudFormation models through __subclasses__().
_METRIC_ALARM_RESOURCE = _add_cloudwatch_alarm_resource()
_add_ses_messages_route()
