"""What the benchmarks time: factories ``(**kwargs) -> (step, info)``.

``step()`` runs one unit of work to completion (a training step, a forward pass, a batch of
data); ``info`` is a JSON-able dict about it (parameter count, which API was used...). Each
factory imports its framework when called, so one worker process holds one framework
(see ``worker.py``): Keras reads its backend once, at import.
"""
import os
import tempfile
import types

import numpy as np

BATCH = 128
IMAGE_SHAPE = (32, 32, 3)
CLASSES = 10


def synthetic_batch(batch_size, shape=IMAGE_SHAPE, channels_first=False, seed=0):
    """Random normal images and random labels: enough for throughput, not for accuracy."""
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((batch_size, *shape), dtype=np.float32)
    if channels_first:
        images = np.ascontiguousarray(images.transpose(0, 3, 1, 2))
    return images, rng.integers(0, CLASSES, size=batch_size).astype(np.int32)


def _keras_model(model, policy):
    import keras

    from rir_keras.applications import registry

    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(policy)
    try:
        return registry.build(model)
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _compiled_keras_model(model, batch_size, jit_compile, policy):
    import keras

    from rir_keras.training import TrainConfig, compile_model

    keras.utils.set_random_seed(0)
    built = _keras_model(model, policy)
    compile_model(built, TrainConfig(batch_size=batch_size, jit_compile=jit_compile), steps_per_epoch=1000)
    return built


def forward_macs(model):
    """Multiply-adds of one image's forward pass: every convolution and dense kernel (a generalized
    layer's kernel covers its four quadrants, so it counts as one convolution of that kernel)."""
    total = 0
    for layer in model.layers:
        kernel = getattr(layer, "kernel", None)
        if kernel is None:
            continue
        size = int(np.prod(kernel.shape))
        spatial = layer.output.shape[1:-1] if len(kernel.shape) == 4 else ()
        total += size * int(np.prod(spatial))
    return total


def matmul(size=4096, dtype="float32"):
    """One ``size`` x ``size`` matrix product in TensorFlow on this process's threads: the FLOP/s the
    CPU attains at best (``2 size^3`` per step), the limit the models' throughput is compared with."""
    import tensorflow as tf

    generator = tf.random.Generator.from_seed(0)
    a, b = (tf.cast(generator.normal((size, size)), dtype) for _ in range(2))
    product = tf.function(lambda: tf.reduce_sum(tf.cast(tf.linalg.matmul(a, b)[:1], tf.float32)))
    step = lambda: product().numpy()  # noqa: E731 (numpy out: synchronous)
    step()
    return step, {"flop": 2 * size ** 3, "dtype": dtype, "size": size}


KERNELS = ("default", "keras-batch-norm", "float32-batch-norm", "slices", "full-mask", "no-mask")


def _slice_and_pad(x, channels):
    from rir_keras.layers import fit_channels

    return fit_channels(x[..., :channels], x.shape[-1])


def _slice_subsample(x, strides):
    return x[:, :: strides[0], :: strides[1]]


def _full_mask(x, channels):
    """The shortcut's 0/1 channel mask at the full H x W x C shape of ``x`` (a product whose broadcast
    runs over the batch alone), where the package's mask has shape (C,)."""
    import keras
    import numpy as np

    if channels == x.shape[-1]:
        return x
    mask = np.broadcast_to(np.arange(x.shape[-1]) < channels, x.shape[1:])
    return x * keras.ops.convert_to_tensor(mask, dtype=x.dtype)


def _no_mask(x, channels):
    """No mask at all: a different network (the transient channels join the shortcut); timing only,
    the bound on what masking costs."""
    return x


