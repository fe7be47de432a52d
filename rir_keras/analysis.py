"""How a trained network uses its two streams: kernel quadrant norms and stream ablation.

Works on any functional ``keras.Model`` holding generalized residual layers
(``rir_keras.layers.RiRConv2D``), nested functional models included.

- ``quadrant_norms(layer)``: Frobenius norms of the four quadrants of the kernel that computes
  the layer (``effective_kernel()``, whatever the identity placement): residual→residual with and
  without the identity it carries, residual→transient, transient→residual, transient→transient.
- ``ablation_study(model, data)``: accuracy when the residual or the transient stream is zeroed at
  one generalized layer at a time, and at all of them at once (the paper's Figure 3).

Where a stream is zeroed: on the layer's OUTPUT, i.e. after its batch normalization and
activation, before anything else reads it. For the last layer of an RiR block (no activation of
its own) that is before the block's outer-shortcut ``Add``: zeroing the residual stream there
removes the layer's contribution to the residual stream while the block's shortcut still carries
the block input; zeroing the transient stream there leaves the block output's transient channels
at zero (the shortcut carries nothing on them).

``analyze`` combines both into one report; ``write_report`` writes it as JSON, a markdown table
and two PNG plots.
"""
import os

import keras
import numpy as np
from keras import ops

from rir_keras import atomic, markdown, training
from rir_keras.initializers import PACKAGE
from rir_keras.layers import RiRConv2D, check_choice

STREAMS = ("residual", "transient")
QUADRANTS = ("rr_with_identity", "rr_without_identity", "rm", "mr", "mm")
QUADRANT_LABELS = {
    "rr_with_identity": "residual→residual, with identity",
    "rr_without_identity": "residual→residual, without identity",
    "rm": "residual→transient",
    "mr": "transient→residual",
    "mm": "transient→transient",
}
QUADRANT_COLUMNS = {"rr_with_identity": "‖W_rr+I‖", "rr_without_identity": "‖W_rr‖", "rm": "‖W_rm‖",
                    "mr": "‖W_mr‖", "mm": "‖W_mm‖"}


def check_stream(stream):
    return check_choice("stream", stream, STREAMS)


def _check_model(model):
    if not isinstance(model, keras.Model):
        raise ValueError(f"model must be a keras.Model. Received: model={model!r}")


def generalized_layers(model):
    """The ``RiRConv2D`` layers of ``model`` in depth order (nested models included, each once).

    Raises ValueError naming the model when it has none (a plain CNN or ResNet has no streams).
    """
    _check_model(model)
    found, seen = [], set()

    def walk(container):
        for layer in container.layers:
            if isinstance(layer, RiRConv2D) and id(layer) not in seen:
                seen.add(id(layer))
                found.append(layer)
            elif isinstance(layer, keras.Model):
                walk(layer)

    walk(model)
    if not found:
        raise ValueError(
            f"model {model.name!r} has no generalized residual layers (rir_keras.layers.RiRConv2D), so it has "
            f"no residual and transient streams to analyze. Received: model={model.name!r}"
        )
    return found


def _residual_quadrant(layer):
    """``(kernel, rr, identity)`` of a built ``RiRConv2D``: the effective kernel (float64), its
    residual→residual quadrant, and the identity's kernel in that quadrant's shape."""
    if not isinstance(layer, RiRConv2D) or not layer.built:
        raise ValueError(f"layer must be a built rir_keras.layers.RiRConv2D. Received: layer={layer!r}")
    kernel = ops.convert_to_numpy(ops.cast(layer.effective_kernel(), "float32")).astype("float64")
    r_in, r_out = layer.residual_in, layer.residual_out
    return kernel, kernel[:, :, :r_in, :r_out], layer.identity_kernel()[:, :, :r_in, :r_out]


def quadrant_norms(layer):
    """Frobenius norms of the quadrants of the kernel that computes ``layer`` (a built ``RiRConv2D``).

    ``rr_with_identity`` is the residual→residual quadrant of ``effective_kernel()`` (the identity,
    or projection, the layer carries included); ``rr_without_identity`` is that quadrant minus the
    identity of ``identity_kernel()``. ``rm`` is residual→transient, ``mr`` transient→residual,
    ``mm`` transient→transient. An empty quadrant (a stream with no channels) has norm 0.
    """
    kernel, rr, identity = _residual_quadrant(layer)
    r_in, r_out = layer.residual_in, layer.residual_out
    norms = {
        "rr_with_identity": np.linalg.norm(rr),
        "rr_without_identity": np.linalg.norm(rr - identity),
        "rm": np.linalg.norm(kernel[:, :, :r_in, r_out:]),
        "mr": np.linalg.norm(kernel[:, :, r_in:, :r_out]),
        "mm": np.linalg.norm(kernel[:, :, r_in:, r_out:]),
    }
    return {name: float(value) for name, value in norms.items()}


