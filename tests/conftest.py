"""Test tiers: every test runs in `make test` (CI); `make test-fast` (``pytest -m "not slow"``)
skips the ones marked slow here, for the inner loop.

Slow = each takes seconds to minutes on the project's 2-core CPU VM because it trains a real
model, runs a pcl_tf command as a subprocess (TensorFlow's import alone is ~5 s), or evaluates on
real data. Measured with ``pytest --durations=0`` on 2026-12-02: these modules and tests were ~33
of the suite's 34 minutes there.
"""

import pytest

# Whole modules: each test is a subprocess or shares a trained-model fixture.
SLOW_MODULES = {
    "test_bad_input", "test_shipped_models", "test_resume", "test_attack_resume", "test_multi_worker",
    "test_distribute", "test_apgd_vs_art", "test_mixed_precision", "test_robustness",
}
# Single tests in otherwise fast modules.
SLOW_TESTS = {
    "test_every_config_trains_end_to_end_on_mock_data",
    "test_official_adversarial_recipe_trains_end_to_end_on_mock_data",
    "test_rerun_resumes_instead_of_retraining_and_load_trained_restores",
    "test_time_budget_stops_at_a_step_boundary_and_a_rerun_trains_no_further",
    "test_the_console_is_quiet_unless_verbosity_is_asked_for",
    "test_snapshots_are_loadable_work_dirs_and_survive_a_resume",
    "test_robust_early_stopping_logs_every_epoch_and_keeps_the_most_robust",
    "test_a_rerun_with_other_settings_is_refused_naming_the_fields_and_keeps_config_json",
    "test_fmnist_prepared_offline_equals_raw_idx",
    "test_mnist_prepared_offline_from_keras_npz",
    "test_cli_missing_dataset_exits_2",
    "test_cli_unknown_dataset_exits_2_with_one_line",
    "test_cli_bad_input_exits_2_with_one_line_and_writes_nothing",
    "test_version_appears_whole_or_not_at_all",
    "test_versions_count_up_and_are_never_overwritten",
    "test_saved_model_cli_run_on_a_saved_npy",
    "test_fresh_process_without_pcl_tf_reproduces_keras",
    "test_cli_exports_the_requested_version",
    "test_audit_passes_an_adversarially_trained_model",
    "test_docs_example_runs_as_written",  # trains, attacks and exports CNN-6 (~1-2 min)
    "test_one_resnet_training_step_is_as_exact_as_with_keras_batch_norm",  # three ResNet-20s
    # Measured for the fast tier (pytest -m "not slow" --durations=30, 2026-12-02, issue 17):
    "test_cli_reports_prepared_dataset",  # prepares real Fashion-MNIST (~30 s), then a pcl-data subprocess
    "test_saved_model_cli_show_lists_the_signatures",  # a saved_model_cli subprocess (~7 s)
    # The next slowest (pytest -m "not slow" --durations=25, 2026-12-02, two trainings sharing the cores):
    "test_audit_flags_a_gradient_masked_model",  # trains a masked model, then the whole audit (~12 s)
    "test_official_advpgd_settings_and_fixed_pgd_step",  # ~8 s
    "test_cw_l2_in_chunks_with_binary_search",  # ~6 s
}
# Single parametrizations (``item.name``) of otherwise fast tests.
# ResNet-110 (~3-8 s to build each time) everywhere but its parameter count; ResNet-20 runs the same
# code paths in the fast tier.
_RESNET110 = "[resnet110-32x32x3-layer3:512+layer4+fc1024]"
SLOW_PARAMS = {name + _RESNET110 for name in (
    "test_branch_ce_adds_aux_logits", "test_tap_names", "test_tap_shapes", "test_output_keys_and_shapes",
    "test_logits_model_shares_weights", "test_unknown_tap_names_available_taps")}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if (item.module.__name__.rsplit(".", 1)[-1] in SLOW_MODULES or item.originalname in SLOW_TESTS
                or item.name in SLOW_PARAMS):
            item.add_marker(pytest.mark.slow)
