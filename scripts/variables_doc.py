# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Render docs/variables.md from every role's meta/argument_specs.yml, so the reference cannot drift.

    python3 scripts/variables_doc.py > docs/variables.md      (tests/unit/test_variables_doc.py checks it is current)
"""
from __future__ import absolute_import, division, print_function

import json
import sys
from pathlib import Path

import yaml

__metaclass__ = type

TOP = Path(__file__).resolve().parent.parent


def cell(value):
    """A table cell: JSON-ish for data, escaped pipes."""
    text = value if isinstance(value, str) else json.dumps(value)
    return "`{}`".format(text.replace("|", "\\|")) if text != "" else '`""`'


def describe(option):
    parts = [" ".join(option.get("description", [])) if isinstance(option.get("description"), list)
             else option.get("description", "")]
    if option.get("choices"):
        parts.append("Choices: " + ", ".join("`{}`".format(c) for c in option["choices"]) + ".")
    if option.get("no_log"):
        parts.append("Secret: keep it in vault.")
    if option.get("options"):
        keys = ", ".join("`{}`{}".format(k, " (required)" if v.get("required") else "") for k, v in option["options"].items())
        parts.append("Keys: " + keys + ".")
    return " ".join(p for p in parts if p).replace("|", "\\|")


def render():
    out = ["# Variables reference", "",
           "Generated from each role's `meta/argument_specs.yml` by `scripts/variables_doc.py`; do not edit by hand.", ""]
    for spec_file in sorted(TOP.glob("roles/*/meta/argument_specs.yml")):
        role = spec_file.parent.parent.name
        main = yaml.safe_load(spec_file.read_text())["argument_specs"]["main"]
        out += ["## Role `agent_ui.postgresql.{}`".format(role), "", main.get("short_description", ""), "",
                "| Variable | Type | Default | Description |", "| --- | --- | --- | --- |"]
        for name, option in main["options"].items():
            kind = option["type"] + ("[{}]".format(option["elements"]) if option.get("elements") else "")
            out.append("| `{}` | {} | {} | {} |".format(name, kind, cell(option.get("default", "")), describe(option)))
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(render())
