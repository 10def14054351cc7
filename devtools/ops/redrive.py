"""Redrive the dispatch dead-letter queue once the cause of the failures is fixed: `make redrive`.

    python -m devtools.ops.redrive --stack my-stack [--dry-run]
    python -m devtools.ops.redrive --queue-url URL --table NAME [--dry-run]

With --stack, the queue and table come from the stack's outputs (DeadLetterQueueUrl,
SessionsTableName), and the flow from its StudioHandoffFlowSid parameter (or --flow-sid): a
failure whose customer has had a newer handoff delivered since is then not redriven.
Uses your AWS credentials; --dry-run lists and changes nothing.

Lambda's records of stream batches it gave up on are read back from the table's stream
(DynamoDB Streams: GetShardIterator, GetRecords); once the stream has dropped them (24 hours),
every handoff still owed is found in the table's PromisesIndex instead.
"""

from __future__ import annotations

import argparse
import sys

from devtools.cli import run
from devtools.ops import aws
from devtools.ops.aws import OpsError

stack_outputs = aws.stack_outputs
stack_parameters = aws.stack_parameters


def main(argv: list[str] | None = None) -> int:
    from agent_handoff.delivery.redrive import Redriver
    from agent_handoff.storage.session_store import SessionStore

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", help="the deployed stack's name")
    parser.add_argument("--queue-url", help="the dead-letter queue (instead of --stack)")
    parser.add_argument("--table", help="the sessions table (instead of --stack)")
    parser.add_argument("--flow-sid", default="", help="the Studio flow (FW...); with --stack, its parameter")
    parser.add_argument("--dry-run", action="store_true", help="list what would be redriven; change nothing")
    args = parser.parse_args(argv)
    queue_url, table, flow_sid = args.queue_url, args.table, args.flow_sid
    if not args.stack and not (queue_url and table):
        raise OpsError("say which stack: make redrive STACK=<stack name> (or --queue-url and --table)")
    session = aws.session()
    if args.stack:
        outputs = stack_outputs(session.client("cloudformation"), args.stack)
        missing = [k for k in ("DeadLetterQueueUrl", "SessionsTableName") if k not in outputs]
        if missing and not (queue_url and table):
            raise OpsError(f"stack {args.stack!r} has no output(s) {', '.join(missing)}: is it this product's stack?")
        queue_url, table = queue_url or outputs["DeadLetterQueueUrl"], table or outputs["SessionsTableName"]
        flow_sid = flow_sid or stack_parameters(session.client("cloudformation"), args.stack).get(
            "StudioHandoffFlowSid", ""
        )
    with aws.errors("redrive"):
        redriver = Redriver(
            SessionStore(session.client("dynamodb"), table),
            session.client("sqs"),
            queue_url,
            streams=session.client("dynamodbstreams"),
            flow_sid=flow_sid,
        )
        report = redriver.run(dry_run=args.dry_run)
    verb = "would redrive" if args.dry_run else "redrove"
    print(f"{report.messages} dead letter(s) read; {verb} {len(report.redriven)} handoff(s)")
    for handoff_id in report.redriven:
        print(f"  {handoff_id}")
    if report.from_index:
        print(f"{report.from_index} stream batch(es) had aged out of the stream: found through the PromisesIndex")
    if report.superseded:
        print(
            f"{len(report.superseded)} handoff(s) not redriven: a newer handoff reached the customer since: "
            + ", ".join(report.superseded)
        )
    if report.settled:
        print(f"{len(report.settled)} handoff(s) named were delivered or redriven already: {', '.join(report.settled)}")
    if report.skipped:
        print(f"{len(report.skipped)} message(s) stay in the queue: {', '.join(report.skipped)}")
    return 0


if __name__ == "__main__":
    sys.exit(run(main, "make redrive"))
