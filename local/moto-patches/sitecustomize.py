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
5. CloudFormation: an `AWS::ECS::Service` with `DeploymentController: {Type: EXTERNAL}` is
   created without a task definition (its task sets carry one) and keeps its controller. moto
   5.2 requires `TaskDefinition` (KeyError) and creates every service with the ECS controller.
6. ECS task sets: a task set created or rescaled is `STABILIZING` until its tasks run (here:
   for the first `DescribeTaskSets` that lists it), then `STEADY_STATE`, with
   `computedDesiredCount`, `runningCount` and `pendingCount` as the service's desired count and
   the scale make them, and `updatedAt` moved by `UpdateTaskSet`. moto 5.2 reports
   `STEADY_STATE` at once, no counts, and never moves `updatedAt`.
7. ECS: `RunTask` (and `CreateTaskSet`, which runs its tasks) of a task definition whose
   containers leave their memory to the task (`Memory` at task level only, Fargate's usual
   form) runs. moto 5.2 adds up the containers' memory and fails on the missing one with a
   TypeError (HTTP 500, after the task set was stored).

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


def _patch_ecs_external_service():
    try:
        from moto.ecs import models
    except Exception:  # moto not importable: nothing to patch
        return
    service_class = models.Service

    def _external_args(properties):
        controller = properties.get("DeploymentController") or {}
        cluster = properties["Cluster"]
        if isinstance(cluster, models.Cluster):
            cluster = cluster.name
        return cluster, {"type": controller.get("Type", "ECS")}

    original_create = service_class.create_from_cloudformation_json.__func__
    original_update = service_class.update_from_cloudformation_json.__func__

    def create_from_cloudformation_json(
        cls, resource_name, cloudformation_json, account_id, region_name, **kwargs
    ):
        properties = cloudformation_json["Properties"]
        cluster, controller = _external_args(properties)
        if controller["type"] != "EXTERNAL":
            return original_create(
                cls, resource_name, cloudformation_json, account_id, region_name, **kwargs
            )
        backend = models.ecs_backends[account_id][region_name]
        return backend.create_service(
            cluster,
            properties.get("ServiceName") or resource_name,
            int(properties.get("DesiredCount", 0) or 0),
            deployment_controller=controller,
        )

    def update_from_cloudformation_json(
        cls, original_resource, new_resource_name, cloudformation_json, account_id,
        region_name,
    ):
        properties = cloudformation_json["Properties"]
        _, controller = _external_args(properties)
        if controller["type"] != "EXTERNAL":
            return original_update(
                cls, original_resource, new_resource_name, cloudformation_json, account_id,
                region_name,
            )
        # An EXTERNAL service's task definition and network live on its task sets: only the
        # desired count changes here.
        backend = models.ecs_backends[account_id][region_name]
        return backend.update_service(
            {
                "cluster": original_resource.cluster_name,
                "service": original_resource.name,
                "desired_count": properties.get("DesiredCount"),
            }
        )

    service_class.create_from_cloudformation_json = classmethod(create_from_cloudformation_json)
    service_class.update_from_cloudformation_json = classmethod(update_from_cloudformation_json)


def _patch_ecs_task_set_stability():
    try:
        import math

        from moto.core.utils import utcnow
        from moto.ecs import models
    except Exception:  # moto not importable: nothing to patch
        return
    backend_class = models.EC2ContainerServiceBackend
    original_create = backend_class.create_task_set
    original_describe = backend_class.describe_task_sets
    original_update = backend_class.update_task_set

    def _desired(backend, task_set):
        service = backend.services.get(
            f"{task_set.cluster.split('/')[-1]}:{task_set.service.split('/')[-1]}"
        )
        desired = service.desired_count if service else 0
        scale = float((task_set.scale or {}).get("value", 100.0))
        return int(math.ceil(desired * scale / 100.0))

    def _starting(backend, task_set):
        task_set._reads_until_steady = 1
        task_set.stabilityStatus = "STABILIZING"
        task_set.updatedAt = utcnow()
        task_set.stabilityStatusAt = task_set.updatedAt
        task_set.computed_desired_count = _desired(backend, task_set)
        task_set.running_count = 0
        task_set.pending_count = task_set.computed_desired_count

    def create_task_set(self, *args, **kwargs):
        task_set = original_create(self, *args, **kwargs)
        _starting(self, task_set)
        return task_set

    def update_task_set(self, *args, **kwargs):
        task_set = original_update(self, *args, **kwargs)
        _starting(self, task_set)
        return task_set

    def describe_task_sets(self, *args, **kwargs):
        task_sets = original_describe(self, *args, **kwargs)
        for task_set in task_sets:
            if getattr(task_set, "_reads_until_steady", 0) > 0:
                task_set._reads_until_steady -= 1
                continue
            if task_set.stabilityStatus != "STEADY_STATE":
                task_set.stabilityStatus = "STEADY_STATE"
                task_set.stabilityStatusAt = utcnow()
            desired = _desired(self, task_set)
            task_set.computed_desired_count = desired
            task_set.running_count = desired
            task_set.pending_count = 0
        return task_sets

    backend_class.create_task_set = create_task_set
    backend_class.update_task_set = update_task_set
    backend_class.describe_task_sets = describe_task_sets


def _patch_ecs_task_level_memory():
    try:
        import copy

        from moto.ecs import models
    except Exception:  # moto not importable: nothing to patch
        return
    backend_class = models.EC2ContainerServiceBackend
    original = backend_class._calculate_task_resource_requirements
    keys = ("Memory", "MemoryReservation", "memory", "memoryReservation")

    def _calculate_task_resource_requirements(task_definition):
        containers = []
        for container in task_definition.container_definitions:
            if all(container.get(k) is None for k in keys):
                # The task's memory covers it (no container-level figure to add up).
                container = dict(container, memory=0)
            containers.append(container)
        proxy = copy.copy(task_definition)
        proxy.container_definitions = containers
        return original(proxy)

    backend_class._calculate_task_resource_requirements = staticmethod(
        _calculate_task_resource_requirements
    )


_patch_change_set_imports()
_patch_change_set_outputs()
_patch_load_balancer_full_name()
_patch_ecs_external_service()
_patch_ecs_task_set_stability()
_patch_ecs_task_level_memory()
# Kept referenced: moto finds CloudFormation models through __subclasses__().
_METRIC_ALARM_RESOURCE = _add_cloudwatch_alarm_resource()
_add_ses_messages_route()
