"""Install rir_keras: the core package (with its command line, `rir_keras/commands/`) plus
`applications/` and `tuning/` as its subpackages."""
from setuptools import setup

CORE = [
    "keras>=3.8,<3.16",
    "keras-tuner>=1.4.7,<1.5",
    "six>=1.16",  # keras-tuner 1.4 imports it without declaring it (python-dateutil 4 no longer brings it)
    "numpy>=1.26,<3",
    "h5py>=3.10",
    "pillow>=10",
    "matplotlib>=3.8,<4",
    "pyyaml>=6,<7",
    "psutil>=5.9,<8",
]
TENSORFLOW = ["tensorflow>=2.18,<2.22", "tensorflow-datasets>=4.9.7,<4.10", "tensorboard>=2.18,<2.22"]
# The lent GPU machines have jax 0.11.2 (CUDA 13); tools/gpu/ installs the rest there from wheels.
JAX = ["jax>=0.4.30,<0.12"]
# PyTorch, for the benchmarks and (with pytorchcv, its RiR models) tests/test_pytorchcv.py. Where the
# machine offers the CPU build (2.13.0+cpu, 192 MB), pip takes it: torch==2.13.0 matches it and ranks it first.
TORCH = ["torch==2.13.0"]

setup(
    name="rir_keras",
    version="0.14.0",
    description="Resnet in Resnet (Targ, Almeida, Lyman 2016) for Keras 3",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=["rir_keras", "rir_keras.commands", "rir_keras.applications", "rir_keras.tuning"],
    package_dir={
        "rir_keras": "rir_keras",
        "rir_keras.applications": "applications",
        "rir_keras.tuning": "tuning",
    },
    # Shipped trained weights (applications/weights/: manifest.json and *.weights.h5, weights only).
    package_data={"rir_keras.tuning": ["presets/*.yaml"], "rir_keras.applications": ["weights/*"]},
    # The default install is what it always was: TensorFlow included (every command works). [jax]
    # adds JAX. Without TensorFlow (the lent GPU machines): `pip install --no-deps` this package and
    # install CORE and jax yourself (tools/gpu/ does it offline); rir_keras then makes JAX the backend.
    # [tensorflow] names the TensorFlow set, which error messages point to.
    install_requires=CORE + TENSORFLOW,
    extras_require={
        "tensorflow": TENSORFLOW,
        "jax": JAX,
        "test": TENSORFLOW + TORCH + ["pytorchcv==0.0.74", "pytest>=8,<10", "pytest-xdist>=3.5,<4", "jax[cpu]>=0.4.30,<0.11", "tf2onnx>=1.16,<1.18", "onnxruntime>=1.18,<1.33"],
        "bench": TORCH,
    },
    entry_points={"console_scripts": ["rir-keras=rir_keras.commands.main:main"]},
)
