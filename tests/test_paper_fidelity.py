"""Each network is the paper's: the Table 4 sweep on the 32-layer network, every table's figures,
weight decay's factor, ALL-CNN-C as Springenberg et al. built it, seeded initializers, and weights
refused from another architecture."""
import keras
import numpy as np
import pytest
from keras import ops

from rir_keras.applications import GROUPS, AllCNNC, CNN32, RiR32, build, paper
from rir_keras.applications.registry import group_members
from rir_keras.blocks import LayerSpec
from rir_keras.layers import RiRConv2D

TINY = dict(width_multiplier=0.25)


def predict(model, x):
    return ops.convert_to_numpy(model(x, training=False))


def images(batch=2, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, size=(batch, 32, 32, 3)).astype("float32")


# -- Table 4 ---------------------------------------------------------------------------------------

def test_rir_15x2_is_rir32_itself():
    rir32, sweep = RiR32(), build("rir_15x2")
    assert sweep.count_params() == rir32.count_params()
    assert [layer.name for layer in sweep.layers] == [layer.name for layer in rir32.layers]
    sweep.set_weights(rir32.get_weights())
    x = images()
    np.testing.assert_allclose(predict(sweep, x), predict(rir32, x), atol=1e-6)


@pytest.mark.parametrize("name,blocks,layers", [("rir_3x10", 1, 10), ("rir_6x5", 2, 5), ("rir_15x5", 5, 5),
                                                  ("rir_9x3", 3, 3)])
def test_sweep_splits_its_blocks_over_the_32_layer_stages(name, blocks, layers):
    model = build(name)
    generalized = [layer for layer in model.layers if isinstance(layer, RiRConv2D)]
    assert len(generalized) == 3 * blocks * layers
    widths = sorted({layer.filters for layer in generalized})
    assert widths == [16, 32, 64]
    assert isinstance(model.get_layer("logits"), keras.layers.Dense)  # the 32-layer network's head
    for stage, width in zip((1, 2, 3), (16, 32, 64)):
        assert sum(layer.name.startswith(f"stage{stage}_") for layer in generalized) == blocks * layers
        assert model.get_layer(f"stage{stage}_block{blocks}_{layers}").filters == width


# -- the paper's figures ---------------------------------------------------------------------------

def test_all_six_tables_are_in_the_code_with_their_figures():
    assert sorted(paper.TABLES) == [1, 2, 3, 4, 5, 6]
    assert [len(table.rows) for table in paper.TABLES.values()] == [5, 9, 6, 5, 2, 4]
    assert paper.reported("cifar10", "rir32") == [(1, 92.97), (6, 92.97)]
    assert paper.reported("cifar10", "rir_9x3") == [(4, 93.23)]
    assert paper.reported("cifar10", "all_cnn_c_resnet_init") == [(5, 93.42)]
    assert paper.reported("cifar10", "resnet32_forget") == [(6, 93.36)]
    assert paper.reported("cifar100", "rir18_wide") == [(3, 77.10)]
    assert paper.reported("cifar100", "rir32") == []
    assert paper.cite("cifar10", "resnet32") == "92.32 (Table 1, 6)"


def test_every_model_a_table_names_is_registered_and_reproducible():
    registered = {name for key in GROUPS for name in group_members(key)}
    named = {row.model for table in paper.TABLES.values() for row in table.rows if row.model}
    assert named <= registered
    for key, group in GROUPS.items():  # a group names the tables that report its models
        for name in group_members(key):
            assert {table for dataset in ("cifar10", "cifar100") for table, _ in paper.reported(dataset, name)} \
                <= set(group.tables), name


# -- weight decay ----------------------------------------------------------------------------------

def test_weight_decay_adds_decay_times_w_to_the_gradient():
    # He et al.'s (Torch, Caffe) convention: weight_decay=1e-4 adds 1e-4 * w to each kernel's gradient.
    regularizer = LayerSpec(weight_decay=1e-4).regularizer
    w = keras.Variable(np.full((3, 3), 2.0, "float32"))
    with_tape = keras.backend.backend() == "tensorflow"
    if with_tape:
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = regularizer(w)
        gradient = ops.convert_to_numpy(tape.gradient(loss, w.value))
    else:  # pragma: no cover - other backends: the penalty's derivative in closed form
        gradient = 2 * regularizer.l2 * ops.convert_to_numpy(w)
    np.testing.assert_allclose(gradient, 1e-4 * 2.0, rtol=1e-6)


# -- ALL-CNN-C -------------------------------------------------------------------------------------

def test_all_cnn_c_drops_out_as_springenberg_did():
    model = AllCNNC(**TINY)
    rates = {layer.name: layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)}
    assert rates == {"input_dropout": 0.2, "conv3_dropout": 0.5, "conv6_dropout": 0.5}
    # The class convolution has batch norm and a ReLU before the global average pool.
    assert model.get_layer("logits_relu").get_config()["activation"] == "relu"
    without = AllCNNC(dropout=False, **TINY)
    assert not any(isinstance(layer, keras.layers.Dropout) for layer in without.layers)
    assert without.count_params() == model.count_params()
    x = images()
    without.set_weights(model.get_weights())
    np.testing.assert_allclose(predict(without, x), predict(model, x), atol=1e-6)  # dropout only trains


# -- initializers ----------------------------------------------------------------------------------

def test_seeded_initializer_gives_each_layer_its_own_weights():
    model = RiR32(kernel_initializer=keras.initializers.HeNormal(seed=3))
    kernels = [ops.convert_to_numpy(layer.kernel) for layer in model.layers
               if isinstance(layer, RiRConv2D) and layer.kernel.shape == (3, 3, 16, 16)]
    assert len(kernels) > 2
    for first, second in zip(kernels, kernels[1:]):
        assert not np.allclose(first, second)
    again = RiR32(kernel_initializer=keras.initializers.HeNormal(seed=3))  # and it is reproducible
    for mine, theirs in zip(model.layers, again.layers):
        if isinstance(mine, (RiRConv2D, keras.layers.Conv2D)):
            np.testing.assert_array_equal(ops.convert_to_numpy(mine.kernel), ops.convert_to_numpy(theirs.kernel))


# -- weights files ---------------------------------------------------------------------------------

def test_keras_file_of_another_architecture_is_refused(tmp_path):
    path = tmp_path / "cnn32.keras"
    CNN32(**TINY).save(path)
    with pytest.raises(ValueError, match=r"does not match model 'rir32'.*Received: weights="):
        RiR32(weights=str(path), **TINY)
    # Same layers and shapes, another identity placement: another function, refused too.
    other = tmp_path / "constant.keras"
    RiR32(identity="constant", **TINY).save(other)
    with pytest.raises(ValueError, match=r"differs: identity='constant' in the file, 'init' in the model.*"
                                         r"Received: weights="):  # the option that differs, both values
        RiR32(**TINY, weights=str(other))
    # Options that only change training load: weight decay, initializer.
    same = tmp_path / "decay.keras"
    trained = RiR32(weight_decay=5e-4, **TINY)
    trained.save(same)
    loaded = RiR32(weights=str(same), **TINY)
    x = images()
    np.testing.assert_allclose(predict(loaded, x), predict(trained, x), atol=1e-6)
