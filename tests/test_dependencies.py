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


def probe(first="", **variables):
    env = {key: value for key, value in os.environ.items() if key != "TF_ENABLE_ONEDNN_OPTS"}
    env.update(variables, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-c", PROBE.format(first=first)], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


@pytest.mark.parametrize("variables,expected", [
    ({}, ["1", "True"]),  # on by default, whatever the CPU
    ({"TF_ENABLE_ONEDNN_OPTS": "0"}, ["0", "False"]),  # the user's choice stands
])
def test_importing_rir_keras_turns_on_onednn_unless_the_user_chose(variables, expected):
    assert probe(**variables) == expected


def test_tensorflow_imported_first_is_left_as_it_is():
    variable, _ = probe(first="import tensorflow")
    assert variable == "None"
