"""`steward audit verify|head|rekey|export` (docs/architecture.md §2, §4 "Audit", §7 invariant 5).

Exit codes as for the rest of `steward`: 0 done, 1 the chain is broken (or Slack refused),
2 bad usage or settings — including a keyed chain that cannot be verified because its key
was not given. Results go to stdout (or --output), messages to stderr.
"""

from __future__ import annotations

import os
import sys
import tempfile
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from bot.cli.common import cli_actor, engine_for, err, fail, settings_or_exit
from bot.config import SettingsError

audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)


def _open_engine():
    return engine_for(settings_or_exit())


def _keyring(settings):
    """STEWARD_AUDIT_KEY resolved now (secrets fetched); a one-line error if it cannot be."""
    from bot.db.audit_key import AuditKeyError, load_process_keyring

    try:
        return load_process_keyring(settings)
    except AuditKeyError as exc:
        raise fail(str(exc)) from None


def _slack(settings, why: str):
    try:
        settings.require("slack_bot_token", "security_channel")
    except SettingsError as exc:
        raise fail(f"{exc} (needed by {why})") from None
    from bot.slack.client import make_web_client

    return make_web_client(settings)


def _published_anchors(settings, given: list[str], from_slack: bool) -> dict[int, str]:
    from slack_sdk.errors import SlackApiError, SlackClientError

    from bot.db.audit_anchors import ConflictingAnchors, anchors_from_slack, merge, parse_anchor

    anchors = []
    for value in given:
        try:
            anchors.append(parse_anchor(value))
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="'--anchor'") from None
    if from_slack:
        client = _slack(settings, "--anchors-from-slack")
        try:
            found, read = anchors_from_slack(client, settings.security_channel)
        except SlackApiError as exc:
            raise fail(f"Slack refused to read {settings.security_channel}: {exc.response.get('error')}",
                       code=1) from None
        except SlackClientError as exc:
            raise fail(f"cannot read {settings.security_channel} from Slack: {exc}", code=1) from None
        if not found:
            raise fail(f"no published audit chain head in {settings.security_channel} ({read} messages read): "
                       "nothing to check against (`steward audit head --post` publishes one)", code=1)
        err.print(f"{len(found)} published heads read from {settings.security_channel}", highlight=False)
        anchors.extend(found)
    try:
        return merge(anchors)
    except ConflictingAnchors as exc:
        raise fail(f"audit chain BROKEN: {exc}", code=1) from None


@audit_app.command("verify")
def verify_command(
    anchor: Annotated[
        list[str] | None,
        typer.Option("--anchor", metavar="SEQ:HASH",
                     help="A head published earlier; the chain must pass through it. Repeatable."),
    ] = None,
    anchors_from_slack: Annotated[
        bool,
        typer.Option("--anchors-from-slack",
                     help="Also check every head Steward published in the security channel."),
    ] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, hidden=True)] = 5000,
):
    """Recompute the chain (hashes, MACs, head, search index); exit 1 naming the first bad event."""
    from bot.db.audit import verify

    settings = settings_or_exit()
    keyring = _keyring(settings)
    anchors = _published_anchors(settings, anchor or [], anchors_from_slack)
    engine = engine_for(settings)
    try:
        result = verify(engine, batch_size=batch_size, keyring=keyring, anchors=anchors.items())
    finally:
        engine.dispose()
    _report(result, len(anchors))


def _report(result, anchors: int) -> None:
    if result.ok and not result.checked:
        # Nothing was checked, so nothing is proven (a wiped log looks exactly like this).
        raise fail("the audit log is empty: nothing to verify (no scan or decision recorded in this "
                   "database; check STEWARD_DATABASE_URL)", code=1)
    if result.ok:
        typer.echo(f"audit chain OK: {result.checked} events")
        for segment in result.segments:
            if segment.key_id:
                typer.echo(f"  events {segment.first}–{segment.last}: MACs checked with key id {segment.key_id}")
        if anchors:
            n = result.anchors_matched
            typer.echo(f"  passes through {n} published head{'' if n == 1 else 's'}")
        if not any(s.key_id for s in result.segments) and result.checked:
            err.print("note: the chain is not keyed (STEWARD_AUDIT_KEY): whoever can write the database "
                      "could rewrite it; only published heads (--anchor, --anchors-from-slack) show that.",
                      soft_wrap=True, highlight=False)
        return
    where = "" if result.first_bad_sequence is None else f" at event {result.first_bad_sequence}"
    if result.unverifiable:
        err.print(f"[bold red]audit chain NOT VERIFIED{where}:[/] {result.reason}",
                  soft_wrap=True, markup=True, highlight=False)
        raise typer.Exit(2)
    err.print(
        f"[bold red]audit chain BROKEN{where}:[/] {result.reason} "
        f"({result.checked} events verified before it)",
        soft_wrap=True,
        markup=True,
        highlight=False,
    )
    raise typer.Exit(1)


