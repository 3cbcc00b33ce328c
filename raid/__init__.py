"""RAID: detect AI-generated images with an SVM trained on real photos and their
autoencoder reconstructions, on features of a frozen AIM v1 model.

Data flow, one module per step:
image (`raid.primitives.images`) -> patch (`raid.primitives.patches`) -> AIM (`raid.models.aim`) -> store (`raid.store.store`)
-> SVM (`raid.svm.detector`) -> report (`raid.metrics.evaluation`).
"""

__version__ = "0.1.0"
