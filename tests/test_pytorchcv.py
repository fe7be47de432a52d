"""pytorchcv's rir_cifar10 / rir_cifar100 against ours (rir_keras.applications.pytorchcv_rir): the same
function, every weight copied, the converter's files and its command.

pytorchcv builds its models without network; its trained weights are not downloaded here: the
checks run on randomly initialized models (batch norm statistics randomized too, so that a stream
or a channel taken from the wrong place shows), saved as .pth files as pytorchcv's are.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs PyTorch (pip install 'rir_keras[test]')")
rir_cifar = pytest.importorskip("pytorchcv.models.rir_cifar", reason="needs pytorchcv (pip install 'rir_keras[test]')")
from pytorchcv.models.common.model_store import get_model_weight_count  # noqa: E402

import keras  # noqa: E402

from rir_keras.commands.main import main as rir_keras_main  # noqa: E402
from rir_keras.applications import pytorchcv_rir  # noqa: E402
from rir_keras.dependencies import MissingDependency  # noqa: E402

IMAGES = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3)).astype("float32")  # raw pixels
PEERS = {10: rir_cifar.rir_cifar10, 100: rir_cifar.rir_cifar100}
FOLDED = 23_040  # the two strided units' 1x1 projections (48x96 + 96x192), folded into kernels by "init"


def peer_logits(net, images=IMAGES):
    """pytorchcv's logits for raw images, normalized as imgclsmob's transforms do."""
    x = (images / 255.0 - np.float32(pytorchcv_rir.MEAN)) / np.float32(pytorchcv_rir.STD)
    with torch.no_grad():
        return net(torch.from_numpy(x.transpose(0, 3, 1, 2).astype("float32"))).numpy()


def logits(model, images=IMAGES):
    """Our model's logits (before its softmax), in inference mode."""
    head = keras.Model(model.input, model.get_layer("avg_pool").output)
    return keras.ops.convert_to_numpy(head(images, training=False))


def assert_same(ours, theirs):
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5 * np.abs(theirs).max())


@pytest.fixture(scope="module", params=sorted(PEERS), ids=lambda classes: f"{classes}_classes")
def peer(request, tmp_path_factory):
    """A randomly initialized pytorchcv model in inference mode, its .pth file and its logits."""
    classes = request.param
    torch.manual_seed(classes)
    net = PEERS[classes]()
    generator = torch.Generator().manual_seed(classes)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.normal_(0.0, 0.1, generator=generator)
                module.running_mean.normal_(0.0, 0.1, generator=generator)
                module.running_var.uniform_(0.5, 2.0, generator=generator)
    net.eval()
    path = tmp_path_factory.mktemp("pytorchcv") / f"rir_cifar{classes}.pth"
    torch.save(net.state_dict(), path)
    return {"classes": classes, "net": net, "path": path, "logits": peer_logits(net)}


@pytest.fixture(scope="module")
def converted(peer):
    """Ours, every variable set to NaN, then given the .pth file's weights."""
    model = pytorchcv_rir.build(peer["classes"])
    for variable in model.variables:
        variable.assign(np.full(variable.shape, np.nan, dtype=variable.dtype))
    return pytorchcv_rir.assign(model, pytorchcv_rir.read(peer["path"]))


def test_same_function_as_pytorchcv(peer, converted):
    assert_same(logits(converted), peer["logits"])
    np.testing.assert_array_equal(np.argmax(converted(IMAGES, training=False), -1), peer["logits"].argmax(-1))


def test_every_weight_copied(peer, converted):
    assert all(np.isfinite(keras.ops.convert_to_numpy(v)).all() for v in converted.variables)
    state = pytorchcv_rir.read(peer["path"])
    stored = sum(v.size for key, v in state.items() if not key.endswith("num_batches_tracked"))
    assert sum(int(np.prod(v.shape)) for v in converted.variables) == stored


