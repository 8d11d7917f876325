"""`steward demo`: the seeded organisation, the demo started in-process and as the CLI, the
page, and the requests the page turns into signed Slack requests to Steward.

The demo runs Steward's real routing cycle (the owner DMs and the security triage come
from `steward.campaigns.run_cycle()`) and real listeners behind `/slack/events`.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from datetime import date
from pathlib import Path

import pytest

from sandbox import demo_data
from sandbox.demo import Demo, DemoError, action_payload, element_state, state_from
from sandbox.page import Renderer, mrkdwn, render_iam

needs_moto = pytest.mark.skipif(importlib.util.find_spec("moto") is None, reason="moto is not installed")

PRIYA, SAM, MARCO, TOM = "U0PRIYA001", "U0SAMOK001", "U0MARCO001", "U0TOMBE001"
START_LIMIT = 120  # seconds; a bound so a hang fails the test, not a timing assertion


# ---------------------------------------------------------------------------------------
# The data set


def test_the_organisation_is_generated_by_code_and_the_same_for_the_same_seed():
    org = demo_data.build()
    assert org == demo_data.build(demo_data.DEFAULT_SEED)
    assert org != demo_data.build(demo_data.DEFAULT_SEED + 1)
    assert [a.id for a in org.accounts] == [demo_data.PROD_ACCOUNT, demo_data.DEV_ACCOUNT]
    users = org.users
    assert 35 <= len(users) <= 45
    for account in org.accounts:
        names = [u.name for u in account.users]
        assert len(names) == len(set(names))
        assert any(r.name == demo_data.STEWARD_ROLE for r in account.roles)
    owners = {u.owner for _, u in users}
    assert None in owners  # untagged users: security triage has work
    slack_emails = {p.email for p in org.slack_people if p.active}
    assert len(owners & slack_emails) >= 7  # most owners are people in Slack
    assert any(p.email in owners for p in org.people if not p.active)  # someone who left
    assert len(org.approvers) == 2
    # realistic ages: some keys fresh, some older than a year, some never used
    keys = [k for _, u in users for k in u.keys]
    assert any(k.created > 365 for k in keys) and any(k.created < 30 for k in keys)
    assert any(k.last_used is None for k in keys)


# ---------------------------------------------------------------------------------------
# Rendering and payload helpers (pure)


def test_mrkdwn_renders_links_formatting_mentions_and_is_safe():
    users = {"U1": "Priya Shah"}
    html = mrkdwn("*Key* _old_ ~gone~ `AKIA<x>` <https://e.example/a?b=1&amp;c=2|the *console*> <@U1> :key:", users)
    assert "<b>Key</b>" in html and "<i>old</i>" in html and "<s>gone</s>" in html
    assert "<code>AKIA&lt;x&gt;</code>" in html
    assert '<a href="https://e.example/a?b=1&amp;c=2"' in html
    assert "@Priya Shah" in html and "🔑" in html
    # IAM text is full of `*` and `_` that are not formatting
    assert mrkdwn("s3:*, ec2:* on my_bucket_name") == "s3:*, ec2:* on my_bucket_name"
    assert "<script" not in mrkdwn("<script>alert(1)</script> &lt;script&gt;")
    assert "href" not in mrkdwn("<javascript:alert(1)|click>")


def test_block_kit_elements_render_with_what_the_page_needs_to_act():
    renderer = Renderer(
        [{"id": "U1", "name": "priya", "real_name": "Priya Shah"}],
        [{"id": "C1", "name": "security"}],
        "UBOT",
    )
    blocks = [
        {"type": "header", "block_id": "h", "text": {"type": "plain_text", "text": "Hello"}},
        {"type": "section", "block_id": "s", "text": {"type": "mrkdwn", "text": "*Hi* <@U1>"},
         "fields": [{"type": "mrkdwn", "text": "a"}, {"type": "plain_text", "text": "b"}],
         "accessory": {"type": "overflow", "action_id": "more", "options": [
             {"text": {"type": "plain_text", "text": "Open"}, "value": "open"}]}},
        {"type": "divider"},
        {"type": "actions", "block_id": "a", "elements": [
            {"type": "button", "action_id": "go", "text": {"type": "plain_text", "text": "Go"},
             "style": "danger", "value": "t1",
             "confirm": {"title": {"type": "plain_text", "text": "Sure?"},
                         "text": {"type": "mrkdwn", "text": "*Really*"},
                         "confirm": {"type": "plain_text", "text": "Yes"},
                         "deny": {"type": "plain_text", "text": "No"}}},
            {"type": "static_select", "action_id": "pick", "options": [
                {"text": {"type": "plain_text", "text": "7 days"}, "value": "7"}]},
            {"type": "users_select", "action_id": "who"},
            {"type": "datepicker", "action_id": "when", "initial_date": "2030-01-02"},
        ]},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "_small_"}]},
        {"type": "image", "image_url": "https://e.example/i.png", "alt_text": "chart"},
    ]
    html = renderer.blocks(blocks)
    assert 'class="b-header"' in html and "<hr" in html and "b-fields" in html
    assert 'class="sk-btn danger"' in html and 'data-aid="go"' in html and 'data-bid="a"' in html
    assert "data-confirm=" in html and "Sure?" in html
    assert 'data-kind="static_select"' in html and ">7 days<" in html
    assert ">Priya Shah<" in html  # users_select lists the workspace's people
    assert 'type="date"' in html and "2030-01-02" in html
    assert 'class="sk-overflow"' in html and "<i>small</i>" in html
    assert '<img class="img" src="https://e.example/i.png"' in html


def test_actions_and_state_are_built_like_slack_builds_them():
    select = {"type": "static_select", "action_id": "pick", "placeholder": {"type": "plain_text", "text": "Snooze"},
              "options": [{"text": {"type": "plain_text", "text": "7 days"}, "value": "t:7"}]}
    action = action_payload(select, "t:7")
    assert action["selected_option"]["value"] == "t:7" and "text" not in action
    button = {"type": "button", "action_id": "b", "text": {"type": "plain_text", "text": "Go"}, "value": "tok",
              "style": "primary"}
    assert action_payload(button, None) == {"type": "button", "text": button["text"], "value": "tok",
                                            "style": "primary"}
    assert element_state({"type": "users_select", "action_id": "u"}, "U1") == {
        "type": "users_select", "selected_user": "U1"}
    modal = [
        {"type": "input", "block_id": "reason",
         "element": {"type": "plain_text_input", "action_id": "value"}},
        {"type": "input", "block_id": "until",
         "element": {"type": "datepicker", "action_id": "value", "initial_date": "2030-01-01"}},
    ]
    assert state_from(modal, {"reason": {"value": "needed"}}, inputs_only=True) == {
        "reason": {"value": {"type": "plain_text_input", "value": "needed"}},
        "until": {"value": {"type": "datepicker", "selected_date": "2030-01-01"}},
    }


def test_the_iam_panel_puts_the_viewers_users_first():
    accounts = [{"id": "1" * 12, "alias": "prod", "error": None, "users": [
        {"name": "a", "owner": None, "keys": [{"id": "AKIA1111111111111111", "status": "Inactive"}]},
        {"name": "b", "owner": "Me@x.example", "keys": [], "quarantined": True},
    ]}]
    html = render_iam(accounts, "me@x.example")
    assert html.index('data-user="b"') < html.index('data-user="a"')
    assert 'data-status="Inactive"' in html and "quarantined" in html and "no owner tag" in html


# ---------------------------------------------------------------------------------------
# The demo, in-process


def start_demo(**kwargs) -> Demo:
    demo = Demo(port=0, **kwargs)
    done: list[BaseException | None] = []

    def run() -> None:
        try:
            demo.start()
            done.append(None)
        except BaseException as exc:
            done.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(START_LIMIT)
    if not done:
        demo.stop()
        pytest.fail(f"the demo did not start within {START_LIMIT} s")
    if done[0] is not None:
        raise done[0]
    return demo


@pytest.fixture
def demo():
    running = start_demo()
    try:
        yield running
    finally:
        running.stop()


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read().decode("utf-8", errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8")


def post(demo: Demo, path: str, data: dict, *, content_type: str = "application/json",
         host: str | None = None) -> tuple[int, dict]:
    port = int(demo.url.rsplit(":", 1)[1].strip("/"))
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": content_type}
    if host:
        headers["Host"] = host
    connection.request("POST", path, body=json.dumps(data).encode(), headers=headers)
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, json.loads(body or b"{}")


def steward_findings(demo: Demo) -> list:
    from sqlmodel import select

    from bot.db.engine import session_scope
    from bot.db.models import Finding

    with session_scope(demo.runtime.engine) as session:
        rows = session.exec(select(Finding)).all()
        return [(f.account_id, f.check_id, f.owner, f.state) for f in rows]


@needs_moto
def test_demo_starts_seeds_scans_routes_and_serves_the_page(demo):
    assert demo.warnings == []
    assert set(demo.timings) >= {"iam_sandbox", "slack_sandbox", "steward", "scan", "routing", "digest",
                                 "total"}

    # seeded: about 40 users in two accounts, read back live through the IAM API
    accounts = demo.iam_state(max_age=0)
    assert [a["id"] for a in accounts] == [demo_data.PROD_ACCOUNT, demo_data.DEV_ACCOUNT]
    assert all(a["error"] is None for a in accounts)
    assert 35 <= sum(len(a["users"]) for a in accounts) <= 45
    assert all(len(a["users"]) >= 15 for a in accounts)
    assert any(not u["owner"] for a in accounts for u in a["users"])

    # scanned: both accounts, findings of many checks, owners from the tags
    assert [s["status"] for s in demo.summary["scan"]] == ["succeeded", "succeeded"]
    findings = steward_findings(demo)
    checks = Counter(check for _, check, _, _ in findings)
    assert len(checks) >= 14, checks
    assert {account for account, *_ in findings} == {demo_data.PROD_ACCOUNT, demo_data.DEV_ACCOUNT}
    for check in ("unused-access-key", "stale-user", "admin-policy", "role-trust-public",
                  "compromised-key-quarantine", "password-policy-weak", "unused-role"):
        assert checks[check], check

    # routed: owners got DMs, the rest went to #security
    fake = demo.fake
    assert fake is not None
    assert any(m.get("blocks") for m in fake.dm(PRIYA))
    assert fake.messages(demo.security_channel)
    assert all(state != "open" for *_, state in findings)

    # the weekly digest is in #security, its chart in the thread, visible to members only
    assert demo.summary["digest"]["posted"] is True
    chart = next(f for f in fake.files() if f["name"].endswith(".png"))
    status, _ = get(f"{demo.url}demo/file/{chart['id']}?as={SAM}")
    assert status == 200
    status, _ = get(f"{demo.url}demo/file/{chart['id']}?as={PRIYA}")
    assert status == 404

    status, page = get(f"{demo.url}?as={PRIYA}")
    assert status == 200
    assert "Priya Shah" in page and "Deactivate key" in page and "IAM sandbox" in page
    status, body = get(f"{demo.url}demo/state?as={SAM}")
    state = json.loads(body)
    assert status == 200 and "# security" in state["header"] and "Acknowledge" in state["messages"]


@needs_moto
def test_a_slash_command_from_the_page_is_signed_sent_and_answered(demo):
    fake = demo.fake
    assert fake is not None
    status, answer = post(demo, "/demo/command", {"as": PRIYA, "text": "/iam whoami"})
    assert status == 200 and answer["ok"], answer
    dm = demo.dm_channel(PRIYA)
    replies = fake.ephemerals(PRIYA, dm)
    assert replies and "priya.shah" in json.dumps(replies[-1]), replies
    # Steward really got a slash command: only approvers may scan
    status, answer = post(demo, "/demo/command", {"as": PRIYA, "text": "/iam scan"})
    assert status == 200 and answer["ok"]
    assert "Only security approvers" in fake.ephemerals(PRIYA, dm)[-1]["text"]
    # and an unknown command never reaches it
    status, answer = post(demo, "/demo/command", {"as": PRIYA, "text": "/deploy prod"})
    assert answer["ok"] is False and "not a valid command" in answer["error"]
    # the page's endpoints take JSON only (no cross-site form posts), from a loopback Host
    status, _ = post(demo, "/demo/command", {"as": PRIYA, "text": "/iam help"},
                     content_type="application/x-www-form-urlencoded")
    assert status == 415
    status, _ = post(demo, "/demo/command", {"as": PRIYA, "text": "/iam help"}, host="evil.example")
    assert status == 403


@needs_moto
def keep_option(messages):
    """(message, actions block, option) of the first card offering Keep… behind "More…"."""
    for message in messages:
        for block in message.get("blocks") or ():
            for element in block.get("elements") or ():
                if element.get("action_id") == "card:more":
                    for option in element["options"]:
                        if option["value"].startswith("keep|"):
                            return message, block, option
    raise AssertionError("no card offers Keep…")


def test_a_modal_opens_shows_errors_and_closes_on_a_valid_submission(demo):
    fake = demo.fake
    assert fake is not None
    dm = demo.dm_channel(PRIYA)
    message, block, keep = keep_option(fake.dm(PRIYA))
    result = demo.block_action(PRIYA, source="message", channel=dm, ts=message["ts"],
                               block_id=block["block_id"], action_id="card:more", selected=keep["value"])
    assert result["ok"], result
    stack = fake.wait_for(lambda: demo.modal_stack(PRIYA), timeout=10)
    view = stack[-1]
    status, body = get(f"{demo.url}demo/state?as={PRIYA}")
    assert 'class="modal"' in json.loads(body)["modal"]

    status, answer = post(demo, "/demo/submit", {"as": PRIYA, "view": view["id"],
                                                  "values": {"reason": {"value": "no"}}})
    assert status == 200 and answer["ok"] is False and "reason" in answer["errors"]
    assert "error" in json.loads(get(f"{demo.url}demo/state?as={PRIYA}")[1])["modal"]

    until = date.fromordinal(demo.runtime.steward.campaigns.clock().date().toordinal() + 20)
    _, answer = post(demo, "/demo/submit", {
        "as": PRIYA, "view": view["id"],
        "values": {"reason": {"value": "The nightly export still needs it"},
                   "until": {"value": until.isoformat()}}})
    assert answer == {"ok": True, "closed": True}, answer
    assert demo.modal_stack(PRIYA) == []
    assert any(state == "excepted" for *_, state in steward_findings(demo))


def card_with(messages, text: str):
    """(message, first actions block after the block that mentions `text`)."""
    for message in messages:
        blocks = message.get("blocks") or []
        for i, block in enumerate(blocks):
            if text in json.dumps(block):
                actions = next((b for b in blocks[i + 1:] if b.get("type") == "actions"), None)
                if actions is not None:
                    return message, actions
    raise AssertionError(f"no card mentions {text!r}")


def element(actions: dict, label: str) -> dict:
    for item in actions["elements"]:
        if label in ((item.get("text") or {}).get("text") or ""):
            return item
        for option in item.get("options") or ():
            if label in option["text"]["text"]:
                return {**item, "selected": option["value"]}
    raise AssertionError(f"no {label!r} in {json.dumps(actions)[:800]}")


def click(demo: Demo, user: str, channel: str, message: dict, actions: dict, label: str) -> None:
    """What the page sends for a click on `label` (a button, or an option of a select)."""
    item = element(actions, label)
    status, answer = post(demo, "/demo/action", {
        "as": user, "src": "message", "channel": channel, "ts": message["ts"],
        "block_id": actions["block_id"], "action_id": item["action_id"], "selected": item.get("selected")})
    assert status == 200 and answer["ok"], answer


def role_services(demo: Demo, account: str, role: str, policy: str) -> list[str]:
    state = next(a for a in demo.iam_state(max_age=0) if a["id"] == account)
    return next(r for r in state["roles"] if r["name"] == role)["inline"][policy]


@needs_moto
def test_least_privilege_from_usage_shows_the_diff_the_json_and_applies_it(demo):
    """The usage rows stored at start-up (UsageService.store) make the scan's
    unused-permissions check propose a right-sized policy for the role granted seven
    services and using two; its owner sees the diff, the JSON, and applies it."""
    fake = demo.fake
    assert fake is not None and demo.summary["usage"] == {demo_data.PROD_ACCOUNT: 1}
    role = demo_data.RIGHTSIZE_ROLE
    summary = ("removes glue:GetTable, glue:GetPartitions, dynamodb:Query, dynamodb:PutItem, sqs:SendMessage, "
               "sns:Publish, kms:Decrypt; keeps s3:GetObject, s3:PutObject, s3:ListBucket, "
               "athena:StartQueryExecution, athena:GetQueryExecution, athena:GetQueryResults")
    found = [f for f in steward_findings(demo) if f[1] == "unused-permissions"]
    assert found == [(demo_data.PROD_ACCOUNT, "unused-permissions", "marco.rossi@acme.example", "notified")]
    status, page = get(f"{demo.url}?as={MARCO}")
    assert status == 200 and f"Right-sized: {summary}." in page and "Apply right-sized policy" in page
    before = role_services(demo, demo_data.PROD_ACCOUNT, role, "reporting")
    assert before == ["athena", "dynamodb", "glue", "kms", "s3", "sns", "sqs"]
    assert f'data-role="{role}"' in get(f"{demo.url}?as={MARCO}")[1]  # in Marco's IAM panel

    dm = demo.dm_channel(MARCO)
    message, actions = card_with(fake.dm(MARCO), f"role/{role}")
    click(demo, MARCO, dm, message, actions, "Show policy JSON")
    view = fake.wait_for(lambda: demo.modal_stack(MARCO), timeout=10)[-1]
    shown = json.dumps(view["blocks"])
    assert summary in shown and '\\"athena:GetQueryResults\\"' in shown and "kms:Decrypt" not in shown.split("```")[1]
    assert demo.close_view(MARCO, view["id"]) == {"ok": True}

    click(demo, MARCO, dm, message, actions, "Apply right-sized policy")
    fake.wait_for(lambda: "Apply right-sized policy* done by" in json.dumps(fake.message(dm, message["ts"])),
                  timeout=20)
    assert role_services(demo, demo_data.PROD_ACCOUNT, role, "reporting") == ["athena", "s3"]


@needs_moto
def test_did_you_do_this_asks_the_actor_and_no_escalates_with_containment(demo):
    """The risky change made at start-up (a key for the break-glass admin) came in as a
    CloudTrail event through one poll of the activity intake; Tom is asked; his No puts it
    in #security with containment, and a security approver's click contains it."""
    fake = demo.fake
    assert fake is not None
    assert demo.summary["activity"]["risky"] == 1 and demo.summary["activity"]["deleted"] == 1
    target = demo_data.RISKY_CHANGE.target
    prod = next(a for a in demo.iam_state(max_age=0) if a["id"] == demo_data.PROD_ACCOUNT)
    [new_key] = next(u for u in prod["users"] if u["name"] == target)["keys"]
    assert new_key["status"] == "Active"

    dm = demo.dm_channel(TOM)
    message, actions = card_with(fake.dm(TOM), "Did you do this?")
    text = json.dumps(message["blocks"])
    assert f"created access key {new_key['id']} for IAM user {target}" in text and "tom.becker" in text
    status, page = get(f"{demo.url}?as={TOM}")
    assert status == 200 and "Did you do this?" in page and "Yes, it was me" in page
    before = len(fake.messages(demo.security_channel))

    click(demo, TOM, dm, message, actions, "No, this wasn't me")
    escalation = fake.wait_for(lambda: fake.messages(demo.security_channel)[before:], timeout=20)[-1]
    said = json.dumps(escalation["blocks"])
    assert "Risky IAM change" in said and f"Deactivate the new key {new_key['id']}" in said
    assert "Quarantine tom.becker" in said and said.count("Deactivate") >= 2  # the new key, and Tom's
    # the question is answered: the DM says so, with no buttons left
    fake.wait_for(lambda: "activity:no" not in json.dumps(fake.message(dm, message["ts"])), timeout=20)

    _, buttons = card_with([escalation], f"created access key {new_key['id']}")
    click(demo, SAM, demo.security_channel, escalation, buttons, f"Deactivate the new key {new_key['id']}")
    fake.wait_for(lambda: next(u for a in demo.iam_state(max_age=0) if a["id"] == demo_data.PROD_ACCOUNT
                               for u in a["users"] if u["name"] == target)["keys"][0]["status"] == "Inactive",
                  timeout=20)

    # Then Tom is quarantined, and "Ask to undo: Quarantine tom.becker" asks to undo the
    # quarantine (each Undo of the message has its own action id), not the key's deactivation.
    sec = demo.security_channel

    def now_showing(text: str) -> dict:
        return fake.wait_for(lambda: text in json.dumps(m := fake.message(sec, escalation["ts"])) and m, timeout=20)

    current = now_showing("Ask to undo")
    click(demo, SAM, sec, current, card_with([current], "created access key")[1], "Quarantine tom.becker")
    current = now_showing("Ask to undo: Quarantine tom.becker")
    assert "Deactivate the key tom.becker used" not in json.dumps(card_with([current], "created access key")[1])
    asked = len([m for m in fake.messages(sec) if "Undo needs approval" in json.dumps(m.get("blocks"))])
    click(demo, SAM, sec, current, card_with([current], "created access key")[1], "Ask to undo: Quarantine tom.becker")
    request = fake.wait_for(lambda: [m for m in fake.messages(sec)
                                     if "Undo needs approval" in json.dumps(m.get("blocks"))][asked:], timeout=20)[-1]
    assert "uarantine" in json.dumps(request["blocks"]) and "Deactivate access key" not in json.dumps(request["blocks"])


