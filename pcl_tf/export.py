"""SavedModel export for TensorFlow Serving: an explicit serving module, versioned atomic export
directories, and TF Serving's REST ``predict`` translation (to test exports without the server).

The export is made from :class:`ServingModule`, never from the training wrapper: it holds the
network's inference path (input -> logits, plus the deepest supervised feature when the model has
PCL branches) and a snapshot of that depth's prototypes. No optimizer, no centroid optimizer, no
PC-loss or auxiliary-branch losses, no training graph. Layout, as TF Serving's file-system source
expects under ``--model_base_path``::

    <export_base>/                 e.g. exports/fmnist_pcl (the model's name is the last part)
      1/                           one integer version per export (the next free one by default)
        saved_model.pb             signatures serving_default (float32) and serving_uint8
        variables/
        assets.extra/
          metadata.json            dataset, class names, input spec, signatures, PCL branches, ...
          reports/<name>.json      copies of the work dir's robustness reports, when there are any

A version is written into a hidden sibling (``.<version>.tmp-<random>``, a name TF Serving does not
parse as a version) and renamed into place when complete, so a server polling the base directory
never loads half a model.

Signatures (inputs are NHWC images of the model's fixed height, width and channels):

  serving_default  ``images`` float32 in [0, 1]
  serving_uint8    ``images`` uint8 in 0..255 (divided by 255 inside)

  outputs  ``probabilities`` float32 (B, K)   softmax of the logits
           ``logits``        float32 (B, K)
           ``class_ids``     int64 (B,)       argmax of the logits
           ``prototype_class_ids`` int64 (B,) nearest-prototype rule (paper Eq. 6) on the deepest
                                              supervised feature; only for models with prototypes
"""

from __future__ import annotations

import datetime
import functools
import glob
import json
import os
import re
import shutil
import uuid
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import keras
import numpy as np
import tensorflow as tf

from pcl_tf import data, experiment, io_utils, losses
from pcl_tf.models import registry

INPUT_NAME = "images"
SIGNATURE_FLOAT = "serving_default"
SIGNATURE_UINT8 = "serving_uint8"
METADATA_DIR = "assets.extra"
METADATA_FILE = "metadata.json"
REPORTS_DIR = "reports"

_VERSION_NAME = re.compile(r"^[0-9]+$")


class ExportError(ValueError):
    """An export destination or version that cannot be used; the message says what to do."""


# ------------------------------------------------------------------------- the serving module
PIXEL_RANGE_MESSAGE = ("images must lie in [0, 1] (pixel / 255); send raw 0-255 pixels as uint8 to the "
                       "serving_uint8 signature")
PIXEL_TOLERANCE = 1e-6  # float round-off of p / 255 computed elsewhere


