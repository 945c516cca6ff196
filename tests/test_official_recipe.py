"""The released code's recipe (the `official` variant, docs/official_recipe.md): each difference
from pcl_tf's defaults worked out by hand in NumPy, one step at a time.

Coupled vs decoupled weight decay with momentum; centre steps at the adversarial-training
learning rates; fresh optimizer state at the switch to the joint loss; the learning rate at epochs
of both stages, with the released code's decay bug and as intended; PGD's fixed step; the released
network's parameters and taps; the normalisation constants; old config.json files."""

import functools
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from pcl_tf import adversarial, building, catalogue, config_schema, experiment, schedule, training, training_setup
from pcl_tf import workdir as workdirs
from pcl_tf.configs import common
from pcl_tf.models import registry, resnet

LR, MOMENTUM, WD = 0.01, 0.9, 1e-4


def cifar_config(variants):
    return common.make(dataset="cifar10", model="resnet110", branches="layer3:512,layer4,fc1024", schedule="cifar",
                       variants=variants)


# --------------------------------------------------------------------------- weight decay
def run_optimizer(optimizer, w0, grads):
    w = tf.Variable(w0, dtype=tf.float32)
    optimizer.build([w])
    for g in grads:
        optimizer.apply([tf.constant(g, tf.float32)], [w])
    return w.numpy()


def hand_sgd(w, grads, coupled):
    """PyTorch's SGD (coupled L2: d = g + wd w, v = m v + d, w -= lr v) or Keras' with decoupled
    decay (w -= lr wd w, then v = m v - lr g, w += v); equal velocities at a constant lr."""
    w, v = np.array(w, np.float64), 0.0
    for g in grads:
        if coupled:
            v = MOMENTUM * v + (g + WD * w)
            w = w - LR * v
        else:
            w = w - LR * WD * w
            v = MOMENTUM * v - LR * g
            w = w + v
    return w


@pytest.mark.parametrize("mode", ["coupled", "decoupled"])
def test_weight_decay_modes_match_their_hand_computation(mode):
    w0 = np.array([1.0, -2.0, 3.0])
    grads = [np.array([0.5, 0.1, -0.3]), np.array([-0.2, 0.4, 0.0]), np.zeros(3)]
    got = run_optimizer(training.make_optimizer("sgd", LR, MOMENTUM, WD, weight_decay_mode=mode), w0, grads)
    np.testing.assert_allclose(got, hand_sgd(w0, grads, coupled=mode == "coupled"), rtol=1e-6)


def test_coupled_decay_shrinks_about_ten_times_more_at_momentum_0_9():
    """With no loss gradient, 50 steps: the decoupled decay shrinks by (1 - lr wd)^n; the coupled one
    runs through momentum, whose steady-state step is 1/(1 - 0.9) = 10 times larger."""
    w0, zeros = np.array([1.0]), [np.zeros(1)] * 50
    shrink = {mode: 1.0 - run_optimizer(training.make_optimizer("sgd", LR, MOMENTUM, WD, weight_decay_mode=mode),
                                        w0, zeros)[0] for mode in ("coupled", "decoupled")}
    # float32 weights: ~1e-7 rounding per step on a shrinkage of ~5e-5, hence 3 %.
    assert shrink["decoupled"] == pytest.approx(1 - (1 - LR * WD) ** 50, rel=3e-2)
    assert shrink["coupled"] == pytest.approx(1.0 - hand_sgd(w0, zeros, coupled=True)[0], rel=3e-2)
    assert 5 < shrink["coupled"] / shrink["decoupled"] < 10  # tends to 10 as the velocity builds up


def test_unknown_weight_decay_mode_is_refused():
    with pytest.raises(ValueError, match="coupled"):
        training.make_optimizer("sgd", LR, weight_decay_mode="l2")


# --------------------------------------------------------------------------- centre learning rates
def tiny_pcl_model(push_weight, push_centroid_lr_ratio):
    keras.utils.set_random_seed(0)
    x = keras.Input((2,))
    f = keras.layers.Dense(3, use_bias=False, name="f")(x)
    z = keras.layers.Dense(3, use_bias=False, name="z")(f)
    model = training.PCLModel(keras.Model(x, {"logits": z, "feat_f": f}), 3, pc_mode="official",
                              push_weight=push_weight, push_margin=None, push_centroid_lr_ratio=push_centroid_lr_ratio)
    model.compile(optimizer=keras.optimizers.SGD(0.0), centroid_optimizer=keras.optimizers.SGD(0.5))
    model.pc_active.assign(1.0)
    return model


