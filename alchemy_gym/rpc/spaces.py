"""dm_env_rpc specs → Gymnasium spaces, and actions → tensors (checked against those spaces).

Conversion rules (:func:`tensor_spec_to_space`):

* integer scalar with both ``min`` and ``max`` → ``Discrete(max - min + 1, start=min)``;
* numeric tensor (scalars too) with bounds → ``Box(min, max, shape, dtype)``; a missing float bound
  is ±inf, a missing integer bound the dtype's limit;
* numeric tensor without bounds → ``Box`` over the dtype's range (±inf for floats);
* bool tensor → ``Box(False, True, shape, bool)``;
* string, proto, or a shape with a variable (``-1``) dimension → :class:`UnsupportedSpecError`.

:func:`specs_to_spaces` converts a whole ``{uid: TensorSpec}`` map: unsupported
specs are left out with a warning (or raise with ``unsupported="error"``); one
supported spec gives its own space, several a ``Dict`` keyed by spec name.
shimmy's ``dm_spec2gym_space`` does the dm_env-spec part; the rest is ours.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from gymnasium import spaces


class UnsupportedSpecError(TypeError):
    """A TensorSpec that has no Gymnasium space (strings, protos, variable-length shapes)."""


def _dm_env_rpc():
    from dm_env_rpc.v1 import dm_env_rpc_pb2, tensor_spec_utils, tensor_utils

    return dm_env_rpc_pb2, tensor_spec_utils, tensor_utils


def spec_dtype(spec) -> np.dtype:
    """The numpy dtype of a TensorSpec (``object`` for protos, ``str_`` for strings)."""
    pb, _, tensor_utils = _dm_env_rpc()
    if spec.dtype == pb.DataType.PROTO:
        return np.dtype(object)
    return np.dtype(tensor_utils.data_type_to_np_type(spec.dtype))


def tensor_spec_to_space(spec) -> spaces.Space:
    """The Gymnasium space of one dm_env_rpc ``TensorSpec`` (rules in the module docstring)."""
    from dm_env_rpc.v1 import dm_env_utils
    from shimmy.utils.dm_env import dm_spec2gym_space

    pb, tensor_spec_utils, _ = _dm_env_rpc()
    name = spec.name or "<unnamed>"
    type_name = pb.DataType.Name(spec.dtype)
    if spec.dtype in (pb.DataType.STRING, pb.DataType.PROTO, pb.DataType.INVALID_DATA_TYPE):
        raise UnsupportedSpecError(f"spec {name!r} has dtype {type_name}, which has no Gymnasium space")
    shape = tuple(int(d) for d in spec.shape)
    if any(d < 0 for d in shape):
        raise UnsupportedSpecError(f"spec {name!r} has a variable-length shape {list(shape)}, which has no Box")
    dtype = spec_dtype(spec)
    has_min, has_max = spec.HasField("min"), spec.HasField("max")
    if not (has_min or has_max):
        return dm_spec2gym_space(dm_env_utils.tensor_spec_to_dm_env_spec(spec))
    bounds = tensor_spec_utils.bounds(spec)  # validates payload types and min <= max
    low = np.broadcast_to(np.asarray(bounds.min), shape)
    high = np.broadcast_to(np.asarray(bounds.max), shape)
    if np.issubdtype(dtype, np.integer) and shape == () and has_min and has_max:
        return spaces.Discrete(int(high) - int(low) + 1, start=int(low))
    if np.issubdtype(dtype, np.floating):
        low = np.full(shape, -np.inf, dtype=dtype) if not has_min else low.astype(dtype)
        high = np.full(shape, np.inf, dtype=dtype) if not has_max else high.astype(dtype)
        return spaces.Box(low=low, high=high, shape=shape, dtype=dtype)
    return dm_spec2gym_space(dm_env_utils.tensor_spec_to_dm_env_spec(spec))


@dataclass
class SpecSpaces:
    """Spaces of a ``{uid: TensorSpec}`` map.

    Attributes:
        space: a ``Dict`` keyed by spec name, or the only space when ``single`` is set.
        spaces: the supported specs' spaces by name (spec order).
        uids: uid of every supported spec by name.
        specs: the TensorSpec of every supported spec by name.
        skipped: reason by name for every spec left out.
        single: the name of the only spec when ``space`` is not a ``Dict``.
    """

    space: spaces.Space
    spaces: dict[str, spaces.Space]
    uids: dict[str, int]
    specs: dict[str, Any]
    skipped: dict[str, str] = field(default_factory=dict)
    single: str | None = None


def specs_to_spaces(
    specs: Mapping[int, Any],
    *,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] = (),
    unsupported: str = "warn",
    unwrap_single: bool = True,
    kind: str = "observation",
) -> SpecSpaces:
    """Convert a ``{uid: TensorSpec}`` map (``JoinWorldResponse.specs.actions`` or ``.observations``).

    Args:
        include: names to keep (default all); an unknown name is an error.
        exclude: names to leave out silently.
        unsupported: ``"warn"`` (leave out with a warning), ``"ignore"`` or ``"error"``.
        unwrap_single: one spec gives its own space instead of a one-key ``Dict``.
        kind: ``"observation"`` or ``"action"``, for messages.
    """
    if unsupported not in ("warn", "ignore", "error"):
        raise ValueError(f"unsupported={unsupported!r}: allowed 'warn', 'ignore' or 'error'")
    by_name = {spec.name: (uid, spec) for uid, spec in sorted(specs.items())}
    if include is not None:
        include = list(include)
        missing = [n for n in include if n not in by_name]
        if missing:
            raise ValueError(f"{kind}s {missing} are not offered by the server: it offers {sorted(by_name)}")
        names = include
    else:
        names = list(by_name)
    exclude = set(exclude)
    result_spaces, uids, kept, skipped = {}, {}, {}, {}
    for name in names:
        if name in exclude:
            continue
        uid, spec = by_name[name]
        try:
            result_spaces[name] = tensor_spec_to_space(spec)
        except UnsupportedSpecError as exc:
            if unsupported == "error" or (include is not None and unsupported != "ignore"):
                raise UnsupportedSpecError(f"{kind} {exc}") from None
            skipped[name] = str(exc)
            if unsupported == "warn":
                warnings.warn(f"{kind} {name!r} left out of the space: {exc}", stacklevel=2)
            continue
        uids[name] = uid
        kept[name] = spec
    if not result_spaces:
        raise UnsupportedSpecError(f"no supported {kind} specs among {sorted(by_name)} ({skipped})")
    if unwrap_single and len(result_spaces) == 1:
        (single,) = result_spaces
        return SpecSpaces(result_spaces[single], result_spaces, uids, kept, skipped, single)
    return SpecSpaces(spaces.Dict(result_spaces), result_spaces, uids, kept, skipped)


# ------------------------------------------------------------------------------ actions


def _describe(space: spaces.Space) -> str:
    if isinstance(space, spaces.Discrete):
        return f"an integer in {int(space.start)}..{int(space.start + space.n - 1)}"
    if isinstance(space, spaces.Box):
        low, high = space.low, space.high
        if space.shape == ():
            return f"a {space.dtype} in [{low.item():g}, {high.item():g}]"
        if np.all(low == low.flat[0]) and np.all(high == high.flat[0]):
            return f"a {space.dtype} array of shape {space.shape} in [{low.flat[0]:g}, {high.flat[0]:g}]"
        return f"a {space.dtype} array of shape {space.shape} within the bounds {low.tolist()} .. {high.tolist()}"
    return str(space)


def check_action_keys(keys: Iterable[str], allowed: Iterable[str], prefix: str = "") -> None:
    """``ValueError`` naming the keys of a dict action that are not actions (``prefix`` says whose action)."""
    allowed = sorted(allowed)
    unknown = sorted(set(keys) - set(allowed))
    if unknown:
        raise ValueError(f"{prefix}unknown action keys {unknown}: allowed {allowed}")


def check_action_value(name: str, space: spaces.Space, value) -> np.ndarray:
    """``value`` as an array of the space's dtype; ``ValueError`` naming ``name`` and the bounds if it is not
    in ``space``."""
    if isinstance(space, spaces.Discrete):
        v = value
        if isinstance(v, np.ndarray) and v.shape in ((), (1,)):
            v = v.reshape(())[()]
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
            raise ValueError(f"action {name!r} must be {_describe(space)}, got {value!r} ({type(value).__name__})")
        if not space.start <= int(v) < space.start + space.n:
            raise ValueError(f"action {name!r}={int(v)} out of range: allowed {_describe(space)}")
        return np.asarray(int(v), dtype=space.dtype)
    if isinstance(space, spaces.Box):
        try:
            arr = np.asarray(value)
        except Exception:
            raise ValueError(f"action {name!r} must be {_describe(space)}, got {value!r}") from None
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
            raise ValueError(f"action {name!r} must be {_describe(space)}, got {value!r} ({arr.dtype})")
        if arr.shape != space.shape:
            if arr.size == int(np.prod(space.shape)) and arr.size == 1:
                arr = arr.reshape(space.shape)
            else:
                raise ValueError(f"action {name!r} has shape {arr.shape}: allowed {_describe(space)}")
        if np.issubdtype(space.dtype, np.integer) and not np.issubdtype(arr.dtype, np.integer):
            if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
                raise ValueError(f"action {name!r} must be {_describe(space)}, got non-integer {arr.tolist()}")
        if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
            raise ValueError(f"action {name!r} must be finite, got {arr.tolist()}: allowed {_describe(space)}")
        if np.any(arr < space.low) or np.any(arr > space.high):
            raise ValueError(f"action {name!r}={arr.tolist()} out of range: allowed {_describe(space)}")
        return arr.astype(space.dtype, copy=False)
    raise ValueError(f"action {name!r}: cannot check a value against {space}")


def pack_value(spec, value: np.ndarray):
    """A dm_env_rpc ``Tensor`` of ``value`` with the spec's dtype (fast paths for scalars)."""
    pb, _, tensor_utils = _dm_env_rpc()
    if value.shape == ():
        if spec.dtype == pb.DataType.DOUBLE:
            return pb.Tensor(doubles=pb.Tensor.DoubleArray(array=[float(value)]))
        if spec.dtype == pb.DataType.INT64:
            return pb.Tensor(int64s=pb.Tensor.Int64Array(array=[int(value)]))
    return tensor_utils.pack_tensor(value, dtype=spec.dtype)


