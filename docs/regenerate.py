"""Rewrite the generated parts of docs/architecture.md (the decision table) from the code.

Run it after adding a check, a button or a remediation: `python docs/regenerate.py`.
"""

from pathlib import Path

from bot.core.decision_table import replace_in

if __name__ == "__main__":
    path = Path(__file__).with_name("architecture.md")
    before = path.read_text()
    after = replace_in(before)
    path.write_text(after)
    print("docs/architecture.md: decision table " + ("updated" if after != before else "already current"))
