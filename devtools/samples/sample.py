"""The made-up credentials and numbers that sample events are signed with.

They are test values, not secrets: events/env.json carries them so that
`sam local invoke -e events/... --env-vars events/env.json` verifies the samples' signatures.
"""

ACCOUNT_SID = "AC" + "5a3f" * 8
AUTH_TOKEN = "sample_auth_token_5a3f5a3f5a3f5a3f"
AGENT_NUMBER = "+14155550199"
CUSTOMER_NUMBER = "+14155550100"
FLOW_SID = "FW" + "0b1c" * 8
TABLE_NAME = "ai-handoff-sessions"
DEAD_LETTER_QUEUE_NAME = "ai-handoff-dispatch-dlq"
RELEASE_TOKEN = "sample_release_token_0b1c0b1c0b1c0b1c0b1c"
# Credentials no AWS account accepts, for moto; and the endpoint mode moto can serve
# (botocore's account-based endpoints for stream ARNs answer "404 Not yet implemented" there).
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
}
HANDOFF_ATTRIBUTES = '{"department":"support","priority":"normal"}'


def environment(**overrides: str) -> dict[str, str]:
    """Every variable the functions read, as a local run or a test sets them."""
    env = {
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "HANDOFF_RELEASE_TOKEN": RELEASE_TOKEN,
        "TWILIO_PHONE_NUMBER": AGENT_NUMBER,
        "TWILIO_STUDIO_HANDOFF_FLOW_SID": FLOW_SID,
        "HANDOFF_ATTRIBUTES": HANDOFF_ATTRIBUTES,
        "TWILIO_MEMORY_STORE_ID": "",
        "SESSIONS_TABLE_NAME": TABLE_NAME,
        "LLM_PROVIDER": "rules",
        "POWERTOOLS_LOG_LEVEL": "INFO",
    }
    env.update(overrides)
    return env
