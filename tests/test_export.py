"""SavedModel export for TF Serving, checked from the outside: saved_model_cli, a fresh Python
process that never imports pcl_tf, TF Serving's REST translation (and the real server where its
binary is on PATH), versioning and atomicity, and pcl-export's errors.

One tiny model is trained once (the `smoke` config on ``tfds.testing.mock_data``) and exported
once for the module; the tests that need another export write their own under tmp_path.
"""

import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from pcl_tf import experiment, export, io_utils, report, rest, serving, training_setup, versions
from pcl_tf import workdir as workdirs

CONFIG = os.path.join(os.path.dirname(__file__), os.pardir, "configs", "fmnist_cnn6.py")
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
SAVED_MODEL_CLI = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
OUTPUTS = {"probabilities", "logits", "class_ids", "prototype_class_ids"}
REPORT = {"threat_model": "white-box", "eps": 0.1, "clean_accuracy": 0.5, "worst_case": {"robust_accuracy": 0.25}}


def load_config(variants="smoke"):
    spec = importlib.util.spec_from_file_location("cfg", CONFIG)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(variants)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A real pcl-train work dir: CNN-6 with PCL on gap, fc512, fc64; warm-up epoch, then joint."""
    config = load_config()
    config.train.num_examples = 64
    config.eval.num_examples = 32
    workdir = str(tmp_path_factory.mktemp("train") / "run")
    with tfds.testing.mock_data(num_examples=96):
        experiment.train_and_evaluate(config, workdir, verbose=0)
    os.makedirs(os.path.join(workdir, "reports"))
    with open(os.path.join(workdir, "reports", "whitebox_fgsm.json"), "w") as f:
        json.dump([REPORT], f)
    return workdir


@pytest.fixture(scope="module")
def trained(workdir):
    return workdirs.load_trained(workdir)[0]


@pytest.fixture(scope="module")
def exported(workdir, tmp_path_factory):
    return export.export_workdir(workdir, str(tmp_path_factory.mktemp("exports") / "fmnist_pcl"))


@pytest.fixture(scope="module")
def loaded(exported):
    return tf.saved_model.load(exported)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((5, 28, 28, 1), dtype=np.float32)


def keras_outputs(model, x):
    """What the Keras model says about ``x``: the reference every export is held to."""
    logits = model.inference_model()(x).numpy()
    return {
        "logits": logits,
        "probabilities": tf.nn.softmax(logits).numpy(),
        "class_ids": logits.argmax(axis=1),
        "prototype_class_ids": model.nearest_prototype_predictions(x)[model.pc_layers[-1].name].numpy(),
    }


def assert_matches_keras(outputs, expected):
    assert set(outputs) == OUTPUTS
    for name in ("logits", "probabilities"):
        assert outputs[name].dtype == np.float32
        assert np.abs(outputs[name] - expected[name]).max() <= 1e-6, name
    for name in ("class_ids", "prototype_class_ids"):
        assert outputs[name].dtype == np.int64
        np.testing.assert_array_equal(outputs[name], expected[name])


def tree(path):
    """Every path under ``path`` (relative), to show that a refused command wrote nothing."""
    found = set()
    for directory, dirs, files in os.walk(path):
        found.update(os.path.relpath(os.path.join(directory, n), path) for n in dirs + files)
    return found


# --------------------------------------------------------------------------- what is written
def test_version_directory_layout_and_metadata(exported, workdir):
    base = os.path.dirname(exported)
    assert os.listdir(base) == ["1"]  # no temporary directory left beside it
    assert {"saved_model.pb", "variables", "assets.extra"} <= set(os.listdir(exported))
    metadata = export.read_metadata(exported)
    assert metadata["version"] == 1
    assert metadata["dataset"] == "fashion_mnist" and metadata["model"] == "cnn6"
    assert metadata["class_names"][:2] == ["T-shirt/top", "Trouser"] and metadata["num_classes"] == 10
    assert metadata["input"]["shape"] == [None, 28, 28, 1]
    assert metadata["pcl"] == {"branches": "gap,fc512,fc64", "mode": "paper",
                               "prototype_feature": "feat_fc64", "num_prototypes": 10}  # fmt: skip
    outputs = metadata["signatures"]["serving_default"]["outputs"]
    assert outputs["class_ids"]["dtype"] == "int64" and outputs["logits"]["shape"] == [None, 10]
    assert metadata["signatures"]["serving_uint8"]["inputs"]["images"]["dtype"] == "uint8"
    assert metadata["source_workdir"] == os.path.abspath(workdir)
    assert 0.0 <= metadata["test_accuracy"]["softmax"] <= 1.0
    assert metadata["reports"] == ["reports/whitebox_fgsm.json"]
    newest = sorted(n[:-len(".index")] for n in os.listdir(os.path.join(workdir, "checkpoints")) if n.endswith(".index"))
    assert metadata["checkpoint"]["newest"] is True and metadata["checkpoint"]["name"] in newest
    with open(os.path.join(exported, "assets.extra", "reports", "whitebox_fgsm.json")) as f:
        assert json.load(f) == [REPORT]


def test_export_holds_the_inference_model_and_deepest_prototypes_only(exported, trained):
    names = [n for n, _ in tf.train.list_variables(os.path.join(exported, "variables", "variables"))]
    names.remove("_CHECKPOINTABLE_OBJECT_GRAPH")
    assert not [n for n in names if "optimizer" in n or "pcl_" in n or "pc_active" in n or "centroid" in n]
    assert len(names) == len(trained.inference_model().weights) + 1  # + the fc64 prototypes
    reader = tf.train.load_checkpoint(os.path.join(exported, "variables", "variables"))
    np.testing.assert_array_equal(
        reader.get_tensor("prototypes/.ATTRIBUTES/VARIABLE_VALUE"), trained.pc_layers[-1].prototypes.numpy()
    )


def test_serving_module_leaves_out_auxiliary_heads_and_push_centres():
    config = load_config("smoke,official")
    config.pcl.branch_ce = True  # Eq. 8: a CE head per branch, which serving must not carry
    model = training_setup.build_model(config)
    assert model.aux_logit_names
    module = serving.ServingModule.from_pcl_model(model)
    assert {id(v) for v in module.model_variables} == {id(w.value) for w in model.inference_model().weights}
    assert not [v for v in module.model_variables if "aux_logits" in v.name]
    np.testing.assert_array_equal(module.prototypes.numpy(), model.pc_layers[-1].pull_centroids.numpy())


# --------------------------------------------------------------------------- from the outside
def test_saved_model_cli_show_lists_the_signatures(exported):
    proc = subprocess.run([SAVED_MODEL_CLI, "show", "--dir", exported, "--all"],
                          capture_output=True, text=True, env=ENV, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    default = text[text.index("signature_def['serving_default']"):]
    default = default[: default.index("Method name is")]
    assert "inputs['images'] tensor_info:\n        dtype: DT_FLOAT\n        shape: (-1, 28, 28, 1)" in default
    expected = [("probabilities", "DT_FLOAT", "(-1, 10)"), ("logits", "DT_FLOAT", "(-1, 10)"),
                ("class_ids", "DT_INT64", "(-1)"), ("prototype_class_ids", "DT_INT64", "(-1)")]
    for name, dtype, shape in expected:
        assert f"outputs['{name}'] tensor_info:\n        dtype: {dtype}\n        shape: {shape}" in default, name
    uint8 = text[text.index("signature_def['serving_uint8']"):]
    assert "dtype: DT_UINT8\n        shape: (-1, 28, 28, 1)" in uint8


FRESH_PROCESS = r"""
import sys
import numpy as np
import tensorflow as tf

