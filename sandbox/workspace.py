"""The sandbox workspace's identity: the ids and tokens the local Slack answers to."""

DEFAULT_TOKEN = "xoxb-steward-sandbox-token"
DEFAULT_TEAM_ID = "T0STEWARD1"
DEFAULT_TEAM_DOMAIN = "steward-sandbox"
DEFAULT_TEAM_NAME = "IAM Steward Sandbox"
DEFAULT_BOT_USER_ID = "U0STEWARD1"
DEFAULT_BOT_ID = "B0STEWARD1"
DEFAULT_APP_ID = "A0STEWARD1"
#: The app-level token (``connections:write``) the fake accepts for ``apps.connections.open``.
DEFAULT_APP_TOKEN = "xapp-1-A0STEWARD1-1-steward-sandbox"
DEFAULT_BOT_NAME = "steward"
