"""Export a Keras image classifier for serving: a TensorFlow SavedModel, ONNX, or a ``.keras`` file.

Every export takes RAW images (pixel values 0..255, channels last, RGB) of the model's input size.
The model normalizes them itself: its preprocessing layer (``include_preprocessing=True``, the
constructors' default; see ``rir_keras.preprocessing``) is part of the exported graph, and a model
without one is refused. BatchNormalization runs in inference mode. The SavedModel and the ONNX
file load without Keras and without this package (plain ``tensorflow`` or ``onnxruntime``).

The serving contract (the SavedModel's signatures, the ONNX graph's input and outputs):

- input ``images``: ``uint8`` of shape ``(batch, height, width, channels)``, the SavedModel's
  ``serving_default`` signature and the ONNX graph. The SavedModel has a second signature,
  ``serving_float32``, taking the same images as ``float32`` values in [0, 255].
- output ``probabilities``: ``float32`` ``(batch, classes)``, the model's output (class
  probabilities for the usual softmax head).
- with ``top_k=K``: ``top_k_ids`` (``int32``, ``(batch, K)``, best first), ``top_k_scores``
  (``float32``, ``(batch, K)``) and, when class names are known, ``top_k_names`` (``string``).

Writes are atomic: the export goes to a temporary path beside the target, renamed into place once
complete, so a failure never leaves a half-written export (nor a temporary one) behind.

TensorFlow, tf2onnx and onnxruntime are imported inside the functions that need them, so
``import rir_keras`` works without them.
"""
import contextlib
import os

import numpy as np

from rir_keras import dependencies
from rir_keras import preprocessing as preprocessing_lib
from rir_keras.atomic import atomic_output

INPUT_NAME = "images"
SERVING_SIGNATURE = "serving_default"  # uint8 images
FLOAT_SIGNATURE = "serving_float32"  # float32 images in [0, 255]
FORMATS = ("saved_model", "onnx", "keras")
ONNX_OPSET = 17


# ---------------------------------------------------------------- arguments


def require_preprocessing(model):
    """The ``preprocessing`` of ``model`` (see ``rir_keras.preprocessing.model_preprocessing``); a
    ValueError when it has no preprocessing layer: exports take raw uint8 images."""
    preprocessing = preprocessing_lib.model_preprocessing(model)
    if preprocessing is None:
        raise ValueError(f"export needs a model that normalizes its raw [0, 255] inputs itself (exports take uint8 "
                         f"images): build it with include_preprocessing=True and a preprocessing. Received: model "
                         f"{model.name!r} without a {preprocessing_lib.LAYER_NAME!r} layer")
    return preprocessing


def image_shape(model):
    """The ``(height, width, channels)`` a single-input image model takes (``None`` where any size goes)."""
    if len(model.inputs) != 1:
        raise ValueError(f"export needs a model with one image input. Received: model with {len(model.inputs)} inputs")
    shape = tuple(model.inputs[0].shape[1:])
    if len(shape) != 3:
        raise ValueError(f"export needs a model taking (batch, height, width, channels) images. "
                         f"Received: model input shape {tuple(model.inputs[0].shape)}")
    return shape


def num_classes(model):
    if len(model.outputs) != 1 or len(model.outputs[0].shape) != 2 or model.outputs[0].shape[1] is None:
        raise ValueError(f"export needs a classifier with one (batch, classes) output. "
                         f"Received: outputs of shapes {[tuple(o.shape) for o in model.outputs]}")
    return int(model.outputs[0].shape[1])


def resolve_class_names(class_names, preprocessing, classes):
    """The class names for ``top_k_names``: ``class_names`` if given, else those of the dataset
    whose statistics the model's ``preprocessing`` is ("cifar10", "cifar100") when its class count
    matches, else ``None``."""
    if class_names is None:
        known = preprocessing_lib.CLASS_NAMES.get(preprocessing) if isinstance(preprocessing, str) else None
        return tuple(known) if known is not None and len(known) == classes else None
    if isinstance(class_names, str):
        class_names = preprocessing_lib.class_names(class_names)
    names = tuple(str(name) for name in class_names)
    if len(names) != classes:
        raise ValueError(f"class_names needs one name per class ({classes}). "
                         f"Received: class_names with {len(names)} names")
    return names


def check_top_k(top_k, classes):
    if top_k is None:
        return
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or not 1 <= top_k <= classes:
        raise ValueError(f"top_k must be None or an integer between 1 and {classes} (the classes). "
                         f"Received: top_k={top_k!r}")


# ---------------------------------------------------------------- the serving graph


