"""experiments/reproduce_render.py and the reproduction plan: the tables in docs/RESULTS.md are what
the shipped models' reports give, and the budget runs' last snapshots are evaluated and rendered
in the paper's Table 2 / Table 5 layouts with a 95 % interval in every cell."""

import os
import sys

import pytest

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
sys.path.insert(0, os.path.join(REPO, "experiments"))

import reproduce_fmnist as plan  # noqa: E402
import reproduce_render as render  # noqa: E402

from pcl_tf import io_utils  # noqa: E402


def _root_of_shipped_models(tmp_path):
    """A reproduction root whose run directories are the slim copies shipped in models/."""
    for run in plan.MAIN_RUNS:
        shipped = os.path.join(REPO, "models", f"fmnist_cnn6_{run.name}")
        if not os.path.isdir(shipped):
            pytest.skip(f"models/fmnist_cnn6_{run.name} is not shipped")
        os.symlink(os.path.abspath(shipped), tmp_path / run.name)
    return str(tmp_path)


@pytest.mark.parametrize("section", ["_table2", "_table5"])
def test_results_md_tables_are_what_the_shipped_reports_give(tmp_path, section):
    text = getattr(render, section)(_root_of_shipped_models(tmp_path))
    with open(os.path.join(REPO, "docs", "RESULTS.md"), encoding="utf-8") as f:
        assert text in f.read()


def test_the_plan_evaluates_each_budget_runs_last_snapshot_in_the_table_layouts(tmp_path):
    steps = {step.name: step for step in plan.plan(str(tmp_path), plan.Sizes())["budget_evaluate"]}
    for run in plan.BUDGET_RUNS:
        snapshot = plan.budget_snapshot(str(tmp_path), run.name, plan.BUDGET_FINAL_EPOCH)
        full, cw = steps[f"budget_{run.name}_final_full"], steps[f"budget_{run.name}_final_cw"]
        assert f"--workdir={snapshot}" in full.args and f"--workdir={snapshot}" in cw.args
        assert f"--method={plan.FULL_WITHOUT_CW}" in full.args and "--eps=0.3,0.1" in full.args
        assert f"--num_examples={plan.BUDGET_EXAMPLES}" in full.args
        assert "--method=cw" in cw.args and f"--num_examples={plan.BUDGET_CW_EXAMPLES}" in cw.args
        # each waits for the snapshot of a still-running training, and is done when its report exists
        assert full.needs == cw.needs == os.path.join(snapshot, "metrics.json")
        assert full.done_when == plan.budget_result(str(tmp_path), run.name, plan.BUDGET_FINAL_EPOCH, "_full") + ".json"


def _report(eps, n, clean, counts, worst):
    return {"eps": eps, "num_examples": n, "clean_accuracy": clean / n,
            "attacks": {a: {"robust_count": c, "robust_accuracy": c / n} for a, c in counts.items()},
            "worst_case": {"robust_count": worst, "robust_accuracy": worst / n}}


def test_final_tables_give_every_cell_its_wilson_interval_and_mark_what_is_missing(tmp_path):
    root = str(tmp_path)
    pcl, softmax = (run.name for run in plan.BUDGET_RUNS[::-1])
    counts = {"fgsm": 400, "bim": 50, "mim": 60, "pgd": 48, "adaptive": 10, "feature": 12, "apgd-ce": 5,
              "apgd-t": 1, "square": 1, "pgd-restarts": 0}
    full = [_report(0.3, 1000, 930, counts, 0), _report(0.1, 1000, 930, dict(counts, pgd=48), 1)]
    os.makedirs(os.path.join(root, "results", "budget"))
    io_utils.write_json_atomic(plan.budget_result(root, pcl, plan.BUDGET_FINAL_EPOCH, "_full") + ".json", full)
    io_utils.write_json_atomic(plan.budget_result(root, pcl, plan.BUDGET_FINAL_EPOCH, "_cw") + ".json",
                               [_report(0.3, 100, 93, {"cw": 0}, 0)])
    text = render._budget_final_tables(root)
    table2 = text[text.index("ε = 0.3 (Table 2"):text.index("ε = 0.1 (Table 5")]
    pcl_row = next(line for line in table2.splitlines() if line.startswith("| Ours (PCL), 44 epochs"))
    cells = [c.strip() for c in pcl_row.strip("|").split("|")]
    assert cells[1] == "1000"
    assert cells[2] == "93.0 [91.2, 94.4]"  # Wilson 95 % for 930/1000
    assert cells[3] == "40.0 [37.0, 43.1]"  # FGSM, 400/1000
    assert cells[5] == "0.0 [0.0, 3.7] (100)"  # C&W, 0/100
    assert cells[8:12] == ["–"] * 4  # no black-box for these models
    assert cells[-1] == "**0.0 [0.0, 0.4]**"
    assert any(line.startswith("| *paper: Ours (PCL), 350 epochs*") for line in table2.splitlines())
    # the softmax run has no report yet: pending, not zero
    softmax_row = next(line for line in table2.splitlines() if line.startswith("| Softmax, 44 epochs"))
    assert "pending" in softmax_row and "0.0" not in softmax_row


