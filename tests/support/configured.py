"""What the entry points build from the settings, for tests that stand in for an entry
point (the production code takes these as arguments and never reads the environment)."""

from __future__ import annotations

from controller.reconcile import Reconciler
from controller.settings import ControllerSettings
from mlops_core.config import PlatformSettings
from mlops_core.cost.prices import PriceResolver
from mlops_core.naming import Platform


def env_platform() -> Platform:
    """The platform the process environment names (as ``mlopsctl`` reads it)."""
    return PlatformSettings.load().names()


def env_reconciler(**kwargs) -> Reconciler:
    """A reconciler built as ``mlopsctl controller run`` builds it, from the environment."""
    s = ControllerSettings.load()
    kwargs.setdefault("network", s.network())
    kwargs.setdefault("polling", s.polling())
    kwargs.setdefault("prices", PriceResolver.from_settings(s))
    return Reconciler(s.names(), **kwargs)
