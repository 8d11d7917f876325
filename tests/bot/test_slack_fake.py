"""The Slack Web API fake, driven by a real slack_sdk WebClient over HTTP."""

from __future__ import annotations

import json
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.webhook import WebhookClient

from bot.slack.methods import METHODS
from sandbox.slack_fake import (
    MAX_TEXT_CHARS,
    RESPONSE_URL_MAX_USES,
    SlackFake,
)

TS_RE = re.compile(r"^\d{10}\.\d{6}$")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake(clock: FakeClock) -> Iterator[SlackFake]:
    with SlackFake(clock=clock) as f:
        yield f
    # Every error the fake answered is one Slack documents for that method.
    undocumented = {(c.method, c.response["error"]) for c in f.calls() if c.method in METHODS
                    and isinstance(c.response, dict) and not c.response.get("ok")
                    and c.response["error"] not in METHODS[c.method].errors}
    assert undocumented == set()


@pytest.fixture
def client(fake: SlackFake) -> WebClient:
    return WebClient(base_url=fake.base_url, token=fake.token, timeout=5)


@pytest.fixture
def alice(fake: SlackFake) -> str:
    return fake.add_user("U0ALICE001", name="alice", real_name="Alice A", email="alice@example.com")


@pytest.fixture
def bob(fake: SlackFake) -> str:
    return fake.add_user("U0BOB00001", name="bob", email="Bob@Example.com", tz="America/New_York")


def slack_error(excinfo: pytest.ExceptionInfo[SlackApiError]) -> str:
    return str(excinfo.value.response["error"])


# --------------------------------------------------------------------------- plumbing


def test_the_fake_answers_exactly_the_methods_bot_slack_methods_describes() -> None:
    """Every method of the facts table has a handler in one of the fake's sections (and
    nothing else does): a method the bot starts calling cannot go unanswered unnoticed."""
    with SlackFake() as f:
        answered = set()
        for method, facts in METHODS.items():
            token = f.app_token if facts.app_token else f.token
            status, body, _ = f.handle_api(method, {}, token)
            if body.get("error") != "unknown_method":
                answered.add(method)
        assert answered == set(METHODS)
        status, body, _ = f.handle_api("chat.scheduleMessage", {}, f.token)
        assert (status, body["error"]) == (404, "unknown_method")


def test_base_url_ends_with_api_and_webclient_joins_method(
    fake: SlackFake, client: WebClient
) -> None:
    assert fake.base_url.endswith("/api/")
    assert fake.base_url.startswith("http://127.0.0.1:")
    resp = client.auth_test()
    assert resp.api_url == fake.base_url + "auth.test"


def test_start_stop_are_idempotent_and_free_the_port() -> None:
    fake = SlackFake()
    fake.start()
    fake.start()
    port = fake.port
    assert fake.running
    fake.stop()
    fake.stop()
    assert not fake.running
    with pytest.raises(RuntimeError):
        _ = fake.port
    again = SlackFake(port=port).start()  # the port was released
    again.stop()


def test_auth_test(fake: SlackFake, client: WebClient) -> None:
    resp = client.auth_test()
    assert resp["ok"] is True
    assert resp["user_id"] == fake.bot_user_id
    assert resp["bot_id"] == fake.bot_id
    assert resp["team_id"] == fake.team_id
    assert resp["url"] == f"https://{fake.team_domain}.slack.com/"


def test_wrong_token_is_invalid_auth(fake: SlackFake) -> None:
    bad = WebClient(base_url=fake.base_url, token="xoxb-wrong")
    with pytest.raises(SlackApiError) as excinfo:
        bad.auth_test()
    assert slack_error(excinfo) == "invalid_auth"
    assert fake.last_call("auth.test").token == "xoxb-wrong"


def test_missing_token_is_not_authed(fake: SlackFake) -> None:
    anonymous = WebClient(base_url=fake.base_url)
    with pytest.raises(SlackApiError) as excinfo:
        anonymous.auth_test()
    assert slack_error(excinfo) == "not_authed"


