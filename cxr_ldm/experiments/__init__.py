"""The papers' experiments, and the models they start from, as functions over `fit` configs."""