def test_centre_steps_at_the_adversarial_training_learning_rates():
    """The released PGD script: push weight 1e-5, push-centre lr 1e-5, pull-centre lr 0.5 (weight 1).
    Its centre steps are c -= 0.5 d(pull)/dc and p += 1e-5 d(push)/dp (the weights undone)."""
    model = tiny_pcl_model(push_weight=1e-5, push_centroid_lr_ratio=1e-5 / 0.5)
    x = np.array([[1.0, 2.0], [-1.0, 0.5], [0.3, -0.7], [2.0, 1.0]], np.float32)
    y = np.array([0, 1, 2, 1])
    layer = model.pc_layers[0]
    f = model.network(x)["feat_f"].numpy().astype(np.float64)
    c, p = layer.pull_centroids.numpy().astype(np.float64), layer.push_centroids.numpy().astype(np.float64)
    B, k = len(y), 3
    onehot = np.eye(k)[y]
    d_pull = np.stack([(2 * onehot[:, j:j + 1] * (c[j] - f)).sum(0) / B for j in range(k)])
    d_push = np.stack([(2 * (1 - onehot[:, j:j + 1]) * (p[j] - f)).sum(0) / (B * (k - 1)) for j in range(k)])
    model.train_step((tf.constant(x), tf.constant(y)))
    np.testing.assert_allclose(layer.pull_centroids.numpy(), c - 0.5 * d_pull, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer.push_centroids.numpy(), p + 1e-5 * d_push, rtol=1e-6, atol=1e-7)


def test_push_centroid_lr_ratio_reaches_the_layers_from_the_config():
    config = common.make("fashion_mnist", "cnn6", "gap,fc512,fc64", "mnist", "official")
    config.pcl.push_centroid_lr_ratio = 2e-5
    model = training_setup.build_model(config)
    assert {layer.push_centroid_lr_ratio for layer in model.pc_layers} == {2e-5}
    assert cifar_config("official,official_advpgd").pcl.push_centroid_lr_ratio == pytest.approx(1e-5 / 0.5)
    # The paper's default is unchanged: the released PCL script's 1e-4 / 0.5.
    assert config_schema.base_config().pcl.push_centroid_lr_ratio == pytest.approx(1e-4 / 0.5)


# --------------------------------------------------------------------------- optimizer state at the switch
def test_reset_optimizer_state_gives_a_fresh_momentum_step_and_keeps_the_step_count():
    g = np.array([0.5, -1.0], np.float32)
    w = tf.Variable([1.0, 1.0])
    opt = keras.optimizers.SGD(0.1, momentum=0.9)
    opt.build([w])
    opt.apply([tf.constant(g)], [w])
    opt.apply([tf.constant(g)], [w])
    before = w.numpy().copy()
    training.reset_optimizer_state(opt)
    assert int(opt.iterations.numpy()) == 2 and float(opt.learning_rate.numpy()) == pytest.approx(0.1)
    opt.apply([tf.constant(g)], [w])
    np.testing.assert_allclose(w.numpy(), before - 0.1 * g, rtol=1e-6)  # a fresh velocity: one plain step


@pytest.mark.parametrize("reset", [True, False])
def test_pcl_schedule_resets_the_optimizers_only_at_the_switch_when_asked(reset):
    model = tiny_pcl_model(push_weight=1e-4, push_centroid_lr_ratio=2e-4)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), centroid_optimizer=keras.optimizers.SGD(0.5))
    model.pc_active.assign(0.0)
    x, y = tf.constant([[1.0, 2.0], [-1.0, 0.5]]), tf.constant([0, 1])
    model.train_step((x, y))
    callback = training.PCLSchedule(warmup_epochs=1, reset_optimizer=reset)
    callback.set_model(model)
    callback.on_epoch_begin(0)  # still warm-up: nothing is reset
    assert any(np.any(m.numpy() != 0) for m in model.optimizer.momentums)
    callback.on_epoch_begin(1)  # the switch
    assert float(model.pc_active.numpy()) == 1.0 and int(model.optimizer.iterations.numpy()) == 1
    assert all(np.all(m.numpy() == 0) for m in model.optimizer.momentums) == reset
    model.train_step((x, y))
    callback.on_epoch_begin(2)  # after the switch: never again
    assert any(np.any(m.numpy() != 0) for m in model.optimizer.momentums)


# --------------------------------------------------------------------------- the schedule
def lr_at(config, epochs, steps_per_epoch=10):
    plan = schedule.Schedule.from_config(config.train)
    lr = plan.learning_rate(config.train.lr, steps_per_epoch, config.train.lr_decay_factor)
    centre = plan.centroid_learning_rate(config.pcl.centroid_lr, steps_per_epoch, config.train.lr_decay_factor)
    value = lambda s, step: float(s) if isinstance(s, float) else float(s(step))  # noqa: E731
    return [(value(lr, e * steps_per_epoch), value(centre, e * steps_per_epoch)) for e in epochs]