version_dir, inputs, outputs = sys.argv[1:]
loaded = tf.saved_model.load(version_dir)
x = np.load(inputs)
result = {k: v.numpy() for k, v in loaded.signatures["serving_default"](images=tf.constant(x)).items()}
x8 = tf.constant(np.round(x * 255).astype(np.uint8))
result.update({"uint8_" + k: v.numpy() for k, v in loaded.signatures["serving_uint8"](images=x8).items()})
assert not [m for m in sys.modules if m.split(".")[0] == "pcl_tf"], "pcl_tf was imported"
np.savez(outputs, **result)
"""


def test_fresh_process_without_pcl_tf_reproduces_keras(exported, trained, images, tmp_path):
    np.save(tmp_path / "x.npy", images)
    proc = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, exported, str(tmp_path / "x.npy"), str(tmp_path / "out.npz")],
        capture_output=True, text=True, env=ENV, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = dict(np.load(tmp_path / "out.npz"))
    assert_matches_keras({k: v for k, v in result.items() if not k.startswith("uint8_")},
                         keras_outputs(trained, images))  # fmt: skip
    x8 = np.round(images * 255).astype(np.uint8).astype(np.float32) / 255.0
    assert_matches_keras({k[6:]: v for k, v in result.items() if k.startswith("uint8_")},
                         keras_outputs(trained, x8))  # fmt: skip
    print("fresh process, max |Δ| logits:", np.abs(result["logits"] - keras_outputs(trained, images)["logits"]).max())


def test_saved_model_cli_run_on_a_saved_npy(exported, trained, images, tmp_path):
    np.save(tmp_path / "x.npy", images)
    proc = subprocess.run(
        [SAVED_MODEL_CLI, "run", "--dir", exported, "--tag_set", "serve", "--signature_def", "serving_default",
         "--inputs", f"images={tmp_path / 'x.npy'}", "--outdir", str(tmp_path / "out")],
        capture_output=True, text=True, env=ENV, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = {name: np.load(tmp_path / "out" / f"{name}.npy") for name in OUTPUTS}
    assert_matches_keras(result, keras_outputs(trained, images))


@pytest.mark.parametrize("value, message", [(np.nan, "NaN or Inf"), (np.inf, "NaN or Inf"),
                                            (255.0, "must lie in [0, 1]"), (-0.5, "must lie in [0, 1]")])
def test_images_with_nan_or_outside_0_1_are_refused(loaded, images, value, message):
    bad = np.array(images[:2])
    bad[1, 3, 4, 0] = value
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(message)):
        loaded.signatures["serving_default"](images=tf.constant(bad))
    with pytest.raises(rest.RestError, match=re.escape(message)):
        rest.rest_predict(loaded, {"inputs": bad.tolist()})
    loaded.signatures["serving_default"](images=tf.constant(images[:2]))  # the clean ones still pass


def test_wrong_shape_or_dtype_is_refused(loaded, images):
    serve = loaded.signatures["serving_default"]
    for bad in [tf.zeros((2, 28, 28, 3)), tf.zeros((2, 32, 32, 1)), tf.zeros((28, 28, 1)), tf.zeros((2, 784))]:
        with pytest.raises((TypeError, ValueError, tf.errors.InvalidArgumentError)):
            serve(images=bad)
    for dtype in (tf.float64, tf.uint8, tf.int32):
        with pytest.raises((TypeError, ValueError, tf.errors.InvalidArgumentError)):
            serve(images=tf.cast(images, dtype))
    with pytest.raises((TypeError, ValueError, tf.errors.InvalidArgumentError)):
        loaded.signatures["serving_uint8"](images=tf.constant(images))
    with pytest.raises((TypeError, ValueError, tf.errors.InvalidArgumentError)):
        loaded.signatures["serving_uint8"](images=tf.zeros((2, 32, 32, 1), tf.uint8))


# --------------------------------------------------------------------------- REST translation
def direct(loaded, x, signature="serving_default"):
    return {k: v.numpy() for k, v in loaded.signatures[signature](images=tf.constant(x)).items()}


def test_uint8_signature_is_serving_default_on_pixels_over_255(loaded, images):
    pixels = np.round(images * 255).astype(np.uint8)
    from_uint8 = direct(loaded, pixels, "serving_uint8")
    from_float = direct(loaded, pixels.astype(np.float32) / 255.0)
    for name in OUTPUTS:
        np.testing.assert_array_equal(from_uint8[name], from_float[name])


def assert_same_values(json_value, array):
    """JSON floats read back to the exact float32 and are written short, as TF Serving writes them
    (six significant digits, or nine where six do not read back), not as the float32's double."""
    value = np.asarray(json_value)
    if array.dtype.kind == "f":
        np.testing.assert_array_equal(value.astype(np.float32), array)
        assert all(float("%.9g" % v) == v for v in value.ravel())
    else:
        assert value.dtype.kind == "i"
        np.testing.assert_array_equal(value, array)


