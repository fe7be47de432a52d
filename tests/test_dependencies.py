"""What importing rir_keras sets up before TensorFlow loads: oneDNN's CPU kernels, unless the user chose."""
import os
import subprocess
import sys

import pytest

pytest.importorskip("tensorflow")

PROBE = """
import os, sys
{first}
import rir_keras
from tensorflow.python.util import _pywrap_util_port
print(os.environ.get("TF_ENABLE_ONEDNN_OPTS"), _pywrap_util_port.IsMklEnabled())
"""


def probe(first="", expect_failure=False, **variables):
    """``[TF_ENABLE_ONEDNN_OPTS, oneDNN on]`` as a process sees them after ``first`` and ``import rir_keras``;
    with ``expect_failure``, the error's text instead where the process fails."""
    env = {key: value for key, value in os.environ.items() if key != "TF_ENABLE_ONEDNN_OPTS"}
    env.update(variables, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-c", PROBE.format(first=first)], env=env, capture_output=True,
                            text=True, timeout=300)
    if expect_failure and result.returncode:
        return [result.stderr.strip().splitlines()[-1], None]
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


@pytest.mark.parametrize("variables,expected", [
    ({}, ["1", "True"]),  # on by default, whatever the CPU
    ({"TF_ENABLE_ONEDNN_OPTS": "0"}, ["0", "False"]),  # the user's choice stands
])
def test_importing_rir_keras_turns_on_onednn_unless_the_user_chose(variables, expected):
    assert probe(**variables) == expected


def test_tensorflow_imported_first_is_left_as_it_is_with_a_warning_where_it_costs(tmp_path):
    from rir_keras.dependencies import onednn_by_default

    variable, _ = probe(first="import warnings, keras; warnings.simplefilter('error')", expect_failure=True)
    if onednn_by_default():
        assert variable == "None"
    else:  # the warning (an error here) names what to do
        assert "Import rir_keras before keras" in variable and "TF_ENABLE_ONEDNN_OPTS=1" in variable
    assert probe(first="import keras", TF_ENABLE_ONEDNN_OPTS="0") == ["0", "False"]  # a choice: no warning
