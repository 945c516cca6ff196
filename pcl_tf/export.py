"""Publishing a trained model as versioned SavedModels for TensorFlow Serving.

The export is made from :class:`pcl_tf.serving.ServingModule` (the inference path and the
prototypes; see there for the signatures), never from the training wrapper. Layout, as TF
Serving's file-system source expects under ``--model_base_path``::

    <export_base>/                 e.g. exports/fmnist_pcl (the model's name is the last part)
      1/                           one integer version per export (the next free one by default)
        saved_model.pb             signatures serving_default (float32) and serving_uint8
        variables/
        assets.extra/
          metadata.json            dataset, class names, input spec, signatures, PCL branches, ...
          reports/<name>.json      copies of the work dir's robustness reports, when there are any

A version is written into a hidden sibling (``.<version>.tmp-<random>``, a name TF Serving does not
parse as a version) and renamed into place when complete, so a server polling the base directory
never loads half a model. :func:`export_workdir` exports a work dir's model (loaded by
:func:`pcl_tf.workdir.load_trained`: the model alone, no training run); :mod:`pcl_tf.rest` emulates
TF Serving's REST requests on the result.
"""

from __future__ import annotations

import datetime
import glob
import json
import os
import shutil
import uuid
from typing import Any, Dict, Iterable, List, Mapping, Optional

import keras
import tensorflow as tf

from pcl_tf import building, catalogue, io_utils, serving, versions
from pcl_tf import workdir as workdirs

METADATA_DIR = "assets.extra"
METADATA_FILE = "metadata.json"
REPORTS_DIR = "reports"


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
    existing version is refused (:class:`pcl_tf.versions.ExportError`), never overwritten.

    The version directory appears complete or not at all: the SavedModel is written into a hidden
    sibling that is renamed into place last. If anything fails, nothing is left behind.
    """
    base, version = versions.check_destination(export_base, version)
    config_dict = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    report_copies = _read_reports(reports)
    module = serving.ServingModule.from_pcl_model(model)
    signatures = module.signatures()
    metadata = _metadata(module, signatures, config_dict, version, metrics, workdir, report_copies)
    # Which checkpoint the weights come from (set by pcl_tf.workdir.load_trained).
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
        if version in versions.existing_versions(base):  # appeared while this export was being written
            raise versions.ExportError(f"version {version} appeared in {base} during the export; export again")
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
            raise versions.ExportError(f"cannot write the export under {base}: {e.strerror or e}") from e
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
    versions.check_destination(export_base, version)
    model, config = workdirs.load_trained(workdir, allow_older_checkpoint=allow_older_checkpoint)
    metrics_path = os.path.join(workdir, workdirs.METRICS_FILE)
    metrics = io_utils.read_json(metrics_path) if os.path.exists(metrics_path) else None
    reports = sorted(glob.glob(os.path.join(workdir, REPORTS_DIR, "*.json")))
    if not model.restored_checkpoint["newest"]:
        metrics, reports = None, []  # they describe the newest checkpoint, not the weights exported
    return export(model, config, export_base, version, reports=reports, metrics=metrics, workdir=workdir)


def describe(version_dir: str, workdir: str) -> str:
    """What ``pcl-export`` says about an export it wrote: the version, the signatures, the reports
    copied, and the TF Serving command that serves it."""
    metadata = read_metadata(version_dir)
    signature = metadata["signatures"][serving.SIGNATURE_FLOAT]
    spec = signature["inputs"][serving.INPUT_NAME]
    base = os.path.dirname(version_dir)
    lines = [
        f"exported {workdir} ({metadata['dataset']}, {metadata['model']}) as version {metadata['version']}: {version_dir}",
        f"signatures: {serving.SIGNATURE_FLOAT} ({serving.INPUT_NAME}: float32 in [0, 1], shape {spec['shape']}), "
        f"{serving.SIGNATURE_UINT8} (uint8 0..255); outputs: {', '.join(sorted(signature['outputs']))}",
    ]
    if metadata["reports"]:
        lines.append(f"reports: {', '.join(metadata['reports'])} (in {METADATA_DIR}/)")
    lines.append(f"serve: tensorflow_model_server --rest_api_port=8501 --model_name={os.path.basename(base)} "
                 f"--model_base_path={base}")
    return "\n".join(lines)


def read_metadata(version_dir: str) -> Dict[str, Any]:
    """``assets.extra/metadata.json`` of an export version directory."""
    return io_utils.read_json(os.path.join(version_dir, METADATA_DIR, METADATA_FILE))


def _read_reports(paths: Iterable[str]) -> Dict[str, str]:
    """File name -> text of each report, each checked to be JSON before anything is written."""
    copies: Dict[str, str] = {}
    for path in paths:
        name = os.path.basename(path)
        if name in copies:
            raise versions.ExportError(f"two reports are named {name}; rename one")
        with open(path, encoding="utf-8") as f:
            text = f.read()
        try:
            json.loads(text)
        except ValueError as e:
            raise versions.ExportError(f"report {path} is not valid JSON ({e}); rerun pcl-attack or remove it") from None
        copies[name] = text
    return copies


def _spec_json(spec) -> Dict[str, Any]:
    return {"dtype": spec.dtype.name, "shape": [None if d is None else int(d) for d in spec.shape.as_list()]}


def _metadata(module: serving.ServingModule, signatures, config: Dict, version: int, metrics, workdir, reports) -> Dict:
    info = catalogue.info(config["dataset"])
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
    signature_specs[serving.SIGNATURE_FLOAT]["inputs"][serving.INPUT_NAME]["range"] = [0.0, 1.0]
    signature_specs[serving.SIGNATURE_UINT8]["inputs"][serving.INPUT_NAME]["range"] = [0, 255]
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
            "name": serving.INPUT_NAME,
            "shape": [None, *module.image_shape],
            "layout": "NHWC",
            "dtype": "float32 in [0, 1] (serving_default) or uint8 in 0..255 (serving_uint8)",
            "normalization": "inside the model: (x - mean) / std, mean={}, std={}".format(
                *(list(v) for v in building.normalization(config))),
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
