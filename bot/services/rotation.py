""""Rotate it for me": a guided access key rotation, from the owner's click to the old key's end.

`start` (the owner's or an approver's click on an `old-access-key` finding) creates the new
key under Steward's rotation role and stores it in Secrets Manager where only the owner's
principal can read it (`checks.rotation`); the reply says where to fetch it. `tick` (the
worker, hourly; `steward rotate tick`) then watches, for every rotation in progress:

* the secret read (DescribeSecret's LastAccessedDate): its deletion is scheduled (a 7-day
  recovery window), so the only copy does not linger; a secret nobody fetched within
  `STEWARD_ROTATION_SECRET_DAYS` (7) is deleted the same way and the rotation ends there;
* the new key's first use, and the old key's last use. Once the new key has been used and
  the old one has not for `STEWARD_ROTATION_QUIET_DAYS` (3), the old key's deactivation is
  offered in the owner's DM (its Deactivate button: one click, with Undo), or, with
  `STEWARD_ROTATION_AUTO_DEACTIVATE=true`, done by Steward as an announced
  auto-remediation the owner can undo in one click. Never before the new key is seen in use.
* after deactivation, deleting the old key is the usual `inactive-access-key` finding's
  Delete (after `STEWARD_DELETE_AFTER_DAYS`, approved by security): `delete_after` says when.

Every step is an audit event; the row and the events hold key ids and the secret's ARN,
never the secret.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Engine
from sqlmodel import select

from bot.config import Settings
from bot.core.decisions import AUTO_ACTOR
from bot.db import audit, queries
from bot.db.engine import session_scope, write_scope
from bot.db.models import Finding, KeyRotation
from bot.services.common import Clock, ServiceError, utcnow

log = logging.getLogger(__name__)
A = audit.AuditAction

STARTING, CREATED, OFFERED, DEACTIVATED, FAILED, EXPIRED = (
    "starting", "created", "offered", "old_deactivated", "failed", "expired")
WATCHED = (CREATED, OFFERED)
ROTATABLE = ("old-access-key",)


class RotationRefused(ServiceError):
    """Nothing was changed; the message says why and what to do."""


class RotationService:
    def __init__(self, settings: Settings, *, engine: Engine, client=None,
                 aws_session_factory: Callable[[], object] | None = None, clock: Clock = utcnow,
                 remediations=None):
        self.settings = settings
        self.engine = engine
        self.client = client
        self.clock = clock
        self._aws_session_factory = aws_session_factory
        self._remediations = remediations

    # -- start ----------------------------------------------------------------------------

    def start(self, finding_ref: str | int, *, actor: str) -> tuple[KeyRotation, str]:
        """Create the new key and its secret; return the row and the message for the asker."""
        from checks import rotation
        from checks.remediate.base import Target

        now = self.clock()
        with session_scope(self.engine) as session:
            finding = queries.finding_by_ref(session=session, ref=finding_ref)
        if finding is None:
            raise RotationRefused(f"no finding {finding_ref!r}")
        if finding.check_id not in ROTATABLE:
            raise RotationRefused(f"Rotate it for me is for old access keys, not {finding.check_id}.")
        target = Target.from_finding(finding.check_id, finding.resource, finding.details)
        if not target.access_key_id or not target.user_name:
            raise RotationRefused("The finding does not name the access key yet; the next scan resolves it.")
        if not self.settings.rotation_role_name:
            self._refuse(actor, finding, "rotation role not enabled", now)
            raise RotationRefused(
                f"Steward's rotation role is not enabled in account {finding.account_id} (EnableRotation in the "
                "member template, STEWARD_ROTATION_ROLE_NAME): creating keys is not something its default role "
                "may do. Nothing was changed; rotate the key yourself, or ask security to enable it.")
        with write_scope(self.engine) as session:  # the intent, before any AWS call
            busy = session.exec(select(KeyRotation).where(
                KeyRotation.account_id == finding.account_id, KeyRotation.old_key_id == target.access_key_id,
                KeyRotation.status.in_((STARTING, *WATCHED)))).first()
            if busy is not None:
                raise RotationRefused(f"Already rotating {target.access_key_id} (rotation #{busy.id}, {busy.status}).")
            row = KeyRotation(account_id=finding.account_id, user_name=target.user_name,
                              old_key_id=str(target.access_key_id), reader_arn=finding.resource, status=STARTING,
                              requested_by=actor, owner=finding.owner, created_at=now, updated_at=now)
            session.add(row)
            session.flush()
            audit.record(session, actor=actor, action=A.ROTATION_STARTED, subject_fingerprint=finding.fingerprint,
                         resource=finding.resource, account=finding.account_id, at=now,
                         payload={"rotation_id": row.id, "old_key_id": row.old_key_id})
        try:
            aws = self._session(finding.account_id, target.partition)
            reader = rotation.user_arn(aws, finding.account_id, str(target.user_name))
            rotation.make_room(aws, finding.account_id, str(target.user_name), str(target.access_key_id))
            new = rotation.create_key(aws, finding.account_id, str(target.user_name), reader_arn=reader,
                                      rotation_id=int(row.id))
        except (rotation.RotationError, ServiceError) as exc:
            self._fail(row, finding, actor, str(exc))
            raise RotationRefused(f"{exc}. Nothing was left behind.") from None
        with write_scope(self.engine) as session:
            current = session.get(KeyRotation, row.id)
            current.new_key_id, current.secret_arn, current.reader_arn = new.access_key_id, new.secret_arn, reader
            current.status, current.updated_at = CREATED, self.clock()
            audit.record(session, actor=actor, action=A.ROTATION_KEY_CREATED, subject_fingerprint=finding.fingerprint,
                         resource=finding.resource, account=finding.account_id, at=self.clock(),
                         payload={"rotation_id": row.id, "old_key_id": row.old_key_id,
                                  "new_key_id": new.access_key_id, "secret_arn": new.secret_arn, "reader": reader})
            row = current
        log.info("rotation #%s: new key %s for IAM user %s in %s, secret %s (readable by %s)", row.id,
                 new.access_key_id, target.user_name, finding.account_id, new.secret_arn, reader)
        region = new.secret_arn.split(":")[3]
        message = (
            f"New access key *{new.access_key_id}* created for IAM user {target.user_name}. Its secret is in AWS "
            f"Secrets Manager as `{new.secret_name}` (account {finding.account_id}, {region}); only `{reader}` can "
            f"read it, and Steward deletes it once read. Fetch it with the old key:\n"
            f"`aws secretsmanager get-secret-value --region {region} --secret-id {new.secret_arn} "
            f"--query SecretString --output text`\n"
            f"Then switch what uses {row.old_key_id} to the new key. Once the new key is in use and the old one has "
            f"been quiet for {self.settings.rotation_quiet_days} days, Steward "
            + ("deactivates the old key (you can undo it)." if self.settings.rotation_auto_deactivate
               else "offers to deactivate the old key here."))
        return row, message

    # -- the watch ------------------------------------------------------------------------

    def tick(self, *, actor: str = "system") -> dict[str, int]:
        """Advance every rotation in progress; returns counts of what happened."""
        from checks import rotation

        counts: Counter[str] = Counter()
        with session_scope(self.engine) as session:
            rows = list(session.exec(select(KeyRotation).where(KeyRotation.status.in_(WATCHED))))
        for row in rows:
            try:
                self._advance(row, actor, counts)
            except (rotation.RotationError, ServiceError) as exc:
                log.warning("rotation #%s: %s", row.id, exc)
                counts["errors"] += 1
        return dict(counts)

    def _advance(self, row: KeyRotation, actor: str, counts: Counter[str]) -> None:
        from checks import rotation

        now = self.clock()
        aws = self._session(row.account_id)
        finding = self._old_key_finding(row)
        subject = {"subject_fingerprint": finding.fingerprint if finding else None,
                   "resource": row.reader_arn, "account": row.account_id}
        if row.secret_arn and row.secret_delete_at is None:
            read_on = rotation.picked_up(aws, row.account_id, row.secret_arn)
            if read_on is None and now - row.created_at >= timedelta(days=self.settings.rotation_secret_days):
                # Never fetched: the secret does not wait for ever. The new key, never seen by
                # anyone, is then an unused key like any other (its own finding, its own Delete).
                rotation.schedule_secret_deletion(aws, row.account_id, row.secret_arn)
                self._update(row, actor, A.ROTATION_SECRET_DELETED, subject, now,
                             {"secret_arn": row.secret_arn, "reason": "not fetched",
                              "days": self.settings.rotation_secret_days},
                             status=EXPIRED, secret_delete_at=now + timedelta(days=rotation.RECOVERY_DAYS))
                counts["expired"] += 1
                return
            if read_on is not None:
                rotation.schedule_secret_deletion(aws, row.account_id, row.secret_arn)
                self._update(row, actor, A.ROTATION_PICKED_UP, subject, now,
                             {"secret_arn": row.secret_arn, "read_on": read_on.date().isoformat(),
                              "deletion_in_days": rotation.RECOVERY_DAYS},
                             secret_delete_at=now + timedelta(days=rotation.RECOVERY_DAYS))
                counts["picked_up"] += 1
        new_used = rotation.key_last_used(aws, row.account_id, str(row.new_key_id))
        old_used = rotation.key_last_used(aws, row.account_id, row.old_key_id)
        if new_used is not None and row.new_key_first_used_at is None:
            self._update(row, actor, A.ROTATION_NEW_KEY_USED, subject, now,
                         {"new_key_id": row.new_key_id, "used": new_used.isoformat()}, new_key_first_used_at=new_used)
            counts["new_key_used"] += 1
        self._update(row, None, None, subject, now, {}, old_key_last_used_at=old_used)
        quiet = timedelta(days=self.settings.rotation_quiet_days)
        if new_used is None or (old_used is not None and now - old_used < quiet):
            return  # the old key stays until the new one is seen in use and the old one is quiet
        if self.settings.rotation_auto_deactivate:
            self._deactivate(row, finding, subject, now, counts)
        elif row.status != OFFERED:
            self._offer(row, finding, subject, now, old_used)
            counts["offered"] += 1

    def _deactivate(self, row: KeyRotation, finding: Finding | None, subject: dict, now: datetime,
                    counts: Counter[str]) -> None:
        """Steward deactivates the old key itself, as an announced auto-remediation (one-click
        Undo for the owner through the remediation's own Undo)."""
        if finding is None:
            return
        service = self._remediation_service()
        planned = service.request(finding.id, "deactivate-access-key", actor=AUTO_ACTOR)
        service.approve(planned.id, approver=AUTO_ACTOR)
        done = service.execute(planned.id, actor=AUTO_ACTOR)
        if done.status != "succeeded":
            raise ServiceError(f"deactivating {row.old_key_id} failed: {done.error}")
        self._update(row, AUTO_ACTOR, A.ROTATION_OLD_KEY_DEACTIVATED, subject, now,
                     {"old_key_id": row.old_key_id, "remediation_id": done.id, "automatic": True},
                     status=DEACTIVATED, deactivated_at=now, deactivated_by=AUTO_ACTOR,
                     delete_after=now + timedelta(days=self.settings.delete_after_days))
        counts["deactivated"] += 1
        if self.client is not None and finding.notified_to:
            from bot.slack.blocks.rotation import deactivated_text

            self.client.chat_postMessage(channel=finding.notified_to, text=deactivated_text(row, done.id))

    def _offer(self, row: KeyRotation, finding: Finding | None, subject: dict, now: datetime,
               old_used: datetime | None) -> None:
        if self.client is not None and finding is not None and finding.notified_to:
            from bot.slack.blocks.rotation import offer_blocks, offer_text

            self.client.chat_postMessage(channel=finding.notified_to, text=offer_text(row, old_used),
                                         blocks=offer_blocks(row, old_used, finding.token))
        self._update(row, "system", A.ROTATION_DEACTIVATION_OFFERED, subject, now,
                     {"old_key_id": row.old_key_id, "old_last_used": old_used.isoformat() if old_used else None,
                      "dm": bool(self.client is not None and finding is not None and finding.notified_to)},
                     status=OFFERED, offered_at=now)

    # -- helpers --------------------------------------------------------------------------

    def _update(self, row: KeyRotation, actor: str | None, action, subject: dict, now: datetime, payload: dict,
                **values) -> None:
        with write_scope(self.engine) as session:
            current = session.get(KeyRotation, row.id)
            for key, value in values.items():
                setattr(current, key, value)
                setattr(row, key, value)
            current.updated_at = now
            if action is not None:
                audit.record(session, actor=actor or "system", action=action, at=now,
                             payload={"rotation_id": row.id, **payload}, **subject)

    def _fail(self, row: KeyRotation, finding: Finding, actor: str, error: str) -> None:
        now = self.clock()
        with write_scope(self.engine) as session:
            current = session.get(KeyRotation, row.id)
            current.status, current.error, current.updated_at = FAILED, error[:4000], now
            audit.record(session, actor=actor, action=A.ROTATION_FAILED, subject_fingerprint=finding.fingerprint,
                         resource=finding.resource, account=finding.account_id, at=now,
                         payload={"rotation_id": row.id, "error": error})

    def _refuse(self, actor: str, finding: Finding, reason: str, now: datetime) -> None:
        with write_scope(self.engine) as session:
            audit.record(session, actor=actor, action=A.REFUSED, subject_fingerprint=finding.fingerprint,
                         resource=finding.resource, account=finding.account_id, at=now,
                         payload={"reason": f"rotate-for-me: {reason}"})

    def _old_key_finding(self, row: KeyRotation) -> Finding | None:
        with session_scope(self.engine) as session:
            for finding in session.exec(select(Finding).where(
                    Finding.account_id == row.account_id, Finding.check_id == "old-access-key",
                    Finding.resource == row.reader_arn)):
                if (finding.details or {}).get("access_key_id") == row.old_key_id:
                    return finding
        return None

    def _remediation_service(self):
        if self._remediations is None:
            from bot.services.remediation import RemediationService

            self._remediations = RemediationService(self.settings, engine=self.engine,
                                                    aws_session_factory=self._aws_session_factory, clock=self.clock)
        return self._remediations

    def _session(self, account_id: str, partition: str = "aws"):
        """The rotation role of the account (STEWARD_ROTATION_ROLE_NAME), checked to be there."""
        from checks import accounts
        from checks.aws_calls import CollectError, caller_account

        name = str(self.settings.rotation_role_name)
        base = self._aws_session_factory() if self._aws_session_factory else accounts.shared_session()
        try:
            role = accounts.restore_target(account_id, name, partition)
            aws = accounts.session_for(role, base, external_id=self.settings.external_id)
            caller_account(aws, self.settings.aws_max_attempts, expected=account_id)
        except CollectError as exc:
            raise ServiceError(f"Steward's rotation role {name} could not be used in account {account_id} "
                               f"(is EnableRotation on there?): {exc.message}") from None
        return aws