#: payload → dtype of the payloads unpacked here (the others go through dm_env_rpc's tensor_utils).
_FAST_PAYLOADS = {"floats": np.float32, "doubles": np.float64, "int64s": np.int64, "int32s": np.int32}


def unpack_value(tensor) -> np.ndarray:
    """A dm_env_rpc ``Tensor`` as a numpy array (fast paths for the common payloads); scalars are 0-d arrays."""
    which = tensor.WhichOneof("payload")
    shape = tuple(tensor.shape)
    dtype = _FAST_PAYLOADS.get(which)
    if dtype is not None:
        values = getattr(tensor, which).array
        if not shape and len(values) == 1:
            return np.array(values[0], dtype=dtype)
        arr = np.array(values[:], dtype=dtype)
    elif which == "uint8s":
        arr = np.frombuffer(tensor.uint8s.array, dtype=np.uint8).copy()
    else:
        _, _, tensor_utils = _dm_env_rpc()
        return np.asarray(tensor_utils.unpack_tensor(tensor))  # scalars as 0-d arrays, like the fast paths
    if shape == ():
        return arr.reshape(())
    if arr.size == 1 and int(np.prod(shape)) != 1:
        return np.full(shape, arr[0], dtype=arr.dtype)
    if any(d < 0 for d in shape):
        return arr
    return arr.reshape(shape)
