"""experiments/stash.py: what carries a long experiment across sessions — the newest checkpoint,
the run's files and snapshots, finished results — and what stays behind; seeding resumes only
runs the root does not already have further along."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "experiments"))

import stash  # noqa: E402


def _write(path, text="x"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def _run(root, name, steps=(100, 200)):
    """A pcl-train-shaped work dir: config, metrics, history, two checkpoints, a snapshot, logs."""
    d = os.path.join(root, name)
    for f in ("config.json", "metrics.json", "history.json"):
        _write(os.path.join(d, f), "{}")
    for step in steps:
        _write(os.path.join(d, "checkpoints", f"ckpt-{step}.index"))
        _write(os.path.join(d, "checkpoints", f"ckpt-{step}.data-00000-of-00001"))
    _write(os.path.join(d, "checkpoints", "checkpoint"), f'model_checkpoint_path: "ckpt-{steps[-1]}"\n')
    _write(os.path.join(d, "snapshots", "epoch_001", "config.json"), "{}")
    _write(os.path.join(d, "snapshots", "epoch_001", "metrics.json"), "{}")
    _write(os.path.join(d, "best_robust", "config.json"), "{}")
    _write(os.path.join(d, "best_robust", "best_robust.json"), '{"epoch": 1}')
    _write(os.path.join(d, "best_robust", "checkpoints", "ckpt-1.index"))
    _write(os.path.join(d, "tensorboard", "events.out"))
    _write(os.path.join(d, "reports", "whitebox.json.partial"))
    return d


def test_stash_carries_the_newest_checkpoint_and_finished_results_only(tmp_path):
    root, dest = str(tmp_path / "root"), str(tmp_path / "stash")
    _run(root, "madry_30min")
    _run(root, os.path.join("calibrate", "madry"))
    _write(os.path.join(root, "results", "madry_at0.1.json"), "[]")
    _write(os.path.join(root, "results", "madry_at0.1.json.partial"))
    _write(os.path.join(root, "logs", "train.log"))
    assert stash.workdirs(root) == [os.path.join("calibrate", "madry"), "madry_30min"]

    assert stash.stash(root, dest, without_weights=["calibrate"]) == [os.path.join("calibrate", "madry"), "madry_30min"]
    run = os.path.join(dest, "madry_30min")
    assert sorted(os.listdir(os.path.join(run, "checkpoints"))) == [
        "checkpoint", "ckpt-200.data-00000-of-00001", "ckpt-200.index"]
    assert sorted(os.listdir(run)) == ["best_robust", "checkpoints", "config.json", "history.json", "metrics.json",
                                       "snapshots"]
    assert os.path.exists(os.path.join(run, "snapshots", "epoch_001", "metrics.json"))
    # Robust early stopping's kept epoch, which the benchmark evaluates, travels whole.
    assert os.path.exists(os.path.join(run, "best_robust", "checkpoints", "ckpt-1.index"))
    # Without weights: the records, and the kept point's (its JSON files, which the tables read) alone.
    assert sorted(os.listdir(os.path.join(dest, "calibrate", "madry"))) == ["best_robust", "config.json", "history.json",
                                                                            "metrics.json"]
    assert sorted(os.listdir(os.path.join(dest, "calibrate", "madry", "best_robust"))) == ["best_robust.json",
                                                                                           "config.json"]
    assert os.listdir(os.path.join(dest, "results")) == ["madry_at0.1.json"]
    assert not os.path.exists(os.path.join(dest, "logs"))
    assert not [n for n in os.listdir(dest) if n.startswith(".")]


def test_the_stashed_checkpoint_index_is_one_tensorflow_reads(tmp_path):
    import tensorflow as tf

    root, dest = str(tmp_path / "root"), str(tmp_path / "stash")
    _run(root, "run")
    stash.stash(root, dest)
    found = tf.train.get_checkpoint_state(os.path.join(dest, "run", "checkpoints"))
    assert os.path.basename(found.model_checkpoint_path) == "ckpt-200"
    assert [os.path.basename(p) for p in found.all_model_checkpoint_paths] == ["ckpt-200"]


def test_a_second_stash_replaces_the_first(tmp_path):
    root, dest = str(tmp_path / "root"), str(tmp_path / "stash")
    _run(root, "run", steps=(100,))
    stash.stash(root, dest)
    _run(root, "run", steps=(100, 300))
    stash.stash(root, dest)
    assert sorted(os.listdir(os.path.join(dest, "run", "checkpoints"))) == [
        "checkpoint", "ckpt-300.data-00000-of-00001", "ckpt-300.index"]


def test_unstash_seeds_only_runs_the_root_lacks(tmp_path):
    root, dest, fresh = str(tmp_path / "root"), str(tmp_path / "stash"), str(tmp_path / "fresh")
    _run(root, "a", steps=(100,))
    _run(root, "b", steps=(100,))
    _write(os.path.join(root, "results", "a.json"), "[]")
    stash.stash(root, dest)
    _run(fresh, "b", steps=(500,))  # this root's own b is further along: kept
    os.makedirs(os.path.join(fresh, "a"))  # a work dir without a checkpoint: replaced
    assert stash.unstash(fresh, dest) == ["a"]
    assert os.path.exists(os.path.join(fresh, "a", "checkpoints", "ckpt-100.index"))
    assert os.path.exists(os.path.join(fresh, "b", "checkpoints", "ckpt-500.index"))
    assert os.path.exists(os.path.join(fresh, "results", "a.json"))
    assert stash.unstash(fresh, str(tmp_path / "no_such_stash")) == []


def test_an_unfinished_evaluations_journal_travels_until_its_report_is_written(tmp_path):
    root, dest, fresh = str(tmp_path / "root"), str(tmp_path / "stash"), str(tmp_path / "fresh")
    _run(root, "madry")
    journal = os.path.join("results", "madry_at0.1_n1000.partial", "0123abcd.npz")
    _write(os.path.join(root, journal), "batches")
    _write(os.path.join(root, "results", "madry_at0.1_n1000.partial", ".0123abcd.npz.tmp"))  # a write under way
    stash.stash(root, dest)
    assert os.listdir(os.path.join(dest, "results", "madry_at0.1_n1000.partial")) == ["0123abcd.npz"]
    # A new session resumes the evaluation from it ...
    stash.unstash(fresh, dest)
    assert open(os.path.join(fresh, journal)).read() == "batches"
    # ... which finishes: the report is written and pcl-attack drops the journal. The next stash
    # carries the report and no journal; a root that has the report never takes the journal back.
    _write(os.path.join(fresh, "results", "madry_at0.1_n1000.json"), "[]")
    os.remove(os.path.join(fresh, journal))
    os.rmdir(os.path.join(fresh, "results", "madry_at0.1_n1000.partial"))
    stash.stash(fresh, dest)
    assert sorted(os.listdir(os.path.join(dest, "results"))) == ["madry_at0.1_n1000.json"]
    _write(os.path.join(root, "results", "madry_at0.1_n1000.json"), "[]")
    os.remove(os.path.join(root, journal))
    _write(os.path.join(dest, journal), "stale")
    stash.unstash(root, dest)
    assert not os.path.exists(os.path.join(root, journal))


def test_a_drivers_stash_stage_needs_a_folder_and_stops_the_driver(tmp_path):
    import argparse

    import pytest

    parser = argparse.ArgumentParser()
    parser.add_argument("--root")
    parser.add_argument("--stage")
    parser.add_argument("--dry_run", action="store_true")
    stash.add_flag(parser)
    root = str(tmp_path / "root")
    _run(root, "run")
    with pytest.raises(SystemExit) as exit_info:  # parser.error: one usage line, exit 2
        stash.handle(parser.parse_args([f"--root={root}", "--stage=stash"]), parser)
    assert exit_info.value.code == 2
    args = parser.parse_args([f"--root={root}", "--stage=stash", f"--stash={tmp_path / 'stash'}"])
    assert stash.handle(args, parser) is True and os.path.isdir(tmp_path / "stash" / "run")
    fresh = parser.parse_args([f"--root={tmp_path / 'fresh'}", "--stage=all", f"--stash={tmp_path / 'stash'}"])
    assert stash.handle(fresh, parser) is False and os.path.isdir(tmp_path / "fresh" / "run" / "checkpoints")


def test_a_folder_or_file_that_cannot_be_written_stops_a_driver_before_it_writes(tmp_path, capsys):
    """A file where a folder should be (or an unwritable ancestor): one usage line, exit 2, nothing copied."""
    import pytest

    import reproduce_fmnist

    root, blocker = str(tmp_path / "root"), tmp_path / "a_file"
    _run(root, "paper8_softmax")
    blocker.write_text("keep me")
    for argv, flag in ((["--stage=stash", f"--stash={blocker}/stash"], "--stash"),
                       (["--stage=ship", f"--models_dir={blocker}"], "--models_dir"),
                       (["--stage=render", f"--results={blocker}/RESULTS.md"], "--results")):
        with pytest.raises(SystemExit) as exit_info:
            reproduce_fmnist.main([f"--root={root}", *argv])
        assert exit_info.value.code == 2
        message = capsys.readouterr().err.strip().splitlines()[-1]
        assert flag in message and "cannot be written" in message and str(blocker) in message
    assert blocker.read_text() == "keep me"
    assert sorted(os.listdir(tmp_path)) == ["a_file", "root"]


def test_a_finished_run_can_travel_with_its_kept_weights_only(tmp_path):
    """kept_weights_only: best_robust/ whole (the weights an evaluation loads), no training checkpoint;
    unstashed, the run is finished and its kept point loadable. A run without a loadable kept point
    keeps its checkpoint."""
    root, dest, again = str(tmp_path / "root"), str(tmp_path / "stash"), str(tmp_path / "again")
    _run(root, "trades_60min")
    _run(root, "no_kept_point")
    _write(os.path.join(root, "trades_60min", "best_robust", "checkpoints", "checkpoint"), 'model_checkpoint_path: "ckpt-1"\n')
    assert stash.stash(root, dest, kept_weights_only=["trades_60min", "no_kept_point"]) == ["no_kept_point", "trades_60min"]
    run = os.path.join(dest, "trades_60min")
    assert sorted(os.listdir(run)) == ["best_robust", "config.json", "history.json", "metrics.json"]
    assert sorted(os.listdir(os.path.join(run, "best_robust", "checkpoints"))) == ["checkpoint", "ckpt-1.index"]
    assert "checkpoints" in os.listdir(os.path.join(dest, "no_kept_point"))

    assert "trades_60min" in stash.unstash(again, dest)
    assert os.path.exists(os.path.join(again, "trades_60min", "metrics.json"))
    assert os.path.exists(os.path.join(again, "trades_60min", "best_robust", "checkpoints", "ckpt-1.index"))


def test_a_run_seeded_with_its_kept_weights_only_is_stashed_again_and_slimmed_once_shipped(tmp_path):
    """A finished run that came back from a kept-point-only stash has no training checkpoint: a later
    stash keeps its kept point's weights, and drops them once the run is listed without weights
    (shipped elsewhere); a run seeded with its records alone is left as it is."""
    root, dest, again = str(tmp_path / "root"), str(tmp_path / "stash"), str(tmp_path / "again")
    _run(root, "madry_60min")
    _write(os.path.join(root, "madry_60min", "best_robust", "checkpoints", "checkpoint"), 'model_checkpoint_path: "ckpt-1"\n')
    _run(root, "shipped_before")
    stash.stash(root, dest, kept_weights_only=["madry_60min"], without_weights=["shipped_before"])
    stash.unstash(again, dest)
    assert not os.path.exists(os.path.join(again, "madry_60min", "checkpoints"))

    second = str(tmp_path / "second")
    assert stash.stash(again, second) == ["madry_60min"]
    kept = os.path.join(second, "madry_60min", "best_robust", "checkpoints")
    assert sorted(os.listdir(kept)) == ["checkpoint", "ckpt-1.index"]

    assert stash.stash(again, second, without_weights=["madry_60min"]) == ["madry_60min"]
    run = os.path.join(second, "madry_60min")
    assert sorted(os.listdir(os.path.join(run, "best_robust"))) == ["best_robust.json", "config.json"]  # records
    assert sorted(os.listdir(run)) == ["best_robust", "config.json", "history.json", "metrics.json"]
