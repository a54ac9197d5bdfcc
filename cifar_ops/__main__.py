"""`python -m cifar_ops` is the same as the `cifar-ops` command."""

from cifar_ops.cli import main

main()
