"""Evaluation of generated chest X-rays (images come from `cxr_ldm.generation`). Import from the module that
holds a name, so that reading a config (`specs`) loads none of the libraries that evaluate:

- `specs`: what a config sets (`ProtocolSpec`, `EvaluatorSpec`, `ClassifierSettings`);
- `evaluators/`: the networks that judge (`CxrClassifier`, `ImageTextRetriever`, classifier training);
- `metrics/`: the numbers (`conditioned_classification`, `fid`, `diversity`, `text_retrieval`, ...);
- `references`, `protocol`, `ceilings`, `learning_curve`: an experiment's evaluation of one model;
- `suite`: `evaluate_generated`, the whole suite over a folder of generated images (`python -m cxr_ldm evaluate`).
"""
