"""AWS *write* actions: plan -> apply (records the before-state) -> undo.

`base` holds the contract (`Action`, `Target`, `Plan`, `Applied`, `RemediationError`),
one module per family holds the actions, and `registry.ACTIONS` lists them all.
"""
