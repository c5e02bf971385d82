"""The reconciler: converge AWS onto declared ModelDeployments."""
