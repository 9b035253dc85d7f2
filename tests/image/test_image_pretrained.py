"""Image models by name (hf:, timm:, torchvision:, robustbench:): preprocessing inside, raw pixels in [0, 1],
weights never unpickled, and each run through bench.evaluate with the track's official suite (few steps)."""

import os
import subprocess
import sys
import types

import pytest
import torch
from safetensors.torch import save_file

import bench
from bench.errors import UserError
from bench.resolve import check_compatible, resolve
from bench.tracks import get_track

torch.set_num_threads(1)
MNIST = get_track("image-mnist5k-linf-0.3")
CIFAR = get_track("image-cifar10-linf-8_255")  # its threat and suite only: CIFAR-10 is not on disk here


class Payload:
    """Not a tensor: torch.load(weights_only=True) must refuse to build it."""


@pytest.fixture(scope="module")
def mnist():
    data, _ = MNIST.eval_data()
    return data.subset(torch.arange(3))


def run_official(model, x, threat, suite, small_suite, cascade=True):
    """The official suite (reduced budgets) on labels the model gets right, so every attack runs."""
    with torch.no_grad():
        y = model.predict(x).argmax(-1)
    report = bench.evaluate(model, x, y, threat, small_suite(suite), cascade=cascade, flags=False, batch_size=2)
    m = report.metrics()
    assert m["clean_accuracy"] == 1.0
    assert list(m["per_attack"]) == [s.name for s in suite]  # apgd-ce, apgd-t, fab-t, square
    assert m["robust_accuracy"] <= m["clean_accuracy"]
    return report


def input_gradient(model, x):
    z, ctx = model.encode(x)
    z = z.clone().requires_grad_(True)
    model(z, ctx).logsumexp(-1).sum().backward()
    return z.grad


def test_hf_image_classifier_takes_pixels_and_runs_the_official_suite(tiny_hf, mnist, small_suite):
    folder = tiny_hf("image", channels=1, num_labels=10)
    model = resolve(f"hf:{folder}")
    assert model.requirements == {"domain": "image", "in_channels": 1, "num_classes": 10}
    assert model.source.model_id == f"hf-{folder.name}" and len(model.source.sha256) == 64
    # the processor inside equals transformers' own on an image already at its 16x16 size
    from transformers import AutoImageProcessor

    x16 = torch.rand(2, 1, 16, 16)
    uint8 = (x16 * 255).round() / 255
    ref = AutoImageProcessor.from_pretrained(folder)(list((uint8 * 255).round().to(torch.uint8)), return_tensors="pt")
    assert torch.allclose(model.net.pre(uint8), ref["pixel_values"].float(), atol=1e-5)
    check_compatible(model, MNIST, mnist)  # 28x28 MNIST is resized to 16x16 inside
    g = input_gradient(model, mnist.inputs)
    assert g.shape == (3, 1, 28, 28) and g.abs().sum() > 0 and torch.isfinite(g).all()
    run_official(model, mnist.inputs, MNIST.threat, MNIST.attack_specs, small_suite)


def test_timm_weights_file_with_its_normalisation_inside(tmp_path, mnist, small_suite):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    net = timm.create_model("resnet10t", num_classes=10, in_chans=1).eval()
    save_file(net.state_dict(), tmp_path / "r10.safetensors")
    model = resolve(f"timm:resnet10t@{tmp_path / 'r10.safetensors'}")
    assert model.requirements == {"domain": "image", "in_channels": 1, "num_classes": 10}
    assert (model.source.model_id, model.source.defense) == ("timm-resnet10t", "r10")
    mean = sum(net.pretrained_cfg["mean"]) / 3  # ImageNet statistics, averaged for one channel
    std = sum(net.pretrained_cfg["std"]) / 3
    with torch.no_grad():
        assert torch.allclose(model.predict(mnist.inputs), net((mnist.inputs - mean) / std), atol=1e-5)
    check_compatible(model, MNIST, mnist)
    run_official(model, mnist.inputs, MNIST.threat, MNIST.attack_specs, small_suite)
    with pytest.raises(UserError, match="unknown timm model"):
        resolve("timm:resnet10tt")