def test_rest_predict_row_format(loaded, images):
    reference = direct(loaded, images[:3])
    bodies = [
        {"instances": images[:3].tolist()},  # each instance is one image
        {"instances": [{"images": image} for image in images[:3].tolist()]},  # or its named inputs
        {"signature_name": "serving_default", "instances": images[:3].tolist()},
    ]
    for body in bodies:
        response = rest.rest_predict(loaded, json.loads(json.dumps(body)))
        assert list(response) == ["predictions"] and len(response["predictions"]) == 3
        for i, prediction in enumerate(response["predictions"]):
            assert set(prediction) == OUTPUTS
            for name in OUTPUTS:
                assert_same_values(prediction[name], reference[name][i])
        json.dumps(response, allow_nan=False)
    pixels = np.round(images[:2] * 255).astype(np.uint8)
    response = rest.rest_predict(loaded, {"signature_name": "serving_uint8", "instances": pixels.tolist()})
    expected = direct(loaded, pixels, "serving_uint8")["class_ids"].tolist()
    assert [p["class_ids"] for p in response["predictions"]] == expected


def test_rest_predict_columnar_format(loaded, images):
    reference = direct(loaded, images[:2])
    for body in ({"inputs": images[:2].tolist()}, {"inputs": {"images": images[:2].tolist()}}):
        response = rest.rest_predict(loaded, json.dumps(body))
        assert list(response) == ["outputs"] and set(response["outputs"]) == OUTPUTS
        for name in OUTPUTS:
            assert_same_values(response["outputs"][name], reference[name])


