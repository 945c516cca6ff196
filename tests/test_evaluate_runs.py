"""pcl_tf.evaluate_runs without a model: where reports go (a slim copy's elsewhere) and --compare's
table from the reports already in work dirs. (The evaluations themselves run through pcl-attack
in tests/test_robustness.py, tests/test_attack_resume.py and tests/test_shipped_models.py.)"""

import os

import pytest

from pcl_tf import evaluate_runs, io_utils, workdir as workdirs

REPORT = {"model": {"dataset": "fashion_mnist"}, "threat_model": "white-box", "eps": 0.1, "num_examples": 10,
          "clean_accuracy": 0.9, "attacks": {"fgsm": {"robust_accuracy": 0.5}, "pgd": {"robust_accuracy": 0.25}},
          "worst_case": {"robust_accuracy": 0.25}, "environment": {"date": "2026-12-02"}}


def test_reports_go_next_to_a_model_but_never_into_a_slim_copy(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run, shipped = tmp_path / "run", tmp_path / "models" / "fmnist_pcl"
    run.mkdir()
    shipped.mkdir(parents=True)
    io_utils.write_text_atomic(str(shipped / workdirs.SLIM_COPY_MARKER), "slim\n")
    assert evaluate_runs.reports_dir(str(run)) == os.path.join(str(run), "reports")
    assert evaluate_runs.reports_dir(str(shipped)) == os.path.join(evaluate_runs.SLIM_COPY_REPORTS, "fmnist_pcl")
    # Earlier reports of a slim copy: the ones shipped inside it, then ours.
    assert evaluate_runs.report_dirs(str(shipped)) == [os.path.join(str(shipped), "reports"),
                                                       os.path.join("pcl_reports", "fmnist_pcl")]


def test_compare_tables_the_reports_in_each_work_dir_and_refuses_one_without(tmp_path):
    run = tmp_path / "run"
    os.makedirs(run / "reports")
    io_utils.write_json_atomic(str(run / "reports" / "whitebox_fgsm_pgd_eps0.1_n10_seed0.json"),
                               [dict(REPORT, model={"workdir": str(run), "dataset": "fashion_mnist"})])
    table = evaluate_runs.compare([str(run)], output=str(tmp_path / "table"))
    assert str(run) in table and "50.0" in table and "25.0" in table
    assert (tmp_path / "table.md").read_text() == table
    with pytest.raises(ValueError, match="has no reports yet"):
        evaluate_runs.compare([str(tmp_path / "empty")])


def test_an_evaluations_identity_follows_the_checkpoints_content_not_its_file_dates(tmp_path):
    """A journal resumes on a copy of the same model (a stash carried to a new machine, whose files
    get new dates) but not on a model retrained under the same checkpoint name."""
    workdir = str(tmp_path / "run")
    checkpoints = os.path.join(workdir, "checkpoints")
    os.makedirs(checkpoints)
    with open(os.path.join(checkpoints, "checkpoint"), "w") as f:
        f.write('model_checkpoint_path: "ckpt-5"\n')
    index = os.path.join(checkpoints, "ckpt-5.index")
    with open(index, "wb") as f:
        f.write(b"tensor checksums of the first training")
    settings = evaluate_runs.AttackSettings(batch_size=250)
    first = evaluate_runs._identity([workdir], settings)
    os.utime(index, (1, 1))  # copied: another date, the same bytes
    assert evaluate_runs._identity([workdir], settings) == first
    with open(index, "wb") as f:
        f.write(b"tensor checksums of a retrained model")
    assert evaluate_runs._identity([workdir], settings) != first
