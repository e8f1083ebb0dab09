"""A config file takes the flags' own names, as the README says ("keys as the flags")."""

from __future__ import annotations

import pytest

from edgedistill.config import load_config_file, resolve_config
from edgedistill.errors import InputError


def write(tmp_path, text: str):
    path = tmp_path / "edgedistill.toml"
    path.write_text(text)
    return path


def test_flag_names_are_accepted_in_a_config_file(tmp_path):
    cfg = resolve_config(load_config_file(write(tmp_path, """
[build]
distill = "kd=1,ce=0.5,T=4"
scratch = false
min-accuracy = 0.9
max-accuracy-drop = 0.02
min-teacher-accuracy = 0.5
image-size = [16, 16]
channels = 3
""")), {})
    assert cfg.loss == "kd=1,ce=0.5,T=4"
    assert cfg.scratch_baseline is False
    assert cfg.gate_min_accuracy == 0.9 and cfg.gate_max_accuracy_drop == 0.02
    assert cfg.gate_min_teacher_accuracy == 0.5
    assert cfg.image_size == [16, 16] and cfg.channels == 3


def test_a_budget_key_is_also_a_gate_as_its_flag_is(tmp_path):
    cfg = resolve_config(load_config_file(write(tmp_path, "max_latency_ms = 2.5\n")), {})
    assert cfg.max_latency_ms == 2.5 and cfg.gate_max_latency_ms == 2.5


def test_two_spellings_of_one_setting_are_an_error(tmp_path):
    with pytest.raises(InputError, match="a second time"):
        load_config_file(write(tmp_path, 'distill = "kd=1"\nloss = "kd=1"\n'))


@pytest.mark.parametrize("text,problem", [
    ("channels = 2", "channels = 2"),
    ("min-teacher-accuracy = 50", "a fraction"),
])
def test_bad_values_are_named(tmp_path, text, problem):
    with pytest.raises(InputError, match=problem):
        resolve_config(load_config_file(write(tmp_path, text)), {})