def test_torchvision_weights_with_imagenet_normalisation_and_no_pickle(tmp_path, small_suite):
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=10).eval()
    torch.save({"state_dict": net.state_dict()}, tmp_path / "r18.pt")
    model = resolve(f"torchvision:resnet18@{tmp_path / 'r18.pt'}")
    assert model.requirements == {"domain": "image", "in_channels": 3, "num_classes": 10}
    x = torch.rand(2, 3, 32, 32)
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(model.predict(x), net((x - mean) / std), atol=1e-5)
    run_official(model, x, CIFAR.threat, CIFAR.attack_specs, small_suite)
    # a file that would run code when unpickled is refused, not loaded
    torch.save({"state_dict": net.state_dict(), "payload": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(UserError, match="cannot read weights"):
        resolve(f"torchvision:resnet18@{tmp_path / 'evil.pt'}")
    with pytest.raises(UserError, match="weights do not fit"):
        resolve(f"torchvision:resnet34@{tmp_path / 'r18.pt'}")


@pytest.fixture
def robustbench_cache(tmp_path, monkeypatch):
    """RobustBench's cache layout in a temporary folder, with downloads off.

    robustbench 1.1.1 (PyPI) imports ``autoattack`` and ``autoattack.state`` (fra31/auto-attack from GitHub,
    not on PyPI), though it declares only ``pyautoattack``; loading a model never uses them, so the test
    stands them in (pyautoattack's AutoAttack and an empty ``state``) to reach the real loader.
    """
    try:
        import autoattack  # noqa: F401
    except ImportError:
        pyautoattack = pytest.importorskip("pyautoattack")
        shim, state = types.ModuleType("autoattack"), types.ModuleType("autoattack.state")
        shim.AutoAttack, shim.state, shim.__path__ = pyautoattack.AutoAttack, state, []
        state.EvaluationState = object
        monkeypatch.setitem(sys.modules, "autoattack", shim)
        monkeypatch.setitem(sys.modules, "autoattack.state", state)
    pytest.importorskip("robustbench")
    monkeypatch.setenv("XROBUST_ROBUSTBENCH_DIR", str(tmp_path))
    monkeypatch.setenv("XROBUST_NO_FETCH", "1")
    return tmp_path


def test_robustbench_model_from_its_cache_layout(robustbench_cache, small_suite, monkeypatch):
    from robustbench.model_zoo import model_dicts
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    spec = "robustbench:cifar10/Linf/Ding2020MMA"
    with pytest.raises(UserError, match=r"not in the cache .*Ding2020MMA\.pt"):
        resolve(spec)
    torch.manual_seed(0)
    net = model_dicts[BenchmarkDataset("cifar10")][ThreatModel("Linf")]["Ding2020MMA"]["model"]().eval()
    path = robustbench_cache / "cifar10" / "Linf" / "Ding2020MMA.pt"  # <dir>/<dataset>/<threat>/<name>.pt
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, path)
    model = resolve(spec)
    assert model.requirements == {"domain": "image", "in_channels": 3, "num_classes": 10, "image_size": 32}
    assert (model.source.model_id, model.source.defense) == ("ding2020mma", "robustbench")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model.predict(x), net(x), atol=1e-5)  # RobustBench models take [0, 1] inputs
    run_official(model, x, CIFAR.threat, CIFAR.attack_specs, small_suite)
    with pytest.raises(UserError, match="channels 3 .*the track: 1"):
        bench.load_model(spec, track=MNIST)
    torch.save({"state_dict": net.state_dict(), "payload": Payload()}, path)  # RobustBench's own torch.load
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # would let a plain torch.load unpickle it
    with pytest.raises(UserError, match="could not load.*Weights only load failed"):  # weights_only=True
        resolve(spec)


def test_robustbench_from_pypi_alone_gives_one_line_naming_what_is_missing(tmp_path):
    """A robustbench that cannot be imported (some 1.1.1 builds import fra31/auto-attack's ``autoattack``,
    not on PyPI) or a model missing from the cache with downloads off: one line naming what is missing."""
    probe = subprocess.run([sys.executable, "-c", "import robustbench"], capture_output=True)
    code = ("from bench.resolve import resolve\n"
            "try:\n    resolve('robustbench:cifar10/Linf/Standard')\n"
            "except Exception as e:\n    print(type(e).__name__, e)\n")
    env = {**os.environ, "XROBUST_NO_FETCH": "1", "XROBUST_ROBUSTBENCH_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env).stdout.strip()
    assert out.startswith("UserError") and len(out.splitlines()) == 1, out
    if probe.returncode != 0:
        assert "autoattack" in out and ("auto-attack" in out or "xrobust[robustbench]" in out)
    else:
        assert "Standard.pt" in out and str(tmp_path) in out


def test_hf_repo_id_is_read_from_the_hub_cache_offline(tiny_hf, tmp_path):
    """``hf:<org>/<name>`` goes through huggingface_hub's cache (``models--org--name/snapshots/<rev>``);
    with ``HF_HUB_OFFLINE=1`` nothing is downloaded, and a repo that is not cached is one line."""
    import shutil

    repo = tmp_path / "hub" / "models--tiny--vit"
    shutil.copytree(tiny_hf("image", channels=1), repo / "snapshots" / "0123abc")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abc")
    code = ("from bench.resolve import resolve\nfrom bench.errors import UserError\n"
            "m = resolve('hf:tiny/vit')\nprint(m.source.model_id, m.requirements['num_classes'])\n"
            "try:\n    resolve('hf:tiny/not-cached')\nexcept UserError as e:\n    print('UserError', e)\n")
    env = {**__import__("os").environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "hf-tiny-vit 10", out.stderr[-2000:]
    assert lines[1].startswith("UserError cannot load the Hugging Face model 'tiny/not-cached'") and len(lines) == 2
