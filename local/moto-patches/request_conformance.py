"""Request conformance: every request moto serves is held to the constraints its AWS service
model documents, as AWS's front end holds it, before moto acts on it. moto 5.2 checks almost
none of them (a 300-character table name, an empty continuation token or an unknown enum value
go through), so a request AWS would refuse with a ValidationException works locally.

The constraints are botocore's service models (`min`, `max`, `pattern`, `enum`, `required`, list
and map sizes, number ranges), the same models the SDKs are generated from. The request is parsed
with moto's own protocol parsers (query, JSON, REST-JSON, REST-XML) into the operation's input
shape, then walked. A violation answers HTTP 400 with AWS's message shape ("1 validation error
detected: Value '…' at 'tableName' failed to satisfy constraint: Member must have length less
than or equal to 255") and is printed on moto's stderr, so the local stack's log says which
function sent what.

Not checked, and why: a pattern Python's `re` cannot compile (botocore patterns are written for
Java's regex engine; such a pattern is skipped, never guessed); blob and timestamp contents;
constraints a service applies beyond its model (those that matter are patches of their own in
sitecustomize.py).
"""

import json
import re
import sys
from functools import lru_cache

# How much of a refused value the message quotes (AWS's messages quote it whole; a long
# template body would drown the log).
_MAX_SHOWN = 60


@lru_cache(maxsize=None)
def _pattern(text):
    try:
        return re.compile(text, re.DOTALL)
    except re.error:
        return None


def _shown(value):
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN] + "…"


def _camel(name):
    return name[:1].lower() + name[1:]


def violations(shape, value, path=""):
    """The constraints of `shape` that `value` breaks, as AWS words them, each with its path."""
    found = []
    meta = shape.metadata
    kind = shape.type_name
    where = path or shape.name

    def fail(constraint):
        found.append(
            f"Value '{_shown(value)}' at '{where}' failed to satisfy constraint: {constraint}"
        )

    if kind == "structure":
        if not isinstance(value, dict):
            return found
        for name in shape.required_members:
            if value.get(name) is None:
                found.append(f"Value null at '{_join(path, name)}' failed to satisfy constraint: "
                             "Member must not be null")
        for name, member in shape.members.items():
            if value.get(name) is not None:
                found.extend(violations(member, value[name], _join(path, name)))
    elif kind == "list":
        if not isinstance(value, list):
            return found
        _bounds(meta, len(value), "length", fail)
        for item in value:
            found.extend(violations(shape.member, item, f"{where}.member"))
    elif kind == "map":
        if not isinstance(value, dict):
            return found
        _bounds(meta, len(value), "length", fail)
        for key, item in value.items():
            found.extend(violations(shape.key, key, f"{where}.key"))
            found.extend(violations(shape.value, item, f"{where}.value"))
    elif kind == "string":
        if not isinstance(value, str):
            return found
        _bounds(meta, len(value), "length", fail)
        pattern = meta.get("pattern")
        if pattern is not None:
            compiled = _pattern(pattern)
            if compiled is not None and compiled.fullmatch(value) is None:
                fail(f"Member must satisfy regular expression pattern: {pattern}")
        enum = shape.enum
        if enum and value not in enum:
            fail(f"Member must satisfy enum value set: [{', '.join(enum)}]")
    elif kind in ("integer", "long", "float", "double"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return found
        _bounds(meta, value, "value", fail)
    return found


def _bounds(meta, measure, what, fail):
    """The model's `min` and `max` on a length or a value."""
    if "min" in meta and measure < meta["min"]:
        fail(f"Member must have {what} greater than or equal to {meta['min']}")
    if "max" in meta and measure > meta["max"]:
        fail(f"Member must have {what} less than or equal to {meta['max']}")


def _join(path, name):
    return f"{path}.{_camel(name)}" if path else _camel(name)


def install():
    # Imported by sitecustomize in moto's server only: a moto this cannot patch fails its start
    # loudly ("Error in sitecustomize", which the local stack reports) rather than serving
    # unchecked requests.
    from moto.core import responses
    from moto.core.parse import PROTOCOL_PARSERS
    from moto.core.request import determine_request_protocol
    from moto.core.utils import get_service_model

    base = responses.BaseResponse

    def input_of(self, request):
        """The request parsed into its operation's input shape, or None when it is not an AWS
        operation moto's parsers know (moto's own routes, an operation missing from the model).
        """
        action = self._get_action()
        if not action:
            return None
        model = get_service_model(self.boto3_service_name)
        operation = model.operation_model(action)
        protocol = determine_request_protocol(model, request.content_type)
        parser = PROTOCOL_PARSERS[protocol](operation, map_type=dict)
        params = parser.parse(
            {
                "method": request.method,
                "values": request.values,
                "headers": request.headers,
                "body": request.data,
                "url_path": request.path,
                "url_params": getattr(self, "uri_match", None),
            }
        )
        return operation, params

    def _dispatch(self, request, full_url=None, headers=None):
        self.setup_class(request, full_url, headers)
        try:
            parsed = input_of(self, request)
        except Exception:
            parsed = None
        # What call_recording.py records of the request (when the local stack records calls).
        self.shipgate_input = parsed
        if parsed is not None:
            operation, params = parsed
            found = violations(operation.input_shape, params) if operation.input_shape else []
            if found:
                message = (
                    f"{len(found)} validation error{'s' if len(found) > 1 else ''} detected: "
                    + "; ".join(found)
                )
                print(
                    f"shipgate request conformance: {self.boto3_service_name} "
                    f"{operation.name} refused: {message}",
                    file=sys.stderr,
                    flush=True,
                )
                return _refusal(self, operation, message)
        return self.call_action()

    base._dispatch = _dispatch


def _refusal(response, operation, message):
    """A ValidationException in the protocol the request came in."""
    protocol = operation.service_model.protocol
    if protocol in ("json", "rest-json"):
        body = json.dumps({"__type": "ValidationException", "message": message})
        headers = {
            "Content-Type": "application/x-amz-json-1.1",
            "x-amzn-ErrorType": "ValidationException",
        }
        return 400, headers, body
    code = "ValidationError" if protocol == "query" else "InvalidArgument"
    from xml.sax.saxutils import escape

    body = (
        "<ErrorResponse><Error><Type>Sender</Type>"
        f"<Code>{code}</Code><Message>{escape(message)}</Message></Error>"
        "<RequestId>shipgate-request-conformance</RequestId></ErrorResponse>"
    )
    return 400, {"Content-Type": "text/xml"}, body


def add_route():
    """`POST /moto-api/shipgate/conformance` with `{"service", "operation", "input"}` (a JSON
    protocol request's body): the violations of that operation's model, as a JSON list of
    messages. What the local stack's own stand-ins (CodePipeline) hold their requests to, so the
    constraints are read from one place."""
    from moto.core.utils import get_service_model
    from moto.moto_api._internal import urls

    def conformance(request, full_url, headers):
        asked = json.loads(request.data or b"{}")
        operation = get_service_model(asked["service"]).operation_model(asked["operation"])
        found = violations(operation.input_shape, asked.get("input") or {})
        return 200, {"Content-Type": "application/json"}, json.dumps(found)

    urls.url_paths["{0}/moto-api/shipgate/conformance"] = conformance
