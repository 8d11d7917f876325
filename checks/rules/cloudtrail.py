"""CloudTrail coverage (CIS 3.1, 3.2): is anything recording IAM activity, and can it be trusted?

Account-level findings for the security channel. With no trail data (`snapshot.trails` None:
not collected, or the scan role may not read CloudTrail) these rules return nothing, so the
scan's coverage shows them as not evaluated instead of passing them. A value the collector
did not read (a status, a bucket it could not see) is never taken as fine: that rule is
simply not evaluated.
"""

from __future__ import annotations

from checks.context import CheckContext
from checks.model import AccountSnapshot, Result, Trail, main_trail
from checks.rules.base import result


def _names(trails) -> list[str]:
    return sorted(t.name for t in trails)


def no_multi_region_trail(snapshot: AccountSnapshot, ctx: CheckContext) -> list[Result]:
    """CIS 3.1: at least one multi-region trail that is logging."""
    if snapshot.trails is None:
        return []
    main = main_trail(snapshot.trails)
    logging = main is not None and main.is_logging is True
    if main is not None and main.is_logging is None:
        return []  # its status was not read
    return [result(
        "cloudtrail-no-multi-region-trail", snapshot, snapshot.account_arn, not logging,
        details={
            "trails": _names(snapshot.trails),
            "multi_region_trail": main.name if main else None,
            "logging": main.is_logging if main else None,
        },
    )]


def log_validation_off(snapshot: AccountSnapshot, ctx: CheckContext) -> list[Result]:
    """CIS 3.2: every trail validates its log files (a digest makes tampering detectable)."""
    out = []
    for trail in snapshot.trails or ():
        out.append(result("cloudtrail-log-validation-off", snapshot, trail.arn, not trail.log_file_validation,
                          details=_trail_details(trail)))
    return out


def management_events_off(snapshot: AccountSnapshot, ctx: CheckContext) -> list[Result]:
    """The multi-region trail records management events (IAM changes are management events)."""
    if snapshot.trails is None:
        return []
    main = main_trail(snapshot.trails)
    if main is None or main.management_events is None:
        return []  # no such trail (CIS 3.1 says so) or custom selectors not read
    return [result("cloudtrail-management-events-off", snapshot, main.arn, not main.management_events,
                   details=_trail_details(main))]


def bucket_public(snapshot: AccountSnapshot, ctx: CheckContext) -> list[Result]:
    """The main trail's bucket is not publicly readable (when this account can see it)."""
    main = main_trail(snapshot.trails or ())
    if main is None or main.bucket_public is None:
        return []
    return [result("cloudtrail-bucket-public", snapshot, main.arn, main.bucket_public,
                   details={**_trail_details(main), "bucket": main.s3_bucket})]


def _trail_details(trail: Trail) -> dict:
    return {"trail": trail.name, "home_region": trail.home_region, "multi_region": trail.multi_region,
            "organization_trail": trail.organization}
