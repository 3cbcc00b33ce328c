"""RAID: detect AI-generated images with an SVM trained on real photos and their
autoencoder reconstructions, on features of a frozen AIM v1 model.

Data flow, one module per step:
image (`raid.images`) -> patch (`raid.patches`) -> AIM (`raid.aim`) -> store (`raid.store`)
-> SVM (`raid.detector`) -> report (`raid.evaluation`).
"""

__version__ = "0.1.0"