@audit_app.command("head")
def head_command(
    post: Annotated[
        bool, typer.Option("--post/--print", help="Publish it in the security channel, or only print it.")
    ] = False,
):
    """Show the chain head (sequence, hash, key id); --post publishes it where the database cannot reach."""
    from slack_sdk.errors import SlackApiError

    from bot.db import audit
    from bot.db.audit_anchors import anchor_text
    from bot.db.engine import session_scope
    from bot.slack.blocks.common import context

    settings = settings_or_exit()
    client = _slack(settings, "--post") if post else None
    keyring = _keyring(settings) if post else None
    engine = engine_for(settings)
    try:
        with session_scope(engine) as session:
            head = audit.chain_head(session)
        if head is None or head.last_sequence == 0:
            raise fail("the audit log is empty: there is no head to publish", code=1)
        text = anchor_text(head.last_sequence, head.last_hash, head.key_id)
        typer.echo(text.replace("`", ""))
        if client is None:
            return
        try:
            answer = client.chat_postMessage(channel=settings.security_channel, text=text.replace("`", ""),
                                             blocks=[context(text).to_dict()], unfurl_links=False)
        except SlackApiError as exc:
            raise fail(f"Slack refused the head: {exc.response.get('error')}", code=1) from None
        try:
            with session_scope(engine) as session:
                audit.record(session, actor=cli_actor(), action=audit.AuditAction.AUDIT_HEAD_PUBLISHED,
                             keyring=keyring, payload={"sequence": head.last_sequence, "hash": head.last_hash,
                                                       "channel": answer.get("channel"), "ts": answer.get("ts")})
        except audit.AuditError as exc:
            raise fail(f"the head was posted (ts {answer.get('ts')}) but not recorded: {exc}", code=1) from None
        err.print(f"published to {settings.security_channel} (ts {answer.get('ts')})", highlight=False)
    finally:
        engine.dispose()


@audit_app.command("rekey")
def rekey_command():
    """Start a keyed segment with STEWARD_AUDIT_KEY's current key (after checking the chain)."""
    from bot.db import audit
    from bot.db.engine import session_scope

    settings = settings_or_exit()
    keyring = _keyring(settings)
    if keyring.current is None:
        raise fail("missing setting: STEWARD_AUDIT_KEY (the key to start the keyed segment with)")
    engine = engine_for(settings)
    try:
        result = audit.verify(engine, keyring=keyring)
        if not result.ok and not (result.unverifiable and all(s.checked for s in result.segments)):
            _report(result, 0)  # exits: never start a new segment over a chain that fails
        try:
            with session_scope(engine) as session:
                event = audit.rekey(session, actor=cli_actor(), keyring=keyring)
        except audit.AuditError as exc:
            raise fail(str(exc), code=1) from None
    finally:
        engine.dispose()
    if event is None:
        typer.echo(f"the audit chain is already keyed with the current key (id {keyring.current.key_id})")
        return
    before = event.payload.get("previous_key_id")
    typer.echo(f"the audit chain is keyed with key id {event.key_id} from event {event.sequence} "
               f"(before: {'key id ' + before if before else 'unkeyed'})")


class ExportFormat(StrEnum):  # bot.db.audit.ExportFormat, without importing the database layer
    csv = "csv"
    jsonl = "jsonl"


def parse_since(value: str) -> datetime:
    """YYYY-MM-DD (midnight UTC) or an ISO-8601 datetime (no zone means UTC)."""
    text = value.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not a date (YYYY-MM-DD) or an ISO-8601 datetime "
            "(e.g. 2026-01-31T09:30:00Z)",
            param_hint="'--since'",
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@audit_app.command("export")
def export_command(
    format: Annotated[
        ExportFormat, typer.Option("--format", "-f", help="csv or jsonl.")
    ] = ExportFormat.jsonl,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Only events at or after this date (YYYY-MM-DD, UTC) or ISO-8601 datetime.",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            dir_okay=False,
            help="Write to this file (replaced atomically) instead of stdout.",
        ),
    ] = None,
):
    """Export audit events, oldest first, with their hashes."""
    from sqlmodel import Session

    from bot.db.audit import export

    since_at = parse_since(since) if since is not None else None
    if output is not None and not output.resolve().parent.is_dir():
        raise typer.BadParameter(f"directory {output.parent} does not exist", param_hint="'--output'")
    engine = _open_engine()
    try:
        with Session(engine) as session:
            if output is None:
                count = export(session, format.value, stream=sys.stdout, since=since_at)
                sys.stdout.flush()
            else:
                count = _export_to_file(session, format, since_at, output)
    finally:
        engine.dispose()
    target = "stdout" if output is None else str(output)
    err.print(f"exported {count} audit events to {target}", highlight=False)


def _export_to_file(session, format: ExportFormat, since: datetime | None, output: Path) -> int:
    from bot.db.audit import export

    directory = output.resolve().parent
    fd, temporary = tempfile.mkstemp(prefix=f".{output.name}.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as stream:
            count = export(session, format.value, stream=stream, since=since)
        os.replace(temporary, output)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return count
