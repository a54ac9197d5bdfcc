"""cifar-ops: train, track and ship CIFAR-10 style image classifiers.

Importing the package is cheap on purpose: TensorFlow, Kubernetes and SQLAlchemy are imported
only by the modules that need them, so `cifar-ops --help` stays fast.
"""

__version__ = "0.1.0"