# Epochs counted from 0 over the whole run: CE 0..163 (decays at 81, 122, 140), joint from 164
# (the released code's joint epochs 142, 230 and 360 are 306, 394 and 524 here).
EPOCHS = (0, 80, 81, 122, 140, 163, 164, 305, 306, 394, 524, 563)
CE_STAGE = [0.1, 0.1, 0.01, 1e-3, 1e-4, 1e-4]


def test_official_schedule_reproduces_the_lr_decay_bug():
    config = cifar_config("official")
    assert (config.train.warmup_epochs, config.train.epochs) == (164, 564)
    got = lr_at(config, EPOCHS)
    np.testing.assert_allclose([g[0] for g in got], CE_STAGE + [0.01] * 6, rtol=1e-6)
    np.testing.assert_allclose([g[1] for g in got], [0.5] * 12, rtol=1e-6)  # the centres never decay either


def test_official_as_intended_decays_the_joint_stage_and_its_centres():
    got = lr_at(cifar_config("official,official_as_intended"), EPOCHS)
    np.testing.assert_allclose([g[0] for g in got], CE_STAGE + [0.01, 0.01, 1e-3, 1e-4, 1e-5, 1e-5], rtol=1e-5)
    np.testing.assert_allclose([g[1] for g in got], [0.5] * 8 + [0.05, 5e-3, 5e-4, 5e-4], rtol=1e-5)


def test_default_schedule_is_unchanged():
    config = cifar_config("")
    assert (config.train.pcl_lr, config.train.official_pcl_lr_decay_bug) == (0.0, False)
    got = lr_at(config, (0, 199, 200, 249, 250, 499))
    np.testing.assert_allclose([g[0] for g in got], [0.1, 0.1, 0.01, 0.01, 1e-3, 1e-3], rtol=1e-5)
    assert {g[1] for g in got} == {0.5}


# --------------------------------------------------------------------------- adversarial training
def test_official_advpgd_settings_and_fixed_pgd_step():
    config = cifar_config("official,official_advpgd")
    assert (config.adv.method, config.adv.eps_min, config.adv.eps_max, config.adv.steps) == ("pgd", 0.02, 0.05, 10)
    assert (config.adv.random_start, config.adv.include_clean, config.train.batch_size) == (False, True, 64)
    assert config.pcl.push_weight == 1e-5 and config.train.epochs == 164 + 500
    training_setup.validate_config(config)
    adversary = training_setup.make_adversary(config)
    # A linear loss w.x: every step moves sign(w) * 2/255 whatever ε; 10 steps = 0.078 < ε = 0.1.
    w = tf.constant([[1.0, -1.0, 0.0]])
    x = tf.constant([[0.5, 0.5, 0.5]])
    x_adv = adversary.perturb(lambda v, t: tf.reduce_sum(v * w), x, tf.constant([0]), 0.1).numpy()
    np.testing.assert_allclose(x_adv, [[0.5 + 20 / 255, 0.5 - 20 / 255, 0.5]], rtol=1e-6)
    # At ε = 0.05 the same steps are projected back to the ε-ball.
    x_adv = adversary.perturb(lambda v, t: tf.reduce_sum(v * w), x, tf.constant([0]), 0.05).numpy()
    np.testing.assert_allclose(x_adv, [[0.55, 0.45, 0.5]], rtol=1e-6)


def test_official_advpgd_needs_official_first():
    with pytest.raises(ValueError, match="after the official variant"):
        cifar_config("official_advpgd")


# --------------------------------------------------------------------------- network and normalisation
def bottleneck_parameters(blocks_per_stage):
    """Trainable parameters of the bottleneck stack, counted by hand (BN: gamma and beta)."""
    total, channels = 3 * 3 * 3 * 16 + 2 * 16, 16
    for stage, width in enumerate((16, 32, 64)):
        for block in range(blocks_per_stage):
            out = 4 * width
            total += channels * width + 2 * width + 9 * width * width + 2 * width + width * out + 2 * out
            if channels != out or (stage > 0 and block == 0):
                total += channels * out + 2 * out
            channels = out
    return total


@pytest.fixture(scope="module")
def official_model():
    return training_setup.build_model(cifar_config("official"))


def test_official_network_parameters_and_taps(official_model):
    network = official_model.network
    fc = 256 * 1024 + 1024 + 1024 * 10 + 10
    assert sum(int(np.prod(w.shape)) for w in network.trainable_weights) == bottleneck_parameters(18) + fc
    assert bottleneck_parameters(18) + fc - 1024 * 10 - 10 - 256 * 1024 - 1024 + 256 * 10 + 10 == 1_704_154
    assert {name: tuple(t.shape) for name, t in network.output.items()} == {
        "logits": (None, 10), "feat_gap": (None, 256), "feat_fc1024": (None, 1024)}
    assert "fc1024_relu" not in [layer.name for layer in network.layers]  # FC(1024) is linear there
    assert sum(isinstance(layer, keras.layers.Conv2D) for layer in network.layers) == 1 + 3 * 54 + 3


