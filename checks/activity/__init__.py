"""Activity: CloudTrail events about IAM, judged as they happen (pure: events, rules)."""
