"""One registry of model names, used by the command line, the tuner and the benchmarks."""
import functools

from rir_keras.applications import networks

# The paper's Table 4: total blocks x layers per block on the 32-layer network of Table 1 (widths
# 16/32/64, its dense head), the blocks split evenly over its three stages: rir_15x2 is RiR-32.
SWEEP = ((15, 2), (3, 10), (6, 5), (15, 5), (9, 3))


def _sweep(blocks, layers):
    return functools.partial(
        networks.RiRNet, blocks_per_stage=(blocks // 3,) * 3, layers_per_block=layers,
        widths=(16, 32, 64), architecture="rir", head="dense", name=f"rir_{blocks}x{layers}",
    )


MODELS = {
    "cnn32": networks.CNN32,
    "resnet32": networks.ResNet32,
    "resnet_init32": networks.ResNetInit32,
    "rir32": networks.RiR32,
    "cnn18_wide": networks.CNN18Wide,
    "resnet18_wide": networks.ResNet18Wide,
    "resnet_init18_wide": networks.ResNetInit18Wide,
    "rir18_wide": networks.RiR18Wide,
    "resnet32_forget": functools.partial(networks.ResNet32, forget_gate=True, name="resnet32_forget"),
    "rir32_forget": functools.partial(networks.RiR32, forget_gate=True, name="rir32_forget"),
    "resnet18_wide_forget": functools.partial(networks.ResNet18Wide, forget_gate=True, name="resnet18_wide_forget"),
    "rir18_wide_forget": functools.partial(networks.RiR18Wide, forget_gate=True, name="rir18_wide_forget"),
    "all_cnn_c": networks.AllCNNC,
    "all_cnn_c_resnet_init": functools.partial(networks.AllCNNC, resnet_init=True),
    **{f"rir_{blocks}x{layers}": _sweep(blocks, layers) for blocks, layers in SWEEP},
}

# The models `rir-keras reproduce --table KEY` trains, and the paper tables (applications.paper)
# that report them: "32" Tables 1 and 6, "18-wide" Tables 2 and 3, "sweep" Table 4, "all-cnn"
# Table 5, "forget" Table 6.
TABLES = {
    "32": ("cnn32", "resnet32", "resnet_init32", "rir32"),
    "18-wide": ("cnn18_wide", "resnet18_wide", "resnet_init18_wide", "rir18_wide"),
    "sweep": tuple(f"rir_{blocks}x{layers}" for blocks, layers in SWEEP),
    "all-cnn": ("all_cnn_c", "all_cnn_c_resnet_init"),
    "forget": ("resnet32_forget", "rir32_forget"),
}


def names():
    return sorted(MODELS)


def get(name):
    """The constructor registered as ``name``."""
    if name not in MODELS:
        raise ValueError(f"model must be one of: {', '.join(names())}. Received: model={name!r}")
    return MODELS[name]


def build(name, **kwargs):
    """Build the model registered as ``name`` with the constructor's keyword arguments."""
    return get(name)(**kwargs)