class ServingGraph:
    """Raw images -> outputs dict, in TensorFlow ops: cast, the model (which normalizes them) in
    inference mode, top-k."""

    def __init__(self, model, top_k=None, class_names=None):
        self.model = model
        self.image_shape = image_shape(model)
        self.classes = num_classes(model)
        self.preprocessing = require_preprocessing(model)
        check_top_k(top_k, self.classes)
        self.top_k = top_k
        self.class_names = resolve_class_names(class_names, self.preprocessing, self.classes) if top_k else None

    def input_signature(self, dtype):
        import tensorflow as tf

        return [tf.TensorSpec((None, *self.image_shape), dtype, name=INPUT_NAME)]

    def expected(self, dtype):
        dims = ", ".join("any" if d is None else str(d) for d in self.image_shape)
        return f"{INPUT_NAME} must be a {dtype} tensor of shape (batch, {dims})"

    def check_shape(self, images):
        """Fail with a clear message (not deep inside a convolution) when ``images`` has the wrong shape."""
        import tensorflow as tf

        shape = tf.shape(images)
        # Padded so a tensor of lower rank still yields 4 entries to compare.
        padded = tf.concat([shape, tf.zeros([4], shape.dtype)], axis=0)
        ok = tf.equal(tf.size(shape), 4)
        for axis, size in enumerate(self.image_shape, start=1):
            if size is not None:
                ok = tf.logical_and(ok, tf.equal(padded[axis], size))
        message = self.expected(images.dtype.name) + "; received shape:"
        with tf.control_dependencies([tf.debugging.Assert(ok, [message, shape], summarize=8)]):
            return tf.identity(images)

    def check_values(self, images):
        """Fail, naming the first such image, when a float image holds a NaN, an infinity or a value
        outside [0, 255]: the model would answer with NaN or confident nonsense."""
        import tensorflow as tf

        bad = tf.logical_not(tf.reduce_all((images >= 0) & (images <= 255), axis=[1, 2, 3]))  # NaN: bad too
        first = tf.concat([tf.where(bad)[:, 0], tf.constant([-1], tf.int64)], axis=0)[0]
        message = f"{INPUT_NAME} must hold finite pixel values in [0, 255]; received another value in image (index):"
        with tf.control_dependencies([tf.debugging.Assert(tf.logical_not(tf.reduce_any(bad)), [message, first])]):
            return tf.identity(images)

    def __call__(self, images, checks=True):
        """The outputs for ``images``; ``checks`` (the SavedModel's signatures) adds the shape and value
        checks and answers an empty batch with empty outputs. ONNX Runtime checks dtype and shape itself."""
        import tensorflow as tf

        if checks:
            images = self.check_shape(images)
            if images.dtype != tf.uint8:
                images = self.check_values(images)
        x = tf.cast(images, tf.float32)  # the model's preprocessing layer normalizes them
        if checks:  # batch normalization fails on an empty batch
            probabilities = tf.cond(tf.shape(x)[0] > 0, lambda: tf.cast(self.model(x, training=False), tf.float32),
                                    lambda: tf.zeros((0, self.classes), tf.float32))
        else:
            probabilities = tf.cast(self.model(x, training=False), tf.float32)
        outputs = {"probabilities": probabilities}
        if self.top_k:
            scores, ids = tf.math.top_k(probabilities, k=self.top_k)
            outputs.update(top_k_ids=ids, top_k_scores=scores)
            if self.class_names is not None:
                outputs["top_k_names"] = tf.gather(tf.constant(self.class_names), ids)
        return outputs


# ---------------------------------------------------------------- exporters


def _require_tensorflow_backend(what):
    dependencies.require_tensorflow(what, instead="rir-keras export --format keras needs no TensorFlow")


def export_saved_model(model, path, *, top_k=None, class_names=None, overwrite=False):
    """Write ``model`` as a TensorFlow SavedModel at ``path`` that takes raw images.

    Args:
        model: a single-input ``keras.Model`` classifying ``(batch, height, width, channels)`` images,
            with its preprocessing layer (built with ``include_preprocessing=True``): it takes raw
            images in [0, 255]. A model without one is refused (ValueError).
        path: the SavedModel folder to write (for TensorFlow Serving: ``<base>/<model name>/<version>``).
        top_k: also return the ``top_k`` best classes (``top_k_ids``, ``top_k_scores``, ``top_k_names``).
        class_names: names for ``top_k_names``: a sequence, or "cifar10"/"cifar100"; by default those of
            the dataset whose statistics the model's preprocessing layer holds, when its class count
            matches the model's (else no ``top_k_names``).
        overwrite: replace an existing ``path`` (atomically); otherwise an existing path is an error.

    Signatures: ``serving_default`` takes ``images`` as uint8, ``serving_float32`` as float32 in [0, 255];
    both return ``probabilities`` (and the top-k outputs). Returns ``path``.
    """
    _require_tensorflow_backend("a SavedModel export")
    import tensorflow as tf

    import keras

    graph = ServingGraph(model, top_k, class_names)
    archive = keras.export.ExportArchive()  # Keras' public SavedModel writer: each endpoint is a signature
    archive.track(model)
    for name, dtype in ((SERVING_SIGNATURE, tf.uint8), (FLOAT_SIGNATURE, tf.float32)):
        archive.add_endpoint(name, tf.function(graph, autograph=False), input_signature=graph.input_signature(dtype))
    with atomic_output(path, overwrite) as temporary:
        try:
            archive.write_out(temporary, verbose=False)
        except tf.errors.OpError as error:  # TensorFlow's own I/O errors (a full disk, a read-only place)
            raise OSError(f"cannot write the SavedModel {os.fspath(path)!r}: {error.message.splitlines()[0]}") from None
    return path


