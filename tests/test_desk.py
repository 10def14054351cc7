"""The human side in a real browser: the local stack's agent desk and the transcript pages it opens.

Headless Chromium (selenium, Debian's chromedriver) loads /desk while the SMS and voice simulators
hand customers off; the desk must show each handoff within 2 s of the human side receiving it,
open its transcript through the payload's signed link, and give an SMS conversation back to the
AI with Release. Screenshots go to build/screenshots/ (git-ignored).
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import time
import xml.etree.ElementTree as ET
from urllib.parse import parse_qs, urlsplit

import pytest

import browser
from devtools.local.stack import PASS_THROUGH, LocalStack
from devtools.phones import sms as sms_phone
from devtools.phones import voice as voice_phone
from devtools.samples import sample

DESK_WITHIN_SECONDS = 2.0


@pytest.fixture(scope="module")
def chrome():
    found = browser.chromium()
    if isinstance(found, str):
        pytest.skip(found)
    driver = browser.start(*found)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def stack():
    environ = {k: v for k, v in os.environ.items() if k not in PASS_THROUGH}
    with LocalStack(port=0, log_level="WARNING", environ=environ) as running:
        yield running


def text_as(stack, customer: str, *lines: str) -> str:
    out = io.StringIO()
    sms_phone.converse_remote(
        [line + "\n" for line in lines],
        out,
        url=stack.url,
        customer=customer,
        prompt=False,
        account_sid=sample.ACCOUNT_SID,
        auth_token=sample.AUTH_TOKEN,
    )
    return out.getvalue()


def wait_for(condition, timeout: float = 10.0, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"not within {timeout} s: {condition}")


def card(driver, conversation_id: str):
    from selenium.webdriver.common.by import By

    found = driver.find_elements(By.CSS_SELECTOR, f'li.handoff[data-conversation="{conversation_id}"]')
    return found[0] if found else None


def field(driver, conversation_id: str, selector: str, attribute: str | None = None) -> str:
    """A card's field, read afresh: the desk redraws its list when a poll brings something new."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    for _ in range(20):
        try:
            found = card(driver, conversation_id).find_element(By.CSS_SELECTOR, selector)
            return found.get_attribute(attribute) if attribute else found.text
        except StaleElementReferenceException:
            time.sleep(0.05)
    raise AssertionError(f"the desk kept redrawing {selector}")


def turns(driver) -> list[tuple[str, str]]:
    from selenium.webdriver.common.by import By

    return [
        (item.get_attribute("class"), item.find_element(By.CSS_SELECTOR, ".said").text)
        for item in driver.find_elements(By.CSS_SELECTOR, "ol.turns > li")
    ]


def test_the_desk_shows_handoffs_opens_transcripts_and_releases(chrome, stack):
    from selenium.webdriver.common.by import By

    chrome.get(stack.url + "/desk")
    assert chrome.find_element(By.TAG_NAME, "h1").text.startswith("Agent desk")
    assert chrome.find_element(By.ID, "empty").is_displayed()

    # An SMS customer asks for a person: the desk shows it within 2 s of Studio receiving it.
    customer = "+14155550161"
    sms_lines = ("What are your opening hours?", "Do you ship to Canada?", "I want to talk to a real person")
    said = text_as(stack, customer, *sms_lines)
    assert "person will follow up" in said
    execution = next(r for r in stack.studio.created if r.to == customer)
    sms_id = execution.handoff_data["conversationId"]
    wait_for(lambda: card(chrome, sms_id), timeout=5)
    sms_delay = time.time() - execution.at
    assert sms_delay <= DESK_WITHIN_SECONDS, sms_delay

    attributes = execution.handoff_data["attributes"]
    assert field(chrome, sms_id, ".reason") == attributes["reason"] == "The customer asked to speak with a human agent."
    assert field(chrome, sms_id, ".summary") == attributes["summary"]
    assert field(chrome, sms_id, ".customer") == "+14*******61" and "4155550161" not in chrome.page_source
    assert field(chrome, sms_id, ".channel") == "SMS" and field(chrome, sms_id, ".status") == "With a person"
    assert field(chrome, sms_id, "time", "datetime")

    # A caller presses 0: the routed call appears too.
    call = asyncio.run(
        voice_phone.place_call(
            ["What are your opening hours?", "press 0"],
            io.StringIO(),
            url=stack.url,
            account_sid=sample.ACCOUNT_SID,
            auth_token=sample.AUTH_TOKEN,
        )
    )
    voice_payload = json.loads(call.end["handoffData"])
    # The routing TwiML hands Studio the same payload: summary and a working link included.
    redirect = ET.fromstring(call.twiml[-1]).find("Redirect").text
    routed = json.loads(parse_qs(urlsplit(redirect).query)["HandoffData"][0])
    assert routed["attributes"]["summary"] and routed["attributes"]["transcriptUrl"].startswith(stack.url)
    assert routed == voice_payload
    routed_at = time.time()  # the simulator returns once the action callback routed the call
    voice_id = voice_payload["conversationId"]
    wait_for(lambda: card(chrome, voice_id), timeout=5)
    assert time.time() - routed_at <= DESK_WITHIN_SECONDS
    assert field(chrome, voice_id, ".channel") == "CALL" and field(chrome, voice_id, ".status") == "Call with a person"
    assert field(chrome, voice_id, ".reason") == "The caller pressed 0 to speak with a person."
    assert "Release" not in field(chrome, voice_id, ".actions")  # a live call is not given back
    browser.screenshot(chrome, "desk", chrome.find_element(By.TAG_NAME, "body"))  # docs/desk.png is this one

    # The transcript, through the very link Studio received.
    link = field(chrome, sms_id, "a.transcript", "href")
    assert link == attributes["transcriptUrl"]
    chrome.get(link)
    assert chrome.find_element(By.TAG_NAME, "h1").text == "SMS conversation handed to a person"
    shown = turns(chrome)
    assert [text for kind, text in shown if kind == "customer"] == list(sms_lines)
    assert [kind for kind, _ in shown] == ["customer", "agent"] * 3
    assert "+14*******61" in chrome.page_source and customer not in chrome.page_source
    browser.screenshot(chrome, "transcript-sms")
    chrome.get(voice_payload["attributes"]["transcriptUrl"])
    assert chrome.find_element(By.TAG_NAME, "h1").text == "Phone call conversation handed to a person"
    assert turns(chrome)[0] == ("customer", "What are your opening hours?")
    browser.screenshot(chrome, "transcript-call")

    # Release: the conversation goes back to the AI, which answers the customer again.
    assert "(no reply: a person has this conversation" in text_as(stack, customer, "hello?")
    chrome.get(stack.url + "/desk")
    wait_for(lambda: card(chrome, sms_id)).find_element(By.CSS_SELECTOR, "button.release").click()
    wait_for(lambda: field(chrome, sms_id, ".status") == "Released to the AI")
    assert "the AI answers this customer again" in field(chrome, sms_id, ".result")
    again = text_as(stack, customer, "What are your opening hours?")
    assert "agent> We're open Monday to Friday" in again
    browser.screenshot(chrome, "desk-released")


