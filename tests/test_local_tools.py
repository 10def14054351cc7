"""The pieces behind the local commands: logs for people, the session's state, moto's memory."""

from __future__ import annotations

import io
import json
import stat
import threading

import pytest

from devtools.cli import UserError
from devtools.local import state
from devtools.local.logs import HumanLogs, render

POWERTOOLS_LINE = {
    "level": "INFO",
    "location": "answer:26",
    "message": "replied",
    "timestamp": "2026-11-29 20:43:35,105+0000",
    "service": "inbound-sms",
    "cold_start": True,
    "function_name": "local",
    "function_memory_size": 512,
    "function_arn": "arn:aws:lambda:us-east-1:123456789012:function:local",
    "function_request_id": "00000000-0000-0000-0000-000000000000",
    "name": "inbound-sms",
    "message_sid": "SM9d9ff7ae34d04abaa79559ef75905ec3",
    "customer": "+14*******00",
    "handed_off": False,
}
EMF_LINE = {
    "_aws": {
        "Timestamp": 1795985015200,
        "CloudWatchMetrics": [
            {
                "Namespace": "AiHandoff",
                "Dimensions": [["channel", "trigger", "service"]],
                "Metrics": [{"Name": "Handoffs", "Unit": "Count"}],
            }
        ],
    },
    "channel": "sms",
    "trigger": "human_requested",
    "service": "inbound-sms",
    "Handoffs": [1.0],
}


def test_a_log_line_becomes_time_function_event_and_ids():
    line = render(json.dumps(POWERTOOLS_LINE))

    assert line == (
        "20:43:35.105 inbound-sms       replied  "
        "message_sid=SM9d9ff7ae34d04abaa79559ef75905ec3 customer=+14*******00 handed_off=false"
    )


def test_a_warning_says_its_level_and_an_exception_its_last_line():
    record = {
        **POWERTOOLS_LINE,
        "level": "ERROR",
        "message": "webhook not processed",
        "exception": 'Traceback (most recent call last):\n  File "x.py", line 1\nStoreError: table missing',
        "exception_name": "StoreError",
    }

    text = render(json.dumps(record))

    first, second = text.splitlines()
    assert first.startswith("20:43:35.105 inbound-sms       ERROR webhook not processed")
    assert "Traceback" not in text and second.strip().startswith("StoreError: table missing")
    assert "JSON=1 shows the traceback" in second  # what a person types under make (`--json` is the module's)


def test_a_metric_becomes_one_line_and_can_be_hidden():
    assert render(json.dumps(EMF_LINE)).split() == [
        "metric",
        "Handoffs",
        "+1",
        "channel=sms",
        "trigger=human_requested",
    ]
    assert render(json.dumps(EMF_LINE), {"metrics": False}) is None


@pytest.mark.parametrize("line", ["Local stack running (Ctrl-C stops it).", "[1, 2]", '{"other": "json"}', ""])
def test_anything_else_passes_through(line):
    assert render(line) == line


def test_lines_written_in_pieces_by_several_threads_are_never_spliced():
    target = io.StringIO()
    logs = HumanLogs(target)

    def write(n: int) -> None:
        for _ in range(50):
            logs.write(f"thread {n} ")  # print() writes the text and its newline separately
            logs.write("says hello\n")

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    lines = target.getvalue().splitlines()
    assert len(lines) == 200 and all(line.endswith(" says hello") and line.count("thread") == 1 for line in lines)


# -- the session's state ------------------------------------------------------------------------


@pytest.fixture
def state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCAL_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


def test_new_numbers_are_fresh_fictional_and_remembered_once_the_stack_answered(state_dir):
    first, second = state.choose_number("customer", None), state.choose_number("customer", "new")

    assert first != second or state.choose_number("customer", "new") != first  # fresh (1 in 80,000 to repeat)
    for number in (first, second):
        assert state.E164.fullmatch(number) and number[5:10] == "55501"  # 555-0100..0199: reserved for fiction
    with pytest.raises(UserError, match="no last customer number yet"):  # chosen is not yet remembered
        state.choose_number("customer", "last")
    state.remember("customer", second)  # what a phone does once the stack answered it
    assert state.choose_number("customer", "last") == second
    assert state.choose_number("caller", "+14155550177") == "+14155550177"
    state.remember("caller", "+14155550177")
    assert state.choose_number("caller", "LAST") == "+14155550177" and state.choose_number("customer", "last") == second


def test_last_without_a_previous_number_and_a_malformed_number_are_refused(state_dir):
    with pytest.raises(UserError, match="no last caller number yet"):
        state.choose_number("caller", "last")
    with pytest.raises(UserError, match=r"must be E\.164"):
        state.choose_number("customer", "4155550100")


def test_the_stack_file_is_its_owner_s_and_goes_with_the_stack(state_dir):
    state.save_stack(url="http://127.0.0.1:3001", release_token="t" * 40, agent_number="+14155550199")

    assert stat.S_IMODE((state_dir / "stack.json").stat().st_mode) == 0o600  # it holds the release token
    assert state.running_stack()["url"] == "http://127.0.0.1:3001"
    state.forget_stack()
    assert state.running_stack() == {}


# -- moto's memory --------------------------------------------------------------------------------


def test_the_local_moto_server_keeps_no_copy_of_a_table_per_transaction():
    """moto tracks every model object for its dashboard, and a transaction deep-copies each table
    it touches: without forgetting them a long local run or `make bench` grew without bound."""
    import boto3
    from moto.dynamodb.models.table import StreamRecord, Table

    from devtools.local.stack import free_port, serialized_moto_server
    from devtools.samples import sample
    from devtools.template import create_table

    port = free_port()
    server = serialized_moto_server("127.0.0.1", port)
    server.start()
    try:
        client = boto3.client("dynamodb", endpoint_url=f"http://127.0.0.1:{port}")
        create_table(client, "SessionsTable", sample.TABLE_NAME)
        for n in range(20):
            item = {"pk": {"S": f"ITEM#{n}"}, "kind": {"S": "test"}}
            client.transact_write_items(TransactItems=[{"Put": {"TableName": sample.TABLE_NAME, "Item": item}}])
        client.describe_table(TableName=sample.TABLE_NAME)
        assert len(Table.instances_tracked) == 0 and len(StreamRecord.instances_tracked) == 0
        assert client.scan(TableName=sample.TABLE_NAME, Select="COUNT")["Count"] == 20  # the tables themselves stay
    finally:
        server.stop()