def test_normalisation_constants(official_model):
    layer = official_model.network.get_layer("normalize")
    np.testing.assert_allclose(np.ravel(layer.mean), [0.4914, 0.4822, 0.4465], rtol=1e-6)
    np.testing.assert_allclose(np.sqrt(np.ravel(layer.variance)), [0.2023, 0.1994, 0.2010], rtol=1e-5)
    default = cifar_config("")
    assert building.normalization(default) == (catalogue.info("cifar10").mean, catalogue.info("cifar10").std)
    assert catalogue.info("cifar10").std == (0.2470, 0.2435, 0.2616)


def test_a_config_json_without_the_new_fields_loads_with_the_old_behaviour(tmp_path):
    saved = config_schema.base_config().to_dict()
    for section, name in [("train", "weight_decay_mode"), ("train", "pcl_lr"), ("train", "pcl_lr_decay_epochs"),
                          ("train", "official_pcl_lr_decay_bug"), ("train", "reset_optimizer_at_pcl_start"),
                          ("pcl", "push_centroid_lr_ratio"), ("adv", "step_size")]:
        del saved[section][name]
    del saved["norm_mean"], saved["norm_std"]
    path = os.path.join(tmp_path, "config.json")
    with open(path, "w") as f:
        json.dump(saved, f)
    config = workdirs.read_config(path)
    assert config.train.weight_decay_mode == "decoupled" and config.train.pcl_lr == 0.0
    assert not config.train.reset_optimizer_at_pcl_start and config.adv.step_size == 0.0
    assert config.pcl.push_centroid_lr_ratio == pytest.approx(1e-4 / 0.5)
    assert building.normalization(saved) == (catalogue.info("fashion_mnist").mean, catalogue.info("fashion_mnist").std)


def test_compile_model_wires_the_schedules_and_the_coupled_decay():
    """pcl-train's compile step: the network's and the centroids' lr follow the restarted joint stage
    (as intended: decayed at joint epoch 10), and the coupled decay is the optimizer's."""
    config = common.make("fashion_mnist", "cnn6", "gap,fc512,fc64", "mnist", "official")
    config.train.update(weight_decay_mode="coupled", pcl_lr=0.01, pcl_lr_decay_epochs=(10,), lr_decay_epochs=(40,))
    training_setup.validate_config(config)
    model = training_setup.build_model(config)
    training_setup.compile_model(model, config, steps_per_epoch=10)
    assert isinstance(model.optimizer, training.CoupledSGD) and model.optimizer.coupled_weight_decay == 1e-4
    lrs = {}
    for epoch in (0, 40, 50, 59, 60):  # warm-up 50 epochs (lr 0.1, 0.01 from 40), joint from 50 at 0.01, x0.1 at 60
        model.optimizer.iterations.assign(epoch * 10)
        model.centroid_optimizer.iterations.assign(epoch * 10)
        lrs[epoch] = (float(model.optimizer.learning_rate), float(model.centroid_optimizer.learning_rate))
    np.testing.assert_allclose([lrs[e] for e in (0, 40, 50, 59, 60)],
                               [(0.1, 0.5), (0.01, 0.5), (0.01, 0.5), (0.01, 0.5), (1e-3, 0.05)], rtol=1e-6)


# The released network's layout with one block per stage: the same taps, built in seconds (the
# 164-layer network's graph alone takes ~90 s to build on 2 cores; its parameters and taps are
# checked in test_official_network_parameters_and_taps).
registry.register("official_layout_1block")(functools.partial(resnet.official_layout, blocks_per_stage=1))


def test_official_adversarial_recipe_trains_end_to_end_on_mock_data(tmp_path):
    """official,official_advpgd,smoke: coupled decay, restarted joint stage, optimizer reset and
    fixed-step PGD copies on the released network's taps, through pcl-train's code path."""
    import tensorflow_datasets as tfds

    config = cifar_config("official,official_advpgd,smoke")
    assert config.model == "resnet110_official"
    config.model = "official_layout_1block"
    config.train.num_examples = 64
    config.eval.num_examples = 32
    workdir = str(tmp_path / "run")
    with tfds.testing.mock_data(num_examples=96):
        metrics = experiment.train_and_evaluate(config, workdir, verbose=0)
    saved = workdirs.read_config(os.path.join(workdir, "config.json"))
    assert (saved.model, saved.train.weight_decay_mode, saved.train.reset_optimizer_at_pcl_start) == (
        "official_layout_1block", "coupled", True)
    assert {"pcl_gap", "pcl_fc1024"} <= set(metrics["history"])
    assert all(np.isfinite(v) for values in metrics["history"].values() for v in values)
    assert "joint stage restarts at lr" in metrics["schedule"]
