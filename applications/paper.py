"""The six tables of Targ, Almeida and Lyman (2016), as the paper reports them.

Test accuracies (%) on the original CIFAR data with the authors' training: the figures that
``rir-keras reproduce`` and docs/models.md compare against, never results of this project. A row
names the registry model that builds its network, or ``None`` for a network of another paper
(He et al.'s own ResNet, Highway Networks, ...), kept so that every table is complete.
"""
import dataclasses


@dataclasses.dataclass(frozen=True)
class Row:
    label: str
    accuracy: float
    model: str = None  # the registry name, where the network is one of ours


@dataclasses.dataclass(frozen=True)
class Table:
    number: int
    title: str
    dataset: str  # "cifar10" or "cifar100"
    rows: tuple


TABLES = {table.number: table for table in (
    Table(1, "32-layer networks (He et al.'s ResNet-32 layout)", "cifar10", (
        Row("ResNet (He et al., 2015)", 92.49),
        Row("CNN", 89.03, "cnn32"),
        Row("ResNet", 92.32, "resnet32"),
        Row("ResNet Init", 89.62, "resnet_init32"),
        Row("RiR", 92.97, "rir32"),
    )),
    Table(2, "CIFAR-10 against the state of the art of 2016", "cifar10", (
        Row("Highway Network", 92.40),
        Row("ResNet (32 layers)", 92.49),
        Row("ResNet (110 layers)", 93.57),
        Row("Large ALL-CNN", 95.59),
        Row("Fractional Max-Pooling", 96.53),
        Row("18-layer + wide CNN", 93.64, "cnn18_wide"),
        Row("18-layer + wide ResNet", 93.95, "resnet18_wide"),
        Row("18-layer + wide ResNet Init", 94.28, "resnet_init18_wide"),
        Row("18-layer + wide RiR", 94.99, "rir18_wide"),
    )),
    Table(3, "CIFAR-100", "cifar100", (
        Row("Highway Network", 67.76),
        Row("ELU-Network", 75.72),
        Row("18-layer + wide CNN", 75.17, "cnn18_wide"),
        Row("18-layer + wide ResNet", 76.58, "resnet18_wide"),
        Row("18-layer + wide ResNet Init", 75.99, "resnet_init18_wide"),
        Row("18-layer + wide RiR", 77.10, "rir18_wide"),
    )),
    Table(4, "RiR with different numbers of blocks and layers per block (32-layer widths)", "cifar10", (
        Row("15 blocks x 2 layers", 92.87, "rir_15x2"),
        Row("3 blocks x 10 layers", 90.06, "rir_3x10"),
        Row("6 blocks x 5 layers", 92.98, "rir_6x5"),
        Row("15 blocks x 5 layers", 92.11, "rir_15x5"),
        Row("9 blocks x 3 layers", 93.23, "rir_9x3"),
    )),
    Table(5, "ALL-CNN-C with batch normalization", "cifar10", (
        Row("standard initialization", 93.22, "all_cnn_c"),
        Row("ResNet Init", 93.42, "all_cnn_c_resnet_init"),
    )),
    Table(6, "32-layer networks with forget gates (preliminary)", "cifar10", (
        Row("ResNet", 92.32, "resnet32"),
        Row("RiR", 92.97, "rir32"),
        Row("ResNet + forget", 93.36, "resnet32_forget"),
        Row("RiR + forget", 93.07, "rir32_forget"),
    )),
)}


def reported(dataset, model):
    """``(table number, accuracy)`` of every figure the paper reports for registry ``model`` on
    ``dataset`` ("cifar10" or "cifar100"), in table order; empty if none."""
    return [(table.number, row.accuracy) for table in TABLES.values() if table.dataset == dataset
            for row in table.rows if row.model == model]


def cite(dataset, model):
    """The paper's figures for ``model`` as text, e.g. ``"92.97 (Table 1)"``; ``""`` if none.

    Where two tables report the same model with the same figure (Tables 1 and 6), one is enough."""
    figures = {}
    for number, accuracy in reported(dataset, model):
        figures.setdefault(accuracy, []).append(number)
    return "; ".join(f"{accuracy:.2f} (Table {', '.join(map(str, numbers))})" for accuracy, numbers in figures.items())
