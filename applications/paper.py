"""Test accuracies (%) that Targ, Almeida and Lyman (2016) report, for comparison tables.

These are the paper's figures, on the original CIFAR data with the paper's full training:
never results of this project.
"""

REPORTED = {
    "cifar10": {
        "cnn32": 89.03, "resnet32": 92.32, "resnet_init32": 89.62, "rir32": 92.97,
        "cnn18_wide": 93.64, "resnet18_wide": 93.95, "resnet_init18_wide": 94.28, "rir18_wide": 94.99,
        "all_cnn_c": 93.22, "all_cnn_c_resnet_init": 93.42,
    },
    "cifar100": {
        "cnn18_wide": 75.17, "resnet18_wide": 76.58, "resnet_init18_wide": 75.99, "rir18_wide": 77.10,
    },
}


def reported(dataset, model):
    """The paper's accuracy for ``model`` on ``dataset`` ("cifar10", "cifar100"), or None."""
    return REPORTED.get(dataset, {}).get(model)
