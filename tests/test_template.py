"""template.yaml: lint-clean, transformable by the SAM translator, and true to the design's contracts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.bench.deployment import missing_bytecode
from devtools.template import ROOT, TEMPLATE, load_template

FUNCTIONS = {
    "InboundSmsFunction": "inbound_sms",
    "HandoffDispatchFunction": "handoff_dispatch",
    "IncomingCallFunction": "incoming_call",
    "VoiceRelayFunction": "voice_relay",
    "VoiceActionFunction": "voice_action",
    "HandoffReleaseFunction": "handoff_release",
    "HandoffTranscriptFunction": "handoff_transcript",
    "HandoffWatchdogFunction": "handoff_watchdog",
}
PARAMETERS = {"TwilioPhoneNumber": "+14155550199", "StudioHandoffFlowSid": "FW" + "0" * 32}


@pytest.fixture(scope="module")
def transformed():
    from samtranslator.translator.transform import transform

    class NoManagedPolicies:
        def load(self):
            return {}

    template = json.loads(json.dumps(load_template()))
    for resource in template["Resources"].values():  # what `sam package` does to local paths
        for key in ("CodeUri", "ContentUri"):
            if key in resource.get("Properties", {}):
                resource["Properties"][key] = "s3://artifacts-bucket/" + key.lower()
    return transform(template, dict(PARAMETERS), NoManagedPolicies())


def test_cfn_lint_is_clean():
    from cfnlint.api import ManualArgs, lint_file

    # Informational rules too: a clean template has nothing to say at any level.
    matches = lint_file(TEMPLATE, config=ManualArgs(include_checks=["I"]))
    assert [str(m) for m in matches] == []


def test_functions_have_the_contract_logical_ids(transformed):
    functions = {k for k, v in transformed["Resources"].items() if v["Type"] == "AWS::Lambda::Function"}
    assert set(FUNCTIONS) <= functions
    for logical_id in FUNCTIONS:
        props = transformed["Resources"][logical_id]["Properties"]
        assert props["Runtime"] == "python3.13"
        assert props["Architectures"] == [{"Ref": "Architecture"}]
        assert load_template()["Parameters"]["Architecture"]["Default"] == "arm64"


@pytest.mark.parametrize(
    ("path", "function", "method"),
    [
        ("/sms", "InboundSmsFunction", "post"),
        ("/voice", "IncomingCallFunction", "post"),
        ("/voice/action", "VoiceActionFunction", "post"),
        ("/handoff/release", "HandoffReleaseFunction", "post"),
        ("/handoff/transcript", "HandoffTranscriptFunction", "get"),
    ],
)
def test_http_routes_are_wired(transformed, path, function, method):
    api = next(
        v
        for v in transformed["Resources"].values()
        if v["Type"] == "AWS::ApiGatewayV2::Api" and "Body" in v["Properties"]
    )
    operation = api["Properties"]["Body"]["paths"][path]
    assert list(operation) == [method]
    assert function in json.dumps(operation)


def test_transcript_links_reach_the_http_api_and_the_page_only_reads(transformed):
    template = load_template()
    assert template["Parameters"]["TranscriptLinkSeconds"]["Default"] == 86400
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["TRANSCRIPT_LINK_SECONDS"] == {"Ref": "TranscriptLinkSeconds"}
    # The relay sees only the WebSocket API: it is told where the HTTP API serves the transcript.
    relay = template["Resources"]["VoiceRelayFunction"]["Properties"]["Environment"]["Variables"]
    assert relay["TRANSCRIPT_BASE_URL"] == {
        "Fn::Sub": "https://${HttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}"
    }
    statements = transformed["Resources"]["HandoffTranscriptFunctionRole"]["Properties"]["Policies"]
    actions = {
        action
        for policy in statements
        for statement in policy["PolicyDocument"]["Statement"]
        for action in (statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]])
    }
    assert actions == {"dynamodb:GetItem", "secretsmanager:GetSecretValue"}


def test_websocket_api_routes_every_frame_to_the_relay(transformed):
    resources = transformed["Resources"]
    assert resources["VoiceRelayApi"]["Properties"]["ProtocolType"] == "WEBSOCKET"
    routes = {v["Properties"]["RouteKey"] for v in resources.values() if v["Type"] == "AWS::ApiGatewayV2::Route"}
    assert routes == {"$connect", "$default", "$disconnect"}
    integration = resources["VoiceRelayIntegration"]["Properties"]
    assert "VoiceRelayFunctionAliaslive" in json.dumps(integration["IntegrationUri"])  # the alias, not $LATEST
    assert resources["VoiceRelayStage"]["Properties"]["AutoDeploy"] is True


def test_relay_may_only_manage_its_own_connections(transformed):
    policies = json.dumps(transformed["Resources"]["VoiceRelayFunctionRole"]["Properties"]["Policies"])
    assert "execute-api:ManageConnections" in policies
    assert "${VoiceRelayApi}/${VoiceRelayStage}/POST/@connections/*" in policies
    assert "${VoiceRelayApi}/${VoiceRelayStage}/DELETE/@connections/*" in policies  # closing a refused socket
    assert "/*/@connections" not in policies and "GET/@connections" not in policies
    for other in ("InboundSmsFunction", "IncomingCallFunction", "VoiceActionFunction", "HandoffDispatchFunction"):
        assert "ManageConnections" not in json.dumps(transformed["Resources"][f"{other}Role"]["Properties"])


def test_dispatch_reads_the_outbox_with_partial_failures_and_a_dead_letter_queue(transformed):
    mapping = next(
        v["Properties"] for v in transformed["Resources"].values() if v["Type"] == "AWS::Lambda::EventSourceMapping"
    )
    assert mapping["FunctionName"] == {"Ref": "HandoffDispatchFunction"}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BisectBatchOnFunctionError"] is True
    assert mapping["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": ["DispatchDeadLetterQueue", "Arn"]
    }
    pattern = json.loads(mapping["FilterCriteria"]["Filters"][0]["Pattern"])
    assert pattern["dynamodb"]["NewImage"]["kind"] == {"S": ["handoff"]}


def test_the_watchdog_runs_every_minute_and_may_only_query_the_promises_index(transformed):
    resources = transformed["Resources"]
    (rule,) = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::Events::Rule"]
    assert rule["ScheduleExpression"] == "rate(1 minute)"
    assert rule["Targets"][0]["Arn"] == {"Fn::GetAtt": ["HandoffWatchdogFunction", "Arn"]}
    statements = resources["HandoffWatchdogFunctionRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    actions = {a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert "dynamodb:Scan" not in actions
    (query,) = [s for s in statements if s["Action"] == "dynamodb:Query"]
    assert query["Resource"] == {"Fn::Sub": "${SessionsTable.Arn}/index/PromisesIndex"}
    assert load_template()["Resources"]["HandoffWatchdogFunction"]["Properties"]["Timeout"] < 60


def test_table_is_durable_and_expiring():
    table = load_template()["Resources"]["SessionsTable"]
    props = table["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expiresAt", "Enabled": True}
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert props["DeletionProtectionEnabled"] == {"Ref": "TableDeletionProtection"}
    assert props["StreamSpecification"]["StreamViewType"] in ("NEW_IMAGE", "NEW_AND_OLD_IMAGES")


def test_credentials_are_never_plain_parameters_or_variables():
    template = load_template()
    assert not any(
        "token" in name.lower() or ("secret" in name.lower() and name != "TwilioSecretArn")
        for name in template["Parameters"]
    )
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert "TWILIO_SECRET_ARN" in env
    # Declared for `sam local invoke --env-vars` only; deployed, they stay empty.
    assert env["TWILIO_AUTH_TOKEN"] == env["TWILIO_ACCOUNT_SID"] == env["HANDOFF_RELEASE_TOKEN"] == ""


def test_environment_names_are_the_design_contract():
    from agent_handoff.config import Settings

    known = set(Settings.variables()) | {
        "TWILIO_SECRET_ARN",
        "POWERTOOLS_LOG_LEVEL",
        "POWERTOOLS_METRICS_NAMESPACE",
        "POWERTOOLS_SERVICE_NAME",
    }
    template = load_template()
    names = set(template["Globals"]["Function"]["Environment"]["Variables"])
    for logical_id in FUNCTIONS:
        names |= set(template["Resources"][logical_id]["Properties"].get("Environment", {}).get("Variables", {}))
    assert names <= known, names - known


def test_outputs_give_every_webhook_url():
    outputs = load_template()["Outputs"]
    assert outputs["SmsWebhookUrl"]["Value"]["Fn::Sub"].endswith("/sms")
    assert outputs["VoiceWebhookUrl"]["Value"]["Fn::Sub"].endswith("/voice")
    assert "wss://" in json.dumps(outputs["RelayWebSocketUrl"]["Value"])


def _make(directory: Path, target: str, artifacts: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "-s", target, f"ARTIFACTS_DIR={artifacts}"],
        cwd=directory,
        check=True,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )


# Bytecode made by this interpreter, as the Makefiles make it for the runtime's own version.
HOST_BYTECODE = {
    "LAYER_PYTHON_VERSION": f"{sys.version_info.major}.{sys.version_info.minor}",
    "PYC_PYTHON": sys.executable,
}


def test_function_builds_hold_only_their_handler_and_its_bytecode(tmp_path):
    for logical_id, folder in FUNCTIONS.items():
        out = tmp_path / logical_id
        _make(ROOT / "functions", f"build-{logical_id}", out, **HOST_BYTECODE)
        files = [str(p.relative_to(out)) for p in sorted(out.rglob("*")) if p.is_file()]
        assert files == [f"{folder}/__pycache__/app.{sys.implementation.cache_tag}.pyc", f"{folder}/app.py"]
        assert missing_bytecode(out, sys.implementation.cache_tag) == []
        assert (out / folder / "app.py").read_bytes() == (ROOT / "functions" / folder / "app.py").read_bytes()
        handler = load_template()["Resources"][logical_id]["Properties"]["Handler"]
        assert handler == f"{folder}.app.handler"


def test_core_layer_ships_bytecode_for_the_runtime_version(tmp_path):
    _make(ROOT / "layers" / "core", "build-CoreLayer", tmp_path, **HOST_BYTECODE)
    assert (tmp_path / "python" / "agent_handoff" / "sms" / "service.py").is_file()
    assert missing_bytecode(tmp_path / "python", sys.implementation.cache_tag) == []
    stale = [p for p in (tmp_path / "python").rglob("*.pyc") if sys.implementation.cache_tag not in p.name]
    assert stale == []  # nothing left over from the developer's own caches


def test_without_a_runtime_interpreter_the_build_says_it_ships_no_bytecode(tmp_path):
    result = _make(ROOT / "layers" / "core", "build-CoreLayer", tmp_path, PYC_PYTHON="", LAYER_PYTHON_VERSION="3.13")
    assert "ships without bytecode" in result.stdout and "PYC_PYTHON" in result.stdout
    assert not list(tmp_path.rglob("*.pyc"))


def test_bytecode_of_the_wrong_python_version_fails_the_build(tmp_path):
    with pytest.raises(subprocess.CalledProcessError) as failed:
        _make(
            ROOT / "layers" / "core",
            "build-CoreLayer",
            tmp_path,
            PYC_PYTHON=sys.executable,
            LAYER_PYTHON_VERSION="3.99",
        )
    assert "the runtime is 3.99" in failed.value.stderr


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("make") is None, reason="make is a documented prerequisite")
def test_dependencies_layer_builds_for_arm64_without_python_313(tmp_path):
    _make(ROOT / "layers" / "dependencies", "build-DependenciesLayer", tmp_path, PYTHON=sys.executable, PYC_PYTHON="")
    site = tmp_path / "python"
    assert all((site / name).is_dir() for name in ("httpx", "urllib3", "aws_lambda_powertools"))
    # Of twilio, only what a function imports; none of the REST client's dependencies.
    assert sorted(p.name for p in (site / "twilio").iterdir()) == ["__init__.py", "request_validator.py", "twiml"]
    for unused in ("aiohttp", "requests", "jwt", "pydantic", "pydantic_core", "boto3"):  # boto3: the runtime has it
        assert not (site / unused).exists(), unused
    assert not list(site.rglob("*.so"))  # pure Python: nothing tied to the build machine


def test_alarms_watch_dead_letters_dispatch_failures_and_every_function():
    resources = load_template()["Resources"]
    alarms = {k: v["Properties"] for k, v in resources.items() if v["Type"] == "AWS::CloudWatch::Alarm"}
    assert alarms["DeadLetterQueueAlarm"]["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert alarms["DispatchFailuresAlarm"]["MetricName"] == "DispatchFailures"
    assert alarms["DispatchFailuresAlarm"]["Dimensions"] == [{"Name": "service", "Value": "handoff-dispatch"}]
    functions = {k for k, v in resources.items() if v["Type"] == "AWS::Serverless::Function"}
    watched = {a["Dimensions"][0]["Value"]["Ref"] for a in alarms.values() if a.get("MetricName") == "Errors"}
    assert watched == functions
    summed = {m["MetricStat"]["Metric"]["MetricName"] for m in alarms["WatchdogAlarm"]["Metrics"] if "MetricStat" in m}
    assert summed == {"WatchdogRecovered", "WatchdogFailed"}
    for alarm in alarms.values():
        assert alarm["AlarmActions"] == {"Fn::If": ["HasAlarmEmail", [{"Ref": "AlarmTopic"}], {"Ref": "AWS::NoValue"}]}
        assert alarm["TreatMissingData"] == "notBreaching"


def test_metrics_namespace_matches_the_alarms():
    template = load_template()
    namespace = template["Globals"]["Function"]["Environment"]["Variables"]["POWERTOOLS_METRICS_NAMESPACE"]
    assert template["Resources"]["DispatchFailuresAlarm"]["Properties"]["Namespace"] == namespace
    assert template["Globals"]["Function"]["Tracing"] == "Active"


def test_dashboard_body_is_json_once_substituted():
    import re

    body = load_template()["Resources"]["OperationsDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    rendered = re.sub(r"\$\{[^}]+\}", "x", body)
    widgets = json.loads(rendered)["widgets"]
    assert {w["properties"]["title"] for w in widgets} >= {"Handoffs by channel and trigger", "Function errors"}


def test_the_promises_index_is_created_from_the_template(aws):
    from devtools.samples import sample

    table = aws.dynamodb.describe_table(TableName=sample.TABLE_NAME)["Table"]
    (index,) = table["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "PromisesIndex"
    assert [k["AttributeName"] for k in index["KeySchema"]] == ["promise", "promiseDue"]


# -- IAM and key policies, evaluated -----------------------------------------------------------

ACCOUNT = "123456789012"  # the Resolver's stand-in for AWS::AccountId (region us-east-1)


NO_VALUE = object()


def resolved(node, resolver):
    """`node` with the template's intrinsics resolved for one set of parameters; NoValue removed."""
    if isinstance(node, list):
        return [item for item in (resolved(i, resolver) for i in node) if item is not NO_VALUE]
    if isinstance(node, dict):
        if node == {"Ref": "AWS::NoValue"}:
            return NO_VALUE
        if list(node) == ["Fn::If"]:
            condition, when_true, when_false = node["Fn::If"]
            return resolved(when_true if resolver.condition(condition) else when_false, resolver)
        if list(node) == ["Fn::GetAtt"]:
            return f"arn:local:{node['Fn::GetAtt'][0]}"
        if list(node) in (["Ref"], ["Fn::Sub"]):
            return resolver.value(node)
        return {k: v for k, v in ((k, resolved(v, resolver)) for k, v in node.items()) if v is not NO_VALUE}
    return node


