"""Phone numbers and message bodies never reach the logs in clear, whatever happens."""

from __future__ import annotations

import logging

import pytest

from agent_handoff.masking import mask_phone, mask_phones_in, mask_text
from conftest import load_handler
from devtools.fakes.studio_recorder import ScriptedFault
from devtools.samples import sample
from devtools.samples.events import http_api_event, sms_params
from streams import Outbox

CUSTOMER = "+14155550987"
SECRET_WORDS = "my card number is 4111 and my pet is Rex"


def test_masks():
    assert mask_phone(CUSTOMER) == "+14*******87"
    assert mask_phone("") == "" and mask_phone("123") == "***"
    assert mask_text(SECRET_WORDS) == f"<{len(SECRET_WORDS)} chars>"
    assert CUSTOMER not in mask_phones_in(f"Invalid 'To' Phone Number: {CUSTOMER}")


def test_nothing_personal_is_logged_across_sms_voice_and_failures(
    aws, studio, lambda_context, function_logs, caplog, voice_call
):
    caplog.set_level(logging.INFO)
    sms = load_handler("inbound_sms")
    dispatch = load_handler("handoff_dispatch")
    outbox = Outbox(aws.dynamodb)

    def text(body, **kw):
        params = sms_params(account_sid=sample.ACCOUNT_SID, body=body, customer=CUSTOMER)
        return sms.handler(http_api_event("/sms", params, auth_token=sample.AUTH_TOKEN, **kw), lambda_context)

    text(SECRET_WORDS)
    text(SECRET_WORDS, signature="forged")  # refused
    studio.fail_next(ScriptedFault(400, {"code": 21211, "message": f"Invalid 'To' Phone Number: {CUSTOMER}"}))
    text("I need a human, " + SECRET_WORDS)
    dispatch.handler(outbox.next_event(), lambda_context)
    text(SECRET_WORDS)  # on hold

    call = voice_call(caller=CUSTOMER)
    call.dial()
    call.connect()
    call.setup()
    call.say(SECRET_WORDS)
    call.say("agent please")
    call.finish()

    logged = function_logs.readouterr().out + function_logs.readouterr().err + caplog.text
    assert logged.count("\n") > 10  # the flows above did log
    for personal in (CUSTOMER, CUSTOMER[1:], "4111", "Rex"):
        assert personal not in logged, personal


@pytest.mark.parametrize("number", ["+442071838750", "+8613800138000", "+15005550006"])
def test_masking_keeps_numbers_apart_without_revealing_them(number):
    masked = mask_phone(number)
    assert masked[-2:] == number[-2:] and number[3:-2] not in masked
