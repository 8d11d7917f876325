"""One account's scan: collect once, evaluate every check purely, then name the keys.

`evaluate` and `attach_key_ids` are pure; `scan_account` is the only part that talks to
AWS (through `checks.collect`). Errors propagate: the caller records a failed scan, never
an empty one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from checks import chains
from checks.catalog import CATALOG, CheckSpec
from checks.context import CheckContext
from checks.inventory import identities, principal_entitlements
from checks.keys import AccessKeyMeta, match_key_slot
from checks.model import AccessKeySlot, AccountSnapshot, Result, utc

SLOT_PREFIX = "slot:"


@dataclass(frozen=True)
class Coverage:
    evaluated: int
    failed: int


@dataclass(frozen=True)
class AccountScan:
    account_id: str
    label: str
    started_at: datetime
    finished_at: datetime
    results: tuple[Result, ...] = ()
    api_calls: int = 0
    inventory: Mapping[str, int] = field(default_factory=dict)
    identities: tuple[Mapping, ...] = ()  # per IAM user, see checks.inventory
    principals: tuple[Mapping, ...] = ()  # per user and role, for access reviews
    # What the scan could not see that can change verdicts ("SCPs not visible: ...").
    notes: tuple[str, ...] = ()
    # The account's part of the scan-wide role graph (`checks.chains.export`), when asked.
    reach: Mapping | None = None

    @property
    def findings(self) -> tuple[Result, ...]:
        return tuple(r for r in self.results if r.failed)

    def coverage(self) -> dict[str, Coverage]:
        """Per check: how many resources it evaluated and how many failed."""
        evaluated = Counter(r.check for r in self.results)
        failed = Counter(r.check for r in self.results if r.failed)
        return {spec.id: Coverage(evaluated[spec.id], failed[spec.id]) for spec in CATALOG}


def evaluate(
    snapshot: AccountSnapshot, ctx: CheckContext, checks: Sequence[CheckSpec] = CATALOG
) -> list[Result]:
    results: list[Result] = []
    for spec in checks:
        results.extend(spec.evaluate(snapshot, ctx))
    return results


def users_needing_key_ids(
    results: Iterable[Result],
    snapshot: AccountSnapshot,
    known_keys: Mapping[str, Sequence[AccessKeyMeta]] | None = None,
) -> set[str]:
    """Names of users with a failed key finding whose key id is not known already.

    Only they cost a ListAccessKeys call; ids remembered from earlier scans (matched by the
    key's creation second, as the credential report gives it) need none.
    """
    known_keys = known_keys or {}
    users = {u.arn: u for u in snapshot.users}
    needing = set()
    for r in results:
        user = users.get(r.resource)
        if not (r.failed and r.sub_key.startswith(SLOT_PREFIX) and user):
            continue
        slot = _slot(user.access_keys, int(r.sub_key[len(SLOT_PREFIX) :]))
        if slot is None or match_key_slot(slot, known_keys.get(user.name, ())) is None:
            needing.add(user.name)
    return needing


def attach_key_ids(
    results: Iterable[Result],
    snapshot: AccountSnapshot,
    keys_by_user: Mapping[str, Sequence[AccessKeyMeta]],
) -> list[Result]:
    """Replace `slot:N` sub-keys of failed key findings with the access key id.

    The fingerprint then follows the key, not the slot, so it is stable across scans even
    when the other key of the user is deleted and slots shift. A slot whose key cannot be
    matched (rotated between the report and the listing) keeps its slot sub-key and says so.
    """
    users = {u.arn: u for u in snapshot.users}
    out = []
    for r in results:
        user = users.get(r.resource)
        if not (r.failed and r.sub_key.startswith(SLOT_PREFIX) and user):
            out.append(r)
            continue
        slot = _slot(user.access_keys, int(r.sub_key[len(SLOT_PREFIX) :]))
        meta = match_key_slot(slot, keys_by_user.get(user.name, ())) if slot else None
        if meta is None:
            out.append(replace(r, details={**r.details, "access_key_id": None}))
        else:
            out.append(
                replace(
                    r,
                    sub_key=meta.access_key_id,
                    details={**r.details, "access_key_id": meta.access_key_id},
                )
            )
    return out


def _slot(slots: Sequence[AccessKeySlot], number: int) -> AccessKeySlot | None:
    return next((s for s in slots if s.slot == number), None)


def inventory(snapshot: AccountSnapshot) -> dict[str, int]:
    return {
        "users": len(snapshot.users),
        "groups": len(snapshot.groups),
        "roles": len(snapshot.roles),
        "policies": len(snapshot.policies),
    }


def scan_account(
    session,
    ctx: CheckContext,
    *,
    label: str = "",
    max_attempts: int = 8,
    checks: Sequence[CheckSpec] = CATALOG,
    known_keys: Callable[[str], Mapping[str, Sequence[AccessKeyMeta]]] | None = None,
    usage_of: Callable[[str], Mapping[str, object]] | None = None,
    scps=None,
    reach: bool = False,
) -> AccountScan:
    """Collect, evaluate, resolve key ids. Raises `checks.collect.CollectError` on failure.

    `known_keys(account_id)`: access keys by user name remembered from earlier scans of
    the account; only users with a key finding that matches none of them are listed again.
    `usage_of(account_id)`: stored last-accessed data by principal ARN (`checks.usage`).
    `scps`: a `checks.collect.HubScps` of the scan, to apply the SCPs that limit the account.
    `reach`: also return the account's part of the scan-wide role graph (`checks.chains`).
    """
    from checks import collect  # boto3 stays out of the pure import path

    started = ctx.now
    snapshot = collect.collect_account(session, max_attempts=max_attempts)
    if usage_of is not None:
        # Last-accessed data stored by `steward usage collect`: no AWS call at scan time.
        snapshot = replace(snapshot, usage=dict(usage_of(snapshot.account_id)))
    api_calls = snapshot.api_calls
    if scps is not None:
        with collect.aws_errors(snapshot.account_id, "organizations"):
            found = scps.for_account(snapshot.account_id)
        snapshot = replace(snapshot, scps=found.account, scps_note=found.note,
                           scps_above=found.above if found.account is not None else ())
        api_calls += found.calls
    results = evaluate(snapshot, ctx, checks)
    remembered = known_keys(snapshot.account_id) if known_keys else {}
    keys = {name: list(metas) for name, metas in remembered.items()}
    needing = users_needing_key_ids(results, snapshot, keys)
    if needing:
        with collect.ApiCallCounter().attached(session) as counter:
            listed = collect.resolve_access_key_ids(
                session, sorted(needing), account=snapshot.account_id, max_attempts=max_attempts
            )
        api_calls += counter.calls
        keys.update(listed)
    results = attach_key_ids(results, snapshot, keys)
    return AccountScan(
        account_id=snapshot.account_id,
        label=label or snapshot.account_id,
        started_at=started,
        finished_at=utc(datetime.now(UTC)),
        results=tuple(results),
        api_calls=api_calls,
        inventory=inventory(snapshot),
        identities=tuple(identities(snapshot, ctx, keys)),
        principals=tuple(principal_entitlements(snapshot, ctx, keys)),
        notes=notes(snapshot),
        reach=chains.export(snapshot, ctx) if reach else None,
    )


def notes(snapshot: AccountSnapshot) -> tuple[str, ...]:
    """What the scan of the account could not see that can change verdicts."""
    return (snapshot.scps_note,) if snapshot.scps is None and snapshot.scps_note else ()