class ServingModule(tf.Module):
    """What a SavedModel for serving holds: the inference path of a PCL network and its prototypes.

    ``network`` is the functional model of :func:`pcl_tf.models.build_network` (a dict of named
    outputs). Only the layers on the paths to ``logits`` and to ``feature_name`` are used, so the
    auxiliary CE heads (Eq. 8) are left out; ``prototypes`` (K, D) is copied into a variable of
    its own, so the PC layers (and their push centres in the official mode) are left out too.

    The SavedModel tracks the TensorFlow variables the signatures read, not the Keras objects
    (as ``keras.export.ExportArchive`` does): with the Keras model tracked, TF1-style loaders,
    which TF Serving and ``saved_model_cli run`` use, fail with "Could not find variable".
    """

    def __init__(self, network: keras.Model, feature_name: Optional[str] = None, prototypes=None,
                 name: str = "pcl_serving"):
        super().__init__(name=name)
        if (feature_name is None) != (prototypes is None):
            raise ValueError("give both feature_name and prototypes, or neither")
        outputs = {registry.LOGITS: network.output[registry.LOGITS]}
        if feature_name is not None:
            outputs["features"] = network.output[feature_name]
        inference = keras.Model(network.input, outputs, name=f"{network.name}_serving")
        # A partial is not trackable: the Keras model stays out of the SavedModel's object graph.
        self._forward = functools.partial(inference, training=False)
        self.feature_name = feature_name
        self.prototypes = (
            None if prototypes is None
            else tf.Variable(np.asarray(prototypes, np.float32), trainable=False, name="prototypes")
        )
        self.image_shape = tuple(int(d) for d in network.input.shape[1:])
        batch_shape = (None,) + self.image_shape
        self.serving_default = tf.function(
            self._predict_float, input_signature=[tf.TensorSpec(batch_shape, tf.float32, INPUT_NAME)]
        )
        self.serving_uint8 = tf.function(
            self._predict_uint8, input_signature=[tf.TensorSpec(batch_shape, tf.uint8, INPUT_NAME)]
        )
        used = {}
        for fn in self.signatures().values():
            used.update((id(v), v) for v in fn.variables if v is not self.prototypes)
        self.model_variables = list(used.values())

    @classmethod
    def from_pcl_model(cls, model) -> "ServingModule":
        """The serving module of a :class:`pcl_tf.training.PCLModel`.

        Eq. 6 is applied to the deepest supervised feature: the last of ``model.feature_names``
        (config order), with the prototypes of the PC layer trained on it.
        """
        if not model.pc_layers:
            return cls(model.network)
        return cls(model.network, model.feature_names[-1], model.pc_layers[-1].prototypes.numpy())

    def signatures(self) -> Dict[str, Any]:
        return {
            SIGNATURE_FLOAT: self.serving_default.get_concrete_function(),
            SIGNATURE_UINT8: self.serving_uint8.get_concrete_function(),
        }

    def _predict_float(self, images):
        images = self._checked(images)
        # A NaN pixel would come back as confident-looking class ids (argmax of NaN logits is
        # 0), and 0-255 pixels sent here by mistake as garbage: refuse both, inside the graph.
        checks = [
            tf.debugging.assert_all_finite(images, "images contain NaN or Inf; send pixel values in [0, 1]"),
            tf.debugging.assert_greater_equal(images, 0.0, message=PIXEL_RANGE_MESSAGE),
            tf.debugging.assert_less_equal(images, 1.0 + PIXEL_TOLERANCE, message=PIXEL_RANGE_MESSAGE),
        ]
        with tf.control_dependencies(checks):
            return self._predict(tf.identity(images))

    def _predict_uint8(self, images):
        # p / 255 looked up, not divided: in a graph, Grappler turns the division into a
        # multiplication by 1/255, which is 1 ulp off for half of the 256 values (logits then
        # differ by ~3e-6 from serving_default on numpy's p / 255). The table is exact.
        table = tf.constant(np.arange(256, dtype=np.float32) / np.float32(255.0))
        return self._predict(tf.gather(table, tf.cast(self._checked(images), tf.int32)))

    def _checked(self, images):
        # A loaded SavedModel does not check a tensor's shape against the signature, and the
        # network runs on 32x32 images or on one unbatched 28x28x1 image without complaint.
        # EnsureShape refuses them inside the graph, wherever the SavedModel is run.
        return tf.ensure_shape(images, (None,) + self.image_shape)

    def _predict(self, images):
        outputs = self._forward(images)
        logits = tf.cast(outputs[registry.LOGITS], tf.float32)
        result = {
            "probabilities": tf.nn.softmax(logits, axis=-1),
            "logits": logits,
            "class_ids": tf.argmax(logits, axis=-1, output_type=tf.int64),
        }
        if self.prototypes is not None:
            # Eq. 6, the same function training's predictions use.
            result["prototype_class_ids"] = losses.nearest_prototype(outputs["features"], self.prototypes,
                                                                     output_type=tf.int64)
        return result


# ------------------------------------------------------------------------- versions
def existing_versions(export_base: str) -> List[int]:
    """The versions under ``export_base`` (children named by a non-negative integer), sorted."""
    if not os.path.isdir(export_base):
        return []
    return sorted(int(name) for name in os.listdir(export_base) if _VERSION_NAME.match(name))


def next_version(export_base: str) -> int:
    """One more than the highest version under ``export_base``; 1 when there is none."""
    return max(existing_versions(export_base), default=0) + 1


