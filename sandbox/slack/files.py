"""The local Slack's files: `files.getUploadURLExternal` (an upload URL on the fake),
the POST to that URL, and `files.completeUploadExternal` (shares into channels the bot
may post in); `files.upload` answers `method_deprecated`, as Slack does since its
retirement.
"""

from __future__ import annotations

import copy
import time
from typing import Any

from sandbox.slack.common import (
    FILE_INTERNAL_KEYS,
    MAX_TEXT_CHARS,
    UPLOAD_METHOD,
    Reply,
    SlackError,
    missing_fields,
)


class Files:
    """The external upload flow. Mixed into `SlackFake`."""

    def _files_get_upload_url_external(self, params: dict[str, Any], actor: str) -> dict[str, Any]:
        filename = params.get("filename")
        length = params.get("length")
        missing = [n for n, v in (("filename", filename), ("length", length)) if v in (None, "")]
        if missing:
            raise missing_fields(*missing)
        try:
            size = int(str(length))
        except ValueError as exc:
            raise SlackError("invalid_arguments") from exc
        file_id = self._new_id("F")
        self._files[file_id] = {
            "id": file_id,
            "created": int(time.time()),
            "timestamp": int(time.time()),
            "name": str(filename),
            "title": str(filename),
            "user": actor,
            "size": size,
            "alt_txt": params.get("alt_txt"),
            "snippet_type": params.get("snippet_type"),
            "is_external": False,
            "channels": [],
            "uploaded": False,
            "completed": False,
            "content": b"",
        }
        return {"upload_url": f"{self.root_url}upload/v1/{file_id}", "file_id": file_id}

    def _files_complete_upload_external(self, params: dict[str, Any], actor: str) -> dict[str, Any]:
        files = self._json_param(params, "files", "invalid_arguments")
        if not files:
            raise missing_fields("files")
        if not isinstance(files, list) or not all(
            isinstance(f, dict) and f.get("id") for f in files
        ):
            raise SlackError("invalid_arguments")
        targets: list[str] = []
        if params.get("channel_id"):
            targets.append(self._resolve_channel(str(params["channel_id"])))
        if params.get("channels"):
            targets += [
                self._resolve_channel(c.strip())
                for c in str(params["channels"]).split(",")
                if c.strip()
            ]
        for cid in targets:
            self._check_can_post(cid, actor)
        records = []
        for item in files:
            record = self._files.get(str(item["id"]))
            if record is None or not record["uploaded"]:
                raise SlackError("file_not_found")
            records.append((record, item))
        shared = []
        for record, item in records:
            if item.get("title"):
                record["title"] = str(item["title"])
            record["completed"] = True
            record["channels"] = list(dict.fromkeys([*record["channels"], *targets]))
            record["url_private"] = f"{self.root_url}files/{record['id']}/{record['name']}"
            record["permalink"] = (
                f"https://{self.team_domain}.slack.com/files/{actor}/{record['id']}/{record['name']}"
            )
            shared.append({k: v for k, v in record.items() if k not in FILE_INTERNAL_KEYS})
        comment = params.get("initial_comment")
        thread_ts = str(params["thread_ts"]) if params.get("thread_ts") else None
        for cid in targets:
            self._store_message(
                cid,
                actor,
                text=str(comment)[:MAX_TEXT_CHARS] if comment else "",
                blocks=None,
                attachments=None,
                thread_ts=thread_ts,
                files=copy.deepcopy(shared),
            )
        return {"files": copy.deepcopy(shared)}

    def _files_upload_retired(self, params: dict[str, Any], actor: str) -> dict[str, Any]:
        # files.upload was retired by Slack; files_upload_v2 is the supported path.
        raise SlackError("method_deprecated")

    def handle_upload(self, file_id: str, data: bytes) -> tuple[int, str]:
        """Answer a POST to an upload URL: ``(200, "OK - <bytes>")`` like Slack."""
        with self._changed:
            fault = self._take_fault(UPLOAD_METHOD)
            if fault is not None:
                reply = Reply(fault.status, fault.error)
            else:
                record = self._files.get(file_id)
                if record is None:
                    reply = Reply(404, "file_not_found")
                else:
                    record["content"] = data
                    record["size"] = len(data)
                    record["uploaded"] = True
                    reply = Reply(200, f"OK - {len(data)}")
            self._record(UPLOAD_METHOD, {"file_id": file_id, "size": len(data)}, reply, None, {})
            return reply.status, str(reply.body)
