"""`logship dump FILE`: list the batches (and optionally records) of a segment file."""

from __future__ import annotations

import click

from .. import records
from ..errors import LogshipError
from ..storage.dump import BatchReport, TailReport, mapped, scan_segment
from .render import echo_json, record_as_json, printable


def _batch_fields(report: BatchReport) -> dict:
    h = report.header
    return {
        "position": report.position,
        "base_offset": h.base_offset,
        "last_offset": h.last_offset,
        "count": h.records_count,
        "base_timestamp": h.base_timestamp,
        "max_timestamp": h.max_timestamp,
        "size": h.size,
        "compression": report.compression_name,
        "crc_valid": report.crc_valid,
        "leader_epoch": h.partition_leader_epoch,
        "producer_id": h.producer_id,
        "producer_epoch": h.producer_epoch,
        "base_sequence": h.base_sequence,
        "control": h.is_control,
        "transactional": h.is_transactional,
    }


def _batch_line(fields: dict) -> str:
    return (
        "baseOffset: {base_offset} lastOffset: {last_offset} count: {count} "
        "partitionLeaderEpoch: {leader_epoch} "
        "baseTimestamp: {base_timestamp} maxTimestamp: {max_timestamp} position: {position} "
        "size: {size} compression: {compression} crcValid: {crc}".format(
            crc="true" if fields["crc_valid"] else "false", **fields
        )
    )


def _record_line(record: records.Record) -> str:
    headers = ",".join(f"{k}={printable(v)}" for k, v in record.headers)
    return (
        f"| offset: {record.offset} timestamp: {record.timestamp} "
        f"key: {printable(record.key)} headers: [{headers}] value: {printable(record.value)}"
    )


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--records", "show_records", is_flag=True, help="Also print every record of every batch.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per batch (and per record).")
def dump(file: str, show_records: bool, as_json: bool) -> None:
    """List the record batches of a segment file, like kafka-dump-log.

    Reads `.log` segment files written by logship or by Apache Kafka (same format). Each
    batch shows its offsets, record count, leader epoch, timestamps, position, size,
    compression and whether its CRC is valid; a damaged tail is reported, not hidden. A damaged
    file exits 1, with one line on stderr saying what is wrong.

    \b
    Examples:
      logship dump logship-data/web-logs-0/00000000000000000000.log
      logship dump --records --json 00000000000000000000.log | jq .value
    """
    corrupt = bad_crc = 0
    tail = None
    with mapped(file) as buf:
        for report in scan_segment(buf):
            if isinstance(report, TailReport):
                corrupt, tail = True, report.position
                fields = {"position": report.position, "length": report.length, "error": report.reason}
                if as_json:
                    echo_json({"tail": fields})
                else:
                    click.echo(f"unreadable tail at position {report.position}: {report.length} bytes: {report.reason}")
                continue
            fields = _batch_fields(report)
            corrupt |= not report.crc_valid
            bad_crc += not report.crc_valid
            echo_json({"batch": fields}) if as_json else click.echo(_batch_line(fields))
            if show_records and report.crc_valid:
                _dump_records(report, as_json)
    if corrupt:
        damage = [f"{bad_crc} batch{'es' if bad_crc != 1 else ''} with a bad CRC"] if bad_crc else []
        damage += [f"an unreadable tail from byte {tail}"] if tail is not None else []
        click.echo(f"logship: {file} is damaged: {' and '.join(damage)}", err=True)
        raise click.exceptions.Exit(1)


def _dump_records(report: BatchReport, as_json: bool) -> None:
    try:
        batch_records = records.decode_records(report.batch)
    except LogshipError as exc:
        click.echo(f"| cannot decode records: {exc}", err=True)
        return
    for record in batch_records:
        if as_json:
            echo_json({"record": record_as_json(record)})
        else:
            click.echo(_record_line(record))
