"""Settings from the environment (12-factor). `.env.example` documents every variable.

Each entry point validates only what it needs (`require`): `steward scan` runs with no
Slack settings at all, `steward serve` refuses to start without a signing secret.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.core.audit_key_form import split_entries
from bot.core.cron import cron_trigger
from bot.core.errors import SettingsError
from checks.context import CheckContext, Thresholds

DEFAULT_SQLITE_FILE = "steward.db"

CommaList = Annotated[list[str], NoDecode]


def _env(name: str, *aliases: str):
    return Field(validation_alias=AliasChoices(name, *aliases))


#: No AWS credentials at all: a settings problem, said once (bot/cli/errors.py, ScanService.run).
NO_AWS_CREDENTIALS = ("no AWS credentials found (set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                      "or run where an instance or task role is available)")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    database_url: str | None = Field(None, validation_alias="STEWARD_DATABASE_URL")

    slack_bot_token: str | None = Field(None, validation_alias="SLACK_BOT_TOKEN")
    slack_signing_secret: str | None = Field(None, validation_alias="SLACK_SIGNING_SECRET")
    slack_app_token: str | None = Field(None, validation_alias="SLACK_APP_TOKEN")
    slack_api_url: str = Field("https://slack.com/api/", validation_alias="SLACK_API_URL")
    # Requests from another workspace or app are refused; unset: learnt from auth.test.
    slack_team_id: str | None = Field(None, validation_alias="STEWARD_SLACK_TEAM_ID")
    slack_app_id: str | None = Field(None, validation_alias="STEWARD_SLACK_APP_ID")

    security_channel: str | None = Field(None, validation_alias="STEWARD_SECURITY_CHANNEL")
    security_approvers: CommaList = Field([], validation_alias="STEWARD_SECURITY_APPROVERS")
    security_usergroup: str | None = Field(None, validation_alias="STEWARD_SECURITY_USERGROUP")
    owner_tags: CommaList = Field(
        ["owner", "Owner", "email", "contact"], validation_alias="STEWARD_OWNER_TAGS"
    )
    dry_run: bool = Field(False, validation_alias="STEWARD_DRY_RUN")
    # Staged rollout: observe (scan and digest only), triage (everything to the security
    # channel, no owner DMs) or owners (default). STEWARD_PILOT_OWNERS (Slack user ids or
    # emails): in owners mode only these people get DMs; everyone else's findings go to triage.
    mode: Literal["observe", "triage", "owners"] = Field("owners", validation_alias="STEWARD_MODE")
    pilot_owners: CommaList = Field([], validation_alias="STEWARD_PILOT_OWNERS")
    # The audit chain's MAC key(s) (bot/db/audit_key.py): a key or a secretsmanager:/ssm:
    # reference, then retired ones, comma-separated. Checked for form here, fetched at start.
    audit_key: SecretStr | None = Field(None, validation_alias="STEWARD_AUDIT_KEY")

    key_max_age_days: int = Field(90, ge=1, validation_alias="STEWARD_KEY_MAX_AGE_DAYS")
    unused_days: int = Field(45, ge=1, validation_alias="STEWARD_UNUSED_DAYS")
    stale_user_days: int = Field(90, ge=1, validation_alias="STEWARD_STALE_USER_DAYS")
    never_used_grace_days: int = Field(7, ge=0, validation_alias="STEWARD_NEVER_USED_GRACE_DAYS")
    root_recent_days: int = Field(30, ge=1, validation_alias="STEWARD_ROOT_RECENT_DAYS")
    unused_role_days: int = Field(90, ge=1, validation_alias="STEWARD_UNUSED_ROLE_DAYS")

    remind_after_days: int = Field(3, ge=1, validation_alias="STEWARD_REMIND_AFTER_DAYS")
    escalate_after_days: int = Field(7, ge=1, validation_alias="STEWARD_ESCALATE_AFTER_DAYS")
    exception_max_days: int = Field(90, ge=1, validation_alias="STEWARD_EXCEPTION_MAX_DAYS")
    # Checks whose reversible action Steward takes itself when the owner has not decided by
    # the deadline (STEWARD_ESCALATE_AFTER_DAYS after the DM, announced in it). Off by default.
    auto_remediate: CommaList = Field([], validation_alias="STEWARD_AUTO_REMEDIATE")
    delete_after_days: int = Field(30, ge=0, validation_alias="STEWARD_DELETE_AFTER_DAYS")

    # Role ARNs separated by commas, spaces or newlines; each validated, duplicates dropped.
    account_roles: CommaList = Field([], validation_alias="STEWARD_ACCOUNT_ROLES")
    org_role_name: str | None = Field(None, validation_alias="STEWARD_ORG_ROLE_NAME")
    # Account ids never scanned, whichever source (Organizations or a listed role) names them.
    exclude_accounts: CommaList = Field([], validation_alias="STEWARD_EXCLUDE_ACCOUNTS")
    external_id: str | None = Field(None, validation_alias="STEWARD_EXTERNAL_ID")
    # The role an approved undo that gives access back runs under, in each account where the
    # member template's EnableRestore is on. Unset: such undos are left to an admin.
    restore_role_name: str | None = Field(
        None, pattern=r"^[\w+=,.@-]{1,64}$", validation_alias="STEWARD_RESTORE_ROLE_NAME"
    )
    # Least privilege from usage and "Rotate it for me" (issue #17)
    usage_concurrency: int = Field(8, ge=1, le=64, validation_alias="STEWARD_USAGE_CONCURRENCY")
    usage_cron: str = Field("30 5 * * *", validation_alias="STEWARD_USAGE_CRON")
    rotation_role_name: str | None = Field(None, validation_alias="STEWARD_ROTATION_ROLE_NAME")
    rotation_quiet_days: int = Field(3, ge=1, validation_alias="STEWARD_ROTATION_QUIET_DAYS")
    rotation_auto_deactivate: bool = Field(False, validation_alias="STEWARD_ROTATION_AUTO_DEACTIVATE")
    rotation_secret_days: int = Field(7, ge=1, le=30, validation_alias="STEWARD_ROTATION_SECRET_DAYS")
    aws_max_attempts: int = Field(8, ge=1, le=20, validation_alias="STEWARD_AWS_MAX_ATTEMPTS")
    scan_concurrency: int = Field(4, ge=1, le=32, validation_alias="STEWARD_SCAN_CONCURRENCY")

    # Prometheus metrics: `GET /metrics` on the web port and, with a port, on the worker;
    # scrapers send `Authorization: Bearer <token>`. No token: no metrics endpoint.
    metrics_token: str | None = Field(None, validation_alias="STEWARD_METRICS_TOKEN")
    worker_metrics_port: int | None = Field(None, ge=1, le=65535, validation_alias="STEWARD_WORKER_METRICS_PORT")

    # --- scheduler and digest (bot/run/scheduler.py, bot/services/digest.py) ---------------
    # Scans run every STEWARD_SCAN_INTERVAL_HOURS (aligned to midnight UTC, so restarts do
    # not shift them) unless STEWARD_SCAN_CRON is set. Crontab day-of-week numbers are
    # standard (0 or 7 = Sunday), whatever APScheduler 3 thinks.
    scan_interval_hours: float = Field(6, gt=0, le=24 * 7, validation_alias="STEWARD_SCAN_INTERVAL_HOURS")
    scan_cron: str | None = Field(None, validation_alias="STEWARD_SCAN_CRON")
    digest_cron: str = Field("0 9 * * mon", validation_alias="STEWARD_DIGEST_CRON")
    timezone: str = Field("UTC", validation_alias="STEWARD_TIMEZONE")
    misfire_grace_seconds: int = Field(3600, ge=1, validation_alias="STEWARD_MISFIRE_GRACE_SECONDS")
    # Activity (`steward events`): the SQS queue EventBridge delivers CloudTrail events to.
    activity_queue_url: str | None = Field(None, validation_alias="STEWARD_ACTIVITY_QUEUE_URL")
    activity_answer_minutes: int = Field(30, ge=1, le=24 * 60, validation_alias="STEWARD_ACTIVITY_ANSWER_MINUTES")
    activity_seen_days: int = Field(15, ge=1, validation_alias="STEWARD_ACTIVITY_SEEN_DAYS")
    leader_poll_seconds: float = Field(5, gt=0, le=30, validation_alias="STEWARD_LEADER_POLL_SECONDS")

    @field_validator("scan_cron", "digest_cron", "usage_cron", mode="before")
    @classmethod
    def _crontab(cls, value):
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        cron_trigger(str(value), "UTC")  # raises ValueError naming what is wrong
        return " ".join(str(value).split())

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Europe/Paris)") from None
        return value
    # --- end of scheduler and digest ---------------------------------------------------

    # --- access reviews (bot/services/reviews.py) ----------------------------------------
    # A campaign starts on this schedule when set (e.g. quarterly: "0 9 1 1,4,7,10 *").
    review_cron: str | None = Field(None, validation_alias="STEWARD_REVIEW_CRON")
    review_due_days: int = Field(14, ge=1, le=365, validation_alias="STEWARD_REVIEW_DUE_DAYS")
    # Who reviews a person's own access: "owner=manager" pairs, the owner as a Slack user id
    # or email, the manager as a Slack user id (used when Slack's profile has no manager).
    review_managers: CommaList = Field([], validation_alias="STEWARD_REVIEW_MANAGERS")

    @field_validator("review_cron", mode="before")
    @classmethod
    def _review_crontab(cls, value):
        return cls._crontab(value)

    @field_validator("review_managers", mode="before")
    @classmethod
    def _manager_pairs(cls, value):
        from checks.ownership import EMAIL, SLACK_USER_ID

        if isinstance(value, str):
            value = [part.strip() for part in value.replace("\n", ",").split(",") if part.strip()]
        for pair in value:
            owner, sep, manager = (p.strip() for p in pair.partition("="))
            if not sep or not (EMAIL.match(owner) or SLACK_USER_ID.match(owner)) or not SLACK_USER_ID.match(manager):
                raise ValueError(f"not an owner=manager pair: {pair!r} (owner: a Slack user id or email; "
                                 "manager: a Slack user id, e.g. alice@example.com=U0123ABCD)")
        return value

    def review_manager_map(self) -> dict[str, str]:
        from checks.ownership import normalise

        pairs = (pair.partition("=") for pair in self.review_managers)
        return {normalise(owner.strip()): manager.strip() for owner, _, manager in pairs}

    @field_validator("audit_key")
    @classmethod
    def _audit_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        split_entries(value.get_secret_value())  # ValueError naming the entry, never the key
        return value

    @field_validator("auto_remediate")
    @classmethod
    def _auto_checks(cls, value: list[str]) -> list[str]:
        from bot.core.decisions import auto_remediable_checks

        possible = auto_remediable_checks()  # from the actions' `auto_remediable`
        wrong = [check for check in value if check not in possible]
        if wrong:
            raise ValueError(
                f"no reversible owner action for {', '.join(wrong)} (possible: {', '.join(possible)})"
            )
        return value

    @field_validator("mode", mode="before")
    @classmethod
    def _mode(cls, value):
        if isinstance(value, str):
            value = value.strip().lower()
            if value not in ("observe", "triage", "owners"):
                raise ValueError(f"{value!r} is not a mode: observe (scan and digest only), triage (everything "
                                 "to the security channel) or owners (the default)")
        return value

    @field_validator("pilot_owners")
    @classmethod
    def _pilots(cls, value: list[str]) -> list[str]:
        wrong = [v for v in value if not (re.fullmatch(r"[UW][A-Z0-9]{2,}", v) or re.fullmatch(r"[^@\s]+@[^@\s]+", v))]
        if wrong:
            raise ValueError(f"not a Slack user id (U0…) or an email: {', '.join(wrong)}")
        return [v if v[0] in "UW" and "@" not in v else v.lower() for v in value]

    @field_validator("security_approvers", "owner_tags", "auto_remediate", "pilot_owners", mode="before")
    @classmethod
    def _split_commas(cls, value):
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("account_roles", "exclude_accounts", mode="before")
    @classmethod
    def _split_whitespace_too(cls, value):
        # A list pasted one per line or separated by spaces must not become one bogus entry.
        if isinstance(value, str):
            return list(dict.fromkeys(value.replace(",", " ").split()))
        return value

    @field_validator("account_roles")
    @classmethod
    def _role_arns(cls, value: list[str]) -> list[str]:
        from checks.accounts import ROLE_ARN

        for arn in value:
            if not ROLE_ARN.match(arn):
                raise ValueError(f"not an IAM role ARN: {arn!r} (arn:aws:iam::<12-digit account>:role/<name>)")
        return list(dict.fromkeys(value))

    @field_validator("exclude_accounts")
    @classmethod
    def _account_ids(cls, value: list[str]) -> list[str]:
        for account_id in value:
            if not (account_id.isdigit() and len(account_id) == 12):
                raise ValueError(f"not a 12-digit AWS account id: {account_id!r}")
        return value

    def target_options(self) -> dict:
        """What `checks.accounts.discover_targets` needs from the settings."""
        return {
            "account_roles": list(self.account_roles),
            "org_role_name": self.org_role_name,
            "exclude_accounts": set(self.exclude_accounts),
            "max_attempts": self.aws_max_attempts,
        }

    @field_validator("slack_api_url")
    @classmethod
    def _trailing_slash(cls, value: str) -> str:
        # slack_sdk joins base_url + method name; without the slash the method is lost.
        return value if value.endswith("/") else value + "/"

    # -----------------------------------------------------------------------------------

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{Path.cwd() / DEFAULT_SQLITE_FILE}"

    @property
    def uses_embedded_database(self) -> bool:
        return not self.database_url or self.database_url.startswith("sqlite")

    def thresholds(self) -> Thresholds:
        return Thresholds(
            key_max_age_days=self.key_max_age_days,
            unused_days=self.unused_days,
            stale_user_days=self.stale_user_days,
            never_used_grace_days=self.never_used_grace_days,
            root_recent_days=self.root_recent_days,
            unused_role_days=self.unused_role_days,
        )

    def check_context(self, now, internal_accounts=frozenset()) -> CheckContext:
        return CheckContext(
            now=now,
            thresholds=self.thresholds(),
            internal_accounts=frozenset(internal_accounts),
            owner_tags=tuple(self.owner_tags),
        )

    def require(self, *fields: str) -> None:
        """Raise SettingsError naming the environment variable of each missing field."""
        missing = [
            self._env_name(name) for name in fields if not getattr(self, name, None)
        ]
        if missing:
            raise SettingsError("missing setting: " + ", ".join(missing))

    @classmethod
    def _env_name(cls, field: str) -> str:
        alias = cls.model_fields[field].validation_alias
        return alias if isinstance(alias, str) else field.upper()


def load_settings() -> Settings:
    """Settings from the environment; a validation error names the variable that is wrong."""
    from pydantic import ValidationError

    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = error["loc"][0] if error["loc"] else "?"
            problems.append(f"{where}: {error['msg']}")
        raise SettingsError("invalid setting: " + "; ".join(problems)) from None
