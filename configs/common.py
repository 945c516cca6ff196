"""The shared base of every config, and the named variants that configs compose.

A config file is ``configs/<dataset>_<model>.py`` with ``get_config(variants)``; ``variants``
is a comma-separated list applied in order, e.g. ``configs/fmnist_cnn6.py:quick,softmax``:

  quick    a short CPU schedule (minutes): Adam, a few epochs, one of them CE warm-up.
  paper_cpu the paper's recipe (SGD lr 0.1, momentum 0.9, batch 256, decays x0.1) at 1/8 of its
           length (F-MNIST: 44 epochs, 6 of them CE, decays at 25 and 31.25), plus gradient
           clipping at global norm 1: SGD at lr 0.1 from random weights diverges on CNN-6 without.
  softmax  the baseline: the same trainer with no PCL branch (plain cross-entropy).
  official the official code's loss (squared distances, separate push centres, weights 1/1e-4);
           on CIFAR-10 with ResNet-110, the released code's whole recipe (docs/official_recipe.md):
           its network, normalisation, 164 CE + 400 PCL epochs with its lr-decay bug, coupled
           weight decay, fresh optimizer state at the switch, batch 128.
  official_as_intended  after official: the joint stage's lr decays as the released code meant.
  official_advpgd  after official: the released PGD adversarial-training script's settings.
  advfgsm  PCL + AdvTrain_FGSM: every batch doubled with FGSM copies, ε ~ U(paper range).
  advpgd   PCL + AdvTrain_PGD: the same with PGD-10 (random start) copies.
  madry    PGD adversarial training on adversarial images only, fixed ε (with softmax: Madry).
  fastat   "fast" adversarial training: one FGSM step of 1.25 ε from a random start (Wong et al.).
  nfgsm    N-FGSM: one step of ε from U(-2ε, 2ε) noise, unprojected (de Jorge et al.).
  trades   TRADES: PGD on KL(clean || adversarial), loss CE(clean) + 6 KL (Zhang et al.).
  trades5  after trades: its inner PGD cut to 5 steps of ε/2 (the same 2.5 ε of travel), about
           7 forward-backward passes a step against 12; bench/time_to_robustness.py's trades5.
  budget   (last) train for a fixed wall-clock time, train.time_budget_minutes (30 unless set):
           Adam lr 2e-3 on a one-cycle over the budget itself, gradient clipping at norm 1, robust
           early stopping on 1,000 held-out images, PCL's CE warm-up one epoch; the recipe of
           bench/time_to_robustness.py. E.g. softmax,madry,nfgsm,budget.
  apgd_stop with budget (or any robust validation): stop by APGD-CE (100 iterations), not PGD-10;
           slower to validate, but it does not rank epochs with masked gradients first.
  smoke    a tiny run for the end-to-end tests (a few hundred examples, two epochs).

Any field can then be overridden on the command line: ``--config.train.epochs=5``.
"""

from pcl_tf.config_schema import base_config

# Dataset -> the config file (without .py) that `pcl-train --dataset=NAME` uses by default.
DEFAULT_CONFIGS = {
    "mnist": "mnist_cnn6",
    "fashion_mnist": "fmnist_cnn6",
    "cifar10": "cifar10_resnet110",
    "cifar100": "cifar100_resnet110",
    "svhn": "svhn_resnet110",
}

# Sec. 5.1: AdvTrain ε drawn from [0.1, 0.5] for (F-)MNIST and [0.01, 0.05] for CIFAR/SVHN;
# the fixed ε of the Madry baseline is the evaluation ε (0.3, 8/255).
ADV_EPS = {"mnist": dict(eps_min=0.1, eps_max=0.5), "cifar": dict(eps_min=0.01, eps_max=0.05)}
MADRY_EPS = {"mnist": 0.3, "fashion_mnist": 0.3}  # other datasets: 8/255

# Algorithm 1 / Sec. 5: T' epochs of CE, then 300 epochs of the joint loss; batch 256;
# SGD lr 0.1, x0.1 at epochs 200 and 250 (counted from the start of training, as T in Alg. 1).
PAPER_SCHEDULES = {
    "mnist": dict(warmup_epochs=50, epochs=350),
    "cifar": dict(warmup_epochs=200, epochs=500),
}


def _quick(c):
    c.train.optimizer = "adam"  # SGD 0.01 reaches 21 % after one epoch here, Adam 1e-3 79 %.
    c.train.lr = 1e-3
    c.train.weight_decay = 0.0
    c.train.epochs = 3
    c.train.warmup_epochs = 1
    c.train.lr_decay_epochs = ()
    if c.train.pcl_lr:  # a restarted joint stage keeps its shape: a tenth of the CE stage's lr
        c.train.pcl_lr = c.train.lr / 10
        c.train.pcl_lr_decay_epochs = ()


