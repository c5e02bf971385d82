"""The platform's shared contracts: one home each.

- :mod:`mlops_core.naming`    names of every AWS resource (the Terraform module mirrors it)
- :mod:`mlops_core.artifacts` the artifact layout and ``manifest.json``
- :mod:`mlops_core.pointer`   the SSM model pointer
- :mod:`mlops_core.project`   ``project.yaml``
- :mod:`mlops_core.features`  feature schema -> model input rows (training and serving)
- :mod:`mlops_core.aws`       boto3 clients (standard configuration chain, adaptive retries)
- :mod:`mlops_core.modelformat` which model versions may be published and served
"""

import os as _os

# onnxruntime (imported by training's export and serving's runtime) starts Microsoft's
# telemetry when it loads unless told not to, writing a session file into TMPDIR. The
# platform sends nothing anywhere: turn it off before any module can import onnxruntime.
_os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
