"""CloudTrail records as EventBridge delivers them (AWS's field names), for the activity tests."""

from __future__ import annotations

import itertools
import json
import uuid
from typing import Any

ACCOUNT = "123456789012"
OTHER = "999988887777"
_counter = itertools.count(1)


def user_identity(user: str = "alice", *, key: str = "AKIAALICEKEY00000001", account: str = ACCOUNT) -> dict:
    return {"type": "IAMUser", "principalId": "AIDAALICE", "arn": f"arn:aws:iam::{account}:user/{user}",
            "accountId": account, "accessKeyId": key, "userName": user}


def root_identity(account: str = ACCOUNT) -> dict:
    return {"type": "Root", "principalId": account, "arn": f"arn:aws:iam::{account}:root", "accountId": account,
            "accessKeyId": "ASIAROOTSESSION00001"}


def role_session(session: str = "alice@example.com", *, role: str = "Deploy", source_identity: str | None = None,
                 sso: bool = False, account: str = ACCOUNT) -> dict:
    role_name = f"AWSReservedSSO_{role}_0123456789abcdef" if sso else role
    identity = {
        "type": "AssumedRole", "principalId": f"AROAEXAMPLE:{session}",
        "arn": f"arn:aws:sts::{account}:assumed-role/{role_name}/{session}", "accountId": account,
        "accessKeyId": "ASIASESSIONKEY000001",
        "sessionContext": {
            "sessionIssuer": {"type": "Role", "principalId": "AROAEXAMPLE",
                              "arn": f"arn:aws:iam::{account}:role/{role_name}", "accountId": account,
                              "userName": role_name},
            "attributes": {"creationDate": "2026-11-29T01:00:00Z", "mfaAuthenticated": "false"},
        },
    }
    if source_identity:
        identity["sessionContext"]["sourceIdentity"] = source_identity
    if sso:
        identity["onBehalfOf"] = {"userId": "94482488-3041-7026-18f3-be45837cd0e4",
                                  "identityStoreArn": "arn:aws:identitystore::123456789012:identitystore/d-1234567890"}
    return identity


def record(name: str, *, source: str = "iam.amazonaws.com", identity: dict | None = None,
           request: dict | None = None, response: dict | None = None, additional: dict | None = None,
           error: str | None = None, read_only: bool = False, event_id: str | None = None,
           account: str = ACCOUNT) -> dict:
    """The CloudTrail record (EventBridge's `detail`)."""
    detail: dict[str, Any] = {
        "eventVersion": "1.09",
        "userIdentity": identity or user_identity(),
        "eventTime": f"2026-11-29T01:{next(_counter) % 60:02d}:00Z",
        "eventSource": source,
        "eventName": name,
        "awsRegion": "us-east-1",
        "sourceIPAddress": "203.0.113.7",
        "userAgent": "aws-cli/2.15.0 Python/3.11.6 Linux/6.1 exe/x86_64",
        "requestParameters": request,
        "responseElements": response,
        "requestID": str(uuid.uuid4()),
        "eventID": event_id or str(uuid.uuid4()),
        "readOnly": read_only,
        "eventType": "AwsApiCall" if name != "ConsoleLogin" else "AwsConsoleSignIn",
        "managementEvent": True,
        "recipientAccountId": account,
        "eventCategory": "Management",
    }
    if additional is not None:
        detail["additionalEventData"] = additional
    if error:
        detail["errorCode"], detail["errorMessage"] = error, "denied"
    return detail


def envelope(detail: dict) -> dict:
    """What EventBridge puts on the queue (the rule's target is SQS: the whole event)."""
    source = "aws." + detail["eventSource"].split(".")[0]
    kind = "AWS Console Sign In via CloudTrail" if detail["eventName"] == "ConsoleLogin" else \
        "AWS API Call via CloudTrail"
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": kind, "source": source,
            "account": detail["recipientAccountId"], "time": detail["eventTime"], "region": "us-east-1",
            "resources": [], "detail": detail}


def body(detail: dict) -> str:
    return json.dumps(envelope(detail))


def policy(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


ADMIN_DOC = policy({"Effect": "Allow", "Action": "*", "Resource": "*"})
READ_DOC = policy({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::bucket/*"})
ESCALATE_DOC = policy({"Effect": "Allow", "Action": ["iam:CreatePolicyVersion"], "Resource": "*"})


def trust(principal: Any, condition: dict | None = None) -> str:
    statement = {"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole"}
    if condition:
        statement["Condition"] = condition
    return policy(statement)


def create_access_key(for_user: str | None, *, identity: dict | None = None, key: str = "AKIANEWKEY0000000001",
                      **kwargs) -> dict:
    request = {"userName": for_user} if for_user else None
    response = {"accessKey": {"userName": for_user or "alice", "accessKeyId": key, "status": "Active",
                              "createDate": "Nov 29, 2026 1:00:00 AM"}}
    return record("CreateAccessKey", identity=identity, request=request, response=response, **kwargs)


def console_login(identity: dict, *, mfa: str = "No", success: bool = True) -> dict:
    return record("ConsoleLogin", source="signin.amazonaws.com", identity=identity,
                  response={"ConsoleLogin": "Success" if success else "Failure"},
                  additional={"LoginTo": "https://console.aws.amazon.com/", "MobileVersion": "No",
                              "MFAUsed": mfa})
