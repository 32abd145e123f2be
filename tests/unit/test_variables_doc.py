"""docs/variables.md is the rendering of the roles' argument specs: regenerate it when they change."""
import importlib.util
from pathlib import Path

TOP = Path(__file__).resolve().parents[2]


def test_variables_reference_is_current():
    spec = importlib.util.spec_from_file_location("variables_doc", TOP / "scripts" / "variables_doc.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (TOP / "docs" / "variables.md").read_text() == module.render(), \
        "run: python3 scripts/variables_doc.py > docs/variables.md"
