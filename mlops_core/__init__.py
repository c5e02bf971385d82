"""The platform's shared contracts: one home each.

- :mod:`mlops_core.naming`    names of every AWS resource (the Terraform module mirrors it)
- :mod:`mlops_core.artifacts` the artifact layout and ``manifest.json``
- :mod:`mlops_core.pointer`   the SSM model pointer
- :mod:`mlops_core.project`   ``project.yaml``
- :mod:`mlops_core.features`  feature schema -> model input rows (training and serving)
- :mod:`mlops_core.aws`       boto3 clients (standard configuration chain, adaptive retries)
"""