def _listed(value) -> list:
    return value if isinstance(value, list) else [value]


def _condition_holds(condition: dict, context: dict[str, str]) -> bool:
    from fnmatch import fnmatchcase

    for operator, tests in condition.items():
        for key, expected in tests.items():
            actual = context.get(key)
            if actual is None:
                return False
            if operator in ("StringEquals", "ArnEquals"):
                ok = actual in _listed(expected)
            elif operator in ("StringLike", "ArnLike"):
                ok = any(fnmatchcase(actual, pattern) for pattern in _listed(expected))
            elif operator == "Bool":
                ok = actual.lower() in [str(v).lower() for v in _listed(expected)]
            else:
                raise AssertionError(f"the test's evaluator does not know {operator}")
            if not ok:
                return False
    return True


def allows(statements, action, resource, *, principal=None, context=None) -> bool:
    """IAM's verdict, for what these tests need: some Allow matches and no Deny does."""
    from fnmatch import fnmatchcase

    def matches(statement) -> bool:
        if principal is not None:
            granted = statement.get("Principal")
            kind, name = principal
            if granted != "*" and name not in _listed(granted.get(kind, [])):
                return False
        return (
            any(fnmatchcase(action.lower(), a.lower()) for a in _listed(statement["Action"]))
            and any(fnmatchcase(resource, r) for r in _listed(statement["Resource"]))
            and _condition_holds(statement.get("Condition", {}), context or {})
        )

    matching = [s for s in statements if matches(s)]
    return any(s["Effect"] == "Allow" for s in matching) and not any(s["Effect"] == "Deny" for s in matching)