def check_destination(export_base: str, version: Optional[int] = None) -> Tuple[str, int]:
    """Checks, writing nothing, that ``version`` can be exported under ``export_base``.

    Returns the absolute base and the version (the next free one when ``version`` is None).
    Raises :class:`ExportError` for a version that is not a positive integer or already exists
    (as ``7`` or as ``007``, which TF Serving reads as the same version), or a base that is not a
    directory or cannot be created or written.
    """
    if not export_base:
        raise ExportError("give an export dir, e.g. exports/<model_name>; versions are written under it")
    base = os.path.abspath(export_base)
    if version is not None:
        if isinstance(version, bool) or not isinstance(version, (int, np.integer)) or version < 1:
            raise ExportError(f"version {version!r} is not a positive integer; TF Serving versions are 1, 2, ...")
        version = int(version)
    if os.path.exists(base):
        if not os.path.isdir(base):
            raise ExportError(f"export dir {base} is a file, not a directory; choose another")
        if not os.access(base, os.W_OK | os.X_OK):
            raise ExportError(f"export dir {base} is not writable; choose another or fix its permissions")
        if version is None:
            version = next_version(base)
        elif version in existing_versions(base):
            raise ExportError(
                f"version {version} already exists in {base}; exports are never overwritten: "
                f"choose another version or leave it out to write {next_version(base)}"
            )
        return base, version
    parent = os.path.dirname(base)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ExportError(f"cannot create export dir {base}: {parent} is a file, not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ExportError(f"cannot create export dir {base}: {parent} is not writable")
    return base, 1 if version is None else version


# ------------------------------------------------------------------------- export
def export(
    model,
    config,
    export_base: str,
    version: Optional[int] = None,
    *,
    reports: Iterable[str] = (),
    metrics: Optional[Mapping] = None,
    workdir: Optional[str] = None,
) -> str:
    """Writes ``<export_base>/<version>/``, a SavedModel for TF Serving, and returns its path.

    ``model`` is a trained :class:`pcl_tf.training.PCLModel` and ``config`` its config
    (``ConfigDict`` or dict). ``reports`` are robustness report JSON files copied into
    ``assets.extra/reports/``; ``metrics`` (the work dir's metrics.json) and ``workdir`` are
    recorded in ``assets.extra/metadata.json``. ``version`` defaults to the next free one; an
    existing version is refused (:class:`ExportError`), never overwritten.

    The version directory appears complete or not at all: the SavedModel is written into a hidden
    sibling that is renamed into place last. If anything fails, nothing is left behind.
    """
    base, version = check_destination(export_base, version)
    config_dict = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    report_copies = _read_reports(reports)
    module = ServingModule.from_pcl_model(model)
    signatures = module.signatures()
    metadata = _metadata(module, signatures, config_dict, version, metrics, workdir, report_copies)
    # Which checkpoint the weights come from (set by experiment.load_trained).
    metadata["checkpoint"] = dict(getattr(model, "restored_checkpoint", None) or {}) or None

    created = _missing_dirs(base)
    final = os.path.join(base, str(version))
    tmp = os.path.join(base, f".{version}.tmp-{uuid.uuid4().hex[:12]}")
    try:
        os.makedirs(base, exist_ok=True)
        os.mkdir(tmp)
        tf.saved_model.save(module, tmp, signatures=signatures)
        extra = os.path.join(tmp, METADATA_DIR)
        os.makedirs(os.path.join(extra, REPORTS_DIR) if report_copies else extra)
        _write_file(os.path.join(extra, METADATA_FILE), json.dumps(metadata, indent=2, sort_keys=True) + "\n")
        for name, text in report_copies.items():
            _write_file(os.path.join(extra, REPORTS_DIR, name), text)
        _fsync_tree(tmp)
        if version in existing_versions(base):  # appeared while this export was being written
            raise ExportError(f"version {version} appeared in {base} during the export; export again")
        os.rename(tmp, final)
        _fsync_dir(base)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        for directory in created:  # deepest first; only what this export created, if still empty
            try:
                os.rmdir(directory)
            except OSError:
                break
        if isinstance(e, OSError):
            raise ExportError(f"cannot write the export under {base}: {e.strerror or e}") from e
        raise
    return final


def export_workdir(workdir: str, export_base: str, version: Optional[int] = None,
                   allow_older_checkpoint: bool = False) -> str:
    """Exports the last checkpoint of a pcl-train work dir (with its reports and metrics).

    The destination is checked before the model is loaded, so a refused version or an unwritable
    export dir costs nothing. Returns the path of the version directory written. An unreadable
    newest checkpoint is refused unless ``allow_older_checkpoint``; the metadata then records the
    checkpoint exported and drops the work dir's metrics, which describe the newest one.
    """
    check_destination(export_base, version)
    model, config = experiment.load_trained(workdir, allow_older_checkpoint=allow_older_checkpoint)
    metrics_path = os.path.join(workdir, experiment.METRICS_FILE)
    metrics = io_utils.read_json(metrics_path) if os.path.exists(metrics_path) else None
    reports = sorted(glob.glob(os.path.join(workdir, REPORTS_DIR, "*.json")))
    if not model.restored_checkpoint["newest"]:
        metrics, reports = None, []  # they describe the newest checkpoint, not the weights exported
    return export(model, config, export_base, version, reports=reports, metrics=metrics, workdir=workdir)


def read_metadata(version_dir: str) -> Dict[str, Any]:
    """``assets.extra/metadata.json`` of an export version directory."""
    return io_utils.read_json(os.path.join(version_dir, METADATA_DIR, METADATA_FILE))


def _read_reports(paths: Iterable[str]) -> Dict[str, str]:
    """File name -> text of each report, each checked to be JSON before anything is written."""
    copies: Dict[str, str] = {}
    for path in paths:
        name = os.path.basename(path)
        if name in copies:
            raise ExportError(f"two reports are named {name}; rename one")
        with open(path, encoding="utf-8") as f:
            text = f.read()
        try:
            json.loads(text)
        except ValueError as e:
            raise ExportError(f"report {path} is not valid JSON ({e}); rerun pcl-attack or remove it") from None
        copies[name] = text
    return copies


def _spec_json(spec) -> Dict[str, Any]:
    return {"dtype": spec.dtype.name, "shape": [None if d is None else int(d) for d in spec.shape.as_list()]}


def _metadata(module: ServingModule, signatures, config: Dict, version: int, metrics, workdir, reports) -> Dict:
    info = data.info(config["dataset"])
    descriptions = {
        "probabilities": "softmax of the logits",
        "logits": "class scores",
        "class_ids": "argmax of the logits (index into class_names)",
        "prototype_class_ids": (
            f"class of the nearest prototype (paper Eq. 6) to the {module.feature_name} features"
        ),
    }
    signature_specs = {}
    for name, fn in signatures.items():
        args, kwargs = fn.structured_input_signature  # positional specs are named by their TensorSpec
        inputs = {**{spec.name: spec for spec in args}, **kwargs}
        signature_specs[name] = {
            "inputs": {key: _spec_json(spec) for key, spec in inputs.items()},
            "outputs": {
                key: dict(_spec_json(t), description=descriptions[key]) for key, t in fn.structured_outputs.items()
            },
        }
    signature_specs[SIGNATURE_FLOAT]["inputs"][INPUT_NAME]["range"] = [0.0, 1.0]
    signature_specs[SIGNATURE_UINT8]["inputs"][INPUT_NAME]["range"] = [0, 255]
    pcl = config.get("pcl", {})
    return {
        "format": "pcl_tf SavedModel for TF Serving",
        "version": version,
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
        "source_workdir": os.path.abspath(workdir) if workdir else None,
        "dataset": info.name,
        "num_classes": info.num_classes,
        "class_names": list(info.class_names),
        "model": config.get("model"),
        "input": {
            "name": INPUT_NAME,
            "shape": [None, *module.image_shape],
            "layout": "NHWC",
            "dtype": "float32 in [0, 1] (serving_default) or uint8 in 0..255 (serving_uint8)",
            "normalization": "inside the model: (x - mean) / std, mean={}, std={}".format(
                *(list(v) for v in experiment.normalization(config))),
        },
        "signatures": signature_specs,
        "pcl": {
            "branches": pcl.get("branches", ""),
            "mode": pcl.get("mode") if pcl.get("branches") else None,
            "prototype_feature": module.feature_name,
            "num_prototypes": None if module.prototypes is None else int(module.prototypes.shape[0]),
        },
        "test_accuracy": dict(metrics["test"]) if metrics and "test" in metrics else None,
        "reports": [f"{REPORTS_DIR}/{name}" for name in reports],
        "config": config,
    }


def _write_file(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def _fsync_tree(root: str) -> None:
    """Flushes every file and directory under ``root`` to disk before the rename publishes it."""
    for directory, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(directory, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(directory)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _missing_dirs(path: str) -> List[str]:
    """``path`` and those of its parents that do not exist yet, deepest first."""
    missing = []
    while not os.path.exists(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return missing


# ------------------------------------------------------------------------- REST predict
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
    signature_name = body.get("signature_name", SIGNATURE_FLOAT)
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
