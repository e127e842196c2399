"""The parameters of ``segmentation_node``: one table, and how it is declared, checked, applied.

:data:`PARAMETERS` is the only place a parameter is defined; ``config/segment.yaml`` and the
README's parameter table mirror it (``test/test_node_parameters.py`` holds them to it).
Read-only parameters are fixed at start; the others are *live* (``ros2 param set``) and are
held in a plain ``dict`` (:func:`live_values`) that :func:`apply_parameters` updates.

Imports ROS message packages (``rcl_interfaces``) but not rclpy: the table and the checks can
be used and tested without a ROS context.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
    SetParametersResult,
)


@dataclass(frozen=True)
class Param:
    """One node parameter: default, description, whether it needs a restart, its range."""

    default: object
    description: str
    read_only: bool = False
    range: tuple | None = None  # (from, to) for int / float parameters


# The one place where the node's parameters are defined; config/segment.yaml mirrors it.
PARAMETERS: dict[str, Param] = {
    'model': Param(
        'espnet-camvid',
        'Zoo model name (espnet-camvid, espnetv2-cityscapes, '
        'espnet-cityscapes, or the shipped adapted espnetv2-camvid-tsl; vsda models '
        'lists them) or path to a vsda checkpoint file.',
        True,
    ),
    'device': Param('cpu', 'Torch device: cpu, cuda, cuda:N or auto.', True),
    'backend': Param(
        'auto',
        'Inference backend: auto (default: the fastest installed backend '
        'whose accuracy check against torch passed on real frames, recorded when '
        'its graphs were built; torch when none passed; the choice and why are '
        'logged at start), torch (the reference), openvino (CPU), onnxruntime '
        '(CPU EP; CUDA/TensorRT EPs on cuda). Compiled graphs are cached in '
        'VSDA_CACHE_DIR/compiled: the first start exports and checks them '
        '(30 s to 5 min once per model and size; vsda prepare does it '
        'ahead), later starts load them.',
        True,
    ),
    'precision': Param(
        'auto',
        'Inference precision: auto (default: chosen with the backend, '
        'the fastest whose recorded accuracy check passed, else fp32), fp32, '
        'bf16 (openvino), int8 (a model exported with vsda export --precision '
        'int8 --calibrate).',
        True,
    ),
    'input_size': Param(
        '',
        "Network input size WIDTHxHEIGHT (e.g. '480x360'); '' = the "
        "model's native size. Outputs are always at the input image "
        'resolution.',
        True,
    ),
    'strategy': Param(
        'per_frame',
        'Temporal strategy: per_frame (full network on every '
        'processed frame), fusion (adjacent-frame score fusion block, no optical '
        'flow) or keyframe (keyframe feature propagation by optical flow; '
        'DMNet/CFNet correction with keyframe_correction).',
        True,
    ),
    'temporal_weights': Param(
        '',
        'vsda checkpoint(s) holding trained temporal modules '
        "(fusion block, DMNet, CFNet), comma-separated; '' = the "
        "model's own: shipped with the package for espnet-camvid, "
        'espnetv2-cityscapes and espnetv2-camvid-tsl, or inside a model '
        "checkpoint; 'none' = no modules (fusion = per_frame, "
        'keyframe = plain flow warping).',
        True,
    ),
    'image_topics': Param(
        ['image', 'image/compressed'],
        'Camera topics, one strategy state per camera; a name ending in '
        '/compressed is a CompressedImage topic (X and X/compressed are one '
        "camera). Outputs go to each camera's parent namespace.",
        True,
    ),
    'transport': Param(
        'auto',
        'How a camera listed as X or X/compressed is received (the '
        'image_transport convention: one camera, one transport at a time): raw '
        '(X), compressed (X/compressed), or auto (raw while a raw publisher is '
        'matched, else compressed; re-decided as publishers come and go, frames '
        'of the other transport ignored).',
        True,
    ),
    'camera_priorities': Param(
        '',
        "Scheduling weights 'CAMERA=WEIGHT, ...' (a camera named "
        'by its namespace or a listed topic; others 1.0): the worker '
        'is shared fairly by time, a camera of weight 2 gets twice the '
        "share of weight 1 when both are busy. '' = all equal.",
        True,
    ),
    'max_camera_rate_hz': Param(
        0.0,
        "Cap on each camera's output rate in Hz (0 = none); the "
        'worker time a capped camera leaves goes to the others.',
        False,
        (0.0, 1000.0),
    ),
    'keyframe_interval': Param(
        5, 'keyframe strategy: run the full network every N-th frame.', False, (1, 100)
    ),
    'keyframe_correction': Param(
        False,
        'keyframe strategy: correct the flow-warped features '
        'with DMNet/CFNet between keyframes (false = plain flow '
        'warping, the default: the trained correction did not beat it '
        'by the 1.0 mIoU it must earn at twice the cost; see '
        'docs/design/temporal.md).',
        True,
    ),
    'distortion_threshold': Param(
        0.0,
        'keyframe strategy: also start a keyframe when the mean '
        'predicted distortion exceeds this (0 = off; needs DMNet).',
        False,
        (0.0, 1.0),
    ),
    'async_keyframes': Param(
        False,
        'keyframe strategy: run the key network in a background '
        'thread; frames keep being propagated from the previous one while '
        'a key is computed (kind pending) and re-anchor on it when it lands '
        '(reanchored), so a keyframe never stalls the output. Use with '
        'num_threads 1 on two cores.',
        True,
    ),
    'flow_downscale': Param(
        1,
        'keyframe strategy: optical flow on the frames at the feature '
        'resolution divided by this (1 = full; 2 saves most of the flow '
        'time for about -1 mIoU).',
        True,
        (1, 8),
    ),
    'target_rate': Param(
        0.0,
        'keyframe strategy: the camera rate in Hz to keep up with; the '
        'node measures its key and non-key costs and picks the keyframe '
        'interval in [1, max_keyframe_interval] (keyframe_interval is then '
        'the starting value); the interval and why are in /diagnostics. '
        '0 = off (keyframe_interval as set).',
        False,
        (0.0, 1000.0),
    ),
    'max_keyframe_interval': Param(
        10, 'keyframe strategy: the largest interval target_rate may choose.', False, (1, 100)
    ),
    'num_threads': Param(
        0,
        'Torch intra-op CPU threads for the process (compiled graphs take '
        "the same count); 0 = torch's default (OMP_NUM_THREADS). 1 with "
        'async_keyframes on two cores (key and foreground one core each).',
        True,
        (0, 256),
    ),
    'publish_mask': Param(True, 'Publish mask (mono8 class ids).'),
    'publish_color_mask': Param(True, 'Publish color_mask (rgb8 palette colours).'),
    'publish_overlay': Param(True, 'Publish overlay (rgb8 image blended with color_mask).'),
    'publish_confidence': Param(True, 'Publish confidence (mono8, max softmax × 255).'),
    'publish_timing': Param(
        False,
        'Publish timing (diagnostic_msgs/DiagnosticArray, input '
        "header) with every processed frame's stage times in ms, for "
        'profiling and vsda bench.',
    ),
    'max_queue_wait_ms': Param(
        0.0,
        'Latency mode: a frame that waited longer than this in '
        'the mailbox when the worker gets to it is dropped in favour of '
        'the next one (0 = off: always process the newest frame). Lowers '
        'end-to-end latency at the cost of output rate when the camera '
        'outpaces the model.',
        False,
        (0.0, 10000.0),
    ),
    'overlay_alpha': Param(
        0.5, 'Weight of the colour mask in the overlay, 0..1.', False, (0.0, 1.0)
    ),
    'max_input_pixels': Param(
        9437184,
        'Largest camera frame (width × height) the node '
        'decodes; a larger one is skipped before decoding, counted in '
        'bad_frames, with a WARN log and diagnostic. Default 4096×2304 '
        '(4K UHD and DCI 4K fit). Memory grows ~80 MB per megapixel '
        '(peak RSS 0.94 GB at 480×360, 1.57 GB at 3840×2160).',
        False,
        (1, 200000000),
    ),
    'max_stamp_gap_s': Param(
        1.0,
        'A forward header-stamp jump above this (seconds) breaks the '
        'stream: temporal buffers are reset and a WARN diagnostic is '
        'raised.',
        False,
        (0.001, 3600.0),
    ),
}


def descriptor(spec: Param) -> ParameterDescriptor:
    """The ``ParameterDescriptor`` of one parameter: description, read-only flag, and for a
    ranged int / float parameter its type and range (rcl then rejects out-of-range values)."""
    desc = ParameterDescriptor(description=spec.description, read_only=spec.read_only)
    if isinstance(spec.range, tuple) and isinstance(spec.default, float):
        desc.type = ParameterType.PARAMETER_DOUBLE
        desc.floating_point_range = [
            FloatingPointRange(from_value=spec.range[0], to_value=spec.range[1], step=0.0)
        ]
    elif isinstance(spec.range, tuple) and isinstance(spec.default, int):
        desc.type = ParameterType.PARAMETER_INTEGER
        desc.integer_range = [
            IntegerRange(from_value=spec.range[0], to_value=spec.range[1], step=1)
        ]
    return desc


def declare_parameters(node: Any) -> None:
    """Declare every parameter of :data:`PARAMETERS` on ``node`` (an ``rclpy.node.Node``).

    Every parameter gets a value: one declared with a type and no value makes
    ``get_parameters`` (``ros2 param dump``) return nothing for the whole request. Raises
    rclpy's ``ParameterException`` subclasses when an override (params file, ``-p``) has the
    wrong type or is out of range.
    """
    for name, spec in PARAMETERS.items():
        node.declare_parameter(name, spec.default, descriptor(spec))


def live_values(get: Callable[[str], Any]) -> dict[str, Any]:
    """The live (not read-only) parameters' current values, ``get(name)`` → value."""
    return {name: get(name) for name, spec in PARAMETERS.items() if not spec.read_only}


def validate_parameters(params: Iterable[Any]) -> SetParametersResult:
    """Reject changes the descriptors cannot express (a bool parameter set to a non-bool).

    ``params`` are ``rclpy.parameter.Parameter`` objects (anything with ``name`` and
    ``value``); names outside the table and read-only ones are left to rcl (which refuses
    read-only changes itself). Never raises.
    """
    for prm in params:
        spec = PARAMETERS.get(prm.name)
        if spec is None or spec.read_only:
            continue
        if isinstance(spec.default, bool) and not isinstance(prm.value, bool):
            return SetParametersResult(successful=False, reason=f'{prm.name} must be a bool')
    return SetParametersResult(successful=True)


def apply_parameters(live: dict[str, Any], params: Iterable[Any]) -> list[str]:
    """Copy accepted live changes into ``live``; returns ``['name=value', ...]`` of those
    applied (parameters that are not live are ignored). Call with the node's lock held."""
    changed = []
    for prm in params:
        if prm.name in live:
            live[prm.name] = prm.value
            changed.append(f'{prm.name}={prm.value}')
    return changed