def raw_post(url: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


def test_token_in_form_body_accepted_but_not_in_json_body(fake: SlackFake, alice: str) -> None:
    url = fake.base_url + "users.info"
    form = f"token={fake.token}&user={alice}".encode()
    answer = raw_post(url, form, {"Content-Type": "application/x-www-form-urlencoded"})
    assert answer["ok"] is True and answer["user"]["id"] == alice

    as_json = json.dumps({"token": fake.token, "user": alice}).encode()
    answer = raw_post(url, as_json, {"Content-Type": "application/json"})
    assert answer == {"ok": False, "error": "not_authed"}

    answer = raw_post(
        url,
        json.dumps({"user": alice}).encode(),
        {"Content-Type": "application/json", "Authorization": f"Bearer {fake.token}"},
    )
    assert answer["ok"] is True


def test_get_with_query_parameters(fake: SlackFake, alice: str) -> None:
    with urllib.request.urlopen(
        f"{fake.base_url}users.info?token={fake.token}&user={alice}", timeout=5
    ) as resp:
        assert json.loads(resp.read())["user"]["name"] == "alice"


def test_unknown_method(fake: SlackFake, client: WebClient) -> None:
    with pytest.raises(SlackApiError) as excinfo:
        client.api_call("nope.nothing")
    assert slack_error(excinfo) == "unknown_method"


def test_form_and_json_bodies_both_parsed_and_recorded(
    fake: SlackFake, client: WebClient, alice: str
) -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*hi*"}}]
    client.api_call(
        "chat.postMessage", params={"channel": alice, "text": "form", "blocks": json.dumps(blocks)}
    )
    client.chat_postMessage(channel=alice, text="json", blocks=blocks)
    form_call, json_call = fake.calls("chat.postMessage")
    assert form_call.params["blocks"] == json.dumps(blocks)  # recorded as sent
    assert json_call.params["blocks"] == blocks
    assert "token" not in form_call.params
    sent = fake.dm(alice)
    assert [m["text"] for m in sent] == ["form", "json"]
    assert all(m["blocks"][0]["text"]["text"] == "*hi*" for m in sent)
    assert all(m["blocks"][0]["block_id"] for m in sent)  # Slack fills in block ids


# --------------------------------------------------------------------------- users


def test_users_info(client: WebClient, alice: str) -> None:
    user = client.users_info(user=alice)["user"]
    assert user["id"] == alice
    assert user["name"] == "alice"
    assert user["real_name"] == "Alice A"
    assert user["profile"]["email"] == "alice@example.com"
    assert user["is_bot"] is False and user["deleted"] is False
    with pytest.raises(SlackApiError) as excinfo:
        client.users_info(user="U0MISSING1")
    assert slack_error(excinfo) == "user_not_found"


def test_missing_required_argument_is_invalid_arguments(client: WebClient) -> None:
    with pytest.raises(SlackApiError) as excinfo:
        client.api_call("users.info", params={})
    assert slack_error(excinfo) == "invalid_arguments"
    assert "user" in excinfo.value.response["response_metadata"]["messages"][0]


def test_users_lookup_by_email(fake: SlackFake, client: WebClient, alice: str, bob: str) -> None:
    assert client.users_lookupByEmail(email="alice@example.com")["user"]["id"] == alice
    assert client.users_lookupByEmail(email="bob@example.com")["user"]["id"] == bob
    with pytest.raises(SlackApiError) as excinfo:
        client.users_lookupByEmail(email="carol@example.com")
    assert slack_error(excinfo) == "users_not_found"
    fake.set_user_deleted(bob)
    with pytest.raises(SlackApiError) as excinfo:
        client.users_lookupByEmail(email="bob@example.com")
    assert slack_error(excinfo) == "users_not_found"  # Slack hides deactivated users here
    assert client.users_info(user=bob)["user"]["deleted"] is True


def test_users_list_paginates_with_cursor(fake: SlackFake, client: WebClient) -> None:
    ids = {fake.add_user(name=f"user{i}") for i in range(5)}
    seen: list[str] = []
    pages = 0
    for page in client.users_list(limit=2):
        pages += 1
        seen += [m["id"] for m in page["members"]]
    assert pages == 3
    assert set(seen) == ids | {fake.bot_user_id}
    assert len(seen) == len(set(seen))
    with pytest.raises(SlackApiError) as excinfo:
        client.users_list(cursor="garbage")
    assert slack_error(excinfo) == "invalid_cursor"


def test_usergroups_users_list(fake: SlackFake, client: WebClient, alice: str, bob: str) -> None:
    group = fake.add_usergroup("security", [alice, bob])
    assert client.usergroups_users_list(usergroup=group)["users"] == [alice, bob]
    with pytest.raises(SlackApiError) as excinfo:
        client.usergroups_users_list(usergroup="S0MISSING1")
    assert slack_error(excinfo) == "no_such_subteam"


# --------------------------------------------------------------------------- conversations


def test_conversations_open(fake: SlackFake, client: WebClient, alice: str) -> None:
    first = client.conversations_open(users=[alice])
    channel = first["channel"]["id"]
    assert channel.startswith("D")
    assert "already_open" not in first
    second = client.conversations_open(users=alice, return_im=True)
    assert second["channel"]["id"] == channel
    assert second["already_open"] is True
    assert second["channel"]["is_im"] is True and second["channel"]["user"] == alice
    assert fake.im_channel(alice) == channel


@pytest.mark.parametrize(
    ("users", "error"),
    [("U0MISSING1", "user_not_found"), ("", "users_list_not_supplied")],
)
def test_conversations_open_errors(client: WebClient, users: str, error: str) -> None:
    with pytest.raises(SlackApiError) as excinfo:
        client.api_call("conversations.open", params={"users": users})
    assert slack_error(excinfo) == error


def test_conversations_open_refuses_bots_and_deactivated_users(
    fake: SlackFake, client: WebClient, alice: str
) -> None:
    with pytest.raises(SlackApiError) as excinfo:
        client.conversations_open(users=fake.bot_user_id)
    assert slack_error(excinfo) == "cannot_dm_bot"
    fake.set_user_deleted(alice)
    with pytest.raises(SlackApiError) as excinfo:
        client.conversations_open(users=alice)
    assert slack_error(excinfo) == "user_disabled"


def test_conversations_history_newest_first_with_pagination(
    fake: SlackFake, client: WebClient
) -> None:
    channel = fake.add_channel("security")
    sent = [client.chat_postMessage(channel=channel, text=f"m{i}")["ts"] for i in range(5)]
    client.chat_postMessage(channel=channel, text="reply", thread_ts=sent[0])
    texts: list[str] = []
    for page in client.conversations_history(channel=channel, limit=2):
        texts += [m["text"] for m in page["messages"]]
    assert texts == ["m4", "m3", "m2", "m1", "m0"]  # replies are not in history
    window = client.conversations_history(
        channel=channel, oldest=sent[1], latest=sent[3], inclusive=True
    )
    assert [m["text"] for m in window["messages"]] == ["m3", "m2", "m1"]
    with pytest.raises(SlackApiError) as excinfo:
        client.conversations_history(channel="C0MISSING1")
    assert slack_error(excinfo) == "channel_not_found"


def test_conversations_replies_and_threads(fake: SlackFake, client: WebClient, alice: str) -> None:
    channel = fake.add_channel("security")
    parent = client.chat_postMessage(channel="#security", text="parent")["ts"]
    r1 = client.chat_postMessage(channel=channel, text="r1", thread_ts=parent)
    fake.post_as_user(channel, alice, "r2 from alice", thread_ts=parent)
    client.chat_postMessage(channel=channel, text="r3", thread_ts=r1["ts"])  # reply to a reply
    client.chat_postMessage(channel=channel, text="shout", thread_ts=parent, reply_broadcast=True)
    replies = client.conversations_replies(channel=channel, ts=parent)["messages"]
    assert [m["text"] for m in replies] == ["parent", "r1", "r2 from alice", "r3", "shout"]
    head = replies[0]
    assert head["reply_count"] == 4
    assert head["reply_users"] == [fake.bot_user_id, alice]
    assert head["latest_reply"] == replies[-1]["ts"]
    assert all(m["thread_ts"] == parent for m in replies)
    history = [m["text"] for m in fake.messages(channel, replies=False)]
    assert history == ["parent", "shout"]  # broadcast replies show in the channel
    assert [m["text"] for m in fake.thread(channel, parent)] == [m["text"] for m in replies]
    with pytest.raises(SlackApiError) as excinfo:
        client.conversations_replies(channel=channel, ts="1.000001")
    assert slack_error(excinfo) == "thread_not_found"


# --------------------------------------------------------------------------- chat


def test_post_message_to_a_user_id_goes_to_their_im(
    fake: SlackFake, client: WebClient, alice: str
) -> None:
    resp = client.chat_postMessage(channel=alice, text="hello")
    assert resp["channel"] == fake.im_channel(alice)
    assert TS_RE.match(resp["ts"])
    msg = resp["message"]
    assert msg["text"] == "hello"
    assert msg["user"] == fake.bot_user_id
    assert msg["bot_id"] == fake.bot_id
    assert fake.dm(alice) == [msg]
    assert fake.message(resp["channel"], resp["ts"]) == msg
    assert fake.message(alice, resp["ts"]) == msg  # a user id stands for their IM
    assert fake.messages(alice) == [msg]


def test_message_ts_are_unique_and_increasing(client: WebClient, alice: str) -> None:
    stamps = [client.chat_postMessage(channel=alice, text=str(i))["ts"] for i in range(20)]
    assert stamps == sorted(stamps, key=lambda ts: tuple(map(int, ts.split("."))))
    assert len(set(stamps)) == len(stamps)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"channel": "C0MISSING1", "text": "x"}, "channel_not_found"),
        ({"channel": "#nowhere", "text": "x"}, "channel_not_found"),
        ({"channel": "U0ALICE001"}, "no_text"),
        (
            {
                "channel": "U0ALICE001",
                "blocks": [{"type": "divider"}] * 51,
                "text": "fallback",
            },
            "invalid_blocks",
        ),
        ({"channel": "U0ALICE001", "blocks": [{"no": "type"}]}, "invalid_blocks_format"),
    ],
)
def test_post_message_validation(
    client: WebClient, alice: str, kwargs: dict[str, Any], error: str
) -> None:
    with pytest.raises(SlackApiError) as excinfo:
        client.api_call("chat.postMessage", json=kwargs)  # raw: the SDK warns on no text
    assert slack_error(excinfo) == error