def _quiet_deprecations():
    """tf2onnx's graph conversion calls TensorFlow 1 APIs, which log a deprecation notice: not the user's concern."""
    try:
        from tensorflow.python.util import deprecation

        return deprecation.silence()
    except (ImportError, AttributeError):
        return contextlib.nullcontext()


def export_onnx(model, path, *, top_k=None, class_names=None, overwrite=False, opset=ONNX_OPSET):
    """Write ``model`` as an ONNX file at ``path`` (converted with tf2onnx) taking raw uint8 ``images``.

    Same arguments and outputs as ``export_saved_model`` (its ``serving_default`` signature). Returns ``path``.
    """
    _require_tensorflow_backend("an ONNX export")
    try:
        import tf2onnx
    except ImportError as error:
        raise dependencies.MissingDependency(f"an ONNX export needs tf2onnx, which this process cannot import "
                                             f"({error}): pip install 'rir_keras[test]'") from None
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    graph = ServingGraph(model, top_k, class_names)
    signature = graph.input_signature(tf.uint8)
    # onnxruntime checks the input's dtype and shape itself, so the graph needs no Assert (ONNX has none).
    function = tf.function(lambda images: graph(images, checks=False), input_signature=signature)
    concrete = function.get_concrete_function()
    # Frozen here, not by tf2onnx.convert.from_function: that one makes every tensor the function
    # captured (the preprocessing layer's statistics) an extra ONNX input. Frozen, the variables and
    # those captures are constants and `images` is the only input.
    frozen = convert_variables_to_constants_v2(concrete, lower_control_flow=False, aggressive_inlining=True)
    output_keys = {tensor.name: key for key, tensor in concrete.structured_outputs.items()}
    renames = {frozen.inputs[0].name: INPUT_NAME}
    renames.update({ours.name: output_keys[theirs.name] for theirs, ours in zip(concrete.outputs, frozen.outputs)})
    with atomic_output(path, overwrite, suffix=".onnx") as temporary, _quiet_deprecations():
        tf2onnx.convert.from_graph_def(
            frozen.graph.as_graph_def(add_shapes=True), name=model.name, input_names=[frozen.inputs[0].name],
            output_names=[tensor.name for tensor in frozen.outputs], opset=opset, tensors_to_rename=renames,
            output_path=temporary,
        )
    return path


def export_keras(model, path, *, overwrite=False):
    """Save ``model`` as a ``.keras`` file at ``path``, atomically: it takes float images in [0, 255]
    (its preprocessing layer normalizes them; a model without one is refused, as by every export).

    Loading it needs Keras and, for models with our layers, ``import rir_keras`` first. Returns ``path``.
    """
    if not os.fspath(path).endswith(".keras"):
        raise ValueError(f"a Keras model file's name must end with .keras. Received: path={os.fspath(path)!r}")
    image_shape(model)
    require_preprocessing(model)
    with atomic_output(path, overwrite, suffix=".keras") as temporary:
        model.save(temporary)
    return path


def export(model, path, format="saved_model", **kwargs):
    """Export ``model`` to ``path`` in ``format`` ("saved_model", "onnx" or "keras")."""
    exporters = {"saved_model": export_saved_model, "onnx": export_onnx, "keras": export_keras}
    if format not in exporters:
        raise ValueError(f"format must be one of {FORMATS}. Received: format={format!r}")
    return exporters[format](model, path, **kwargs)


# ---------------------------------------------------------------- loading


def load_serving_function(path, signature=SERVING_SIGNATURE):
    """A callable ``f(images) -> {output name: numpy array}`` for a signature of the SavedModel at ``path``.

    ``images`` is a numpy array or tensor of the signature's dtype (uint8 for ``serving_default``).
    Needs only TensorFlow (no Keras, no rir_keras).
    """
    try:
        import tensorflow as tf
    except ImportError as error:
        raise dependencies.MissingDependency(f"loading a SavedModel needs TensorFlow, which this process cannot "
                                             f"import ({error}): pip install 'rir_keras[tensorflow]'") from None

    if not os.path.isdir(os.fspath(path)):
        raise FileNotFoundError(f"SavedModel folder not found. Received: path={os.fspath(path)!r}")
    loaded = tf.saved_model.load(os.fspath(path))
    if signature not in loaded.signatures:
        raise ValueError(f"signature must be one of {sorted(loaded.signatures)}. Received: signature={signature!r}")
    function = loaded.signatures[signature]

    def serve(images):
        outputs = function(**{INPUT_NAME: tf.convert_to_tensor(images)})
        return {name: value.numpy() for name, value in outputs.items()}

    serve.loaded = loaded  # keeps the restored variables alive as long as the callable
    return serve
