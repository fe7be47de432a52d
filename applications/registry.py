"""One record per registered model, and one spec format for rebuilding a model from a file.

A `Record` holds what the package knows about a model: its constructor and fixed options, the
group of the paper it belongs to (``rir-keras reproduce --table GROUP``), the paper's figures for
it, its default preprocessing and classes, and the weights shipped for it.
The command line, the tuner, the benchmarks, the weights store and the docs all read the records.

Facts that belong to something else stay there, and a record reads them: the paper's tables
(with rows of other papers' networks) in `rir_keras.applications.paper`, a dataset's statistics
and class names in `rir_keras.preprocessing`, a shipped file's measurements in the weights
manifest (`rir_keras.applications.weights_store`). A record's default preprocessing and classes are
its constructor's defaults, read from its signature.

A `ModelSpec` is how a file says which model it holds: registry name, constructor options,
input shape, classes and preprocessing. results.json (``rir-keras train``), best.json
(``rir-keras tune``) and the weights manifest store it as ``"spec"``; `ModelSpec.from_dict` reads it
back and `ModelSpec.build` rebuilds the model.
"""
import dataclasses
from typing import Callable

from rir_keras import preprocessing as preprocessing_lib
from rir_keras.applications import networks, paper, weights_store


@dataclasses.dataclass(frozen=True)
class Group:
    """Models the paper compares in one experiment: what ``rir-keras reproduce --table KEY`` trains."""

    key: str
    source: str  # the paper's experiment, in words
    tables: tuple  # the paper's tables reporting it


GROUPS = {group.key: group for group in (
    Group("32", "Table 1: the four 32-layer architectures (Fig. 2)", (1, 6)),
    Group("18-wide", "Tables 2 and 3: 18-layer + wide, CIFAR-10 and CIFAR-100", (2, 3)),
    Group("sweep", "Table 4: blocks x layers per block, 32-layer widths", (4,)),
    Group("all-cnn", "Table 5: ALL-CNN-C + BN, standard vs ResNet Init", (5,)),
    Group("forget", "Table 6: forget gates", (6,)),
)}


@dataclasses.dataclass(frozen=True)
class Record:
    """Everything about one registered model. `build` builds it; the rest describes it."""

    name: str  # the registry name; also the model's default name
    constructor: Callable  # the public constructor, e.g. networks.RiR32
    options: dict = dataclasses.field(default_factory=dict)  # fixed options, e.g. {"forget_gate": True}
    group: str = None  # the key of its `Group`, or None for a model outside the paper's experiments

    def build(self, **kwargs):
        """The model, built with the record's options, then ``kwargs``."""
        try:
            return self.constructor(**{**self.options, **kwargs})
        except TypeError as error:  # an option the constructor does not take
            raise ValueError(f"model {self.name!r} does not take one of these options: {sorted(kwargs)} "
                             f"({error})") from error

    @property
    def defaults(self):
        """The default of every keyword of the constructor, the record's options applied."""
        return {**weights_store.keyword_defaults(self.constructor), **self.options}

    @property
    def preprocessing(self):
        return self.defaults["preprocessing"]

    @property
    def classes(self):
        return self.defaults["classes"]

    @property
    def class_names(self):
        """The class names of the dataset its preprocessing defaults to, where the count matches."""
        names = preprocessing_lib.CLASS_NAMES.get(self.preprocessing)
        return names if names is not None and len(names) == self.classes else None

    @property
    def source(self):
        """The paper's experiment the model comes from, in words."""
        if self.group is not None:
            return GROUPS[self.group].source
        return "forget gates on the 18-layer wide networks (not in the paper's tables)" if \
            self.options.get("forget_gate") else ""

    def reported(self, dataset):
        """``[(table, accuracy)]``: the paper's figures for this model on ``dataset``."""
        return paper.reported(dataset, self.name)

    def cite(self, dataset):
        """The paper's figures as text, e.g. ``"92.97 (Table 1, 6)"``; ``""`` if none."""
        return paper.cite(dataset, self.name)

    def call(self):
        """The record as a constructor call, e.g. ``RiR32(forget_gate=True)``."""
        options = ", ".join(f"{key}={value!r}" for key, value in self.options.items() if key != "name")
        return f"{self.constructor.__name__}({options})"

    def shipped(self, weights="cifar10"):
        """The weights manifest's entry of ``weights`` for this model, or None (not shipped yet)."""
        return weights_store.entry(self.name, weights)


