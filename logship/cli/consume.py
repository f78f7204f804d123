"""`logship consume TOPIC`: print records from an offset or time, like `kcat -C`."""

from __future__ import annotations

import sys

import click

from .options import TOPIC, brokers_option, cluster_for
from .output import DEFAULT_FORMAT, IDLE_CHECK_S, record_sink
from .record_writer import write_all
from .units import DURATION


def offset_spec(text: str, option: str):
    """The client OffsetSpec for a command-line value; a usage error when it does not parse."""
    from ..client.offsets import parse_offset

    try:
        return parse_offset(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


def output_options(command):
    """-f/--format, --json and --grep, shared by the commands that print records."""
    command = click.option("--grep", metavar="REGEX", help="Print only records whose value matches REGEX.")(command)
    command = click.option("--json", "as_json", is_flag=True,
                           help="One JSON object per record: topic, partition, offset, timestamp, key, value, headers.")(command)
    return command


@click.command()
@click.argument("topic", type=TOPIC)
@brokers_option
@click.option("-o", "--offset", default="beginning", show_default=True, metavar="SPEC",
              help="Where to start: beginning, end, N, -N (N before the end), @TIME (@2026-11-24T10:00Z, @-1h).")
@click.option("-p", "--partition", "partitions", type=click.IntRange(min=0, max=2**31 - 1), multiple=True,
              help="Read only this partition (repeatable); default all.")
@click.option("-c", "--count", type=click.IntRange(min=1), default=None, help="Exit after N records.")
@click.option("-e", "--exit-at-end", is_flag=True,
              help="Exit at the end offsets noted when consumption starts (finishes even on a busy topic).")
@click.option("-f", "--format", "fmt", default=DEFAULT_FORMAT, show_default=True,
              help="Output format: %v value (%s too), %k key, %t topic, %p partition, %o offset, %T timestamp, %h headers.")
@click.option("-g", "--group", metavar="GROUP",
              help="Consume as a member of consumer group GROUP: share the partitions with its other members, "
                   "start at its committed offsets, commit what was written.")
@click.option("--session-timeout", type=DURATION.within(1, 2**31 - 1), default="10s", show_default=True,
              help="With -g: how long the group waits for a silent member before giving its partitions to others.")
@output_options
def consume(topic, brokers, offset, partitions, count, exit_at_end, fmt, group, session_timeout, as_json,
            grep) -> None:
    """Print the records of TOPIC to standard output, one per line by default.

    Without -e or -c it keeps waiting for new records until interrupted. A topic that
    does not exist exits with status 4.

    With -g GROUP it joins the consumer group GROUP (Kafka's protocol, so kcat -G and Kafka
    clients can be members too) and reads only the partitions the group assigns it, each
    from the group's committed offset, else from -o (default beginning). It commits what it
    has written to standard output every second and when it ends (-c reached, -e, SIGTERM,
    Ctrl-C, a closed pipe), so a restarted consumer continues exactly where the last one
    stopped; a killed one (SIGKILL) repeats at most its last second. With -g, -e stops once
    the partitions assigned to this member reach the end offsets noted when it started
    (a member assigned nothing stops at once). -g cannot be combined with -p. Group
    assignments are reported on standard error.

    Without -c, large reads are decoded and formatted by worker processes, one per CPU
    (up to 4), and printed in order; LOGSHIP_DECODE_WORKERS=N sets how many (0: none).

    \b
    Examples:
      logship consume web-logs -e | wc -l
      logship consume web-logs -o -100 -f '%p:%o %k %v\\n'
      logship consume web-logs -o @-1h --json | jq .value
      logship consume web-logs --grep ' 5[0-9][0-9] ' -o end
      logship consume web-logs -g indexer >> /var/log/web.log
    """
    from ..client.consumer import Consumer

    start = offset_spec(offset, "-o/--offset")
    sink = record_sink(sys.stdout.buffer, fmt, as_json, grep, count)
    if group is not None:
        if partitions:
            raise click.UsageError("-g/--group cannot be combined with -p/--partition: the group assigns the "
                                   "partitions")
        from .consume_group import consume_group

        return consume_group(cluster_for(brokers), topic, group, start, exit_at_end, session_timeout, sink)
    if start.kind == "stored":
        raise click.BadParameter("'stored' is the committed offset of a consumer group: use it with -g",
                                 param_hint="-o/--offset")
    with Consumer(cluster_for(brokers), topic, list(partitions) or None,
                  offset_reset="error" if partitions else "clamp", start=start,
                  stop_at_end=exit_at_end) as consumer:
        if count is None:
            write_all(consumer, sink)
            return
        while not consumer.finished:
            chunks = consumer.poll_chunks(IDLE_CHECK_S)
            if not chunks:
                sink.check_reader()
            for chunk in chunks:
                if not sink.write_chunk(chunk):
                    return