def _trace_with(kernels, model, step):
    """Trace ``step`` (the model's first training step) with one of the package's speed-ups undone:
    ``"keras-batch-norm"``, Keras' own BatchNormalization computation instead of the fused kernel;
    ``"float32-batch-norm"``, the fused kernel on inputs cast to float32 also under mixed precision;
    ``"slices"``, the shortcuts' channel mask and subsampling as slices ``x[..., :c]`` (padded back with
    zeros) and ``x[:, ::2, ::2]``; ``"full-mask"``, the mask at its full H x W x C shape;
    ``"no-mask"``, no mask (a different network: the bound on what the mask costs).
    The traced function keeps the kernels it was traced with."""
    import keras

    from rir_keras import layers

    if kernels not in KERNELS:
        raise ValueError(f"kernels must be one of {KERNELS}. Received: kernels={kernels!r}")
    for layer in model.layers if kernels.endswith("batch-norm") else ():
        for norm in (layer, getattr(layer, "batch_norm", None)):
            if not isinstance(norm, layers.BatchNormalization):
                continue
            if kernels == "keras-batch-norm":
                norm.call = types.MethodType(keras.layers.BatchNormalization.call, norm)
            else:  # the fused kernel on inputs cast to float32, its outputs cast back (as before issue 33)
                fused = norm.call
                norm.call = lambda inputs, training=None, mask=None, fused=fused: fused(
                    keras.ops.cast(inputs, "float32"), training=training, mask=mask)
    saved = layers.zero_channels_after, layers.subsample
    if kernels == "slices":
        layers.zero_channels_after, layers.subsample = _slice_and_pad, _slice_subsample
    elif kernels in ("full-mask", "no-mask"):
        layers.zero_channels_after = _full_mask if kernels == "full-mask" else _no_mask
    try:
        step()
    finally:
        layers.zero_channels_after, layers.subsample = saved


def keras_train(model="rir32", batch_size=BATCH, jit_compile="auto", policy="float32", kernels="default"):
    """One ``train_on_batch`` of a registry model compiled by ``rir_keras.training.compile_model``
    (``kernels``: the package's default kernels, or one speed-up undone: see ``_trace_with``)."""
    import keras

    built = _compiled_keras_model(model, batch_size, jit_compile, policy)
    images, labels = synthetic_batch(batch_size)
    step = lambda: built.train_on_batch(images, labels)  # noqa: E731 (returns numpy: synchronous)
    _trace_with(kernels, built, step)
    info = {"backend": keras.backend.backend(), "parameters": built.count_params(),
            "jit_compile": bool(built.jit_compile), "policy": policy, "forward_macs": forward_macs(built),
            "kernels": kernels}
    return step, info


def keras_predict(model="rir32", batch_size=BATCH, jit_compile="auto", policy="float32"):
    """One ``predict_on_batch`` (inference) of a registry model."""
    built = _compiled_keras_model(model, batch_size, jit_compile, policy)
    images, _ = synthetic_batch(batch_size)
    return (lambda: built.predict_on_batch(images)), {"jit_compile": bool(built.jit_compile)}


def torch_train(batch_size=BATCH, channels_last=False, compile=False, bfloat16=False):
    """One SGD (momentum 0.9) step of the plain-PyTorch ResNet-32 on a fixed batch: eager or
    ``torch.compile``d (forward and backward), float32 or under bfloat16 autocast."""
    import torch

    import torch_resnet32

    torch.manual_seed(0)
    model = torch_resnet32.resnet32(classes=CLASSES).train()
    images, labels = synthetic_batch(batch_size, channels_first=True)
    images, labels = torch.from_numpy(images), torch.from_numpy(labels).long()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()

    def forward_backward():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16):
            loss = loss_fn(model(images), labels)
        loss.backward()
        return loss

    if compile:
        forward_backward = torch.compile(forward_backward)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = forward_backward()
        optimizer.step()
        return loss.item()

    step()  # compiles, where compiled
    trainable, counted = torch_resnet32.parameter_count(model)
    return step, {"parameters": counted, "trainable_parameters": trainable, "threads": torch.get_num_threads(),
                  "torch": torch.__version__}


_KEEP = []  # exported folders live as long as the worker


def saved_model_predict(model="rir32", batch_size=1):
    """One call of an exported SavedModel's serving function, loaded back in this process; the
    result comes back as numpy."""
    folder = tempfile.TemporaryDirectory(prefix=f"bench-{model}-")
    _KEEP.append(folder)
    from rir_keras.export import export_saved_model, load_serving_function

    path = os.path.join(folder.name, "saved_model")
    export_saved_model(_keras_model(model, "float32"), path)
    serve = load_serving_function(path)
    api = "`rir_keras.export.export_saved_model` + `load_serving_function`, uint8 images (normalization in the graph)"
    images = np.random.default_rng(0).integers(0, 256, size=(batch_size, *IMAGE_SHAPE)).astype(np.uint8)
    step = lambda: serve(images)  # noqa: E731 (numpy out: synchronous)
    step()
    return step, {"api": api}


