"""Network families for estimated targets: which kind of network a layer list is (dense CNN
classifier, depthwise-heavy classifier, detector), and whether a device's calibration holds a
published figure of that kind, so that an estimate for an uncovered kind says so.

A roofline calibrated on one kind of network extrapolates to another with an error its
leave-one-out figures do not show (e.g. depthwise convolutions are memory- and launch-bound
where dense ones are compute-bound); ``uncovered_note`` is the line to print beside such an
estimate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from autocompress.hardware.lut import DeviceSpec
from autocompress.hardware.reference_nets import Layer, reference_net

FAMILIES = ("dense-cnn", "depthwise", "detector")
FAMILY_LABELS = {
    "dense-cnn": "dense-convolution classifier (ResNet/SqueezeNet-style)",
    "depthwise": "depthwise-heavy classifier (MobileNet/EfficientNet-style)",
    "detector": "detector without a classification head (YOLO-style)",
}
DEPTHWISE_SHARE = 0.2  # depthwise kernels among all convolution kernels from which a net is depthwise-heavy


def _is_classifier(layers: Sequence[Layer]) -> bool:
    """A global pooling (a pool with multiply-adds that reduces the map to one value per
    channel) or a fully connected layer among the last three layers: a classification head."""
    for layer in layers[-3:]:
        if layer.kind == "linear":
            return True
        if layer.kind == "pool" and layer.macs and layer.out_elems * 4 <= layer.in_elems:
            return True
    return False


def family_of(layers: Sequence[Layer]) -> str:
    """The family of a network given as its kernels (``reference_nets.Layer`` s, e.g. from
    :func:`autocompress.hardware.roofline.block_layers` or ``layer_estimate.roofline_layer``).

    ``detector``: no classification head at the end; ``depthwise``: a classifier whose
    convolution kernels are at least :data:`DEPTHWISE_SHARE` depthwise; ``dense-cnn``: other
    classifiers.
    """
    if not layers:
        raise ValueError("family_of needs at least one layer")
    if not _is_classifier(layers):
        return "detector"
    convs = [layer for layer in layers if layer.kind in ("conv", "dwconv")]
    dw = sum(layer.kind == "dwconv" for layer in convs)
    return "depthwise" if convs and dw / len(convs) >= DEPTHWISE_SHARE else "dense-cnn"


def network_family(network: str, input_size: int) -> str:
    """The family of a reference network (a key of ``reference_nets.BUILDERS``)."""
    return family_of(reference_net(network, input_size).layers)


def covered_families(device: DeviceSpec) -> dict[str, int]:
    """Families of the published figures the device's roofline was fitted to, with counts."""
    out: dict[str, int] = {}
    roof = device.roofline
    if roof is None or not roof.calibrated:
        return out
    for fig in roof.calibration:
        if fig.use_in_fit:
            fam = network_family(fig.network, fig.input_size)
            out[fam] = out.get(fam, 0) + 1
    return out


def uncovered_note(device: DeviceSpec, layers: Sequence[Layer]) -> str | None:
    """One line when ``device`` is estimated and its calibration has no figure of the family of
    ``layers`` (the estimate then extrapolates across network kinds); None when it has, or when
    the device is not estimated."""
    if device.source != "estimated":
        return None
    fam = family_of(layers)
    covered = covered_families(device)
    if fam in covered:
        return None
    have = ", ".join(sorted(covered)) or "none"
    return (f"ESTIMATE for a {FAMILY_LABELS[fam]} on {device.name}: its calibration holds no figure of "
            f"this family (families calibrated: {have}); expect a larger error than its error band")


def uncovered_blocks_note(device: DeviceSpec, blocks: Sequence[Any]) -> str | None:
    """:func:`uncovered_note` for a network of our fused blocks (``arch.BlockSpec`` s) on an
    estimated device with a roofline; None elsewhere."""
    if device.source != "estimated" or device.roofline is None:
        return None
    from autocompress.hardware.roofline import block_layers

    return uncovered_note(device, [layer for b in blocks for layer in block_layers(b)])


def held_out_line(device: DeviceSpec) -> str:
    """How well an estimated device's model predicts held-out published figures, and which
    families its calibration lacks: e.g. ``LOFO 70% within +-25% (median 9.2%, n=23); LOSO 100%
    ...; no figure of: depthwise``. Empty for devices that are not estimated."""
    roof = device.roofline
    if device.source != "estimated" or roof is None:
        return ""
    if not roof.calibrated:
        return "uncalibrated: no held-out error"
    parts = []
    for label, field in (("LOFO", "lofo_error_pct"), ("LOSO", "loso_error_pct")):
        errs = [abs(getattr(f, field)) for f in roof.calibration if getattr(f, field) is not None]
        if errs:
            errs.sort()
            mid = len(errs) // 2
            median = errs[mid] if len(errs) % 2 else (errs[mid - 1] + errs[mid]) / 2
            within = sum(e <= 25 for e in errs) / len(errs)
            parts.append(f"{label} {within:.0%} within +-25% (median {median:.1f}%, n={len(errs)})")
        else:
            parts.append(f"{label} n/a (one {'family' if label == 'LOFO' else 'source'})")
    missing = [f for f in FAMILIES if f not in covered_families(device)]
    if missing:
        parts.append("no figure of: " + ", ".join(missing))
    return "; ".join(parts)
