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
8. CloudFormation: an update that only changes parameters updates every resource that uses a
   changed parameter, `${Param}` in an `Fn::Sub` string included (as a Lambda version's
   `Description: !Sub "orders ${AppVersion}"`). moto 5.2 looks for `Ref` only, so such a
   resource silently keeps its old properties.
9. Lambda: an `AWS::Lambda::Function` with inline code (`Code.ZipFile`) can be updated. moto 5.2
   zips the inline code when it creates the function but hands the plain text to
   `UpdateFunctionCode` on update, which fails decoding it ("Incorrect padding").
10. Lambda: `AWS::Lambda::Version` publishes a version with its `Description`; `Ref` is the
   version's ARN, `Fn::GetAtt` gives `Version` and `FunctionArn`; a change of its properties
   replaces it (a new version is published, the old one deleted unless `UpdateReplacePolicy:
   Retain`); a function whose code and configuration did not change since its last version
   fails it ("A version for this Lambda function exists ( N ). Modify the function to create a
   new version."), as CloudFormation does. moto 5.2 drops the description, has no attributes
   (`GetAtt ….Version` fails), no `Ref` value and no update (the stack's resource becomes None).
11. Lambda: `AWS::Lambda::Alias` resources are created, updated (version, description, routing
   config) and deleted with their stacks, `Ref` giving the alias's ARN. moto 5.2 has no
   CloudFormation model for them: the resource is skipped and the alias never exists.
12. CloudFormation: a change set's name is scoped to its stack: `DescribeChangeSet`,
   `ExecuteChangeSet` and `DeleteChangeSet` with a `StackName` find that stack's change set
   of that name. moto 5.2 looks the name up across the account's stacks and takes the last
   one created, so two stacks whose change sets share a name (shipgate names them by release
   and execution) describe and execute each other's.
13. CloudFormation: a `TemplateBody` over 51,200 bytes is refused with a `ValidationError` by
   CreateChangeSet, CreateStack, UpdateStack and ValidateTemplate, as AWS documents the limit
   (a larger template goes by `TemplateURL`). moto 5.2 takes any size.

14. Every request is held to the constraints its service model documents (lengths, patterns,
   enums, required members, sizes and ranges) before moto acts on it, and refused with a
   ValidationException as AWS refuses it: request_conformance.py says how and what it leaves
   out. moto 5.2 checks almost none of them.

15. CloudFormation: an `AWS::ECS::TaskDefinition` keeps its `ExecutionRoleArn` and `TaskRoleArn`,
   as a task definition registered through the API does. moto 5.2 drops both (its model takes
   the family, containers, volumes and memory only), so its tasks would act as no role at all.

16. Only while the local stack records calls (`SHIPGATE_CALL_LOG`): every request is recorded with
   the access key that signed it, and ECR's authorization token names its caller, as AWS's does:
   call_recording.py says what is recorded and why.

17. CloudFormation: an `AWS::EC2::VPC` is created with its `EnableDnsSupport` and
   `EnableDnsHostnames` (DescribeVpcAttribute answers them), as CloudFormation creates it.
   moto 5.2 ignores both properties: every VPC it creates from a template has DNS hostnames
   off, so a VPC's interface endpoints could never resolve by private DNS there.
18. CloudFormation: an `AWS::EC2::SubnetRouteTableAssociation` associates the subnet with the
   route table as `AssociateRouteTable` does, so DescribeRouteTables lists the association
   (and the subnet no longer uses the main route table). moto 5.2 keeps the association in a
   list of its own that no Describe call reads: the subnet looks associated with nothing.

And two additions that are not fixes: `GET /moto-api/shipgate/instance` answers the
`SHIPGATE_MOTO_INSTANCE` this moto was started with (the local stack's check that the moto on
its port is its own), and `GET /moto-api/shipgate/ses-messages` lists the emails sent
through SES (what the local outbox reads, as an operator reads a mailbox). moto lists them only
inside `GET /moto-api/data.json`, which serialises every model of every service: it took seconds
per call once the demo's stacks existed, and it fails outright once a Lambda function exists.
"""

import call_recording
import request_conformance


def _patch_change_set_names_per_stack():
    try:
        from moto.cloudformation import responses
        from moto.cloudformation.exceptions import CloudFormationError
    except Exception:  # moto not importable: nothing to patch
        return
    response_class = responses.CloudFormationResponse

    class ChangeSetNotFound(CloudFormationError):
        code = "ChangeSetNotFound"

    def _with_stack_scope(original):
        def handler(self):
            name = self._get_param("ChangeSetName")
            stack = self._get_param("StackName")
            change_sets = self.cloudformation_backend.change_sets
            if name and stack and name not in change_sets:
                found = [
                    change_set_id
                    for change_set_id, change_set in list(change_sets.items())
                    if change_set.change_set_name == name
                    and stack in (change_set.stack_name, change_set.stack_id)
                ]
                if not found:
                    # Another stack's change set of that name is not this one (AWS's answer).
                    raise ChangeSetNotFound(f"ChangeSet [{name}] does not exist")
                # The change set's ARN: what moto's own lookup takes as exact.
                get_param = self._get_param
                self._get_param = lambda key, if_none=None, _id=found[-1]: (
                    _id if key == "ChangeSetName" else get_param(key, if_none)
                )
            return original(self)

        return handler

    for operation in ("describe_change_set", "execute_change_set", "delete_change_set"):
        setattr(
            response_class, operation, _with_stack_scope(getattr(response_class, operation))
        )


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
        import os

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

    def instance(request, full_url, headers):
        # Which moto this is: the local stack starts each with its own SHIPGATE_MOTO_INSTANCE
        # and waits for it here, so another test's moto on the same port is never taken for it.
        value = os.environ.get("SHIPGATE_MOTO_INSTANCE", "")
        return 200, {"Content-Type": "text/plain", "X-Shipgate-Instance": value}, value

    urls.url_paths["{0}/moto-api/shipgate/instance"] = instance


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


def _patch_sub_parameter_references():
    try:
        import re

        from moto.cloudformation import parsing
    except Exception:  # moto not importable: nothing to patch
        return
    original = parsing.get_references_from_template
    placeholder = re.compile(r"\$\{([A-Za-z0-9_:]+)\}")

    def get_references_from_template(template):
        references = original(template)
        if isinstance(template, dict):
            for key, value in template.items():
                if key == "Fn::Sub":
                    text = value[0] if isinstance(value, list) and value else value
                    if isinstance(text, str):
                        references.extend(placeholder.findall(text))
        # Nested values: the original recurses through the module's name, i.e. this function.
        return references

    parsing.get_references_from_template = get_references_from_template


def _patch_lambda_inline_code_update():
    try:
        import base64

        from moto.awslambda import models
    except Exception:  # moto not importable: nothing to patch
        return
    function_class = models.LambdaFunction
    original_update = function_class.update_from_cloudformation_json.__func__

    def update_from_cloudformation_json(
        cls, original_resource, new_resource_name, cloudformation_json, account_id,
        region_name,
    ):
        code = cloudformation_json.get("Properties", {}).get("Code", {})
        if isinstance(code.get("ZipFile"), str):
            # As on create: the inline source becomes index.py of a zip, base64-encoded.
            cloudformation_json = dict(cloudformation_json)
            properties = dict(cloudformation_json["Properties"])
            properties["Code"] = dict(
                code,
                ZipFile=base64.b64encode(
                    cls._create_zipfile_from_plaintext_code(code["ZipFile"])
                ),
            )
            cloudformation_json["Properties"] = properties
        return original_update(
            cls, original_resource, new_resource_name, cloudformation_json, account_id,
            region_name,
        )

    function_class.update_from_cloudformation_json = classmethod(update_from_cloudformation_json)


def _patch_lambda_version_resource():
    try:
        from moto.awslambda import models
    except Exception:  # moto not importable: nothing to patch
        return
    version_class = models.LambdaVersion

    def _publish(properties, account_id, region_name):
        backend = models.lambda_backends[account_id][region_name]
        name = str(properties["FunctionName"]).split(":function:")[-1].split(":")[0]
        known = {str(v.version) for v in backend.list_versions_by_function(name)}
        fn = backend.publish_version(name, properties.get("Description", ""))
        if fn is None or str(fn.version) in known:
            latest = fn.version if fn is not None else "?"
            raise ValueError(
                f"A version for this Lambda function exists ( {latest} ). Modify the function "
                "to create a new version."
            )
        resource = version_class({"Version": str(fn.version)})
        resource.function_name = name
        resource.function_arn = models.make_function_arn(region_name, account_id, name)
        resource.account_id = account_id
        resource.region_name = region_name
        return resource

    def physical_resource_id(self):
        return f"{self.function_arn}:{self.version}"

    def has_cfn_attr(cls, attr):
        return attr in ("Version", "FunctionArn")

    def get_cfn_attribute(self, attribute_name):
        if attribute_name == "Version":
            return str(self.version)
        if attribute_name == "FunctionArn":
            return self.function_arn
        from moto.cloudformation.exceptions import UnformattedGetAttTemplateException

        raise UnformattedGetAttTemplateException()

    def create_from_cloudformation_json(
        cls, resource_name, cloudformation_json, account_id, region_name, **kwargs
    ):
        return _publish(cloudformation_json["Properties"], account_id, region_name)

    def update_from_cloudformation_json(
        cls, original_resource, new_resource_name, cloudformation_json, account_id,
        region_name,
    ):
        # Every property of AWS::Lambda::Version requires replacement: new first, then the
        # old one goes unless the template keeps it.
        new = _publish(cloudformation_json["Properties"], account_id, region_name)
        if cloudformation_json.get("UpdateReplacePolicy") != "Retain":
            _delete(original_resource)
        return new

    def _delete(resource):
        backend = models.lambda_backends[resource.account_id][resource.region_name]
        try:
            backend.delete_function(resource.function_name, str(resource.version))
        except Exception:  # already gone: nothing to delete
            pass

    def delete(self, account_id, region):
        _delete(self)

    version_class.physical_resource_id = property(physical_resource_id)
    version_class.has_cfn_attr = classmethod(has_cfn_attr)
    version_class.get_cfn_attribute = get_cfn_attribute
    version_class.create_from_cloudformation_json = classmethod(create_from_cloudformation_json)
    version_class.update_from_cloudformation_json = classmethod(update_from_cloudformation_json)
    version_class.delete = delete


def _add_lambda_alias_resource():
    try:
        from moto.core.common_models import CloudFormationModel
        from moto.awslambda.models import lambda_backends
    except Exception:  # moto not importable: nothing to patch
        return

    def _function_name(value):
        return str(value).split(":function:")[-1].split(":")[0]

    def _routing(properties):
        # CloudFormation: [{FunctionVersion, FunctionWeight}]; the API's shape: {version: weight}.
        weights = (properties.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or []
        if not weights:
            return None
        return {
            "AdditionalVersionWeights": {
                str(w["FunctionVersion"]): float(w["FunctionWeight"]) for w in weights
            }
        }

    class LambdaAliasResource(CloudFormationModel):
        # moto's model metaclass files a model under the service its module names.
        __module__ = "moto.awslambda.models"

        def __init__(self, alias, function_name, account_id, region_name):
            self.alias = alias
            self.function_name = function_name
            self.account_id = account_id
            self.region_name = region_name

        @property
        def physical_resource_id(self):
            return self.alias.arn

        @staticmethod
        def cloudformation_type():
            return "AWS::Lambda::Alias"

        @classmethod
        def has_cfn_attr(cls, attr):
            return attr == "AliasArn"

        def get_cfn_attribute(self, attribute_name):
            if attribute_name == "AliasArn":
                return self.alias.arn
            from moto.cloudformation.exceptions import UnformattedGetAttTemplateException

            raise UnformattedGetAttTemplateException()

        @classmethod
        def create_from_cloudformation_json(
            cls, resource_name, cloudformation_json, account_id, region_name, **kwargs
        ):
            p = cloudformation_json["Properties"]
            function_name = _function_name(p["FunctionName"])
            alias = lambda_backends[account_id][region_name].create_alias(
                name=p["Name"],
                function_name=function_name,
                function_version=str(p["FunctionVersion"]),
                description=p.get("Description", ""),
                routing_config=_routing(p),
            )
            return cls(alias, function_name, account_id, region_name)

        @classmethod
        def update_from_cloudformation_json(
            cls, original_resource, new_resource_name, cloudformation_json, account_id,
            region_name,
        ):
            p = cloudformation_json["Properties"]
            function_name = _function_name(p["FunctionName"])
            if p["Name"] != original_resource.alias.name or (
                function_name != original_resource.function_name
            ):
                # Name and FunctionName require replacement.
                original_resource.delete(account_id, region_name)
                return cls.create_from_cloudformation_json(
                    new_resource_name, cloudformation_json, account_id, region_name
                )
            alias = lambda_backends[account_id][region_name].update_alias(
                name=p["Name"],
                function_name=function_name,
                function_version=str(p["FunctionVersion"]),
                description=p.get("Description", ""),
                routing_config=_routing(p) or {},
            )
            return cls(alias, function_name, account_id, region_name)

        def delete(self, account_id, region_name):
            lambda_backends[account_id][region_name].delete_alias(
                self.alias.name, self.function_name
            )

    return LambdaAliasResource


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


def _patch_ecs_task_definition_roles():
    try:
        from moto.ecs import models
    except Exception:  # moto not importable: nothing to patch
        return
    definition_class = models.TaskDefinition
    original_create = definition_class.create_from_cloudformation_json.__func__
    original_update = definition_class.update_from_cloudformation_json.__func__

    def with_roles(definition, cloudformation_json):
        properties = cloudformation_json.get("Properties") or {}
        if properties.get("ExecutionRoleArn"):
            definition.execution_role_arn = properties["ExecutionRoleArn"]
        if properties.get("TaskRoleArn"):
            definition.task_role_arn = properties["TaskRoleArn"]
        return definition

    def create_from_cloudformation_json(
        cls, resource_name, cloudformation_json, account_id, region_name, **kwargs
    ):
        definition = original_create(
            cls, resource_name, cloudformation_json, account_id, region_name, **kwargs
        )
        return with_roles(definition, cloudformation_json)

    def update_from_cloudformation_json(
        cls, original_resource, new_resource_name, cloudformation_json, account_id,
        region_name,
    ):
        definition = original_update(
            cls, original_resource, new_resource_name, cloudformation_json, account_id,
            region_name,
        )
        return with_roles(definition, cloudformation_json)

    definition_class.create_from_cloudformation_json = classmethod(
        create_from_cloudformation_json
    )
    definition_class.update_from_cloudformation_json = classmethod(
        update_from_cloudformation_json
    )


def _patch_vpc_dns_attributes():
    try:
        from moto.ec2.models import vpcs
    except Exception:  # moto not importable: nothing to patch
        return
    vpc_class = vpcs.VPC
    original_create = vpc_class.create_from_cloudformation_json.__func__

    def create_from_cloudformation_json(
        cls, resource_name, cloudformation_json, account_id, region_name, **kwargs
    ):
        vpc = original_create(
            cls, resource_name, cloudformation_json, account_id, region_name, **kwargs
        )
        properties = cloudformation_json.get("Properties") or {}
        for name, attribute in (
            ("EnableDnsSupport", "enable_dns_support"),
            ("EnableDnsHostnames", "enable_dns_hostnames"),
        ):
            if name in properties:
                value = properties[name]
                setattr(vpc, attribute, value is True or str(value).lower() == "true")
        return vpc

    vpc_class.create_from_cloudformation_json = classmethod(create_from_cloudformation_json)


def _patch_subnet_route_table_association():
    try:
        from moto.ec2.models import ec2_backends
        from moto.ec2.models import subnets
    except Exception:  # moto not importable: nothing to patch
        return
    association_class = subnets.SubnetRouteTableAssociation
    original_create = association_class.create_from_cloudformation_json.__func__

    def create_from_cloudformation_json(
        cls, resource_name, cloudformation_json, account_id, region_name, **kwargs
    ):
        association = original_create(
            cls, resource_name, cloudformation_json, account_id, region_name, **kwargs
        )
        ec2_backends[account_id][region_name].associate_route_table(
            association.route_table_id, subnet_id=association.subnet_id
        )
        return association

    association_class.create_from_cloudformation_json = classmethod(
        create_from_cloudformation_json
    )


def _enforce_template_body_limit():
    try:
        from moto.cloudformation import responses
        from moto.cloudformation.exceptions import ValidationError
    except Exception:  # moto not importable: nothing to patch
        return
    response_class = responses.CloudFormationResponse
    limit = 51200

    def _limited(original):
        def handler(self):
            body = self._get_param("TemplateBody")
            if body is not None and len(body.encode("utf-8")) > limit:
                raise ValidationError(
                    message="1 validation error detected: Value at 'templateBody' failed to "
                    f"satisfy constraint: Member must have length less than or equal to {limit}"
                )
            return original(self)

        return handler

    for operation in ("create_change_set", "create_stack", "update_stack", "validate_template"):
        setattr(response_class, operation, _limited(getattr(response_class, operation)))


_enforce_template_body_limit()
request_conformance.install()
request_conformance.add_route()
# After request_conformance: it records what that parse made of each request.
call_recording.install()
_patch_change_set_imports()
_patch_change_set_outputs()
_patch_change_set_names_per_stack()
_patch_load_balancer_full_name()
_patch_ecs_external_service()
_patch_ecs_task_set_stability()
_patch_ecs_task_level_memory()
_patch_ecs_task_definition_roles()
_patch_sub_parameter_references()
_patch_lambda_inline_code_update()
_patch_lambda_version_resource()
_patch_vpc_dns_attributes()
_patch_subnet_route_table_association()
# Kept referenced: moto finds CloudFormation models through __subclasses__().
_METRIC_ALARM_RESOURCE = _add_cloudwatch_alarm_resource()
_LAMBDA_ALIAS_RESOURCE = _add_lambda_alias_resource()
_add_ses_messages_route()