def layer_step(layer="plain", size=32, channels=16, batch_size=BATCH, mode="forward", jit_compile=False):
    """One compiled forward pass or SGD training step of one layer, ``channels -> channels`` at
    ``size x size``: ``layer="plain"`` is Conv2D + BatchNormalization + ReLU, ``"init"``,
    ``"constant"`` or ``"shortcut"`` a ``RiRConv2D`` with that identity placement."""
    import keras
    import tensorflow as tf

    from rir_keras.layers import RiRConv2D

    keras.utils.set_random_seed(0)
    if layer == "plain":
        body = [keras.layers.Conv2D(channels, 3, padding="same", use_bias=False),
                keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5), keras.layers.ReLU()]
    else:
        body = [RiRConv2D(channels, 3, identity=layer)]
    model = keras.Sequential([keras.Input((size, size, channels)), *body])
    images = tf.constant(np.random.default_rng(0).standard_normal((batch_size, size, size, channels), dtype=np.float32))
    if mode == "forward":
        function = tf.function(lambda: model(images, training=False), jit_compile=jit_compile)
    else:
        optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
        optimizer.build(model.trainable_variables)

        def train():
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(model(images, training=True)))
            optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)

        function = tf.function(train, jit_compile=jit_compile)
    function()
    graph = function.get_concrete_function().graph
    types = [op.type for op in graph.get_operations()]
    return function, {"parameters": model.count_params(), "graph_ops": len(types),
                      "convolutions": sum(t.startswith("Conv2D") for t in types)}


def array_batches(batch_size=BATCH, images=50000, augment=True):
    """Produce one training batch with ``rir_keras.data.ArrayBatches`` as ``rir_keras.training``
    configures it (shuffle, pad-crop-flip, float32; the model normalizes), from uint8 images in memory."""
    from rir_keras.data import ArrayBatches

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(images, *IMAGE_SHAPE), dtype=np.uint8)
    labels = rng.integers(0, CLASSES, size=images)
    data = ArrayBatches(pixels, labels, batch_size=batch_size, shuffle=True, augment=augment, seed=0)
    state = {"index": 0}

    def step():
        data[state["index"] % len(data)]
        state["index"] += 1

    return step, {"images": images}


def _op_times(trace_dir):
    """Seconds per TensorFlow op type in a profiler trace, summed over the executor's threads."""
    import glob

    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    totals = {}
    for path in glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True):
        space = xplane_pb2.XSpace()
        with open(path, "rb") as handle:
            space.ParseFromString(handle.read())
        for plane in space.planes:
            for line in plane.lines:
                if not line.name.startswith("tf_Compute"):
                    continue
                for event in line.events:
                    name = plane.event_metadata[event.metadata_id].name
                    if ":" in name and "::" not in name:  # "scope/op_name:OpType": one op ran
                        op_type = name.rsplit(":", 1)[1]
                        totals[op_type] = totals.get(op_type, 0.0) + event.duration_ps * 1e-12
    return totals


def op_profile(model="rir32", batch_size=BATCH, steps=3, policy="float32"):
    """Where a training step's time goes: TensorFlow profiler trace of ``steps`` ``train_on_batch``
    calls (XLA off, the default path, in Keras dtype ``policy``), as seconds per op type. Its step
    does nothing."""
    import tensorflow as tf

    step, _ = keras_train(model, batch_size, jit_compile=False, policy=policy)
    with tempfile.TemporaryDirectory(prefix="bench-trace-") as trace_dir:
        tf.profiler.experimental.start(trace_dir)
        for _ in range(steps):
            step()
        tf.profiler.experimental.stop()
        totals = _op_times(trace_dir)
    return (lambda: None), {"op_seconds": totals, "steps": steps}


FACTORIES = {f.__name__: f for f in (keras_train, keras_predict, torch_train, saved_model_predict, layer_step,
                                      array_batches, op_profile, matmul)}
