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


@pytest.mark.parametrize("text,key", [
    ('image-size = ["a", "b"]', "image-size"),
    ("image_size = [28]", "image_size"),
    ("mean = [0.5, true]", "mean"),
    ('epochs = "ten"', "epochs"),
    ("epochs = 2.5", "epochs"),
    ("scratch = 1", "scratch"),
    ('max-size-kb = "64"', "max-size-kb"),
    ("target = 5", "target"),
])
def test_a_wrong_type_is_an_input_error_naming_the_file_and_the_key(tmp_path, text, key):
    path = write(tmp_path, text)
    with pytest.raises(InputError) as err:
        resolve_config(load_config_file(path), {})
    assert str(path) in err.value.message and key in err.value.message


@pytest.mark.parametrize("text,flag", [
    ('epochs = "ten"', {"epochs": 3}),
    ("channels = 2", {"channels": 3}),
    ('image-size = ["a", "b"]', {"image_size": [16, 16]}),
])
def test_an_invalid_value_is_refused_even_when_a_flag_overrides_it(tmp_path, text, flag):
    path = write(tmp_path, text)
    with pytest.raises(InputError, match=str(path)):
        resolve_config(load_config_file(path), flag)


def test_ints_for_floats_are_fine_in_a_config_file(tmp_path):
    cfg = resolve_config(load_config_file(write(tmp_path, "lr = 1\nmean = [0, 1]\nmax-size-kb = 64\n")), {})
    assert cfg.lr == 1.0 and cfg.mean == [0.0, 1.0] and cfg.max_size_kb == 64.0 == cfg.gate_max_size_kb
    assert isinstance(cfg.lr, float) and all(isinstance(m, float) for m in cfg.mean)


def test_the_cli_refuses_a_mistyped_config_with_exit_2_naming_file_and_key(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    (tmp_path / "edgedistill.toml").write_text('[build]\nimage-size = ["a", "b"]\n')
    script = Path(sys.executable).parent / "edgedistill"
    proc = subprocess.run([str(script), "build", "--target", "host", "--out", str(tmp_path / "dist")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert "edgedistill.toml" in proc.stderr and "image-size" in proc.stderr
    assert not (tmp_path / "dist").exists()
