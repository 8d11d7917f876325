"""The right-sized policy of an `unused-permissions` finding, for people (pure Block Kit).

The DM's line says what goes and what stays; "Show policy JSON" opens this modal with
the whole proposed document (split over sections: Slack takes 3,000 characters each), who
else holds the policy, and for an AWS managed policy that it is a suggested replacement.
"""

from __future__ import annotations

import json

from slack_sdk.models.views import View

from bot.slack.blocks.common import context, escape, mrkdwn_section

CODE_CHUNK = 2900  # characters of JSON per section, with the ``` fences under Slack's 3,000
MAX_SECTIONS = 90  # a modal takes 100 blocks


def json_chunks(document: object) -> list[str]:
    text = json.dumps(document, indent=2, sort_keys=False)
    lines, chunks, current = text.splitlines(), [], ""
    for line in lines:
        if len(current) + len(line) + 1 > CODE_CHUNK and current:
            chunks.append(current)
            current = ""
        current += line[:CODE_CHUNK] + "\n"
    if current:
        chunks.append(current)
    return chunks


def policy_modal(finding) -> View:
    d = finding.details or {}
    name = d.get("policy_name") or (d.get("policy_arn") or "").rsplit("/", 1)[-1]
    kind = d.get("policy_kind")
    blocks = [mrkdwn_section(f"*{escape(name)}* — {escape(d.get('summary') or 'no change')}")]
    if kind == "aws":
        blocks.append(context(f"{escape(name)} is managed by AWS and cannot be edited: create this as a customer "
                              f"managed policy (suggested name `{escape(d.get('suggested_name') or name)}`), attach "
                              "it, then detach the AWS one."))
    elif kind == "inline":
        blocks.append(context("Applying it replaces the inline policy's document; Undo puts the previous one back."))
    else:
        blocks.append(context("Applying it adds a version and makes it the default; Undo makes the previous "
                              "version the default again."))
    shared = d.get("shared_with") or []
    if shared:
        who = ", ".join(f"{escape(s['arn'].split(':', 5)[-1])} ({escape(s.get('owner') or 'no owner')})"
                        for s in shared[:10])
        blocks.append(context(f"Also attached to {who}: it changes only once each owner agrees."))
    chunks = json_chunks(d.get("proposal") or {})
    for chunk in chunks[:MAX_SECTIONS]:
        blocks.append(mrkdwn_section(f"```{chunk}```"))
    if len(chunks) > MAX_SECTIONS:
        blocks.append(context("The document is longer than a Slack modal shows; `steward findings` has all of it."))
    return View(type="modal", callback_id="policy_modal", title="Right-sized policy", close="Close", blocks=blocks)
