"""Hyperparameter search for the networks of Resnet in Resnet, with KerasTuner.

``RiRHyperModel`` builds any registry model from a grid of hyperparameters (``load_grid``: a
preset such as ``"paper"`` or a YAML/JSON file); ``GridSearch`` walks the grid, resumably, on one
machine or several; ``write_results`` and ``load_best`` give the table and the best model.
The command line is ``rir-keras tune``; docs/tuning.md tells the whole story.
"""
from rir_keras.tuning.grid import HYPERPARAMETERS, grid_size, load_grid, preset_names, validate_grid
from rir_keras.tuning.hypermodel import RiRHyperModel
from rir_keras.tuning.search import GridSearch, ResumableGridSearchOracle, load_best, write_results

__all__ = [
    "HYPERPARAMETERS", "grid_size", "load_grid", "preset_names", "validate_grid", "RiRHyperModel", "GridSearch",
    "ResumableGridSearchOracle", "load_best", "write_results",
]