def test_a_customers_markup_never_runs_on_the_desk_or_the_transcript(chrome, stack):
    from selenium.webdriver.common.by import By

    hostile = "<img src=x onerror=\"document.title='pwned'\"><script>document.title='pwned'</script> I want a human"
    text_as(stack, "+14155550162", hostile)
    execution = next(r for r in stack.studio.created if r.to == "+14155550162")

    chrome.get(stack.url + "/desk")
    conversation_id = execution.handoff_data["conversationId"]
    wait_for(lambda: card(chrome, conversation_id))
    assert "<script>" in field(chrome, conversation_id, ".summary")  # it quotes the customer: shown as text
    chrome.get(execution.handoff_data["attributes"]["transcriptUrl"])
    assert turns(chrome)[0] == ("customer", hostile)
    assert chrome.find_elements(By.CSS_SELECTOR, "ol.turns img, ol.turns script") == []
    assert chrome.title != "pwned" and "pwned" not in chrome.execute_script("return document.title")


def test_the_desk_answers_this_machine_only(stack):
    """It embeds the session's release token: a tunnel's visitor (a forwarded request) gets 404."""
    import urllib.error
    import urllib.request

    page = urllib.request.urlopen(stack.url + "/desk", timeout=10)  # noqa: S310 - the local stack
    assert page.status == 200 and "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert stack.env["HANDOFF_RELEASE_TOKEN"] in page.read().decode()
    for path in ("/desk", "/desk/handoffs", "/desk/desk.js"):
        forwarded = urllib.request.Request(stack.url + path, headers={"X-Forwarded-For": "203.0.113.9"})  # noqa: S310
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(forwarded, timeout=10)  # noqa: S310
        assert refused.value.code == 404, path


def get_with_host(stack, path: str, host: str) -> tuple[int, str]:
    import http.client

    where = urlsplit(stack.url)
    connection = http.client.HTTPConnection(where.hostname, where.port, timeout=10)
    try:
        connection.request("GET", path, headers={"Host": host})
        answer = connection.getresponse()
        return answer.status, answer.read().decode()
    finally:
        connection.close()


def test_the_desk_refuses_a_web_page_dns_rebound_to_this_machine(stack):
    """A page the developer visits (attacker.example, its name rebound to 127.0.0.1) reaches the loopback port
    from this machine's browser, with no proxy header: only its Host tells it apart. It must get neither the
    desk's release token nor a customer's number."""
    customer = "+14155550177"
    text_as(stack, customer, "I want to talk to a person")
    assert any(r.to == customer for r in stack.studio.created)  # a handoff is on the desk
    port = urlsplit(stack.url).port
    token = stack.env["HANDOFF_RELEASE_TOKEN"]
    views = ("/desk", "/desk/handoffs", "/desk/desk.js", "/_local/handoffs", "/_local/studio-executions")

    for host in ("attacker.example:3000", f"attacker.example:{port}", f"127.0.0.1:{port + 1}", "127.0.0.1@x", ""):
        for path in views:
            status, body = get_with_host(stack, path, host)
            assert status == 404 and token not in body and customer not in body, (host, path)

    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}", f"[::1]:{port}"):
        status, page = get_with_host(stack, "/desk", host)
        assert status == 200 and token in page, host
    assert customer in get_with_host(stack, "/desk/handoffs", f"localhost:{port}")[1]