def _paper_cpu(c):
    """The paper's recipe shrunk to 1/8 (train.schedule_scale); everything else is the paper's,
    plus gradient clipping at global norm 1.

    Why the clipping: CNN-6 has no normalisation layer. From its random start it sits on a
    plateau (loss 2.30, gradient norm ~0.2) for ~20 steps; leaving it, gradient norms jump to
    5-10, and at lr 0.1 with momentum 0.9 one such step throws the weights off: the loss was NaN
    at step 31 (gradient norm 1.9e16). A linear lr warm-up over the first epoch only delays it
    (NaN at step 124); clipping at norm 5 leaves the net at chance; without momentum it spikes
    and crawls (26 % after 150 steps); clipping at norm 1 trains (74 % after 150 steps).
    Measured with bench/sgd_stability.py and pcl-train on real Fashion-MNIST, 2026-12-02.
    """
    c.train.schedule_scale = 0.125
    c.train.clip_global_norm = 1.0


def _softmax(c):
    c.pcl.branches = ""


# The released code's CIFAR-10 normalisation (its std differs from the dataset's 0.2470, 0.2435, 0.2616).
OFFICIAL_CIFAR10_NORM = dict(norm_mean=(0.4914, 0.4822, 0.4465), norm_std=(0.2023, 0.1994, 0.2010))


def _official(c):
    """The released code's loss everywhere; on CIFAR-10 with ResNet-110 (the only setting it has
    scripts for) also its training recipe, each difference a field (docs/official_recipe.md)."""
    c.pcl.mode = "official"
    c.pcl.pull_weight = 1.0
    c.pcl.push_weight = 1e-4
    c.pcl.push_margin = 0.0
    c.pcl.centroid_init = "normal"
    if (c.dataset, c.model) != ("cifar10", "resnet110"):
        return
    c.model = "resnet110_official"
    c.pcl.branches = "gap,fc1024"
    c.update(OFFICIAL_CIFAR10_NORM)
    c.pcl.centroid_lr = 0.5
    c.pcl.push_centroid_lr_ratio = 1e-4 / 0.5
    c.train.batch_size = 128
    c.train.optimizer = "sgd"
    c.train.lr = 0.1
    c.train.momentum = 0.9
    c.train.weight_decay = 1e-4
    c.train.weight_decay_mode = "coupled"
    c.train.warmup_epochs = 164  # softmax_training.py
    c.train.epochs = 164 + 400  # then pcl_training.py
    c.train.lr_decay_epochs = (81, 122, 140)
    c.train.lr_decay_factor = 0.1
    c.train.pcl_lr = 0.01
    c.train.pcl_lr_decay_epochs = (142, 230, 360)
    c.train.official_pcl_lr_decay_bug = True
    c.train.reset_optimizer_at_pcl_start = True


def _official_as_intended(c):
    """The released recipe with the joint stage's lr decays working (no decay bug)."""
    c.train.official_pcl_lr_decay_bug = False


def _official_advpgd(c):
    """The released PGD adversarial-training script: each batch of 64 doubled with PGD copies
    (10 steps of 2/255, no random start, ε ~ U(0.02, 0.05) per batch), push weight and push
    centre lr 1e-5, 500 joint epochs from the softmax stage. Not reproduced: that script's
    normalisation bug (it attacks images its loader already normalised as if they were pixels
    and normalises the copies again); pcl_tf normalises inside the model, in pixel units."""
    if c.pcl.mode != "official":
        raise ValueError("the official_advpgd variant goes after the official variant (official,official_advpgd)")
    c.adv.method = "pgd"
    c.adv.eps_min, c.adv.eps_max = 0.02, 0.05
    c.adv.steps = 10
    c.adv.step_size = 2 / 255
    c.adv.random_start = False
    c.adv.include_clean = True
    c.adv.loss = "ce"
    c.adv.start = "joint"
    c.train.batch_size = 64
    c.pcl.push_weight = 1e-5
    c.pcl.push_centroid_lr_ratio = 1e-5 / 0.5
    if c.train.pcl_lr:
        c.train.epochs = c.train.warmup_epochs + 500


def _advfgsm(c):
    c.adv.method = "fgsm"


def _advpgd(c):
    c.adv.method = "pgd"


def _madry(c):
    """Madry et al.'s PGD adversarial training: fixed ε, adversarial images only."""
    c.adv.method = "pgd"
    c.adv.eps_min = c.adv.eps_max = MADRY_EPS.get(c.dataset, 8 / 255)
    c.adv.include_clean = False
    c.adv.start = "first_step"  # Madry et al. train adversarially from the first step; no warm-up


def _fastat(c):
    """"Fast" adversarial training (Wong, Rice & Kolter, ICLR 2020): one FGSM step of 1.25 ε from
    a uniform random start in the ε-ball. Prone to catastrophic overfitting at large ε (the
    nfgsm variant is the guard)."""
    c.adv.method = "pgd"
    c.adv.steps = 1
    c.adv.step_size_ratio = 1.25
    c.adv.random_start = True


def _nfgsm(c):
    """N-FGSM (de Jorge et al., NeurIPS 2022): one step of ε from noise U(-2ε, 2ε), not projected
    back to the ε-ball; avoids catastrophic overfitting at FGSM's cost (GradAlign does it at ~3x)."""
    c.adv.method = "pgd"
    c.adv.steps = 1
    c.adv.step_size_ratio = 1.0
    c.adv.random_start = True
    c.adv.start_radius_ratio = 2.0
    c.adv.project = False


