"""What template.yaml says about its functions: handler module, environment, routes, triggers.

The local stack reads everything from here, so a route, a variable or a function added to
the template needs no change in the tools.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from devtools.template import ROOT, load_template


class TemplateError(RuntimeError):
    """The template holds something the local tools cannot resolve; the message says what."""


@dataclass(frozen=True)
class HttpRoute:
    method: str
    path: str
    function: str


@dataclass(frozen=True)
class StreamTrigger:
    function: str
    table: str  # logical id of the table whose stream it reads
    properties: dict[str, Any]


@dataclass
class FunctionSpec:
    logical_id: str
    handler: str  # e.g. inbound_sms.app.handler
    code_uri: str
    environment: dict[str, Any] = field(default_factory=dict)
    timeout: int = 3

    @property
    def module_path(self) -> str:
        module, _, _ = self.handler.rpartition(".")
        return module

    def load(self) -> Callable[[dict, Any], Any]:
        """Import the handler as Lambda does: `module.path` under CodeUri, then the function."""
        module_path, _, attribute = self.handler.rpartition(".")
        source = ROOT / self.code_uri / (module_path.replace(".", "/") + ".py")
        spec = importlib.util.spec_from_file_location(f"local_{self.logical_id}", source)
        module: ModuleType = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return getattr(module, attribute)


def functions() -> dict[str, FunctionSpec]:
    template = load_template()
    globals_ = template.get("Globals", {}).get("Function", {})
    specs = {}
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        props = resource["Properties"]
        env = {
            **globals_.get("Environment", {}).get("Variables", {}),
            **props.get("Environment", {}).get("Variables", {}),
        }
        specs[logical_id] = FunctionSpec(
            logical_id=logical_id,
            handler=props.get("Handler", globals_.get("Handler", "")),
            code_uri=props.get("CodeUri", globals_.get("CodeUri", "")),
            environment=env,
            timeout=int(props.get("Timeout", globals_.get("Timeout", 3))),
        )
    return specs


def http_routes() -> list[HttpRoute]:
    routes = []
    for logical_id, resource in load_template()["Resources"].items():
        for event in (resource.get("Properties", {}).get("Events") or {}).values():
            if event["Type"] == "HttpApi":
                props = event["Properties"]
                routes.append(HttpRoute(props.get("Method", "ANY").upper(), props["Path"], logical_id))
    return routes


def websocket_routes() -> dict[str, str]:
    """Route key -> function, following Route -> Integration -> the function's ARN."""
    resources = load_template()["Resources"]
    integrations = {}
    for logical_id, resource in resources.items():
        if resource["Type"] == "AWS::ApiGatewayV2::Integration":
            uri = str(resource["Properties"]["IntegrationUri"])
            # The function's ARN, or its alias (`!Ref Function.Alias`: the published version the routes invoke).
            match = re.search(r"\$\{(\w+)\.Arn\}|'Ref': '(\w+)\.Alias'", uri)
            if match:
                integrations[logical_id] = match.group(1) or match.group(2)
    routes = {}
    for resource in resources.values():
        if resource["Type"] == "AWS::ApiGatewayV2::Route":
            target = str(resource["Properties"].get("Target", ""))
            match = re.search(r"integrations/\$\{(\w+)\}", target)
            if match and match.group(1) in integrations:
                routes[resource["Properties"]["RouteKey"]] = integrations[match.group(1)]
    return routes


def stream_triggers() -> list[StreamTrigger]:
    triggers = []
    for logical_id, resource in load_template()["Resources"].items():
        for event in (resource.get("Properties", {}).get("Events") or {}).values():
            if event["Type"] == "DynamoDB":
                stream = event["Properties"]["Stream"]
                table = stream.get("Fn::GetAtt", [None])[0] if isinstance(stream, dict) else None
                if not table:
                    raise TemplateError(f"{logical_id}: only streams given as !GetAtt Table.StreamArn are supported")
                triggers.append(StreamTrigger(logical_id, table, event["Properties"]))
    return triggers


@dataclass(frozen=True)
class ScheduleTrigger:
    function: str
    event: str  # the event's name in the template, which names its EventBridge rule
    expression: str  # e.g. rate(1 minute)


def schedule_triggers() -> list[ScheduleTrigger]:
    triggers = []
    for logical_id, resource in load_template()["Resources"].items():
        for name, event in (resource.get("Properties", {}).get("Events") or {}).items():
            if event["Type"] in ("Schedule", "ScheduleV2"):
                props = event["Properties"]
                triggers.append(ScheduleTrigger(logical_id, name, props.get("Schedule") or props["ScheduleExpression"]))
    return triggers


class Resolver:
    """Resolves the intrinsics the template's environment uses, with local stand-ins for resources."""

    def __init__(self, physical_ids: Mapping[str, str], parameters: Mapping[str, str]) -> None:
        template = load_template()
        self._physical = dict(physical_ids)
        self._parameters = {
            name: str(parameters.get(name, spec.get("Default", "")))
            for name, spec in template.get("Parameters", {}).items()
        }
        self._conditions = template.get("Conditions", {})

    def value(self, node: Any) -> str:
        if isinstance(node, (str, int, float, bool)):
            return str(node).lower() if isinstance(node, bool) else str(node)
        if isinstance(node, dict) and len(node) == 1:
            ((name, argument),) = node.items()
            if name == "Ref":
                return self._ref(argument)
            if name == "Fn::If":
                condition, when_true, when_false = argument
                return self.value(when_true if self.condition(condition) else when_false)
            if name == "Fn::Sub":
                return re.sub(r"\$\{([^}]+)\}", lambda m: self._ref(m.group(1)), argument)
        raise TemplateError(f"cannot resolve {node!r} locally")

    def condition(self, name: str) -> bool:
        return self._truth(self._conditions[name])

    def _truth(self, node: Any) -> bool:
        ((name, argument),) = node.items()
        if name == "Fn::Equals":
            return self.value(argument[0]) == self.value(argument[1])
        if name == "Fn::Not":
            return not self._truth(argument[0])
        if name == "Condition":
            return self.condition(argument)
        raise TemplateError(f"unsupported condition {name}")

    def _ref(self, name: str) -> str:
        if name in self._parameters:
            return self._parameters[name]
        if name in self._physical:
            return self._physical[name]
        pseudo = {
            "AWS::Region": "us-east-1",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::AccountId": "123456789012",
            "AWS::Partition": "aws",
            "AWS::StackName": "local",
        }
        if name in pseudo:
            return pseudo[name]
        raise TemplateError(f"no local value for {name}")