def test_post_message_allows_fifty_blocks(client: WebClient, alice: str) -> None:
    resp = client.chat_postMessage(channel=alice, text="x", blocks=[{"type": "divider"}] * 50)
    assert len(resp["message"]["blocks"]) == 50


def test_post_message_without_channel(client: WebClient) -> None:
    with pytest.raises(SlackApiError) as excinfo:
        client.api_call("chat.postMessage", json={"text": "x"})
    assert slack_error(excinfo) == "channel_not_found"


def test_long_text_is_truncated_like_slack(fake: SlackFake, client: WebClient, alice: str) -> None:
    resp = client.chat_postMessage(channel=alice, text="a" * (MAX_TEXT_CHARS + 500))
    assert len(resp["message"]["text"]) == MAX_TEXT_CHARS
    assert len(fake.dm(alice)[0]["text"]) == MAX_TEXT_CHARS


def test_private_channel_without_the_bot_is_not_in_channel(
    fake: SlackFake, client: WebClient, alice: str
) -> None:
    channel = fake.add_channel("secret", members=[alice], is_private=True)
    assert channel.startswith("G")
    assert client.chat_postMessage(channel=channel, text="ok")["ok"]  # the bot is added
    channel = fake.add_channel("elsewhere", bot_member=False)
    with pytest.raises(SlackApiError) as excinfo:
        client.chat_postMessage(channel=channel, text="x")
    assert slack_error(excinfo) == "not_in_channel"


def test_chat_update(fake: SlackFake, client: WebClient, alice: str) -> None:
    posted = client.chat_postMessage(channel=alice, text="before", blocks=[{"type": "divider"}])
    updated = client.chat_update(channel=posted["channel"], ts=posted["ts"], text="after")
    assert updated["ts"] == posted["ts"]
    assert updated["text"] == "after"
    (msg,) = fake.dm(alice)
    assert msg["text"] == "after"
    assert msg["blocks"][0]["type"] == "divider"  # omitted blocks are kept
    assert msg["edited"]["user"] == fake.bot_user_id
    client.chat_update(channel=posted["channel"], ts=posted["ts"], text="plain", blocks=[])
    assert "blocks" not in fake.dm(alice)[0]
    with pytest.raises(SlackApiError) as excinfo:
        client.chat_update(channel=posted["channel"], ts="1.000001", text="x")
    assert slack_error(excinfo) == "message_not_found"


def test_chat_update_of_someone_elses_message(
    fake: SlackFake, client: WebClient, alice: str
) -> None:
    channel = fake.add_channel("general")
    ts = fake.post_as_user(channel, alice, "mine")
    with pytest.raises(SlackApiError) as excinfo:
        client.chat_update(channel=channel, ts=ts, text="edited")
    assert slack_error(excinfo) == "cant_update_message"


