"""The target's credentials, read from profiles.yml by dbt itself.

dbt renders the profile (``env_var``, ``as_number``, the target chosen by ``--target``
or ``DBT_TARGET``) and validates it into the adapter's own ``Credentials`` dataclass,
exactly as ``dbt build`` does: a warehouse connection of ours uses the same host, user,
schema and secrets as the build, with no second configuration to keep in step.
"""

from __future__ import annotations

import os
from argparse import Namespace
from typing import Any

from feature_store.errors import WarehouseError
from feature_store.registry import Registry

__all__ = ["credentials"]


def credentials(registry: Registry) -> Any:
    """The dbt ``Credentials`` of the registry's profile and target (e.g. ``PostgresCredentials``)."""
    # dbt is imported here, not at module level: DuckDB targets and the serving path never need it.
    from dbt.adapters.factory import load_plugin
    from dbt.config.profile import Profile, read_profile
    from dbt.config.renderer import ProfileRenderer
    from dbt.exceptions import DbtProfileError, DbtProjectError
    from dbt.flags import set_from_args
    from dbt_common.context import set_invocation_context
    from dbt_common.exceptions import DbtRuntimeError

    target = registry.target
    if target.profiles_file is None:
        raise WarehouseError(f"no profiles.yml found for profile {target.profile!r}; dbt needs one to connect")
    try:
        # dbt's renderer reads env_var() from the invocation context and its flags; set them
        # as a dbt command would (empty flags: dbt's defaults).
        set_invocation_context(dict(os.environ))
        set_from_args(Namespace(), None)
        load_plugin(target.type)
        raw = read_profile(str(target.profiles_file.parent))
        profile = Profile.from_raw_profiles(raw, target.profile, renderer=ProfileRenderer({}),
                                            target_override=target.name)
    except (DbtProfileError, DbtProjectError, DbtRuntimeError) as exc:
        raise WarehouseError(
            f"dbt could not read target {target.name!r} of profile {target.profile!r} in "
            f"{target.profiles_file}: {str(exc).strip()}") from None
    return profile.credentials