def identity_taps(layer):
    """How much of an identity the residual→residual quadrant of ``layer``'s kernel still holds.

    ``identity_tap`` is the mean weight at the identity's taps (the centre taps from each residual
    channel to itself): ⟨W_rr + I, I⟩ / ‖I‖², 1 for a fresh kernel whose ``W_rr`` is zero.
    ``identity_tap_ratio`` is that over the quadrant's root-mean-square weight: the batch
    normalization after the convolution makes the kernel's scale irrelevant, so this ratio, not the
    tap, says whether the identity still stands out (3√r for a 3x3 layer of r residual channels
    whose ``W_rr`` is zero, about 2.1√r in a fresh He-normal layer of r residual and r transient
    channels, near 1 where it is no larger than any other weight). None where there is no identity.
    """
    _, rr, identity = _residual_quadrant(layer)
    taps = float(np.sum(identity * identity))
    if not taps:
        return {"identity_tap": None, "identity_tap_ratio": None}
    tap = float(np.sum(rr * identity)) / taps
    rms = float(np.sqrt(np.mean(rr * rr)))
    return {"identity_tap": tap, "identity_tap_ratio": tap / rms if rms else None}


def layer_summary(layer):
    """Name, placement, kernel size and stream channel counts of a built ``RiRConv2D``."""
    return {
        "name": layer.name,
        "identity": layer.identity,
        "kernel_size": list(layer.kernel_size),
        "residual_in": int(layer.residual_in),
        "transient_in": int(layer.transient_in),
        "residual_out": int(layer.residual_out),
        "transient_out": int(layer.transient_out),
    }


def quadrant_counts(summary):
    """Number of weights in each quadrant of a layer described by ``layer_summary``."""
    taps = summary["kernel_size"][0] * summary["kernel_size"][1]
    r_in, m_in, r_out, m_out = (summary[k] for k in ("residual_in", "transient_in", "residual_out", "transient_out"))
    rr = taps * r_in * r_out
    return {"rr_with_identity": rr, "rr_without_identity": rr, "rm": taps * r_in * m_out,
            "mr": taps * m_in * r_out, "mm": taps * m_in * m_out}


def stream_norms(model):
    """One dict per generalized layer of ``model``, in depth order: ``layer_summary``, ``quadrant_norms``
    and ``identity_taps``."""
    return [{"depth": depth, **layer_summary(layer), **quadrant_norms(layer), **identity_taps(layer)}
            for depth, layer in enumerate(generalized_layers(model), start=1)]


# --------------------------------------------------------------------------- ablation


@keras.saving.register_keras_serializable(package=PACKAGE)
class StreamMask(keras.layers.Layer):
    """Multiplies each channel by a non-trainable ``keep`` weight (1 keeps it, 0 zeroes it).

    One compiled model serves every ablation: ``keep`` is a variable, so changing it needs no
    retracing. ``residual_channels`` says which channels (the first ones) form the residual stream.
    """

    def __init__(self, residual_channels, **kwargs):
        super().__init__(**kwargs)
        self.residual_channels = int(residual_channels)

    def build(self, input_shape):
        self.keep = self.add_weight(name="keep", shape=(input_shape[-1],), initializer="ones", trainable=False)

    def call(self, inputs):
        return inputs * ops.cast(self.keep, inputs.dtype)

    def stream_slice(self, stream):
        check_stream(stream)
        return slice(0, self.residual_channels) if stream == "residual" else slice(self.residual_channels, None)

    def set_zeroed(self, streams=()):
        """Zero the channels of each stream in ``streams``; keep the others."""
        keep = np.ones(self.keep.shape, dtype="float32")
        for stream in streams:
            keep[self.stream_slice(stream)] = 0.0
        self.keep.assign(keep)

    def get_config(self):
        return {**super().get_config(), "residual_channels": self.residual_channels}