def _a_trained_cnn6():
    """A real trained CNN-6 work dir the repository carries: the PCL budget run's last snapshot
    while it is stashed, its shipped slim copy after."""
    for candidate in (os.path.join(REPO, "models", "in_progress", "paper8_pcl", "snapshots", "epoch_044"),
                      os.path.join(REPO, "models", plan.shipped_name("paper8_pcl"))):
        if os.path.isfile(os.path.join(candidate, "metrics.json")):
            return candidate
    pytest.skip("no trained paper8_pcl CNN-6 in models/")


def test_ship_writes_a_portable_slim_copy_with_the_curves_reports_and_never_overwrites(tmp_path, capsys):
    import shutil

    root, models = str(tmp_path / "root"), str(tmp_path / "models")
    run = "paper8_pcl"
    for epoch in plan.BUDGET_SNAPSHOTS:
        snapshot = plan.budget_snapshot(root, run, epoch)
        if epoch == plan.BUDGET_FINAL_EPOCH:
            shutil.copytree(_a_trained_cnn6(), snapshot, ignore=shutil.ignore_patterns("reports", "snapshots"))
        else:
            os.makedirs(snapshot)
            io_utils.write_json_atomic(os.path.join(snapshot, "metrics.json"), {"epoch": epoch})
        suffixes = ("", "_full", "_cw") if epoch == plan.BUDGET_FINAL_EPOCH else ("",)
        for suffix in suffixes:  # minimal reports naming the snapshot by this machine's absolute path
            io_utils.write_json_atomic(plan.budget_result(root, run, epoch, suffix) + ".json",
                                       [{"eps": 0.1, "model": {"workdir": os.path.abspath(snapshot)}, "source_model": None}])
    shipped = plan.ship(root, models)
    destination = os.path.join(models, plan.shipped_name(run))
    assert shipped == [destination]
    assert "[not shipped] paper8_softmax" in capsys.readouterr().out  # not trained in this root
    assert sorted(os.listdir(os.path.join(destination, "reports"))) == sorted(
        os.path.basename(plan.budget_result(root, run, e, s)) + ".json"
        for e in plan.BUDGET_SNAPSHOTS for s in (("", "_full", "_cw") if e == plan.BUDGET_FINAL_EPOCH else ("",)))
    for epoch in plan.BUDGET_SNAPSHOTS:
        assert io_utils.read_json(os.path.join(destination, "snapshots", f"epoch_{epoch:03d}", "metrics.json"))
        named = io_utils.read_json(os.path.join(destination, "reports", f"{run}_epoch_{epoch:03d}.json"))
        assert named[0]["model"]["workdir"] == f"{plan.shipped_name(run)}@epoch_{epoch:03d}"
    assert os.path.isfile(os.path.join(destination, "SLIM_COPY"))
    assert not [n for n in os.listdir(models) if n.startswith(".")]  # no scratch left behind
    before = sorted(os.walk(destination))
    assert plan.ship(root, models) == [] and sorted(os.walk(destination)) == before
    # the budget curve renders from the shipped copy alone
    rebuilt = plan.budget_root(models, str(tmp_path / "rebuilt"))
    points = [p for p in render._budget_points(rebuilt) if p["run"].name == run]
    assert [p["metrics"]["epoch"] for p in points[:-1]] == list(plan.BUDGET_SNAPSHOTS[:-1])
    assert all(p["reports"] for p in points)


def test_results_md_budget_curve_is_what_the_shipped_budget_runs_give(tmp_path):
    if not all(os.path.isdir(os.path.join(REPO, "models", plan.shipped_name(r.name))) for r in plan.BUDGET_RUNS):
        pytest.skip("the budget runs are not all shipped yet (models/in_progress carries them)")
    root = plan.budget_root(os.path.join(REPO, "models"), str(tmp_path / "root"))
    text = render._budget_curve(root, str(tmp_path / "figures"))
    with open(os.path.join(REPO, "docs", "RESULTS.md"), encoding="utf-8") as f:
        assert text in f.read()


def test_a_shipped_budget_run_counts_as_trained_and_evaluated(tmp_path):
    models = tmp_path / "models"
    shipped = models / plan.shipped_name("paper8_pcl") / "metrics.json"
    shipped.parent.mkdir(parents=True)
    shipped.write_text("{}")
    stages = plan.plan(str(tmp_path / "root"), plan.Sizes(), str(models))
    steps = stages["budget_train"] + stages["budget_evaluate"]
    pcl = [s for s in steps if "paper8_pcl" in s.name]
    softmax = [s for s in steps if "paper8_softmax" in s.name]
    assert len(pcl) == len(softmax) == 1 + len(plan.BUDGET_SNAPSHOTS) + 2
    assert all(s.done_when == str(shipped) and not s.needs for s in pcl)
    assert not any(s.done_when == str(shipped) for s in softmax)
