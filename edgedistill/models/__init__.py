"""Model zoo: every family registers itself (a :class:`~edgedistill.models.base.Family`) on import.

A new family is one file here that registers its Family, and its import line below.
"""

from edgedistill.models import mbconv  # noqa: F401  (registers "mbconv")
from edgedistill.models import mobilenet  # noqa: F401  (registers "mobilenet")
from edgedistill.models import resnet  # noqa: F401  (registers "resnet")
from edgedistill.models import vit  # noqa: F401  (registers "vit")
from edgedistill.models.base import (  # noqa: F401
    Family,
    FeatureInfo,
    count_flops,
    count_parameters,
    create_model,
    families,
    family_of,
    get_family,
    spec_from_dict,
    spec_to_dict,
)