def test_same_parameters_as_the_zoo_lists(peer, converted):
    """identity="constant" has pytorchcv's parameters, one for one: its zoo's figure (9,492,980 and
    9,527,720 trainable), read from pytorchcv's own table."""
    trainable = sum(int(np.prod(v.shape)) for v in converted.trainable_variables)
    assert trainable == sum(p.numel() for p in peer["net"].parameters())
    assert trainable == get_model_weight_count(f"rir_cifar{peer['classes']}")


@pytest.mark.parametrize("peer", [10], indirect=True, ids=["10_classes"])
def test_init_placement_folds_the_shortcuts_into_the_kernels(peer):
    model = pytorchcv_rir.convert(peer["path"], identity="init")
    assert_same(logits(model), peer["logits"])
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    assert trainable == get_model_weight_count("rir_cifar10") - FOLDED


@pytest.mark.parametrize("peer", [10], indirect=True, ids=["10_classes"])
def test_weights_file_round_trip(peer, tmp_path):
    output = tmp_path / "rir_cifar10.weights.h5"
    pytorchcv_rir.convert(peer["path"], str(output))
    loaded = pytorchcv_rir.build(10, weights=str(output))
    assert_same(logits(loaded), peer["logits"])


@pytest.mark.parametrize("peer", [100], indirect=True, ids=["100_classes"])
def test_command_writes_a_keras_file(peer, tmp_path, capsys):
    output = tmp_path / "rir_cifar100.keras"
    assert rir_keras_main(["convert", str(peer["path"]), "--output", str(output)]) == 0
    assert "100 classes" in capsys.readouterr().out
    loaded = keras.saving.load_model(output, compile=False)
    assert_same(logits(loaded), peer["logits"])


@pytest.mark.parametrize("peer", [10], indirect=True, ids=["10_classes"])
def test_a_state_dict_that_does_not_fit_is_refused(peer):
    state = pytorchcv_rir.read(peer["path"])
    with pytest.raises(ValueError, match=r"no place for: extra\.weight.*Received: source=a state dict"):
        pytorchcv_rir.convert({**state, "extra.weight": np.zeros(3)})
    missing = {key: value for key, value in state.items() if not key.startswith("features.stage3.unit6.")}
    with pytest.raises(ValueError, match="15 units, the model 16 generalized layers"):
        pytorchcv_rir.convert(missing)
    without_projection = {key: value for key, value in state.items() if "identity_conv" not in key}
    with pytest.raises(ValueError, match=r"no 'features\.stage2\.unit1\.identity_conv\.weight'"):
        pytorchcv_rir.convert(without_projection)
    with pytest.raises(ValueError, match="needs shortcut='projection'"):
        pytorchcv_rir.assign(pytorchcv_rir.build(10, shortcut="identity"), state)


@pytest.mark.parametrize("argv, message", [
    (["missing.pth", "--output", "out.keras"], "source must be a pytorchcv weights file (.pth); there is no such file. "
                                               "Received: source='missing.pth'"),
    (["not_torch.pth", "--output", "out.keras"], "source is not a PyTorch weights file"),
    (["not_torch.pth", "--output", "out.h5"], "output must end with .keras or .weights.h5. Received: --output='out.h5'"),
    (["not_torch.pth", "--output", "exists.keras"], "output already exists"),
])
def test_command_errors(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "not_torch.pth").write_text("not a weights file")
    (tmp_path / "exists.keras").write_text("")
    assert rir_keras_main(["convert", *argv]) == 2
    error = capsys.readouterr().err
    assert error.startswith("rir-keras convert: error: ") and message in error and error.count("\n") == 1


def test_reading_needs_pytorch(monkeypatch, tmp_path):
    monkeypatch.setitem(__import__("sys").modules, "torch", None)
    with pytest.raises(MissingDependency, match="needs PyTorch: pip install torch"):
        pytorchcv_rir.read(str(tmp_path / "rir_cifar10.pth"))


def test_bad_identity():
    with pytest.raises(ValueError, match="identity must be one of 'constant', 'shortcut', 'init'. Received: identity='kernel'"):
        pytorchcv_rir.build(10, identity="kernel")
