"""The revisions, one module each; frozen once released (they import no cifar_ops code)."""
