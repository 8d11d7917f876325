"""Use cases shared by the CLI, slash commands, buttons and the scheduler.

The only package that combines `checks/` (AWS, rules, remediation) with `bot/db`
(persistence), and the owner of transactions: a state change and its audit row are
written together. Import what you need from its modules (`bot.services.scans`,
`bot.services.steward`, `bot.services.common`, …): this file imports nothing, so that a
module of the package importing a sibling never runs the whole package first.
"""
