"""load_teacher: a user's teacher comes in as torch.export, TorchScript or a factory plus weights, and
a checkpoint is never unpickled. infer_io: a teacher that does not fit the data is refused early."""

from __future__ import annotations

import io
import json
import os
import pickle
import sys
import textwrap
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from edgedistill.data.dataset import ImageDataset, Preprocessing, Split
from edgedistill.errors import InputError
from edgedistill.teacher.load import LoadedTeacher, infer_io, load_teacher

FACTORY_SOURCE = textwrap.dedent(
    """
    from torch import nn

    class TinyNet(nn.Module):
        def __init__(self, in_channels=1, num_classes=3):
            super().__init__()
            self.conv = nn.Conv2d(in_channels, 4, 3, padding=1)
            self.bn = nn.BatchNorm2d(4)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.head = nn.Linear(4, num_classes)

        def forward(self, x):
            return self.head(self.pool(self.bn(self.conv(x)).relu()).flatten(1))

    def build():
        return TinyNet()

    def build_rgb():
        return TinyNet(in_channels=3)

    def not_a_model():
        return "hello"
    """
)


class Payload:
    """Unpickling this runs a shell command that creates ``marker``: a stand-in for malware."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def factory(tmp_path: Path) -> str:
    path = tmp_path / "teacher_def.py"
    path.write_text(FACTORY_SOURCE)
    return str(path)


def tiny(in_channels: int = 1, num_classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(in_channels, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, num_classes)).eval()


def dataset(channels: int = 1, size: int = 8, num_classes: int = 3) -> ImageDataset:
    rng = np.random.default_rng(0)
    split = Split(rng.integers(0, 256, (6, size, size, channels), dtype=np.uint8), np.arange(6) % num_classes)
    return ImageDataset(name="toy", train=split, val=split, test=split,
                        class_names=tuple(f"c{i}" for i in range(num_classes)),
                        preprocessing=Preprocessing(1 / 255, (0.5,) * channels, (0.25,) * channels))


def x(channels: int = 1) -> torch.Tensor:
    return torch.randn(2, channels, 8, 8)


def exported(path: Path, model: nn.Module | None = None) -> Path:
    model = model or tiny()
    batch = torch.export.Dim("batch")
    program = torch.export.export(model, (x(),), dynamic_shapes=({0: batch},))
    torch.export.save(program, path)
    return path


def rewrite_zip(src: Path, dst: Path, replace: dict[str, bytes]) -> Path:
    """Copy a zip archive, replacing the members whose names end with a key of ``replace``."""
    with zipfile.ZipFile(src) as archive, zipfile.ZipFile(dst, "w") as out:
        for info in archive.infolist():
            data = archive.read(info.filename)
            for suffix, new in replace.items():
                if info.filename.endswith(suffix):
                    data = new
            out.writestr(info, data)
    return dst


def torch_saved(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


# --- the formats a teacher comes in --------------------------------------------------------------

def test_a_torch_export_program_loads_and_computes_like_the_original(tmp_path):
    path = exported(tmp_path / "teacher.pt2")
    teacher = load_teacher(str(path))
    assert isinstance(teacher, LoadedTeacher) and not teacher.is_zoo
    assert teacher.source["kind"] == "torch.export"
    inputs = x()
    torch.testing.assert_close(teacher.module(inputs), tiny()(inputs))


def test_a_torchscript_file_loads_in_eval_mode(tmp_path):
    model = tiny()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(model).save(str(tmp_path / "teacher.ts"))
    teacher = load_teacher(str(tmp_path / "teacher.ts"))
    assert teacher.source["kind"] == "torchscript"
    assert not teacher.module.training
    inputs = x()
    torch.testing.assert_close(teacher.module(inputs), model(inputs))


@pytest.mark.parametrize("fmt", ["safetensors", "state_dict"])
def test_a_factory_file_with_weights_gets_exactly_those_weights(tmp_path, factory, fmt):
    reference = load_teacher(f"{factory}:build").module
    with torch.no_grad():
        for p in reference.parameters():
            p.normal_()
    if fmt == "safetensors":
        weights = tmp_path / "w.safetensors"
        save_file(reference.state_dict(), str(weights))
    else:
        weights = tmp_path / "w.pt"
        torch.save(reference.state_dict(), weights)
    teacher = load_teacher(f"{factory}:build", weights)
    inputs = x()
    torch.testing.assert_close(teacher.module(inputs), reference.eval()(inputs))
    assert not teacher.module.training
    assert teacher.source["kind"] == "factory"
    assert teacher.source["weights"] == str(weights.resolve())
    assert set(teacher.source["sha256"]) == {str(Path(factory).resolve()), str(weights.resolve())}


def test_weights_wrapped_by_a_training_framework_or_dataparallel_are_unwrapped(tmp_path, factory):
    reference = load_teacher(f"{factory}:build").module
    wrapped = {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()}}
    torch.save(wrapped, tmp_path / "ckpt.pt")
    teacher = load_teacher(f"{factory}:build", tmp_path / "ckpt.pt")
    assert teacher.source["weights_key"] == "state_dict"


def test_a_factory_can_be_named_as_package_module_function(tmp_path, monkeypatch):
    package = tmp_path / "mymodels"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "nets.py").write_text(FACTORY_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    teacher = load_teacher("mymodels.nets:build")
    assert teacher.source["module"] == "mymodels.nets"
    assert teacher.module(x()).shape == (2, 3)
    sys.modules.pop("mymodels.nets", None)
    sys.modules.pop("mymodels", None)


def test_the_example_teacher_script_is_a_working_factory():
    script = Path(__file__).resolve().parent.parent / "scripts" / "example_teacher.py"
    teacher = load_teacher(f"{script}:build")
    infer_io(teacher, dataset(channels=1, size=28, num_classes=10))


# --- nothing in a checkpoint is ever unpickled ---------------------------------------------------

def test_the_malicious_payload_used_below_is_live_when_unpickled_unsafely(tmp_path):
    marker = tmp_path / "pwned"
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()


@pytest.mark.parametrize("container", ["torch.save", "raw pickle", "inside a state_dict"])
def test_malicious_weights_are_refused_and_nothing_runs(tmp_path, factory, container):
    marker = tmp_path / "pwned"
    weights = tmp_path / "weights.pt"
    if container == "torch.save":
        weights.write_bytes(torch_saved(Payload(marker)))
    elif container == "raw pickle":
        weights.write_bytes(pickle.dumps(Payload(marker)))
    else:
        weights.write_bytes(torch_saved({"conv.weight": torch.zeros(4, 1, 3, 3), "extra": Payload(marker)}))
    with pytest.raises(InputError, match="holds pickled Python objects.*never unpickles"):
        load_teacher(f"{factory}:build", weights)
    assert not marker.exists()


def test_a_malicious_teacher_file_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "teacher.pt").write_bytes(torch_saved(Payload(marker)))
    with pytest.raises(InputError, match="never unpickles"):
        load_teacher(str(tmp_path / "teacher.pt"))
    assert not marker.exists()


def test_a_pt2_with_a_malicious_pickled_member_is_refused_though_torch_export_load_would_run_it(tmp_path):
    marker = tmp_path / "pwned"
    good = exported(tmp_path / "good.pt2")
    with zipfile.ZipFile(good) as archive:
        config_name = next(n for n in archive.namelist() if n.endswith("model_weights_config.json"))
        config = json.loads(archive.read(config_name))
    first = next(iter(config["config"].values()))
    first["use_pickle"] = True  # declare the first weight pickled, and make it the payload
    evil = rewrite_zip(good, tmp_path / "evil.pt2", {
        "model_weights_config.json": json.dumps(config).encode(),
        f"data/weights/{first['path_name']}": torch_saved(Payload(marker)),
    })

    with pytest.raises(InputError, match="never unpickles"):
        load_teacher(str(evil))
    assert not marker.exists()

    with pytest.raises(Exception):  # the control: plain torch.export.load unpickles it
        torch.export.load(evil)
    assert marker.exists()


def test_a_pt2_with_compiled_code_or_pickled_objects_inside_is_refused_before_loading(tmp_path):
    good = exported(tmp_path / "good.pt2")
    with zipfile.ZipFile(good) as archive:
        root = archive.namelist()[0].split("/")[0]
    for extra, message in [(f"{root}/data/aotinductor/model/model.so", "compiled code"),
                           (f"{root}/data/constants/opaque_obj_0", "pickled Python objects")]:
        bad = tmp_path / "bad.pt2"
        rewrite_zip(good, bad, {})
        with zipfile.ZipFile(bad, "a") as archive:
            archive.writestr(extra, b"\0")
        with pytest.raises(InputError, match=message):
            load_teacher(str(bad))


def test_a_whole_pickled_model_is_refused_with_how_to_resave_it(tmp_path):
    torch.save(tiny(), tmp_path / "model.pt")
    with pytest.raises(InputError, match=r"torch\.save\(model\.state_dict\(\)") as caught:
        load_teacher(str(tmp_path / "model.pt"))
    assert "safetensors" in str(caught.value) and "model.pt" in str(caught.value)


def test_a_state_dict_given_as_the_teacher_is_pointed_to_factory_and_weights(tmp_path):
    torch.save(tiny().state_dict(), tmp_path / "weights.pt")
    with pytest.raises(InputError, match="only weights.*FILE.py:FUNCTION.*--weights"):
        load_teacher(str(tmp_path / "weights.pt"))


# --- files that are not what they claim ----------------------------------------------------------

@pytest.mark.parametrize("content", [os.urandom(2048), b"just some notes\n"])
def test_a_file_that_is_no_checkpoint_is_refused_naming_it(tmp_path, factory, content):
    path = tmp_path / "junk.pt"
    path.write_bytes(content)
    with pytest.raises(InputError, match="junk.pt is not a PyTorch file"):
        load_teacher(str(path))
    with pytest.raises(InputError, match="junk.pt is not a PyTorch file"):
        load_teacher(f"{factory}:build", path)


def test_a_corrupt_safetensors_file_is_refused_naming_it(tmp_path, factory):
    (tmp_path / "w.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(InputError, match="w.safetensors is not a readable safetensors file"):
        load_teacher(f"{factory}:build", tmp_path / "w.safetensors")


def test_a_missing_teacher_file_is_refused(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_teacher(str(tmp_path / "nope.pt2"))


def test_weights_with_missing_and_unexpected_keys_are_listed(tmp_path, factory):
    state = load_teacher(f"{factory}:build").module.state_dict()
    del state["head.weight"]
    state["classifier.weight"] = torch.zeros(3, 4)
    save_file(state, str(tmp_path / "w.safetensors"))
    with pytest.raises(InputError, match=r"1 missing \(head.weight\); 1 unexpected \(classifier.weight\)"):
        load_teacher(f"{factory}:build", tmp_path / "w.safetensors")


def test_weights_of_another_shape_name_the_tensor_and_both_shapes(tmp_path, factory):
    state = load_teacher(f"{factory}:build_rgb").module.state_dict()
    save_file(state, str(tmp_path / "rgb.safetensors"))
    with pytest.raises(InputError, match=r"conv.weight: file \(4, 3, 3, 3\) vs model \(4, 1, 3, 3\)"):
        load_teacher(f"{factory}:build", tmp_path / "rgb.safetensors")


@pytest.mark.parametrize("function, message", [
    ("missing", "no function missing.*build, build_rgb"),
    ("not_a_model", "returned str, not a torch.nn.Module"),
])
def test_a_bad_factory_is_refused_with_what_is_wrong(factory, function, message):
    with pytest.raises(InputError, match=message):
        load_teacher(f"{factory}:{function}")


def test_a_python_file_without_a_function_name_asks_for_one(factory):
    with pytest.raises(InputError, match="no function"):
        load_teacher(factory)


def test_weights_are_refused_for_a_teacher_that_already_holds_them(tmp_path):
    path = exported(tmp_path / "teacher.pt2")
    with pytest.raises(InputError, match="--weights only with a factory"):
        load_teacher(str(path), tmp_path / "w.safetensors")


# --- does the teacher fit the data? --------------------------------------------------------------

def test_a_teacher_that_fits_the_data_passes_the_check(tmp_path):
    infer_io(load_teacher(str(exported(tmp_path / "t.pt2"))), dataset(channels=1))
    infer_io(tiny(), dataset(channels=1))


def test_a_channel_mismatch_names_what_the_teacher_expects_and_what_the_data_is(tmp_path, factory):
    teacher = load_teacher(f"{factory}:build")
    expected = r"expects input 1 channel\(s\) but the data is \(C,H,W\)=\(3,8,8\).*--image-size"
    with pytest.raises(InputError, match=expected):
        infer_io(teacher, dataset(channels=3))


def test_an_exported_teacher_names_its_exported_input_shape(tmp_path):
    teacher = load_teacher(str(exported(tmp_path / "t.pt2")))
    with pytest.raises(InputError, match=r"\(C,H,W\)=\(3,8,8\)"):
        infer_io(teacher, dataset(channels=3))


def test_a_teacher_exported_for_batch_one_only_is_told_to_re_export_with_a_dynamic_batch(tmp_path):
    program = torch.export.export(tiny(), (torch.randn(1, 1, 8, 8),))
    torch.export.save(program, tmp_path / "b1.pt2")
    with pytest.raises(InputError, match="batch of 1.*dynamic"):
        infer_io(load_teacher(str(tmp_path / "b1.pt2")), dataset(channels=1))


def test_a_class_count_mismatch_names_both_counts():
    with pytest.raises(InputError, match="outputs 3 classes but the data toy has 10"):
        infer_io(tiny(num_classes=3), dataset(num_classes=10))


def test_the_check_leaves_a_training_mode_teacher_untouched(factory):
    module = load_teacher(f"{factory}:build").module.train()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    infer_io(module, dataset(channels=1))
    assert module.training
    for key, value in module.state_dict().items():
        assert torch.equal(value, before[key]), key