@needs_moto
def test_a_busy_port_is_one_clear_error_and_leaves_the_environment_alone(monkeypatch):
    monkeypatch.setenv("AWS_PROFILE", "someone-elses")
    before = dict(os.environ)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(DemoError, match="--port"):
            Demo(port=port).start()
    assert dict(os.environ) == before


@needs_moto
def test_stopping_puts_the_aws_environment_back(monkeypatch):
    monkeypatch.setenv("AWS_PROFILE", "someone-elses")
    monkeypatch.setenv("AWS_ENDPOINT_URL_IAM", "https://iam.example")
    before = dict(os.environ)
    demo = start_demo(run_cycle=False)
    try:
        assert "AWS_PROFILE" not in os.environ and "AWS_ENDPOINT_URL_IAM" not in os.environ
        assert os.environ["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
        assert "no routing cycle" not in " ".join(demo.warnings)
    finally:
        demo.stop()
    assert dict(os.environ) == before


# ---------------------------------------------------------------------------------------
# The CLI


def steward_command() -> list[str]:
    script = Path(sys.executable).parent / "steward"
    return [str(script)] if script.exists() else [sys.executable, "-m", "bot"]


@needs_moto
def test_steward_demo_command_prints_the_url_serves_and_stops_on_ctrl_c(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "STEWARD_", "SLACK_"))}
    process = subprocess.Popen(
        [*steward_command(), "demo", "--no-browser", "--port", str(port)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    reader.start()
    deadline = time.monotonic() + START_LIMIT
    url = None
    while time.monotonic() < deadline and process.poll() is None:
        found = re.search(r"(http://127\.0\.0\.1:\d+/)", "".join(lines))
        if found:
            url = found.group(1)
            break
        time.sleep(0.2)
    try:
        assert url == f"http://127.0.0.1:{port}/", (lines, process.poll())
        status, page = get(f"{url}?as={PRIYA}")
        assert status == 200 and "Deactivate key" in page
        from tests.test_demo_disconnects import hang_up

        for path in ("/", "/demo/iam", "/demo/slack") * 2:  # "View as" leaves requests unanswered
            hang_up(port, f"GET {path}?as={PRIYA} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode(), wait=0)
        time.sleep(0.5)
        assert get(f"{url}?as={PRIYA}")[0] == 200
    finally:
        process.send_signal(signal.SIGINT)
        try:
            code = process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    stderr = process.stderr.read() if process.stderr else ""
    assert code == 0, stderr
    assert "findings" in stderr and "demo stopped" in stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
