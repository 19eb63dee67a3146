"""ksm-sync: mirror remote Kubernetes Services and Endpoints into one local namespace."""

__version__ = "0.1.0"