def test_rest_floats_are_written_as_tf_serving_writes_them():
    assert rest._decimal(np.float32(0.1)) == 0.1  # "%g" reads back as the same float32
    assert rest._decimal(np.float32(1 / 3)) == 0.333333343  # it does not: nine digits
    assert rest._decimal(np.float32(2.5e-7)) == 2.5e-07
    assert np.isnan(rest._decimal(np.float32("nan")))
    assert rest._to_json(np.array([[0.1, 1 / 3]], np.float32)) == [[0.1, 0.333333343]]
    assert rest._to_json(np.float32(0.1)) == 0.1 and rest._to_json(np.array([3], np.int64)) == [3]


@pytest.mark.parametrize(
    "body, message",
    [
        ({"instances": [], "signature_name": "serving_default"}, "No values in 'instances' array"),
        ({"instances": [[0.0]], "inputs": [[0.0]]}, "expecting only one of 'inputs' or 'instances'"),
        ({"examples": []}, "Missing 'inputs' or 'instances' key"),
        ({"signature_name": "nope", "instances": [0]}, 'Serving signature name: "nope" not found'),
        ({"signature_name": 3, "instances": [0]}, "'signature_name' key must be a string value"),
        ({"instances": [{"pixels": [0.0]}]}, "does not have named input: pixels"),
        ({"instances": [[[0.0]], [[0.0, 1.0]]]}, "Failed to process element: 1"),
        ({"instances": [[[0.0, 1.0], [0.0]]]}, "Encountered list at unexpected size: 1 at level: 1"),
        ({"instances": [[["a"]]]}, "is not a number"),
        ({"instances": [[[True]]]}, "is not of expected type: float32"),
        ({"inputs": [[[[0.0] * 1] * 28] * 27]}, "images"),  # 27 rows: the signature refuses the shape
        ({"signature_name": "serving_uint8", "inputs": [[[[0.5]] * 28] * 28]}, "is not of expected type: uint8"),
        ({"signature_name": "serving_uint8", "inputs": [[[[256]] * 28] * 28]}, "outside the range of uint8"),
        ({"inputs": {"pixels": [0.0]}}, "Missing named input: images in 'inputs' object."),
        ({"inputs": [[[[16777217]] * 28] * 28]}, "without loss of precision"),
    ],
)
def test_rest_predict_refuses_bad_requests(loaded, body, message):
    with pytest.raises(rest.RestError) as info:
        rest.rest_predict(loaded, body)
    assert message in str(info.value)
    assert info.value.body == {"error": str(info.value)}


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http_json(url, body=None, timeout=10):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