def resolver_for(transformed, **parameters):
    from devtools.template_functions import Resolver

    physical = {logical_id: f"local-{logical_id}" for logical_id in transformed["Resources"]}
    # `${Table.Arn}` in a Sub: a stand-in ARN per resource, for policies that scope to one.
    physical.update({f"{logical_id}.Arn": f"arn:local:{logical_id}" for logical_id in transformed["Resources"]})
    return Resolver(physical, {**PARAMETERS, **parameters})


def role_statements(transformed, function: str, **parameters) -> list[dict]:
    policies = transformed["Resources"][f"{function}Role"]["Properties"]["Policies"]
    return [
        s for p in resolved(policies, resolver_for(transformed, **parameters)) for s in p["PolicyDocument"]["Statement"]
    ]


def test_alarm_topic_has_its_own_key_that_cloudwatch_may_use(transformed):
    resources = transformed["Resources"]
    assert "alias/aws/sns" not in json.dumps(transformed)  # CloudWatch cannot publish under the AWS managed key
    topic = resources["AlarmTopic"]["Properties"]
    assert topic["KmsMasterKeyId"] == {"Ref": "AlarmTopicKey"}
    key = resources["AlarmTopicKey"]
    assert key["Type"] == "AWS::KMS::Key" and key["Properties"]["EnableKeyRotation"] is True
    for logical_id in ("AlarmTopic", "AlarmTopicKey", "AlarmTopicKeyAlias", "AlarmTopicPolicy"):
        assert resources[logical_id]["Condition"] == "HasAlarmEmail", logical_id  # the key's 1 USD/month too
    resolver = resolver_for(transformed, AlarmEmail="ops@example.com")
    assert resolver.condition("HasAlarmEmail") and not resolver_for(transformed).condition("HasAlarmEmail")

    key_policy = resolved(key["Properties"]["KeyPolicy"], resolver)["Statement"]
    ours = {"aws:SourceAccount": ACCOUNT, "aws:SourceArn": f"arn:aws:cloudwatch:us-east-1:{ACCOUNT}:alarm:dlq"}
    theirs = {"aws:SourceAccount": "999999999999", "aws:SourceArn": "arn:aws:cloudwatch:us-east-1:999999999999:alarm:x"}
    cloudwatch = ("Service", "cloudwatch.amazonaws.com")
    events = ("Service", "events.amazonaws.com")
    for action in ("kms:GenerateDataKey", "kms:Decrypt"):
        assert allows(key_policy, action, "*", principal=cloudwatch, context=ours)
        assert not allows(key_policy, action, "*", principal=cloudwatch, context=theirs)
        assert allows(key_policy, action, "*", principal=events)
    assert not allows(key_policy, "kms:Encrypt", "*", principal=cloudwatch, context=ours)
    assert allows(key_policy, "kms:PutKeyPolicy", "*", principal=("AWS", f"arn:aws:iam::{ACCOUNT}:root"))

    topic_policy = resolved(resources["AlarmTopicPolicy"]["Properties"], resolver)
    assert topic_policy["Topics"] == ["local-AlarmTopic"]
    statements = topic_policy["PolicyDocument"]["Statement"]
    tls = {"aws:SecureTransport": "true"}
    rule = {"aws:SourceAccount": ACCOUNT, "aws:SourceArn": f"arn:aws:events:us-east-1:{ACCOUNT}:rule/watchdog"}
    assert allows(statements, "sns:Publish", "local-AlarmTopic", principal=cloudwatch, context={**ours, **tls})
    assert allows(statements, "sns:Publish", "local-AlarmTopic", principal=events, context={**rule, **tls})
    assert not allows(statements, "sns:Publish", "local-AlarmTopic", principal=cloudwatch, context={**theirs, **tls})
    plain = {**ours, "aws:SecureTransport": "false"}
    assert not allows(statements, "sns:Publish", "local-AlarmTopic", principal=cloudwatch, context=plain)


