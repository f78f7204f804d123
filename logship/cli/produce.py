"""`logship produce TOPIC [FILE...]`: one record per line (or NUL-separated record) of input."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator

import click

from ..errors import DeliveryError, LogshipError, MessageTooLargeError
from .options import TOPIC, brokers_option, cluster_for, no_idempotence_option, producer_limits
from .progress import Progress
from .render import record_from_json
from .units import INT32_MAX, SIZE
from ..workers.pool import workers_from_env

CHUNK_BYTES = 1 << 20


def split_records(stream, separator: bytes) -> Iterator[list[bytes]]:
    """Lists of records read from a binary stream, split at `separator` (not kept).

    Reads what is there, up to a big chunk, at once (one read: a pipe fed slowly, such as
    `tail -f`, gives each line as it comes), and splits it; a record cut by a chunk
    boundary is carried into the next chunk. A last record without a separator is still a
    record.
    """
    read = getattr(stream, "read1", stream.read)
    carry = b""
    while True:
        chunk = read(CHUNK_BYTES)
        if not chunk:
            break
        pieces = (carry + chunk if carry else chunk).split(separator)
        carry = pieces.pop()
        if pieces:
            yield pieces
    if carry:
        yield [carry]


def _parse_header(text: str) -> tuple[str, bytes]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise click.BadParameter(f"{text!r} is not K=V", param_hint="-H/--header")
    return name, value.encode()


def _open_inputs(files: tuple[str, ...]):
    if not files:
        yield sys.stdin.buffer
        return
    for name in files:
        if name == "-":
            yield sys.stdin.buffer
        else:
            with open(name, "rb") as stream:
                yield stream


@click.command()
@click.argument("topic", type=TOPIC)
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False, allow_dash=True))
@brokers_option
@click.option("-k", "--key-delimiter", metavar="SEP", help="Split a key from the value at the first SEP.")
@click.option("-0", "--null", "nul", is_flag=True, help="Records are separated by NUL bytes, not newlines.")
@click.option("-H", "--header", "headers", multiple=True, metavar="K=V", help="Add a header to every record (repeatable).")
@click.option("-p", "--partition", type=click.IntRange(min=0, max=INT32_MAX), default=None, help="Produce to this partition only.")
@click.option("--acks", type=click.Choice(["0", "1", "all"]), default="all", show_default=True,
              help="Acknowledgement to wait for: none, the leader's write, or durable on every in-sync replica.")
@click.option("-z", "--compression", type=click.Choice(["zstd", "gzip", "lz4", "snappy", "none"]),
              default="zstd", show_default=True, help="Compression codec of each batch.")
@click.option("--linger-ms", type=click.FloatRange(min=0, max=3_600_000), default=5, show_default=True,
              help="Wait this long for more records before sending a batch.")
@click.option("--batch-size", type=SIZE.within(1, INT32_MAX), default="1M", show_default=True, help="Largest batch, in bytes.")
@no_idempotence_option
@click.option("--json", "as_json", is_flag=True,
              help="Each line is a JSON record as `logship consume --json` writes it (key, headers, timestamp, partition kept).")
def produce(topic, files, brokers, key_delimiter, nul, headers, partition, acks, compression, linger_ms,
            batch_size, as_json, no_idempotence) -> None:
    """Send lines of standard input (or FILEs) to TOPIC, one record each.

    Exits 0 only when every record was acknowledged; otherwise it says how many were not
    and exits 1, or 3 when a broker could not be reached or did not answer (--timeout
    bounds how long that takes), or 4 when the topic or partition does not exist. Topics are created on first use when the broker allows it.

    Plain records (no -k, -H or --json) from a pipe, or from a regular file of 4 MiB or
    more (a FILE, or standard input redirected from one), are split, encoded and compressed
    by worker processes, one per CPU (up to 4), and sent in input order;
    LOGSHIP_ENCODE_WORKERS=N sets how many (0: none). A file that grows meanwhile is read to
    its end; a pipe's records wait at most --linger-ms for more before they go.

    \b
    Examples:
      app | logship produce web-logs
      logship produce web-logs access.log --acks 1 -z gzip
      printf 'host-1:boot ok\\n' | logship produce events -k : -H source=init
      logship consume a --json | jq -c 'select(.value.level == "error")' | logship produce b --json
    """
    from ..workers.file_producer import parallel_kind

    header_pairs = tuple(_parse_header(h) for h in headers)
    separator = b"\0" if nul else b"\n"
    key_sep = key_delimiter.encode() if key_delimiter else None
    plain = not as_json and key_sep is None and not header_pairs
    workers = _start_workers(files, separator, compression, batch_size) if plain else None
    from ..client.producer import Producer  # after the workers are forked: it starts threads

    progress = Progress("produced")
    sent = 0
    try:
        producer = Producer(cluster_for(brokers), acks=acks, compression=compression, linger_ms=linger_ms,
                            batch_size=batch_size, idempotence=False if no_idempotence else None,
                            **producer_limits(linger_ms))
        for index, stream in enumerate(_open_inputs(files)):
            kind = workers and ("range" if workers.begun(index) else parallel_kind(stream.fileno()))
            if kind == "range":
                sent += workers.produce(producer, topic, partition, index, progress)
            elif kind == "stream" and workers.pipe_blocks is not None:
                sent += workers.produce_stream(producer, topic, partition, stream.fileno(), linger_ms / 1000,
                                               progress)
            else:
                sent += _send_serially(producer, topic, stream, separator, partition, key_sep, header_pairs,
                                       as_json, progress)
        producer.close()
    except DeliveryError as exc:
        from . import describe_error

        first = exc.first_error
        if isinstance(first, MessageTooLargeError) and "max.message.bytes" not in str(first):
            limit = _size_limit(brokers, topic)  # the broker did not say (Produce before v8, or Kafka)
            if limit is not None:
                first = MessageTooLargeError(f"{first} (topic {topic} takes at most {limit:,} bytes, "
                                             f"its max.message.bytes)")
        cause = f": {describe_error(first)}" if isinstance(first, LogshipError) else ""
        click.echo(f"logship: {exc.failed} of {sent} records were not delivered{cause}", err=True)
        from . import exit_status_of

        raise click.exceptions.Exit(exit_status_of(exc)) from None
    finally:
        progress.done()
        if workers is not None:
            workers.close()


def _size_limit(brokers: str | None, topic: str) -> int | None:
    """The largest batch `topic` takes (its max.message.bytes), if the broker says (DescribeConfigs)."""
    from ..client.admin import Admin

    try:
        with Admin(cluster_for(brokers)) as admin:
            entry = admin.describe_configs(topic).get("max.message.bytes")
        return int(entry.value) if entry is not None and entry.value is not None else None
    except (LogshipError, ValueError):
        return None


def _start_workers(files: tuple[str, ...], separator: bytes, compression: str, batch_size: int):
    """A FileProducer if an input is a big regular file or a pipe and workers are wanted
    (LOGSHIP_ENCODE_WORKERS), with the first input begun if it is such a file; else None."""
    from ..client.batches import batch_limit
    from ..compression import codec_by_name
    from ..workers.file_producer import FileProducer, parallel_kind

    sources = [0 if name == "-" else name for name in files] or [0]
    kinds = list(map(parallel_kind, sources))
    if not any(kinds):
        return None
    try:
        count = workers_from_env("LOGSHIP_ENCODE_WORKERS")
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if not count:
        return None
    workers = FileProducer(sources, separator, codec_by_name(compression), batch_limit(batch_size), count,
                           pipes="stream" in kinds)
    try:
        if kinds[0] == "range":
            workers.begin(0)  # the workers start on it while the producer connects
    except BaseException:
        workers.close()
        raise
    return workers


def _send_serially(producer, topic: str, stream, separator: bytes, partition: int | None, key_sep: bytes | None,
                   headers: tuple, as_json: bool, progress) -> int:
    """Send the records of one input from this process; returns how many."""
    sent = 0
    for lines in split_records(stream, separator):
        if as_json:
            _send_json(producer, topic, lines, partition, headers)
        elif key_sep is None and not headers:
            producer.send_values(topic, lines, partition)
        else:
            for line in lines:
                key, found, value = line.partition(key_sep) if key_sep else (None, b"", line)
                producer.send(topic, value if found or key_sep is None else line,
                              key if found else None, headers, partition)
        sent += len(lines)
        progress.add(len(lines), sum(map(len, lines)))
    return sent


def _send_json(producer, topic: str, lines: list[bytes], partition: int | None, headers: tuple) -> None:
    for line in lines:
        if not line.strip():
            continue
        try:
            record = record_from_json(json.loads(line))
        except ValueError as exc:
            raise click.UsageError(f"input is not a JSON record ({exc}): {line[:80]!r}") from None
        producer.send(topic, record["value"], record["key"], record["headers"] + headers,
                      partition if partition is not None else record["partition"], record["timestamp"])
