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
  smoke    a tiny run for the end-to-end tests (a few hundred examples, two epochs).

Any field can then be overridden on the command line: ``--config.train.epochs=5``.
"""

import ml_collections

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


def base_config() -> ml_collections.ConfigDict:
    """Every field a run reads, with the paper's values where the paper gives one."""
    c = ml_collections.ConfigDict()
    c.dataset = "fashion_mnist"
    c.data_dir = ""  # "" = $TFDS_DATA_DIR or ~/tensorflow_datasets
    c.model = "cnn6"
    c.seed = 0
    # The per-channel normalisation the model's first layer applies; () = the dataset's published
    # statistics (pcl_tf/data.py). The released PCL code's CIFAR-10 std is another one.
    c.norm_mean = ()
    c.norm_std = ()
    # Seeds plus TensorFlow op determinism: a killed and resumed run ends with the same
    # weights as an uninterrupted one (slower on some GPU ops).
    c.deterministic = False
    # XLA is slower than plain TF graphs on CPU (CNN-6: 561 vs 914 img/s, 2 cores); set it explicitly.
    c.jit_compile = False
    # Mixed precision: "none" | "mixed_bfloat16" | "mixed_float16" (GPUs; adds loss scaling).
    # Layers compute in the low precision, variables stay float32, and so do the logits, the
    # PC loss and the prototypes.
    c.mixed_precision = "none"

    c.pcl = ml_collections.ConfigDict()
    c.pcl.branches = "gap,fc512,fc64"  # taps with a PC loss, "tap" or "tap:units"; "" = softmax
    c.pcl.mode = "paper"  # paper (Eq. 5) | official (released code's variant)
    c.pcl.pull_weight = 1.0
    c.pcl.push_weight = 1.0
    c.pcl.push_margin = 10.0  # keeps Eq. 5 bounded below (see pcl_tf/losses.py); 0 = unbounded
    c.pcl.branch_ce = False  # Eq. 8: a CE head on each branch
    c.pcl.branch_ce_weight = 1.0
    # Where the prototypes start when the PC terms switch on after the warm-up: the class means
    # of the features then (pcl_tf's default: the joint stage does not undo the warm-up), or
    # "normal", N(0, 1) as the official code does. The paper does not say.
    c.pcl.centroid_init = "class_means"
    c.pcl.centroid_optimizer = "sgd"
    c.pcl.centroid_lr = 0.5  # the official code's centre learning rate
    # mode "official": the push centres' learning rate as a fraction of centroid_lr (the released
    # code: 1e-4 / 0.5; its adversarial training: 1e-5 / 0.5). Unused by mode "paper".
    c.pcl.push_centroid_lr_ratio = 1e-4 / 0.5

    # Adversarial training inside train_step (Sec. 5.1): each batch gets adversarial copies made
    # against the current model, ε ~ U[eps_min, eps_max] per batch (fixed when equal).
    c.adv = ml_collections.ConfigDict()
    c.adv.method = "none"  # none | fgsm | pgd
    c.adv.eps_min = 0.1
    c.adv.eps_max = 0.5
    c.adv.steps = 10  # PGD iterations
    c.adv.step_size_ratio = 0.25  # PGD step = ratio * ε
    c.adv.step_size = 0.0  # > 0: a fixed PGD step in pixel units instead (the released code: 2/255)
    c.adv.random_start = True
    c.adv.start_radius_ratio = 1.0  # the random start is U(-r ε, r ε); N-FGSM uses 2
    c.adv.project = True  # keep iterates in the ε-ball; N-FGSM does not
    c.adv.include_clean = True  # False: train on the adversarial images alone (Madry)
    # ce | joint (CE + PC, as Algorithm 1 writes the gradient) | trades (the attack maximises
    # KL(p(x) || p(x')); the model minimises CE(clean) + trades_beta * that KL, Zhang et al. 2019)
    c.adv.loss = "ce"
    c.adv.trades_beta = 6.0  # TRADES' beta (their CIFAR-10 value; 1 in their MNIST runs)
    # ε grows linearly from ~0 to its full value over this many epochs (counted from the start of
    # training); 0 = full ε from the first step, as the paper and Madry et al. train.
    c.adv.eps_ramp_epochs = 0.0
    # When the adversarial copies start: "joint" = with the joint loss, after the CE warm-up, as
    # Algorithm 1 generates them; "first_step" = from the first step (Madry's baseline, and an
    # ablation of PCL + AdvTrain).
    c.adv.start = "joint"

    c.train = ml_collections.ConfigDict()
    c.train.batch_size = 256
    c.train.epochs = 350
    c.train.warmup_epochs = 50  # T': CE alone before the joint loss
    c.train.optimizer = "sgd"
    c.train.lr = 0.1
    c.train.momentum = 0.9
    c.train.weight_decay = 1e-4
    # "decoupled" (Keras' weight_decay, beside the update) or "coupled" (L2 added to the gradient
    # before momentum, as PyTorch's SGD and the released PCL code; ~10x more shrinkage at momentum 0.9).
    c.train.weight_decay_mode = "decoupled"
    c.train.lr_decay_epochs = (200, 250)
    c.train.lr_decay_factor = 0.1
    # "piecewise" (the paper: lr x lr_decay_factor at each of lr_decay_epochs) or "one_cycle" (up to
    # lr at 2/5 of the run, down to 0 at its end: what fast adversarial training uses).
    c.train.lr_schedule = "piecewise"
    # A restarted joint stage (0 = off: one schedule over the whole run, as the paper): when the
    # PC terms switch on the lr jumps to pcl_lr, and the network's and the centroids' lrs decay
    # by lr_decay_factor at pcl_lr_decay_epochs (counted from the switch). The released code does
    # this (0.01; decays at 142, 230, 360) except that its decays never happen: its decay function
    # sets a key PyTorch ignores. official_pcl_lr_decay_bug=True reproduces that bug on purpose
    # (pcl_lr_decay_epochs are ignored); False trains the joint stage as its authors intended.
    c.train.pcl_lr = 0.0
    c.train.pcl_lr_decay_epochs = ()
    c.train.official_pcl_lr_decay_bug = False
    # Start the joint stage with fresh optimizer state (momentum zeroed, step count kept), as the
    # released code does (its optimizer-state load is an assignment that loads nothing).
    c.train.reset_optimizer_at_pcl_start = False
    # The paper's whole schedule shrunk in proportion: epochs, the CE warm-up and the lr decay
    # epochs are multiplied by this (see pcl_tf/schedule.py); 1 = the paper's 350 (500) epochs.
    c.train.schedule_scale = 1.0
    # A linear lr ramp over the first epochs (0 = none, as the paper). Not part of the paper's
    # recipe; a run that needs it says so.
    c.train.lr_warmup_epochs = 0.0
    # Clip the network's gradients to this global norm (0 = off, as the paper). Not part of the
    # paper's recipe; see the paper_cpu variant for why a run may need it.
    c.train.clip_global_norm = 0.0
    c.train.num_examples = 0  # 0 = the whole training split
    c.train.checkpoint_every_epochs = 1
    # Epochs at whose end a loadable copy of the model is kept in <workdir>/snapshots/epoch_<E>/
    # (pcl-attack takes it as a work dir): several budgets of one run's schedule.
    c.train.snapshot_epochs = ()
    # Robust early stopping (Rice et al. 2020): hold out the last N training images, measure PGD-10
    # accuracy on them after every epoch, keep the most robust epoch in <workdir>/best_robust/.
    c.train.robust_val_examples = 0  # 0 = off
    c.train.robust_val_eps = 0.0  # 0 = adv.eps_max when adversarially trained, else the paper's ε
    c.train.checkpoint_every_steps = 100  # a killed run loses at most this many steps; 0 = epochs only
    # Stop training after this many minutes of training time (all sessions together; 0 = off), at a
    # step boundary, then evaluate as usual: runs compared at equal compute (bench/time_to_robustness.py).
    c.train.time_budget_minutes = 0.0

    c.eval = ml_collections.ConfigDict()
    c.eval.batch_size = 500
    c.eval.num_examples = 0  # 0 = the whole test split
    return c


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
    (NAME or an alias of it; an unknown name is pcl_tf.data's DatasetError)."""
    import os

    from pcl_tf import data

    return os.path.join(os.path.dirname(os.path.abspath(__file__)), DEFAULT_CONFIGS[data.info(dataset).name] + ".py")


def field_docs() -> dict:
    """What each field of :func:`base_config` means, read from this file: the comment on the
    field's line, after the comment lines just above it. For ``pcl-train --show_config``, so the
    listing and the defaults can never disagree."""
    import inspect
    import re

    docs, pending = {}, []
    for line in inspect.getsource(base_config).splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            pending.append(stripped.lstrip("#").strip())
            continue
        match = re.match(r"c\.([\w.]+)\s*=\s*(.*)", stripped)
        if match and not match.group(2).startswith("ml_collections.ConfigDict"):
            trailing = match.group(2).split("  # ", 1)[1].strip() if "  # " in match.group(2) else ""
            docs[match.group(1)] = " ".join(pending + ([trailing] if trailing else []))
        pending = []
    return docs
