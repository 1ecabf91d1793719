"""Call recording: every request moto serves, with the access key that signed it, appended as one
JSON line to the file `SHIPGATE_CALL_LOG` names. The local stack gives each function its own
access key, so the IAM conformance check (shipgate-local's `recorder` and `iam_conformance`
modules) can tell which function made each call and evaluate it against that function's role,
as IAM evaluates each request in AWS. Without `SHIPGATE_CALL_LOG` nothing here is installed.

One line per request, by `kind`:
- `api`: an operation moto parses against its botocore model (every service but S3): the
  service, the operation, its input as parsed (the same parse request_conformance.py holds to
  the model), the account and region it acted in, and the answer's status. A successful STS
  `AssumeRole` also names the access key it issued (`issued_access_key`), which is how the
  recorder knows whose session later calls come from.
- `s3`: S3 requests, which moto serves outside the botocore parsers: method, path, query and the
  headers that decide what S3 authorizes (a copy's source, tagging).
- `task-launch`: tasks ECS starts for a successful `CreateTaskSet`, `CreateService`,
  `UpdateService` with a task definition, `RunTask` or `StartTask`: their task definition's
  execution role and each container's image and `awslogs` settings. In AWS the ECS agent pulls
  the images and writes the logs with that role, so these are calls of that role.
- `error`: a request this module could not record (the check fails on it rather than evaluate
  less than what ran).

And one change to what moto answers, only while recording: ECR's `GetAuthorizationToken` password
carries the caller's access key (`<account>-auth-token;caller=<key>`). In AWS the token stands
for the principal that requested it, and the registry authorizes each pull and push as that
principal; the local stack's registry front (which reads the key back) records them so.

Not recorded: what moto does inside itself for a request (CloudFormation creating a stack's
resources: in AWS the service acts with the stack's role or the caller's, which the check does not
evaluate), and moto's own routes (`/moto-api/...`).
"""

import base64
import json
import os
import re
import threading
from urllib.parse import parse_qs, urlparse

_LOCK = threading.Lock()
_CREDENTIAL = re.compile(r"Credential=([^/\s,]+)/")
_ISSUED_KEY = re.compile(r"<AccessKeyId>([^<]+)</AccessKeyId>")
# What the ECR token's password carries after the account's token.
CALLER_MARKER = ";caller="
# The S3 headers that change which actions S3 authorizes.
_S3_HEADERS = ("x-amz-copy-source", "x-amz-tagging", "x-amz-tagging-directive",
               "x-amz-metadata-directive", "range", "content-length")
_LAUNCHING = {"CreateTaskSet", "CreateService", "UpdateService", "RunTask", "StartTask"}


def _json_default(value):
    if isinstance(value, (bytes, bytearray)):
        return {"bytes": len(value)}
    return str(value)


def _write(path, line):
    text = json.dumps(line, default=_json_default, separators=(",", ":"))
    with _LOCK:
        with open(path, "a", encoding="utf-8") as log:
            log.write(text + "\n")


def _access_key(headers, query):
    authorization = headers.get("Authorization") or headers.get("authorization") or ""
    found = _CREDENTIAL.search(authorization)
    if found:
        return found.group(1)
    credential = (query.get("X-Amz-Credential") or [""])[0]
    return credential.split("/", 1)[0]


def _status(response):
    if isinstance(response, tuple) and response and isinstance(response[0], int):
        return response[0]
    return 200


def _body_text(response):
    if isinstance(response, tuple) and len(response) >= 3:
        body = response[2]
        if isinstance(body, bytes):
            return body.decode("utf-8", "replace")
        return body if isinstance(body, str) else ""
    return ""


def _record_api(path, response_obj, request, response):
    parsed = getattr(response_obj, "shipgate_input", None)
    query = parse_qs(urlparse(request.url).query) if getattr(request, "url", None) else {}
    line = {
        "kind": "api",
        "access_key": _access_key(request.headers, query),
        "service": response_obj.boto3_service_name,
        "operation": parsed[0].name if parsed else response_obj._get_action(),
        "params": parsed[1] if parsed else None,
        "account": response_obj.current_account,
        "region": response_obj.region,
        "status": _status(response),
    }
    if line["operation"] == "AssumeRole" and line["status"] == 200:
        issued = _ISSUED_KEY.search(_body_text(response))
        line["issued_access_key"] = issued.group(1) if issued else None
    _write(path, line)
    if line["operation"] in _LAUNCHING and line["status"] == 200 and parsed:
        _record_launch(path, response_obj, line)


