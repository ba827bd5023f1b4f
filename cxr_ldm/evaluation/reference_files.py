"""The files `make_references` keeps in an experiment's evaluator folder (evaluation/references.py), named here
so that code which only looks for them (a unit's state, `experiment --status`) loads none of the libraries that
make them."""

EVALUATOR_WEIGHTS = "evaluator.pt"
CEILINGS = "ceilings.json"
