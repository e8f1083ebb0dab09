"""Model zoo: every family registers itself on import."""

from edgedistill.models import mobilenet  # noqa: F401  (registers "mobilenet")
from edgedistill.models import resnet  # noqa: F401  (registers "resnet")
from edgedistill.models import vit  # noqa: F401  (registers "vit")
from edgedistill.models.base import (  # noqa: F401
    FeatureInfo,
    count_flops,
    count_parameters,
    create_model,
    families,
    spec_from_dict,
    spec_to_dict,
)
