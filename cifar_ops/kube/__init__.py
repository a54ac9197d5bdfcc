"""Kubernetes executor: Helm values and manifests for `submit`, and the kubernetes client behind
`status`, `logs` and `cancel`. Each manifest or value set the CLI makes comes from a pure `build_*`
function, so it is testable without a cluster.
"""
