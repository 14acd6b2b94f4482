"""Fuzzing ``edgeport.yaml`` build configs: values replaced anywhere in a valid config, bytes
mutated (not UTF-8, not YAML), other kinds of file. Only success or an EdgeportError with exit
2, 3 or 4 are allowed (tests/fuzz_files.py)."""

from __future__ import annotations

import pytest

from edgeport.ci.config import load_config
from edgeport.core.errors import InputError
from tests import fuzz_files


def test_build_configs_load_or_are_refused():
    fuzz_files.fuzz_build_configs(fuzz_files.strict, 200)


def test_a_config_that_is_not_utf8_is_one_line(tmp_path):
    path = tmp_path / "edgeport.yaml"
    path.write_bytes(b"version: 1\nmodels: \xff\xfe\n")
    with pytest.raises(InputError, match="not UTF-8"):
        load_config(path)
