"""Training: from a project folder and a CSV to a versioned, digest-verified artifacts folder.

The CLI's ``mlopsctl train`` calls :func:`train`; see :mod:`training.run`.
"""

from training.run import train

__all__ = ["train"]
