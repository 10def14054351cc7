"""template.yaml's voice cold-start options: SnapStart and provisioned concurrency, on and off.

Both apply to published versions only, so every route of a voice function must invoke its alias.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from devtools.template import ROOT, TEMPLATE, load_template
from tests.test_sam_cli import SAM
from tests.test_template import PARAMETERS, resolved, resolver_for

VOICE = ("IncomingCallFunction", "VoiceRelayFunction", "VoiceActionFunction")
OTHERS = ("InboundSmsFunction", "HandoffDispatchFunction", "HandoffReleaseFunction")
OPTIONS = {
    "off": {},
    "snapstart": {"VoiceSnapStart": "true"},
    "provisioned": {"VoiceProvisionedConcurrency": "2"},
}


@pytest.fixture(scope="module")
def transformed():
    from samtranslator.translator.transform import transform

    from devtools.template import load_template

    class NoManagedPolicies:
        def load(self):
            return {}

    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    template = json.loads(json.dumps(load_template()))
    for resource in template["Resources"].values():
        for key in ("CodeUri", "ContentUri"):
            if key in resource.get("Properties", {}):
                resource["Properties"][key] = "s3://artifacts-bucket/" + key.lower()
    return transform(template, dict(PARAMETERS), NoManagedPolicies())


def resolved_resources(transformed, option: str) -> dict:
    resolver = resolver_for(transformed, **OPTIONS[option])
    lambdas = ("AWS::Lambda::Function", "AWS::Lambda::Alias", "AWS::Lambda::Version")
    return {
        logical_id: {**resource, "Properties": resolved(resource.get("Properties", {}), resolver)}
        for logical_id, resource in transformed["Resources"].items()
        if resource["Type"] in lambdas and ("Condition" not in resource or resolver.condition(resource["Condition"]))
    }


@pytest.mark.parametrize("option", OPTIONS)
def test_each_voice_function_is_published_behind_the_alias_live(transformed, option):
    resources, raw = resolved_resources(transformed, option), transformed["Resources"]
    for function in VOICE:
        alias = raw[f"{function}Aliaslive"]
        assert alias["Type"] == "AWS::Lambda::Alias" and alias["Properties"]["Name"] == "live"
        assert alias["Properties"]["FunctionName"] == {"Ref": function}
        version = alias["Properties"]["FunctionVersion"]["Fn::GetAtt"][0]
        assert raw[version]["Type"] == "AWS::Lambda::Version" and version in resources
        assert raw[version]["Properties"]["FunctionName"] == {"Ref": function}
        assert raw[version]["DeletionPolicy"] == "Delete"  # a replaced version's snapshot is not kept (billed)
    for function in OTHERS:
        assert not any(k.startswith(f"{function}Alias") or k.startswith(f"{function}Version") for k in resources)


@pytest.mark.parametrize(("option", "applied"), [("off", "None"), ("snapstart", "PublishedVersions")])
def test_snapstart_follows_its_parameter_on_the_voice_functions_only(transformed, option, applied):
    resources = resolved_resources(transformed, option)
    for function in VOICE:
        assert resources[function]["Properties"]["SnapStart"] == {"ApplyOn": applied}
    for function in OTHERS:
        assert "SnapStart" not in resources[function]["Properties"]


@pytest.mark.parametrize(("option", "executions"), [("off", None), ("snapstart", None), ("provisioned", "2")])
def test_provisioned_concurrency_is_set_on_the_alias(transformed, option, executions):
    resources = resolved_resources(transformed, option)
    for function in VOICE:
        config = resources[f"{function}Aliaslive"]["Properties"].get("ProvisionedConcurrencyConfig")
        assert config == ({"ProvisionedConcurrentExecutions": executions} if executions else None)


def test_every_route_of_a_voice_function_invokes_its_alias(transformed):
    resources = transformed["Resources"]
    api = next(v for v in resources.values() if v["Type"] == "AWS::ApiGatewayV2::Api" and "Body" in v["Properties"])
    for path, function in (("/voice", "IncomingCallFunction"), ("/voice/action", "VoiceActionFunction")):
        uri = json.dumps(api["Properties"]["Body"]["paths"][path]["post"]["x-amazon-apigateway-integration"]["uri"])
        assert f"${{{function}Aliaslive}}" in uri, uri
    websocket = json.dumps(resources["VoiceRelayIntegration"]["Properties"]["IntegrationUri"])
    assert '"Ref": "VoiceRelayFunctionAliaslive"' in websocket and "VoiceRelayFunction.Arn" not in websocket
    permissions = {
        json.dumps(v["Properties"]["FunctionName"])
        for v in resources.values()
        if v["Type"] == "AWS::Lambda::Permission"
    }
    for function in VOICE:
        assert json.dumps({"Ref": f"{function}Aliaslive"}) in permissions
        assert json.dumps({"Ref": function}) not in permissions  # nothing invokes $LATEST


def test_snapstart_and_provisioned_concurrency_together_are_refused_before_deploying(transformed):
    rule = transformed["Rules"]["VoiceSnapStartOrProvisionedConcurrency"]
    for parameters, refused in (
        ({"VoiceSnapStart": "true", "VoiceProvisionedConcurrency": "2"}, True),
        ({"VoiceSnapStart": "true"}, False),
        ({"VoiceProvisionedConcurrency": "2"}, False),
    ):
        resolver = resolver_for(transformed, **parameters)
        applies = resolver._truth(rule["RuleCondition"])
        holds = all(resolver._truth(assertion["Assert"]) for assertion in rule["Assertions"])
        assert (applies and not holds) is refused, parameters


def with_defaults(tmp_path: Path, **defaults: str) -> Path:
    """A copy of the template whose parameters default to `defaults`: what `sam deploy` would be given."""
    text = TEMPLATE.read_text()
    for name, value in defaults.items():
        start = text.index(f"\n  {name}:\n")
        line = text.index("    Default: ", start)
        end = text.index("\n", line)
        text = text[:line] + f'    Default: "{value}"' + text[end:]
    copy = tmp_path / "template.yaml"
    copy.write_text(text)
    return copy


@pytest.mark.parametrize("option", ["snapstart", "provisioned"])
def test_cfn_lint_is_clean_with_each_option_on(tmp_path, option):
    from cfnlint.api import ManualArgs, lint_file

    matches = lint_file(with_defaults(tmp_path, **OPTIONS[option]), config=ManualArgs(include_checks=["I"]))
    assert [str(m) for m in matches] == []


@pytest.mark.slow
@pytest.mark.skipif(
    not SAM and not os.environ.get("CI"), reason="SAM CLI not installed: `make test` installs it in .venv-sam"
)
@pytest.mark.parametrize("option", ["off", "snapstart", "provisioned"])
def test_sam_validate_lint_with_each_option(tmp_path, option):
    assert SAM, "CI must run this: the SAM CLI was not found (SAM_CLI or PATH)"
    template = with_defaults(tmp_path, **OPTIONS[option]) if OPTIONS[option] else TEMPLATE
    result = subprocess.run(
        [SAM, "validate", "--lint", "--template-file", str(template), "--region", "us-east-1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "SAM_CLI_TELEMETRY": "0", "HOME": str(tmp_path)},
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "is a valid SAM Template" in result.stdout + result.stderr


def test_provisioned_concurrency_takes_only_a_whole_number_of_environments():
    parameter = load_template()["Parameters"]["VoiceProvisionedConcurrency"]
    pattern = re.compile(parameter["AllowedPattern"])
    assert parameter["Type"] == "String"  # AllowedPattern applies to strings only
    assert all(pattern.fullmatch(value) for value in ("0", "1", "25", "9999"))
    # "00" would pass for provisioned (not "0") while provisioning none; the others fail at deploy.
    assert not any(pattern.fullmatch(value) for value in ("00", "01", "1.5", "-1", "", " 2", "10000"))