MODEL_FUNCTIONS = ("InboundSmsFunction", "VoiceRelayFunction")
INVOKE = ("bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream")


@pytest.mark.parametrize("function", MODEL_FUNCTIONS)
@pytest.mark.parametrize(
    ("profile", "model", "regions"),
    [
        (
            "us.anthropic.claude-sonnet-4-20250514-v1:0",
            "anthropic.claude-sonnet-4-20250514-v1:0",
            ["us-east-1", "us-east-2", "us-west-2"],
        ),
        (
            "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "anthropic.claude-sonnet-4-5-20250929-v1:0",
            ["", "eu-west-1"],
        ),
    ],
)
def test_bedrock_inference_profile_reaches_its_models_only_through_the_profile(
    transformed, function, profile, model, regions
):
    statements = role_statements(transformed, function, LlmProvider="bedrock", BedrockModelId=profile)
    profile_arn = f"arn:aws:bedrock:us-east-1:{ACCOUNT}:inference-profile/{profile}"
    other_profile = f"arn:aws:bedrock:us-east-1:{ACCOUNT}:inference-profile/us.meta.llama3-3-70b-instruct-v1:0"
    for action in INVOKE:
        assert allows(statements, action, profile_arn)
        assert not allows(statements, action, other_profile)
        assert not allows(statements, action, profile_arn.replace(ACCOUNT, "999999999999"))
        for region in regions:
            routed = f"arn:aws:bedrock:{region}::foundation-model/{model}"
            assert allows(statements, action, routed, context={"bedrock:InferenceProfileArn": profile_arn})
            assert not allows(statements, action, routed)  # never straight to another Region
            assert not allows(statements, action, routed, context={"bedrock:InferenceProfileArn": other_profile})