@pytest.mark.skipif(
    shutil.which("tensorflow_model_server") is None,
    reason="tensorflow_model_server is not on PATH (no Debian or PyPI package ships it; "
    "run where TF Serving is installed, e.g. inside the tensorflow/serving image)",
)
def test_real_tensorflow_model_server_answers_like_rest_predict(exported, loaded, images, tmp_path):
    base = os.path.dirname(exported)
    name = os.path.basename(base)
    rest_port = _free_port()
    grpc_port = _free_port()
    with open(tmp_path / "server.log", "wb") as log:
        server = subprocess.Popen(
            ["tensorflow_model_server", f"--port={grpc_port}", f"--rest_api_port={rest_port}",
             f"--model_name={name}", f"--model_base_path={base}"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{rest_port}/v1/models/{name}"
        server_log = (tmp_path / "server.log").read_text
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server_log()
            assert time.monotonic() < deadline, "no AVAILABLE version after 60 s:\n" + server_log()
            try:
                status = _http_json(url, timeout=2)
                if any(v.get("state") == "AVAILABLE" for v in status.get("model_version_status", [])):
                    break
            except (urllib.error.URLError, ConnectionError, ValueError):
                pass
            time.sleep(0.5)
        for body in ({"instances": images[:2].tolist()}, {"inputs": {"images": images[:2].tolist()}}):
            served = _http_json(url + ":predict", body)
            expected = rest.rest_predict(loaded, body)
            assert served.keys() == expected.keys()
            if "predictions" in served:
                served = {k: [p[k] for p in served["predictions"]] for k in OUTPUTS}
                expected = {k: [p[k] for p in expected["predictions"]] for k in OUTPUTS}
            else:
                served, expected = served["outputs"], expected["outputs"]
            for k in OUTPUTS:  # the server runs its own TensorFlow build: floats agree to rounding
                if k in ("logits", "probabilities"):
                    np.testing.assert_allclose(np.asarray(served[k]), np.asarray(expected[k]), rtol=0, atol=1e-5)
                else:
                    assert served[k] == expected[k], k
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


# --------------------------------------------------------------------------- versions
def test_versions_count_up_and_are_never_overwritten(trained, workdir, tmp_path):
    config = workdirs.load_trained(workdir)[1]
    base = str(tmp_path / "models" / "fmnist_pcl")
    assert versions.next_version(base) == 1
    assert export.export(trained, config, base) == os.path.join(base, "1")
    assert export.export(trained, config, base, version=5) == os.path.join(base, "5")
    assert versions.next_version(base) == 6
    before = tree(base)
    with pytest.raises(versions.ExportError, match="version 5 already exists"):
        export.export(trained, config, base, version=5)
    os.mkdir(os.path.join(base, "007"))  # TF Serving reads this as version 7
    with pytest.raises(versions.ExportError, match="version 7 already exists"):
        export.export(trained, config, base, version=7)
    for bad in (0, -1, 2.5, "3", True):
        with pytest.raises(versions.ExportError, match="not a positive integer"):
            export.export(trained, config, base, version=bad)
    assert tree(base) == before | {"007"}


def test_version_appears_whole_or_not_at_all(trained, workdir, tmp_path, monkeypatch):
    config = workdirs.load_trained(workdir)[1]
    base = str(tmp_path / "fmnist_pcl")
    seen = {}
    rename = os.rename

    def watching_rename(src, dst):
        seen["listing"] = sorted(os.listdir(base))  # what a polling TF Serving sees just before
        seen["complete"] = sorted(os.listdir(src))
        rename(src, dst)

    monkeypatch.setattr(os, "rename", watching_rename)
    export.export(trained, config, base)
    assert len(seen["listing"]) == 1 and seen["listing"][0].startswith(".1.tmp-")  # not a version name
    assert {"saved_model.pb", "variables", "assets.extra"} <= set(seen["complete"])

    def failing_save(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tf.saved_model, "save", failing_save)
    with pytest.raises(versions.ExportError, match="No space left on device"):
        export.export(trained, config, base)
    assert os.listdir(base) == ["1"]
    fresh = tmp_path / "new" / "deeper"
    with pytest.raises(versions.ExportError):
        export.export(trained, config, str(fresh))
    assert not (tmp_path / "new").exists()  # the directories it made for itself are gone too


def test_softmax_model_has_no_prototype_output(tmp_path):
    config = load_config("smoke,softmax")
    model = training_setup.build_model(config)
    path = export.export(model, config, str(tmp_path / "softmax"))
    serve = tf.saved_model.load(path).signatures["serving_default"]
    assert set(serve.structured_outputs) == OUTPUTS - {"prototype_class_ids"}
    metadata = export.read_metadata(path)
    assert metadata["pcl"]["prototype_feature"] is None and metadata["reports"] == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through directory permissions")
def test_unwritable_export_dir_is_refused(trained, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(versions.ExportError, match="not writable"):
        versions.check_destination(str(locked / "model"))


# --------------------------------------------------------------------------- pcl-export
def pcl_export(*args):
    return subprocess.run([sys.executable, "-m", "pcl_tf.cli.export", *args],
                          capture_output=True, text=True, env=ENV, timeout=180)  # fmt: skip


def test_cli_exports_the_requested_version(workdir, tmp_path):
    base = tmp_path / "exports" / "fmnist_pcl"
    proc = pcl_export(f"--workdir={workdir}", f"--export_dir={base}", "--version=3")
    assert proc.returncode == 0, proc.stderr
    assert os.listdir(base) == ["3"]
    assert f"as version 3: {base / '3'}" in proc.stdout
    assert f"--model_name=fmnist_pcl --model_base_path={base}" in proc.stdout


@pytest.mark.parametrize("case", ["missing workdir", "existing version", "unwritable export dir",
                                  "non-integer version", "zero version"])  # fmt: skip
def test_cli_bad_input_exits_2_with_one_line_and_writes_nothing(case, workdir, tmp_path):
    root = tmp_path / "exports"
    (root / "fmnist_pcl" / "1").mkdir(parents=True)
    (root / "a_file").write_text("not a directory")
    args = {
        "missing workdir": [f"--workdir={tmp_path / 'nope'}", f"--export_dir={root / 'new'}"],
        "existing version": [f"--workdir={workdir}", f"--export_dir={root / 'fmnist_pcl'}", "--version=1"],
        "unwritable export dir": [f"--workdir={workdir}", f"--export_dir={root / 'a_file' / 'model'}"],
        "non-integer version": [f"--workdir={workdir}", f"--export_dir={root / 'new'}", "--version=two"],
        "zero version": [f"--workdir={workdir}", f"--export_dir={root / 'new'}", "--version=0"],
    }[case]
    before = tree(root)
    proc = pcl_export(*args)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("pcl-export: error: "), proc.stderr
    assert tree(root) == before


def test_slim_copy_evaluates_like_the_original_and_is_small(workdir, trained, images, tmp_path):
    copy = workdirs.slim_copy(workdir, str(tmp_path / "slim"))
    model = workdirs.load_trained(copy)[0]
    np.testing.assert_array_equal(model.inference_model()(images).numpy(), trained.inference_model()(images).numpy())
    np.testing.assert_array_equal(model.centroid_variables[0].numpy(), trained.centroid_variables[0].numpy())
    assert sorted(os.listdir(copy)) == ["SLIM_COPY", "checkpoints", "config.json", "metrics.json", "reports"]
    assert workdirs.is_slim_copy(copy) and not workdirs.is_slim_copy(workdir)
    size = lambda d: sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(d) for f in fs)
    assert size(copy) < size(workdir) / 3  # no optimizer slots, one checkpoint, no logs
    with pytest.raises(workdirs.WorkdirError, match="already exists"):
        workdirs.slim_copy(workdir, copy)


def test_slim_copy_reports_carry_no_machine_paths(workdir, tmp_path):
    """A slim copy leaves the machine (models/ in the repository): its reports name the model by
    the copy's name and a black-box source by its base name, not by this machine's paths."""
    original = str(tmp_path / "run")
    shutil.copytree(workdir, original)
    source = str(tmp_path / "elsewhere" / "vgg19_source")
    os.makedirs(os.path.join(original, "reports"), exist_ok=True)
    rep = {"model": {"workdir": original, "dataset": "mnist"}, "threat_model": "black-box", "source_model": source,
           "eps": 0.3, "num_examples": 10, "clean_accuracy": 0.9, "attacks": {"fgsm": {"robust_accuracy": 0.5}},
           "worst_case": {"robust_accuracy": 0.5}, "environment": {"date": "2026"}}
    report.write(os.path.join(original, "reports", "blackbox_fgsm"), [rep])
    io_utils.write_json_atomic(os.path.join(original, "reports", "transfer_fgsm.json"), {
        "method": "fgsm", "params": {"eps": 0.3}, "accuracy": {original: {original: 0.1, source: 0.5},
                                                                source: {original: 0.6, source: 0.0}}})
    copy = workdirs.slim_copy(original, str(tmp_path / "shipped" / "fmnist_pcl"))
    text = "".join(open(os.path.join(copy, "reports", f)).read() for f in sorted(os.listdir(os.path.join(copy, "reports"))))
    assert str(tmp_path) not in text
    shipped = io_utils.read_json(os.path.join(copy, "reports", "blackbox_fgsm.json"))[0]
    assert (shipped["model"]["workdir"], shipped["source_model"]) == ("fmnist_pcl", "vgg19_source")
    matrix = io_utils.read_json(os.path.join(copy, "reports", "transfer_fgsm.json"))["accuracy"]
    assert matrix == {"fmnist_pcl": {"fmnist_pcl": 0.1, "vgg19_source": 0.5},
                      "vgg19_source": {"fmnist_pcl": 0.6, "vgg19_source": 0.0}}
    # The original's reports are untouched: the copy is rewritten, never the source.
    assert io_utils.read_json(os.path.join(original, "reports", "blackbox_fgsm.json"))[0]["source_model"] == source

