"""TF Serving's REST ``predict`` format, emulated on a loaded SavedModel: request JSON in,
response JSON out, and TF Serving's HTTP 400 answers for bad requests. For testing an export
(:mod:`pcl_tf.export`) without the server, and as the reference of the request format clients send.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Sequence

import numpy as np
import tensorflow as tf

from pcl_tf import serving


class RestError(ValueError):
    """A request TF Serving answers with HTTP 400 and ``{"error": message}`` (see :attr:`body`)."""

    @property
    def body(self) -> Dict[str, str]:
        return {"error": str(self)}


def rest_predict(loaded, body) -> Dict[str, Any]:
    """TF Serving's REST ``:predict`` on a loaded SavedModel: request JSON in, response JSON out.

    ``loaded`` is ``tf.saved_model.load(version_dir)``; ``body`` the request as a dict (or JSON
    text). Follows TF Serving's documented translation (RESTful API guide, "Predict API") and its
    implementation (``tensorflow_serving/util/json_tensor.cc``):

    * ``signature_name`` (optional, a string) picks the signature; default ``serving_default``.
    * Exactly one of ``instances`` or ``inputs``.
    * Row format, ``{"instances": [...]}``: a non-empty list, one element per example; an element
      is the value of the only input (here one image, H x W x C nested lists), or an object with
      one key per named input (``{"images": ...}``). Every element must have the same shape; the
      elements are stacked into the batch. Response ``{"predictions": [...]}``, one element per
      example: with several outputs an object of named outputs, with one output its bare value.
    * Columnar format, ``{"inputs": ...}``: the batch tensor of the only input, or an object of
      named inputs. Response ``{"outputs": {name: batch value, ...}}`` (the bare value for a
      single output).
    * JSON numbers become the signature's dtype as TF Serving converts them: a float input takes
      any number (integers above 2**24 or floats outside the float32 range are refused as lossy);
      an integer input takes only integers (``1.0`` is refused). Float outputs are written as TF
      Serving writes them: six significant digits when they read back as the same float32, nine
      otherwise (so ``0.1f`` is ``0.1``, not ``0.10000000149``).

    Raises :class:`RestError` where TF Serving answers HTTP 400 (its ``.body`` is that answer).
    Where TF Serving's behaviour is not documented this helper is stricter: integers outside a
    narrow integer input's range (e.g. 256 for uint8) are refused rather than passed on.
    """
    if isinstance(body, (str, bytes)):
        try:
            body = json.loads(body)
        except ValueError as e:
            raise RestError(f"JSON Parse error: {e}") from None
    if not isinstance(body, dict):
        raise RestError(f"JSON Value: {_short(body)} Is not object")
    signature_name = body.get("signature_name", serving.SIGNATURE_FLOAT)
    if not isinstance(signature_name, str):
        raise RestError(
            f"JSON Value: {_short(body)} not formatted correctly. 'signature_name' key must be a string value."
        )
    if signature_name not in loaded.signatures:
        raise RestError(f'Serving signature name: "{signature_name}" not found in signature def')
    fn = loaded.signatures[signature_name]
    specs = fn.structured_input_signature[1]

    if "instances" in body and "inputs" in body:
        raise RestError(
            f"JSON Value: {_short(body)} Not formatted correctly expecting only one of 'inputs' or "
            "'instances' keys to exist "
        )
    if "instances" in body:
        row_format = True
        inputs = _instances_to_tensors(body["instances"], specs, body)
    elif "inputs" in body:
        row_format = False
        inputs = _columns_to_tensors(body["inputs"], specs)
    else:
        raise RestError("Missing 'inputs' or 'instances' key")

    try:
        outputs = fn(**{name: tf.constant(value, dtype=specs[name].dtype) for name, value in inputs.items()})
    except (TypeError, ValueError, tf.errors.OpError) as e:
        raise RestError(" ".join(str(e).split())) from None
    outputs = {name: np.asarray(t) for name, t in sorted(outputs.items())}

    if not row_format:
        values = {name: _to_json(v) for name, v in outputs.items()}
        return {"outputs": values if len(values) > 1 else next(iter(values.values()))}
    batch = None
    for name, value in outputs.items():
        if value.ndim == 0:
            raise RestError(f"Tensor name: {name} has no shape information ")
        if batch is not None and value.shape[0] != batch:
            raise RestError(f"Tensor name: {name} has inconsistent batch size: {value.shape[0]} expecting: {batch}")
        batch = value.shape[0]
    columns = {name: _to_json(v) for name, v in outputs.items()}
    if len(columns) == 1:
        return {"predictions": next(iter(columns.values()))}
    return {"predictions": [{name: columns[name][i] for name in columns} for i in range(batch)]}


def _is_b64(value) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _instances_to_tensors(instances, specs, body) -> Dict[str, np.ndarray]:
    if not isinstance(instances, list):
        raise RestError(f"JSON Value: {_short(body)} Excepting 'instances' to be an list/array")
    if not instances:
        raise RestError(f"JSON Value: {_short(body)} No values in 'instances' array")
    if not isinstance(instances[0], dict) and len(specs) > 1:
        raise RestError(
            "instances is a plain list, but expecting list of objects as multiple input tensors "
            "required as per tensorinfo_map"
        )
    objects = isinstance(instances[0], dict) and not _is_b64(instances[0])
    names = sorted(specs)
    rows: Dict[str, List[np.ndarray]] = {name: [] for name in names}
    for i, item in enumerate(instances):
        is_object = isinstance(item, dict) and not _is_b64(item)
        if objects and not is_object:
            raise RestError(f"Expecting object but got list at item {i} of input list")
        if not objects and is_object:
            raise RestError(f"Expecting value/list but got object at item {i} of input list")
        named = item if objects else {names[0]: item}
        for name, value in named.items():
            if name not in specs:
                raise RestError(
                    f"Failed to process element: {i} key: {name} of 'instances' list. Error: "
                    f"JSON object: does not have named input: {name}"
                )
            try:
                array = _json_to_array(value, specs[name].dtype)
            except RestError as e:
                key = f" key: {name}" if objects else ""
                raise RestError(f"Failed to process element: {i}{key} of 'instances' list. Error: {e}") from None
            if rows[name] and array.shape != rows[name][0].shape:
                expected = rows[name][0]
                problem = (
                    f"Expecting tensor size: {expected.size} but got: {array.size}" if array.size != expected.size
                    else f"Expecting shape {_shape_str(expected.shape)} but got: {_shape_str(array.shape)}"
                )
                raise RestError(f"Failed to process element: {i} of 'instances' list. Error: {problem}")
            rows[name].append(array)
        if objects and set(named) != set(names):
            raise RestError(
                f"Failed to process element: {i} of 'instances' list. JSON object: {_short(item)} "
                f"keys must be equal to: {','.join(names)}"
            )
    return {name: np.stack(values) for name, values in rows.items()}


def _columns_to_tensors(inputs, specs) -> Dict[str, np.ndarray]:
    if not isinstance(inputs, dict) or _is_b64(inputs):
        if len(specs) > 1:
            raise RestError(
                "inputs is a plain value/list, but expecting an object as multiple input tensors "
                "required as per tensorinfo_map"
            )
        name = next(iter(specs))
        return {name: _json_to_array(inputs, specs[name].dtype)}
    tensors = {}
    for name in sorted(specs):
        if name not in inputs:
            raise RestError(f"Missing named input: {name} in 'inputs' object.")
        tensors[name] = _json_to_array(inputs[name], specs[name].dtype)
    return tensors


def _json_to_array(value, dtype: tf.dtypes.DType) -> np.ndarray:
    """A JSON value (number or nested lists) as a dense array of ``dtype``, as TF Serving converts it."""
    shape = []
    probe = value
    while isinstance(probe, list):
        shape.append(len(probe))
        if not probe:
            break
        probe = probe[0]
    _check_nesting(value, 0, shape)
    array = np.asarray(value)
    kind = array.dtype.kind
    if dtype.is_floating:
        if kind not in "iuf":
            raise RestError(f"JSON Value: {_short(value)} is not of expected type: {dtype.name}")
        limit_int = (1 << (np.finfo(dtype.as_numpy_dtype).nmant + 1)) - 1  # largest exact integer
        finite = array[np.isfinite(array)] if kind == "f" else array
        if kind in "iu" and finite.size and np.abs(finite).max() > limit_int:
            raise RestError(f"Cannot convert JSON value: {_short(value)} to {dtype.name} without loss of precision.")
        if kind == "f" and finite.size and np.abs(finite).max() > np.finfo(dtype.as_numpy_dtype).max:
            raise RestError(f"Cannot convert JSON value: {_short(value)} to {dtype.name} without loss of precision.")
    elif dtype.is_integer:
        if kind not in "iu":
            raise RestError(f"JSON Value: {_short(value)} is not of expected type: {dtype.name}")
        if array.size and (array.min() < dtype.min or array.max() > dtype.max):
            raise RestError(f"JSON Value: {_short(value)} is outside the range of {dtype.name}")
    elif dtype.is_bool:
        if kind != "b":
            raise RestError(f"JSON Value: {_short(value)} is not of expected type: bool")
    else:
        raise RestError(f"inputs of type {dtype.name} are not supported by this helper")
    return array.astype(dtype.as_numpy_dtype)


def _check_nesting(value, level: int, shape: Sequence[int]) -> None:
    """A dense tensor's JSON: every leaf at depth len(shape), every list of the size its level has."""
    if not isinstance(value, list):
        if level != len(shape):
            raise RestError(
                f"JSON Value: {_short(value)} found at incorrect level: {level + 1} in the JSON DOM. "
                f"Expected at level: {len(shape)}"
            )
        if isinstance(value, dict) or isinstance(value, str) or value is None:
            raise RestError(f"JSON Value: {_short(value)} is not a number")
        return
    if level >= len(shape):
        raise RestError(f"Encountered list at unexpected level: {level} expected < {len(shape)}")
    if len(value) != shape[level]:
        raise RestError(
            f"Encountered list at unexpected size: {len(value)} at level: {level} expected size: {shape[level]}"
        )
    for item in value:
        _check_nesting(item, level + 1, shape)


def _to_json(array: np.ndarray):
    """Nested lists of JSON numbers; floats as TF Serving's WriteDecimal writes them."""
    if array.dtype.kind == "f":
        # Iterating keeps numpy scalars of the array's dtype: "reads back the same" is a float32 test.
        values = np.empty(array.size, dtype=object)
        values[:] = [_decimal(v) for v in array.reshape(-1)]
        return values.reshape(array.shape).tolist()
    if array.dtype.kind == "b":
        return array.tolist()
    if array.dtype.kind in "iu":
        return array.tolist()
    raise RestError(f"Failed to write JSON value for tensor type: {array.dtype}")


def _decimal(value) -> float:
    """``%g`` (six significant digits) when it reads back as the same value, else full precision."""
    if not np.isfinite(value):
        return float(value)
    text = "%g" % float(value)
    if type(value)(text) != value:
        text = "%.*g" % (9 if value.dtype == np.float32 else 17, float(value))
    return float(text)


def _shape_str(shape) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def _short(value, limit: int = 120) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."
