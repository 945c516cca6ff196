"""Model families by name. Importing this package registers every family."""

from pcl_tf.models import cnn6  # noqa: F401  (registers "cnn6")
from pcl_tf.models import resnet  # noqa: F401  (registers "resnet110", "resnet110_official", "resnet20")
from pcl_tf.models import vgg  # noqa: F401  (registers "vgg19")
from pcl_tf.models.registry import (  # noqa: F401
    AUX_LOGITS_PREFIX,
    FEATURE_PREFIX,
    LOGITS,
    PRECISION_POLICIES,
    BranchSpec,
    available,
    build_network,
    logits_model,
    parse_branches,
    tap_names,
)
