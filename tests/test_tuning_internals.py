"""KerasTuner's private API as rir_keras.tuning uses it: every name still there in the installed
KerasTuner, listed in one module, used nowhere else; and the KerasTuner behaviour that module undoes.
"""
import importlib
import pathlib
import re

import keras_tuner
import pytest

from rir_keras.tuning import keras_tuner_internals as internals

TUNING = pathlib.Path(internals.__file__).parent
SOURCE = (TUNING / "keras_tuner_internals.py").read_text(encoding="utf-8")
pytestmark = pytest.mark.filterwarnings("ignore:(currentThread|getName):DeprecationWarning")


def holder(path):
    """What PRIVATE_NAMES lists names of under ``path``: a module, or an instance of a class (its
    attributes set in __init__ included)."""
    try:
        return importlib.import_module(path)
    except ImportError:
        module, _, name = path.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    if issubclass(cls, keras_tuner.Tuner):
        return cls  # methods only
    return cls() if cls is keras_tuner.Oracle else cls(keras_tuner.Oracle())  # servicer, client: of an oracle


def test_installed_keras_tuner_has_every_private_name_used(monkeypatch):
    for name, value in dict(KERASTUNER_TUNER_ID="worker1", KERASTUNER_ORACLE_IP="127.0.0.1",
                            KERASTUNER_ORACLE_PORT="1").items():  # an OracleClient only reads them
        monkeypatch.setenv(name, value)
    missing = [f"{path}.{name}" for path, names in internals.PRIVATE_NAMES.items()
               for name in names if not hasattr(holder(path), name)]
    assert not missing, (
        f"KerasTuner {keras_tuner.__version__} lacks {', '.join(missing)}, which "
        f"rir_keras/tuning/keras_tuner_internals.py (written against KerasTuner {internals.CHECKED_VERSION}) "
        f"uses: read what each works around there, and adapt it or drop it")


def test_private_names_lists_every_private_name_the_module_uses():
    listed = {name for names in internals.PRIVATE_NAMES.values() for name in names}
    assert set(re.findall(r"\.(_[A-Za-z]\w*)", SOURCE)) <= listed  # private attributes and methods
    for package, module, alias in re.findall(r"^from (keras_tuner\.src[\w.]*) import (\w+)(?: as (\w+))?$",
                                              SOURCE, re.MULTILINE):
        path = f"{package}.{module}"
        assert path in internals.PRIVATE_NAMES, f"{path} is imported but not listed"
        used = set(re.findall(rf"\b{alias or module}\.(\w+)", SOURCE))
        assert used <= set(internals.PRIVATE_NAMES[path]), f"{path}: {sorted(used)} not all listed"


def test_no_other_module_of_the_package_uses_keras_tuner_private_api():
    for path in sorted(TUNING.glob("*.py")):
        if path.name == "keras_tuner_internals.py":
            continue
        text = path.read_text(encoding="utf-8")
        assert "keras_tuner.src" not in text, f"{path.name} imports from keras_tuner.src"
        private = re.findall(r"\b(?:self|oracle|tuner|client)(?:\.oracle)?\._\w+", text)
        assert not private, f"{path.name} uses KerasTuner's private {private}"


def test_keras_tuner_reload_still_sends_running_trials_to_the_retry_queue(tmp_path):
    """What `keep_running_trials` undoes for a restarted chief (and what a single search relies on)."""

    def build(hp):
        hp.Choice("optimizer", ["sgd", "adam"])

    options = dict(objective="val_accuracy", directory=tmp_path, project_name="search")
    tuner = keras_tuner.GridSearch(build, **options)
    trial = tuner.oracle.create_trial("worker1")
    tuner.save()
    reloaded = keras_tuner.GridSearch(build, **options).oracle
    assert reloaded.ongoing_trials == {} and internals.retry_queue(reloaded) == [trial.trial_id]
    internals.keep_running_trials(reloaded, {"worker1": reloaded.trials[trial.trial_id]})
    assert internals.retry_queue(reloaded) == [] and list(reloaded.ongoing_trials) == ["worker1"]
