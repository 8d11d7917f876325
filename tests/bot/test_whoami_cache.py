"""`/iam whoami` replies are cached only until the next audited change."""

from __future__ import annotations

from bot.config import Settings
from bot.db import audit
from bot.db.engine import session_scope
from bot.db.models import IamIdentity
from bot.services.steward import Steward
from tests.factories import ACCOUNT, NOW


class Directory:
    client = None

    def owner_values(self, user):
        return {user, "alice@example.com"}

    def is_approver(self, user):
        return False


def test_cached_reply_is_dropped_by_any_audited_change(engine, database_url):
    steward = Steward(Settings(database_url=database_url), engine=engine, directory=Directory(), client=object())
    first = steward.whoami_reply("UALICE")
    assert steward.whoami_reply("UALICE") is first  # served from the cache
    assert "I don't know of any IAM user" in str(first[1])
    with session_scope(engine) as session:
        session.add(IamIdentity(account_id=ACCOUNT, name="alice", arn=f"arn:aws:iam::{ACCOUNT}:user/alice",
                                owner="alice@example.com", facts={"keys": []}, last_seen=NOW))
        audit.record(session, actor="system", action=audit.AuditAction.SCAN_SUCCEEDED, account=ACCOUNT)
    fresh = steward.whoami_reply("UALICE")
    assert fresh is not first and "user/alice" in str(fresh[1])