def _sweep(blocks, layers):
    """Table 4: total blocks x layers per block on the 32-layer network of Table 1 (widths 16/32/64,
    its dense head), the blocks split evenly over its three stages: rir_15x2 is RiR-32."""
    name = f"rir_{blocks}x{layers}"
    return Record(name, networks.RiRNet, dict(blocks_per_stage=(blocks // 3,) * 3, layers_per_block=layers,
                                             widths=(16, 32, 64), architecture="rir", head="dense", name=name),
                  group="sweep")


SWEEP = ((15, 2), (3, 10), (6, 5), (15, 5), (9, 3))
_FORGET = {"forget_gate": True}

RECORDS = {record.name: record for record in (
    Record("cnn32", networks.CNN32, group="32"),
    Record("resnet32", networks.ResNet32, group="32"),
    Record("resnet_init32", networks.ResNetInit32, group="32"),
    Record("rir32", networks.RiR32, group="32"),
    Record("cnn18_wide", networks.CNN18Wide, group="18-wide"),
    Record("resnet18_wide", networks.ResNet18Wide, group="18-wide"),
    Record("resnet_init18_wide", networks.ResNetInit18Wide, group="18-wide"),
    Record("rir18_wide", networks.RiR18Wide, group="18-wide"),
    *(_sweep(blocks, layers) for blocks, layers in SWEEP),
    Record("all_cnn_c", networks.AllCNNC, group="all-cnn"),
    Record("all_cnn_c_resnet_init", networks.AllCNNC, {"resnet_init": True}, group="all-cnn"),
    Record("resnet32_forget", networks.ResNet32, {**_FORGET, "name": "resnet32_forget"}, group="forget"),
    Record("rir32_forget", networks.RiR32, {**_FORGET, "name": "rir32_forget"}, group="forget"),
    Record("resnet18_wide_forget", networks.ResNet18Wide, {**_FORGET, "name": "resnet18_wide_forget"}),
    Record("rir18_wide_forget", networks.RiR18Wide, {**_FORGET, "name": "rir18_wide_forget"}),
)}


def names():
    return sorted(RECORDS)


def record(name):
    """The `Record` of registry model ``name``."""
    if name not in RECORDS:
        raise ValueError(f"model must be one of: {', '.join(names())}. Received: model={name!r}")
    return RECORDS[name]


def build(name, **kwargs):
    """Build the model registered as ``name`` with the constructor's keyword arguments."""
    return record(name).build(**kwargs)


def group_members(key):
    """The registry names of group ``key``, in the paper's order (Table 1: CNN, ResNet, ResNet Init, RiR)."""
    return tuple(r.name for r in RECORDS.values() if r.group == key)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Which model a file holds: enough to rebuild it, untrained, exactly."""

    registry_name: str
    options: dict  # constructor options, preprocessing, classes and input shape excluded
    input_shape: tuple
    classes: int
    preprocessing: object  # "cifar10", "cifar100", None or [mean, std]

    FIELDS = ("registry_name", "options", "input_shape", "classes", "preprocessing")

    @classmethod
    def of(cls, registry_name, options, input_shape, classes):
        """The spec of ``registry_name`` built with ``options`` (``preprocessing`` among them, or the
        record's default) for images of ``input_shape`` in ``classes`` classes."""
        options = dict(options)
        preprocessing = options.pop("preprocessing", record(registry_name).preprocessing)
        return cls(registry_name, options, tuple(input_shape), int(classes), preprocessing)

    def build(self, **overrides):
        return build(self.registry_name, **self.constructor_options(), **overrides)

    def constructor_options(self):
        """Every keyword this spec passes to the constructor."""
        return weights_store.spec_options(self.to_dict())

    def to_dict(self):
        return {"registry_name": self.registry_name, "options": dict(self.options),
                "input_shape": list(self.input_shape), "classes": self.classes,
                "preprocessing": self.preprocessing}

    @classmethod
    def from_dict(cls, value, source="spec"):
        """The spec a file stored with `to_dict`; ValueError naming ``source`` if it is not one."""
        if not isinstance(value, dict) or set(value) != set(cls.FIELDS):
            keys = sorted(value) if isinstance(value, dict) else type(value).__name__
            raise ValueError(f"{source} must hold a model spec with the fields {', '.join(cls.FIELDS)}. "
                             f"Received: {source}={keys}")
        record(value["registry_name"])  # an unknown name is named as such
        preprocessing = value["preprocessing"]
        if isinstance(preprocessing, list):
            preprocessing = tuple(preprocessing)
        return cls(value["registry_name"], dict(value["options"]), tuple(value["input_shape"]),
                   int(value["classes"]), preprocessing)