class MaskedModel:
    """A clone of ``model`` sharing its layers and weights, with a ``StreamMask`` after every output
    of each generalized layer. ``zero(stream, layers)`` sets which stream is zeroed where.

    Attributes:
        model: the clone (a ``keras.Model``).
        layers: the original model's generalized layers, in depth order.
        masks: ``{layer name: [StreamMask, ...]}`` (one mask per call of the layer).
    """

    def __init__(self, model):
        self.layers = generalized_layers(model)
        wanted = {id(layer) for layer in self.layers}
        self.masks = {layer.name: [] for layer in self.layers}

        def call_function(layer, *args, **kwargs):
            outputs = layer(*args, **kwargs)
            if id(layer) not in wanted:
                return outputs
            mask = StreamMask(layer.residual_out, dtype=layer.dtype_policy,
                              name=f"{layer.name}_stream_mask_{len(self.masks[layer.name]) + 1}")
            self.masks[layer.name].append(mask)
            return mask(outputs)

        try:
            self.model = keras.models.clone_model(model, clone_function=lambda layer: layer,
                                                  call_function=call_function, recursive=True)
        except Exception as error:  # subclassed or Sequential models cannot take masks after a layer
            raise ValueError(
                f"stream ablation needs a functional model; model {model.name!r} could not be cloned with "
                f"masks ({error}). Received: model={model.name!r}"
            ) from error

    def zero(self, stream=None, layers=()):
        """Zero ``stream`` at the outputs of ``layers`` (names or layers); every other mask keeps all."""
        if stream is not None:
            check_stream(stream)
        names = {getattr(layer, "name", layer) for layer in layers}
        unknown = names - set(self.masks)
        if unknown:
            raise ValueError(f"layers must name generalized layers of the model ({', '.join(self.masks)}). "
                             f"Received: layers={sorted(unknown)!r}")
        for name, masks in self.masks.items():
            for mask in masks:
                mask.set_zeroed((stream,) if name in names and stream is not None else ())
        return self


def ablated_model(model, stream, layers=None):
    """A model computing ``model`` with ``stream`` zeroed at the outputs of ``layers`` (names or
    ``RiRConv2D`` layers; default: every generalized layer). Shares ``model``'s weights."""
    masked = MaskedModel(model)
    return masked.zero(stream, masked.layers if layers is None else layers).model


def _has_channels(layer, stream):
    return (layer.residual_out if stream == "residual" else layer.transient_out) > 0


def ablation_study(model, data, batch_size=256):
    """Accuracy of ``model`` on ``data`` (a ``rir_keras.data.ImageData``) with each stream zeroed.

    ``model`` gets the raw images in [0, 255] (float32): it normalizes them itself (its preprocessing
    layer), as the models of ``rir_keras.applications`` do.

    Returns ``{"images", "accuracy", "all_layers": {stream: accuracy}, "layers": [{"name",
    "residual": accuracy, "transient": accuracy}, ...]}`` with layers in depth order. A stream with
    no channels at a layer gets ``None`` there (nothing to zero).
    """
    masked = MaskedModel(model)
    training.compile_for_evaluation(masked.model)

    def accuracy(stream=None, layers=()):
        masked.zero(stream, layers)
        return float(training.evaluate(masked.model, data, batch_size)["accuracy"])

    result = {"images": len(data), "accuracy": accuracy(), "all_layers": {}, "layers": []}
    for stream in STREAMS:
        present = [layer for layer in masked.layers if _has_channels(layer, stream)]
        result["all_layers"][stream] = accuracy(stream, present) if present else None
    for layer in masked.layers:
        result["layers"].append({"name": layer.name, **{
            stream: accuracy(stream, [layer]) if _has_channels(layer, stream) else None for stream in STREAMS
        }})
    masked.zero()
    return result


def analyze(model, data=None, batch_size=256):
    """Quadrant norms of every generalized layer and, given ``data``, the stream ablation study.

    Returns a JSON-serializable report: ``{"model", "parameters", "layers": [...], "ablation"}``;
    each layer row holds ``stream_norms``'s fields and, with data, ``accuracy_without_residual``
    and ``accuracy_without_transient``.
    """
    layers = stream_norms(model)
    report = {"model": model.name, "parameters": int(model.count_params()), "layers": layers, "ablation": None}
    if data is not None:
        ablation = ablation_study(model, data, batch_size=batch_size)
        for row, ablated in zip(layers, ablation["layers"]):
            row.update({f"accuracy_without_{stream}": ablated[stream] for stream in STREAMS})
        report["ablation"] = {key: ablation[key] for key in ("images", "accuracy", "all_layers")}
        report["ablation"]["classes"] = int(data.num_classes)
    return report


# --------------------------------------------------------------------------- report files


def _cell(value, percent=False):
    return markdown.cell(None if value is None else 100 * value if percent else value,
                          "{:.2f}" if percent else "{:.3f}", missing="–")