def _get(mapping, *names):
    """A container definition's field, in the API's casing or CloudFormation's."""
    for name in names:
        if isinstance(mapping, dict) and mapping.get(name) is not None:
            return mapping[name]
    return None


def _record_launch(path, response_obj, line):
    task_definition = (line["params"] or {}).get("taskDefinition")
    if not task_definition:
        return
    from moto.ecs.models import ecs_backends

    backend = ecs_backends[line["account"]][line["region"]]
    definition = backend.describe_task_definition(task_definition)
    containers = []
    for container in definition.container_definitions:
        logs = _get(container, "logConfiguration", "LogConfiguration") or {}
        options = _get(logs, "options", "Options") or {}
        awslogs = None
        if _get(logs, "logDriver", "LogDriver") == "awslogs":
            awslogs = {
                "group": options.get("awslogs-group"),
                "region": options.get("awslogs-region") or line["region"],
                "prefix": options.get("awslogs-stream-prefix"),
            }
        containers.append({
            "name": _get(container, "name", "Name"),
            "image": _get(container, "image", "Image"),
            "awslogs": awslogs,
        })
    _write(path, {
        "kind": "task-launch",
        "cause": {"access_key": line["access_key"], "operation": line["operation"]},
        "account": line["account"],
        "region": line["region"],
        "task_definition": definition.arn,
        "execution_role": getattr(definition, "execution_role_arn", None),
        "containers": containers,
    })


def _record_s3(path, response_obj, request, full_url, response):
    url = urlparse(full_url)
    query = parse_qs(url.query, keep_blank_values=True)
    headers = {k.lower(): v for k, v in request.headers.items() if k.lower() in _S3_HEADERS}
    _write(path, {
        "kind": "s3",
        "access_key": _access_key(request.headers, query),
        "service": "s3",
        "method": request.method,
        "path": url.path,
        "query": query,
        "headers": headers,
        "account": response_obj.current_account,
        "region": response_obj.region,
        "status": _status(response),
    })


def _recorded(path, record, original):
    def handler(self, request, *args, **kwargs):
        response = original(self, request, *args, **kwargs)
        try:
            record(path, self, request, response, *args)
        except Exception as error:  # the request stands; the check is told what went unrecorded
            _write(path, {"kind": "error", "message": f"{type(error).__name__}: {error}"})
        return response

    return handler


def _caller_in_token(original):
    def get_authorization_token(self):
        result = original(self)
        key = _access_key(self.headers, {})
        for data in result.result.get("authorizationData", []):
            user, password = base64.b64decode(data["authorizationToken"]).decode().split(":", 1)
            token = f"{user}:{password}{CALLER_MARKER}{key}"
            data["authorizationToken"] = base64.b64encode(token.encode()).decode()
        return result

    return get_authorization_token


def install():
    path = os.environ.get("SHIPGATE_CALL_LOG")
    if not path:
        return
    from moto.core import responses
    from moto.ecr.responses import ECRResponse
    from moto.s3.responses import S3Response

    base = responses.BaseResponse
    base._dispatch = _recorded(
        path,
        lambda p, s, req, resp, *rest: _record_api(p, s, req, resp),
        base._dispatch,
    )

    def s3(p, s, req, resp, full_url=None, *rest):
        _record_s3(p, s, req, full_url or req.url, resp)

    # Both answer every S3 request (the ambiguous one calls one of them), each exactly once.
    S3Response.bucket_response = _recorded(path, s3, S3Response.bucket_response)
    S3Response.key_response = _recorded(path, s3, S3Response.key_response)
    ECRResponse.get_authorization_token = _caller_in_token(ECRResponse.get_authorization_token)