def test_chat_post_ephemeral(fake: SlackFake, client: WebClient, alice: str, bob: str) -> None:
    channel = fake.add_channel("ops", members=[alice])
    resp = client.chat_postEphemeral(channel=channel, user=alice, text="only you")
    assert TS_RE.match(resp["message_ts"])
    (eph,) = fake.ephemerals(alice)
    assert eph["text"] == "only you" and eph["channel"] == channel and eph["user"] == alice
    assert fake.ephemerals(alice, channel="#ops") == [eph]
    assert fake.messages(channel) == []  # ephemerals are not channel messages
    with pytest.raises(SlackApiError) as excinfo:
        client.chat_postEphemeral(channel=channel, user=bob, text="x")
    assert slack_error(excinfo) == "user_not_in_channel"
    with pytest.raises(SlackApiError) as excinfo:
        client.chat_postEphemeral(channel=channel, user="U0MISSING1", text="x")
    assert slack_error(excinfo) == "user_not_found"


def test_chat_delete(fake: SlackFake, client: WebClient, alice: str) -> None:
    posted = client.chat_postMessage(channel=alice, text="bye")
    resp = client.chat_delete(channel=posted["channel"], ts=posted["ts"])
    assert resp["ts"] == posted["ts"]
    assert fake.dm(alice) == []
    with pytest.raises(SlackApiError) as excinfo:
        client.chat_delete(channel=posted["channel"], ts=posted["ts"])
    assert slack_error(excinfo) == "message_not_found"


def test_deleting_a_thread_parent_leaves_a_tombstone(fake: SlackFake, client: WebClient) -> None:
    channel = fake.add_channel("security")
    parent = client.chat_postMessage(channel=channel, text="parent")["ts"]
    client.chat_postMessage(channel=channel, text="reply", thread_ts=parent)
    client.chat_delete(channel=channel, ts=parent)
    head = fake.messages(channel)[0]
    assert head["subtype"] == "tombstone" and head["reply_count"] == 1


def test_chat_get_permalink(fake: SlackFake, client: WebClient) -> None:
    channel = fake.add_channel("security")
    ts = client.chat_postMessage(channel=channel, text="x")["ts"]
    reply = client.chat_postMessage(channel=channel, text="y", thread_ts=ts)["ts"]
    link = client.chat_getPermalink(channel=channel, message_ts=ts)["permalink"]
    assert link == f"https://{fake.team_domain}.slack.com/archives/{channel}/p{ts.replace('.', '')}"
    reply_link = client.chat_getPermalink(channel=channel, message_ts=reply)["permalink"]
    assert reply_link.endswith(f"?thread_ts={ts}&cid={channel}")
    with pytest.raises(SlackApiError) as excinfo:
        client.chat_getPermalink(channel=channel, message_ts="1.000001")
    assert slack_error(excinfo) == "message_not_found"


# --------------------------------------------------------------------------- views


def modal(title: str = "Keep", blocks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": "keep",
        "title": {"type": "plain_text", "text": title},
        "submit": {"type": "plain_text", "text": "Save"},
        "private_metadata": "finding-1",
        "blocks": blocks if blocks is not None else [{"type": "divider"}],
    }


def test_views_open_update_push(fake: SlackFake, client: WebClient, alice: str) -> None:
    opened = client.views_open(trigger_id=fake.trigger_id(alice), view=modal())["view"]
    assert opened["id"].startswith("V")
    assert opened["callback_id"] == "keep" and opened["private_metadata"] == "finding-1"
    assert opened["root_view_id"] == opened["id"]
    assert opened["state"] == {"values": {}}

    updated = client.views_update(view_id=opened["id"], view=modal("Keep (2)"), hash=opened["hash"])
    assert updated["view"]["id"] == opened["id"]
    assert updated["view"]["title"]["text"] == "Keep (2)"
    with pytest.raises(SlackApiError) as excinfo:
        client.views_update(view_id=opened["id"], view=modal(), hash=opened["hash"])
    assert slack_error(excinfo) == "hash_conflict"
    with pytest.raises(SlackApiError) as excinfo:
        client.views_update(view_id="V0MISSING1", view=modal())
    assert slack_error(excinfo) == "not_found"

    pushed = client.views_push(trigger_id=fake.trigger_id(alice), view=modal("Step 2"))["view"]
    assert pushed["previous_view_id"] == opened["id"]
    assert pushed["root_view_id"] == opened["id"]
    client.views_push(trigger_id=fake.trigger_id(alice), view=modal("Step 3"))
    with pytest.raises(SlackApiError) as excinfo:
        client.views_push(trigger_id=fake.trigger_id(alice), view=modal("Step 4"))
    assert slack_error(excinfo) == "push_limit_reached"
    assert [v["title"]["text"] for v in fake.modals(alice)] == ["Keep (2)", "Step 2", "Step 3"]


def test_views_open_errors(fake: SlackFake, client: WebClient, alice: str) -> None:
    with pytest.raises(SlackApiError) as excinfo:
        client.api_call("views.open", json={"view": modal()})
    assert slack_error(excinfo) == "invalid_arguments"
    with pytest.raises(SlackApiError) as excinfo:
        client.views_open(trigger_id="1.2.x", view={"type": "home", "blocks": []})
    assert slack_error(excinfo) == "invalid_arguments"
    with pytest.raises(SlackApiError) as excinfo:
        client.views_open(trigger_id="1.2.x", view=modal(blocks=[{"type": "divider"}] * 101))
    assert slack_error(excinfo) == "invalid_arguments"
    # an unknown trigger id is accepted (the modal has no known owner) unless strict
    client.views_open(trigger_id="1.2.x", view=modal())
    assert len(fake.modals(None)) == 1