@pytest.mark.parametrize("function", MODEL_FUNCTIONS)
def test_bedrock_foundation_model_is_invoked_in_the_stack_region(transformed, function):
    model = load_template()["Parameters"]["BedrockModelId"]["Default"]
    statements = role_statements(transformed, function, LlmProvider="bedrock")
    for action in INVOKE:
        assert allows(statements, action, f"arn:aws:bedrock:us-east-1::foundation-model/{model}")
        assert not allows(statements, action, "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-pro-v1:0")
        assert not allows(statements, action, f"arn:aws:bedrock:us-west-2::foundation-model/{model}")
    assert (
        role_statements(transformed, "InboundSmsFunction", LlmProvider="bedrock")[-2:]
        == role_statements(transformed, "VoiceRelayFunction", LlmProvider="bedrock")[-2:]
    )


@pytest.mark.parametrize("provider", ["rules", "openai"])
def test_no_bedrock_permission_unless_the_provider_is_bedrock(transformed, provider):
    for function in FUNCTIONS:
        statements = role_statements(transformed, function, LlmProvider=provider)
        assert statements and "bedrock" not in json.dumps(statements)
    for function in set(FUNCTIONS) - set(MODEL_FUNCTIONS):
        assert "bedrock" not in json.dumps(role_statements(transformed, function, LlmProvider="bedrock"))
