"""meta/argument_specs.yml mirrors defaults/main.yml in every role: same keys, same defaults."""
from pathlib import Path

import pytest
import yaml

ROLES = sorted(p for p in (Path(__file__).resolve().parents[2] / "roles").iterdir() if (p / "defaults").is_dir())


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_argument_specs_mirror_defaults(role):
    defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text()) or {}
    spec = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
    assert sorted(defaults) == sorted(spec), "keys differ: {}".format(set(defaults) ^ set(spec))
    for name, value in defaults.items():
        assert "type" in spec[name], name
        if spec[name]["type"] == "list":
            assert "elements" in spec[name], name
        assert spec[name].get("default") == value, "{}: spec default {!r} != defaults {!r}".format(
            name, spec[name].get("default"), value)
        assert name.startswith(role.name + "_"), name


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_internal_vars_are_underscored(role):
    internal = yaml.safe_load((role / "vars" / "main.yml").read_text()) or {}
    assert all(name.startswith("__" + role.name + "_") for name in internal), sorted(internal)