def test_strict_triggers(clock: FakeClock, alice: str) -> None:
    with SlackFake(clock=clock, strict_triggers=True) as strict:
        strict.add_user(alice, name="alice")
        client = WebClient(base_url=strict.base_url, token=strict.token)
        with pytest.raises(SlackApiError) as excinfo:
            client.views_open(trigger_id="1.2.x", view=modal())
        assert slack_error(excinfo) == "invalid_trigger_id"
        trigger = strict.trigger_id(alice)
        clock.now += 10
        with pytest.raises(SlackApiError) as excinfo:
            client.views_open(trigger_id=trigger, view=modal())
        assert slack_error(excinfo) == "expired_trigger_id"


def test_views_publish_home(fake: SlackFake, client: WebClient, alice: str) -> None:
    home = {
        "type": "home",
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}],
    }
    first = client.views_publish(user_id=alice, view=home)["view"]
    second = client.views_publish(user_id=alice, view={"type": "home", "blocks": []})["view"]
    assert second["id"] == first["id"]  # one Home tab per user
    assert fake.home(alice)["blocks"] == []
    assert fake.home("U0NOBODY01") is None
    with pytest.raises(SlackApiError) as excinfo:
        client.views_publish(user_id="U0MISSING1", view=home)
    assert slack_error(excinfo) == "user_not_found"
    with pytest.raises(SlackApiError) as excinfo:
        client.views_publish(user_id=alice, view=modal())
    assert slack_error(excinfo) == "invalid_arguments"


# --------------------------------------------------------------------------- files


def test_files_upload_v2(fake: SlackFake, client: WebClient) -> None:
    channel = fake.add_channel("security")
    resp = client.files_upload_v2(
        channel=channel,
        content="account,check\n123456789012,root-mfa-disabled\n",
        filename="findings.csv",
        title="Findings",
        initial_comment="Weekly export",
    )
    assert resp["file"]["title"] == "Findings"
    (stored,) = fake.files()
    assert stored["content"] == b"account,check\n123456789012,root-mfa-disabled\n"
    assert stored["name"] == "findings.csv"
    assert stored["channels"] == [channel]
    (msg,) = fake.messages(channel)
    assert msg["text"] == "Weekly export"
    assert msg["files"][0]["id"] == stored["id"]
    methods = [c.method for c in fake.calls()]
    assert methods == [
        "files.getUploadURLExternal",
        "files.upload_url",
        "files.completeUploadExternal",
    ]


def test_files_errors(fake: SlackFake, client: WebClient) -> None:
    with pytest.raises(SlackApiError) as excinfo:
        client.files_completeUploadExternal(files=[{"id": "F0MISSING1", "title": "x"}])
    assert slack_error(excinfo) == "file_not_found"
    with pytest.raises(SlackApiError) as excinfo:
        client.api_call("files.getUploadURLExternal", params={"filename": "x.txt"})
    assert slack_error(excinfo) == "invalid_arguments"
    pending = client.files_getUploadURLExternal(filename="x.txt", length=3)
    with pytest.raises(SlackApiError) as excinfo:  # never uploaded
        client.files_completeUploadExternal(files=[{"id": pending["file_id"]}])
    assert slack_error(excinfo) == "file_not_found"


# --------------------------------------------------------------------------- rate limits, faults


def test_rate_limit_is_retried_by_the_sdk_handler(fake: SlackFake, alice: str) -> None:
    fake.rate_limit("chat.postMessage", times=1, retry_after=1)
    client = WebClient(
        base_url=fake.base_url,
        token=fake.token,
        retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)],
    )
    assert client.chat_postMessage(channel=alice, text="eventually")["ok"]
    statuses = [c.status for c in fake.calls("chat.postMessage")]
    assert statuses == [429, 200]
    assert fake.calls("chat.postMessage")[0].response == {"ok": False, "error": "ratelimited"}
    assert [m["text"] for m in fake.dm(alice)] == ["eventually"]


def test_rate_limit_without_retry_handler_raises_with_retry_after(
    fake: SlackFake, client: WebClient, alice: str
) -> None:
    fake.rate_limit("chat.postMessage", times=2, retry_after=7)
    for _ in range(2):
        with pytest.raises(SlackApiError) as excinfo:
            client.chat_postMessage(channel=alice, text="x")
        assert excinfo.value.response.status_code == 429
        assert excinfo.value.response.headers["Retry-After"] == "7"
        assert slack_error(excinfo) == "ratelimited"
    assert client.chat_postMessage(channel=alice, text="x")["ok"]


def test_rate_budget_per_minute(fake: SlackFake, clock: FakeClock, client: WebClient) -> None:
    fake.set_rate("auth.test", per_minute=2)
    client.auth_test()
    clock.now += 15
    client.auth_test()
    clock.now += 5
    with pytest.raises(SlackApiError) as excinfo:
        client.auth_test()
    assert excinfo.value.response.status_code == 429
    assert excinfo.value.response.headers["Retry-After"] == "40"  # first call frees at t+60
    clock.now += 40
    assert client.auth_test()["ok"]
    fake.set_rate("auth.test", None)
    for _ in range(5):
        client.auth_test()


def test_rate_budget_tier_and_per_channel(
    fake: SlackFake, client: WebClient, alice: str, bob: str
) -> None:
    fake.set_rate("chat.postMessage", tier=1, per_channel=True)
    client.chat_postMessage(channel=alice, text="a")
    client.chat_postMessage(channel=bob, text="b")  # another channel, another budget
    with pytest.raises(SlackApiError) as excinfo:
        client.chat_postMessage(channel=alice, text="again")
    assert excinfo.value.response.status_code == 429


