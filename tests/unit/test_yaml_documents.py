"""YAML for program documents: clock times and dates stay text, the rest is safe_load's."""

from __future__ import annotations

import math

import pytest
import yaml

from kopilka.adapters.documents.yaml_text import load_yaml


def test_clock_times_and_moments_stay_text() -> None:
    found = load_yaml(
        "a: 8:00\nb: 08:00\nc: 7:30:15\nd: 2026-01-01\ne: 2026-01-01T10:00:00Z\nf: -1:30\n"
    )
    assert found == {
        "a": "8:00",
        "b": "08:00",
        "c": "7:30:15",
        "d": "2026-01-01",
        "e": "2026-01-01T10:00:00Z",
        "f": "-1:30",
    }
    assert yaml.safe_load("a: 8:00") == {"a": 480}  # the plain loader is left as it was


def test_everything_else_is_read_as_safe_load_reads_it() -> None:
    text = "n: 12\nm: -5\nu: 1_000\nx: 0x1f\nf: 3.5\nb: true\nz: null\ns: text\nl: [1, two]\n"
    assert load_yaml(text) == yaml.safe_load(text)
    assert math.isnan(load_yaml("v: .nan")["v"])


def test_tags_that_build_python_objects_are_refused() -> None:
    with pytest.raises(yaml.YAMLError):
        load_yaml("x: !!python/object/apply:os.system [echo hi]")
