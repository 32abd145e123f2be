"""docs/security.md, the waiver list and the live baseline tests agree (no server needed).

- every waiver of molecule/default/tests/baseline_waivers.yml is a row of the doc's table with the same status, and
  every row the doc marks waived or not applicable is in the list;
- every row names the tests that prove it, and each of them exists; a test of the default scenario also declares
  the row's control id (@controls(...)).
"""
import ast
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "security.md"
TESTS = REPO / "molecule" / "default" / "tests"
WAIVERS = TESTS / "baseline_waivers.yml"
STATUSES = {"enforced": "enforced", "waived": "waived", "not applicable": "not_applicable"}


def doc_rows(text):
    """{control id: {'status', 'tests', 'line'}} from the table whose first column is `id`."""
    rows = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        match = re.fullmatch(r"`((?:postgres-\d\d(?:/\w+)?)|(?:cis-[\d.]+))`", cells[0]) if len(cells) >= 5 else None
        if not match:
            continue
        assert match.group(1) not in rows, "{} has two rows".format(match.group(1))
        status = cells[2].lower().strip("* ")
        rows[match.group(1)] = {
            "status": STATUSES.get(status, status),
            "tests": re.findall(r"`([\w/.]+\.py)::(\w+)`", cells[4]),
            "line": line,
        }
    return rows


def declared_controls(path):
    """{test function name: [control ids]} from the @controls(...) decorators of a test module."""
    found = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef):
            ids = []
            for decorator in node.decorator_list:
                if isinstance(decorator, ast.Call) and getattr(decorator.func, "id", "") == "controls":
                    ids += [arg.value for arg in decorator.args]
            found[node.name] = ids
    return found


ROWS = doc_rows(DOC.read_text())
LISTED = yaml.safe_load(WAIVERS.read_text())


def test_the_doc_has_every_dev_sec_control():
    devsec = {key.split("/")[0] for key in ROWS if key.startswith("postgres-")}
    assert devsec == {"postgres-{:02d}".format(n) for n in range(2, 21)}, devsec
    assert any(key.startswith("cis-") for key in ROWS)


def test_every_row_has_a_known_status():
    bad = {key: row["status"] for key, row in ROWS.items() if row["status"] not in STATUSES.values()}
    assert not bad, bad


def test_waivers_in_the_list_are_in_the_doc():
    missing = sorted(set(LISTED) - set(ROWS))
    assert not missing, "waived in {} but not in {}: {}".format(WAIVERS.name, DOC.name, missing)
    wrong = {key: (LISTED[key]["status"], ROWS[key]["status"]) for key in LISTED if LISTED[key]["status"] != ROWS[key]["status"]}
    assert not wrong, "status in the waiver list vs the doc: {}".format(wrong)


def test_waivers_in_the_doc_are_in_the_list():
    waived = sorted(key for key, row in ROWS.items() if row["status"] != "enforced")
    missing = [key for key in waived if key not in LISTED]
    assert not missing, "waived in {} but not in {}: {}".format(DOC.name, WAIVERS.name, missing)


def test_every_waiver_gives_its_reason():
    assert all(len(str(LISTED[key].get("reason", ""))) > 20 for key in LISTED), LISTED


@pytest.mark.parametrize("control", sorted(ROWS))
def test_every_control_in_the_doc_has_a_test_that_declares_it(control):
    tests = ROWS[control]["tests"]
    assert tests, "{} names no test: {}".format(control, ROWS[control]["line"])
    for module, function in tests:
        path = REPO / module if "/" in module else TESTS / module
        assert path.is_file(), "{}: no {}".format(control, path)
        declared = declared_controls(path)
        assert function in declared, "{}: {} has no {}".format(control, path.name, function)
        # The baseline's own modules declare what each test proves; another scenario's test (the PGDG source) is named.
        if path.parent == TESTS:
            assert control in declared[function], "{0}: {1}::{2} does not declare @controls({0!r})".format(
                control, path.name, function)


def test_every_declared_control_is_in_the_doc():
    declared = {control for path in TESTS.glob("test_*.py") for ids in declared_controls(path).values() for control in ids}
    assert declared <= set(ROWS), sorted(declared - set(ROWS))


def test_the_parsers_see_a_waiver_and_a_decorator():
    """The checks above would pass on an empty doc or module: prove the parsers read something."""
    rows = doc_rows("| `postgres-12` | Strong ciphers | Waived | x | `test_baseline.py::test_y` |")
    assert rows["postgres-12"]["status"] == "waived" and rows["postgres-12"]["tests"] == [("test_baseline.py", "test_y")]
    assert len(ROWS) >= 30
    assert declared_controls(TESTS / "test_baseline.py")["test_stable_postgresql_version"] == ["postgres-02"]