def report_markdown(report):
    """The report as markdown: one row per generalized layer; accuracies in percent."""
    ablation = report.get("ablation")
    header = ["depth", "layer", "channels r+m in → out", *(QUADRANT_COLUMNS[q] for q in QUADRANTS),
              "identity tap", "identity tap ÷ RMS weight"]
    if ablation:
        header += ["acc. residual zeroed (%)", "acc. transient zeroed (%)"]
    lines = [f"### {report['model']}: streams of {len(report['layers'])} generalized residual layers", ""]
    if ablation:
        lines += [f"Accuracy on {ablation['images']} images: {_cell(ablation['accuracy'], True)}% intact; "
                  f"{_cell(ablation['all_layers']['residual'], True)}% with the residual stream zeroed at every layer; "
                  f"{_cell(ablation['all_layers']['transient'], True)}% with the transient stream zeroed at every layer.",
                  ""]
    rows = []
    for row in report["layers"]:
        cells = [row["depth"], f"`{row['name']}`",
                 f"{row['residual_in']}+{row['transient_in']} → {row['residual_out']}+{row['transient_out']}",
                 *(_cell(row[q]) for q in QUADRANTS), _cell(row.get("identity_tap")),
                 _cell(row.get("identity_tap_ratio"))]
        if ablation:
            cells += [_cell(row.get(f"accuracy_without_{s}"), True) for s in STREAMS]
        rows.append(cells)
    lines.append(markdown.table(header, rows, align="---:"))
    return "\n".join(lines) + "\n"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    return pyplot


def plot_norms(report, path):
    """Quadrant norms by depth: Frobenius norm, and root mean square weight (norm / √weights)."""
    pyplot = _pyplot()
    depths = [row["depth"] for row in report["layers"]]
    figure, axes = pyplot.subplots(1, 2, figsize=(13, 4.5))
    for axis, rms in zip(axes, (False, True)):
        for quadrant in QUADRANTS:
            values = []
            for row in report["layers"]:
                count = quadrant_counts(row)[quadrant]
                values.append(row[quadrant] / np.sqrt(count) if rms and count else (np.nan if rms else row[quadrant]))
            style = "--" if quadrant == "rr_without_identity" else "-"
            axis.plot(depths, values, style, marker="o", markersize=3, label=QUADRANT_LABELS[quadrant])
        axis.set_xlabel("depth (generalized residual layer)")
        axis.set_ylabel("RMS weight (norm / √weights)" if rms else "Frobenius norm")
        axis.set_title("per weight" if rms else "whole quadrant")
        axis.xaxis.get_major_locator().set_params(integer=True)
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.suptitle(f"{report['model']}: kernel quadrant norms by depth")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)


def plot_ablation(report, path):
    """Accuracy with each stream zeroed at one layer, by depth; lines for intact, all layers, chance."""
    ablation = report["ablation"]
    pyplot = _pyplot()
    depths = [row["depth"] for row in report["layers"]]
    figure, axis = pyplot.subplots(figsize=(11, 4.5))
    colors = {"residual": "tab:blue", "transient": "tab:orange"}
    for stream in STREAMS:
        values = [np.nan if row[f"accuracy_without_{stream}"] is None else 100 * row[f"accuracy_without_{stream}"]
                  for row in report["layers"]]
        axis.plot(depths, values, marker="o", color=colors[stream], label=f"{stream} stream zeroed at this layer")
        everywhere = ablation["all_layers"][stream]
        if everywhere is not None:
            axis.axhline(100 * everywhere, color=colors[stream], linestyle=":",
                         label=f"{stream} stream zeroed at every layer")
    axis.axhline(100 * ablation["accuracy"], color="black", label="intact network")
    axis.axhline(100 / ablation["classes"], color="gray", linestyle="--", label="chance")
    axis.set_xlabel("depth (generalized residual layer)")
    axis.set_ylabel("test accuracy (%)")
    axis.set_ylim(0, 100)
    axis.grid(alpha=0.3)
    axis.xaxis.get_major_locator().set_params(integer=True)
    axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    axis.set_title(f"{report['model']}: accuracy after zeroing a stream ({ablation['images']} images)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)


def write_report(report, output_dir):
    """Write ``analysis.json``, ``analysis.md``, ``norms.png`` and (with ablation) ``ablation.png``
    into ``output_dir``; return their paths."""
    os.makedirs(output_dir, exist_ok=True)
    paths = {name: os.path.join(output_dir, name) for name in ("analysis.json", "analysis.md", "norms.png")}
    atomic.write_json(report, paths["analysis.json"])
    atomic.write_text(report_markdown(report), paths["analysis.md"])
    plot_norms(report, paths["norms.png"])
    if report.get("ablation"):
        paths["ablation.png"] = os.path.join(output_dir, "ablation.png")
        plot_ablation(report, paths["ablation.png"])
    return paths