def test_fail_injects_errors(fake: SlackFake, client: WebClient, alice: str) -> None:
    fake.fail("users.info", error="fatal_error", times=2)
    for _ in range(2):
        with pytest.raises(SlackApiError) as excinfo:
            client.users_info(user=alice)
        assert slack_error(excinfo) == "fatal_error"
    assert client.users_info(user=alice)["ok"]

    fake.fail("auth.test", error="internal_error", status=500)
    with pytest.raises(SlackApiError) as excinfo:
        client.auth_test()
    assert excinfo.value.response.status_code == 500

    fake.fail("auth.test", error="service_unavailable", times=None)
    for _ in range(3):
        with pytest.raises(SlackApiError):
            client.auth_test()
    fake.clear_faults("auth.test")
    assert client.auth_test()["ok"]


# --------------------------------------------------------------------------- response_url


def test_response_url_ephemeral_by_default_and_in_channel(fake: SlackFake, alice: str) -> None:
    channel = fake.add_channel("ops")
    hook = WebhookClient(fake.response_url(channel, alice))
    resp = hook.send(text="just you")
    assert resp.status_code == 200 and resp.body == "ok"
    assert [e["text"] for e in fake.ephemerals(alice, channel)] == ["just you"]
    hook.send(text="everyone", response_type="in_channel")
    assert [m["text"] for m in fake.messages(channel)] == ["everyone"]
    call = fake.last_call("response_url")
    assert call.params["response_type"] == "in_channel" and call.response == "ok"


def test_response_url_replace_original_replaces_the_message(
    fake: SlackFake, client: WebClient, alice: str
) -> None:
    posted = client.chat_postMessage(channel=alice, text="Approve?", blocks=[{"type": "divider"}])
    url = fake.response_url(posted["channel"], alice, message_ts=posted["ts"])
    hook = WebhookClient(url)
    assert hook.send(text="Approved by alice", replace_original=True).status_code == 200
    (msg,) = fake.dm(alice)
    assert msg["ts"] == posted["ts"]
    assert msg["text"] == "Approved by alice"
    assert "blocks" not in msg
    # replace_original false: a new ephemeral, the original stays
    hook.send(text="not allowed", replace_original=False)
    assert fake.dm(alice)[0]["text"] == "Approved by alice"
    assert [e["text"] for e in fake.ephemerals(alice)] == ["not allowed"]
    # no replace_original on an interaction URL: Slack replaces the original
    hook.send(text="default")
    assert [m["text"] for m in fake.dm(alice)] == ["default"]
    hook.send(delete_original=True)
    assert fake.dm(alice) == []


def test_response_url_replace_on_an_ephemeral_original(fake: SlackFake, alice: str) -> None:
    channel = fake.add_channel("ops")
    hook = WebhookClient(fake.response_url(channel, alice))  # a slash command's URL
    hook.send(text="working…")
    hook.send(text="done", replace_original=True)
    assert [e["text"] for e in fake.ephemerals(alice)] == ["done"]
    hook.send(delete_original=True)
    assert fake.ephemerals(alice) == []


def test_response_url_limits(fake: SlackFake, clock: FakeClock, alice: str) -> None:
    channel = fake.add_channel("ops")
    hook = WebhookClient(fake.response_url(channel, alice))
    for i in range(RESPONSE_URL_MAX_USES):
        assert hook.send(text=str(i)).status_code == 200
    used = hook.send(text="one too many")
    assert (used.status_code, used.body) == (404, "used_url")

    expiring = WebhookClient(fake.response_url(channel, alice))
    clock.now += 31 * 60
    expired = expiring.send(text="late")
    assert (expired.status_code, expired.body) == (404, "expired_url")

    fresh = fake.response_url(channel, alice)
    bad = WebhookClient(fresh).send_dict({"response_type": "ephemeral"})
    assert (bad.status_code, bad.body) == (400, "no_text")
    req = urllib.request.Request(fresh, data=b"{not json", method="POST")
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(req, timeout=5)
    assert excinfo.value.code == 400


def test_response_url_fault_injection(fake: SlackFake, alice: str) -> None:
    channel = fake.add_channel("ops")
    fake.fail("response_url", error="internal_error", status=500)
    hook = WebhookClient(fake.response_url(channel, alice))
    assert hook.send(text="x").status_code == 500
    assert hook.send(text="x").status_code == 200


# --------------------------------------------------------------------------- recording, waiting


def test_wait_for_sees_changes_from_other_threads(
    fake: SlackFake, client: WebClient, alice: str
) -> None:
    timer = threading.Timer(0.05, lambda: client.chat_postMessage(channel=alice, text="later"))
    timer.start()
    try:
        msgs = fake.wait_for(lambda: fake.dm(alice), timeout=5)
    finally:
        timer.join()
    assert msgs[0]["text"] == "later"


def test_wait_for_predicate_may_call_the_fake_over_http(
    fake: SlackFake, client: WebClient, alice: str
) -> None:
    channel = fake.open_im(alice)
    timer = threading.Timer(0.05, lambda: fake.post_as_user(channel, alice, "ping"))
    timer.start()
    try:
        found = fake.wait_for(
            lambda: client.conversations_history(channel=channel)["messages"], timeout=5
        )
    finally:
        timer.join()
    assert found[0]["text"] == "ping"


def test_wait_for_times_out(fake: SlackFake) -> None:
    with pytest.raises(TimeoutError):
        fake.wait_for(lambda: fake.calls("chat.postMessage"), timeout=0.1)