def _trades(c):
    """TRADES (Zhang et al., ICML 2019): PGD-10 of step ε/4 on KL(p(x) || p(x')) from a tiny random
    start (here U(-0.01 ε, 0.01 ε); their code: 0.001 N(0, 1)), then CE(clean) + β KL, β = 6, at
    the fixed evaluation ε. With PCL the PC terms are computed on the clean images."""
    c.adv.method = "pgd"
    c.adv.loss = "trades"
    c.adv.steps = 10
    c.adv.step_size_ratio = 0.25
    c.adv.start_radius_ratio = 0.01
    c.adv.eps_min = c.adv.eps_max = MADRY_EPS.get(c.dataset, 8 / 255)
    c.adv.include_clean = True


def _trades5(c):
    """TRADES with half its inner maximisation: 5 PGD steps of ε/2 on the KL instead of 10 of ε/4,
    so a step takes about 7 forward-backward passes instead of 12 and a time budget buys more steps
    (bench/method_step_cost.py timed the two side by side: 0.63 of the time, 1.6 steps for one). The
    steps travel as far (2.5 ε); what is given up is the attack's precision, and at ε = 0.3 that cost
    more worst-case robustness than the extra steps bought (docs/time_to_robustness.md)."""
    if c.adv.loss != "trades":
        raise ValueError("the trades5 variant goes after the trades variant (trades,trades5)")
    c.adv.steps = 5
    c.adv.step_size_ratio = 0.5


BUDGET_ROBUST_VAL_EXAMPLES = 1000


def _budget(c):
    """Training for a fixed wall-clock time (``train.time_budget_minutes``, 30 unless set), as
    bench/time_to_robustness.py compares methods: Adam at lr 2e-3 on a one-cycle that runs over the
    budget itself (``one_cycle_time``: peak at 2/5 of it, 0 when it runs out, however fast the
    machine), no weight decay or step decays, gradient clipping at global norm 1, a checkpoint every
    50 steps, robust early stopping on the last 1,000 training images (the most robust epoch kept in
    ``<workdir>/best_robust/``). The epoch count is only a cap the budget reaches first; PCL's CE
    warm-up is one epoch (goes after ``softmax`` when that is used)."""
    c.train.optimizer = "adam"
    c.train.lr = 2e-3
    c.train.lr_schedule = "one_cycle_time"
    c.train.weight_decay = 0.0
    c.train.lr_decay_epochs = ()
    c.train.clip_global_norm = 1.0
    c.train.checkpoint_every_steps = 50
    c.train.robust_val_examples = BUDGET_ROBUST_VAL_EXAMPLES
    c.train.time_budget_minutes = 30.0
    c.train.epochs = 100
    c.train.warmup_epochs = 1 if c.pcl.branches else 0


def _apgd_stop(c):
    """Robust early stopping by APGD-CE at AutoAttack's 100 iterations instead of PGD-10. On held-out
    images PGD-10 overstated a single-step model with vanishing gradients by 5.2 points and ranked
    it above a better one, where APGD-CE ranked the two as the strong suite does; a validation
    costs 4.5-9.5x PGD-10's (docs/time_to_robustness.md, "Which held-out attack to stop by")."""
    c.train.robust_val_attack = "apgd-ce"


def _smoke(c):
    _quick(c)
    c.train.batch_size = 32
    c.train.epochs = 2
    c.train.num_examples = 128
    c.eval.batch_size = 64
    c.eval.num_examples = 64


VARIANTS = {
    "quick": _quick,
    "paper_cpu": _paper_cpu,
    "softmax": _softmax,
    "official": _official,
    "official_as_intended": _official_as_intended,
    "official_advpgd": _official_advpgd,
    "advfgsm": _advfgsm,
    "advpgd": _advpgd,
    "madry": _madry,
    "fastat": _fastat,
    "nfgsm": _nfgsm,
    "trades": _trades,
    "trades5": _trades5,
    "budget": _budget,
    "apgd_stop": _apgd_stop,
    "smoke": _smoke,
}


def make(dataset: str, model: str, branches: str, schedule: str, variants: str = ""):
    """The config for one dataset/model, with ``variants`` (comma-separated) applied in order."""
    c = base_config()
    c.dataset = dataset
    c.model = model
    c.pcl.branches = branches
    c.train.update(PAPER_SCHEDULES[schedule])
    c.adv.update(ADV_EPS[schedule])
    for name in filter(None, (v.strip() for v in (variants or "").split(","))):
        if name not in VARIANTS:
            raise ValueError(f"unknown config variant {name!r}; choose from {', '.join(VARIANTS)}")
        VARIANTS[name](c)
    return c


def default_config_path(dataset: str) -> str:
    """The config file ``pcl-train --dataset=NAME`` uses: configs/<DEFAULT_CONFIGS[name]>.py
    (NAME or an alias of it; an unknown name is pcl_tf.catalogue's DatasetError)."""
    import os

    from pcl_tf import catalogue

    return os.path.join(os.path.dirname(os.path.abspath(__file__)), DEFAULT_CONFIGS[catalogue.info(dataset).name] + ".py")


