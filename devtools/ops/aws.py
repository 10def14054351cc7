"""The operator's AWS session for `make configure` and `make redrive`: checked before it is used.

boto3 reads AWS_DEFAULT_REGION but not AWS_REGION, which most tools (and Lambda) set; both are
honoured here. A missing region or missing credentials is said in one line, with what to do,
before any request; AWS's own refusals (no such stack, access denied, expired token) too.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from devtools.cli import UserError


class OpsError(UserError):
    """What the operator must fix (exit status 2); the message says what."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=2)


def session() -> Any:
    import boto3
    from botocore.exceptions import BotoCoreError

    with errors():
        current = boto3.session.Session(region_name=os.environ.get("AWS_REGION") or None)
        if not current.region_name:
            raise OpsError("no AWS region: set AWS_REGION (e.g. AWS_REGION=us-east-1), or a region in your AWS profile")
        try:
            credentials = current.get_credentials()
        except BotoCoreError as exc:  # an expired SSO session, a broken profile
            raise OpsError(f"cannot load your AWS credentials: {exc}") from exc
        if credentials is None:
            raise OpsError(
                "no AWS credentials: sign in (`aws sso login`, `aws configure`) or set AWS_PROFILE, "
                "or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            )
    return current


@contextlib.contextmanager
def errors(doing: str = "") -> Iterator[None]:
    """AWS's exceptions as one line each; `doing` says what was being attempted."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
    )

    prefix = f"{doing}: " if doing else ""
    try:
        yield
    except NoRegionError as exc:
        raise OpsError("no AWS region: set AWS_REGION (e.g. AWS_REGION=us-east-1)") from exc
    except NoCredentialsError as exc:
        raise OpsError("no AWS credentials: sign in (`aws sso login`, `aws configure`) or set AWS_PROFILE") from exc
    except EndpointConnectionError as exc:
        raise OpsError(f"{prefix}cannot reach AWS ({exc})") from exc
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise OpsError(f"{prefix}{error.get('Code', 'error')}: {error.get('Message', exc)}") from exc
    except BotoCoreError as exc:
        raise OpsError(f"{prefix}{exc}") from exc


def stack_outputs(cloudformation: Any, stack_name: str) -> dict[str, str]:
    with errors(f"cannot read stack {stack_name!r}"):
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}


def stack_parameters(cloudformation: Any, stack_name: str) -> dict[str, str]:
    with errors(f"cannot read stack {stack_name!r}"):
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    return {p["ParameterKey"]: p.get("ParameterValue", "") for p in stacks[0].get("Parameters", [])}