def test_concurrent_posts_are_all_recorded(fake: SlackFake, alice: str) -> None:
    def post(i: int) -> None:
        WebClient(base_url=fake.base_url, token=fake.token).chat_postMessage(
            channel=alice, text=str(i)
        )

    threads = [threading.Thread(target=post, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    msgs = fake.dm(alice)
    assert sorted(int(m["text"]) for m in msgs) == list(range(16))
    assert len({m["ts"] for m in msgs}) == 16
    assert len(fake.calls("chat.postMessage")) == 16


def test_calls_record_parameters_time_and_response(
    fake: SlackFake, client: WebClient, alice: str
) -> None:
    client.users_info(user=alice)
    (call,) = fake.calls("users.info")
    assert call.params == {"user": alice}
    assert call.ok and call.status == 200
    assert call.response["user"]["id"] == alice
    assert call.time > 0
    assert fake.calls("chat.postMessage") == []


def test_reset(fake: SlackFake, client: WebClient, alice: str) -> None:
    channel = fake.add_channel("ops")
    client.chat_postMessage(channel=alice, text="x")
    client.chat_postMessage(channel=channel, text="y")
    fake.fail("auth.test")
    fake.reset()
    assert fake.calls() == [] and fake.dm(alice) == [] and fake.messages(channel) == []
    assert client.auth_test()["ok"]  # faults are gone
    assert client.users_info(user=alice)["ok"]  # the workspace is kept
    fake.reset(workspace=True)
    with pytest.raises(SlackApiError):
        client.users_info(user=alice)
    assert client.auth_test()["ok"]


def test_state_route_serves_a_snapshot(fake: SlackFake, client: WebClient, alice: str) -> None:
    client.chat_postMessage(channel=alice, text="x")
    with urllib.request.urlopen(fake.root_url + "_fake/state", timeout=5) as resp:
        state = json.loads(resp.read())
    assert state["team"]["id"] == fake.team_id
    (im,) = [c for c in state["channels"] if c.get("is_im")]
    assert im["user"] == alice and im["messages"][0]["text"] == "x"
    assert state["calls"][-1]["method"] == "chat.postMessage"


# --------------------------------------------------------------------------- enforcing the manifest


def test_the_default_install_has_the_projects_generated_scopes(fake: SlackFake, client: WebClient) -> None:
    from bot.slack.manifest import build

    resp = client.auth_test()
    granted = set(resp.headers["x-oauth-scopes"].split(","))
    assert granted == set(build("http")["oauth_config"]["scopes"]["bot"]) == fake.scopes
    assert {"chat:write", "im:history", "channels:history", "groups:history"} <= granted


def test_a_method_outside_the_granted_scopes_answers_missing_scope(
    fake: SlackFake, client: WebClient, alice: str
) -> None:
    client.chat_postMessage(channel=alice, text="hi")
    dm = fake.im_channel(alice)
    fake.set_scopes(["chat:write", "im:write"])
    with pytest.raises(SlackApiError) as excinfo:
        client.conversations_history(channel=dm)
    body = excinfo.value.response.data
    assert body["error"] == "missing_scope"
    assert body["needed"] == "im:history"  # the scope of this conversation's kind
    assert body["provided"] == "chat:write,im:write"
    with pytest.raises(SlackApiError) as excinfo:
        client.users_info(user=alice)
    assert excinfo.value.response["needed"] == "users:read"
    client.views_publish(user_id=alice, view={"type": "home", "blocks": []})  # needs no scope


def test_history_of_a_channel_needs_that_kinds_scope(fake: SlackFake, client: WebClient) -> None:
    public = fake.add_channel("security")
    private = fake.add_channel("sec-private", is_private=True)
    fake.set_scopes(["channels:history"])
    client.conversations_history(channel=public)
    with pytest.raises(SlackApiError) as excinfo:
        client.conversations_history(channel=private)
    assert excinfo.value.response["needed"] == "groups:history"


def test_posting_needs_membership_unless_chat_write_public(fake: SlackFake, client: WebClient) -> None:
    public = fake.add_channel("security", bot_member=False)
    private = fake.add_channel("secret", is_private=True, bot_member=False)
    with pytest.raises(SlackApiError) as excinfo:
        client.chat_postMessage(channel=public, text="hi")
    assert slack_error(excinfo) == "not_in_channel"
    fake.set_scopes([*fake.scopes, "chat:write.public"])
    client.chat_postMessage(channel=public, text="hi")
    with pytest.raises(SlackApiError) as excinfo:  # chat:write.public never covers private channels
        client.chat_postMessage(channel=private, text="hi")
    assert slack_error(excinfo) == "not_in_channel"
    fake.set_bot_member(private)
    client.chat_postMessage(channel=private, text="invited")
    assert [m["text"] for m in fake.messages(private)] == ["invited"]


def test_archived_channels_refuse_posts_and_uploads(fake: SlackFake, client: WebClient) -> None:
    channel = fake.add_channel("security")
    ts = client.chat_postMessage(channel=channel, text="before")["ts"]
    fake.archive_channel(channel)
    for call in (lambda: client.chat_postMessage(channel=channel, text="x"),
                 lambda: client.chat_update(channel=channel, ts=ts, text="y"),
                 lambda: client.files_upload_v2(channel=channel, content=b"x", filename="x.txt")):
        with pytest.raises(SlackApiError) as excinfo:
            call()
        assert slack_error(excinfo) == "is_archived"
    info = client.conversations_info(channel=channel)["channel"]
    assert info["is_archived"] is True and info["is_member"] is True


def test_a_revoked_token_is_inactive_and_an_unknown_one_invalid(fake: SlackFake) -> None:
    fake.revoke_token()
    with pytest.raises(SlackApiError) as excinfo:
        WebClient(base_url=fake.base_url, token=fake.token).auth_test()
    assert slack_error(excinfo) == "account_inactive"
    with pytest.raises(SlackApiError) as excinfo:
        WebClient(base_url=fake.base_url, token="xoxb-nope").auth_test()
    assert slack_error(excinfo) == "invalid_auth"


def test_conversations_info_hides_private_channels_from_non_members(fake: SlackFake, client: WebClient) -> None:
    hidden = fake.add_channel("secret", is_private=True, bot_member=False)
    visible = fake.add_channel("open", bot_member=False)
    with pytest.raises(SlackApiError) as excinfo:
        client.conversations_info(channel=hidden)
    assert slack_error(excinfo) == "channel_not_found"
    assert client.conversations_info(channel=visible)["channel"]["is_member"] is False


def test_rate_limits_by_method_tier(clock: FakeClock) -> None:
    with SlackFake(clock=clock, rate_limits=True) as fake:
        client = WebClient(base_url=fake.base_url, token=fake.token)
        for _ in range(20):  # users.list is Tier 2: 20 a minute
            client.users_list()
        with pytest.raises(SlackApiError) as excinfo:
            client.users_list()
        assert excinfo.value.response.status_code == 429
        assert excinfo.value.response.headers["Retry-After"] == "60"
        client.users_info(user=fake.bot_user_id)  # another method, another budget
        clock.now += 60
        client.users_list()


@pytest.mark.parametrize(
    ("block", "pointer"),
    [
        ({"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}, "/blocks/0/text/text"),
        ({"type": "header", "text": {"type": "plain_text", "text": "x" * 151}}, "/blocks/0/text/text"),
        ({"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 11}, "/blocks/0/fields"),
        ({"type": "actions", "elements": [{"type": "button", "action_id": "a",
                                           "text": {"type": "plain_text", "text": "x" * 76}}]},
         "/blocks/0/elements/0/text/text"),
        ({"type": "actions", "elements": [{"type": "button", "action_id": "a", "value": "v" * 2001,
                                           "text": {"type": "plain_text", "text": "ok"}}]},
         "/blocks/0/elements/0/value"),
        ({"type": "actions", "elements": [{"type": "button", "action_id": "a" * 256,
                                           "text": {"type": "plain_text", "text": "ok"}}]},
         "/blocks/0/elements/0/action_id"),
        ({"type": "section", "text": {"type": "mrkdwn", "text": "pick"},
          "accessory": {"type": "static_select", "action_id": "s", "options": [
              {"text": {"type": "plain_text", "text": str(i)}, "value": str(i)} for i in range(101)]}},
         "/blocks/0/accessory/options"),
    ],
)
def test_block_kit_limits_answer_invalid_blocks(client: WebClient, alice: str, block, pointer) -> None:
    with pytest.raises(SlackApiError) as excinfo:
        client.chat_postMessage(channel=alice, text="x", blocks=[block])
    body = excinfo.value.response.data
    assert body["error"] == "invalid_blocks"
    assert any(pointer + "]" in line for line in body["errors"])


def test_repeated_action_ids_in_a_block_and_repeated_block_ids_are_refused(
        client: WebClient, alice: str, fake: SlackFake) -> None:
    def button(action_id: str) -> dict:
        return {"type": "button", "action_id": action_id, "text": {"type": "plain_text", "text": "x"}}

    same = {"type": "actions", "block_id": "a", "elements": [button("undo"), button("undo")]}
    with pytest.raises(SlackApiError) as excinfo:
        client.chat_postMessage(channel=alice, text="x", blocks=[same])
    body = excinfo.value.response.data
    assert body["error"] == "invalid_blocks"
    assert any("must be unique" in line and "/blocks/0/elements/1/action_id]" in line for line in body["errors"])
    # The same action_id in two blocks is fine (the block_id tells them apart) ...
    client.chat_postMessage(channel=alice, text="x", blocks=[
        {"type": "actions", "block_id": "a", "elements": [button("undo")]},
        {"type": "actions", "block_id": "b", "elements": [button("undo")]}])
    # ... but not the same block_id twice, in a message or a view.
    twice = [{"type": "actions", "block_id": "a", "elements": [button("undo")]},
             {"type": "section", "block_id": "a", "text": {"type": "mrkdwn", "text": "ok"}}]
    with pytest.raises(SlackApiError) as excinfo:
        client.chat_postMessage(channel=alice, text="x", blocks=twice)
    assert any("/blocks/1/block_id]" in line for line in excinfo.value.response.data["errors"])
    with pytest.raises(SlackApiError) as excinfo:
        client.views_publish(user_id=alice, view={"type": "home", "blocks": twice})
    assert slack_error(excinfo) == "invalid_arguments"
    assert "/view/blocks/1/block_id" in excinfo.value.response["response_metadata"]["messages"][0]


def test_views_over_the_limits_are_refused(client: WebClient, alice: str, fake: SlackFake) -> None:
    section = {"type": "section", "text": {"type": "mrkdwn", "text": "ok"}}
    client.views_publish(user_id=alice, view={"type": "home", "blocks": [section] * 100})
    with pytest.raises(SlackApiError) as excinfo:
        client.views_publish(user_id=alice, view={"type": "home", "blocks": [section] * 101})
    assert slack_error(excinfo) == "invalid_arguments"
    with pytest.raises(SlackApiError) as excinfo:
        client.views_open(trigger_id=fake.trigger_id(alice), view={
            "type": "modal", "title": {"type": "plain_text", "text": "x" * 25}, "blocks": [section]})
    assert "/view/title/text" in excinfo.value.response["response_metadata"]["messages"][0]


def test_a_bot_reads_history_only_where_it_is_a_member(fake: SlackFake, client: WebClient) -> None:
    outside = fake.add_channel("elsewhere", bot_member=False)
    with pytest.raises(SlackApiError) as excinfo:
        client.conversations_history(channel=outside)
    assert slack_error(excinfo) == "not_in_channel"
