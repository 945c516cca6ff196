"""The config schema: every field a run reads, its default, and what it means.

:func:`base_config` is the default ConfigDict (the paper's values where the paper gives one); the
comment on and above each field's line is its documentation, read back by :func:`field_docs`
(``pcl-train --show_config``), so the listing and the defaults never disagree. The config files
(``configs/<dataset>_<model>.py``, installed as ``pcl_tf.configs``) start from it and apply their
dataset's settings and named variants; a work dir's config.json is read over it
(:func:`pcl_tf.workdir.read_config`), so a field added later takes its default.
"""

import ml_collections


def base_config() -> ml_collections.ConfigDict:
    """Every field a run reads, with the paper's values where the paper gives one."""
    c = ml_collections.ConfigDict()
    c.dataset = "fashion_mnist"
    c.data_dir = ""  # "" = $TFDS_DATA_DIR or ~/tensorflow_datasets
    c.model = "cnn6"
    c.seed = 0
    # The per-channel normalisation the model's first layer applies; () = the dataset's published
    # statistics (pcl_tf/catalogue.py). The released PCL code's CIFAR-10 std is another one.
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
    # "piecewise" (the paper: lr x lr_decay_factor at each of lr_decay_epochs), "one_cycle" (up to
    # lr at 2/5 of the run, down to 0 at its end: what fast adversarial training uses) or
    # "one_cycle_time" (the same over train.time_budget_minutes of training time rather than the
    # planned steps: a budgeted run ends at lr 0 when its time runs out, however fast it went).
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
    # Robust early stopping (Rice et al. 2020): hold out the last N training images, measure robust
    # accuracy on them after every epoch, keep the most robust epoch in <workdir>/best_robust/.
    c.train.robust_val_examples = 0  # 0 = off
    c.train.robust_val_eps = 0.0  # 0 = adv.eps_max when adversarially trained, else the paper's ε
    # The attack robust early stopping validates with: "pgd" (cross-entropy PGD, Rice et al.'s) or
    # "apgd-ce" (AutoAttack's first attack: sees the vanishing gradients of long single-step training
    # that PGD misses, at several times the cost).
    c.train.robust_val_attack = "pgd"
    c.train.robust_val_steps = 0  # the validation attack's iterations; 0 = its default (PGD 10, APGD-CE 100)
    c.train.checkpoint_every_steps = 100  # a killed run loses at most this many steps; 0 = epochs only
    # Stop training after this many minutes of training time (all sessions together; 0 = off), at a
    # step boundary, then evaluate as usual: runs compared at equal compute (bench/time_to_robustness.py).
    c.train.time_budget_minutes = 0.0

    c.eval = ml_collections.ConfigDict()
    c.eval.batch_size = 500
    c.eval.num_examples = 0  # 0 = the whole test split
    return c


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


def describe(config: ml_collections.ConfigDict) -> str:
    """Every field of ``config`` as ``field = value  # meaning`` (the meaning from
    :func:`field_docs`), one a line, sorted: ``pcl-train --show_config``."""
    docs = field_docs()
    lines = []

    def walk(node, prefix=""):
        for key in sorted(node.keys()):
            value = node[key]
            name = prefix + key
            if hasattr(value, "keys"):
                walk(value, name + ".")
            else:
                lines.append(f"{name} = {value!r}" + (f"  # {docs[name]}" if docs.get(name) else ""))

    walk(config)
    return "\n".join(lines)
